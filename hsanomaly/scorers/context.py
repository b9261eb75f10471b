"""Scores built on a GAN model's reconstruction and the pixel's spatial context.

resrx    log squared Mahalanobis distance of the reconstruction residual x - G(z*) (in the model's
         preprocessed units) to the residuals' scene mean and covariance. The reconstruction
         cost weighs every band's error alike; the residual's own covariance tells which
         errors the generator makes everywhere (ordinary) and which it makes only at a few
         pixels (anomalous).
context  resrx plus log local RX (hsanomaly.scorers.rx.LocalRX against the ring between a
         guard and an outer window), i.e. the product of the two distances: a pixel must
         both be poorly explained by the generator and stand out from its neighbours.

Both are fitted on the scene they score (the residual statistics on a sample of its pixels,
local RX's projection in a streaming pass) and then score tiles independently. They need a
model trained on 1x1 windows.
"""

import numpy as np

from ..errors import HsanomalyError
from .base import Scorer, inverse, mean_cov, moments
from .rx import LocalRX

SCORES = ("resrx", "context")
SAMPLE_PIXELS = 20000       # pixels drawn to fit the residual statistics
CONTEXT_OUTER, CONTEXT_GUARD = 21, 7
TINY = 1e-12                # keeps log() finite for a zero distance


class ResidualScorer(Scorer):
    """resrx (``local=False``) or context (``local=True``) on top of the bundle's recon score."""

    def __init__(self, model, local=True, outer=CONTEXT_OUTER, guard=CONTEXT_GUARD,
                 components=10, sample=SAMPLE_PIXELS, seed=0, **gan_options):
        from .gan import GanScorer

        self.gan = GanScorer("recon", model, seed=seed, **gan_options)
        if self.gan.bundle.window != 1:
            raise HsanomalyError(f"{model}: the residual scores need a model trained on 1x1 "
                                 f"windows, this one uses {self.gan.bundle.window}x"
                                 f"{self.gan.bundle.window}")
        self.name = "context" if local else "resrx"
        self.local = LocalRX(outer, guard, components) if local else None
        self.halo = self.local.halo if local else 0
        self.sample, self.seed = int(sample), int(seed)
        self.extras = self.gan.extras
        self.band_names = self.gan.band_names

    def params(self):
        params = {**self.gan.params(), "name": self.name, "sample": self.sample}
        if self.local is not None:
            params["local"] = self.local.params()
        return params

    def check(self, source):
        self.gan.check(source)

    def fit(self, source):
        residual = self._residual(source.sample(self.sample, self.seed))[0]
        if len(residual) < 2:
            raise HsanomalyError(f"{source.name}: {self.name} needs at least two valid pixels")
        self.mean_, cov = mean_cov(*moments(residual))
        self.precision_ = inverse(cov)
        if self.local is not None:
            self.local.fit(source)
        return self

    def _residual(self, pixels):
        """(x - G(z*), the GAN outputs) for pixels (n, bands_in), in preprocessed units."""
        pre = self.gan.bundle.preprocessor.transform(np.asarray(pixels))
        outputs = self.gan.score_windows(pre[:, :, None, None])
        return pre - outputs["recon"], outputs

    def _log_distance(self, residual):
        """log of the residuals' squared Mahalanobis distance (the resrx score)."""
        d = np.asarray(residual, np.float64) - self.mean_
        return np.log(np.einsum("ij,jk,ik->i", d, self.precision_, d) + TINY)

    def score_samples(self, X):
        if self.local is not None:
            raise HsanomalyError("the context score compares pixels with their neighbours; "
                                 "use score_block")
        return self._log_distance(self._residual(X)[0]).astype(np.float32)

    def score_block(self, block, valid):
        h = self.halo
        rows, cols = block.shape[1] - 2 * h, block.shape[2] - 2 * h
        inner = valid[h:h + rows, h:h + cols]
        result = {name: np.full((count, rows, cols), np.nan, np.float32)
                  for name, count in {"score": 1, **self.extras}.items()}
        if not inner.any():
            return result
        pixels = block[:, h:h + rows, h:h + cols][:, inner].T
        residual, outputs = self._residual(pixels)
        score = self._log_distance(residual)
        if self.local is not None:
            local = self.local.score_block(block, valid)["score"][0][inner]
            score = score + np.log(np.maximum(local, 0) + TINY)
        result["score"][0, inner] = score
        for name in self.extras:
            values = np.asarray(outputs[name], np.float32).reshape(len(pixels), -1)
            result[name][:, inner] = values.T
        return result


def make_residual_scorer(name, model, **options):
    """``resrx`` or ``context`` with ``model=<bundle path>``."""
    if name not in SCORES:
        raise HsanomalyError(f"unknown residual score {name!r}; choose one of {', '.join(SCORES)}")
    return ResidualScorer(model, local=name == "context", **options)
