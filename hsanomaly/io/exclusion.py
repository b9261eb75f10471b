"""Pixels an analyst leaves out of a detection (clouds, water, known structures): an exclusion
mask read once, checked against the raster, and kept one bit a pixel, so that a source can
leave those pixels out of every window it reads, for fitting and scoring alike."""

import hashlib

import numpy as np

from ..errors import HsanomalyError
from .checks import warn


MOST = 0.9          # a mask leaving out at least this share is said: inverted, perhaps
STRIP_ROWS = 1024   # rows of a mask raster read at once: memory bounded by the strip


def _packed_raster(path, shape, grid_of):
    """(a mask raster's excluded pixels (non-zero or nodata), one bit a pixel; their count),
    read in strips of rows after its size and grid are checked."""
    from rasterio.windows import Window

    from .scene import mask_values, open_mask_raster
    from .gdal import read_masked

    parts, count = [], 0
    with open_mask_raster(path, shape, grid_of, what="raster") as (ds, band):
        for row in range(0, ds.height, STRIP_ROWS):
            window = Window(0, row, ds.width, min(STRIP_ROWS, ds.height - row))
            gt, unknown = mask_values(read_masked(ds, band, window=window), ds.nodata)
            excluded = gt.astype(bool) | unknown
            parts.append(np.packbits(excluded, axis=1))
            count += int(excluded.sum())
    return np.concatenate(parts), count


def _read(path, grid_of, shape, required):
    """(packed bits, count) of the pixels mask ``path`` leaves out of ``grid_of``."""
    from .vector import is_vector

    if is_vector(path) or str(path).lower().endswith(".mat"):
        from .scene import read_exclusion

        excluded = read_exclusion(path, shape, grid_of, required)
        return np.packbits(excluded, axis=1), int(excluded.sum())
    return _packed_raster(path, shape, grid_of)


def _digest(bits):
    return hashlib.sha256(bits.tobytes()).hexdigest()[:16]


class Exclusion:
    """The pixels mask ``path`` leaves out of raster ``grid_of`` (``scene.read_exclusion``:
    a raster on its grid, non-zero = out, or vector features)."""

    def __init__(self, path, grid_of, shape, required=True):
        """``required``: as ``scene.read_truth``; a mask shared by several rasters need not
        leave out anything of each."""
        self._bits, self.count = _read(path, grid_of, shape, required)
        self.path, self.shape, self.grid_of = str(path), tuple(shape), grid_of
        pixels = shape[0] * shape[1]
        if self.count == pixels:
            raise HsanomalyError(f"{path}: the mask leaves out every pixel of {grid_of}")
        if not self.count:
            if required:
                warn(f"{path}: the mask leaves out no pixel of {grid_of}")
        elif self.count >= MOST * pixels:
            warn(f"{path}: the mask leaves out {self.count / pixels:.0%} of {grid_of}; an "
                 "exclusion mask is non-zero where pixels are left OUT (GDAL's own masks are "
                 "the opposite: 255 where pixels are valid)")
        self.digest = _digest(self._bits)

    def changed(self):
        """Whether the mask, read again, leaves out other pixels (saved anew since it was
        read: what reads it again by its path, a quick model's training, saw others)."""
        try:
            return _digest(_read(self.path, self.grid_of, self.shape, False)[0]) != self.digest
        except HsanomalyError:          # gone, or no longer a mask of this raster
            return True

    def around(self, row, col, rows, cols):
        """``window``, for a part that may reach beyond the raster (a tile with its halo):
        nothing is excluded out there."""
        part = np.zeros((rows, cols), bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + rows, self.shape[0]), min(col + cols, self.shape[1])
        if r1 > r0 and c1 > c0:
            part[r0 - row:r1 - row, c0 - col:c1 - col] = self.window(r0, c0, r1 - r0, c1 - c0)
        return part

    def window(self, row, col, rows, cols):
        """bool (rows, cols): the excluded pixels of that part of the raster."""
        first, last = col // 8, (col + cols + 7) // 8
        bits = np.unpackbits(self._bits[row:row + rows, first:last], axis=1)
        return bits[:, col - 8 * first:col - 8 * first + cols].astype(bool)


def exclude(source, mask):
    """``source``, leaving the pixels of exclusion mask ``mask`` (a path) out of every window
    it reads."""
    source.exclusion = Exclusion(mask, source.name, (source.height, source.width))
    return source
