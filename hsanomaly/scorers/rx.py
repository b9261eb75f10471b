"""Reed-Xiaoli detectors: global RX (streaming statistics) and local RX (dual window)."""

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from ..io.checks import warn_once
from ..options import check_whole
from ..spelling import counted, spell
from .base import (Scorer, check_pixels, in_chunks, inverse, log_distance, mahalanobis_sq,
                   mean_cov, scene_moments)

RING_PIXELS = 4096     # pixels per band of rows in local RX's vectorised covariance solves
RING_FLOOR = 1e-12     # added to a ring covariance's diagonal, times the scene's variance
RIDGE = 1e-6   # of a ring covariance's trace, added to its diagonal: a flat ring stays solvable


def ring_minimum(k):
    """The pixels a ring needs for a distance on ``k`` principal components: from ``k + 3``
    on, a background pixel's expected distance is finite (``small_sample_factor``)."""
    return k + 3


def small_sample_factor(n, k):
    """The factor a distance to a ring of ``n`` pixels on ``k`` components is multiplied by,
    so that a pixel drawn like its ring has expected distance ``k`` whatever ``n``: then
    ``n / (n + 1)`` times the distance is Hotelling's T^2, of mean ``k (n - 1) / (n - k - 2)``.
    A ring cut by nodata or the image's edge holds fewer pixels, and its distances ran higher
    (many times higher with ``n`` near ``k``: false alarms along nodata borders). The mean is
    matched, not the tail: a small ring's distances still pass a whole ring's rare
    thresholds more often."""
    return n * (n - k - 2) / ((n + 1) * (n - 1))


RX_REACH = 3   # (pixels - 1) / bands below this: RX's ranking is said to flatten (its AUC
               # on chips of the shared scenes held to about 4, and fell at 2)


class GlobalRX(Scorer):
    """Squared Mahalanobis distance to the scene's mean and covariance, fitted in one streaming pass."""

    name = "rx"
    meaning = "RX: squared Mahalanobis distance to the scene"

    def fit(self, source):
        return self.fit_as(source, "RX", "gmm or lrx, which work in a few principal components")

    def fit_as(self, source, what, instead):
        """``fit``, saying a fit on too few pixels a band as that of ``what`` (a score that
        holds this one as a term names itself), to score with ``instead``."""
        n, mean, scatter = scene_moments(source)
        check_pixels(source, n, source.count + 1,
                     f"{what} on {counted(source.count, 'band')}",
                     "one more than bands")
        # a pixel of the n fitted on lies at most (n - 1)^2 / n out, their mean (n - 1) k / n:
        # a target stands out by (n - 1) / k times the mean at most (1.07 at 400 in 371 bands)
        reach = (n - 1) / source.count
        if reach < RX_REACH:
            warn_once(f"{source.name}: {what} fitted on {int(n):,} valid pixels of "
                      f"{source.count} bands: no pixel's distance can exceed {reach:.3g} times "
                      "their mean, too few pixels a band for its covariance to rank the "
                      f"targets; fit on more pixels or fewer bands, or score with {instead}")
        self.mean_, cov = mean_cov(n, mean, scatter)
        self.precision_ = inverse(cov)
        return self

    def score_samples(self, X):
        X = np.asarray(X)
        out = np.empty(len(X), np.float32)
        for part in in_chunks(len(X)):
            d = np.asarray(X[part], dtype=np.float64) - self.mean_
            out[part] = mahalanobis_sq(d, self.precision_)
        return out


def check_ring(outer, guard, label):
    """Refuse a ring that is not odd outer and guard windows with 0 < guard < outer."""
    if outer % 2 == 0 or guard % 2 == 0 or not 0 < guard < outer:
        raise HsanomalyError(f"{label}: local RX needs odd ring sizes with 0 < guard < outer, "
                             f"got outer {outer}, guard {guard}")


