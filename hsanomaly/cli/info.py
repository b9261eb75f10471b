"""``hsanomaly info``: a thin click layer over ``hsanomaly.records.info``."""

import json

import click

from . import with_verbosity


@with_verbosity
@click.command(short_help="Say what a model bundle or a heatmap is, from its own record.")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def info(path, as_json):
    """Say what PATH is: a model bundle's folder (checked whole; its shape, training inputs,
    settings and losses, data fingerprint, versions, and the digest its heatmaps name it by
    in their HSANOMALY_MODEL_DIGEST tag) or a heatmap hsanomaly wrote (the score, settings,
    model and input it was made with)."""
    from ..records import info as run, info_lines

    found = run(path)
    click.echo(json.dumps(found, indent=2) if as_json else info_lines(found))
