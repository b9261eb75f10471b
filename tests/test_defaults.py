"""Every shell reads its defaults from hsanomaly.defaults instead of restating them."""

import inspect

from hsanomaly import Detector, defaults
from hsanomaly.cli.detect import detect
from hsanomaly.cli.detect_many import detect_many
from hsanomaly.cli.train import train as train_command
from hsanomaly.latent import FastSolver, make_solver
from hsanomaly.scorers import make_scorer, scorer_class
from hsanomaly.training.settings import Settings


def option(command, name):
    return next(p for p in command.params if p.name == name)


def keyword_default(function, name):
    return inspect.signature(function).parameters[name].default


def test_score_and_tile_defaults():
    assert option(detect, "score").default == defaults.SCORE == Detector().get_params()["score"]
    assert option(detect_many, "score").default == defaults.SCORE
    assert option(detect, "tile").default == defaults.TILE == Detector().tile
    import hsanomaly.api as api
    import hsanomaly.batch as batch

    assert keyword_default(api.detect, "tile") == keyword_default(batch.detect_many, "tile") == defaults.TILE


def test_evaluation_defaults():
    import hsanomaly.api as api
    from hsanomaly.cli.evaluate import evaluate
    from hsanomaly.evaluation import metrics
    from hsanomaly.evaluation.files import evaluate_files

    assert option(evaluate, "pd_far").default == keyword_default(api.evaluate, "pd_far") == \
        keyword_default(metrics.evaluate, "pd_far") == keyword_default(evaluate_files, "pd_far") \
        == keyword_default(metrics.RocCurve.pd_at, "pd_far") == defaults.PD_FAR


def test_training_defaults():
    assert option(train_command, "iterations").default == Settings.iterations == defaults.ITERATIONS
    assert option(train_command, "window").default == defaults.TRAIN_WINDOW
    from hsanomaly.training import train

    assert keyword_default(train, "iterations") == defaults.ITERATIONS
    assert keyword_default(train, "window") == defaults.TRAIN_WINDOW


def test_scorer_defaults_and_help_texts():
    lrx, context, gan = scorer_class("lrx"), scorer_class("context"), scorer_class("recon")
    assert (keyword_default(lrx, "outer"), keyword_default(lrx, "guard")) == \
        (defaults.LRX_OUTER, defaults.LRX_GUARD)
    assert (keyword_default(context, "outer"), keyword_default(context, "guard")) == \
        (defaults.CONTEXT_OUTER, defaults.CONTEXT_GUARD)
    assert keyword_default(gan, "codebook") == keyword_default(make_solver, "codebook") == defaults.CODEBOOK
    assert keyword_default(gan, "solver") == defaults.SOLVER
    assert keyword_default(gan, "refine") == keyword_default(make_solver, "refine") == defaults.REFINE
    assert make_solver("fast").refine == defaults.REFINE
    assert keyword_default(gan, "codebook_scale") == keyword_default(make_solver, "codebook_scale") \
        == keyword_default(FastSolver, "codebook_scale") == defaults.CODEBOOK_SCALE
    assert make_solver("fast").codebook_scale == defaults.CODEBOOK_SCALE
    dual = scorer_class("dualcontext")
    assert (keyword_default(dual, "weight"), keyword_default(dual, "purge"),
            keyword_default(dual, "neighbour_weight")) == \
        (defaults.DUAL_WEIGHT, defaults.DUAL_PURGE, defaults.DUAL_NEIGHBOUR_WEIGHT)
    default = make_scorer(defaults.SCORE, model="m")
    assert default.gan.solver.refine == defaults.REFINE and default.purge == defaults.DUAL_PURGE
    assert default.neighbour_weight == defaults.DUAL_NEIGHBOUR_WEIGHT
    assert make_scorer("mlrx").neighbour_weight == defaults.NEIGHBOUR_WEIGHT
    for name, value in (("codebook", defaults.CODEBOOK), ("outer", defaults.CONTEXT_OUTER),
                        ("outer", defaults.LRX_OUTER), ("guard", defaults.CONTEXT_GUARD),
                        ("restarts", defaults.RESTARTS), ("steps", defaults.STEPS),
                        ("refine", defaults.REFINE),
                        ("codebook_scale", f"[default: {defaults.CODEBOOK_SCALE:g}]"),
                        ("neighbour_weight", f"[default: {defaults.DUAL_NEIGHBOUR_WEIGHT:g} for "
                                             f"dualcontext, {defaults.NEIGHBOUR_WEIGHT:g} otherwise]")):
        assert str(value) in option(detect, name).help, (name, value)


def test_seeds_limits_and_the_thesis_defaults():
    from hsanomaly.cli.thesis import thesis
    from hsanomaly.engine.checks import check_tile
    from hsanomaly.experiments.thesis import ThesisConfig

    for name in ("gmm", "recon", "resrx"):
        assert keyword_default(scorer_class(name), "seed") == defaults.SEED
    assert keyword_default(make_solver, "seed") == defaults.SEED
    assert Settings.seed == defaults.TRAIN_SEED
    assert option(detect, "tile").type.min == defaults.MIN_TILE
    assert option(detect, "codebook").type.min == option(thesis, "codebook").type.min == \
        defaults.MIN_CODEBOOK
    check_tile(defaults.MIN_TILE)
    assert make_solver("fast", codebook=defaults.MIN_CODEBOOK).codebook_size == defaults.MIN_CODEBOOK
    config = ThesisConfig()
    assert (config.iterations, config.seed, config.codebook) == \
        (defaults.ITERATIONS, defaults.TRAIN_SEED, defaults.CODEBOOK)
    for name, field in (("iterations", "iterations"), ("seed", "seed"), ("codebook", "codebook"),
                        ("solver_pixels", "solver_pixels"), ("window", "large_window"),
                        ("window_iterations", "window_iterations")):
        assert option(thesis, name).default == getattr(config, field)


def test_training_and_benchmark_shells_restate_no_default():
    from hsanomaly.cli.benchmark import benchmark
    from hsanomaly.experiments.benchmark import run_benchmark
    from hsanomaly.training import train

    assert option(benchmark, "seeds").default == ",".join(map(str, keyword_default(run_benchmark, "seeds")))
    assert option(train_command, "device").default == keyword_default(train, "device") == defaults.DEVICE
    assert f"min({defaults.TRAIN_BANDS}, bands)" in option(train_command, "bands").help
    assert f"[default: {defaults.TRAIN_THREADS};" in option(train_command, "threads").help
