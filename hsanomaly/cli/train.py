"""``hsanomaly train``: a thin shell over hsanomaly.train (torch is imported only when run)."""

import click

from .. import defaults
from . import SEED_RANGE, progress_log, quiet_option, show_progress, with_verbosity


@with_verbosity
@click.command(short_help="Train a WGAN-GP model bundle on rasters or .mat scenes.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Model bundle directory to write (replaced if it is an existing bundle).")
@click.option("--mask", type=click.Path(dir_okay=False), multiple=True,
              help="Exclusion raster (non-zero = leave out of training) on the inputs' grid, or "
                   "vector features (their pixels left out): one mask for all inputs, or one "
                   "per input, in their order.")
@click.option("--background-only", is_flag=True,
              help="With --mask, also drop windows that merely touch a masked pixel.")
@click.option("--window", default=defaults.TRAIN_WINDOW, show_default=True, type=click.IntRange(min=1),
              help="Odd window size in pixels; >1 makes the networks convolve spatially (such "
                   "a model serves critic, recon and anogan; the default score needs 1).")
@click.option("--bands", type=click.IntRange(min=1),
              help=f"Bin the spectrum to this many bands; the bundle's latent codebook grows "
                   f"with them ({defaults.CODEBOOK:,} entries, each an output and a Jacobian "
                   f"per band) [default: min({defaults.TRAIN_BANDS}, bands)].")
@click.option("--sqrt", is_flag=True, help="Square-root noise transform before binning.")
@click.option("--whiten", is_flag=True,
              help="Decorrelate the binned bands, so that recon's distance is a Mahalanobis "
                   "distance (what the recon and anogan scores' quick models use).")
@click.option("--iterations", default=defaults.ITERATIONS, show_default=True,
              type=click.IntRange(min=1), help="Generator iterations.")
@click.option("--seed", default=defaults.TRAIN_SEED, show_default=True, type=SEED_RANGE,
              help="Random seed of the networks' first weights and of the windows drawn.")
@click.option("--device", default=defaults.DEVICE, show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--boost-rare", is_flag=True, help="Draw rare (but not singular) spectra more often.")
@click.option("--threads", type=click.IntRange(min=1),
              help=f"CPU threads for torch [default: {defaults.TRAIN_THREADS}; more do not pay on networks this small].")
@click.option("--resume", is_flag=True, help="Continue from OUT.checkpoint/ if a run was interrupted.")
@quiet_option
def train(inputs, out, mask, background_only, window, bands, sqrt, whiten, iterations, seed,
          device, boost_rare, threads, resume, quiet):
    """Train a WGAN-GP on INPUTS (rasters or .mat scenes) and write an ONNX model bundle."""
    from ..api import train as train_model

    mask = None if not mask else mask[0] if len(mask) == 1 else list(mask)   # one: for all
    bundle = train_model(list(inputs), out, mask=mask, window=window, bands=bands, sqrt=sqrt,
                         whiten=whiten, iterations=iterations, seed=seed, device=device,
                         background_only=background_only, boost_rare=boost_rare,
                         resume=resume, threads=threads, progress=show_progress(quiet),
                         callback=progress_log(quiet))
    click.echo(bundle.text(out))
