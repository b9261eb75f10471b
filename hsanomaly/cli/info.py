"""``hsanomaly info``: a thin click layer over ``hsanomaly.records.info``."""

import click

from . import with_verbosity


@with_verbosity
@click.command(short_help="Say what a model bundle, a heatmap, a drawing or a scene is.")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def info(path, as_json):
    """Say what PATH is: a model bundle's folder (checked whole; its shape, training inputs,
    settings and losses, data fingerprint, versions, and the digest its heatmaps name it by
    in their HSANOMALY_MODEL_DIGEST tag), a heatmap hsanomaly wrote (the score, settings,
    model and input it was made with, the command that makes it again; whether it is a copy
    cut or changed since), a quick look or targets GeoPackage drawn from one (which
    heatmap, and whether the one beside it is still that), or any other raster: what detect
    would read of it (its rows and columns, the bands scored and those left out, their type,
    centres and scaling, its nodata and mask, its CRS and what places it on the map), after
    the checks detect makes before the work."""
    from ..evaluation.files import strict_json
    from ..records import info as run, info_lines

    found = run(path)
    click.echo(strict_json(found) if as_json else info_lines(found), nl=not as_json)
