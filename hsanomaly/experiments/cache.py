"""The model cache: GAN bundles trained per scene, seed and training options, kept on disk.

A bundle already in the cache is reused, so the GAN scores of one scene and seed share a
model, and a later benchmark or thesis run with the same folder trains nothing again, as long
as it is still what training would give: its ``.timing.json`` records, besides the
training's time, the scene file's fingerprint, every training setting, defaults included, and
a digest of the code a model is made by (``TRAINING_CODE``). A scene file that changed since,
other training defaults or a change to that code trains the model again instead of scoring
with a stale one. Concurrent runs may share the folder: a
``filelock`` lock beside a bundle in training makes the others wait for it instead of
training it twice (it works on Windows and is released by the operating system when its
holder dies). A cached bundle that no longer loads (for example written by an older bundle
format) is trained again; ``train`` replaces it as its own output and refuses, before any
work, a folder there that is not a bundle.
"""

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..errors import HsanomalyError
from ..io import atomic_path
from ..io.fingerprint import path_fingerprint

CHANGED = {"scene": "the scene file changed", "training": "the training settings changed",
           "mask": "the mask file changed", "code": "the training code changed"}
# the parts of the package a trained model is made by: the training, the data it reads, the
# preprocessing, the export and the codebook; a change to any may change the model
TRAINING_CODE = ("training", "io", "preprocess.py", "model", "latent")
# train's keywords that say how to run or what to call it, not what model to train
RUN_SWITCHES = ("device", "resume", "threads", "progress", "callback", "quick_model_of", "name")


@dataclass(frozen=True)
class TrainedModel:
    path: Path                # the model bundle
    seconds: float            # wall time of its training
    cpu_seconds: float        # CPU time of its training (all threads)
    reused: bool = False      # trained by an earlier run: its times are that run's


