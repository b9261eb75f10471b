"""One call per job: ``train``, ``detect``, ``find_targets``, ``evaluate`` (and, in ``batch``,
``detect_many``).

The CLI's commands for these jobs and the QGIS provider call exactly these; their defaults
come from ``hsanomaly.defaults``. Every check that can fail runs before the work starts.
"""

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, SupportsFloat, SupportsIndex, Union

from . import defaults
from .errors import Cancelled, HsanomalyError
from .hints import FalseAlarmRate, Inputs, ModelArg, PathArg, Progress, Report, Scheduler, Scores
from .io.checks import one_job
from .io.paths import check_path_kind, is_path
from .logs import half_of
from .options import check_keywords, plain_values, public_signature, renamed_keywords
from .outputs import detect_paths, evaluate_paths
from .polygons import check_threshold
from .targets import check_threshold_choice
from .quickmodel import prepare_quick_model, quick_model_path
from .scorers import check_measured, chosen, make_scorer, scorer_for
from .spelling import spell
from .training import LIBRARY_ONLY, train as train_bundle
from .validate import batch_inputs, check_raster_path, check_request, model_path

if TYPE_CHECKING:          # the engine and the bundle load on first use
    from geopandas import GeoDataFrame

    from .engine.run import DetectResult
    from .model.bundle import Bundle


@one_job()
def train(inputs: Inputs, out: PathArg, **options: Any) -> "Bundle":
    """Train a WGAN-GP on ``inputs`` (raster or .mat paths) into the model bundle ``out``, with
    ``hsanomaly.training.train``'s options (another is refused). Needs torch (``[train]``).
    Returns the Bundle Detector/detect take."""
    check_keywords("train", train_bundle, options, LIBRARY_ONLY)
    check_path_kind(out, spell("out"))
    return train_bundle(batch_inputs(inputs, use="training reads rasters from files: write it "
                                                  "to a GeoTIFF first", needed=True),
                        out, **plain_values(options))


setattr(train, "__signature__", public_signature(train_bundle, LIBRARY_ONLY, train))  # in help()


