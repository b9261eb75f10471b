"""The thesis's experiments, one function each, on one loaded scene.

Every function takes a ``SceneRun`` (the scene, its models, the configuration, where figures
go) and returns its table rows {variant: metrics}; figures are drawn as a side effect. Every
score is computed by the product's in-memory path, ``hsanomaly.engine.score_array``, and a
scorer is fitted on the scene exactly when it says so (``fits_on_scene``).
"""

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...engine import fit_and_score, score_array
from ...evaluation import evaluate, roc_curve, score_targets
from ...evaluation.plots import plot_heatmap, plot_log_roc, plot_roc
from ...io import ArraySource
from ...scorers import make_scorer, scorer_class
from .figures import plot_reconstruction


@dataclass
class SceneResult:
    name: str
    rows: dict = field(default_factory=dict)      # experiment -> {variant: metrics}
    figures: dict = field(default_factory=dict)   # experiment -> [figure paths, relative]


@dataclass
class SceneRun:
    scene: object             # scenes.BenchmarkScene
    data: object              # its hsanomaly.io.Scene
    models: object            # cache.ModelCache
    config: object            # config.ThesisConfig
    figures: object           # folder for the PNGs
    log: object
    result: Optional[SceneResult] = None
    shared: dict = field(default_factory=dict)    # scores reused across experiments

    def __post_init__(self):
        self.result = SceneResult(self.scene.name)

    @property
    def stem(self):
        return self.scene.path.stem

    def fig(self, experiment, name):
        path = self.figures / f"{self.stem}-{name}.png"
        self.result.figures.setdefault(experiment, []).append(path.name)
        return path

    def model(self, **options):
        return self.models.get(self.scene, self.config.seed, **options).path

    def score(self, name, **options):
        """All outputs of score ``name`` on the whole scene (seed and codebook from the
        configuration when the score takes them), with its CPU seconds."""
        takes = scorer_class(name).options
        defaults = {"seed": self.config.seed, "codebook": self.config.codebook}
        options = {**{k: v for k, v in defaults.items() if k in takes}, **options}
        return score_scene(make_scorer(name, **options), self.data)

    def metrics(self, scores):
        report = evaluate(scores, self.data.truth, valid=self.data.evaluated,
                          name=f"{self.scene.name}'s scores")
        return {"auc": report["auc"], "log_auc": report["log_auc"]}

    def curve(self, scores):
        return score_targets(scores, self.data.truth, valid=self.data.evaluated)[0]


