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

The purge's fit (``scorers.purge``) scores a few windows of the scene before its tiles: their
blocks are kept whole for the tiles that overlap them, and a block that is the whole scene
keeps its first pass too, which the one tile scored from that very block takes.
"""

import collections
import threading
from typing import NamedTuple

import numpy as np

# Bytes of strips kept per scorer. A strip is 2 x halo rows of a block's columns (the tile's
# plus both halos) by the channels kept per pixel (the residual's bands and the extra outputs
# the run writes, ``Scorer.planned``), float32, so a row of tiles' strips fits up to a swath of about
# MAX_BYTES / (2 x halo x channels x 4) pixels (thousands for the default score); beyond it,
# strips that do not fit are solved again (the same values, more time).
MAX_BYTES = 128 * 2**20


class Place(NamedTuple):
    """Where a halo-padded block lies: its source's token and its top-left pixel (negative
    where the halo reaches beyond the raster's edge)."""

    source: str
    row: int
    col: int

    @classmethod
    def of(cls, source, window, halo):
        """The place of ``window``'s block read from ``source`` with ``halo``."""
        return cls(source.token, int(window.row_off) - halo, int(window.col_off) - halo)


class _Strip(NamedTuple):
    place: Place
    values: np.ndarray        # (channels, rows, cols)
    known: np.ndarray         # (rows, cols): where values hold a result
    whole: bool               # a fit's whole block, not a lower strip


class HaloCache:
    """Strips of per-pixel results, by raster position; safe to share between threads."""

    def __init__(self, halo, max_bytes=MAX_BYTES):
        self.halo, self.max_bytes = int(halo), int(max_bytes)
        self._strips = collections.OrderedDict()
        self._bytes = 0
        self._first_passes = {}
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

    def keep(self, place, values, known, whole=False):
        """Keep the strip of the block at ``place`` that the blocks below it overlap: its last
        ``2 * halo`` rows (``whole``: all of it, a fit's block that tiles overlap anywhere).
        (Tiles run in rows, two at a time: a block's right neighbour is solved beside it, not
        after it, so what it would keep for that neighbour goes unused.) A tile's block first
        drops the strips that no later block in raster order reaches (the fit's blocks, before
        any tile, drop none); beyond ``max_bytes`` this one is not kept (dropping an older one
        would drop the next needed)."""
        rows, cols = known.shape
        width = rows if whole else 2 * self.halo
        if width <= 0 or (width >= rows and not whole):
            return
        at = Place(place.source, place.row + rows - width, place.col)
        with self._lock:
            for key in [k for k, s in self._strips.items() if k.source != at.source
                        or (not whole and _passed(s, place, rows, self.halo))]:
                self._bytes -= self._strips.pop(key).values.nbytes
            size = values[:, rows - width:].nbytes
            if at in self._strips or self._bytes + size > self.max_bytes:
                return
            self._strips[at] = _Strip(at, values[:, rows - width:].copy(),
                                      known[rows - width:].copy(), whole)
            self._bytes += size

    def keep_first_pass(self, place, first):
        """Keep the purge's first pass of the block at ``place`` for the tile scored from it."""
        with self._lock:
            self._first_passes[place] = first

    def take_first_pass(self, place, shape):
        """The first pass kept for a block at ``place`` of first-pass ``shape``, once; or None."""
        with self._lock:
            first = self._first_passes.pop(place, None)
        return first if first is not None and first.shape == shape else None


def _passed(strip, place, rows, halo):
    """Whether no block at or after the block at ``place`` of ``rows`` rows (raster order)
    reaches ``strip``: it lies wholly above the block, or wholly left of it (this row's blocks
    further right do not reach it) and either was kept by the row of blocks above (its top is
    this row's: the next row takes what it needs of those rows from this row's strips) or is
    a fit's whole block that ends above the next row of blocks (which starts ``2 * halo``
    rows above this one's end)."""
    bottom = strip.place.row + strip.known.shape[0]
    if bottom <= place.row:
        return True
    if strip.place.col + strip.known.shape[1] > place.col:
        return False
    return bottom <= place.row + rows - 2 * halo if strip.whole else strip.place.row <= place.row
