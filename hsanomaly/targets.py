"""From a heatmap to targets: a threshold from a false-alarm rate, and target polygons.

Both work window by window, so memory is bounded by the window size, not the raster size.

Thresholds are exact order statistics of the finite scores, found by a two-pass radix
select: every float32 score maps to a 32-bit key that sorts like the score; a first pass
counts keys by their high 16 bits, a second counts the low 16 bits inside the few bins that
hold the wanted ranks. Each pass is a sum of fixed-size histograms over windows
(``score_histogram``), so a distributed runner can map it over windows on a cluster and
pass its own ``reduce``.

``far="auto"`` fits the upper tail instead (see ``auto_threshold``).

Targets are the pixels scoring strictly above the threshold, grouped into 8-connected
regions (as ``hsanomaly.evaluate.label_targets`` groups truth pixels). Regions are labelled
per window and merged across window borders with a union-find, so a target that straddles
tiles comes out as one polygon.
"""

import math
import warnings
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np

from .errors import HsanomalyError
from .io.atomic import atomic_path, check_writable
from .io.source import iter_windows

DEFAULT_WINDOW = 1024         # pixels a side; a multiple of the engine's 256-pixel output blocks
HALF_BITS = 16
HALF = 1 << HALF_BITS         # histogram bins per pass
AUTO_MIN_RATE = 1e-6          # auto: the tail fit is extrapolated at most this far
EIGHT_CONNECTED = np.ones((3, 3), bool)
LAYER = "targets"


# --- order keys and histograms: the per-window pieces a distributed reduce maps -------------

def order_keys(scores):
    """uint32 keys that sort like the finite scores (as float32); NaN and inf are dropped."""
    values = np.asarray(scores, dtype=np.float32).ravel()
    bits = values[np.isfinite(values)].view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def key_scores(keys):
    """The float32 scores of ``order_keys`` keys (the inverse mapping)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


def score_histogram(scores, prefixes=None):
    """Counts of one window's finite scores by key: by the high 16 bits (``prefixes=None``,
    shape (65536,)), or by the low 16 bits of the keys whose high bits are each of
    ``prefixes`` (shape (len(prefixes), 65536)). Sums over windows give the raster's counts."""
    keys = order_keys(scores)
    high = keys >> HALF_BITS
    if prefixes is None:
        return np.bincount(high, minlength=HALF)
    low = keys & np.uint32(HALF - 1)
    return np.stack([np.bincount(low[high == p], minlength=HALF) for p in prefixes])


# --- reading heatmaps by window ---------------------------------------------------------------