@one_job()
def detect(src: PathArg, dst: PathArg, *, score: Optional[str] = None,
           model: Optional[ModelArg] = None, extras: Optional[Mapping[str, PathArg]] = None,
           polygons: Optional[PathArg] = None, threshold: Optional[SupportsFloat] = None,
           far: Optional[FalseAlarmRate] = None, png: Optional[PathArg] = None,
           mask: Optional[PathArg] = None, tile: SupportsIndex = defaults.TILE,
           resume: bool = False, cog: bool = False, overwrite: bool = False,
           workers: Optional[SupportsIndex] = None,
           scheduler: Optional[Scheduler] = None, progress: bool = False,
           callback: Optional[Progress] = None, **options: Any) -> "DetectResult":
    """Score raster ``src`` into the heatmap GeoTIFF ``dst``; optionally a PNG and polygons.

    score: a name from ``hsanomaly.scorers.SCORES`` (default ``defaults.SCORE``). Scores that
    need a model use ``model`` (a bundle directory); without one, a quick model is trained on
    ``src`` (needs torch) and kept beside ``dst``. ``options`` are the score's own (see
    ``Detector``); one it does not take is refused. extras: {"recon"|"latent"|"convergence":
    path}. polygons: a GeoPackage of the regions above ``threshold`` or above the threshold
    of false-alarm rate ``far`` (a number or "auto"). mask: an exclusion mask (a raster on
    ``src``'s grid, non-zero = out, or vector features, as ``train`` takes): its pixels are
    left out of fitting, training and scoring, nodata in the heatmap. tile: the size of the
    tiles scored, in pixels; cog: write Cloud-Optimized GeoTIFFs; progress: a bar on stderr.
    workers/scheduler: score the tiles on a Dask cluster (a local one of N processes, or an
    address or Client). callback(fraction, message) -> True cancels (a quick model's
    training is the first half of the fraction, the scoring the second); a cancel raises
    ``hsanomaly.Cancelled`` (an ``HsanomalyError``) and leaves nothing of this run behind (an
    interrupt, KeyboardInterrupt, keeps its finished tiles for ``resume``, as do the tiles of
    a run it resumed; a run that finished is kept, and only a PNG and polygons asked for are
    drawn from it). Every option and path is checked before any work; the heatmap, extras,
    PNG and polygons are replaced together, once all are written and checked. An existing
    output file hsanomaly did not write is refused unless ``overwrite``. Returns a
    ``hsanomaly.DetectResult`` (``seconds``: the whole call's; ``training_seconds``: a quick
    model's training).
    """
    from .cluster import optional_client
    from .distributed import DaskExecutor
    from .engine import detect as run_engine
    from .engine.run import resumed_run
    from .io.atomic import staged
    from .io.exclusion import exclude
    from .io.source import open_source

    start = time.perf_counter()
    check_raster_path(src)
    check_raster_path(dst, spell("dst"), use="name the heatmap GeoTIFF to write")
    src, dst = os.fspath(src), os.fspath(dst)
    model = model_path(model)
    score, options = chosen(score, options)
    cls = check_request(score, model, options, extras, tile, workers, scheduler, callback,
                        mask=mask, resume=resume, cog=cog, overwrite=overwrite, progress=progress,
                        door=detect)
    if polygons is not None:      # the options, then the paths (the input's among them)
        check_threshold_choice(threshold, far, polygons, wanted="polygons")
    quick = quick_model_path(cls, model, dst)
    detect_paths(src, dst, model=model, extras=extras, png=png, polygons=polygons,
                 quick_model=quick, overwrite=overwrite, mask=mask)
    check_threshold(polygons, threshold, far)
    # read and checked before any work; the engine reads the raster through it
    masked = None if mask is None else exclude(open_source(src), os.fspath(mask))
    scene = src if masked is None else masked
    # built (and its options checked) before any training; the bundle loads on first use
    scorer = scorer_for(score, options, model or quick)
    check_measured(scorer, extras)
    trained_on = training = None
    with staged() as stage:
        # resumed, a finished run keeps its outputs (a PNG or polygons asked are drawn anew);
        # with nothing to resume, the run scores from the start, saying why
        result, resume = resumed_run(src, dst, scorer, extras, tile, cog, scene, stage) \
            if resume else (None, False)
        if result is not None and callback is not None:     # the bar ends, nothing scored
            if callback(1.0, f"{dst}: finished earlier, kept") and (png or polygons):
                raise Cancelled(f"{dst}: cancelled before drawing from its kept heatmap")
        # a quick model is staged, replaced with the heatmap: a failed run keeps the earlier pair
        if quick is not None and result is None:
            training = time.perf_counter()
            trained, trained_on = prepare_quick_model(
                src, dst, quick, scorer, stage, masked=masked, resume=resume,
                scheduler=scheduler, extras=extras, tile=tile, progress=progress, mask=mask,
                callback=half_of(callback, 0, "training the quick model: "))
            training = None if trained is None else time.perf_counter() - training
            if trained is not None:
                scorer = make_scorer(score, **options, model=trained)
        if result is None:
            with optional_client(workers, scheduler) as client:
                executor = None if client is None else DaskExecutor(client)
                result = run_engine(scene, dst, scorer, extras=extras, tile=tile, resume=resume,
                                    executor=executor, progress=progress,
                                    callback=callback if trained_on is None else
                                    half_of(callback, 1), stage=stage, cog=cog,
                                    trained_on=trained_on,
                                    given_model=None if quick is not None else model)
        heatmap = dst if result.earlier or (png is None and polygons is None) else \
            stage.checked_temporary(dst)     # read back before a PNG or polygons are drawn
        if png is not None:
            from .quicklook import write_png

            write_png(heatmap, png, stage=stage, name=dst)
        if polygons is not None:
            from .polygons import write_polygons

            result.polygons = write_polygons(heatmap, polygons, threshold=threshold,
                                             far=far, stage=stage, name=dst)
    model = model or quick
    result.model = None if model is None else str(model)
    result.seconds, result.training_seconds = time.perf_counter() - start, training
    return result


