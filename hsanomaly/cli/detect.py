"""``hsanomaly detect``: a thin click layer over ``hsanomaly.api.detect``."""

import click

from .. import defaults
from . import SEED_RANGE, progress_log, quiet_option, show_progress, with_verbosity
from ..latent import DEPRECATED_NAMES, SOLVERS
from ..options import given as given_options
from ..scorers import REGISTRY, SCORES
from ..scorers.rings import rings_text
from ..spelling import counted


class AlsoDeprecated(click.Choice):
    """The solvers' names, and their deprecated ones taken but neither listed nor completed
    (the library warns of them)."""

    def convert(self, value, param, ctx):
        return value if value in DEPRECATED_NAMES else super().convert(value, param, ctx)


class ScoreChoice(click.Choice):
    """The score names; the benchmark's spelling of a score with options (``mlrx:purge=0.08``,
    as the README's tables name configurations) is answered with the flags that give it."""

    def convert(self, value, param, ctx):
        import shlex

        name, *pairs = str(value).split(":")
        if pairs and name.lower() in self.choices and all("=" in pair for pair in pairs):
            taken = {p.name for p in ctx.command.params} if ctx is not None else set()
            options = [(key.strip().lower().replace("-", "_"), setting)
                       for key, setting in (pair.split("=", 1) for pair in pairs)]
            unknown = [key for key, _ in options if key not in taken]
            if unknown:
                self.fail(f"{value!r}: the benchmark's spelling of a score with options, but "
                          f"{ctx.command.name} takes no option {unknown[0]!r}", param, ctx)
            flags = " ".join(f"--{key.replace('_', '-')} {shlex.quote(setting)}"
                             for key, setting in options)      # pasted into a shell as is
            self.fail(f"{value!r} is how the benchmark names a score with options; on the "
                      f"command line: --score {name.lower()} {flags}", param, ctx)
        return super().convert(value, param, ctx)


def _taking(option):
    """The scores that take ``option``, for its help: the registry says, not the help's words."""
    return ", ".join(name for name, cls in REGISTRY.items() if option in cls.options)


@with_verbosity
@click.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--score", type=ScoreChoice(SCORES, case_sensitive=False), default=defaults.SCORE,
              show_default=True,
              help="Anomaly score. Scores that need a model train a quick one on the raster "
                   "scored when no --model is given (needs torch) and keep it beside the "
                   "heatmap as <heatmap stem>.model.")
@click.option("--model", type=click.Path(), help="Model bundle from `hsanomaly train`.")
@click.option("--solver", type=AlsoDeprecated(SOLVERS), default=None,
              help=f"Latent search for the GAN scores: fast, or the thesis's restarts x steps "
                   f"('seed' is a deprecated name for thesis) [default: {defaults.SOLVER}].")
@click.option("--restarts", type=click.IntRange(min=1), default=None,
              help=f"Thesis solver: random restarts [default: {defaults.RESTARTS}].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Thesis solver: gradient steps per restart [default: {defaults.STEPS}].")
@click.option("--codebook", type=click.IntRange(min=defaults.MIN_CODEBOOK), default=None,
              help=f"Fast solver: codebook entries [default: {defaults.CODEBOOK}]; fewer build "
                   "faster, more start closer.")
@click.option("--refine", type=click.IntRange(min=0), default=None,
              help=f"Fast solver: Gauss-Newton steps from the best codebook entry "
                   f"[default: {defaults.REFINE}].")
@click.option("--codebook-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Fast solver: the codebook's latent spread, in the prior's standard "
                   f"deviations; wider also fits pixels the generator explains only far from "
                   f"what it was trained on [default: {defaults.CODEBOOK_SCALE:g}].")
@click.option("--c1", type=click.FloatRange(min=0), default=None,
              help=f"Weight of mean((x - G(z))^2) in the reconstruction cost "
                   f"[default: {defaults.C1:g}].")
@click.option("--c2", type=click.FloatRange(min=0), default=None,
              help=f"Weight of the latent prior mean(z^2) in the reconstruction cost "
                   f"[default: {defaults.C2:g}].")