def _open(path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    if not Path(path).exists():
        raise HsanomalyError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        raise HsanomalyError(f"{path}: not a raster GDAL can read") from None


def read_scores(dataset, window):
    """Band 1 of an open heatmap in ``window`` as float32, NaN where masked (nodata)."""
    return dataset.read(1, window=window, masked=True).astype(np.float32).filled(np.nan)


def score_windows(heatmap, window=DEFAULT_WINDOW):
    """Yield (window, float32 scores) over a heatmap GeoTIFF path or a 2-D array."""
    if isinstance(heatmap, np.ndarray):
        scores = np.asarray(heatmap, dtype=np.float32)
        if scores.ndim == 3 and scores.shape[0] == 1:
            scores = scores[0]
        if scores.ndim != 2:
            raise HsanomalyError(f"<array>: a heatmap is 2-D, got shape {heatmap.shape}")
        for win in iter_windows(*scores.shape, window):
            yield win, scores[win.toslices()]
        return
    with _open(heatmap) as ds:
        for win in iter_windows(ds.height, ds.width, window):
            yield win, read_scores(ds, win)


def window_reduce(heatmap, window=DEFAULT_WINDOW):
    """``reduce(fn)``: the sum of ``fn(scores)`` over the heatmap's windows, in this process."""
    def reduce(fn):
        total = None
        for _, scores in score_windows(heatmap, window):
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

def threshold_from_far(heatmap, far, *, window=DEFAULT_WINDOW, reduce=None):
    """The score threshold at which a fraction ``far`` of the pixels lies above, from the
    scores alone (no labels).

    heatmap: a heatmap GeoTIFF path or a 2-D array; NaN/nodata pixels are ignored.
    far: a false-alarm rate in (0, 1): the threshold is the exact order statistic with
    at most ``floor(far * n)`` of the n scores strictly above it. Targets are part of the
    distribution, so on a scene with targets slightly fewer background pixels pass.
    Or "auto": see ``auto_threshold``.
    reduce: ``reduce(fn)`` returning the sum of ``fn(scores)`` over all windows of the
    heatmap; pass a cluster version to run the passes distributed (default: this process).
    """
    if far != "auto":
        if isinstance(far, str):
            try:
                far = float(far)
            except ValueError:
                raise HsanomalyError(f"far: {far!r} is neither a number nor 'auto'") from None
        if not 0 < far < 1:
            raise HsanomalyError(f"far: a false-alarm rate is between 0 and 1, got {far}")
    reduce = reduce or window_reduce(heatmap, window)
    coarse = reduce(score_histogram)
    n = int(coarse.sum())
    if n == 0:
        name = "<array>" if isinstance(heatmap, np.ndarray) else heatmap
        raise HsanomalyError(f"{name}: the heatmap has no finite score")
    if far == "auto":
        return auto_threshold(coarse, reduce)
    return float(_order_statistics(coarse, [n - 1 - math.floor(far * n)], reduce)[0])


def auto_tail(n):
    """The upper-tail fraction the auto rule fits on: 10 / sqrt(n), within [1 %, 10 %].

    A larger raster resolves its tail further out, where the generalised Pareto model
    holds better, while still keeping 10 * sqrt(n) pixels above the fit's first quantile.
    """
    return min(0.1, max(0.01, 10 / math.sqrt(n)))


def auto_threshold(coarse, reduce):
    """A threshold with about one false-alarm pixel per raster, from a fit of the upper tail.

    Extreme-value theory (Pickands-Balkema-de Haan) says the excess of a score over a high
    threshold follows a generalised Pareto distribution, whatever the score (RX, -log p, a
    critic, a reconstruction cost). Its shape is estimated with Pickands' estimator from the
    exact quantiles at upper-tail fractions t, t/2 and t/4 (t from ``auto_tail``: 10 % on a
    100 x 100 scene, 1 % from a megapixel up), and the fitted tail is extrapolated to the
    rate 1 / n (one expected false-alarm pixel in the raster), but not below 1e-6, where
    the extrapolation stops being trustworthy.

    Why this rule: it adapts to light and heavy tails alike (a fixed ``median + k * MAD``
    gives false-alarm rates orders of magnitude apart for Gaussian and chi-square or
    Student backgrounds), and the fit only uses quantiles at or below the top t/4, so
    targets covering fewer pixels than that do not move it; more target pixels make the
    tail look heavier and the threshold higher: the rule errs towards fewer false alarms.
    Measured on pure backgrounds (normal, chi-square 12 and 150, Student 5, exponential,
    lognormal; 2e3, 1e4 and 1e6 pixels): 1 to 7 false-alarm pixels on average, up to 18 in
    one raster out of ten. (A least-squares fit over nine tail quantiles was no steadier.)

    coarse: the summed first-pass ``score_histogram``; reduce: as in ``threshold_from_far``.
    """
    n = int(coarse.sum())
    tail = auto_tail(n)
    tails = np.array([tail, tail / 2, tail / 4])
    q0, q1, q2 = _order_statistics(coarse, n - 1 - np.floor(tails * n).astype(np.int64), reduce)
    rate = max(1.0 / n, AUTO_MIN_RATE)
    return float(pickands_quantile(float(q0), float(q1), float(q2), tail / rate))


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

class _UnionFind:
    """Equivalences between region labels 1..n (index 0 is the background)."""

    def __init__(self):
        self.parent = np.zeros(1, dtype=np.int64)

    def add(self, count):
        start = len(self.parent)
        self.parent = np.concatenate([self.parent, np.arange(start, start + count)])
        return start - 1              # offset to add to a window's 1-based local labels

    def find(self, label):
        root = label
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[label] != root:
            self.parent[label], label = root, self.parent[label]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self):
        roots = self.parent.copy()
        while True:
            nxt = roots[roots]
            if np.array_equal(nxt, roots):
                return roots
            roots = nxt


