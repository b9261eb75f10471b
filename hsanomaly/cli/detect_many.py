"""``hsanomaly detect-many``: a thin click layer over ``hsanomaly.batch.detect_many``."""

import contextlib
import os
import sys

import click

from . import progress_log, show_progress, with_verbosity
from ..spelling import counted
from .detect import detect, scorer_options

# `hsanomaly detect`'s options that concern one raster's outputs; detect-many takes the others
DETECT_ONLY = ("src", "dst", "recon_out", "latent_out", "convergence_out", "polygons", "png",
               "cog", "resume", "overwrite", "verbose")


@click.command(short_help="Score many rasters; reruns skip finished ones.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Write <input stem>_<score>.tif heatmaps here.")
@click.option("--polygons", is_flag=True,
              help="Also write each raster's target polygons, <input stem>_<score>.gpkg, of the "
                   "pixels above --threshold or --far (one of them is needed; a rate carries "
                   "over from raster to raster where a threshold does not).")
@click.option("--png", is_flag=True,
              help="Also write each raster's quick-look PNG, <input stem>_<score>.png.")
@click.option("--overwrite", is_flag=True,
              help="Score every raster from scratch instead of skipping finished ones and resuming "
                   "others, and replace output files hsanomaly did not write.")
def detect_many(inputs, out_dir, polygons, png, threshold, far, overwrite, workers, scheduler,
                quiet, **scoring):
    """Score rasters INPUTS, on one Dask cluster with --workers or --scheduler; reruns skip finished ones.

    A finished raster's --polygons and --png are drawn from its heatmap where missing, older than
    it or asked above another threshold, and kept otherwise (a reviewer's edits included).

    Exits with status 1 if any raster failed, after scoring the others.
    """
    from ..batch import BatchItem, detect_many as run

    score, model, tile = scoring.pop("score"), scoring.pop("model"), scoring.pop("tile")
    mask = scoring.pop("mask")
    items = run(inputs, out_dir, score=score, model=model, mask=mask, tile=tile,
                polygons=polygons, threshold=threshold, far=far, png=png, overwrite=overwrite,
                workers=workers, scheduler=scheduler, progress=show_progress(quiet),
                callback=progress_log(quiet), settled=_say, **scorer_options(score, **scoring))
    counts = {status: sum(item.status == status for item in items) for status in BatchItem.STATUSES}
    click.echo(f"{out_dir}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if counts["failed"]:
        sys.exit(1)


def _say(item):
    """A raster's line, as soon as it is settled (a long batch's log shows how far it got):
    the heatmap's path first, or the error. A reader of stdout that had enough (``| head``)
    hears no more, and the batch goes on (its lines were printed at its end, before)."""
    try:
        if item.status == "failed":
            click.echo(f"Error: {item.error}", err=True)
            return
        if item.status == "skipped":
            click.echo(f"{item.dst}: skipped, finished before for {item.src}")
        else:
            click.echo(item.result.text())
        drew = item.result is not None and item.result.polygons is not None
        if item.png is not None:
            click.echo(f"{item.png}: quick look")
        if item.polygons is not None:
            click.echo(f"{item.polygons}: " + (counted(item.result.polygons, "target polygon")
                                               if drew else "target polygons kept, drawn "
                                               "before above this threshold"))
    except BrokenPipeError:          # stderr too where it is the same pipe (2>&1 | head)
        shared = False
        with contextlib.suppress(OSError):
            shared = os.path.samestat(os.fstat(sys.stdout.fileno()),
                                      os.fstat(sys.stderr.fileno()))
        null = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr) if shared else (sys.stdout,):
            os.dup2(null, stream.fileno())


detect_many.params[1:1] = [param for param in detect.params if param.name not in DETECT_ONLY]
with_verbosity(detect_many)     # after the shared options, which it reads (--quiet, spelling)
