"""Latent search: z* = argmin_z c1 mean((x - G(z))^2) + c2 mean(z^2), per pixel, through ONNX.

``thesis``: the thesis's restarts x gradient steps (the reference; once called ``seed``).
``fast``: a linearised codebook and chord Gauss-Newton steps (the default). Both are numpy +
onnxruntime only.
"""

from .. import defaults
from ..errors import HsanomalyError
from ..options import check_whole, is_real
from ..spelling import spell
from .fast import Codebook, FastSolver
from .generator import GeneratorFunction, reconstruction_cost
from .result import LatentResult
from .thesis import ThesisSolver

SOLVERS = {"fast": FastSolver, "thesis": ThesisSolver}
DEPRECATED_NAMES = {"seed": "thesis"}   # accepted for one release, with a warning


def current_solver(name, warn=True):
    """A solver's name now: a deprecated one (``DEPRECATED_NAMES``) still works, with a warning
    to users (``warn``; DeprecationWarning is shown to developers only)."""
    if name not in DEPRECATED_NAMES:
        return name
    if warn:
        from ..errors import HsanomalyDeprecationWarning
        from ..io.checks import warn_once

        warn_once(f"{spell('solver')} {name!r} is now called {DEPRECATED_NAMES[name]!r}; the old "
                  "name goes in the next release", HsanomalyDeprecationWarning)
    return DEPRECATED_NAMES[name]


def make_solver(name, *, c1=defaults.C1, c2=defaults.C2, restarts=defaults.RESTARTS,
                steps=defaults.STEPS, codebook=defaults.CODEBOOK, refine=defaults.REFINE,
                codebook_scale=defaults.CODEBOOK_SCALE, seed=defaults.SEED):
    """A solver by its CLI name; ``restarts``/``steps`` configure the thesis solver only,
    ``codebook`` (entries), ``refine`` (Gauss-Newton steps) and ``codebook_scale`` (the
    codebook's latent spread, in the prior's standard deviations) the fast solver only.
    ``seed`` is the random seed."""
    name = current_solver(name)
    # every option is checked whichever solver takes it: a bad value is a mistake either way
    check_whole("restarts", restarts, 1)
    check_whole("steps", steps, 1)
    check_whole("codebook", codebook, defaults.MIN_CODEBOOK)
    check_whole("refine", refine, 0)
    if not is_real(codebook_scale) or codebook_scale <= 0:
        raise HsanomalyError(f"{spell('codebook_scale')} must be a finite number above 0, "
                             f"got {codebook_scale!r}")
    if name not in SOLVERS:
        raise HsanomalyError(f"{spell('solver')}: unknown solver {name!r}; choose one of "
                             f"{', '.join(SOLVERS)}")
    given = dict(c1=c1, c2=c2, restarts=restarts, steps=steps, codebook=codebook, refine=refine,
                 codebook_scale=codebook_scale, seed=seed)
    _warn_of_the_other_solvers_options(name, given)
    return SOLVERS[name](**{option: given[option] for option in SOLVERS[name].options})


def _warn_of_the_other_solvers_options(name, given):
    """An option only another solver takes (in its ``options``, not in this one's), set away
    from its default, does nothing here: say so (it was ignored without a word)."""
    from ..io.checks import warn_once

    other = [option for option in dict.fromkeys(o for cls in SOLVERS.values() for o in cls.options)
             if option not in SOLVERS[name].options
             and given[option] != getattr(defaults, option.upper())]
    if other:
        warn_once(f"{', '.join(spell(option) for option in other)}: an option of the other "
                  f"latent search, which {spell('solver', name)} does not use; it has no effect")


__all__ = ["Codebook", "FastSolver", "GeneratorFunction", "LatentResult", "SOLVERS", "ThesisSolver",
           "current_solver", "make_solver", "reconstruction_cost"]
