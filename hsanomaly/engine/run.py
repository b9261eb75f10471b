"""Tiled detection: read a window (plus halo), score it, keep the tile, assemble a GeoTIFF.

Memory is bounded by the tile size: a few tiles are in flight at once (``scored_tiles``:
reads, scoring and storing overlap), each written to the tile store as soon as it is scored.
The output GeoTIFFs are assembled from the store through the one write path
(``hsanomaly.io.atomic``): private temporary files, read back and checked, then renamed, so a
failed or cancelled run never leaves a half-written output and never
touches an earlier one, and an interrupted run can ``resume`` from the tiles it finished.
"""

import collections
import contextlib
import itertools
import os
import threading
import time
import warnings
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..defaults import MIN_TILE, TILE, TILE_THREADS
from ..errors import HsanomalyError
from ..io.atomic import (check_writable, describe, destination_of, native_quiet, space_hint,
                         stage_raster, staged_into)
from ..io.checks import check_disk
from ..io.fingerprint import input_fingerprint
from ..io.heatmap import (add_overviews_and_statistics, band_descriptions, describe_bands,
                          heatmap_profile, heatmap_tags, to_cog)
from ..io.lock import check_unlocked
from ..io.ownership import TAG_PREFIX
from ..io.source import gdal_env, open_raster, open_source
from ..logs import progress_bar, stage as stage_log
from ..options import check_whole
from ..runtime import one_blas_thread
from ..scorers import check_extras
from ..scorers.halo import Place
from ..spelling import counted, spell, submit
from .store import (MANIFEST, TileStore, check_resumable, read_manifest, resume_hint,
                    run_fingerprint, store_path)

RUN_TAG = TAG_PREFIX + "RUN_FINGERPRINT"      # what detect-many compares to know a result is current
NEAR_CONSTANT = 1e-5                       # relative band range below which a raster is "constant"
RANGE = "_range"                           # per-tile input band minima and maxima, stored with the tile
COUNTS = "_counts"                         # per tile: valid pixels, and those the score left NaN
SPREAD = "_spread"                         # per tile: the finite scores' least and greatest, and
                                           # how many valid pixels scored infinite
SUMMARIES = (RANGE, COUNTS, SPREAD)        # a tile's arrays that are no output



@dataclass
class DetectResult:
    """What ``hsanomaly.detect`` did: the rasters written (``outputs``: the heatmap and any extra
    outputs), the tiles scored (and of them resumed), the seconds taken, the score, the model
    used, the polygons' count (``polygons``, if asked for), and the pixels scored and left
    out as nodata or by the exclusion ``mask`` (valid
    pixels the score could not score are neither: a warning counts them). ``text()`` is the
    line the command line prints.
    Plain values only: a batch keeps one per raster (a scorer here kept its model)."""
    path: str
    outputs: dict                 # output name -> path written
    tiles: int
    tiles_resumed: int
    seconds: float
    score: str                    # the score's name
    model: Optional[str] = None       # the model bundle used, if any
    polygons: Optional[int] = None    # number of target polygons written, if asked for
    pixels_scored: Optional[int] = None   # (None: tiles stored by an earlier version)
    pixels_nodata: Optional[int] = None   # left out as nodata, in every band or in some
    mask: Optional[str] = None            # the exclusion mask, whose pixels count as nodata

    def text(self, seconds: Optional[float] = None) -> str:
        """The one line the command line and QGIS print: tiles, time (``seconds``, the
        result's own unless given), pixels scored and left out."""
        seconds = self.seconds if seconds is None else seconds
        line = f"{self.path}: {self.score} heatmap, {counted(self.tiles, 'tile')} in {seconds:.1f} s"
        if self.tiles_resumed:
            line += f" ({self.tiles_resumed} resumed)"
        if self.pixels_scored is not None:
            line += (f"; {counted(self.pixels_scored, 'pixel')} scored, {self.pixels_nodata:,} "
                     f"nodata{' or masked' if self.mask else ''}")
        return line


def check_tile(tile):
    """Refuse, with one line, a tile size that is not a whole number of at least MIN_TILE."""
    check_whole("tile", tile, MIN_TILE)


def check_footprint(source, scorer):
    """Refuse an image smaller than the neighbourhood the score looks at (a ring would run
    past every edge); before a quick model is trained for it, too."""
    size = scorer.footprint
    if size > min(source.height, source.width):
        way = next((spell(o) for o in ("rings", "outer") if o in scorer.options), None)
        raise HsanomalyError(f"{source.name}: the {size}x{size} window of score {scorer.name!r} is "
                             f"larger than the {source.height}x{source.width} image"
                             + (f"; a smaller {way} would fit it" if way else ""))


