"""Target polygons: the pixels above a threshold, as 8-connected regions, in a GeoPackage.

Regions are grouped as ``hsanomaly.evaluation.label_targets`` groups truth pixels, labelled
per window and merged across window borders with a union-find, so a target that straddles
tiles comes out as one polygon, and memory is bounded by the window plus the targets.
"""

import contextlib
import logging
import math
import warnings
from collections import defaultdict

import numpy as np

from .errors import HsanomalyError
from .io.styles import STYLE_TABLE, gpkg_tables, write_default_style
from .logs import stage as log_stage
from .io.atomic import atomic_path, check_writable, native_quiet
from .thresholds import READ_CHUNK, open_heatmap, score_chunks, threshold_from_far

logger = logging.getLogger(__name__)

EIGHT_CONNECTED = np.ones((3, 3), bool)
LAYER = "targets"


def is_targets_file(path):
    """True for a GeoPackage ``write_polygons`` wrote: the targets layer and its style only."""
    return LAYER in (tables := gpkg_tables(path)) and tables <= {LAYER, STYLE_TABLE}


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
        self.parent[max(ra, rb)] = min(ra, rb)      # a no-op when they share a root

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


def check_threshold(gpkg_path, threshold, far):
    """Refuse, before any scoring, a polygon request that cannot work."""
    if threshold is None and far is None:
        raise HsanomalyError(f"{gpkg_path}: polygons need --threshold or --far")
    if threshold is not None and far is not None:
        raise HsanomalyError(f"{gpkg_path}: give --threshold or --far, not both")
    if threshold is not None and not math.isfinite(threshold):
        raise HsanomalyError(f"{gpkg_path}: --threshold must be a finite number, got {threshold}")
    if far is not None and far != "auto":
        try:
            rate = float(far)
        except (TypeError, ValueError):
            raise HsanomalyError(f"{gpkg_path}: --far must be a rate in (0, 1) or 'auto', "
                                 f"got {far!r}") from None
        if not 0 < rate < 1:
            raise HsanomalyError(f"{gpkg_path}: --far must be a rate in (0, 1) or 'auto', got {far}")
    check_writable(gpkg_path, directory=False)


def write_polygons(heatmap_path, gpkg_path, *, threshold=None, far=None, chunk=READ_CHUNK,
                   stage=None, name=None):
    """Vectorise the targets of a heatmap GeoTIFF into a GeoPackage; returns their number.

    Targets are 8-connected regions of pixels scoring strictly above ``threshold``, or above
    ``threshold_from_far(heatmap_path, far)`` (far: a rate or "auto"). The layer "targets"
    is in the raster's CRS with, per target: id (1 = highest max score), pixels, area (map
    units squared; null when the raster has no CRS, whose coordinates are pixel
    coordinates, as the layer description says), max_score, mean_score, centroid_x and
    centroid_y (map coordinates of the mean pixel centre). Memory is bounded by ``window``
    plus the targets themselves; the file is written through the one write path (read back
    and its features counted before it replaces ``gpkg_path``; with ``stage``, together with
    that stage's other outputs), and no target writes a valid empty layer. ``name``: how the
    layer description names the heatmap (default ``heatmap_path``).
    """
    import geopandas as gpd

    check_threshold(gpkg_path, threshold, far)
    with open_heatmap(heatmap_path) as ds:
        crs, transform, width = ds.crs, ds.transform, ds.width
        score = ds.tags().get("HSANOMALY_SCORE", "")
    if threshold is None:
        with log_stage(f"threshold at false-alarm rate {far} of {heatmap_path}"):
            threshold = threshold_from_far(heatmap_path, far, chunk=chunk)
    with log_stage(f"vectorising the pixels above {threshold:.6g} into {gpkg_path}"):
        regions = _Regions(width, transform)
        highest = -math.inf
        for win, scores in score_chunks(heatmap_path, chunk):
            regions.add(win, scores, threshold)
            if np.isfinite(scores).any():
                highest = max(highest, float(np.nanmax(scores)))
        records = regions.targets()
    if not records and far == "auto":
        logger.warning("%s: the automatic threshold %.6g lies above every score (the highest is "
                       "%.6g), so no target was found; the tail fit extrapolates far on a small "
                       "or heavy-tailed heatmap: pass --far (e.g. 1e-3) or --threshold instead",
                       name or heatmap_path, threshold, highest)

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
    columns["score"] = np.array([score] * len(records), dtype=object)
    columns["threshold"] = np.full(len(records), threshold, dtype=np.float64)
    frame = gpd.GeoDataFrame(columns, geometry=[r["geometry"] for r in records],
                             crs=crs.to_wkt() if crs is not None else None)
    description = f"{name or heatmap_path}: pixels with score > {threshold:.6g}"
    if crs is None:
        description += "; no CRS: coordinates are pixel coordinates, area is null"
    check = _gpkg_check(len(records))
    with contextlib.ExitStack() as stack:
        tmp = (stage.path(gpkg_path, check=check, create=False) if stage is not None else
               stack.enter_context(atomic_path(gpkg_path, check=check, create=False)))
        with warnings.catch_warnings(), native_quiet():
            warnings.filterwarnings("ignore", "'crs' was not provided")   # said in the description
            frame.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio",
                          geometry_type="MultiPolygon", layer_options={"DESCRIPTION": description})
            write_default_style(tmp, LAYER, frame.geometry.name)
    return len(records)


def _gpkg_check(count):
    """Re-open a written GeoPackage and count its targets."""
    def check(path):
        import pyogrio

        found = pyogrio.read_info(path, layer=LAYER)["features"]
        if found != count:
            raise HsanomalyError(f"{path}: {found} targets written, {count} expected")
    return check
