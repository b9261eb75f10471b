"""Purge: the pixels a score ranks highest are left out of its own rings' background.

A ring's statistics should describe background. A cluster of anomalous pixels (a parked
aircraft, a row of panels) otherwise makes up its own members' background and hides them,
and a bright target beside a pixel inflates that pixel's ring covariance. A purged score
runs twice: the first pass (no purge) ranks the pixels; those above the scene's
``1 - purge`` quantile of the first pass are left out of every ring's statistics in the
second, which is the score (they are still scored). This is the detector purifying its own
background, without labels.

The quantile is fitted on the scene, from the first pass over a few windows spread across it
(more where a mask leaves few pixels in those), so that tiles then score independently; a
scene of at most a tile is fitted whole, and a score whose blocks share their per-pixel work
(``scorers.halo``) keeps the fit's for its tiles (that scene's one tile takes its first pass
as it is). A block needs twice the rings' halo: the first pass must score every pixel that
the second pass's rings reach.

``neighbour_weight`` = w, the last step of these scores: each pixel's score plus w times the
highest score in its 3x3 neighbourhood. A target's edge pixels are mixtures of target and
background and rank below its core; beside that core they are lifted, while background far
from any high score is not (docs/ablations.md). It needs one more pixel of halo.
"""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rasterio.windows import Window

from ..cancel import results
from ..defaults import TILE, TILE_THREADS
from ..errors import HsanomalyError
from ..spelling import submit
from .halo import Place

# The first pass at fit time scores FIT_TILES windows of at most FIT_TILE pixels a side spread
# across the scene (``fit_windows``): small ones see more of it for the same cost (each also
# pays the doubled halo). Where they give fewer than FIT_VALUES scores, or half what they hold
# (a mask leaves a few pixels in them), further tiles are taken, FIT_TILES at a time, until
# they do or the scene is used up.
FIT_TILES, FIT_TILE = 4, 128
FIT_VALUES = FIT_TILE ** 2


def lift_neighbours(score, weight):
    """``score`` (padded by one pixel) cropped by one pixel, plus ``weight`` times the highest
    score in each pixel's 3x3 neighbourhood, itself included (NaN neighbours are skipped; an
    invalid pixel stays NaN)."""
    rows, cols = score.shape[0] - 2, score.shape[1] - 2
    inner = score[1:1 + rows, 1:1 + cols]
    highest = inner
    for dr in range(3):
        for dc in range(3):
            highest = np.fmax(highest, score[dr:dr + rows, dc:dc + cols])
    return inner + weight * highest


