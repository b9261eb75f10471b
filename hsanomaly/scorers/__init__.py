"""Anomaly scorers. ``make_scorer(name, **options)`` builds one by its CLI name."""

from ..errors import HsanomalyError
from .base import Scorer
from .gmm import GaussianMixtureScorer
from .rx import GlobalRX, LocalRX

BASELINES = {"rx": GlobalRX, "lrx": LocalRX, "gmm": GaussianMixtureScorer}
GAN_SCORES = ("critic", "recon", "anogan")
# Scores of the GAN's reconstruction residual, fitted on the scene (see scorers/context.py).
RESIDUAL_SCORES = ("resrx", "context")
MODEL_SCORES = GAN_SCORES + RESIDUAL_SCORES
SCORES = tuple(BASELINES) + MODEL_SCORES


def make_scorer(name, **options):
    """A scorer by name; model scores need ``model=<bundle path>`` among the options."""
    if name in BASELINES:
        return BASELINES[name](**options)
    if name in GAN_SCORES:
        from .gan import GanScorer

        return GanScorer(score=name, **options)
    if name in RESIDUAL_SCORES:
        from .context import make_residual_scorer

        return make_residual_scorer(name, **options)
    raise HsanomalyError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")


__all__ = ["BASELINES", "GAN_SCORES", "MODEL_SCORES", "RESIDUAL_SCORES", "SCORES", "Scorer", "GaussianMixtureScorer",
           "GlobalRX", "LocalRX", "make_scorer"]
