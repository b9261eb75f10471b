"""GAN scores from an ONNX model bundle, through onnxruntime only (torch is never imported).

critic  -D(x): the critic's output, negated so that high means anomalous.
recon   R(x) = min_z c1 mean((x - G(z))^2) + c2 mean(z^2), the thesis's reconstruction cost,
        found by a latent search (hsanomaly.latent: "fast" by default, "thesis" for the thesis's
        restarts x steps).
anogan  (1 - lam) R(x) + lam D_f(x), D_f = mean((f(x) - f(G(z*)))^2) over the critic's
        penultimate features f (Schlegl et al.'s feature residual, squared like R).

Everything happens in the bundle's preprocessed units: pixels go through the bundle's
Preprocessor, windows of ``window x window`` pixels are cut around each pixel, and the
reconstruction output is G(z*) at the window's centre in those same units (the usual
preprocessing bins bands, which cannot be undone per input band). Neighbours of a window that
are invalid or outside the raster are replaced by the centre pixel's spectrum.
"""

import copy

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from ..io.checks import warn_once
from ..options import check_not_negative
from ..spelling import spell
from .base import Scorer

SOLVER_OPTIONS = ("solver", "restarts", "steps", "codebook", "refine", "codebook_scale", "c1",
                  "c2", "seed")
RUNTIME_OPTIONS = ("device", "threads", "ignore_wavelengths")


