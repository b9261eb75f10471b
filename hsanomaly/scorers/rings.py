"""Local RX over several rings, fused: spatial context that adapts to the target's size.

One fixed ring (outer 21, guard 7) lifts small targets and hurts large or clustered ones,
whose own pixels fill the ring. Several rings (small to large) share one principal-component
projection; their log distances are averaged (a geometric mean of the distances), so a pixel
that stands out at every scale scores high and one ring's blind spot is outvoted.

mlrx     the fused multi-ring local RX alone (no model);
rxmlrx   log global RX plus mlrx: the best fusion of the classic parts without a GAN, the
         ablation the GAN scores are measured against (docs/benchmark.md).
"""

import re

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from .base import Scorer, log_distance
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
    options = ("rings", "components")

    def __init__(self, rings=defaults.RINGS, components=defaults.LRX_COMPONENTS):
        self.rings = parse_rings(rings)
        self.locals = [LocalRX(o, g, components) for o, g in self.rings]
        self.components = components
        self.halo = max(local.halo for local in self.locals)

    def params(self):
        return {"name": self.name, "rings": rings_text(self.rings),
                "components": self.components}

    def fit(self, source):
        self.locals[0].fit(source)
        for local in self.locals[1:]:
            local.mean_, local.projection_ = self.locals[0].mean_, self.locals[0].projection_
        return self

    def fit_pixels(self, X):
        """Fit the shared projection on pixels X (n, bands) in memory (e.g. GAN residuals)."""
        from .base import mean_cov, moments

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

    def fit(self, source):
        self.rx_ = GlobalRX().fit(source)
        return super().fit(source)

    def params(self):
        return {**super().params(), "name": self.name}

    def score_block(self, block, valid):
        h = self.halo
        inner = block[:, h:block.shape[1] - h, h:block.shape[2] - h]
        ok = valid[h:valid.shape[0] - h, h:valid.shape[1] - h]
        rx = log_distance(self.rx_.score_block(inner, ok)["score"][0])
        return {"score": (rx + self.log_score(block, valid)).astype(np.float32)[None]}
