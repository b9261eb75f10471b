"""Per-pixel results that neighbouring blocks share.

A tile is scored from a block that reaches ``halo`` pixels into its neighbours, so a score
whose per-pixel work is costly (the GAN residual's latent search, of every pixel the rings
reach) would do that work again for each pixel in a halo: for the default score at 256-pixel
tiles, a block holds 1.7 times the tile's pixels. A block keeps the strips its right and
lower neighbours' blocks overlap, and a block takes what its left and upper neighbours kept.

This is exact only for work that treats pixels independently, whatever batch they are solved
in (tests/test_context.py checks it of the latent search): a kept value is then the value the
neighbour would compute. Strips are kept for one source at a time (``Place.source``, a token
each source draws), oldest dropped first beyond ``max_bytes``; a strip not found is simply
solved again.
"""

import collections
import threading
from typing import NamedTuple

import numpy as np

MAX_BYTES = 128 * 2**20   # strips kept per scorer: a row of tiles' lower strips on wide rasters


class Place(NamedTuple):
    """Where a halo-padded block lies: its source's token and its top-left pixel (negative
    where the halo reaches beyond the raster's edge)."""

    source: str
    row: int
    col: int


class _Strip(NamedTuple):
    place: Place
    values: np.ndarray        # (channels, rows, cols)
    known: np.ndarray         # (rows, cols): where values hold a result


class HaloCache:
    """Strips of per-pixel results, by raster position; safe to share between threads."""

    def __init__(self, halo, max_bytes=MAX_BYTES):
        self.halo, self.max_bytes = int(halo), int(max_bytes)
        self._strips = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def fill(self, place, values, known):
        """Copy into ``values`` (channels, rows, cols) the results kept for the block at
        ``place`` wherever ``known`` is False, and mark them in ``known``."""
        rows, cols = known.shape
        with self._lock:
            strips = [s for s in self._strips.values() if s.place.source == place.source]
        for strip in strips:
            top, left = max(place.row, strip.place.row), max(place.col, strip.place.col)
            bottom = min(place.row + rows, strip.place.row + strip.known.shape[0])
            right = min(place.col + cols, strip.place.col + strip.known.shape[1])
            if bottom <= top or right <= left:
                continue
            theirs = (slice(top - strip.place.row, bottom - strip.place.row),
                      slice(left - strip.place.col, right - strip.place.col))
            mine = (slice(top - place.row, bottom - place.row),
                    slice(left - place.col, right - place.col))
            take = strip.known[theirs] & ~known[mine]
            values[(slice(None),) + mine][:, take] = strip.values[(slice(None),) + theirs][:, take]
            known[mine] |= take

    def keep(self, place, values, known):
        """Keep the strips of the block at ``place`` that its right and lower neighbours'
        blocks overlap: its last ``2 * halo`` columns and rows."""
        width = 2 * self.halo
        rows, cols = known.shape
        if width <= 0 or width >= min(rows, cols):
            return
        for part in ((slice(None), slice(cols - width, None)),      # right
                     (slice(rows - width, None), slice(None))):     # lower
            at = Place(place.source, place.row + (part[0].start or 0),
                       place.col + (part[1].start or 0))
            strip = _Strip(at, values[(slice(None),) + part].copy(), known[part].copy())
            key = (at, strip.known.shape)
            with self._lock:
                for other in [k for k in self._strips if k[0].source != at.source]:
                    self._bytes -= self._strips.pop(other).values.nbytes   # one source at a time
                if key in self._strips:
                    self._bytes -= self._strips.pop(key).values.nbytes
                self._strips[key] = strip
                self._bytes += strip.values.nbytes
                while self._bytes > self.max_bytes and len(self._strips) > 1:
                    self._bytes -= self._strips.popitem(last=False)[1].values.nbytes
