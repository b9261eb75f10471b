"""One call per job, shared by the CLI, the QGIS provider and the Dask runner."""

import importlib.util
from pathlib import Path

from .engine import detect
from .errors import HsanomalyError
from .scorers import BASELINES, RESIDUAL_SCORES, make_scorer


DEFAULT_SCORE = "context"   # best mean AUC on the shared scenes: docs/benchmark.md
NO_MODEL_HELP = ("pass --model DIR (from `hsanomaly train`), choose a baseline with "
                 "--score rx|lrx|gmm, or install torch (pip install 'hsanomaly[train]') so detect "
                 "can train a quick model on the scene itself")


def scene_model_path(dst):
    """Where a model trained on the scene itself is kept: ``out/heat.tif`` -> ``out/heat.model``."""
    dst = Path(dst)
    return dst.with_name(dst.stem + ".model")


def train_on_scene(src, dst, callback=None, progress=True):
    """Train a quick model on the raster being scored (fully unsupervised, as the thesis's
    figure 15 found as good as background-only training) and keep it beside the output."""
    if importlib.util.find_spec("torch") is None:
        raise HsanomalyError(f"{src}: no model given and torch is not installed; {NO_MODEL_HELP}")
    from .training import train

    bundle = train([src], scene_model_path(dst), progress=progress, callback=callback)
    return bundle.path


def detect_anomalies(src, dst, *, score=None, model=None, options=None, extras=None,
                     polygons=None, threshold=None, far=None, png=None, tile=256,
                     resume=False, workers=None, scheduler=None, progress=True, callback=None):
    """Score ``src`` into the heatmap GeoTIFF ``dst``; optionally a PNG and target polygons.

    score: rx, lrx, gmm (fitted on ``src``) or critic, recon, anogan, resrx, context (default),
    which use ``model``; without one, a quick model is trained on ``src`` and kept beside ``dst``.
    options: scorer keyword arguments (e.g. solver, restarts, steps, c1, c2, device, threads).
    polygons: GeoPackage path; the threshold is ``threshold`` or derived from ``far``
    (a false-alarm rate, or "auto").
    workers/scheduler: run the tiles on a Dask cluster instead of in this process.
    """
    from .io.atomic import check_writable

    check_writable(dst)
    score = score or DEFAULT_SCORE
    options = dict(options or {})
    if score in BASELINES:
        if model is not None:
            raise HsanomalyError(f"{model}: score {score!r} is a baseline and takes no model")
        scorer, fit = make_scorer(score, **options), True
    else:
        if model is None:
            model = train_on_scene(src, dst, callback=callback, progress=progress)
        # residual scores fit their statistics on the scene; pure GAN scores come fitted
        scorer, fit = make_scorer(score, model=model, **options), score in RESIDUAL_SCORES
    if polygons is not None and threshold is None and far is None:
        raise HsanomalyError(f"{polygons}: polygons need --threshold or --far")
    if workers or scheduler:
        from .distributed import detect_distributed

        result = detect_distributed(src, dst, scorer, extras=extras, tile=tile, resume=resume,
                                    fit=fit, workers=workers, scheduler=scheduler,
                                    progress=progress)
    else:
        result = detect(src, dst, scorer, extras=extras, tile=tile, resume=resume, fit=fit,
                        progress=progress, callback=callback)
    result.model = None if model is None else str(model)
    if png is not None:
        write_png(dst, png)
    if polygons is not None:
        from .polygons import write_polygons

        result.polygons = write_polygons(dst, polygons, threshold=threshold, far=far)
    return result


def write_png(heatmap, png, max_size=2048):
    """A quick-look PNG of a heatmap GeoTIFF, decimated to at most ``max_size`` pixels a side."""
    import numpy as np
    import rasterio

    from .evaluation.plots import save_heatmap_png
    from .io.atomic import atomic_path

    with rasterio.open(heatmap) as ds:
        step = max(1, -(-max(ds.height, ds.width) // max_size))
        shape = (max(1, ds.height // step), max(1, ds.width // step))
        scores = ds.read(1, out_shape=shape, masked=True).filled(np.nan)
    with atomic_path(png) as tmp:
        save_heatmap_png(scores, tmp)
