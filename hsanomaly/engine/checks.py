"""The engine's checks: before a run (the tile size, the image against the score's window,
the scorer against the source, the disk), after it (what the tiles' summaries say of the
scores: nothing scored, one value everywhere, a constant input), and its errors worded as
one line."""

import os
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np

from ..defaults import MIN_TILE
from ..errors import HsanomalyError, HsanomalyWarning, OutOfResources, describe, raised_by_callback
from ..io.atomic import destination_of, failed_write
from ..io.checks import absolute, check_disk, check_inodes
from ..options import check_whole
from ..spelling import counted, spell
from .store import TILE_FILES, tiles_kept

SMALLEST_RING = 3       # the smallest outer window a ring takes (3x3 around a 1x1 guard)
NEAR_CONSTANT = 32      # float32 steps of a band's largest value within which it is "constant"
RANGE = "_range"                           # per-tile input band minima and maxima, stored with the tile
COUNTS = "_counts"                         # per tile: valid pixels, and those the score left NaN
SPREAD = "_spread"                         # per tile: the finite scores' least and greatest, and
                                           # how many valid pixels scored infinite
SUMMARIES = (RANGE, COUNTS, SPREAD)        # a tile's arrays that are no output


def check_tile(tile):
    """Refuse, with one line, a tile size that is not a whole number of at least MIN_TILE."""
    check_whole("tile", tile, MIN_TILE)


def check_footprint(source, scorer):
    """Refuse an image smaller than the neighbourhood the score looks at (a ring would run
    past every edge); before a quick model is trained for it, too."""
    size = scorer.footprint
    if size > min(source.height, source.width):
        way = next((spell(o) for o in ("rings", "outer") if o in scorer.options), None)
        hint = ""
        if way and min(source.height, source.width) >= SMALLEST_RING:
            hint = f"; a smaller {way} would fit it"
        elif way:
            hint = (f"; no ring fits an image under {SMALLEST_RING} pixels across (rx and gmm "
                    "score it)")
        raise HsanomalyError(f"{source.name}: the {size}x{size} window of score {scorer.name!r} is "
                             f"larger than the {source.height}x{source.width} image{hint}")


def check_scorable(source, scorer, own_model=False):
    """Everything about the source that can refuse or warn before the work: the scorer's own
    check (a model's bands, wavelengths, value range, ``own_model`` as ``Scorer.check`` takes
    it), its window, and what the data warns of (``check_data``: values float32 rounds,
    nodata in a few bands only)."""
    scorer.check(source, own_model)
    check_footprint(source, scorer)
    source.check_data()


LINE_TOP = 0.001        # the share of a heatmap's scores, the highest, looked at for a line
LINE_LEAST = 20         # ... and the fewest of them, where a raster has few pixels
LINE_SHARE = 0.75       # one column or row holding more than this share of them is said (the
#                         edge row of a scene's gradient held 0.55, a noisy column all of them)
LINE_FEWEST = 10        # ... where there are this many columns (rows) at least: in a scene of
#                         two rows, one holds most of them by chance
LINE_SAMPLE = 1 << 20   # scores the threshold of the highest is taken from, at most


def warn_lined_up(heatmap, name):
    """Say a heatmap (a file's path, or its scores as an array), scored for ``name``, whose
    highest scores lie mostly in one column or row: a push-broom detector's bad or noisy
    column, or a dropped line, ranked above every target (a noisy column held all of RX's top
    100 pixels of the example), which no score can tell from a target and the probe windows
    may miss."""
    from ..io.checks import warn

    counted_high = _high_by_line(heatmap)
    if counted_high is None:
        return
    columns, lines = counted_high
    top = int(columns.sum())
    for kind, counts in (("column", columns), ("row", lines)):
        at = int(np.argmax(counts))
        if len(counts) >= LINE_FEWEST and counts[at] > LINE_SHARE * top:
            message = (f"{name}: {counts[at]} of its {top} highest scores lie in {kind} "
                       f"{at + 1} of {len(counts)}: a detector artefact (a bad or noisy {kind}"
                       + (", a dropped line" if kind == "row" else ", a stripe") + ") ranked "
                       f"above the targets? Mask it ({spell('mask')}) and score again")
            try:
                warn(message)
            except HsanomalyWarning:       # made an error (-W error): the file is in place
                if isinstance(heatmap, np.ndarray):
                    raise
                raise HsanomalyWarning(f"{message} (the heatmap is written)") from None
            return


def _high_by_line(heatmap):
    """(per column, per row) counts of a heatmap's highest scores (``LINE_TOP``, of a
    sample's threshold), a file read in strips; None where they are too few to tell, or the
    file does not read (the read-back of the outputs says so)."""
    import rasterio

    from ..io.gdal import open_raster

    if isinstance(heatmap, np.ndarray):
        return _counted(lambda w: heatmap[w.row_off:w.row_off + w.height], *heatmap.shape[::-1])
    try:
        with open_raster(heatmap, check=False) as ds:
            return _counted(lambda w: ds.read(1, window=w), ds.width, ds.height)
    except (HsanomalyError, rasterio.errors.RasterioError):
        return None


