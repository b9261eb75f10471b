"""One call per job: ``train``, ``detect``, ``detect_many``, ``evaluate``.

The CLI, the QGIS provider and the Dask runner call exactly these; their defaults come
from ``hsanomaly.defaults``. Every check that can fail runs before the work starts.
"""

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from . import defaults
from .errors import HsanomalyError
from .scorers import check_options, make_scorer

NO_MODEL_HELP = ("pass --model DIR (from `hsanomaly train`), choose a baseline with "
                 "--score rx|lrx|gmm, or install torch (pip install 'hsanomaly[train]') so detect "
                 "can train a quick model on the scene itself")


def train(inputs, out, **options):
    """Train a WGAN-GP on ``inputs`` (raster or .mat paths) and write the model bundle ``out``.

    Options are those of ``hsanomaly.training.train`` (iterations, window, bands, seed,
    device, mask, ...). Needs torch (the ``[train]`` extra). Returns the loaded bundle.
    """
    from .training import train as train_bundle

    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return train_bundle(inputs, out, **options)


def scene_model_path(dst):
    """Where a model trained on the scene itself is kept: ``out/heat.tif`` -> ``out/heat.model``."""
    dst = Path(dst)
    return dst.with_name(dst.stem + ".model")


def train_on_scene(src, dst, callback=None, progress=False):
    """Train a quick model on the raster being scored (fully unsupervised, as the thesis's
    figure 15 found as good as background-only training) and keep it beside the output."""
    if importlib.util.find_spec("torch") is None:
        raise HsanomalyError(f"{src}: no model given and torch is not installed; {NO_MODEL_HELP}")
    return train(src, scene_model_path(dst), progress=progress, callback=callback).path


def detect(src, dst, *, score=None, model=None, extras=None, polygons=None, threshold=None,
           far=None, png=None, tile=defaults.TILE, resume=False, workers=None, scheduler=None,
           progress=False, callback=None, **options):
    """Score raster ``src`` into the heatmap GeoTIFF ``dst``; optionally a PNG and polygons.

    score: a name from ``hsanomaly.scorers.SCORES`` (default ``defaults.SCORE``). Scores that
    need a model use ``model`` (a bundle directory); without one, a quick model is trained on
    ``src`` (needs torch) and kept beside ``dst``. ``options`` are the score's own (see
    ``Detector``); one it does not take is refused. extras: {"recon"|"latent"|"convergence":
    path}. polygons: a GeoPackage of the regions above ``threshold`` or above the threshold
    of false-alarm rate ``far`` (a number or "auto"). workers/scheduler: score the tiles on a
    Dask cluster (a local one of N processes, or an address or Client). callback(fraction,
    message) -> True cancels. Returns an ``engine.DetectResult``.
    """
    from .engine import detect as run_engine

    score = score or defaults.SCORE
    cls = check_options(score, {**options, **({"model": model} if model is not None else {})})
    if polygons is not None:
        from .polygons import check_threshold

        check_threshold(polygons, threshold, far)
    if cls.needs_model and model is None:
        model = train_on_scene(src, dst, callback=callback, progress=progress)
    scorer = make_scorer(score, **options, **({"model": model} if cls.needs_model else {}))
    with _executor(workers, scheduler) as executor:
        result = run_engine(src, dst, scorer, extras=extras, tile=tile, resume=resume,
                            executor=executor, progress=progress, callback=callback)
    result.model = None if model is None else str(model)
    if png is not None:
        from .quicklook import write_png

        write_png(dst, png)
    if polygons is not None:
        from .polygons import write_polygons

        result.polygons = write_polygons(dst, polygons, threshold=threshold, far=far)
    return result


@contextlib.contextmanager
def _executor(workers, scheduler):
    """None (this process), or a Dask executor for ``workers`` / ``scheduler``."""
    if not (workers or scheduler):
        yield None
        return
    from .distributed import DaskExecutor, dask_client

    with dask_client(workers, scheduler) as client:
        yield DaskExecutor(client)


@dataclass
class BatchItem:
    src: str
    dst: str
    status: str                   # "scored", "skipped" (finished before) or "failed"
    result: object = None         # DetectResult when scored
    error: str = None             # one-line message when failed


def batch_output(src, out_dir, score):
    """Where ``detect_many`` writes the heatmap of ``src``: ``out_dir/<stem>_<score>.tif``."""
    return Path(out_dir) / f"{Path(str(src)).stem}_{score}.tif"


def detect_many(inputs, out_dir, *, score=None, model=None, tile=defaults.TILE, overwrite=False,
                workers=None, scheduler=None, progress=False, **options):
    """Score every raster of ``inputs`` into ``out_dir/<stem>_<score>.tif``, on one cluster.

    Rasters whose output is finished are skipped and interrupted ones resumed, so a batch
    can simply be rerun; ``overwrite`` scores everything from scratch. A raster that fails
    is reported in its ``BatchItem`` and the batch goes on.
    """
    from tqdm.auto import tqdm

    score = score or defaults.SCORE
    check_options(score, {**options, **({"model": model} if model is not None else {})})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(str(src), batch_output(src, out_dir, score)) for src in inputs]
    seen = {}
    for src, dst in targets:
        if dst in seen:
            raise HsanomalyError(f"{src}: its output {dst} would overwrite that of {seen[dst]}")
        seen[dst] = src

    def finished(dst):
        return not overwrite and dst.exists() and not Path(str(dst) + ".partial").exists()

    items = [BatchItem(src, str(dst), "skipped") if finished(dst) else None for src, dst in targets]
    pending = [i for i, item in enumerate(items) if item is None]
    with _client(workers, scheduler, pending) as client, \
            tqdm(pending, unit="raster", disable=not progress) as bar:
        for i in bar:
            src, dst = targets[i]
            try:
                result = detect(src, dst, score=score, model=model, tile=tile,
                                resume=not overwrite, scheduler=client, **options)
                items[i] = BatchItem(src, str(dst), "scored", result=result)
            except HsanomalyError as err:
                items[i] = BatchItem(src, str(dst), "failed", error=str(err))
    return items


@contextlib.contextmanager
def _client(workers, scheduler, pending):
    """One Dask client for the whole batch, or None to score in this process."""
    if not ((workers or scheduler) and pending):
        yield None
        return
    from .distributed import dask_client

    with dask_client(workers, scheduler) as client:
        yield client


def evaluate(heatmap, truth, *, outer=None, plots=None, json=None, title=None):
    """Score a heatmap raster against a truth mask: AUC, logAUC, lgFAR overall and per target.

    outer: a mask of ambiguous pixels around the targets, excluded. plots: a directory for
    ROC, semi-log ROC, histogram and heatmap PNGs. json: write the report there. Returns
    the report (a dict); with ``plots`` its "plots" key lists the files written.
    """
    from .evaluation.files import evaluate_files, write_json
    from .io.atomic import check_writable

    if json is not None:
        check_writable(json)
    report, scores, truth_mask, outer_mask = evaluate_files(heatmap, truth, outer)
    if plots is not None:
        from .evaluation.plots import write_plots

        paths = write_plots(report, scores, truth_mask, plots, title=title or Path(heatmap).stem,
                            outer=outer_mask)
        report["plots"] = {name: str(path) for name, path in paths.items()}
    if json is not None:
        write_json(report, json)
    return report
