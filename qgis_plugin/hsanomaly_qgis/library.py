"""What the algorithms show that the hsanomaly library decides: score names, solvers, defaults.

Read from the library when the algorithms are built (``initAlgorithm``), never restated by
hand, so QGIS offers what the command line offers. Only where hsanomaly cannot be imported
(or only one of another release line) does ``FALLBACK`` stand in: the dialogs still open (and say how to install the library),
but nothing can run until it is installed. ``tests/qgis`` checks the fallback against the
library so it cannot drift.
"""

import importlib
import inspect
from types import SimpleNamespace

from .dependencies import unmet

FALLBACK = SimpleNamespace(
    available=False,
    version=None,
    scores=("rx", "lrx", "gmm", "critic", "recon", "anogan", "resrx", "context", "mlrx",
            "rxmlrx", "mcontext", "rescontext", "dualcontext"),
    model_scores=("critic", "recon", "anogan", "resrx", "context", "mcontext", "rescontext",
                  "dualcontext"),
    solvers=("fast", "thesis"),
    score="dualcontext",
    purge=0.03,
    top_rings=4,
    neighbour_weight=0.5,
    rings="7/3;11/5;15/5;21/7;25/9;31/11;41/15",
    solver="fast",
    tile=256,
    min_tile=8,
    iterations=250,
    train_bands=32,
    train_window=1,
    train_seed=0,
    seed=0,
    pd_far=0.001,
    taking={"outer": ("lrx", "context"), "guard": ("lrx", "context"),
            "pca": ("lrx", "gmm", "context", "mlrx", "rxmlrx", "mcontext", "rescontext",
                    "dualcontext"),
            "components": ("gmm",),
            "seed": ("gmm", "recon", "anogan", "resrx", "context", "mcontext", "rescontext",
                     "dualcontext"),
            "solver": ("recon", "anogan", "resrx", "context", "mcontext", "rescontext",
                       "dualcontext")},
)
# options whose scores the dialog names (and "solver": the scores that search the latent space)
TAKING = ("outer", "guard", "pca", "components", "seed", "solver")


def load():
    """The library's choices and defaults, or ``FALLBACK`` where hsanomaly is not importable."""
    if unmet("hsanomaly"):          # missing, or of another release line than the plugin
        return FALLBACK
    try:
        hsanomaly = importlib.import_module("hsanomaly")
        defaults = importlib.import_module("hsanomaly.defaults")
        scorers = importlib.import_module("hsanomaly.scorers")
        latent = importlib.import_module("hsanomaly.latent")
    except ImportError:
        return FALLBACK
    return SimpleNamespace(
        available=True,
        version=hsanomaly.__version__,
        scores=tuple(scorers.SCORES),
        model_scores=tuple(scorers.MODEL_SCORES),
        solvers=tuple(latent.SOLVERS),
        score=defaults.SCORE,
        purge=_default(scorers.REGISTRY[defaults.SCORE], "purge"),
        top_rings=_default(scorers.REGISTRY[defaults.SCORE], "top_rings"),
        neighbour_weight=_default(scorers.REGISTRY[defaults.SCORE], "neighbour_weight"),
        rings=importlib.import_module("hsanomaly.scorers.rings").rings_text(defaults.RINGS),
        solver=defaults.SOLVER,
        tile=defaults.TILE,
        min_tile=defaults.MIN_TILE,
        iterations=defaults.ITERATIONS,
        train_bands=defaults.TRAIN_BANDS,
        train_window=defaults.TRAIN_WINDOW,
        train_seed=defaults.TRAIN_SEED,
        seed=defaults.SEED,
        pd_far=defaults.PD_FAR,
        taking={option: tuple(name for name, cls in scorers.REGISTRY.items()
                              if option in cls.options) for option in TAKING},
    )


def _default(scorer_class, option):
    """The value of ``option`` a score uses when none is given, as its class declares it
    (None: the score does not take it)."""
    parameter = inspect.signature(scorer_class).parameters.get(option)
    return None if parameter is None else parameter.default


def takes_solver(score):
    """True when ``score`` searches the latent space (and so takes the ``solver`` option)."""
    return score in load().taking["solver"]