class ModelCache:
    """Trained bundles under ``root``: ``<scene>/seed<seed>-it<iterations>[-<option><value>...]``.

    iterations: the default generator iterations (``hsanomaly.training``'s when None);
    training options of ``get`` are ``hsanomaly.training.train`` keywords.
    """

    def __init__(self, root, iterations=None, log=None):
        from ..training.settings import Settings

        self.root = Path(root)
        self.iterations = Settings.iterations if iterations is None else int(iterations)
        self.log = log or (lambda message: None)
        self.trained = set()      # the bundles this cache trained (the others: earlier runs')

    def path(self, scene, seed, iterations, options):
        extra = "".join(f"-{k}{_option_text(v)}" for k, v in sorted(options.items()))
        return self.root / scene.name.replace("/", "__") / f"seed{seed}-it{iterations}{extra}"

    def check(self, scene, seed, iterations=None):
        """Refuse, in one line, what ``train`` would refuse at any path ``get`` may train
        ``scene``, ``seed`` and ``iterations`` (default the cache's) into, whatever the training
        options: a folder there, or at its checkpoint's path, that is not train's own. ``get``
        would refuse it only when it came to train there."""
        from ..io.paths import CHECKPOINT_SUFFIX
        from ..training import check_out

        iterations = self.iterations if iterations is None else int(iterations)
        plain = self.path(scene, seed, iterations, {})
        stem, folder = plain.name, plain.parent
        outs = set()
        for path in folder.glob(f"{stem}*") if folder.is_dir() else []:
            out = path.with_name(path.name.removesuffix(CHECKPOINT_SUFFIX))
            if out.name == stem or (out.name.startswith(stem + "-") and path.is_dir()):
                outs.add(out)
        for out in sorted(outs):
            check_out(out, label="a cached model's path")

    def get(self, scene, seed, iterations=None, **options):
        """The TrainedModel for ``scene`` and ``seed`` (``iterations``: default the cache's),
        trained now unless already cached."""
        iterations = self.iterations if iterations is None else int(iterations)
        out = self.path(scene, seed, iterations, options)
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out.with_name(out.name + ".lock"))):
            origin = {"scene": path_fingerprint(scene.path),   # side files read with it too
                      "training": training_settings(iterations=iterations, seed=seed, **options),
                      "code": training_code()}
            mask = options.get("mask")
            if mask is not None and os.fspath(mask) != os.fspath(scene.path):
                origin["mask"] = path_fingerprint(mask)         # a truth raster as the mask
            cached = self._cached(out, origin)
            if cached is not None:
                return cached
            from ..training import STATE_FILE, checkpoint_dir, train
            from ..training.settings import UnusableCheckpoint

            self.log(f"  training {out.relative_to(self.root)}")
            wall, cpu = time.perf_counter(), time.process_time()
            # an interrupted run's training goes on where it stopped (the same model as one
            # run straight through); one that cannot (unreadable, or of other data or
            # settings) is trained over
            checkpoint = checkpoint_dir(out) / STATE_FILE
            training = functools.partial(train, [scene.path], out, iterations=iterations,
                                         seed=seed, progress=False, **options)
            try:
                training(resume=checkpoint.exists())
            except UnusableCheckpoint:
                checkpoint.unlink()
                training()
            spent = {"seconds": time.perf_counter() - wall,
                     "cpu_seconds": time.process_time() - cpu}
            with atomic_path(self._timing(out)) as tmp:
                Path(tmp).write_text(json.dumps({**spent, **origin}), encoding="utf-8")
            self.trained.add(out)
        return TrainedModel(out, **spent)

    @staticmethod
    def _timing(out):
        return out.with_name(out.name + ".timing.json")

    def _cached(self, out, origin):
        """The cached TrainedModel at ``out`` if it loads and was trained from ``origin`` (the
        scene's fingerprint, the training settings and a mask file's fingerprint), else None
        (with a line why)."""
        timing = self._timing(out)
        if not ((out / "model.json").exists() and timing.exists()):
            return None
        from ..model import load_bundle

        name = out.relative_to(self.root)
        try:
            load_bundle(out)
            record = json.loads(timing.read_text(encoding="utf-8"))
        except (HsanomalyError, ValueError) as error:
            self.log(f"  {name} no longer loads ({error}); training again")
            return None
        changed = [what for what in CHANGED
                   if _model_part(record.get(what)) != _model_part(origin.get(what))]
        if changed:
            self.log(f"  {name}: {' and '.join(CHANGED[what] for what in changed)} since it was "
                     "trained; training again")
            return None
        return TrainedModel(out, record["seconds"], record["cpu_seconds"],
                            reused=out not in self.trained)


@functools.lru_cache(maxsize=None)
def training_code(package=None):
    """A digest of the sources of ``TRAINING_CODE`` in ``package`` (this one's folder by
    default): a cached model made by other code is trained again, though every setting is
    the same."""
    from ..io.digest import sources_sha256

    return sources_sha256(Path(__file__).resolve().parent.parent if package is None else package,
                          TRAINING_CODE)


def training_settings(**given):
    """Every setting a ``hsanomaly.training.train`` call with the keywords ``given`` trains
    with, its defaults and ``Settings``' included (not the run's own switches such as
    progress): what a cached model must have been trained with to be reused."""
    import inspect

    from ..training import train
    from ..training.settings import Settings

    parameters = inspect.signature(train).parameters.values()
    settings = {**Settings().to_dict(),
                **{p.name: p.default for p in parameters if p.default is not p.empty
                   and p.name not in RUN_SWITCHES}, **given}
    return json.loads(json.dumps(settings, default=str))     # as the record reads back


def _model_part(settings):
    """The settings without the run's switches, which records of some versions hold: a model
    trained alike is reused whatever they were."""
    if not isinstance(settings, dict):
        return settings
    return {k: v for k, v in settings.items() if k not in RUN_SWITCHES}


def _option_text(value):
    return Path(value).stem if isinstance(value, (str, Path)) else str(value)