@click.option("--lam", type=click.FloatRange(0, 1), default=None,
              help=f"anogan: weight of the critic-feature distance [default: {defaults.LAM:g}].")
@click.option("--outer", type=click.IntRange(min=3), default=None,
              help=f"Local RX ring, outer window in pixels, odd [default: "
                   f"{defaults.LRX_OUTER} for lrx, {defaults.CONTEXT_OUTER} for context].")
@click.option("--guard", type=click.IntRange(min=1), default=None,
              help=f"Local RX ring, guard window in pixels, odd, below the outer [default: "
                   f"{defaults.LRX_GUARD} for lrx, {defaults.CONTEXT_GUARD} for context].")
@click.option("--purge", type=float, default=None,
              help=f"Scores with local RX rings ({_taking('purge')}): the fraction of pixels, "
                   f"those the score's own "
                   f"first pass ranks highest, left out of the rings' statistics in a second "
                   f"pass; 0 scores in one pass, without the second [default: "
                   f"{defaults.DUAL_PURGE:g} for dualcontext, {defaults.PURGE:g} otherwise].")
@click.option("--rings", default=None,
              help=f"Scores with several local RX rings ({_taking('rings')}): their "
                   f"outer/guard windows, e.g. "
                   f"'7/3;15/5;41/15;61/23' (rings wider than the default's reach targets "
                   f"wider than about 15 pixels; docs/ablations.md) [default: "
                   f"{rings_text(defaults.RINGS)}].")
@click.option("--top-rings", type=click.IntRange(min=0), default=None,
              help=f"Scores with several local RX rings ({_taking('top_rings')}): each pixel "
                   f"averages its this many "
                   f"largest ring distances; 0 averages every ring [default: "
                   f"{defaults.DUAL_TOP_RINGS} for dualcontext, {defaults.TOP_RINGS} otherwise].")
@click.option("--neighbour-weight", type=float, default=None,
              help=f"Scores with local RX rings or a GAN residual "
                   f"({_taking('neighbour_weight')}): add this weight times the "
                   f"highest score of each pixel's 3x3 neighbourhood, so a target's pixels "
                   f"lift each other; 0 leaves the score as it is [default: "
                   f"{defaults.DUAL_NEIGHBOUR_WEIGHT:g} for dualcontext, "
                   f"{defaults.NEIGHBOUR_WEIGHT:g} otherwise].")
@click.option("--pca", type=click.IntRange(min=1), default=None,
              help=f"Principal components kept: local RX's rings work in this many "
                   f"[default: {defaults.LRX_PCA}] (keep it well below a ring's pixel count: "
                   "each ring's covariance gets a small ridge, which rules a ring barely "
                   "larger); gmm's mixture is fitted on this many "
                   f"[default: {defaults.GMM_PCA}].")
@click.option("--components", type=click.IntRange(min=1), default=None,
              help=f"gmm: Gaussian components of the mixture [default: {defaults.GMM_COMPONENTS}].")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help=f"Pixels drawn to fit the score's statistics: gmm's mixture [default: "
                   f"{defaults.GMM_SAMPLE}], the GAN residuals' mean and covariance [default: "
                   f"{defaults.RESIDUAL_SAMPLE}].")
@click.option("--trim", type=float, default=None,
              help=f"Scores with a GAN residual: the fraction of the most distant residuals "
                   f"left out of their statistics [default: {defaults.RESIDUAL_TRIM:g}].")
@click.option("--weight", type=float, default=None,
              help=f"dualcontext: the weight of the GAN residual term beside the two ring terms "
                   f"[default: {defaults.DUAL_WEIGHT:g}].")
@click.option("--seed", type=SEED_RANGE, default=None,
              help=f"Random seed of scoring: sample draws, latent codebooks, mixtures "
                   f"[default: {defaults.SEED}].")
@click.option("--recon-out", type=click.Path(dir_okay=False), help="Write the reconstruction G(z*) here.")
@click.option("--latent-out", type=click.Path(dir_okay=False), help="Write the latent z* raster here.")
@click.option("--convergence-out", type=click.Path(dir_okay=False),
              help="Write the latent search's convergence band here (the last step's cost "
                   "decrease; needs --refine N or --solver thesis).")
