"""Local RX over several rings, fused: spatial context that adapts to the target's size.

One fixed ring (outer 21, guard 7) lifts small targets and hurts large or clustered ones,
whose own pixels fill the ring. Several rings (small to large) share one principal-component
projection; their log distances are averaged (a geometric mean of the distances), so a pixel
that stands out at every scale scores high and one ring's blind spot is outvoted.

mlrx     the fused multi-ring local RX alone (no model);
rxmlrx   log global RX plus mlrx: the best fusion of the classic parts without a GAN, the
         ablation the GAN scores are measured against (docs/benchmark.md).

``purge`` leaves the pixels whose global RX distance lies in the scene's top fraction out of
every ring's statistics: the counterpart, without a GAN, of the residual scores' ``purge``.
"""

import re

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from .base import Scorer, log_distance, mean_cov, moments
from .rx import GlobalRX, LocalRX


def parse_rings(rings):
    """Rings as ((outer, guard), ...) from a tuple or a text like "7/3;15/5;31/11"."""
    if isinstance(rings, str):
        pairs = re.findall(r"(\d+)\s*/\s*(\d+)", rings)
        if not pairs or re.sub(r"[\d\s/;,+]", "", rings):
            raise HsanomalyError(f"--rings: expected outer/guard pairs like '7/3;15/5', got "
                                 f"{rings!r}")
        rings = [(int(o), int(g)) for o, g in pairs]
    rings = tuple((int(o), int(g)) for o, g in rings)
    if not rings:
        raise HsanomalyError("--rings: at least one ring")
    return rings


def rings_text(rings):
    return ";".join(f"{o}/{g}" for o, g in rings)


class MultiRingLRX(Scorer):
    """Mean over rings of log local RX; the rings share the scene's principal components."""

    name = "mlrx"
    options = ("rings", "components", "purge")
    adds_rx = False          # rxmlrx adds log global RX to the score

    def __init__(self, rings=defaults.RINGS, components=defaults.LRX_COMPONENTS,
                 purge=defaults.PURGE):
        if not 0 <= purge < 0.5:
            raise HsanomalyError(f"--purge must lie in [0, 0.5), got {purge}")
        self.rings = parse_rings(rings)
        self.locals = [LocalRX(o, g, components) for o, g in self.rings]
        self.components, self.purge = components, float(purge)
        self.halo = max(local.halo for local in self.locals)

    def params(self):
        params = {"name": self.name, "rings": rings_text(self.rings),
                  "components": self.components}
        if self.purge:
            params["purge"] = self.purge
        return params

    def fit(self, source):
        self.locals[0].fit(source)
        for local in self.locals[1:]:
            local.mean_, local.projection_ = self.locals[0].mean_, self.locals[0].projection_
        if self.purge or self.adds_rx:
            self.rx_ = GlobalRX().fit(source)
        if self.purge:        # the no-GAN counterpart of the residual scores' purge: by global RX
            sample = source.sample(defaults.RESIDUAL_SAMPLE)
            distance = log_distance(self.rx_.score_samples(sample))
            self.purge_threshold_ = np.quantile(distance, 1 - self.purge)
        return self

    def _rx_map(self, block, valid):
        """log global RX of every valid pixel of the block (NaN elsewhere)."""
        distance = np.full(valid.shape, np.nan, np.float32)
        distance[valid] = log_distance(self.rx_.score_samples(block[:, valid].T))
        return distance

    def _purged(self, distance):
        """Where the global RX distance map lies in the scene's top ``purge`` fraction."""
        return distance > self.purge_threshold_            # NaN (invalid): never

    def fit_pixels(self, X):
        """Fit the shared projection on pixels X (n, bands) in memory (e.g. GAN residuals)."""
        mean, cov = mean_cov(*moments(X))
        vecs = np.linalg.eigh(cov)[1][:, ::-1][:, :min(self.components, len(cov))]
        for local in self.locals:
            local.mean_, local.projection_ = mean, vecs
        return self

    def score_samples(self, X):
        raise HsanomalyError("local RX scores pixels in their spatial context; use score_block")

    def log_score(self, block, valid, exclude=None):
        """Mean log local RX of the inner pixels of a block padded by ``self.halo``; pixels
        where ``exclude`` is True are left out of every ring's statistics."""
        if exclude is None and self.purge:
            exclude = self._purged(self._rx_map(block, valid))
        x, integral = self.locals[0].features(block, valid, exclude)     # shared by every ring
        total = 0.0
        for local in self.locals:
            score = local.ring_score(x, integral, valid, self.halo)
            total = total + log_distance(score)
        return total / len(self.locals)

    def score_block(self, block, valid):
        return {"score": self.log_score(block, valid).astype(np.float32)[None]}


class RXMultiRingLRX(MultiRingLRX):
    """log global RX + mean log multi-ring local RX (no model)."""

    name = "rxmlrx"
    adds_rx = True

    def params(self):
        return {**super().params(), "name": self.name}

    def score_block(self, block, valid):
        h = self.halo
        distance = self._rx_map(block, valid)      # the score's RX term, and purge's too
        exclude = self._purged(distance) if self.purge else None
        rx = distance[h:valid.shape[0] - h, h:valid.shape[1] - h]
        score = rx + self.log_score(block, valid, exclude)
        return {"score": score.astype(np.float32)[None]}
