"""``hsanomaly benchmark``: a thin click layer over ``hsanomaly.experiments.benchmark``."""

import click

from ..experiments.benchmark import QUICK_ITERATIONS, QUICK_SCENES, SEEDS
from . import quiet_option, with_verbosity


def _list(text, cast=str, hint=None):
    try:
        return [cast(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers",
                                 param_hint=hint) from None


@with_verbosity
@click.command(short_help="Benchmark every score on scenes with ground truth.")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--scores", default="rx,lrx,gmm", show_default=True,
              help="Comma-separated scores to benchmark, each a score name with optional "
                   "options: rx, lrx:outer=21:guard=7, context, ...")
@click.option("--select", default="", help="Comma-separated candidates (among --scores) of the "
                                           "held-out selection protocol (leave one scene out, "
                                           "leave one dataset out); default: no protocol.")
@click.option("--ablation", default="", help="Comma-separated scores without a GAN (among "
                                             "--scores) whose best is set beside the selected "
                                             "candidate.")
@click.option("--seeds", default=",".join(map(str, SEEDS)), show_default=True,
              help="Comma-separated seeds for the seeded scores (gmm and the GAN scores, which "
                   "train one model per scene, seed and kind of model: plain, or whitened for "
                   "recon and anogan); the others run once.")
@click.option("--scenes", default="", help="Comma-separated scene names or file stems "
                                           "(default: every scene under DATA_DIR).")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Generator iterations per GAN model (default: hsanomaly train's).")
@click.option("--models", "models_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the trained GAN models in this folder and reuse those already there "
                   "(default: a temporary folder).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Benchmark this many scenes at a time (worker processes, one torch "
                   "thread each).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmark-results",
              show_default=True, help="Folder for results.csv, summary.csv, results.json, results.md.")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None,
              help="Also write the Markdown tables to this file (e.g. docs/benchmark.md).")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="CSV of published AUCs (columns scene, method, auc; scene = name or file "
                   "stem) to tabulate beside ours, e.g. benchmarks/reference-shared-data.csv.")
@click.option("--quick", is_flag=True, help=f"First seed, the first {QUICK_SCENES} scenes of "
                                            f"distinct images (unless --scenes) and "
                                            f"{QUICK_ITERATIONS} iterations "
                                            "(unless --iterations).")
@click.option("--overwrite", is_flag=True, help="Replace files in --out and --markdown that an "
                                               "earlier benchmark did not write.")
@quiet_option
def benchmark(data_dir, scores, select, ablation, seeds, scenes, iterations, models_dir, jobs, out, markdown,
              reference, quick, overwrite, quiet):
    """Run every score on every scene with ground truth under DATA_DIR and tabulate the results."""
    from ..experiments.benchmark import run_benchmark
    from ..experiments.tables import check_results, format_table, write_results

    check_results(out, markdown, reference, overwrite)     # before hours of work
    log = None if quiet else (lambda message: click.echo(message, err=True))
    result = run_benchmark(data_dir, _list(scores), _list(seeds, int, "'--seeds'"), scenes=_list(scenes),
                           iterations=iterations, models_dir=models_dir, jobs=jobs, quick=quick,
                           reference=reference, select=_list(select),
                           ablation=_list(ablation), log=log)
    paths = write_results(result, out, overwrite, markdown)
    click.echo(format_table(result))
    click.echo(f"\n{out}: {', '.join(p.name for p in paths.values())}")
