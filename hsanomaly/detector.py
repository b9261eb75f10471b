"""``Detector``: the scikit-learn face of every score, on arrays, open rasters and xarray.

    import hsanomaly
    heat = hsanomaly.Detector("rx").fit(cube).score(cube)      # (rows, cols) float32

It runs the engine's own tiles in memory (``engine.score_array``), so its numbers are the
ones ``hsanomaly detect`` writes for the same raster and tile size. Halos, nodata (NaN or
the dataset's mask) and the model's preprocessing are handled inside.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, SupportsIndex, TypeVar, Union, overload

import numpy as np

from . import defaults
from . import errors
from .errors import HsanomalyError, ran_out_said
from .hints import Cube, LabelledArray, ModelArg
from .io.checks import one_job
from .io.inputs import as_source
from .latent import current_solver
from .parameters import ScoreParameters
from .options import (check_door_keywords, check_flags, check_near_misses, plain_values,
                      renamed_keywords)
from .quickmodel import QuickModelFolder
from .scorers import (check_scorer, chosen, current_options, make_scorer, scorer_class,
                      scorer_for)
from .spelling import DETECTOR, counted, spell
from .validate import model_path

if TYPE_CHECKING:
    from .scorers.base import Scorer

Labelled = TypeVar("Labelled", bound=LabelledArray)    # a DataArray in, a DataArray out
D = TypeVar("D", bound="Detector")                      # fit returns the detector, subclass too



class Detector(ScoreParameters):
    """An anomaly detector with scikit-learn's contract.

    score: a name from ``hsanomaly.scorers.SCORES``; model: a bundle directory for the scores
    that need one (without it, ``fit`` trains a quick model on X, which needs torch);
    tile: the tile size the engine scores in; options: the score's own (``outer``,
    ``guard``, ``solver``, ``codebook``, ``c1``, ``c2``, ``device``, ``threads``, ...), refused
    with one line when the score does not take them. After ``fit``: ``scorer_`` (the fitted
    scorer), ``model_`` (the bundle used, if any) and ``n_features_in_`` (its bands).
    ``score(X)`` gives a score per pixel (high: anomalous), not scikit-learn's one number of
    ``score(X, y)`` (``cross_val_score`` needs a scorer of its own); hence ``score_name``.
    """

    _fitted_state = ("scorer_", "model_", "n_features_in_", "_workdir", "_fitted_scene")
    scorer_: "Scorer"               # set by fit (unset before: scikit-learn's "not fitted")
    model_: Optional[str]
    n_features_in_: int

    @one_job()
    def __init__(self, score: Optional[str] = defaults.SCORE, model: Optional[ModelArg] = None,
                 tile: SupportsIndex = defaults.TILE, **options: Any) -> None:
        # every option's kind and range, before fit trains a quick model, and before anything
        # is set: a set_params that is refused leaves the detector as it was
        from .engine.checks import check_tile

        check_detector_keywords(options)
        check_near_misses("Detector", Detector.__init__, options)
        score, options = chosen(score, options)          # None: the default, as detect takes it
        path = model_path(model)
        check_scorer(score, options, path)
        check_tile(tile)
        self._keep(score, model, tile, options)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "scorer_")

    def _runs_on(self, params):
        if not hasattr(self, "scorer_"):
            return False
        self.scorer_ = self.scorer_.runs_on(params.get("device") or defaults.DEVICE,
                                            params.get("threads"))
        return True

    def __sklearn_tags__(self):
        """scikit-learn's tags (its ``check_is_fitted`` asks for them): no target needed, a
        cube in (no table), NaN taken as nodata."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    input_tags=InputTags(two_d_array=False, three_d_array=True, allow_nan=True))

    def __repr__(self):
        model = model_path(self.model, check=False)         # a Bundle by its folder
        shown = plain_values({**self.get_params(), "model": None if model is None else str(model)})
        params = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None)
        return f"Detector({params})"

    # pickling: a quick model lives in a temporary folder that goes with this object, so a
    # pickled detector carries its files and unpacks them into a folder of its own
    def __getstate__(self):
        state = {k: v for k, v in vars(self).items() if k != "_workdir"}
        if getattr(self, "_workdir", None) is not None:
            state["_quick_model_files"] = QuickModelFolder.packed(self.model_)
        return state

    def __setstate__(self, state):
        files = state.pop("_quick_model_files", None)
        for before, now in (("options", "_options"), ("n_bands_in_", "n_features_in_")):
            if before in state:      # pickled by 0.2's development versions
                state[now] = state.pop(before)
        self.__dict__.update(state)
        if files is not None:
            self._workdir, self.model_ = QuickModelFolder.unpacked(files)
            self.scorer_.moved_to(Path(self.model_))

    # fitting and scoring ------------------------------------------------------------------------
    @one_job(DETECTOR)
    def fit(self: D, X: Cube, y: Any = None) -> D:
        """Fit on X (a cube (bands, rows, cols), whose mask, if a masked array, is nodata; an
        open rasterio dataset; or an xarray DataArray, see ``io.inputs``); returns self."""
        return self._fit(_as_source(X)[0])

    def _fit(self, source, then_scored=False):
        with ran_out_said(source.name, f"; try a smaller {spell('tile')}"):
            return self._fit_source(source, then_scored)

    def _fit_source(self, source, then_scored):
        """``fit`` on a source (``then_scored``: scored next, ``engine.fit_scorer``, for its
        score alone)."""
        from .engine.checks import check_scorable
        from .model.compat import fitted_scene
        from .quickmodel import check_quick_model, train_on_copy

        cls = scorer_class(self.score_name)
        options = current_options(self.score_name, self._options, warn=False)  # said when built
        if "solver" in options:                                                 # so was this
            options["solver"] = current_solver(options["solver"], warn=False)
        # absolute: a pickled detector is unpickled wherever it goes (another process, another
        # working directory) and reads the bundle's codebook there
        model = None if self.model is None else str(Path(model_path(self.model)).resolve())
        workdir = None      # a quick model's; the fitted one's stays until this fit succeeds
        if cls.needs_model and model is None:
            # a scorer's bundle loads on first use: one named for the quick model can be checked
            check_quick_model(source, make_scorer(self.score_name, **options,
                                                  model=f"{source.name} (quick model)"))
            workdir, model = train_on_copy(source, cls.model_training)
        scorer = scorer_for(self.score_name, options, model)
        if then_scored:         # the extras are not gathered (``score_outputs`` adds them)
            scorer = scorer.planned(())
        check_scorable(source, scorer, own_model=workdir is not None)
        if cls.fits_on_scene:
            from .engine import fit_scorer

            fit_scorer(scorer, source, then_scored)
        self.scorer_, self.model_, self.n_features_in_ = scorer, model, source.count
        self._fitted_scene = fitted_scene(source, cls.fits_on_scene)
        self._workdir = workdir
        return self

    @overload       # the runtime tells a DataArray from other arrays
    def score(self, X: Labelled) -> Labelled: ...  # type: ignore[overload-overlap]
    @overload
    def score(self, X: Cube) -> np.ndarray: ...
    def score(self, X: Cube) -> Union[np.ndarray, LabelledArray]:
        """Anomaly scores of X, float32 (rows, cols), NaN where X is invalid; high = anomalous.
        X may be another cube of the same bands than the one fitted on: what ``fit`` learned
        (the scene's mean and covariance, principal axes, mixture, purge threshold, a model)
        is kept, while rings and neighbours are X's own.
        An xarray input gives an xarray result with X's coordinates and the attributes that
        place it (``io.inputs.PLACE_ATTRS``)."""
        return self.score_outputs(X, with_extras=False)["score"]

    @one_job(DETECTOR)
    @renamed_keywords(extras="with_extras")    # extras: detect's {output: path}
    def score_outputs(self, X: Cube, with_extras: bool = True) -> Dict[str, Any]:
        """{"score": (rows, cols)} plus, ``with_extras``, the score's extra outputs (e.g. "recon"
        (bands, rows, cols)) when it has any, but for those its configuration cannot measure
        ("convergence" of a search that takes no step)."""
        check_flags(with_extras=with_extras)
        if not hasattr(self, "scorer_"):
            raise errors.NotFittedError(f"{self!r} is not fitted yet: call fit(X) first")
        source, wrap = _as_source(X)
        return self._score_outputs(source, wrap, with_extras)

    def _score_outputs(self, source, wrap, with_extras):
        """``score_outputs`` of a source, its results made by ``wrap``."""
        from .engine import score_array
        from .engine.checks import warn_lined_up
        from .model.compat import is_fitted_scene

        if source.count != self.n_features_in_:
            raise HsanomalyError(f"{source.name}: has {counted(source.count, 'band')}, but "
                                 f"{self!r} was fitted on {self.n_features_in_}")
        fitted = is_fitted_scene(getattr(self, "_fitted_scene", None), source, f"{self!r}")
        scorer = self.scorer_.planned(type(self.scorer_).extra_outputs if with_extras else ())
        with ran_out_said(source.name, f"; try a smaller {spell('tile')}"):
            arrays = score_array(source, scorer, tile=self.tile,
                                 own_model=fitted and self.model is None)   # its quick model
        warn_lined_up(arrays["score"][0], source.name)
        kept = ("score",) if not with_extras else [
            name for name in arrays if name not in scorer.unmeasured_outputs()]
        results = {name: wrap(arrays[name][0] if name == "score" else arrays[name])
                   for name in kept}
        if any(hasattr(value, "attrs") for value in results.values()):
            from .io.heatmap import run_record      # DataArrays: what scored them, as a

            record = {f"hsanomaly_{k.lower()}": v for k, v in run_record(scorer).items()}
            for value in results.values():          # heatmap's tags say it
                value.attrs.update(record)
        return results

    @overload
    def fit_score(self, X: Labelled) -> Labelled: ...  # type: ignore[overload-overlap]
    @overload
    def fit_score(self, X: Cube) -> np.ndarray: ...
    @one_job(DETECTOR)        # one call: each warning about X said once
    def fit_score(self, X: Cube) -> Union[np.ndarray, LabelledArray]:
        """``fit(X).score(X)``: the usual way, a scene scored against itself (and one source,
        so that what the fit did for its pixels serves the scoring)."""
        source, wrap = _as_source(X)
        scores = self._fit(source, then_scored=True)._score_outputs(source, wrap, False)["score"]
        # fitted without its extras (not gathered for the score): it offers them, as after fit
        self.scorer_ = self.scorer_.planned(type(self.scorer_).extra_outputs)
        return scores


def _as_source(X):
    """``as_source(X)``, which reads a lazy cube (dask, xarray) whole: where memory runs out
    there, ``OutOfResources`` says what to do."""
    with ran_out_said(getattr(X, "name", None) or type(X).__name__,
                      "; a Detector holds its input whole: score the file with "
                      "hsanomaly.detect, which reads it a tile at a time"):
        return as_source(X)


def check_detector_keywords(options):
    """Refuse ``detect``'s job keywords given to a Detector as what they are: they were
    refused as options of the score, with no word of how a Detector takes the same thing."""
    from .api import detect

    check_door_keywords("Detector", options, detect, Detector.__init__,
                        {"mask": "a Detector leaves out what its input masks: pass a masked "
                                 "array (masked = left out) or NaN there",
                         "workers": "a Detector scores in this process; Dask goes with detect",
                         "scheduler": "a Detector scores in this process; Dask goes with detect",
                         "progress": "a Detector draws no progress bar",
                         "callback": "a Detector takes no callback (to show progress or "
                                     "cancel)"},
                        "a Detector returns the scores in memory, and writes nothing")
