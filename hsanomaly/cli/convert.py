"""``hsanomaly convert``: a thin click layer over ``hsanomaly.io.convert.convert_mat``."""

import click

from . import with_verbosity


@with_verbosity
@click.command(short_help="Convert a benchmark .mat scene to a GeoTIFF and its truth.")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--truth", type=click.Path(dir_okay=False), help="Also write the truth mask here.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing files even when hsanomaly did not write them.")
def convert(src, dst, truth, overwrite):
    """Convert a benchmark .mat scene to a tiled, compressed GeoTIFF."""
    from ..io.convert import convert_mat

    bands, rows, cols, anomalies = convert_mat(src, dst, truth, overwrite)
    click.echo(f"{dst}: {rows} x {cols} x {bands} bands; no CRS in the .mat, so none was written")
    if truth:
        click.echo(f"{truth}: {anomalies} anomaly pixels")
