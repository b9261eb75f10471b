"""detect's quick model: the model it trains on the scene itself when none is given (the
thesis's fully unsupervised setting), where it keeps it, and when a rerun may reuse it."""

from pathlib import Path

from .errors import Cancelled, HsanomalyError
from .runtime import folder_gone, missing_for_training, training_broken, training_install
from .scorers import BASELINES
from .spelling import spell

def scene_model_path(dst):
    """Where a model trained on the scene itself is kept: ``out/heat.tif`` -> ``out/heat.model``."""
    dst = Path(dst)
    return dst.with_name(dst.stem + ".model")


def quick_model_path(cls, model, dst):
    """Where ``detect`` keeps the quick model of ``dst`` when score class ``cls`` needs a model
    and none is given (``scene_model_path``); None when it trains none."""
    return scene_model_path(dst) if cls.needs_model and model is None else None


def check_training(name):
    """Refuse, with what to do instead, a quick model where training cannot run."""
    missing = missing_for_training()
    if missing:
        raise HsanomalyError(f"{name}: no model given and {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not installed; pass a model "
                             f"({spell('model', placeholder='DIR')}, from training), choose a baseline score "
                             f"({'|'.join(BASELINES)}), or install training ({training_install()}) "
                             "so a quick model can be trained on the scene itself")
    unusable = folder_gone() or training_broken()
    if unusable:
        raise HsanomalyError(f"{name}: no model given, and a quick model cannot be trained: "
                             f"{unusable}")


def check_quick_model(source, scorer):
    """Refuse, before a quick model is trained for ``scorer`` on ``source``, what would refuse
    it once trained: training cannot run here, or the image is smaller than the score's window
    (a GAN score's window is its model's, known only once the model exists); and warn of the
    data before the model learns it (``check_data``, said once: scoring checks it again)."""
    check_training(source.name)
    if not scorer.window_from_model:
        from .engine.checks import check_footprint

        check_footprint(source, scorer)
    source.check_data()


def prepare_quick_model(src, dst, quick, scorer, stage, *, masked=None, resume=False,
                        scheduler=None, extras=None, tile=None, callback=None, progress=False,
                        mask=None):
    """detect's quick model at ``quick``, for ``scorer`` on ``src`` (``masked``: the source
    the engine reads where exclusion ``mask`` is given): (the trained model's path, or None
    where ``resume`` reuses the interrupted run's model; the fingerprint of what it was
    trained on, as the engine takes it).
    Trained into ``stage``'s folder, once every check that the scoring could still fail has
    passed: another run on this output, an unreachable scheduler, a resume that cannot be."""
    import contextlib

    from .cluster import check_scheduler
    from .engine.run import check_resumed_run
    from .engine.store import store_path
    from .io.fingerprint import input_fingerprint
    from .io.atomic import live_writer
    from .io.lock import busy, check_unlocked
    from .io.source import open_source

    if resume and resumable_quick_model(src, dst, quick):
        return None, None
    scene = src if masked is None else masked
    check_unlocked(store_path(dst), dst)
    training = live_writer(quick)          # another run trains this output's quick model now
    if training is not None:
        raise busy(training, dst)
    if isinstance(scheduler, str):
        check_scheduler(scheduler)
    if resume:
        check_resumed_run(scene, dst, scorer, extras, tile)
    trained_on = input_fingerprint(scene, masked)          # what the engine will score
    with contextlib.closing(open_source(src) if masked is None else masked) as source:
        check_quick_model(source, scorer)
    try:
        trained = train_on_scene(src, dst, type(scorer).model_training, stage.directory(quick),
                                 callback, progress, mask=mask)
    except HsanomalyError:           # the mask gone or broken before the training read it
        if masked is None or not masked.exclusion.changed():
            raise
        raise _mask_changed(mask) from None
    if masked is not None and masked.exclusion.changed():   # the training read it anew
        raise _mask_changed(mask)
    return trained, trained_on


def _mask_changed(mask):
    return HsanomalyError(f"{mask}: the mask changed while the quick model was trained, so the "
                          "model and the heatmap would leave out other pixels; nothing was "
                          "replaced: rerun")


# How every quick model trains, besides its score's ``model_training`` (``train`` says why):
# its raster checked by the run, no codebook Jacobians nor checkpoints, a short validation log
QUICK_TRAINING = {"data_checked": True, "codebook_jacobians": False, "keep_checkpoints": False,
                  "validation_windows": 512}


def train_on_scene(src, dst, training, out, callback=None, progress=False, mask=None):
    """Train a quick model on the raster being scored, as the score's ``model_training`` says
    (fully unsupervised: the thesis's figure 15), into ``out`` (detect's staged folder for it,
    replaced together with the heatmap), leaving out the pixels of exclusion mask ``mask``.
    The caller checks first (``check_quick_model``)."""
    from .training import train
    from .training.wgan import TrainingCancelled

    place = scene_model_path(dst)
    try:
        return train([src], out, mask=mask, progress=progress, callback=callback,
                     quick_model_of=dst, name=place, **QUICK_TRAINING, **training).path
    except TrainingCancelled:
        # a staged training's checkpoint goes with its temporary folder: nothing to resume
        raise Cancelled(f"{place}: training cancelled") from None


