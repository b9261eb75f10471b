"""scikit-learn's parameter protocol for an estimator of one score: the score's name, a
model, a tile size and the score's options, got and set by name (``get_params``,
``set_params``, or an attribute: ``d.outer = 15``), a change unfitting it but for how it
runs (``HOW_IT_RUNS``: a detector fitted on a GPU machine scores on a laptop)."""

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Dict, Mapping, Tuple, TypeVar

from .errors import HsanomalyError
from .options import OPTION_KINDS
from .scorers import chosen, current_options, scorer_class

PARAMETERS = ("score", "score_name", "model", "tile")     # and the options (``OPTION_KINDS``)
# options that say how a fit runs, not what it learned: changed, the fit is kept
HOW_IT_RUNS = ("device", "threads")
T = TypeVar("T", bound="ScoreParameters")


class ScoreParameters:
    """The parameters of ``__init__(score, model, tile, **options)``, which checks them and
    keeps them with ``_keep``; an assignment is taken as ``set_params`` takes it (it was
    ignored, or, ``d.score = "gmm"``, hid the ``score`` method)."""

    score_name: str
    model: Any
    tile: Any
    _options: Dict[str, Any]
    _fitted_state: Tuple[str, ...] = ()       # what a change of parameters drops

    def _keep(self, score, model, tile, options):
        """Keep the checked parameters (past ``__setattr__``)."""
        self.__dict__.update(score_name=score, model=model, tile=tile, _options=options)

    @property
    def options(self) -> Mapping[str, Any]:
        """The score's options given, read only (``set_params`` or an assignment sets one)."""
        return MappingProxyType(self._options)

    if not TYPE_CHECKING:    # a checker sees no catch-all that takes a misspelt method
        def __getattr__(self, name):     # an option as an attribute (None: its default)
            state = self.__dict__
            options = state.get("_options", {})
            if not name.startswith("_") and "score_name" in state and (
                    name in options or name in scorer_class(state["score_name"]).options):
                # given by a former name, it is read by its name now
                return options.get(name, current_options(state["score_name"], options,
                                                         warn=False).get(name))
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        known = "score_name" in self.__dict__      # a subclass may set one before ``_keep``
        if known and (name in PARAMETERS or name in OPTION_KINDS or name in self._options):
            self.set_params(**{"score" if name == "score_name" else name: value})
        else:
            object.__setattr__(self, name, value)

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters: score, model, tile and the options given."""
        return {"score": self.score_name, "model": self.model, "tile": self.tile, **self._options}

    def set_params(self: T, **params: Any) -> T:
        """Change parameters; an option set to None goes back to the score's default (so
        ``set_params(score="rx", outer=None)`` leaves local RX's options behind). A fitted
        detector whose parameters change is no longer fitted: what it learned was learned
        with the others, so ``score`` asks for ``fit`` again; but for ``HOW_IT_RUNS`` alone
        (device, threads), which change how its networks run, not what it learned."""
        before = self.get_params()
        score, _ = chosen(params.get("score", self.score_name), {})
        # a former option name means what its score made of it: carried to another score it
        # must mean the same there (gmm's mixture components are not local RX's principal ones)
        old, new = scorer_class(self.score_name), scorer_class(score)
        merged = dict(before)
        for name in self._options:
            meaning = (old.renamed_options.get(name, name), new.renamed_options.get(name, name))
            if name in params:
                continue
            if any(new.renamed_options.get(given, given) == meaning[0] for given in params):
                del merged[name]       # given anew, by its name now or by its former one
            elif meaning[0] != meaning[1] and meaning[1] in new.options:
                raise HsanomalyError(
                    f"{name}: score {self.score_name!r} takes it as {meaning[0]}, score "
                    f"{score!r} as {meaning[1]}; set it to None to leave it behind, and give "
                    "the new score's option by its name")
        type(self).__init__(self, **{**merged, **params})
        after = self.get_params()
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        if changed and not (changed <= set(HOW_IT_RUNS) and self._runs_on(after)):
            for name in self._fitted_state:
                self.__dict__.pop(name, None)
        return self

    def _runs_on(self, params):
        """Whether a fit is kept, run from now on as ``params`` say (``HOW_IT_RUNS``)."""
        return False
