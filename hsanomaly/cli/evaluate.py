"""``hsanomaly evaluate``: a thin click layer over ``hsanomaly.api.evaluate``."""

import os
import sys
from pathlib import Path

import click

from .. import defaults
from . import quiet_option, with_verbosity


STDOUT = ("-", "/dev/stdout")   # --json names for standard output (the second is a link that
                                # outputs, written whole and renamed into place, must not be)


@with_verbosity
@click.command(short_help="Score a heatmap against a truth: AUC, logAUC, Pd, targets.")
@click.argument("heatmap", type=click.Path(dir_okay=False))
@click.argument("truth", type=click.Path(dir_okay=False))
@click.option("--outer-mask", "outer_mask", type=click.Path(dir_okay=False),
              help="Outer target mask (a raster or vector features, as TRUTH): pixels in it but "
                   "not in TRUTH are ambiguous and excluded.")
# the former name, deprecated as the library's outer= is (detect's --outer is a ring's window)
@click.option("--outer", "outer", type=click.Path(dir_okay=False), hidden=True)
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Write ROC, semi-log ROC, histogram and heatmap PNGs into this directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the full report (overall and per target) as JSON; '-' (or /dev/stdout) "
                   "writes it to stdout, and the summary to stderr.")
@click.option("--pd-far", type=float, default=defaults.PD_FAR, show_default=True,
              help="The false-alarm rate (a share of the truth's background pixels) at which "
                   "Pd is reported.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing report or plot files even when hsanomaly did not write them.")
@quiet_option
def evaluate(heatmap, truth, outer_mask, outer, plots_dir, json_path, pd_far, overwrite, quiet):
    """Score anomaly HEATMAP (band 1 of a raster) against TRUTH (a raster on its grid,
    non-zero = target, or target polygons, points or lines in any vector format OGR reads;
    name one layer of several as 'FILE|layername=NAME'): AUC, logAUC, lgFAR and Pd (the share
    of target pixels found at a false-alarm rate of --pd-far) overall and per target
    (connected components T1..Tn); at that rate, the targets found and the false-alarm
    regions (blobs above the threshold holding no target pixel)."""
    from ..api import evaluate as run
    from ..evaluation.files import format_summary, strict_json

    piped = json_path in STDOUT           # the JSON alone on stdout, for jq and the like
    if piped and sys.stdout is None:      # started with it closed (>&-): the report would be lost
        raise click.UsageError(f"--json {json_path}: standard output is closed; name a file")
    if outer is not None and (outer_mask is not None or _a_number(outer)):
        raise click.UsageError("--outer is the outer target mask's former name (--outer-mask), "
                               + ("give one of them" if outer_mask is not None else
                                  "a file; detect's --outer is a ring's window"))
    masks = {k: v for k, v in (("outer_mask", outer_mask), ("outer", outer)) if v is not None}
    report = run(heatmap, truth, plots=plots_dir, json=None if piped else json_path,
                 overwrite=overwrite, pd_far=pd_far, **masks)
    if not (piped and quiet):     # the summary beside the JSON is no result: -q leaves it out
        click.echo(format_summary(report), err=piped)
        if plots_dir:
            click.echo(f"{plots_dir}: {', '.join(Path(p).name for p in report['plots'].values())}",
                       err=piped)
    if piped:
        click.echo(strict_json(report), nl=False)
    elif json_path:
        click.echo(f"{json_path}: report")


def _a_number(text):
    """A number and no file of that name: detect's --outer (a ring's window) given here."""
    try:
        float(text)
    except ValueError:
        return False
    return not os.path.lexists(text)
