"""A score threshold from a false-alarm rate, read chunk by chunk from a heatmap GeoTIFF.

Thresholds are exact order statistics of the finite scores, found by a two-pass radix
select: every float32 score maps to a 32-bit key that sorts like the score; a first pass
counts keys by their high 16 bits, a second counts the low 16 bits inside the few bins that
hold the wanted ranks. Each pass is a sum of fixed-size histograms over chunks
(``score_histogram``), so a distributed runner can map it over chunks on a cluster and
pass its own ``reduce``. Memory is bounded by the chunk size, not the raster size.

``far="auto"`` fits the upper tail instead (see ``auto_threshold``).
"""


import math
from functools import partial

import numpy as np

from .errors import HsanomalyError
from .io.checks import warn
from .io.scores import READ_CHUNK, heatmap_array, read_whole, score_chunks
from .rates import check_rate, rate_count
from .spelling import spell

HALF_BITS = 16
HALF = 1 << HALF_BITS         # histogram bins per pass
AUTO_MIN_RATE = 1e-6          # auto: the tail fit is extrapolated at most this far


# --- order keys and histograms: the per-chunk pieces a distributed reduce maps -------------

def order_keys(scores):
    """uint32 keys that sort like the scores (as float32); NaN is dropped, +-inf kept (an
    infinite score is above every threshold, so it counts among the pixels above)."""
    values = np.asarray(scores, dtype=np.float32).ravel()
    bits = values[~np.isnan(values)].view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def key_scores(keys):
    """The float32 scores of ``order_keys`` keys (the inverse mapping)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


def score_histogram(scores, prefixes=None):
    """Counts of one chunk's finite scores by key: by the high 16 bits (``prefixes=None``,
    shape (65536,)), or by the low 16 bits of the keys whose high bits are each of
    ``prefixes`` (shape (len(prefixes), 65536)). Sums over chunks give the raster's counts."""
    keys = order_keys(scores)
    high = keys >> HALF_BITS
    if prefixes is None:
        return np.bincount(high, minlength=HALF)
    low = keys & np.uint32(HALF - 1)
    return np.stack([np.bincount(low[high == p], minlength=HALF) for p in prefixes])


# --- reducing over a heatmap's chunks ------------------------------------------------------

def chunk_reduce(heatmap, chunk=READ_CHUNK):
    """``reduce(fn)``: the sum of ``fn(scores)`` over the heatmap's chunks, in this process."""
    def reduce(fn):
        total = None
        for _, scores in score_chunks(heatmap, chunk):
            part = fn(scores)
            total = part if total is None else total + part
        return total
    return reduce


def _order_statistics(coarse, ranks, reduce):
    """Exact scores at 0-based ascending ``ranks`` from the first-pass counts plus one more pass."""
    ranks = np.asarray(ranks, dtype=np.int64)
    cumulative = np.cumsum(coarse)
    prefixes = np.searchsorted(cumulative, ranks, side="right")
    below = cumulative[prefixes] - coarse[prefixes]
    unique = np.unique(prefixes)
    fine = np.cumsum(reduce(partial(score_histogram, prefixes=unique)), axis=1)
    rows = fine[np.searchsorted(unique, prefixes)]
    lows = np.array([np.searchsorted(row, r, side="right") for row, r in zip(rows, ranks - below)])
    return key_scores((prefixes.astype(np.uint32) << HALF_BITS) | lows.astype(np.uint32))


# --- thresholds --------------------------------------------------------------------------------

def threshold_from_far(heatmap, far, *, chunk=READ_CHUNK, reduce=None, name=None):
    """The score threshold at which a fraction ``far`` of the pixels lies above, from the
    scores alone (no labels).

    heatmap: a heatmap GeoTIFF path or a 2-D array; NaN/nodata pixels are ignored. An array,
    and a file stored wider than float32, is selected in memory, in its own precision.
    far: a false-alarm rate in (0, 1): the threshold is the exact order statistic with
    at most ``floor(far * n)`` of the n scores strictly above it. Targets are part of the
    distribution, so on a scene with targets slightly fewer background pixels pass.
    Or "auto": see ``auto_threshold``.
    reduce: ``reduce(fn)`` returning the sum of ``fn(scores)`` over all chunks of the
    heatmap; pass a cluster version to run the passes distributed (default: this process).
    name: how messages name the heatmap (default: its path), e.g. the output a staged
    temporary file becomes.
    """
    far = check_rate("far", far, auto=True)
    name = name or ("<array>" if isinstance(heatmap, np.ndarray) else heatmap)
    if far != "auto" and reduce is None and not isinstance(heatmap, np.ndarray):
        whole = read_whole(heatmap)
        heatmap = heatmap if whole is None else whole
    if far != "auto" and reduce is None and isinstance(heatmap, np.ndarray):
        values = heatmap_array(heatmap).astype(np.float64).ravel()
        values = values[~np.isnan(values)]
        if len(values) == 0:
            raise HsanomalyError(f"{name}: the heatmap has no score")
        rank = len(values) - 1 - rate_count(far, len(values))
        return float(np.partition(values, rank)[rank])
    reduce = reduce or chunk_reduce(heatmap, chunk)
    coarse = reduce(score_histogram)
    n = int(coarse.sum())
    if n == 0:
        raise HsanomalyError(f"{name}: the heatmap has no score")
    if far == "auto":
        return auto_threshold(coarse, reduce, name)
    return float(_order_statistics(coarse, [n - 1 - rate_count(far, n)], reduce)[0])


