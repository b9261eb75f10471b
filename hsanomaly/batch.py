"""``detect_many``: ``detect`` over many rasters, resumable as a batch, optionally on Dask.

A rerun is the way to finish a batch: each heatmap carries the fingerprint of its input and
settings, so finished rasters are skipped, interrupted ones resumed, changed ones scored again.
"""

import contextlib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ClassVar, List, Literal, Optional,
                    SupportsFloat, SupportsIndex, Tuple, cast)

from . import defaults
from .api import detect
from .errors import HsanomalyError, NoWorkers, describe, raised_by_callback
from .hints import FalseAlarmRate, Inputs, ModelArg, PathArg, Progress, Scheduler
from .io.checks import one_job
from .io.gdal import dataset_stem
from .io.paths import check_path_kind
from .logs import LOGGER, progress_bar
from .outputs import batch_paths, refuse_foreign_drawings
from .polygons import check_threshold
from .quickmodel import quick_model_path
from .scorers import chosen
from .spelling import spell
from .targets import check_threshold_choice
from .validate import batch_inputs, check_request, model_path

if TYPE_CHECKING:          # the engine loads on first use: ``import hsanomaly`` stays light
    from .engine.run import DetectResult


@dataclass
class BatchItem:
    """One raster of ``detect_many``: its input, its heatmap and what became of it."""
    STATUSES: ClassVar = ("scored", "skipped", "failed")      # "skipped": finished before
    src: str
    dst: str
    status: Literal["scored", "skipped", "failed"]      # one of STATUSES
    result: Optional["DetectResult"] = None   # when scored, or skipped with a drawing drawn
    error: Optional[str] = None             # one-line message when failed
    png: Optional[str] = None               # the quick look, when asked for (drawn or kept)
    polygons: Optional[str] = None          # the target polygons' GeoPackage, likewise
    exception: Optional[Exception] = field(default=None, repr=False, compare=False)  # its error


def batch_output(src: PathArg, out_dir: PathArg, score: str) -> Path:
    """Where ``detect_many`` writes the heatmap of ``src``: ``out_dir/<stem>_<score>.tif`` (a
    subdataset's stem names its variable too: ``gdal.dataset_stem``)."""
    return Path(out_dir) / f"{dataset_stem(src)}_{score}.tif"


def batch_drawings(dst: Path, png: bool, polygons: bool) -> Tuple[Optional[str], Optional[str]]:
    """The (PNG, GeoPackage) ``detect_many`` draws from heatmap ``dst``, beside it and named
    after it; None where not asked for."""
    return (str(dst.with_suffix(".png")) if png else None,
            str(dst.with_suffix(".gpkg")) if polygons else None)


