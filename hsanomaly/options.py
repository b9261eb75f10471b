"""The kind of value each scorer option takes, checked in one place before a scorer is built.

The CLI's click types and QGIS's parameters already hand over numbers; the library, the
benchmark's ``name:key=value`` methods and scripts hand over whatever they were given. A text
where a count belongs would otherwise surface as a TypeError from deep inside a scorer, or
only after a model was trained. Ranges stay with the scorer that knows them; here only the
kind is checked, a seed's range (which numpy and scikit-learn enforce only when they draw), and
the ranges several scorers share, so that they are worded once (``check_left_out``,
``check_not_negative``). Only numpy and the package's lightest modules are imported.
The keywords a job takes are checked here too (``check_keywords``).
"""

import functools
import inspect
import math
import numbers
from typing import Any, Callable, TypeVar, cast

import numpy as np

from .defaults import SEED_MAX
from .errors import HsanomalyDeprecationWarning, HsanomalyError
from .spelling import closest, nearest, spell

F = TypeVar("F", bound=Callable[..., Any])


def _whole(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """A finite real number (not a bool, which Python counts as one)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _rings(value):
    """A text like "7/3;15/5" (parsed by the ring scorers) or (outer, guard) pairs."""
    if isinstance(value, str):
        return True
    try:
        pairs = list(value)
    except TypeError:
        return False
    return all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_whole(v) for v in p)
               for p in pairs)


KINDS = {   # kind -> (test, what the value must be)
    "whole": (_whole, "a whole number"),
    "optional_whole": (lambda v: v is None or _whole(v), "a whole number or None"),
    "seed": (lambda v: _whole(v) and 0 <= v <= SEED_MAX,
             f"a whole number from 0 to {SEED_MAX}"),
    "real": (is_real, "a finite number"),
    "flag": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
    "text": (lambda v: isinstance(v, str), "a text"),
    "callback": (lambda v: v is None or callable(v), "None or a function (fraction, message)"),
    "rings": (_rings, "outer/guard pairs like '7/3;15/5' or ((7, 3), (15, 5))"),
}

OPTION_KINDS = {
    # latent search and the reconstruction cost
    "solver": "text", "restarts": "whole", "steps": "whole", "codebook": "whole",
    "refine": "whole", "codebook_scale": "real", "c1": "real", "c2": "real", "lam": "real",
    # the runtime
    "device": "text", "threads": "optional_whole", "ignore_wavelengths": "flag",
    # the statistics a score fits
    "components": "whole", "pca": "whole", "sample": "whole", "seed": "seed", "trim": "real",
    # spatial context
    "outer": "whole", "guard": "whole", "rings": "rings", "top_rings": "whole",
    "purge": "real", "weight": "real", "neighbour_weight": "real",
}


def check_whole(name, value, minimum, optional=False):
    """Refuse ``value`` of argument ``name`` unless it is a whole number of at least
    ``minimum`` (or None, if ``optional``)."""
    if optional and value is None:
        return
    if not _whole(value) or value < minimum:
        raise HsanomalyError(f"{spell(name)} must be a whole number of at least {minimum}, "
                             f"got {value!r}")


def check_left_out(name, value):
    """A share of the most extreme pixels left out of a fit: in [0, 0.5), so most are kept."""
    if not 0 <= value < 0.5:
        raise HsanomalyError(f"{spell(name)} must lie in [0, 0.5), got {value}")
    return float(value)


def check_not_negative(name, value):
    if not value >= 0:
        raise HsanomalyError(f"{spell(name)} must be at least 0, got {value}")
    return float(value)


TRAINING_KINDS = {   # hsanomaly.train's options; ranges stay with training.Settings
    "window": "whole", "bands": "optional_whole", "iterations": "whole", "seed": "seed",
    "dim": "whole", "latent_dim": "whole", "critic_steps": "whole", "batch": "whole",
    "lr": "real", "threads": "optional_whole", "device": "text",
    "sqrt": "flag", "whiten": "flag", "background_only": "flag", "boost_rare": "flag",
    "resume": "flag", "progress": "flag", "callback": "callback", "codebook_jacobians": "flag",
}


def plain_values(options):
    """numpy scalars among ``options`` as the Python numbers they stand for: JSON (manifests,
    model.json, checkpoints) and torch's seeds take only those."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()}


def given(options):
    """The options given: one given as None is not, so the score's default applies (alike
    at every door: ``Detector``, ``detect``, ``detect_many`` and the command line)."""
    return {k: v for k, v in options.items() if v is not None}


def check_values(options, kinds=OPTION_KINDS):
    """Refuse, with one line naming it, an option whose value is not of its kind in ``kinds``
    (options without a kind there are left to their owner)."""
    for option, value in options.items():
        kind = kinds.get(option)
        if kind is None:
            continue
        test, what = KINDS[kind]
        if not test(value):
            raise HsanomalyError(f"{spell(option)} must be {what}, got {value!r}")


def check_callbacks(callback, settled=None):
    """Refuse a run's progress callback, or a batch's ``settled``, that is not None or a
    function."""
    check_values({"callback": callback}, {"callback": "callback"})
    if settled is not None and not callable(settled):
        raise HsanomalyError(f"{spell('settled')} must be None or a function (item), got "
                             f"{settled!r}")


def check_flags(**flags):
    """Refuse a switch that is not True or False: a text such as "no" is truthy, and an
    ``overwrite="no"`` taken as True would replace a file the caller meant to keep."""
    check_values(flags, dict.fromkeys(flags, "flag"))


def check_keywords(job, function, options, internal=()):
    """Refuse, in one line listing the others, a keyword ``function`` does not take (a
    misspelt option raised TypeError deep in the job) or keeps for the library's own calls
    (``internal``: skipping the data checks, say)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    known = [k for k in keywords(function) if k not in internal]
    for name in options:
        if name not in parameters or name in internal:
            raise HsanomalyError(f"{job}: no option {name!r} ({closest(name, known)}the options: "
                                 f"{', '.join(known)})")


def public_signature(function, internal, front):
    """``function``'s signature less the library's own keywords, typed as door ``front``."""
    signature, hints = inspect.signature(function), inspect.signature(front)
    return signature.replace(return_annotation=hints.return_annotation, parameters=[
        p.replace(annotation=hints.parameters[p.name].annotation) if p.name in hints.parameters
        else p for p in signature.parameters.values() if p.name not in internal])


def keywords(function, positional=False):
    """The names ``function`` takes as keywords: its keyword-only ones, and with
    ``positional`` those it also takes by position (never ``self``)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY,) + (
        (inspect.Parameter.POSITIONAL_OR_KEYWORD,) if positional else ())
    return [k for k, p in inspect.signature(function).parameters.items()
            if p.kind in kinds and k != "self"]