def resumable_quick_model(src, dst, quick):
    """Whether ``--resume`` can reuse the quick model at ``quick``: detect trained it for
    ``dst`` on ``src`` (not a model an interrupted run was given: a run without one promises
    a model of the scene), and the interrupted run's tile store is there and was scored with
    this very model (its digest). An interrupted run's own quick model was staged and is gone
    with it; training it again gives the same model, whose tiles then resume."""
    from .engine.store import is_tile_store, read_manifest, store_path
    from .io.ownership import other_input
    from .io.paths import is_quick_model, quick_model_input
    from .model import load_bundle

    store = store_path(dst)
    manifest = read_manifest(store)
    if not (is_tile_store(store) and manifest and is_quick_model(quick, dst)) \
            or other_input(quick_model_input(quick), src) is not None:
        return False
    try:
        bundle = load_bundle(quick)
    except HsanomalyError:
        return False
    config = manifest.get("config")
    scored_with = config.get("scorer") if isinstance(config, dict) else None
    return isinstance(scored_with, dict) and scored_with.get("model") == bundle.digest()


def train_on_copy(source, training):
    """``Detector``'s quick model: (its temporary folder, the model trained there on pixel
    source ``source``, as the score's ``model_training`` says), on a float32 copy of it in
    that folder (training reads files); the caller checks first (``check_quick_model``)."""
    import tempfile

    import numpy as np

    from .io.atomic import destination_of
    from .io.checks import check_disk, check_memory, shown_as
    from .io.convert import write_geotiff
    from .io.gdal import safe_stem
    from .io.source import iter_windows
    from .training import train

    shape = (source.count, source.height, source.width)
    nbytes = 4 * int(np.prod(shape, dtype=np.float64))
    copy = f"the copy of {source.name} its quick model trains on"
    check_memory(source.name, nbytes, "copying the {}x{}x{} cube for its quick model".format(*shape))
    check_disk(temporary_folder(), nbytes, f"{copy} (TMPDIR sets where) needs")
    workdir = QuickModelFolder()
    folder = Path(workdir.name)
    scene = folder / f"{safe_stem(source.name)}.tif"      # its model records the name
    cube = np.full(shape, np.nan, np.float32)
    for window in iter_windows(source.height, source.width):
        block, _ = source.read(window)
        rows, cols = window.toslices()
        cube[:, rows, cols] = block
    try:
        write_geotiff(scene, cube, nodata=float("nan"), wavelengths=source.wavelengths)
    except HsanomalyError as err:
        workdir.cleanup()
        raise HsanomalyError(f"{source.name}: {copy} could not be written ({err}; TMPDIR sets "
                             "where)") from None
    del cube                 # training reads the file: one copy in memory at a time, as checked
    model = f"{source.name}'s quick model"
    try:                     # said of the source, not of its temporary copy
        with shown_as({scene: source.name, folder / "model": model}):
            return workdir, train([str(scene)], str(folder / "model"), name=model,
                                  **QUICK_TRAINING, **training).path
    except HsanomalyError as err:
        workdir.cleanup()
        text = str(err).replace(str(scene), source.name)
        # a file of the model that could not be written, named (as outputs are) without its
        # private folder: as if in TMPDIR itself
        inside = str(destination_of(folder / "model"))
        if inside in text:         # (a Detector keeps its model to itself: it replaces nothing)
            text = text.replace(inside, "model").replace("; nothing was replaced", "")
            text = (f"{model} could not be written in {tempfile.gettempdir()} (TMPDIR sets "
                    f"where): {text}")
        raise HsanomalyError(text) from None
    except BaseException:    # an interrupt: its traceback would keep the folder alive
        workdir.cleanup()
        raise
    finally:
        scene.unlink(missing_ok=True)   # the model stays as long as the detector; the copy
                                        # need not (gone already with a failed training's folder)


def temporary_folder():
    """``tempfile.gettempdir()``, or one line where no folder it tries is usable."""
    import tempfile

    try:
        return tempfile.gettempdir()
    except FileNotFoundError:
        raise HsanomalyError("no usable temporary folder for a Detector's quick model (TMPDIR, "
                             "/tmp, /var/tmp, the working directory: none is writable); set "
                             "TMPDIR to a writable folder") from None


class QuickModelFolder:
    """A ``Detector``'s quick model's folder (``name``): removed with the detector that owns it,
    or at exit, without tempfile's ResourceWarning (its removal is the point, not a leak). A
    private folder of TMPDIR, as a run's temporaries are in an output's folder: what a killed
    process left there is removed when the next is made."""

    def __init__(self):
        import weakref

        from .io.atomic import private_folder, remove_private

        self.name = str(private_folder(temporary_folder(), "hsanomaly-model"))
        self.cleanup = weakref.finalize(self, remove_private, self.name)

    @staticmethod
    def packed(model):
        """The files of quick model folder ``model`` by name, as a pickled detector carries
        them (its folder goes with the object)."""
        return {path.name: path.read_bytes() for path in Path(model).iterdir()}

    @classmethod
    def unpacked(cls, files):
        """(a new folder, the model in it) holding ``packed``'s ``files``."""
        folder = cls()
        model = Path(folder.name) / "model"
        model.mkdir()
        for name, data in files.items():
            (model / name).write_bytes(data)
        return folder, str(model)

