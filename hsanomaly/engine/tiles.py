"""Scoring tiles: a window read with its halo, scored, summarised for the checks; tiles in
flight at once in threads (``scored_tiles``), or every tile of a small source into whole
arrays (``score_array``)."""

import collections
import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..defaults import TILE, TILE_THREADS
from ..io.gdal import gdal_env
from ..runtime import one_blas_thread
from ..scorers.halo import Place
from ..spelling import submit
from .checks import COUNTS, RANGE, SPREAD, SUMMARIES, check_outcome, check_scorable

def score_tile(source, scorer, window):
    """All outputs of one tile as float32 arrays (bands, rows, cols), NaN where input is invalid."""
    return tile_outputs(scorer, *source.read(window, scorer.halo), place_of(source, scorer, window))


def place_of(source, scorer, window):
    """Where the block of ``window`` lies, for a scorer whose neighbouring blocks share results
    (``Scorer.shares_halo``); None for the others."""
    return Place.of(source, window, scorer.halo) if scorer.shares_halo else None


def tile_outputs(scorer, block, valid, place=None):
    """``score_tile`` for a block already read with the scorer's halo: the scorer's outputs
    and their summaries (``score_block`` gives the outputs only)."""
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


def scored_tiles(source, scorer, windows, todo, threads=TILE_THREADS):
    """(index, outputs) of each tile in ``todo``, in order, with ``threads`` tiles in flight.

    Reading, scoring and the caller's writing overlap: worker threads score tiles at once
    (numpy and onnxruntime release the GIL) while the caller stores the previous one. Reads
    take turns (one dataset handle is not thread-safe). The first tile is scored alone, so
    state a scorer builds on first use (sessions, codebooks) is built once, not raced.
    """
    todo = list(todo)
    try:
        if todo:
            with tile_reads(source, scorer, int(windows[todo[0]].height)):
                yield from _scored_tiles(source, scorer, windows, todo, threads)
    finally:
        scorer.release()


@contextlib.contextmanager
def tile_reads(source, scorer, rows=TILE):
    """One BLAS thread (``runtime.one_blas_thread``), and GDAL's block cache held, for the
    whole loop, at what ``source``'s reads of tiles of ``rows`` rows need: each read's own
    setting is put back as the read ends, which would drop a striped raster's strips between
    two tiles (``RasterSource.cache_for``)."""
    with one_blas_thread(), gdal_env(source.cache_for(min(rows, source.height)
                                                      + 2 * scorer.halo)):
        yield


def _scored_tiles(source, scorer, windows, todo, threads):
    yield todo[0], score_tile(source, scorer, windows[todo[0]])
    rest = iter(todo[1:])
    if threads <= 1:
        for index in rest:
            yield index, score_tile(source, scorer, windows[index])
        return

    def job(index):      # the source takes turns at its dataset handle (RasterSource._reading)
        block, valid = source.read(windows[index], scorer.halo)
        return tile_outputs(scorer, block, valid, place_of(source, scorer, windows[index]))

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


def fit_scorer(scorer, source, then_scored=False):
    """``scorer.fit(source)`` over its tiles (``tile_reads``); returns it. ``then_scored``:
    this process scores ``source`` next, so what the fit solved for its pixels (the purge
    fit's blocks, ``scorers.halo``) is kept for its tiles (``Scorer.keep_fit``), which let it
    go."""
    scorer.keep_fit = then_scored
    try:
        with tile_reads(source, scorer):
            return scorer.fit(source)
    finally:
        scorer.keep_fit = False


def fit_and_score(source, scorer, threads=TILE_THREADS):
    """``score_array`` of ``scorer`` fitted on ``source`` first where it fits on scenes: a scene
    scored against itself, as the research harness and the benchmarks score one."""
    if scorer.fits_on_scene:
        fit_scorer(scorer, source, then_scored=True)
    return score_array(source, scorer, threads=threads)


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


def score_array(source, scorer, tile=TILE, threads=TILE_THREADS, own_model=False):
    """Every output of a fitted ``scorer`` over an in-memory-sized ``source``, as whole arrays
    (``own_model`` as ``check_scorable`` takes it).

    The same tiles as ``detect`` (so the same numbers), without a tile store or a GeoTIFF:
    the path for small scenes, the ``Detector`` and the research harness.
    """
    check_scorable(source, scorer, own_model)
    windows = source.windows(tile)
    arrays, summaries = {}, []
    for index, outputs in scored_tiles(source, scorer, windows, range(len(windows)), threads):
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