def check_near_misses(job, function, options):
    """Refuse an option no score takes that is a near miss of one of ``function``'s own
    keywords (``overwite=True``): it would be refused as an option of the score, which lists
    the score's options, not the keyword meant. A near miss of a score option ("thread" for
    "threads") is left to the score's own refusal, which names it."""
    own = keywords(function, positional=True)
    for name in options:
        if name in OPTION_KINDS:
            continue
        meant = nearest(name, own + [k for k in OPTION_KINDS if k not in own])
        if meant in own:
            raise HsanomalyError(f"{job}: no option {name!r} (did you mean {meant!r}?)")


def check_door_keywords(door, options, detect, function, why, otherwise):
    """Refuse, as what they are, the job options of ``detect`` that another door (``door``,
    whose signature is ``function``) does not take: they were refused as options of the
    score, which named the score's options, not the door's. ``why``: {keyword: the reason},
    ``otherwise``: the reason for the others."""
    only = set(keywords(detect, positional=True)) - set(keywords(function, positional=True))
    for name in options:
        if name in only:
            raise HsanomalyError(f"{door}: no option {name!r}: {why.get(name, otherwise)} "
                                 f"(detect takes {name}= for one raster)")


def check_batch_keywords(options, detect, detect_many):
    """``check_door_keywords`` for ``detect_many`` (heatmaps and what is drawn from them)."""
    check_door_keywords("detect_many", options, detect, detect_many,
                        {"resume": "a rerun of the batch resumes by itself",
                         "cog": "a batch writes tiled GeoTIFF heatmaps"},
                        "a batch writes heatmaps, and quick looks and polygons drawn from them")


def under_current_names(values, renames, owner, what="it", warn=True):
    """``values`` (name -> value) under their names now: a former name (``renames``: former ->
    now) still works for a release, with a deprecation warning giving the name now (``warn``);
    both names together are refused. ``owner`` and ``what`` word the messages ("score 'lrx'
    calls this option 'pca' now")."""
    current = dict(values)
    for old, new in renames.items():
        if old not in current:
            continue
        if new in current:
            raise HsanomalyError(f"{spell(old)}: {owner} calls {what} {spell(new)} now, and both "
                                 f"were given; give {spell(new)} only")
        if warn:
            from .io.checks import warn_once

            warn_once(f"{spell(old)}: {owner} calls {what} {spell(new)} now; its former name "
                      "goes in the next release", HsanomalyDeprecationWarning)
        current[new] = current.pop(old)
    return current


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Let a function's former keyword names (``outer="outer_mask"``) still work for a release
    (``under_current_names``). The signature shown is the function's own."""
    def wrap(function):
        parameters = [name for name, p in inspect.signature(function).parameters.items()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(function)
        def call(*args, **kwargs):
            # a renamed argument given by position with its former name as a keyword too:
            # both names were given (not a TypeError naming only the name now); any other
            # keyword goes on as given, so Python refuses a repeated one as it would
            by_position = {new: None for new in renames.values() if new in parameters[:len(args)]
                           and new not in kwargs}
            named = under_current_names({**by_position, **kwargs}, renames, function.__name__)
            return function(*args, **{k: v for k, v in named.items() if k not in by_position})
        return cast(F, call)
    return wrap
