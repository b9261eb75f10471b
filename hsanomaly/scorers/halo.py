"""Per-pixel results that neighbouring blocks share.

A tile is scored from a block that reaches ``halo`` pixels into its neighbours, so a score
whose per-pixel work is costly (the GAN residual's latent search, of every pixel the rings
reach) would do that work again for each pixel in a halo: a block of a tile of side t holds
(t + 2 halo)^2 / t^2 times its pixels (the default score's halo is a large share of a
default tile's side). A block keeps the strip the blocks below it
overlap, and takes what the blocks above it kept.

This is exact only for work that treats pixels independently, whatever batch they are solved
in (tests/test_context.py checks it of the latent search): a kept value is then the value the
neighbour would compute. Strips are kept for one source at a time (``Place.source``, a token
each source draws), until the tiles have passed them, and within ``max_bytes``; a strip not
kept is simply solved again.
"""

import collections
import threading
from typing import NamedTuple

import numpy as np

# Bytes of strips kept per scorer. A strip is 2 x halo rows of a block's columns (the tile's
# plus both halos) by the residual's bands, float32, so a row of tiles' strips fits up to a
# swath of MAX_BYTES / (2 x halo x bands x 4) pixels (thousands for the default score);
# beyond it, strips that do not fit are solved again (the same values, more time).
MAX_BYTES = 128 * 2**20


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
        """Keep the strip of the block at ``place`` that the blocks below it overlap: its last
        ``2 * halo`` rows. (Tiles run in rows, two at a time: a block's right neighbour is
        solved beside it, not after it, so what it would keep for that neighbour goes unused.)
        Strips that no later block in raster order reaches are dropped first; beyond
        ``max_bytes`` this one is not kept (dropping an older one would drop the next needed)."""
        width = 2 * self.halo
        rows, cols = known.shape
        if width <= 0 or width >= rows:
            return
        at = Place(place.source, place.row + rows - width, place.col)
        with self._lock:
            for key in [k for k, s in self._strips.items() if k.source != at.source
                        or _passed(s, place, cols)]:
                self._bytes -= self._strips.pop(key).values.nbytes
            size = values[:, rows - width:].nbytes
            if at in self._strips or self._bytes + size > self.max_bytes:
                return
            self._strips[at] = _Strip(at, values[:, rows - width:].copy(),
                                      known[rows - width:].copy())
            self._bytes += size


def _passed(strip, place, cols):
    """Whether no block at or after ``place`` (raster order) reaches ``strip``: it lies wholly
    above the block, or it was kept by the row of blocks above (its top is this row's) and lies
    wholly left of the block, whose row's blocks further right do not reach it."""
    bottom = strip.place.row + strip.known.shape[0]
    right = strip.place.col + strip.known.shape[1]
    return bottom <= place.row or (strip.place.row <= place.row and right <= place.col)