def check_scorable(source, scorer):
    """Everything about the source that can refuse or warn before the work: the scorer's own
    check (a model's bands, wavelengths, value range), its window, and what the data warns of
    (``check_data``: values float32 rounds, nodata in a few bands only)."""
    scorer.check(source)
    check_footprint(source, scorer)
    source.check_data()


def plan_outputs(source, scorer, dst, extras=None, tile=TILE):
    """Output name -> (path, bands), after checking the tile size, the source and the paths."""
    check_tile(tile)
    check_scorable(source, scorer)
    outputs = {"score": (str(dst), 1)}
    check_extras(type(scorer), extras)
    for name, path in (extras or {}).items():
        outputs[name] = (str(path), scorer.extra_bands[name])
    for path, _ in outputs.values():
        check_writable(path, directory=False)
    return outputs


def score_tile(source, scorer, window):
    """All outputs of one tile as float32 arrays (bands, rows, cols), NaN where input is invalid."""
    return score_block(scorer, *source.read(window, scorer.halo), place_of(source, scorer, window))


def place_of(source, scorer, window):
    """Where the block of ``window`` lies, for a scorer whose neighbouring blocks share results
    (``Scorer.shares_halo``); None for the others."""
    if not scorer.shares_halo:
        return None
    return Place(source.token, int(window.row_off) - scorer.halo, int(window.col_off) - scorer.halo)


def score_block(scorer, block, valid, place=None):
    """``score_tile`` for a block already read with the scorer's halo."""
    h = scorer.halo
    inner_valid = valid[h:valid.shape[0] - h, h:valid.shape[1] - h]
    result = {}
    found = scorer.score_block(block, valid, place) if place is not None else \
        scorer.score_block(block, valid)
    for name, value in found.items():
        value = np.asarray(value, dtype=np.float32)
        value[:, ~inner_valid] = np.nan
        result[name] = value
    pixels = block[:, h:block.shape[1] - h, h:block.shape[2] - h][:, inner_valid]
    result[RANGE] = (np.stack([pixels.min(axis=1), pixels.max(axis=1)]).astype(np.float64)
                     if pixels.size else np.full((2, block.shape[0]), np.nan))
    scores = result["score"][0][inner_valid]
    finite = scores[np.isfinite(scores)]
    result[COUNTS] = np.array([inner_valid.sum(), np.isnan(scores).sum()], dtype=np.int64)
    result[SPREAD] = np.array([finite.min() if finite.size else np.nan,
                               finite.max() if finite.size else np.nan,
                               np.isinf(scores).sum()], dtype=np.float64)
    return result


def check_outcome(name, scorer, summaries):
    """What the scores of a whole raster say about it, from its tiles' ``summaries`` (RANGE,
    COUNTS, SPREAD; a tile stored by an earlier version may lack some): a constant input, valid
    pixels left without a score (``check_scored``), scores that overflowed to infinity (an
    error when every one did: the heatmap would be one value), and a heatmap of one value.
    Returns (valid pixels, those left without a score), or None where a tile lacks them."""
    from ..io.checks import warn

    counts = [summary.get(COUNTS) for summary in summaries]
    totals = None if not counts or any(c is None for c in counts) else \
        tuple(int(v) for v in np.sum(counts, axis=0))
    if totals is not None and totals[0] == 0:      # a model-only score fits nothing to refuse it
        raise HsanomalyError(f"{name}: no pixel to score: every one is nodata (or masked)")
    if totals is not None:
        check_scored(name, scorer, *totals)
    if _is_constant([summary.get(RANGE) for summary in summaries]):
        warn(f"{name}: every band is constant or nearly so (varies by less than "
             f"{NEAR_CONSTANT:g} of its value); the scores carry no information")
        return totals
    spreads = [summary.get(SPREAD) for summary in summaries]
    if totals is None or any(s is None for s in spreads):
        return totals
    spreads = np.array(spreads)
    infinite, low, high = int(spreads[:, 2].sum()), np.nanmin(spreads[:, 0], initial=np.inf), \
        np.nanmax(spreads[:, 1], initial=-np.inf)
    valid, unscored = totals
    if infinite and not np.isfinite(low):
        raise HsanomalyError(f"{name}: every {scorer.name} score overflowed to infinity, so the "
                             "heatmap would hold one value: its values are far too large for "
                             "the score's arithmetic (other units than the model's training "
                             "data?)")
    if infinite:
        warn(f"{name}: {counted(infinite, 'pixel')} {'has' if infinite == 1 else 'have'} an "
             f"infinite {scorer.name} score (values too large for the score's arithmetic); "
             f"{'it ranks' if infinite == 1 else 'they rank'} beyond every other")
    elif low == high and valid - unscored > 1:
        warn(f"{name}: every pixel has the same {scorer.name} score ({low:g}), so the heatmap "
             "ranks nothing: the scene holds too few distinct spectra for this score")
    return totals


