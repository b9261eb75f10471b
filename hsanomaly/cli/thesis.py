"""``hsanomaly thesis``: a thin click layer over ``hsanomaly.experiments.thesis``."""

import click

from ..experiments.thesis.config import ThesisConfig
from ..defaults import MIN_CODEBOOK
from . import SEED_RANGE, quiet_option, with_verbosity

DEFAULT = ThesisConfig()


@with_verbosity
@click.command(short_help="Reproduce the thesis's experiments and their figures.")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="docs", show_default=True,
              help="Folder for report.md and figures/.")
@click.option("--scenes", default="", help="Comma-separated scene names or file stems (default: "
                                           f"{', '.join(DEFAULT.scenes)}).")
@click.option("--iterations", type=click.IntRange(min=2), default=DEFAULT.iterations,
              show_default=True, help="Generator iterations per model (early-stopped critics get half).")
@click.option("--seed", type=SEED_RANGE, default=DEFAULT.seed, show_default=True,
              help="Random seed of the models' training and of the scores' draws.")
@click.option("--solver-pixels", type=click.IntRange(min=1), default=DEFAULT.solver_pixels,
              show_default=True, help="Background pixels sampled for the latent-solver comparison.")
@click.option("--codebook", type=click.IntRange(min=MIN_CODEBOOK), default=DEFAULT.codebook,
              show_default=True, help="Fast-solver codebook entries of every reconstruction score.")
@click.option("--window", type=click.IntRange(min=0), default=DEFAULT.large_window, show_default=True,
              help="Window of the larger-window experiment (odd, at least 3); 0 skips it.")
@click.option("--window-iterations", type=click.IntRange(min=1), default=DEFAULT.window_iterations,
              show_default=True,
              help="Generator iterations of both models (1x1 and the larger window) of the "
                   "window experiment.")
@click.option("--models", "models_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the trained models in this folder and reuse those already there "
                   "(the benchmark's --models folder works too).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run this many scenes at a time (worker processes, one torch thread each).")
@click.option("--overwrite", is_flag=True, help="Replace report.md, figures/report.json and the "
                                               "scenes' figures in --out when an earlier "
                                               "reproduction did not write them.")
@quiet_option
def thesis(data_dir, out, scenes, iterations, seed, solver_pixels, codebook, window,
           window_iterations, models_dir, jobs, overwrite, quiet):
    """Reproduce the thesis's experiments on scenes under DATA_DIR; write OUT/report.md and figures."""
    from ..experiments.thesis import ThesisConfig, generate_thesis

    chosen = tuple(s.strip() for s in scenes.split(",") if s.strip())
    config = ThesisConfig(iterations=iterations, seed=seed, solver_pixels=solver_pixels,
                          codebook=codebook,
                          large_window=window, window_iterations=window_iterations,
                          **({"scenes": chosen} if chosen else {}))
    log = None if quiet else (lambda message: click.echo(message, err=True))
    click.echo(generate_thesis(data_dir, out, config, models_dir=models_dir, jobs=jobs, log=log,
                               overwrite=overwrite))
