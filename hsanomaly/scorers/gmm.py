"""Gaussian mixture baseline: PCA then a full-covariance mixture, score -log p."""

import numpy as np

from .. import defaults
from ..cancel import cancel_point
from ..errors import HsanomalyError, ignoring
from ..io.checks import warn_once
from ..options import check_whole
from ..spelling import counted, either, spell
from .base import Scorer, check_pixels

EM_ITERATIONS = 100   # at most (scikit-learn's default)
EM_STEP = 10          # EM iterations between two cancel points (``hsanomaly.cancel``)
REG_COVAR = 1e-6      # added to each mixture covariance's diagonal, in units of the data's spread
FAIR_SHARE = 0.1      # a component holding under this fraction of its fair share (1/k) is a target's


class GaussianMixtureScorer(Scorer):
    name = "gmm"
    meaning = "Gaussian mixture: -log likelihood"
    options = ("components", "pca", "sample", "seed")

    def __init__(self, components=defaults.GMM_COMPONENTS, pca=defaults.GMM_PCA,
                 sample=defaults.GMM_SAMPLE, seed=defaults.SEED):
        for option, value in (("components", components), ("pca", pca), ("sample", sample)):
            check_whole(option, value, 1)
        self.components, self.pca, self.sample, self.seed = components, pca, sample, seed

    def settings(self):
        return {"name": self.name, "components": self.components, "pca": self.pca,
                "sample": self.sample, "seed": self.seed}

    def fit(self, source):
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        X = source.sample(self.sample, seed=self.seed).astype(np.float64)
        dims = min(self.pca, X.shape[1])
        check_pixels(source, len(X), max(self.components, dims + 1),
                     f"a mixture of {self.components} components",
                     f"one per component, and a covariance on "
                     f"{counted(dims, 'principal component')} needs {dims + 1}",
                     self.sample, 2 * self.components * (dims + 1))
        if dims < self.pca != defaults.GMM_PCA:   # asked for (the tag records it)
            warn_once(f"{source.name}: {spell('pca', self.pca)} is more than the bands ({dims}); the "
                      f"mixture is fitted on {dims} principal components")
        with np.errstate(divide="ignore", invalid="ignore"):    # one spectrum: 0/0 variance ratios
            self.pca_ = PCA(n_components=dims, random_state=self.seed).fit(X)
        self.unit_ = float(np.sqrt(np.mean(self.pca_.explained_variance_))) or 1.0
        Z = self._components(X)
        # k-means, which starts EM, cannot place more centres than there are distinct points
        # (scikit-learn's ConvergenceWarning said so, in its words)
        components = min(self.components, len(np.unique(Z, axis=0)))
        if components < self.components:
            warn_once(f"{source.name}: the sampled pixels hold "
                      f"{counted(components, 'distinct spectrum', 'distinct spectra')}, fewer "
                      f"than the mixture's {self.components} components; it is fitted with "
                      f"{components}")
        self.mixture_ = GaussianMixture(components, covariance_type="full",
                                        random_state=self.seed, reg_covar=REG_COVAR,
                                        max_iter=EM_STEP, warm_start=True)
        with ignoring(ConvergenceWarning):   # scikit-learn's own is a developer's: said below
            # EM_STEP iterations a call, each going on where the last stopped (warm_start):
            # the iterations of one call, with a cancel point between two calls
            for _ in range(0, EM_ITERATIONS, EM_STEP):
                cancel_point()
                self.mixture_.fit(Z)
                if self.mixture_.converged_:
                    break
        self.mixture_.set_params(max_iter=EM_ITERATIONS, warm_start=False)
        if not self.mixture_.converged_:
            warn_once(f"{source.name}: the Gaussian mixture did not converge in "
                      f"{self.mixture_.max_iter} EM iterations; its scores are those of the last")
        self._drop_small_components(len(X), source.name)
        return self

    def _drop_small_components(self, pixels, name):
        """Drop the components that hold fewer of the ``pixels`` fitted than their covariance
        needs (dimensions + 1) or than a tenth of their fair share (``FAIR_SHARE`` / k), and
        scale the others' weights back to a sum of 1. EM gives the spare components to what
        stands out: strong, isolated outliers (a covariance of too few pixels for its
        dimensions, shrunk to the floor) or a compact target of a few dozen pixels. Kept, the
        density there is the scene's highest, and the anomalies would score as its most
        normal pixels. With many components (a scene of many classes) each fair share is
        small, and every class that fills a covariance stays. Where no component fills one,
        the mixture is refused: kept alone, the largest was often a compact target's."""
        mixture = self.mixture_
        held = mixture.weights_ * pixels
        dims = mixture.means_.shape[1]
        if held.max() < dims + 1:       # the largest kept alone was often a target's own
            raise HsanomalyError(
                f"{name}: no component of the mixture holds the {dims + 1} pixels a covariance "
                f"on {counted(dims, 'principal component')} needs (the largest: "
                f"{held.max():.0f} of {pixels}); give "
                + either(f"fewer {spell('components')}", f"a smaller {spell('pca')}",
                         (f"a larger {spell('sample')}", "sample")))
        floor = max(dims + 1, FAIR_SHARE * pixels / len(held))
        kept = held >= min(floor, held.max())
        if kept.all():
            return
        for name in ("means_", "covariances_", "precisions_", "precisions_cholesky_"):
            setattr(mixture, name, getattr(mixture, name)[kept])
        mixture.weights_ = mixture.weights_[kept] / mixture.weights_[kept].sum()
        mixture.n_components = int(kept.sum())

    def _components(self, X):
        """The principal components in units of their root mean variance, so that the
        mixture's covariance floor (``reg_covar``) is relative to the data's spread and the
        scores do not depend on the data's units."""
        return self.pca_.transform(np.asarray(X, dtype=np.float64)) / self.unit_

    def __setstate__(self, state):
        if "mixture_" in state:       # pickled before the components were scaled: unscaled
            state.setdefault("unit_", 1.0)
        super().__setstate__(state)

    def score_samples(self, X):
        return (-self.mixture_.score_samples(self._components(X))).astype(np.float32)