def fit_windows(height, width):
    """The first pass's windows, placed alike from every side of the image, so that the
    image flipped, turned or transposed is fitted on the same pixels: an image of at most a
    default tile (``defaults.TILE``) a side is one window, all of it (its parts would hold
    about as many pixels, at the cost of a halo each; and its tile's block is then the fit's);
    otherwise a side of at most FIT_TILE pixels is one span, and a longer one is cut into
    equal parts (two; along a strip, up to FIT_TILES), each with a span of at most FIT_TILE
    pixels at its centre."""
    if fitted_whole(height, width):
        return [Window(0, 0, width, height)]

    def spans(extent, parts):
        size = min(FIT_TILE, extent // parts)
        size -= (extent - size) % 2 if parts % 2 else 0       # the middle one centred exactly
        first = [(k * extent // parts + (extent // parts - size) // 2, size)
                 for k in range(parts // 2)]
        middle = [((extent - size) // 2, size)] if parts % 2 else []
        return first + middle + [(extent - size - start, size) for start, size in first[::-1]]

    def parts(extent, other):
        if extent <= FIT_TILE:
            return 1
        return 2 if other > FIT_TILE else max(2, min(FIT_TILES, extent // FIT_TILE))

    return [Window(col, row, cols, rows)
            for row, rows in spans(height, parts(height, width))
            for col, cols in spans(width, parts(width, height))]


def fitted_whole(height, width):
    """Whether an image is fitted as one window, all of it (``fit_windows``)."""
    return height <= TILE and width <= TILE


def fit_batches(source, halo):
    """(placed, [(window, block, valid, take)...]): the windows that hold valid pixels, read
    with ``halo``, FIT_TILES at a time (blocks in memory): the ``fit_windows`` first
    (``placed`` until the last of them); then, where a mask or a swath's nodata corners
    leave too few pixels in those, the tiles of FIT_TILE pixels in a fixed shuffled order;
    ``take``: the window's pixels no window before it held."""
    placed = fit_windows(source.height, source.width)      # apart, as the tiles are

    def blocks(windows, tiles):
        for window in windows:
            take = np.ones((int(window.height), int(window.width)), bool)
            for other in placed if tiles else ():
                rows, cols = (slice(max(a - b, 0), max(a - b + n, 0)) for a, b, n in (
                    (other.row_off, window.row_off, other.height),
                    (other.col_off, window.col_off, other.width)))
                take[rows, cols] = False
            if take.any():
                block, valid = source.read(window, halo)
                if (valid[halo:valid.shape[0] - halo, halo:valid.shape[1] - halo] & take).any():
                    yield window, block, valid, take

    for start in range(0, len(placed), FIT_TILES):
        yield start + FIT_TILES < len(placed), list(blocks(placed[start:start + FIT_TILES],
                                                           False))
    tiles = source.windows(FIT_TILE)
    rest = blocks((tiles[i] for i in np.random.default_rng(0).permutation(len(tiles))), True)
    while batch := list(itertools.islice(rest, FIT_TILES)):
        yield False, batch


class Purged:
    """For scores fused over rings. A subclass sets ``purge``, ``neighbour_weight`` and
    ``ring_halo`` and defines ``fusion(block, valid, place)``, which returns
    ``fused(exclude, crop)``: the block's score cropped by ``crop`` pixels on every side, with
    the pixels where ``exclude`` is True left out of the rings' statistics. ``place`` is given
    (else None) to a score whose blocks share their per-pixel work (``shares_halo``, with its
    ``_halo_cache``), for a fit block that keeps it for the tiles."""

    neighbour_weight = 0.0      # (``purge``'s default is every scorer's: ``Scorer.purge``)
    ring_halo = 0

    def purged_params(self):
        """``purge`` and ``neighbour_weight`` for ``params``, off (0) included: a heatmap's
        parameters tell a run with them off from one with the score's defaults."""
        return {"purge": self.purge, "neighbour_weight": self.neighbour_weight}

    @property
    def halo(self):
        return ((2 * self.ring_halo if self.purge else self.ring_halo)
                + (1 if self.neighbour_weight else 0))

    @property
    def footprint(self):
        return 2 * self.ring_halo + 1

    def fit_purge(self, source):
        """Fit ``purge_threshold_``: the first pass's ``1 - purge`` quantile on the scene
        (``fit_batches``, until FIT_VALUES pixels are scored)."""
        if not self.purge:
            return
        h = self.halo
        windows = fit_windows(source.height, source.width)
        # enough: a window's worth of scores, or half what the placed windows hold (a strip's
        # are fewer: where it is not masked, they are the fit, alike from every side)
        enough = min(FIT_VALUES, sum(int(w.height * w.width) for w in windows) // 2)
        values = np.empty(0, np.float32)
        with ThreadPoolExecutor(TILE_THREADS) as pool:
            for placed, batch in fit_batches(source, h):
                jobs = [submit(pool, self._first_pass, block, valid, take,
                               Place.of(source, window, h)
                               if self.shares_halo and window in windows else None,
                               fitted_whole(source.height, source.width))
                        for window, block, valid, take in batch]
                values = np.concatenate([values] + results(jobs))
                values = values[np.isfinite(values)]
                if not placed and len(values) >= enough:     # every placed window in
                    break
        if not len(values):
            raise HsanomalyError(f"{source.name}: {self.name} found no pixel to fit its purge on: "
                                 "every local RX ring around the valid pixels holds too few "
                                 "valid pixels for a covariance (nodata or the image's edge "
                                 "nearby)")
        self.purge_threshold_ = float(np.quantile(values, 1 - self.purge))

    def _first_pass(self, block, valid, take, place, keep_first):
        """The first pass's scores of the valid pixels of one block read with the halo, of
        those ``take`` marks. A placed window's block (``place``: of a score whose blocks
        share their work, ``_halo_cache``) keeps that work for the tiles, and its first pass
        too with ``keep_first`` (the window is the whole scene)."""
        h, ring = self.halo, self.ring_halo
        first = self.fusion(block, valid, place)(None, ring)    # as ``purged`` computes it
        if place is not None and keep_first:
            self._halo_cache().keep_first_pass(place, first)
        m = h - ring
        return first[m:first.shape[0] - m, m:first.shape[1] - m][
            valid[h:valid.shape[0] - h, h:valid.shape[1] - h] & take]

    def purged(self, fused, valid, place=None):
        """The score of the inner pixels: ``fused`` once, or twice when purging, then the
        neighbours' lift. ``place``: the block's, where the fit may have kept its first pass."""
        exclude = None
        if self.purge:
            h = self.ring_halo
            first = None if place is None else self._halo_cache().take_first_pass(
                place, (valid.shape[0] - 2 * h, valid.shape[1] - 2 * h))
            if first is None:
                first = fused(None, h)
            exclude = np.zeros(valid.shape, bool)
            with np.errstate(invalid="ignore"):              # NaN (invalid): never excluded
                exclude[h:valid.shape[0] - h, h:valid.shape[1] - h] = \
                    first > self.purge_threshold_
        if not self.neighbour_weight:
            return fused(exclude, self.halo)
        return lift_neighbours(fused(exclude, self.halo - 1), self.neighbour_weight)