class GanScorer(Scorer):
    """Score pixels with a trained bundle; picklable (onnxruntime sessions reopen lazily).

    The bundle is loaded on first use (``check``, ``fit`` or scoring), not in ``__init__``,
    so a scorer is cheap to build and its options are checked before any model is read.
    """

    needs_model = True
    fits_on_scene = False
    options: tuple[str, ...] = SOLVER_OPTIONS + RUNTIME_OPTIONS
    unscored_cause = ("the networks gave no number there: values that overflow once scaled "
                      "for the model (an undeclared fill value? declare it nodata)")

    def __init__(self, model, solver=defaults.SOLVER, restarts=defaults.RESTARTS,
                 steps=defaults.STEPS, codebook=defaults.CODEBOOK, refine=defaults.REFINE,
                 codebook_scale=defaults.CODEBOOK_SCALE, c1=defaults.C1, c2=defaults.C2,
                 lam=defaults.LAM, device=defaults.DEVICE, threads=None, seed=defaults.SEED,
                 ignore_wavelengths=False):
        from ..devices import check_device
        from ..latent import make_solver
        from ..runtime import check_threads

        if not 0.0 <= lam <= 1.0:
            raise HsanomalyError(f"{spell('lam')} must lie in [0, 1], got {lam}")
        check_not_negative("c1", c1)
        check_not_negative("c2", c2)
        if c1 + c2 == 0:
            raise HsanomalyError(f"{spell('c1')} and {spell('c2')} must not both be 0")
        check_threads(threads)
        check_device(device)   # refuse an unavailable device before any work
        self.model, self.device, self.threads = str(model), device, threads
        self.ignore_wavelengths = bool(ignore_wavelengths)
        self.c1, self.c2, self.lam = float(c1), float(c2), float(lam)
        self.solver = make_solver(solver, c1=c1, c2=c2, restarts=restarts, steps=steps,
                                  codebook=codebook, refine=refine,
                                  codebook_scale=codebook_scale, seed=seed)
        self._bundle = None
        self._sessions = {}

    @property
    def bundle(self):
        if self._bundle is None:
            from ..model import load_bundle

            self._bundle = load_bundle(self.model)
            _warn_if_trained_otherwise(self)
        return self._bundle

    @property
    def model_bundle(self):
        return self.bundle

    def moved_to(self, path):
        """The same model, now at ``path`` (a staged quick model once in place): read from
        there when next needed, so the scorer outlives its temporary folder."""
        self.model, self._bundle = str(path), None

    def runs_on(self, device, threads):
        from ..devices import check_device
        from ..runtime import check_threads

        check_threads(threads)
        check_device(device)
        moved = copy.copy(self)
        moved.device, moved.threads, moved._sessions = device, threads, {}
        return moved

    window_from_model = True

    @property
    def halo(self):
        return self.bundle.window // 2

    extra_outputs: tuple[str, ...] = ("recon", "latent", "convergence")

    def unmeasured_outputs(self):
        """"convergence" where the latent search takes no step to measure."""
        measured = self.solver.measures_convergence or "convergence" not in self.extra_outputs
        return () if measured else ("convergence",)

    @property
    def extra_bands(self):
        bands = {"recon": self.bundle.bands, "latent": self.bundle.latent_dim, "convergence": 1}
        return {name: bands[name] for name in self.extra_outputs}

    def extra_descriptions(self, input_bands):
        pre = self.bundle.preprocessor
        spans = (["a whitened principal component of the binned bands"] * pre.n_features_out_
                 if pre.whiten else _input_bands(pre, input_bands))
        return {
            "recon": [f"G(z*) band {i + 1} ({span}), preprocessed units"
                      for i, span in enumerate(spans)],
            "latent": [f"z*[{i}]" for i in range(self.bundle.latent_dim)],
            "convergence": ["cost decrease of the latent search's last step"],
        }

    def __getstate__(self):
        return {**vars(self), "_sessions": {}}

    def planned(self, outputs):
        narrowed = super().planned(outputs)
        if narrowed is not self:        # the same networks: one session each, shared
            narrowed._sessions = self._sessions
        return narrowed

    def __setstate__(self, state):
        """A GAN score pickled by an hsanomaly before 0.2.0 holds a model and a solver of
        another shape (no codebook, no wavelength check): refused in one line, not an
        AttributeError at its first use."""
        if "ignore_wavelengths" not in state:
            raise HsanomalyError(f"a {self.name} score pickled by an hsanomaly before 0.2.0 "
                                 "cannot be used by this one: fit the Detector again")
        super().__setstate__(state)

    def settings(self):
        return {"name": self.name, **self.solver.params(), "c1": self.c1, "c2": self.c2,
                **self._overrides()}

    def _overrides(self):
        """Checks the run was told to skip: its result records them, and a rerun without
        them is another run (``detect-many`` does not take its result for current)."""
        return {"ignore_wavelengths": True} if self.ignore_wavelengths else {}

    def check(self, source, own_model=False):
        from ..model import check_bands, check_scaling, check_value_range, check_wavelengths

        check_bands(self.bundle, source.count, source.name, source.left_out)
        check_scaling(self.bundle, source)
        if not self.ignore_wavelengths:
            check_wavelengths(self.bundle, source.wavelengths, source.name)
        if not own_model:
            check_value_range(self.bundle, source)

    def _session(self, name):
        if name not in self._sessions:
            from ..runtime import open_session

            path = self.bundle.generator_path if name == "generator" else self.bundle.critic_path
            self._sessions[name] = open_session(self.bundle.network(path.name), self.device,
                                                self.threads, label=path)
        return self._sessions[name]

    def generator(self):
        from ..latent import GeneratorFunction

        return GeneratorFunction(self._session("generator"), self.bundle.latent_dim,
                                 key=self.bundle.meta["files"]["generator.onnx"],
                                 codebook=self.bundle.codebook)

    def critic(self, windows):
        """(score (n,), features (n, F)) for preprocessed windows (n, bands, window, window)."""
        from ..latent.generator import BATCH

        session = self._session("critic")
        outs = [session.run(["score", "features"], {"x": windows[i:i + BATCH]})
                for i in range(0, len(windows), BATCH)]
        if not outs:
            return np.empty(0, np.float32), np.empty((0, 0), np.float32)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def score_windows(self, windows):
        """All outputs for preprocessed windows (n, bands, w, w): score (n,) and the extra outputs per pixel."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        result = self.solver.solve(self.generator(), windows.reshape(len(windows), -1))
        c = self.halo
        centre = result.recon.reshape(windows.shape)[:, :, c, c]
        return {"score": self.cost(windows, result), "recon": centre, "latent": result.z,
                "convergence": result.convergence}

    def cost(self, windows, result):
        """The score of each window from its latent search's ``result``."""
        return result.cost

    def score_samples(self, X):
        if self.bundle.window != 1:
            raise HsanomalyError(f"{self.model}: a model with {self.bundle.window}x{self.bundle.window} "
                                 "windows scores pixels in their spatial context; use score_block")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.bundle.bands_in:
            raise HsanomalyError(f"{self.model}: expected pixels of shape (n, {self.bundle.bands_in}), "
                                 f"got {X.shape}")
        pixels = self.bundle.preprocessor.transform(X)
        return self.score_windows(pixels[:, :, None, None])["score"]

    def score_block(self, block, valid):
        h = self.halo
        rows, cols = block.shape[1] - 2 * h, block.shape[2] - 2 * h
        inner = valid[h:h + rows, h:h + cols]
        pre = np.full((self.bundle.bands,) + valid.shape, np.nan, np.float32)
        if valid.any():
            pre[:, valid] = self.bundle.preprocessor.transform(block[:, valid].T).T
        windows = _windows(pre, inner, self.bundle.window)
        outputs = self.score_windows(windows) if len(windows) else None
        bands = {"score": 1, **self.extra_bands}
        result = {}
        for name, count in bands.items():
            out = np.full((count, rows, cols), np.nan, np.float32)
            if outputs is not None and name in outputs:
                out[:, inner] = np.asarray(outputs[name], np.float32).reshape(len(windows), count).T
            result[name] = out
        return result


