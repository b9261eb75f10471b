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
from .. import defaults
from .base import Scorer, inverse, mean_cov, moments
from .gan import ReconScorer
from .rx import LocalRX

TINY = 1e-12                # keeps log() finite for a zero distance


class ResidualScorer(Scorer):
    """The residual statistics on top of the bundle's recon score; subclasses add the context."""

    needs_model = True
    fits_on_scene = True
    options = ReconScorer.options + ("sample",)
    local = None

    def __init__(self, model, sample=defaults.RESIDUAL_SAMPLE, seed=0, **gan_options):
        if sample < 2:
            raise HsanomalyError(f"--sample must be at least 2, got {sample}")
        self.gan = ReconScorer(model, seed=seed, **gan_options)
        self.sample, self.seed = int(sample), int(seed)

    @property
    def extras(self):
        return self.gan.extras

    @property
    def band_names(self):
        return self.gan.band_names

    def params(self):
        params = {**self.gan.params(), "name": self.name, "sample": self.sample}
        if self.local is not None:
            params["local"] = self.local.params()
        return params

    def check(self, source):
        window = self.gan.bundle.window
        if window != 1:
            raise HsanomalyError(f"{self.gan.model}: score {self.name!r} needs a model trained on "
                                 f"1x1 windows, this one uses {window}x{window}")
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


class ResidualRXScorer(ResidualScorer):
    name = "resrx"


class ContextScorer(ResidualScorer):
    name = "context"
    options = ResidualScorer.options + LocalRX.options

    def __init__(self, model, outer=defaults.CONTEXT_OUTER, guard=defaults.CONTEXT_GUARD,
                 components=defaults.LRX_COMPONENTS, **options):
        super().__init__(model, **options)
        self.local = LocalRX(outer, guard, components)
        self.halo = self.local.halo
