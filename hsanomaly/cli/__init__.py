"""The ``hsanomaly`` command (also ``rio hsanomaly``): a thin click layer over the library.

Commands are imported only when invoked, so ``hsanomaly detect`` never imports torch.
Library errors (HsanomalyError) are printed as one line and exit with status 1.
"""

import importlib
import sys

import click

from ..errors import HsanomalyError

COMMANDS = {
    "detect": "hsanomaly.cli.detect:detect",
    "detect-many": "hsanomaly.cli.detect_many:detect_many",
    "benchmark": "hsanomaly.cli.benchmark:benchmark",
    "report": "hsanomaly.cli.report:report",
    "convert": "hsanomaly.cli.convert:convert",
    "evaluate": "hsanomaly.cli.evaluate:evaluate",
    "train": "hsanomaly.cli.train:train",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HsanomalyError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)


@click.group(name="hsanomaly", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hsanomaly")
def main():
    """Find anomalies in hyperspectral rasters (RX, Gaussian mixture, Wasserstein GANs)."""
