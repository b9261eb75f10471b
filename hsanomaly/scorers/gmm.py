"""Gaussian mixture baseline: PCA then a full-covariance mixture, score -log p."""

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from .base import Scorer, check_pixels


class GaussianMixtureScorer(Scorer):
    name = "gmm"
    meaning = "Gaussian mixture: -log likelihood"
    options = ("components", "pca", "sample", "seed")

    def __init__(self, components=defaults.GMM_COMPONENTS, pca=defaults.GMM_PCA,
                 sample=defaults.GMM_SAMPLE, seed=defaults.SEED):
        for option, value in (("components", components), ("pca", pca), ("sample", sample)):
            if value < 1:
                raise HsanomalyError(f"--{option} must be at least 1, got {value}")
        self.components, self.pca, self.sample, self.seed = components, pca, sample, seed

    def params(self):
        return {"name": self.name, "components": self.components, "pca": self.pca,
                "sample": self.sample, "seed": self.seed}

    def fit(self, source):
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        X = source.sample(self.sample, seed=self.seed).astype(np.float64)
        check_pixels(source, len(X), max(2, self.components),
                     f"a mixture of {self.components} components", "one per component")
        self.pca_ = PCA(n_components=min(self.pca, X.shape[1], len(X)), random_state=self.seed).fit(X)
        self.mixture_ = GaussianMixture(self.components, covariance_type="full",
                                        random_state=self.seed, reg_covar=1e-6)
        self.mixture_.fit(self.pca_.transform(X))
        return self

    def score_samples(self, X):
        Z = self.pca_.transform(np.asarray(X, dtype=np.float64))
        return (-self.mixture_.score_samples(Z)).astype(np.float32)