def _counted(read, width, height):
    """``_high_by_line`` of the scores ``read(window)`` gives of a raster of ``width`` and
    ``height``."""
    from ..io.heatmap import strips as strips_of

    strips = strips_of(width, height)
    step = max(1, width * height // LINE_SAMPLE)   # the threshold of a sample
    sample = np.concatenate([v[np.isfinite(v)][::step] for v in map(read, strips)])
    share = max(LINE_TOP, LINE_LEAST / max(1, sample.size * step))
    if sample.size < 2 * LINE_LEAST or share > 0.5 / LINE_LEAST:
        return None
    threshold = np.quantile(sample, 1 - share)
    columns, lines = np.zeros(width, np.int64), np.zeros(height, np.int64)
    for window in strips:
        high = read(window) >= threshold       # NaN is not
        columns += high.sum(axis=0)
        lines[window.row_off:window.row_off + window.height] = high.sum(axis=1)
    return columns, lines


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
    if totals is not None and totals[0] == 1:
        warn(f"{name}: one valid pixel: its score ranks it against nothing")
        return totals
    if _is_constant([summary.get(RANGE) for summary in summaries]):
        warn(f"{name}: every band is constant or nearly so (varies over no more than "
             f"{NEAR_CONSTANT} float32 steps of its values); the scores carry no information")
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


def check_space(store, outputs, source, resume=False, cog=False, tiles=0):
    """Refuse a run whose tile store and outputs would not fit on their file systems, saying
    how much is needed: the store at most the outputs' raw size (float32), and each output
    with its overviews (a third more), twice with ``cog`` (GDAL's COG driver copies a staged
    GeoTIFF); and one whose ``tiles`` files the store's file system has no inodes left for
    (it filled up in the middle of the run, with room to spare)."""
    pixels = source.height * source.width * 4
    need = {}

    def add(path, nbytes):
        folder = os.path.dirname(absolute(path))
        device = os.stat(folder).st_dev
        need[device] = (folder, need.get(device, (folder, 0))[1] + nbytes)

    kept = list(Path(store).glob(TILE_FILES)) if resume else []
    add(store, max(0, pixels * sum(b for _, b in outputs.values())
                   - sum(f.stat().st_size for f in kept)))
    for path, bands in outputs.values():
        add(path, pixels * bands * 4 // 3 * (2 if cog else 1))
    for folder, nbytes in need.values():
        check_disk(folder, nbytes, "the tile store and outputs need")
    check_inodes(os.path.dirname(absolute(store)), tiles - len(kept), "the tile store")


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
    # in float32 steps, not relative to the value: data far from zero (an offset) varies by
    # a small share of its value and still ranks its pixels
    return bool(np.all(span <= NEAR_CONSTANT * np.spacing(scale.astype(np.float32))))


def runtime_error(err, dst, kept=True):
    """A one-line HsanomalyError for the ways scoring fails under the user (memory, disk,
    onnxruntime, Dask), or None for anything else (a bug, which keeps its traceback).
    ``kept``: whether finished tiles are kept for a resume."""
    text = describe(err)
    resume = tiles_kept() if kept else "nothing was written"
    if isinstance(err, HsanomalyError) or raised_by_callback(err):   # the caller's: as it is
        return None
    if isinstance(err, MemoryError) or (type(err).__module__.startswith("onnxruntime") and
                                        ("alloc" in text.lower() or "memory" in text.lower())):
        return OutOfResources(f"{dst}: out of memory while scoring (try a smaller {spell('tile')} or "
                              f"fewer workers); {resume}")
    if type(err).__module__.startswith("onnxruntime"):
        return HsanomalyError(f"{dst}: onnxruntime failed while scoring ({text}); {resume}")
    if type(err).__name__ == "KilledWorker":      # distributed's, before any tile too (fitting)
        return HsanomalyError(f"{dst}: the Dask workers running one task died each time it "
                              f"ran (out of memory?); {resume}")
    if type(err).__module__.startswith("distributed") or isinstance(err, CancelledError):
        return HsanomalyError(f"{dst}: the Dask cluster was lost "
                              f"({type(err).__name__}: {text}); {resume}")
    if isinstance(err, OSError):
        where = dst if err.filename is None else destination_of(err.filename)
        kind, hint = failed_write(where, err)   # GDAL's "Write failed" hides a full disk, a limit
        if kind is OutOfResources:
            resume = tiles_kept(room=True) if kept else "make room and rerun"
        return kind(f"{where}: {describe(err)}{hint}; {resume}")
    return None