TRAINING_ADVICE = "ranks best on a model trained"   # the warning below, for a filter


def _warn_if_trained_otherwise(scorer):
    """A model trained otherwise than the score declares (``model_training``) still scores,
    but not as the score was measured: say so once, when it loads. ``scorer.shown_as``: the
    score that uses this one inside (the residual scores' own GAN part)."""
    settings = scorer.bundle.meta.get("training", {}).get("settings", {})
    unlike = [key for key, value in scorer.model_training.items()
              if bool(settings.get(key, False)) != bool(value)]
    if unlike:
        def trained(key, wanted):
            return f"{'with' if wanted else 'without'} {spell(key)}"

        how = " ".join(trained(key, scorer.model_training[key]) for key in unlike)
        was = " ".join(trained(key, not scorer.model_training[key]) for key in unlike)
        warn_once(f"{scorer.model}: {getattr(scorer, 'shown_as', scorer.name)} "
                  f"{TRAINING_ADVICE} {how} (an option of training: hsanomaly train, "
                  f"hsanomaly.train); this one was trained {was}")


def _windows(pre, inner, window):
    """(n, bands, window, window) windows around each valid inner pixel of a halo-padded block."""
    if window == 1:
        return pre[:, inner].T[:, :, None, None]
    rows, cols = np.nonzero(inner)
    offsets = np.arange(window)
    cut = pre[:, rows[:, None, None] + offsets[:, None], cols[:, None, None] + offsets]  # (b, n, w, w)
    cut = cut.transpose(1, 0, 2, 3)
    centre = cut[:, :, window // 2, window // 2]
    holes = np.isnan(cut)
    if holes.any():
        cut = np.where(holes, centre[:, :, None, None], cut)
    return cut


def _input_bands(preprocessor, input_bands):
    """For each preprocessed band, the input file's bands averaged into it, as text.
    ``input_bands``: the file's numbers of the bands read, so a band after a bad one left out
    is named by its number in the file, not by its place among the bands read."""
    kept = np.asarray(input_bands)[np.flatnonzero(preprocessor.keep_)]
    edges = preprocessor.bin_edges_
    return [f"input band {kept[a]}" if b - a == 1 else f"input bands {_runs(kept[a:b])}"
            for a, b in zip(edges[:-1], edges[1:])]


def _runs(numbers):
    """Band numbers as runs, "1-3, 5": a bin across a band left out does not hold it."""
    runs = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class CriticScorer(GanScorer):
    """-D(x): fast, but diagnostic only: its sign is not tied to anomalousness (docs/benchmark.md)."""

    name = "critic"
    meaning = "GAN critic: -D(x), diagnostic"
    options = RUNTIME_OPTIONS
    extra_outputs = ()

    def settings(self):
        return {"name": self.name, **self._overrides()}

    def score_windows(self, windows):
        return {"score": -self.critic(np.ascontiguousarray(windows, dtype=np.float32))[0]}


class ReconScorer(GanScorer):
    """The thesis's reconstruction cost. Its Euclidean distance ranks anomalies best on whitened
    bands, where it is a Mahalanobis distance (docs/ablations.md), so its quick model whitens."""

    name = "recon"
    meaning = "GAN reconstruction cost"
    model_training = {"whiten": True}


class AnoganScorer(GanScorer):
    name = "anogan"
    meaning = "GAN reconstruction and critic-feature cost"
    model_training = ReconScorer.model_training
    options = GanScorer.options + ("lam",)

    def settings(self):
        return {**super().settings(), "lam": self.lam}

    def cost(self, windows, result):
        """(1 - lam) x the reconstruction cost + lam x the critic-feature distance between each
        window and its reconstruction."""
        n = len(windows)
        _, features = self.critic(np.concatenate([windows, result.recon.reshape(windows.shape)]))
        distance = np.mean(np.square(features[:n] - features[n:]), axis=1)
        return (1 - self.lam) * result.cost + self.lam * distance
