"""Connected regions of the pixels above a threshold, labelled window by window.

Regions are grouped as ``hsanomaly.evaluation.label_targets`` groups truth pixels, labelled
per window and merged across window borders with a union-find, so a target that straddles
tiles comes out as one region, and memory is bounded by the window plus the targets.
"""

from collections import defaultdict

import numpy as np

EIGHT_CONNECTED = np.ones((3, 3), bool)


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


class Regions:
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
        from affine import Affine
        from rasterio.features import shapes
        from scipy import ndimage
        from shapely.geometry import shape

        row0, col0 = int(window.row_off), int(window.col_off)
        h, w = scores.shape
        if col0 == 0 and row0 > 0:
            self.row_above, self.row_below = self.row_below, np.zeros(self.width, dtype=np.int64)
        with np.errstate(invalid="ignore"):   # in float64: a float32 score just above 0.3 is
            # above --threshold 0.3, not equal to it (numpy 1 compared in float32)
            mask = scores.astype(np.float64, copy=False) > float(threshold)
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
            # the window's own transform, with affine's matmul: rasterio's window transform
            # multiplies with the operator affine 3 deprecates (an error where warnings are)
            win_transform = self.transform @ Affine.translation(col0, row0)
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
            geometry = _polygonal(unary_union(pieces[g]))
            records.append({"pixels": int(pixels[g]), "max_score": float(peak[g]),
                            "mean_score": float(total[g] / pixels[g]),
                            "row": row_sum[g] / pixels[g], "col": col_sum[g] / pixels[g],
                            "geometry": geometry})
        return records


def _polygonal(geometry):
    """A valid MultiPolygon of ``geometry``: pixels that touch only at a corner trace a ring
    that touches itself, which GEOS (and QGIS's tools) refuse; ``make_valid`` splits it there.
    Each outer ring counter-clockwise, holes clockwise (GeoJSON's right-hand rule), whatever
    ``make_valid`` or a south-up grid made of them."""
    import shapely
    from shapely.geometry import MultiPolygon
    from shapely.geometry.polygon import orient

    geometry = shapely.make_valid(geometry)
    parts = getattr(geometry, "geoms", [geometry])
    return MultiPolygon([orient(p) for part in parts
                         if part.geom_type in ("Polygon", "MultiPolygon")
                         for p in getattr(part, "geoms", [part])])