@one_job()
def detect_many(inputs: Inputs, out_dir: PathArg, *, score: Optional[str] = None,
                model: Optional[ModelArg] = None, mask: Optional[PathArg] = None,
                tile: SupportsIndex = defaults.TILE, polygons: bool = False,
                threshold: Optional[SupportsFloat] = None,
                far: Optional[FalseAlarmRate] = None, png: bool = False,
                overwrite: bool = False, workers: Optional[SupportsIndex] = None,
                scheduler: Optional[Scheduler] = None,
                progress: bool = False, callback: Optional[Progress] = None,
                settled: Optional[Callable[[BatchItem], Any]] = None,
                **options: Any) -> List[BatchItem]:
    """Score every raster of ``inputs`` (a path, a wildcard pattern or a list of them) into
    ``out_dir/<stem>_<score>.tif``, on one cluster; returns a ``BatchItem`` per raster, in order.
    A model score without ``model`` trains a quick model per raster, as ``detect`` does;
    score, model, tile, mask and the score's options are ``detect``'s, and workers/scheduler
    the one Dask cluster every raster is scored on (a local one of N processes, or an
    address or Client).

    A raster whose heatmap carries the fingerprint of its input and these settings is skipped,
    an interrupted one resumed, so a batch can simply be rerun; a changed input or setting is
    scored again. polygons, png: also draw each raster's target polygons (above ``threshold``
    or the threshold of false-alarm rate ``far``, as ``detect`` draws them; a rate carries over
    from raster to raster where a threshold does not) and quick look from its heatmap, beside
    it as ``<stem>_<score>.gpkg`` and ``.png``; a finished raster's are drawn (nothing
    scored) where missing or asked above another threshold, and kept otherwise (edits
    included), so a rerun adds them or draws them at another rate. ``overwrite``
    scores all anew and replaces files hsanomaly did not write (refused otherwise, before any
    work). ``mask``: one exclusion mask for every raster, as
    ``detect`` takes it; vector features (a region's water, say) need not fall on each raster,
    and a raster they miss is scored without it. A failed raster's ``BatchItem`` says why in
    one line. callback(fraction, message) hears each raster's progress as ``detect`` gives it,
    the message led by the raster's name; True cancels the batch (the rasters not finished
    fail, saying so). settled(item) is given each raster's ``BatchItem`` in order, as soon as
    it and those before it are settled, so a long batch can report as it goes (the command
    line prints a line per raster); an exception it raises stops the batch. A cluster that
    has had no worker for ``cluster.worker_wait()`` seconds fails the raster it was scoring
    and the rest with it, rather than wait as long for each.
    """
    from .cluster import optional_client, worker_count
    from .engine.batch import batch_state, mask_of
    from .engine.store import batch_resumes

    model = model_path(model)
    score, options = chosen(score, options)
    cls = check_request(score, model, options, None, tile, workers, scheduler, callback,
                        mask=mask, overwrite=overwrite, progress=progress, png=png,
                        polygons=polygons, batch=(detect, detect_many), door=detect_many,
                        settled=settled)
    if polygons:
        far = check_threshold_choice(threshold, far, spell("polygons"), wanted="polygons")
    else:
        check_threshold(None, threshold, far)
    check_path_kind(out_dir, spell("out_dir"))
    out_dir = Path(out_dir)
    sources = batch_inputs(inputs)
    targets = [(src, batch_output(src, out_dir, score)) for src in sources]
    drawn = functools.partial(batch_drawings, png=png, polygons=polygons)
    batch_paths(targets, out_dir, functools.partial(quick_model_path, cls, model),
                overwrite, mask=mask, model=model, drawn=drawn)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HsanomalyError(f"{out_dir}: cannot create {spell('out_dir')} "
                             f"({describe(err)})") from None
    masks = [mask_of(src, mask) for src, _ in targets]
    states = [("failed" if isinstance(used, HsanomalyError) else "score" if overwrite else
               batch_state(src, dst, score, model or quick_model_path(cls, None, dst), tile,
                           options, used))
              for (src, dst), used in zip(targets, masks)]
    # a finished raster draws only what is missing, older than it or of another threshold
    drawings = {dst: _still_to_draw(dst, *drawn(dst), threshold, far) if state == "skip"
                else drawn(dst) for (_, dst), state in zip(targets, states)}
    items: List[Optional[BatchItem]] = [
        BatchItem(src, str(dst), "skipped", png=drawn(dst)[0], polygons=drawn(dst)[1])
        if state == "skip" and drawings[dst] == (None, None) else
        BatchItem(src, str(dst), "failed", error=str(used), exception=used)
        if state == "failed" else None
        for (src, dst), state, used in zip(targets, states, masks)]
    pending = [i for i, item in enumerate(items) if item is None]
    scoring = [i for i in pending if states[i] != "skip"]     # the others draw only
    told = 0                          # the items handed to ``settled``

    def tell():
        nonlocal told
        while settled is not None and told < len(items) and items[told] is not None:
            told += 1
            settled(cast(BatchItem, items[told - 1]))
    with (optional_client(workers, scheduler) if scoring else contextlib.nullcontext()) as client, \
            progress_bar(pending and progress, pending, unit="raster") as bar, batch_resumes():
        cancelled: List[Any] = []
        alone: List[str] = []        # the raster whose run found the cluster without a worker
        lost: List[str] = []         # the raster whose run lost the cluster's scheduler
        for i in bar:
            tell()
            src, dst = targets[i]
            if cancelled:
                items[i] = BatchItem(src, str(dst), "failed", error=f"{src}: the batch was "
                                     "cancelled before this raster was scored")
                continue
            if lost:                                 # each would fail as fast, saying less
                items[i] = BatchItem(src, str(dst), "failed", error=f"{src}: not scored: the Dask "
                                     f"scheduler was lost (scoring {lost[0]}); rerun the batch")
                continue
            if alone and not worker_count(client):   # each would wait as long again
                items[i] = BatchItem(src, str(dst), "failed", error=f"{src}: not scored: the "
                                     f"Dask cluster had no worker (scoring {alone[0]}); rerun "
                                     "the batch once it has")
                continue
            try:
                used = None if masks[i] is None else masks[i].path
                drawing = drawings[dst]
                if not overwrite:           # named after the raster: only moved away
                    refuse_foreign_drawings(drawing[0], drawing[1], of=src)
                result = detect(src, dst, score=score, model=model, tile=tile, mask=used,
                                png=drawing[0], polygons=drawing[1], threshold=threshold,
                                far=far, resume=states[i] != "score", overwrite=overwrite,
                                scheduler=client, callback=_told(callback, src, cancelled),
                                **options)
                items[i] = BatchItem(src, str(dst), "skipped" if result.earlier else "scored",
                                     result=result, png=drawn(dst)[0], polygons=drawn(dst)[1])
            except NoWorkers as err:
                items[i] = _failed(src, dst, err)
                alone.append(src)
            except Exception as err:       # one raster's failure never stops the batch
                if raised_by_callback(err):     # but the caller's own callback's does
                    raise
                items[i] = _failed(src, dst, err)
                if getattr(client, "status", "running") not in ("running", "connecting"):
                    lost.append(src)
        tell()
    return cast(List[BatchItem], items)      # every pending one was filled in


