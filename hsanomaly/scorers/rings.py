"""Local RX over several rings, fused: spatial context that adapts to the target's size.

One fixed ring (the context score's) lifts small targets and hurts large or clustered ones,
whose own pixels fill the ring. Several rings (small to large) share one principal-component
projection; their log distances are averaged (a geometric mean of the distances), so a pixel
that stands out at every scale scores high and one ring's blind spot is outvoted. With
``top_rings`` = k, each pixel averages only its k largest: a target larger than the small
rings' guards fills them and looks ordinary there, and only the rings that reach past it say
it stands out, so those are the ones its score should hear (docs/ablations.md).

mlrx     the fused multi-ring local RX alone (no model);
rxmlrx   log global RX plus mlrx: the best fusion of the classic parts without a GAN, the
         ablation the GAN scores are measured against (docs/benchmark.md).

``purge`` (hsanomaly.scorers.purge) leaves the pixels the score's own first pass ranks
highest out of every ring's statistics.
"""

import re

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from ..options import check_left_out, check_not_negative, check_whole
from ..spelling import spell
from .base import Scorer, log_distance, mean_cov, moments
from .purge import Purged
from .rx import GlobalRX, LocalRX, check_ring


def parse_rings(rings):
    """Rings as ((outer, guard), ...) from a tuple or a text like "7/3;15/5;31/11"."""
    if isinstance(rings, str):
        pairs = re.findall(r"(\d+)\s*/\s*(\d+)", rings)
        pair = r"\s*\d+\s*/\s*\d+\s*"         # '21/7/3' is no pair and a ring: not '21/7'
        if not re.fullmatch(rf"{pair}([;,+\s]{pair})*[;,]?\s*", rings):
            raise HsanomalyError(f"{spell('rings')}: expected outer/guard pairs like '7/3;15/5', got "
                                 f"{rings!r}")
        rings = [(int(o), int(g)) for o, g in pairs]
    rings = tuple((int(o), int(g)) for o, g in rings)
    for outer, guard in rings:
        check_ring(outer, guard, spell("rings"))
    if not rings:
        raise HsanomalyError(f"{spell('rings')}: at least one ring")
    twice = sorted({rings_text([ring]) for ring in rings if rings.count(ring) > 1})
    if twice:                      # it would count twice in every pixel's average
        raise HsanomalyError(f"{spell('rings')}: {', '.join(twice)} given more than once")
    return rings


def rings_text(rings):
    return ";".join(f"{o}/{g}" for o, g in rings)


def check_top_rings(top_rings):
    """How many of its largest ring distances a pixel averages (0: every ring)."""
    check_whole("top_rings", top_rings, 0)
    return int(top_rings)


class MultiRingLRX(Purged, Scorer):
    """Mean over rings of log local RX; the rings share the scene's principal components."""

    name = "mlrx"
    meaning = "multi-ring local RX: mean log distance to the rings"
    options = ("rings", "pca", "top_rings", "purge", "neighbour_weight")
    renamed_options = LocalRX.renamed_options
    unscored_cause = ("every local RX ring around them holds too few valid pixels for a "
                      "covariance (nodata or the image's edge nearby)")
    adds_rx = False          # rxmlrx adds log global RX to the score

    def __init__(self, rings=defaults.RINGS, pca=defaults.LRX_PCA,
                 top_rings=defaults.TOP_RINGS, purge=defaults.PURGE,
                 neighbour_weight=defaults.NEIGHBOUR_WEIGHT):
        self.rings = parse_rings(rings)
        self.locals = [LocalRX(o, g, pca) for o, g in self.rings]
        self.pca, self.purge = pca, check_left_out("purge", purge)
        self.neighbour_weight = check_not_negative("neighbour_weight", neighbour_weight)
        self.top_rings = check_top_rings(top_rings)
        self.ring_halo = max(local.halo for local in self.locals)

    def settings(self):
        params = {"name": self.name, "rings": rings_text(self.rings),
                  "pca": self.pca,
                  "top_rings": self.top_rings if self.top_rings < len(self.rings) else 0}
        return {**params, **self.purged_params()}

    def fit(self, source):
        self.locals[0].fit(source)
        self._share_basis()
        if self.adds_rx:
            self.rx_ = GlobalRX().fit_as(source, f"the global RX term of {self.name}",
                                         "mlrx, its rings alone")
        self.fit_purge(source)
        return self

    def fit_pixels(self, X):
        """Fit the shared projection on pixels X (n, bands) in memory (e.g. GAN residuals)."""
        self.locals[0].set_basis(*mean_cov(*moments(X)))
        self._share_basis()
        return self

    def check(self, source, own_model=False):
        for local in self.locals:
            local.check_ring_size(source.count)

    def _share_basis(self):
        """One projection for every ring: the first ring's."""
        for local in self.locals[1:]:
            local.check_ring_size(len(self.locals[0].mean_))
            local.mean_, local.projection_, local.floor_ = (
                self.locals[0].mean_, self.locals[0].projection_, self.locals[0].floor_)

    def log_score(self, block, valid, exclude=None, crop=None):
        """Mean log local RX of the pixels of a block padded by ``self.halo``, cropped by
        ``crop`` (default ``self.halo``) on every side; pixels where ``exclude`` is True are
        left out of every ring's statistics (no purge here: ``score_block`` purges).

        The mean is over the rings that hold enough pixels for their covariance: near an edge,
        nodata or purged pixels a small ring can run short, and the pixel is then scored by
        its other rings rather than not at all (NaN only where every ring runs short); with
        ``top_rings`` = k over the k largest of those."""
        crop = self.halo if crop is None else crop
        x, integral = self.locals[0].features(block, valid, exclude)     # shared by every ring
        scores = np.stack([log_distance(local.ring_score(x, integral, valid, crop))
                           for local in self.locals])
        if self.top_rings and self.top_rings < len(self.locals):
            low = np.where(np.isfinite(scores), -scores, np.inf)   # the k largest: the k lowest here
            scores = -np.partition(low, self.top_rings - 1, axis=0)[:self.top_rings]
        scored = np.isfinite(scores)
        count = scored.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.where(scored, scores, 0.0).sum(axis=0) / count,
                            np.nan).astype(np.float32)

    def fusion(self, block, valid, place=None):      # (its blocks share nothing: no place)
        rx = None
        if self.adds_rx:
            rx = np.full(valid.shape, np.nan, np.float32)
            rx[valid] = log_distance(self.rx_.score_samples(block[:, valid].T))

        def fused(exclude, crop):
            score = self.log_score(block, valid, exclude, crop)
            if rx is not None:
                score = score + rx[crop:valid.shape[0] - crop, crop:valid.shape[1] - crop]
            return score
        return fused

    def score_block(self, block, valid):
        score = self.purged(self.fusion(block, valid), valid)
        return {"score": score.astype(np.float32)[None]}


class RXMultiRingLRX(MultiRingLRX):
    """log global RX + mean log multi-ring local RX (no model)."""

    name = "rxmlrx"
    meaning = "RX x multi-ring local RX (log)"
    adds_rx = True