def score_scene(scorer, data):
    """All outputs of ``scorer`` on the whole in-memory scene (fitted on it when the scorer
    fits on scenes), with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    source = ArraySource(data.cube, valid=data.valid, name=data.name)
    outputs = fit_and_score(source, scorer)
    outputs["seconds"] = time.perf_counter() - wall
    outputs["cpu_seconds"] = time.process_time() - cpu
    return outputs


def critic_vs_recon(run):
    """Figure 12 (critic vs recon, RX and GMM for reference), figure 13 (heatmaps), figure 14
    (false colour reconstruction) and figure 21 (per-target ROC, its own rows)."""
    baseline = run.model()
    maps = {}
    for name, score, options in (("RX", "rx", {}), ("GMM", "gmm", {}),
                                 ("critic", "critic", {"model": baseline}),
                                 ("recon", "recon", {"model": baseline})):
        run.log(f"  {name}")
        maps[name] = run.score(score, **options)
    scores = {name: out["score"][0] for name, out in maps.items()}
    run.shared.update(scores)
    rows = {name: {**run.metrics(s), "seconds": maps[name]["cpu_seconds"]}
            for name, s in scores.items()}
    curves = {name: run.curve(s) for name, s in scores.items()}
    plot_log_roc(curves["recon"], run.fig("critic_vs_recon", "fig12-log-roc"),
                 f"{run.stem}: recon (black) vs critic, RX, GMM",
                 {n: c for n, c in curves.items() if n != "recon"}, name="recon")
    for name in ("recon", "GMM", "critic"):
        plot_heatmap(scores[name], run.data.truth,
                     run.fig("heatmaps", f"fig13-heatmap-{name.lower()}"),
                     f"{run.stem}: {name} (AUC {rows[name]['auc']:.4f})")
    plot_reconstruction(make_scorer("recon", model=baseline), run.data, maps["recon"]["recon"],
                        run.fig("reconstruction", "fig14-false-colour"), run.stem)
    overall, targets = score_targets(scores["recon"], run.data.truth, valid=run.data.evaluated)
    plot_roc(overall, run.fig("targets", "fig21-target-roc"), f"{run.stem}: recon, per target",
             {t.id: t.curve for t in targets if t.curve is not None})
    run.result.rows["targets"] = {t.id: {"auc": t.curve.auc, "log_auc": t.curve.log_auc,
                                         "pixels": int(t.scores.size)}
                                  for t in targets if t.curve is not None}
    return rows


def background_only(run):
    """Figure 15: training on background only (the truth mask excluded) vs unsupervised."""
    mask = run.scene.truth or run.scene.path          # the truth mask is the exclusion mask
    background = run.score("recon", model=run.model(mask=mask, background_only=True))["score"][0]
    plot_log_roc(run.curve(run.shared["recon"]), run.fig("background_only", "fig15-log-roc"),
                 f"{run.stem}: unsupervised (black) vs background-only training",
                 {"background only": run.curve(background)}, name="unsupervised")
    return {"unsupervised": run.metrics(run.shared["recon"]),
            "background only": run.metrics(background)}


def c2_penalty(run):
    """Figure 17: the z-norm penalty C2 of the reconstruction cost."""
    penalised = {f"C2={c2:g}": run.score("recon", model=run.model(), c2=c2)["score"][0]
                 for c2 in run.config.c2_values}
    plot_log_roc(run.curve(run.shared["recon"]), run.fig("c2", "fig17-log-roc"),
                 f"{run.stem}: C2=0 (black) vs C2 > 0",
                 {name: run.curve(s) for name, s in penalised.items()}, name="C2=0")
    return {"C2=0": run.metrics(run.shared["recon"]),
            **{name: run.metrics(s) for name, s in penalised.items()}}


def early_critic(run):
    """Figure 19: critics stopped at half the iterations, latent size 4 and a large one."""
    config, early = run.config, {}
    for latent in (4, config.large_latent):
        model = run.model(iterations=config.early_iterations, latent_dim=latent)
        early[f"latent {latent}, {config.early_iterations} it"] = run.score(
            "critic", model=model)["score"][0]
    plot_log_roc(run.curve(run.shared["critic"]), run.fig("early_critic", "fig19-log-roc"),
                 f"{run.stem}: critic, {config.iterations} it (black) vs stopped early",
                 {name: run.curve(s) for name, s in early.items()},
                 name=f"critic, {config.iterations} it")
    return {f"latent 4, {config.iterations} it": run.metrics(run.shared["critic"]),
            **{name: run.metrics(s) for name, s in early.items()}}


SOLVERS = (("thesis 4x50", {"solver": "thesis", "restarts": 4, "steps": 50}),
           ("thesis 16x100", {"solver": "thesis", "restarts": 16, "steps": 100}),
           ("fast", {"solver": "fast"}))


def solvers(run):
    """Figure 20: recon AUC per latent solver on every target pixel plus ``solver_pixels``
    background pixels (scored as a one-row scene through the engine)."""
    data, config = run.data, run.config
    rng = np.random.default_rng(config.seed)
    target = data.evaluated & (data.truth > 0)
    background = np.flatnonzero(data.evaluated.ravel() & ~target.ravel())
    chosen = rng.choice(background, min(config.solver_pixels, background.size), replace=False)
    picked = np.concatenate([np.flatnonzero(target.ravel()), chosen])
    pixels = data.cube.reshape(data.cube.shape[0], -1)[:, picked][:, None, :]
    n_target = int(target.sum())
    rows = {}
    for name, options in SOLVERS:
        own = {"codebook": config.codebook} if options.get("solver") != "thesis" else {}
        scorer = make_scorer("recon", model=run.model(), seed=config.seed, **own, **options)
        cpu = time.process_time()
        cost = score_array(ArraySource(pixels, name=run.stem), scorer)["score"][0, 0]
        curve = roc_curve(cost[:n_target], cost[n_target:])
        rows[name] = {"auc": curve.auc, "log_auc": curve.log_auc,
                      "seconds": time.process_time() - cpu, "pixels": len(picked)}
    return rows


def window(run):
    """Section 5.5: critic and recon scores of models trained on 1x1 and on larger windows for
    the same (reduced) number of iterations."""
    config, size = run.config, run.config.large_window
    rows = {}
    for width in (1, size):
        model = run.model(iterations=config.window_iterations,
                          **({"window": width} if width != 1 else {}))
        for score in ("critic", "recon"):
            out = run.score(score, model=model)
            name = f"{width}x{width} {score}"
            rows[name] = {**run.metrics(out["score"][0]), "seconds": out["cpu_seconds"]}
            if width == size and score == "recon":
                plot_heatmap(out["score"][0], run.data.truth,
                             run.fig("window", f"window{size}-heatmap"),
                             f"{run.stem}: recon, {size}x{size} windows, "
                             f"{config.window_iterations} it (AUC {rows[name]['auc']:.4f})")
    return rows


# experiment name -> function; run in this order (critic_vs_recon first:
# the others reuse its scores)
EXPERIMENTS = {"critic_vs_recon": critic_vs_recon, "background_only": background_only,
               "c2": c2_penalty, "early_critic": early_critic, "solver": solvers,
               "window": window}