@one_job()
def find_targets(heatmap: Union[PathArg, Scores], *, threshold: Optional[SupportsFloat] = None,
                 far: Optional[FalseAlarmRate] = None, transform: Any = None,
                 crs: Any = None) -> "GeoDataFrame":
    """The targets of a heatmap as a GeoDataFrame: the 8-connected regions of pixels scoring
    above ``threshold``, or above the threshold of false-alarm rate ``far`` (a rate, or
    "auto": a tail fit of the scores, no labels needed), the rows of what ``detect``'s
    polygons GeoPackage holds (id, pixels, area, max_score, mean_score, centroid_x,
    centroid_y, score (the name of the score a heatmap file records; empty for an array),
    threshold). Read the area as ``targets["area"]``: ``targets.area`` is geopandas' own,
    planar, in the CRS's units (square degrees in a geographic one).

    heatmap: a raster file (placed by its georeferencing), or the scores in memory as
    ``Detector.score`` gives them: a (rows, cols) array or masked array (masked = nodata),
    placed by ``transform`` (an Affine, or its six numbers in Affine's order, not GDAL's;
    a map's, an identity one too) and ``crs`` where given (pixel coordinates without: y is
    minus the row, as GIS draw a raster that is not placed), or a DataArray, placed by its
    attributes (``io.inputs.placement``) unless they are given."""
    import numpy as np

    from .io.inputs import as_band, as_crs, as_transform, placement
    from .targets import find_targets as vectorise

    if is_path(heatmap):
        if transform is not None or crs is not None:
            raise HsanomalyError(f"{spell('transform')}, {spell('crs')}: they place a heatmap "
                                 "array; a file is placed by its own georeferencing")
        check_raster_path(heatmap, spell("heatmap"))
        return vectorise(os.fspath(heatmap), threshold=threshold, far=far)[0]
    carried = placement(heatmap)                         # a DataArray's; given ones win
    placed = (carried[0] if transform is None else as_transform(transform, spell("transform")),
              carried[1] if crs is None else as_crs(crs, spell("crs")))
    if crs is not None and placed[0] is None:
        raise HsanomalyError(f"{spell('crs')}: a CRS places a heatmap array only with its "
                             f"{spell('transform')}; give both")
    scores = as_band(heatmap, "the heatmap array")
    if scores.dtype.kind not in "uif":
        raise HsanomalyError(f"the heatmap array holds {scores.dtype} values, not scores")
    scores = scores.astype(np.result_type(scores.dtype, np.float32))
    return vectorise(scores.filled(np.nan), threshold=threshold, far=far, transform=placed[0],
                     crs=placed[1], name="the heatmap array", given=transform is not None)[0]


@one_job()
@renamed_keywords(outer="outer_mask")         # outer: a ring's window size, as Detector takes it
def evaluate(heatmap: Union[PathArg, Scores], truth: Union[PathArg, Scores], *,
             outer_mask: Optional[Union[PathArg, Scores]] = None,
             plots: Optional[PathArg] = None, json: Optional[PathArg] = None,
             title: Optional[str] = None, overwrite: bool = False,
             pd_far: SupportsFloat = defaults.PD_FAR) -> Report:
    """Score a heatmap against a truth mask: AUC, logAUC, lgFAR and Pd (the share of target
    pixels found at a false-alarm rate of ``pd_far``) overall and per target.

    heatmap: a raster file (band 1), or the scores in memory: a (rows, cols) array, masked
    array (masked = nodata) or DataArray, as ``Detector.score`` gives them.
    truth: a raster on the heatmap's grid (non-zero = target) or vector features burnt onto
    it (``io.vector``: "targets.gpkg", or one layer, "targets.gpkg|layername=truth"), or an
    array of the heatmap's shape (masked or NaN = unknown); a heatmap in memory takes arrays
    only (nothing places a file's pixels on it).
    outer_mask: an outer target mask, of either kind, whose pixels outside the truth are
    ambiguous and left out. plots: a directory for ROC, semi-log ROC, histogram and heatmap
    PNGs, ``title`` over them. json: write the report there. Returns the report, a dict:
    "auc", "log_auc", "lg_far", "pd", "pd_far", "pd_threshold" (the score at that rate),
    "pd_detect_far" (``detect``'s ``far`` that draws those pixels), "n_targets_found",
    "n_false_alarm_regions", "false_alarm_regions_per_km2", the pixel counts "n_*", "targets"
    (the same per target, on the map where the heatmap is), "crs", "inputs", "provenance"
    (the heatmap's record, whether it is still that heatmap, the files' digests) and, with
    ``plots``, "plots" (the files written). Paths are
    checked before anything is read (an existing file hsanomaly did not write is refused
    unless ``overwrite``); the JSON and plots are replaced together at the end.
    """
    from .evaluation.files import evaluate_arrays, evaluate_files, write_json
    from .evaluation.metrics import check_pd_far
    from .io.atomic import staged

    pd_far = check_pd_far(pd_far)
    evaluate_paths(heatmap, truth, outer_mask, plots, json, overwrite)
    evaluate_inputs = evaluate_files if is_path(heatmap) else evaluate_arrays
    report, scores, truth_mask, outer, valid = evaluate_inputs(heatmap, truth, outer_mask, pd_far)
    with staged() as stage:
        if plots is not None:
            from .evaluation.plots import write_plots

            named = title or (Path(heatmap).stem if is_path(heatmap)     # an array: no name
                              else "")
            paths = write_plots(report, scores, truth_mask, plots, title=named,
                                outer_mask=outer, valid=valid, stage=stage)
            report["plots"] = {name: str(path) for name, path in paths.items()}
        if json is not None:
            write_json(report, json, stage=stage)
    return report