def _union_pairs(uf, a, b):
    both = (a > 0) & (b > 0)
    for x, y in np.unique(np.stack([a[both], b[both]], axis=1), axis=0):
        uf.union(x, y)


class _Regions:
    """Connected regions of above-threshold pixels, labelled window by window.

    Keeps per label: pixel count, score sum and max, sums of pixel-centre rows and columns,
    and polygon pieces; only the labels of the row above the current window row and of the
    column left of the current window are kept to merge regions across window borders.
    """

    def __init__(self, width, transform):
        self.width, self.transform = width, transform
        self.uf = _UnionFind()
        self.stats = []               # per window: (pixels, score sum, score max, row sum, col sum)
        self.pieces = defaultdict(list)
        self.row_above = np.zeros(width, dtype=np.int64)
        self.row_below = np.zeros(width, dtype=np.int64)
        self.left_column = None

    def add(self, window, scores, threshold):
        from rasterio.features import shapes
        from rasterio.windows import transform as window_transform
        from scipy import ndimage
        from shapely.geometry import shape

        row0, col0 = int(window.row_off), int(window.col_off)
        h, w = scores.shape
        if col0 == 0 and row0 > 0:
            self.row_above, self.row_below = self.row_below, np.zeros(self.width, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            mask = scores > threshold
        local, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        offset = self.uf.add(count)
        labels = np.where(mask, local + offset, 0)
        if count:
            flat = local.ravel()
            rows, cols = np.indices((h, w))
            index = np.arange(1, count + 1)
            self.stats.append(np.stack([
                np.bincount(flat, minlength=count + 1)[1:],
                ndimage.sum_labels(scores, local, index),
                ndimage.maximum(scores, local, index),
                ndimage.sum_labels(rows + row0 + 0.5, local, index),
                ndimage.sum_labels(cols + col0 + 0.5, local, index)], axis=1))
            win_transform = window_transform(window, self.transform)
            for geometry, value in shapes(labels.astype(np.int32), mask=mask, connectivity=8,
                                          transform=win_transform):
                self.pieces[int(value)].append(shape(geometry))
        self._merge_borders(labels, row0, col0)
        self.row_below[col0:col0 + w] = labels[-1]
        self.left_column = labels[:, -1]

    def _merge_borders(self, labels, row0, col0):
        h, w = labels.shape
        if row0 > 0:
            for dc in (-1, 0, 1):
                above = np.arange(col0, col0 + w) + dc
                inside = (above >= 0) & (above < self.width)
                _union_pairs(self.uf, labels[0][inside], self.row_above[above[inside]])
        if col0 > 0:
            for dr in (-1, 0, 1):
                left = np.arange(h) + dr
                inside = (left >= 0) & (left < h)
                _union_pairs(self.uf, labels[:, 0][inside], self.left_column[left[inside]])

    def targets(self):
        """One record per merged region: pixels, max and mean score, centroid (row, col) and
        geometry (a MultiPolygon in map coordinates), strongest first."""
        from shapely.geometry import MultiPolygon
        from shapely.ops import unary_union

        if not self.stats:
            return []
        stats = np.concatenate(self.stats)
        roots = self.uf.roots()[1:]
        merged, group = np.unique(roots, return_inverse=True)
        pixels, total, row_sum, col_sum = (np.bincount(group, weights=stats[:, k])
                                           for k in (0, 1, 3, 4))
        peak = np.full(len(merged), -np.inf)
        np.maximum.at(peak, group, stats[:, 2])
        pieces = defaultdict(list)
        for label, parts in self.pieces.items():
            pieces[group[label - 1]].extend(parts)
        records = []
        for g in np.argsort(-peak, kind="stable"):
            geometry = unary_union(pieces[g])
            if geometry.geom_type == "Polygon":
                geometry = MultiPolygon([geometry])
            records.append({"pixels": int(pixels[g]), "max_score": float(peak[g]),
                            "mean_score": float(total[g] / pixels[g]),
                            "row": row_sum[g] / pixels[g], "col": col_sum[g] / pixels[g],
                            "geometry": geometry})
        return records


def write_polygons(heatmap_path, gpkg_path, *, threshold=None, far=None, window=DEFAULT_WINDOW):
    """Vectorise the targets of a heatmap GeoTIFF into a GeoPackage; returns their number.

    Targets are 8-connected regions of pixels scoring strictly above ``threshold``, or above
    ``threshold_from_far(heatmap_path, far)`` (far: a rate or "auto"). The layer "targets"
    is in the raster's CRS with, per target: id (1 = highest max score), pixels, area (map
    units squared; null when the raster has no CRS, whose coordinates are pixel
    coordinates, as the layer description says), max_score, mean_score, centroid_x and
    centroid_y (map coordinates of the mean pixel centre). Memory is bounded by ``window``
    plus the targets themselves; the file is written atomically, and no target writes a
    valid empty layer.
    """
    import geopandas as gpd

    if threshold is None and far is None:
        raise HsanomalyError(f"{gpkg_path}: polygons need a threshold or a false-alarm rate (far)")
    if threshold is not None and far is not None:
        raise HsanomalyError(f"{gpkg_path}: give a threshold or a false-alarm rate (far), not both")
    if threshold is not None and not math.isfinite(threshold):
        raise HsanomalyError(f"{gpkg_path}: the threshold must be a finite number, got {threshold}")
    check_writable(gpkg_path)
    with _open(heatmap_path) as ds:
        crs, transform, width = ds.crs, ds.transform, ds.width
    if threshold is None:
        threshold = threshold_from_far(heatmap_path, far, window=window)

    regions = _Regions(width, transform)
    for win, scores in score_windows(heatmap_path, window):
        regions.add(win, scores, threshold)
    records = regions.targets()

    pixel_area = abs(transform.determinant) if crs is not None else None
    columns = {
        "id": np.arange(1, len(records) + 1, dtype=np.int64),
        "pixels": np.array([r["pixels"] for r in records], dtype=np.int64),
        "area": np.array([r["pixels"] * pixel_area if pixel_area else np.nan for r in records],
                         dtype=np.float64),
        "max_score": np.array([r["max_score"] for r in records], dtype=np.float64),
        "mean_score": np.array([r["mean_score"] for r in records], dtype=np.float64),
    }
    rows = np.array([r["row"] for r in records], dtype=np.float64)
    cols = np.array([r["col"] for r in records], dtype=np.float64)
    columns["centroid_x"] = transform.c + transform.a * cols + transform.b * rows
    columns["centroid_y"] = transform.f + transform.d * cols + transform.e * rows
    frame = gpd.GeoDataFrame(columns, geometry=[r["geometry"] for r in records],
                             crs=crs.to_wkt() if crs is not None else None)
    description = f"{heatmap_path}: pixels with score > {threshold:.6g}"
    if crs is None:
        description += "; no CRS: coordinates are pixel coordinates, area is null"
    with atomic_path(gpkg_path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided")   # said in the description
        frame.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio",
                      geometry_type="MultiPolygon", layer_options={"DESCRIPTION": description})
    return len(records)
