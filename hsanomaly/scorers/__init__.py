"""The scorer registry: one place that says what each score name means.

Each scorer class declares its ``name``, whether it ``needs_model``, whether it
``fits_on_scene`` and the ``options`` it takes; ``make_scorer`` reads those declarations,
so an option a score does not take, or a value of the wrong kind (``hsanomaly.options``), is refused
with one line instead of a TypeError.
"""

from types import MappingProxyType

from ..errors import HsanomalyError
from .. import defaults
from ..options import (OPTION_KINDS, TRAINING_KINDS, check_values, given, plain_values,
                       under_current_names)
from ..spelling import closest, spell
from .base import Scorer
from .context import (ContextScorer, DualContextScorer, MultiContextScorer,
                      ResidualContextScorer, ResidualRXScorer)
from .gan import AnoganScorer, CriticScorer, ReconScorer
from .gmm import GaussianMixtureScorer
from .rings import MultiRingLRX, RXMultiRingLRX
from .rx import GlobalRX, LocalRX

# A closed set, read-only: a class added by hand would have its halo and settings trusted
# unchecked (seams at tile borders; resume keeping a heatmap of other options), and the name
# lists below, the command line and Dask's workers would not know it (docs/architecture.md)
REGISTRY = MappingProxyType({cls.name: cls for cls in (
    GlobalRX, LocalRX, GaussianMixtureScorer, CriticScorer, ReconScorer, AnoganScorer,
    ResidualRXScorer, ContextScorer, MultiRingLRX, RXMultiRingLRX, MultiContextScorer,
    ResidualContextScorer, DualContextScorer)})
SCORES = tuple(REGISTRY)
# every option name some score takes, former names too: a name outside it is a misspelling
KNOWN_OPTIONS = frozenset({*OPTION_KINDS, *(old for cls in REGISTRY.values()
                                            for old in cls.renamed_options)})
BASELINES = tuple(name for name, cls in REGISTRY.items() if not cls.needs_model)
MODEL_SCORES = tuple(name for name, cls in REGISTRY.items() if cls.needs_model)


def scorer_class(name):
    """The class behind a score name; an unknown name is refused with the list of names."""
    if name not in REGISTRY:
        raise HsanomalyError(f"unknown score {name!r}; {closest(name, SCORES)}"
                             f"choose one of {', '.join(SCORES)}")
    return REGISTRY[name]


def chosen(score, options):
    """(score, options) as asked: None for the score is the default score
    (``defaults.SCORE``), None for an option is that score's default (``options.given``).
    A name no score takes is refused even as None: a misspelt keyword never passes."""
    score = defaults.SCORE if score is None else score
    misspelt = {k: v for k, v in options.items() if v is None and k not in KNOWN_OPTIONS}
    if misspelt:
        check_options(score, misspelt)
    return score, given(options)


def current_options(name, options, warn=True):
    """``options`` under their names now: a former name of an option of score ``name``
    (``Scorer.renamed_options``) still works, and a warning gives the name now (``warn``:
    a Detector said it when it was built, and its fit need not say it again)."""
    return under_current_names(options, scorer_class(name).renamed_options, f"score {name!r}",
                               "this option", warn)


def refuse_former_option(name, options):
    """Refuse a former option name of score ``name`` (its ``renamed_options``) among
    ``options``. A shell (the command line, QGIS) names every field as options are named now,
    so a former name there is a field meant for another score (QGIS's "Mixture components" is
    gmm's, not the rings' former name of "pca"), not the option it names now."""
    renamed = scorer_class(name).renamed_options
    for former, now in renamed.items():
        if former in options:
            raise HsanomalyError(f"{spell(former)}: score {name!r} has no such option (its own "
                                 f"is {spell(now)})")


def extra_label(kind):
    """An extra output as the door in use names it: ``--recon-out``, ``extras['recon']``."""
    return spell(f"{kind}_out", python=f"extras[{kind!r}]")


def check_options(name, options):
    """Refuse, with one line naming it, an option that score ``name`` does not take or a value
    that is not of the option's kind."""
    cls = scorer_class(name)
    options = current_options(name, options)
    allowed = set(cls.options) | ({"model"} if cls.needs_model else set())
    for option in options:
        if option not in allowed:
            takes = ", ".join(spell(o) for o in cls.options) or "no options"
            if option == "model":
                raise HsanomalyError(f"{spell('model')}: score {name!r} takes no model (a baseline "
                                     "fitted on the scene itself)")
            if option in TRAINING_KINDS and cls.needs_model:    # asked of the quick model
                raise HsanomalyError(f"{spell(option)}: an option of training, not of score "
                                     f"{name!r}; train a model with it and pass that as "
                                     f"{spell('model')}")
            raise HsanomalyError(f"{spell(option)}: score {name!r} does not take this "
                                 f"option ({closest(option, cls.options, name=spell)}it takes "
                                 f"{takes})")
    check_values(options)
    return cls


def check_extras(cls, extras):
    """Refuse an extra output (``extras``: names, e.g. {"recon": path}) that score class
    ``cls`` cannot write, before a model is trained or read."""
    for name in extras or {}:
        if name not in cls.extra_outputs:
            raise HsanomalyError(f"{extra_label(name)}: score {cls.name!r} has no {name!r} output "
                                 f"(it offers: {', '.join(cls.extra_outputs) or 'none'})")


def check_measured(scorer, extras):
    """Refuse an extra output that ``scorer`` would write without measuring it: the
    convergence band of a fast search that takes no step would be all zeros."""
    if "convergence" in (extras or {}) and "convergence" in scorer.unmeasured_outputs():
        raise HsanomalyError(f"{extra_label('convergence')}: the fast solver with "
                             f"{spell('refine', 0)} (the default) takes no step, so the band "
                             f"would be all zeros; pass {spell('refine', placeholder='N')} or "
                             f"{spell('solver', 'thesis')}")


def make_scorer(name, **options):
    """A scorer by name; model scores need ``model=<bundle path>`` among the options."""
    # a numpy number as the Python one it holds: a run's record writes it as JSON
    options = plain_values(current_options(name, options))
    cls = check_options(name, options)
    if cls.needs_model and options.get("model") is None:
        raise HsanomalyError(f"score {name!r} needs a model bundle (model=..., from hsanomaly train)")
    scorer = cls(**options)
    scorer.options_asked = {k: v for k, v in options.items() if k != "model"}
    return scorer


def scorer_for(name, options, model):
    """The scorer ``name`` with ``options``, reading ``model`` where the score takes one (a
    baseline, fitted on the scene, takes none: ``model`` is left aside)."""
    return make_scorer(name, **options, **({"model": model} if scorer_class(name).needs_model
                                           else {}))


def check_scorer(name, options, model=None):
    """Build the scorer once without reading a model (model scores load theirs on first use),
    so that every option's kind and range is refused before a model is trained or a pixel read.
    ``model``: the bundle given, if any (a baseline refuses one)."""
    cls = scorer_class(name)
    if model is None and cls.needs_model:
        model = "not loaded"
    make_scorer(name, **options, **({} if model is None else {"model": model}))
    return cls


__all__ = ["BASELINES", "MODEL_SCORES", "REGISTRY", "SCORES", "Scorer", "check_extras",
           "check_measured", "check_options", "check_scorer", "chosen", "current_options",
           "make_scorer", "scorer_class", "scorer_for"]