def _still_to_draw(dst, png, polygons, threshold, far):
    """Of the drawings asked of finished heatmap ``dst``, those to draw now: one missing or
    older than the heatmap (drawn from an earlier one), or targets drawn above another
    threshold than the one asked now. The others are kept as they are: a rerun for new
    rasters leaves a reviewer's edits to them alone."""
    from .polygons import drawn_threshold
    from .thresholds import threshold_from_far

    def current(path):
        return os.path.exists(path) and os.stat(path).st_mtime_ns >= os.stat(dst).st_mtime_ns
    png = png if png is not None and not current(png) else None
    if polygons is not None and current(polygons):
        wanted = float(threshold) if threshold is not None else \
            float(threshold_from_far(str(dst), far))
        polygons = None if drawn_threshold(polygons) == wanted else polygons
    return png, polygons


def _told(callback, src, cancelled):
    """detect's callback for raster ``src``: ``callback``'s, its messages led by the raster's
    name; a cancel is kept in ``cancelled``, for the batch to stop."""
    if callback is None:
        return None
    name = Path(str(src)).name

    def told(fraction, message):
        if callback(fraction, f"{name}: {message}"):
            cancelled.append(src)
        return src in cancelled
    return told


def _failed(src, dst, err):
    """The item of raster ``src`` failed with ``err``: a bug (no one-line ``HsanomalyError``)
    is logged with its traceback (debug), which a line in the batch's report leaves out."""
    if not isinstance(err, HsanomalyError):
        LOGGER.debug("%s failed", src, exc_info=err)
    return BatchItem(src, str(dst), "failed", exception=err, error=str(err) if isinstance(
        err, HsanomalyError) else f"{src}: {type(err).__name__}: {describe(err)}")