def check_scored(name, scorer, valid, unscored):
    """Say how many of the ``valid`` pixels ``scorer`` could not score (``unscored``, left
    NaN): a warning for some, an error for all. The heatmap shows them as nodata, so without
    this they would pass for it."""
    if not unscored:
        return
    cause = scorer.unscored_cause
    if unscored == valid and scorer.purge:
        cause += ("; or, fitted on another scene, every pixel here lies above the purge "
                  "threshold fitted there, which then leaves them all out (other units?)")
    if unscored == valid:
        raise HsanomalyError(f"{name}: the {scorer.name} score left every valid pixel without a "
                             f"value: {cause}")
    from ..io.checks import warn

    warn(f"{name}: {unscored} of {valid} valid pixels ({unscored / valid:.2%}) have no "
         f"{scorer.name} score (NaN in the heatmap, like nodata): {cause}")


def config(source, scorer, outputs, tile, model=True):
    """The configuration a run's tiles depend on, as plain JSON (the model digest among the
    scorer's parameters; ``model=False``: the scorer's settings only, known before its model
    is read)."""
    job = {"shape": [source.count, source.height, source.width],
           "scorer": scorer.params() if model else scorer.settings(),
           "outputs": {k: v[1] for k, v in outputs.items()}, "tile": int(tile)}
    if source.exclusion is not None:        # the pixels left out change every tile's scores
        job["excluded"] = source.exclusion.digest
    return job


def manifest(src, source, scorer, outputs, tile):
    """What a run's tile store records: the input's fingerprint and the configuration (which
    make the run's fingerprint), and the exclusion mask's name, for messages."""
    job = {"input": input_fingerprint(src, source), "config": config(source, scorer, outputs, tile)}
    if source.exclusion is not None:
        job["mask"] = source.exclusion.path
    return job


def expected_fingerprint(src, scorer, tile=TILE):
    """The run fingerprint a heatmap of ``src`` scored now by ``scorer`` would carry."""
    source = src if hasattr(src, "read") else open_source(src)
    try:
        job = manifest(src, source, scorer, {"score": (None, 1)}, tile)
    finally:
        if source is not src:
            source.close()
    return run_fingerprint(job["input"], job["config"])


def check_resumed_run(src, dst, scorer, extras=None, tile=TILE):
    """Refuse --resume up front, before a quick model is trained for it, where the run would
    refuse it once trained: the interrupted run of ``dst`` scored another input, or with other
    settings (the model's own aside: trained again, the quick model is the same)."""
    store = store_path(dst)
    if not (store / MANIFEST).is_file():
        return                   # nothing to resume: the engine says so and scores anew
    outputs = {"score": (str(dst), None), **{name: (str(path), None)
                                             for name, path in (extras or {}).items()}}
    source = src if hasattr(src, "read") else open_source(src)
    try:
        job = {"input": input_fingerprint(src, source),
               "config": config(source, scorer, outputs, tile, model=False)}
        if source.exclusion is not None:
            job["mask"] = source.exclusion.path
    finally:
        if source is not src:
            source.close()
    check_resumable(store, job, read_manifest(store), model=False)   # a torn one: refused


def read_fingerprint(path):
    """The run fingerprint recorded in heatmap ``path``, or None."""
    import rasterio

    try:
        with open_raster(path) as ds:
            return ds.tags().get(RUN_TAG)
    except (HsanomalyError, rasterio.errors.RasterioError):
        return None


