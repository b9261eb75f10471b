"""One call per job, shared by the CLI, the QGIS provider and the Dask runner."""

from .engine import detect
from .errors import HsanomalyError
from .scorers import BASELINES, make_scorer


def default_score(model):
    return "recon" if model is not None else "rx"


def detect_anomalies(src, dst, *, score=None, model=None, options=None, extras=None,
                     polygons=None, threshold=None, far=None, png=None, tile=256,
                     resume=False, workers=None, scheduler=None, progress=True, callback=None):
    """Score ``src`` into the heatmap GeoTIFF ``dst``; optionally a PNG and target polygons.

    score: rx, lrx, gmm (fitted on ``src``) or critic, recon, anogan (need ``model``).
    options: scorer keyword arguments (e.g. solver, restarts, steps, c1, c2, device, threads).
    polygons: GeoPackage path; the threshold is ``threshold`` or derived from ``far``
    (a false-alarm rate, or "auto").
    workers/scheduler: run the tiles on a Dask cluster instead of in this process.
    """
    score = score or default_score(model)
    options = dict(options or {})
    if score in BASELINES:
        if model is not None:
            raise HsanomalyError(f"{model}: score {score!r} is a baseline and takes no model")
        scorer, fit = make_scorer(score, **options), True
    else:
        if model is None:
            raise HsanomalyError(f"{src}: score {score!r} needs a model bundle (--model DIR)")
        scorer, fit = make_scorer(score, model=model, **options), False
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
    if png is not None:
        write_png(dst, png)
    if polygons is not None:
        from .targets import write_polygons

        result.polygons = write_polygons(dst, polygons, threshold=threshold, far=far)
    return result


def write_png(heatmap, png, max_size=2048):
    """A quick-look PNG of a heatmap GeoTIFF, decimated to at most ``max_size`` pixels a side."""
    import numpy as np
    import rasterio

    from .evaluate.plots import save_heatmap_png
    from .io.atomic import atomic_path

    with rasterio.open(heatmap) as ds:
        step = max(1, -(-max(ds.height, ds.width) // max_size))
        shape = (max(1, ds.height // step), max(1, ds.width // step))
        scores = ds.read(1, out_shape=shape, masked=True).filled(np.nan)
    with atomic_path(png) as tmp:
        save_heatmap_png(scores, tmp)