class LocalRX(Scorer):
    """RX against the ring between a guard window and an outer window around each pixel.

    Spectra are first projected on the scene's leading principal components (fitted in a
    streaming pass), so each pixel's local covariance is ``pca x pca`` instead of
    ``bands x bands``; ring sums come from integral images, so the cost per
    pixel does not grow with the window.
    """

    name = "lrx"
    meaning = "local RX: squared Mahalanobis distance to the surrounding ring, scaled to its size"
    options = ("outer", "guard", "pca")
    renamed_options = {"components": "pca"}
    unscored_cause = ("the local RX ring around them holds too few valid pixels for a "
                      "covariance (nodata or the image's edge nearby; a score with several "
                      "rings, such as mlrx, scores them from its others)")

    def __init__(self, outer=defaults.LRX_OUTER, guard=defaults.LRX_GUARD,
                 pca=defaults.LRX_PCA):
        check_ring(outer, guard, f"{spell('outer')}/{spell('guard')}")
        check_whole("pca", pca, 1)
        self.outer, self.guard, self.pca = outer, guard, pca

    @property
    def halo(self):
        return self.outer // 2

    def settings(self):
        return {"name": self.name, "outer": self.outer, "guard": self.guard,
                "pca": self.pca}

    def check(self, source, own_model=False):
        self.check_ring_size(source.count)

    def check_ring_size(self, bands):
        """Refuse a ring with too few pixels for a covariance on the principal components
        local RX works in for ``bands`` bands: every pixel would be NaN (a ring scores a pixel
        only when it holds ``ring_minimum(pca)`` of them)."""
        k = min(self.pca, bands)
        pixels = self.outer ** 2 - self.guard ** 2
        if pixels < ring_minimum(k):
            raise HsanomalyError(f"local RX ring {self.outer}/{self.guard} holds {pixels} pixels, "
                                 f"too few for a covariance on {k} principal components (it needs "
                                 f"{ring_minimum(k)}); choose a larger ring or a smaller "
                                 f"{spell('pca')}")

    def fit(self, source):
        n, mean, scatter = scene_moments(source)
        check_pixels(source, n, 2, "local RX", "a mean and a spread")
        return self.set_basis(*mean_cov(n, mean, scatter))

    def set_basis(self, mean, cov):
        """Project on the leading principal axes of the scene's (mean, covariance). Their
        total variance scales the floor added to every ring's covariance, so that the
        scores do not depend on the data's units (a constant in the data's own units would
        take over the covariances of data in small ones, such as radiance in W)."""
        self.check_ring_size(len(cov))
        vals, vecs = np.linalg.eigh(cov)
        k = min(self.pca, len(vals))
        self.mean_, self.projection_ = mean, vecs[:, ::-1][:, :k]
        self.floor_ = RING_FLOOR * float(vals[::-1][:k].sum()) or np.finfo(float).tiny
        return self

    def __setstate__(self, state):
        if "projection_" in state:    # pickled before the floor was relative: it was absolute
            state.setdefault("floor_", RING_FLOOR)
        super().__setstate__(state)

    def score_block(self, block, valid):
        x, integral = self.features(block, valid)
        return {"score": self.ring_score(x, integral, valid, self.halo)[None]}

    def log_score(self, block, valid, exclude=None, crop=None):
        """log local RX of the pixels of a block padded by ``self.halo``, cropped by ``crop``
        (default ``self.halo``); pixels where ``exclude`` is True are left out of the ring
        statistics."""
        x, integral = self.features(block, valid, exclude)
        crop = self.halo if crop is None else crop
        return log_distance(self.ring_score(x, integral, valid, crop))

    def features(self, block, valid, exclude=None):
        """The block's pixels projected on the components, x (rows, cols, k), and the integral
        image of [1, x, upper triangle of x x'] over valid pixels: what every ring's sums of
        counts, means and second moments are read from, so rings can share it. Pixels where
        ``exclude`` is True are left out of the sums (still scored against their rings)."""
        rows, cols = valid.shape
        k = self.projection_.shape[1]
        x = np.zeros((rows, cols, k))
        at = np.nonzero(valid)                  # x[valid]'s order
        projected = np.empty((len(at[0]), k))
        for part in in_chunks(len(at[0])):
            projected[part] = (block[:, at[0][part], at[1][part]].T - self.mean_) @ self.projection_
        x[valid] = projected
        iu = np.triu_indices(k)
        integral = np.zeros((rows + 1, cols + 1, 1 + k + len(iu[0])))
        feats = integral[1:, 1:]        # x is 0 outside valid pixels, and so are its products
        feats[..., 0] = valid
        feats[..., 1:1 + k] = x
        start = 1 + k                    # x_i x_j, j >= i: the upper triangle, row by row
        for i in range(k):
            np.multiply(x[..., i:i + 1], x[..., i:], out=feats[..., start:start + k - i])
            start += k - i
        if exclude is not None:
            feats[exclude] = 0
        np.cumsum(feats, axis=0, out=feats)
        np.cumsum(feats, axis=1, out=feats)
        return x, integral

    def ring_score(self, x, integral, valid, halo):
        """RX of the inner pixels of a block padded by ``halo`` (at least this ring's) against
        their ring, from ``features``; float32 (rows, cols), NaN where the ring is too empty.

        Rows are scored in bands of about ``RING_PIXELS`` pixels, so each band's ring sums and
        covariance systems stay in the CPU's caches."""
        k = x.shape[2]
        rows, cols = valid.shape[0] - 2 * halo, valid.shape[1] - 2 * halo
        score = np.full((rows, cols), np.nan, dtype=np.float32)
        band = max(1, RING_PIXELS // max(cols, 1))
        outer, guard = halo - self.outer // 2, halo - self.guard // 2
        buffer = np.empty((min(band, rows), cols, integral.shape[2]))
        for top in range(0, rows, band):
            height = min(band, rows - top)
            ring = buffer[:height]
            _window_sums(integral, self.outer, outer + top, outer, height, cols, out=ring)
            ring -= _window_sums(integral, self.guard, guard + top, guard, height, cols)
            ring = ring.reshape(height * cols, -1)
            ok = (valid[halo + top:halo + top + height, halo:halo + cols].ravel()
                  & (ring[:, 0] >= ring_minimum(k)))
            if ok.any():
                centre = x[halo + top:halo + top + height, halo:halo + cols].reshape(-1, k)
                values = np.full(len(ring), np.nan, dtype=np.float32)
                values[ok] = self._rx(np.ascontiguousarray(ring[ok].T), centre[ok].T)
                score[top:top + height] = values.reshape(height, cols)
        return score

    def _rx(self, ring, centre):
        """d' C^-1 d per pixel, d = centre - ring mean, C = ring covariance (+ ridge), times
        ``small_sample_factor(n, k)``, from the ring sums [n, sum x, upper triangle of sum
        x x'] (features, pixels) and the centres (k, pixels).

        Pixels lie along the last axis (structure of arrays), and the quadratic form is minus
        the last pivot of the bordered matrix [[C, d], [d', 0]] once its first k are
        eliminated (C is positive definite, so no pivoting is needed); only the lower triangle
        is kept. That is some 2k^2 vectorised operations per band of pixels instead of one
        small LAPACK solve per pixel."""
        k = len(centre)
        iu = np.triu_indices(k)
        n = ring[0]
        mean = ring[1:1 + k] / n
        m = np.empty((k + 1, k + 1, len(n)))
        m[iu[1], iu[0]] = (ring[1 + k:] - ring[1 + iu[0]] * mean[iu[1]]) / (n - 1)
        diag = np.arange(k)
        m[diag, diag] += RIDGE * m[diag, diag].sum(0) + self.floor_
        np.subtract(centre, mean, out=m[k, :k])
        m[k, k] = 0
        for j in range(k):
            factor = m[j + 1:, j] / m[j, j]
            for i in range(j + 1, k + 1):
                m[i, j + 1:i + 1] -= factor[i - j - 1] * m[j + 1:i + 1, j]
        return -m[k, k] * small_sample_factor(n, k)


def _window_sums(integral, size, top, left, rows, cols, out=None):
    """Sums over the ``size x size`` windows whose top-left corners are (top + i, left + j),
    i < rows, j < cols, read off an integral image (a leading row and column of zeros)."""
    r, c = slice(top, top + rows), slice(left, left + cols)
    r2, c2 = slice(top + size, top + size + rows), slice(left + size, left + size + cols)
    out = np.subtract(integral[r2, c2], integral[r, c2], out=out)
    out -= integral[r2, c]
    out += integral[r, c]
    return out