def assemble(store, source, windows, outputs, descriptions=None, tags=None, stage=None,
             cog=False):
    """Write every output GeoTIFF from the stored tiles through one staged write: each into a
    private temporary file, with ``descriptions`` ({output: band descriptions}), dataset
    ``tags``, overviews and statistics (a Cloud-Optimized GeoTIFF with ``cog``), read back and
    checked, then all renamed into place (by ``stage``'s owner when one is given)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with staged_into(stage) as stage:
        files = {}        # output name -> (staged path, path GDAL writes first)
        for name, (path, bands) in outputs.items():
            tmp = stage_raster(stage, path, source.width, source.height, bands)
            files[name] = (tmp, tmp.with_name(tmp.name + ".gtiff") if cog else tmp)
        with warnings.catch_warnings(), gdal_env(), native_quiet():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with contextlib.ExitStack() as datasets:
                open_outputs = {
                    name: datasets.enter_context(rasterio.open(
                        files[name][1], "w", **heatmap_profile(source, bands)))
                    for name, (_, bands) in outputs.items()}
                for index, window in enumerate(windows):    # each tile read once for all outputs
                    tile = store.get(index)
                    for name, dst in open_outputs.items():
                        dst.write(tile[name], window=window)
                for name, dst in open_outputs.items():
                    bands = outputs[name][1]
                    describe_bands(dst, source, (descriptions or {}).get(name) or
                                   [name if bands == 1 else f"{name} {b + 1}" for b in range(bands)])
                    if tags:
                        dst.update_tags(**tags)
            for tmp, written in files.values():
                add_overviews_and_statistics(written)
                if cog:
                    to_cog(written, tmp)
                    written.unlink()


def scored_tiles(source, scorer, windows, todo, threads=TILE_THREADS):
    """(index, outputs) of each tile in ``todo``, in order, with ``threads`` tiles in flight.

    Reading, scoring and the caller's writing overlap: worker threads score tiles at once
    (numpy and onnxruntime release the GIL) while the caller stores the previous one. Reads
    take turns (one dataset handle is not thread-safe). The first tile is scored alone, so
    state a scorer builds on first use (sessions, codebooks) is built once, not raced.
    """
    todo = list(todo)
    if not todo:
        return
    try:
        with one_blas_thread():
            yield from _scored_tiles(source, scorer, windows, todo, threads)
    finally:
        scorer.release()


def _scored_tiles(source, scorer, windows, todo, threads):
    yield todo[0], score_tile(source, scorer, windows[todo[0]])
    rest = iter(todo[1:])
    if threads <= 1:
        for index in rest:
            yield index, score_tile(source, scorer, windows[index])
        return
    lock = threading.Lock()

    def job(index):
        with lock:
            block, valid = source.read(windows[index], scorer.halo)
        return score_block(scorer, block, valid, place_of(source, scorer, windows[index]))

    pending = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="hsanomaly-tile") as pool:
        try:
            for index in itertools.islice(rest, threads + 1):
                pending.append((index, submit(pool, job, index)))
            while pending:
                index, future = pending.popleft()
                result = future.result()
                for following in itertools.islice(rest, 1):
                    pending.append((following, submit(pool, job, following)))
                yield index, result
        finally:
            for _, future in pending:       # cancelled or failed: start nothing more
                future.cancel()


def fit_scorer(scorer, source):
    """``scorer.fit(source)`` with one BLAS thread (``runtime.one_blas_thread``); returns it."""
    with one_blas_thread():
        return scorer.fit(source)


class LocalExecutor:
    """Tiles scored in this process, ``threads`` at once (``scored_tiles``)."""

    distributed = False          # its tiles are written by this process

    def __init__(self, threads=TILE_THREADS):
        self.threads = threads

    def fit_source(self, source):
        return source

    def run(self, source, scorer, store, windows, todo):
        """Score and store the tiles ``todo``; yield each index once it is stored."""
        with contextlib.closing(scored_tiles(source, scorer, windows, todo, self.threads)) as tiles:
            for index, outputs in tiles:
                store.put(index, outputs)
                yield index


def detect(src, dst, scorer, *, extras=None, tile=TILE, resume=False, executor=None,
           progress=False, callback=None, stage=None, cog=False, trained_on=None):
    """Score raster ``src`` into GeoTIFF ``dst`` with ``scorer``: plan, fit, store, assemble.

    extras: optional {output name: path} for the scorer's extra outputs (e.g. "recon").
    executor: where tiles are scored; this process by default, or
    ``hsanomaly.distributed.DaskExecutor(client)`` for a Dask cluster. The output is the same.
    callback(fraction, message) -> True cancels: nothing is written, the tile store is removed.
    cog: write Cloud-Optimized GeoTIFFs (GDAL's COG driver) instead of tiled GeoTIFFs.
    stage: an ``hsanomaly.io.atomic.Staging`` to assemble into; its owner commits it (and the
    tile store is removed then), so more outputs can be written and replaced together.
    trained_on: the input's fingerprint when the scorer's quick model was trained on it: the
    input must not have changed since.
    On an error the outputs keep their previous content and finished tiles are kept for
    ``resume``; errors are one line (``HsanomalyError``).
    """
    start = time.perf_counter()
    executor = executor or LocalExecutor()
    source = src if hasattr(src, "read") else open_source(src)
    store, handed = None, False
    try:
        outputs = plan_outputs(source, scorer, dst, extras, tile)
        check_space(store_path(dst), outputs, source, resume)
        check_unlocked(store_path(dst))
        job = manifest(src, source, scorer, outputs, tile)
        if trained_on is not None and job["input"] != trained_on:
            raise HsanomalyError(f"{source.name}: the input changed while the quick model was "
                                 "trained on it, so the model and the heatmap would see two "
                                 "rasters; nothing was replaced: rerun")
        windows = source.windows(tile)
        if scorer.fits_on_scene:
            if callback and callback(0.0, f"fitting {scorer.name} on {source.name}"):
                raise HsanomalyError(f"{dst}: cancelled")
            with stage_log(f"fitting {scorer.name} on {source.name}"):
                fit_scorer(scorer, executor.fit_source(source))
        store = TileStore(store_path(dst), job, resume)
        done = _score(executor, source, scorer, store, windows, outputs, dst, progress, callback)
        if input_fingerprint(src, source) != job["input"]:   # rewritten in place meanwhile
            store.remove()          # tiles of two inputs: none is worth resuming
            raise HsanomalyError(f"{source.name}: the input changed while it was scored, so the "
                                 "heatmap would mix both; nothing was replaced: rerun")
        summaries = [store.members(i, SUMMARIES) for i in range(len(windows))]
        try:
            totals = check_outcome(source.name, scorer, summaries)
        except HsanomalyError:
            store.remove()          # a rerun would score the same: nothing to resume
            raise
        tags = {**heatmap_tags(scorer, source, job["input"]), RUN_TAG: store.fingerprint}
        descriptions = {name: band_descriptions(scorer, name, bands)
                        for name, (_, bands) in outputs.items()}
        with staged_into(stage) as stage, stage_log("assembling " + str(dst)):
            assemble(store, source, windows, outputs, descriptions, tags, stage, cog)
            stage.on_commit(store.remove)
            stage.on_end(store.release)     # the stage's owner ends it: the lock lasts till then
            handed = True
        result = DetectResult(outputs["score"][0], {k: v[0] for k, v in outputs.items()},
                              len(windows), len(done), time.perf_counter() - start, scorer.name,
                              mask=None if source.exclusion is None else source.exclusion.path)
        if totals is not None:
            valid, unscored = totals
            result.pixels_scored = valid - unscored
            result.pixels_nodata = source.height * source.width - valid
        return result
    except Exception as err:
        if store is not None and not store.resumed and not store.done():
            store.remove()      # nothing finished: nothing to resume
        one_line = runtime_error(err, dst)
        if one_line is None:
            raise
        raise one_line from None
    finally:
        if store is not None and not handed:
            store.release()     # failed, cancelled or interrupted: another run may go on
        source.close()


def _score(executor, source, scorer, store, windows, outputs, dst, progress, callback):
    """Score the tiles the store lacks (a damaged or misshapen stored tile counts as lacking);
    returns the indices that were already done."""
    def expected(index):
        window = windows[index]
        return {name: (bands, int(window.height), int(window.width))
                for name, (_, bands) in outputs.items()}

    done = store.discard_bad(store.done(), expected) if store.resumed else set()
    todo = [i for i in range(len(windows)) if i not in done]
    with progress_bar(progress, total=len(windows), initial=len(done), unit="tile",
                      desc=f"{scorer.name} {Path(str(dst)).name}") as bar:
        # closed on every way out (an interrupt too): tile threads still reading the source
        # end before it is closed, which would pull the dataset from under them (a crash)
        with contextlib.closing(executor.run(source, scorer, store, windows, todo)) as tiles:
            for count, _ in enumerate(tiles, start=len(done) + 1):
                bar.update()
                if callback and callback(count / len(windows), f"tile {count}/{len(windows)}"):
                    tiles.close()
                    store.remove()
                    raise HsanomalyError(f"{dst}: cancelled")
    missing = set(range(len(windows))) - store.done()
    if missing and not store.path.is_dir():
        raise HsanomalyError(f"{store.path}: the tile store was removed during the run (by "
                             "another process?); rerun")
    if missing:
        raise HsanomalyError(f"{store.path}: {len(missing)} tiles written by workers are not "
                             "visible here; the output must be on storage the workers share"
                             if executor.distributed else
                             f"{store.path}: {counted(len(missing), 'finished tile')} went "
                             "missing from the tile store during the run (removed by another "
                             "process?); rerun")
    return done


def runtime_error(err, dst):
    """A one-line HsanomalyError for the ways scoring fails under the user (memory, disk,
    onnxruntime), or None for anything else (a bug, which keeps its traceback)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    resume = f"finished tiles are kept: {resume_hint()}"
    if isinstance(err, HsanomalyError):
        return None
    if isinstance(err, MemoryError) or (type(err).__module__.startswith("onnxruntime") and
                                        ("alloc" in text.lower() or "memory" in text.lower())):
        return HsanomalyError(f"{dst}: out of memory while scoring (try a smaller {spell('tile')} or "
                              f"fewer workers); {resume}")
    if type(err).__module__.startswith("onnxruntime"):
        return HsanomalyError(f"{dst}: onnxruntime failed while scoring ({text}); {resume}")
    if type(err).__module__.startswith("distributed") or isinstance(err, CancelledError):
        return HsanomalyError(f"{dst}: the Dask cluster was lost while scoring "
                              f"({type(err).__name__}: {text}); {resume}")
    if isinstance(err, OSError):
        where = dst if err.filename is None else destination_of(err.filename)
        hint = space_hint(where, err)        # GDAL's "Write failed" hides a full disk or a limit
        if hint:
            resume = f"finished tiles are kept: once there is room, {resume_hint()}"
        return HsanomalyError(f"{where}: {describe(err)}{hint}; {resume}")
    return None


def check_space(store, outputs, source, resume=False):
    """Refuse a run whose tile store and outputs (float32, at most their raw size) would not
    fit on their file systems, saying how much is needed."""
    pixels = source.height * source.width * 4
    need = {}

    def add(path, nbytes):
        folder = os.path.dirname(os.path.abspath(path))
        device = os.stat(folder).st_dev
        need[device] = (folder, need.get(device, (folder, 0))[1] + nbytes)

    stored = sum(f.stat().st_size for f in Path(store).glob("tile_*.npz")) if resume else 0
    add(store, max(0, pixels * sum(b for _, b in outputs.values()) - stored))
    for path, bands in outputs.values():
        add(path, pixels * bands)
    for folder, nbytes in need.values():
        check_disk(folder, nbytes, "the tile store and outputs need")


def _is_constant(ranges):
    """True when every band of the input, over the stored tiles' ``ranges`` (None for a tile
    without one), is constant or nearly so."""
    lo = hi = None
    for r in ranges:
        if r is None:             # a tile without the range or damaged: assemble will say
            return False
        lo = r[0] if lo is None else np.fmin(lo, r[0])
        hi = r[1] if hi is None else np.fmax(hi, r[1])
    if lo is None or not np.isfinite(lo).any():
        return False
    span = np.nan_to_num(hi - lo)
    scale = np.maximum(np.abs(np.nan_to_num(lo)), np.abs(np.nan_to_num(hi)))
    return bool(np.all(span <= NEAR_CONSTANT * scale))


def score_array(source, scorer, tile=TILE):
    """Every output of a fitted ``scorer`` over an in-memory-sized ``source``, as whole arrays.

    The same tiles as ``detect`` (so the same numbers), without a tile store or a GeoTIFF:
    the path for small scenes, the ``Detector`` and the research harness.
    """
    check_scorable(source, scorer)
    windows = source.windows(tile)
    arrays, summaries = {}, []
    for index, outputs in scored_tiles(source, scorer, windows, range(len(windows))):
        window = windows[index]
        summaries.append({name: outputs[name] for name in SUMMARIES})
        for name, value in outputs.items():
            if name in SUMMARIES:
                continue
            if name not in arrays:
                arrays[name] = np.full((value.shape[0], source.height, source.width), np.nan,
                                       np.float32)
            rows, cols = window.toslices()
            arrays[name][:, rows, cols] = value
    check_outcome(source.name, scorer, summaries)
    return arrays
