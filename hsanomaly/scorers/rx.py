"""Reed-Xiaoli detectors: global RX (streaming statistics) and local RX (dual window)."""

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from .base import Scorer, inverse, mahalanobis_sq, mean_cov, moments


class GlobalRX(Scorer):
    """Squared Mahalanobis distance to the scene's mean and covariance, fitted in one streaming pass."""

    name = "rx"

    def fit(self, source):
        n, s, ss = source.reduce(moments)
        if n < 2:
            raise HsanomalyError(f"{source.name}: RX needs at least two valid pixels")
        self.mean_, cov = mean_cov(n, s, ss)
        self.precision_ = inverse(cov)
        return self

    def score_samples(self, X):
        d = np.asarray(X, dtype=np.float64) - self.mean_
        return mahalanobis_sq(d, self.precision_).astype(np.float32)


class LocalRX(Scorer):
    """RX against the ring between a guard window and an outer window around each pixel.

    Spectra are first projected on the scene's leading principal components (fitted in a
    streaming pass), so each pixel's local covariance is ``components x components``
    instead of ``bands x bands``; ring sums come from integral images, so the cost per
    pixel does not grow with the window.
    """

    name = "lrx"
    options = ("outer", "guard", "components")

    def __init__(self, outer=defaults.LRX_OUTER, guard=defaults.LRX_GUARD,
                 components=defaults.LRX_COMPONENTS, ridge=1e-6):
        if outer % 2 == 0 or guard % 2 == 0 or not 0 < guard < outer:
            raise HsanomalyError(f"--outer/--guard: local RX needs odd ring sizes with "
                                 f"0 < guard < outer, got {guard}/{outer}")
        if components < 1:
            raise HsanomalyError(f"--components must be at least 1, got {components}")
        self.outer, self.guard, self.components, self.ridge = outer, guard, components, ridge
        self.halo = outer // 2

    def params(self):
        return {"name": self.name, "outer": self.outer, "guard": self.guard,
                "components": self.components}

    def fit(self, source):
        n, s, ss = source.reduce(moments)
        if n < 2:
            raise HsanomalyError(f"{source.name}: local RX needs at least two valid pixels")
        self.mean_, cov = mean_cov(n, s, ss)
        vals, vecs = np.linalg.eigh(cov)
        k = min(self.components, len(vals))
        self.projection_ = vecs[:, ::-1][:, :k]
        return self

    def score_samples(self, X):
        raise HsanomalyError("local RX scores pixels in their spatial context; use score_block")

    def score_block(self, block, valid):
        x, integral = self.features(block, valid)
        return {"score": self.ring_score(x, integral, valid, self.halo)[None]}

    def features(self, block, valid):
        """The block's pixels projected on the components, x (rows, cols, k), and the integral
        image of [1, x, upper triangle of x x'] over valid pixels: what every ring's sums of
        counts, means and second moments are read from, so rings can share it."""
        rows, cols = valid.shape
        k = self.projection_.shape[1]
        x = np.zeros((rows, cols, k))
        x[valid] = (block[:, valid].T - self.mean_) @ self.projection_
        iu = np.triu_indices(k)
        feats = np.concatenate([np.ones((rows, cols, 1)) * valid[..., None], x,
                                (x[..., :, None] * x[..., None, :])[..., iu[0], iu[1]]], axis=-1)
        feats[~valid] = 0
        integral = np.zeros((rows + 1, cols + 1, feats.shape[2]))
        integral[1:, 1:] = feats.cumsum(0).cumsum(1)
        return x, integral

    def ring_score(self, x, integral, valid, halo):
        """RX of the inner pixels of a block padded by ``halo`` (at least this ring's) against
        their ring, from ``features``; float32 (rows, cols), NaN where the ring is too empty."""
        k = x.shape[2]
        rows, cols = valid.shape[0] - 2 * halo, valid.shape[1] - 2 * halo
        ring = (_window_sums(integral, self.outer, halo - self.outer // 2, rows, cols)
                - _window_sums(integral, self.guard, halo - self.guard // 2, rows, cols))
        count = ring[..., 0]
        inner_valid = valid[halo:halo + rows, halo:halo + cols] & (count > k + 1)
        score = np.full((rows, cols), np.nan, dtype=np.float32)
        if inner_valid.any():
            iu = np.triu_indices(k)
            ring = ring[inner_valid]
            n = ring[:, 0:1]
            mean = ring[:, 1:1 + k] / n
            second = np.zeros((len(ring), k, k))
            second[:, iu[0], iu[1]] = ring[:, 1 + k:]
            second[:, iu[1], iu[0]] = ring[:, 1 + k:]
            cov = (second - n[:, :, None] * mean[:, :, None] * mean[:, None, :]) / (n[:, :, None] - 1)
            cov += self.ridge * np.trace(cov, axis1=1, axis2=2)[:, None, None] * np.eye(k) + 1e-12 * np.eye(k)
            d = x[halo:halo + rows, halo:halo + cols][inner_valid] - mean
            score[inner_valid] = np.einsum("ij,ij->i", d, np.linalg.solve(cov, d[..., None])[..., 0])
        return score


def _window_sums(integral, size, offset, rows, cols):
    """Sums over the ``size x size`` windows whose top-left corners are (offset + i, offset + j),
    i < rows, j < cols, read off an integral image (a leading row and column of zeros)."""
    a, b = offset, offset + size
    return (integral[b:b + rows, b:b + cols] - integral[a:a + rows, b:b + cols]
            - integral[b:b + rows, a:a + cols] + integral[a:a + rows, a:a + cols])