@click.option("--polygons", type=click.Path(dir_okay=False),
              help="Write target polygons (GeoPackage) of the pixels above --threshold or "
                   "--far (one of them is needed).")
@click.option("--threshold", type=float, default=None,
              help="Score threshold for --polygons (or --far, not both).")
@click.option("--far", default=None, metavar="RATE|auto",
              help="False-alarm rate for the polygon threshold: the share of scored pixels "
                   "allowed above it, a fraction such as 0.001 (targets among them, as no truth "
                   "is known), or 'auto', a fit of the scores' upper tail.")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a quick-look PNG heatmap.")
@click.option("--device", default=None,
              help=f"Where the GAN scores' networks run: cpu, cuda or cuda:N "
                   f"[default: {defaults.DEVICE}].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime intra-op threads of each GAN network [default: "
                   "onnxruntime's choice, a thread a core]. Besides, "
                   f"{defaults.TILE_THREADS} tiles are scored at once, each on one BLAS thread.")
@click.option("--ignore-wavelengths", is_flag=True, default=None,
              help="Score with a model even where the raster's band wavelengths differ from "
                   "the ones it was trained on.")
@click.option("--mask", type=click.Path(dir_okay=False), default=None,
              help="Exclusion mask: a raster on the input's grid (non-zero = leave out) or vector "
                   "features ('f.gpkg|layername=NAME' for one layer of several); its pixels "
                   "are left out of fitting, a quick model's training and scoring (nodata in "
                   "the heatmap).")
@click.option("--tile", type=click.IntRange(min=defaults.MIN_TILE), default=defaults.TILE, show_default=True,
              help="Tile size in pixels.")
@click.option("--cog", is_flag=True,
              help="Write Cloud-Optimized GeoTIFFs (GDAL's COG driver) for the heatmap and extras.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its finished tiles; a finished run is "
                   "kept, and only --png and --polygons are drawn from it.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing output files even when hsanomaly did not write them "
                   "(without it, only an earlier run's outputs are replaced).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Score tiles on a local Dask cluster of N processes (or --scheduler).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Score tiles on the Dask cluster at this address (or --workers).")
@quiet_option
def detect(src, dst, score, model, recon_out, latent_out, convergence_out, polygons, threshold,
           far, png, mask, tile, cog, resume, overwrite, workers, scheduler, quiet, **scoring):
    """Score raster SRC and write the anomaly heatmap GeoTIFF DST."""
    from ..api import detect as run

    options = scorer_options(score, **scoring)     # the flags of options.OPTION_KINDS
    extras = {k: v for k, v in dict(recon=recon_out, latent=latent_out,
                                    convergence=convergence_out).items() if v}
    result = run(src, dst, score=score, model=model, extras=extras, polygons=polygons,
                 threshold=threshold, far=far, png=png, mask=mask, tile=tile, cog=cog, resume=resume,
                 overwrite=overwrite, workers=workers, scheduler=scheduler,
                 progress=show_progress(quiet), callback=progress_log(quiet), **options)
    click.echo(result.text())
    if result.model and not model:
        click.echo(result.model_text(src, "reuse it with --model"))
    for name, path in result.outputs.items():
        if name != "score":
            click.echo(f"{path}: {name}")
    if png:
        click.echo(f"{png}: quick look")
    if result.polygons is not None:
        click.echo(f"{polygons}: {counted(result.polygons, 'target polygon')}")


def scorer_options(score, **given):
    """The scorer options the user gave (None = not given, so the score's default applies).
    A library option's former name was never a flag for the score: refused here, not taken
    for the option it names now (``--components`` is a mixture's, not local RX's ``--pca``)."""
    from ..scorers import refuse_former_option

    flag = given.get("ignore_wavelengths") or None       # an absent switch is not given
    options = given_options({**given, "ignore_wavelengths": flag})
    refuse_former_option(score, options)        # status 1, as any option a score refuses
    return options
