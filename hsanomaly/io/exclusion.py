"""Pixels an analyst leaves out of a detection (clouds, water, known structures): an exclusion
mask read once, checked against the raster, and kept one bit a pixel, so that a source can
leave those pixels out of every window it reads, for fitting and scoring alike."""

import hashlib

import numpy as np

from ..errors import HsanomalyError
from .checks import warn


class Exclusion:
    """The pixels mask ``path`` leaves out of raster ``grid_of`` (``scene.read_exclusion``:
    a raster on its grid, non-zero = out, or vector features)."""

    def __init__(self, path, grid_of, shape):
        from .scene import read_exclusion

        excluded = read_exclusion(path, shape, grid_of)
        self.path, self.shape = str(path), excluded.shape
        self.count = int(excluded.sum())
        if self.count == excluded.size:
            raise HsanomalyError(f"{path}: the mask leaves out every pixel of {grid_of}")
        if not self.count:
            warn(f"{path}: the mask leaves out no pixel of {grid_of}")
        self._bits = np.packbits(excluded, axis=1)
        self.digest = hashlib.sha256(self._bits.tobytes()).hexdigest()[:16]

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