def auto_tail(n):
    """The upper-tail fraction the auto rule fits on: 10 / sqrt(n), within [1 %, 10 %].

    A larger raster resolves its tail further out, where the generalised Pareto model
    holds better, while still keeping 10 * sqrt(n) pixels above the fit's first quantile.
    """
    return min(0.1, max(0.01, 10 / math.sqrt(n)))


TAIL_PROBES = 33    # ranks through the fitted tail where ties tell rounding


def auto_threshold(coarse, reduce, name="<heatmap>"):
    """A threshold aimed at one false-alarm pixel per raster, from a fit of the upper tail
    (on pure backgrounds it leaves a few, more where the scores are log distances).

    Extreme-value theory (Pickands-Balkema-de Haan) says the excess of a score over a high
    threshold follows a generalised Pareto distribution, whatever the score (RX, -log p, a
    critic, a reconstruction cost). Its shape is estimated with Pickands' estimator from the
    exact quantiles at upper-tail fractions t, t/2 and t/4 (t from ``auto_tail``: 10 % on a
    100 x 100 scene, 1 % from a megapixel up), and the fitted tail is extrapolated to the
    rate 1 / n (one expected false-alarm pixel in the raster), but not below 1e-6, where
    the extrapolation stops being trustworthy.

    Why this rule: it adapts to light and heavy tails alike (a fixed ``median + k * MAD``
    gives false-alarm rates orders of magnitude apart for Gaussian and chi-square or
    Student backgrounds), and the fit only uses quantiles at or below the top t/4. Target
    pixels above those still shift their ranks, so the fit reads a heavier tail, and targets
    covering much more than t/10 of the pixels lift the threshold above them all (measured in
    docs/ablations.md): the rule errs towards fewer false alarms, and says when it found
    nothing.
    A fit lighter than exponential ends at a finite score, and the threshold lies below that
    end; where the scores at the top t/8 already pass it, the pixels above it may be the
    targets or a background the fit misread (abu-beach-2's mixture heatmap: 147 background
    pixels above), which no rule without labels tells apart: the threshold stands, and a
    warning says so.
    Its false alarms on pure backgrounds of several tail shapes and sizes are measured in
    tests/test_targets.py and docs/ablations.md (a least-squares fit over nine tail quantiles
    was no steadier).

    coarse: the summed first-pass ``score_histogram``; reduce: as in ``threshold_from_far``;
    name: the heatmap, for the error when infinite scores reach into the quantiles fitted.
    """
    n = int(coarse.sum())
    tail = auto_tail(n)
    tails = np.array([tail, tail / 2, tail / 4, tail / 8])
    fitted = n - 1 - np.floor(tails * n).astype(np.int64)
    probes = np.unique(np.linspace(fitted[0], n - 1, TAIL_PROBES).astype(np.int64))
    scores = _order_statistics(coarse, np.concatenate([fitted, probes]), reduce)
    q0, q1, q2, beyond = map(float, scores[:4])
    levels = len(np.unique(scores[4:]))
    if len(probes) == TAIL_PROBES and levels < len(probes) * 3 // 4:
        warn(f"{name}: the top {tail:.0%} of the scores hold few distinct values ({levels} "
             f"at {len(probes)} ranks probed): a heatmap rounded to steps (stored as integers?), "
             "whose tail the automatic threshold's fit misreads, and may leave many background "
             f"pixels above it; pass {spell('far')} (e.g. 1e-3) or {spell('threshold')}")
    if not np.isfinite([q0, q1, q2]).all():
        raise HsanomalyError(f"{name}: infinite scores reach into the top {tail:.0%} the "
                             f"automatic threshold fits; pass {spell('far')} or "
                             f"{spell('threshold')} instead")
    rate = max(1.0 / n, AUTO_MIN_RATE)
    threshold = float(pickands_quantile(q0, q1, q2, tail / rate))
    end = bounded_end(q0, q1, q2)
    if end is not None and beyond > end:
        warn(f"{name}: the tail fit behind the automatic threshold {threshold:.6g} ends at "
             f"{end:.6g}, and the top {tail / 8:.2%} of the scores lie beyond that end: the "
             "pixels above the threshold are taken for targets, background among them if the "
             f"fit misread the tail; pass {spell('far')} (e.g. 1e-3) or {spell('threshold')} "
             "if they should not all be")
    return threshold


def bounded_end(q0, q1, q2):
    """The score at which a generalised Pareto tail through the quantiles q0, q1, q2 (at tail
    fractions t, t/2, t/4) ends, where it is lighter than exponential; else None."""
    gap, next_gap = q1 - q0, q2 - q1
    if gap <= 0 or next_gap <= 0 or next_gap / gap > 1 - 1e-9:
        return None
    return q0 + gap / (1 - next_gap / gap)


def pickands_quantile(q0, q1, q2, ratio):
    """The score at tail fraction t / ``ratio``, given the quantiles q0, q1, q2 at tail
    fractions t, t/2, t/4, under a generalised Pareto tail.

    With g = (q2 - q1) / (q1 - q0) = 2**shape, the GPD quantile function gives
    q(t / 2**m) = q0 + (q1 - q0) (g**m - 1) / (g - 1); g = 1 is the exponential tail. When
    ties make a gap zero the tail is taken as exponential with the mean gap.
    """
    m = math.log2(ratio)
    gap, next_gap = q1 - q0, q2 - q1
    if gap <= 0 or next_gap <= 0:
        return q0 + m * (q2 - q0) / 2
    g = next_gap / gap
    if abs(g - 1) < 1e-9:
        return q0 + m * gap
    return q0 + gap * (g ** m - 1) / (g - 1)


# --- polygons ----------------------------------------------------------------------------------
