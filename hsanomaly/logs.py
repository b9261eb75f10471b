"""Logging: the library logs to the ``hsanomaly`` logger and prints nothing by itself.

A library call is silent unless the application configures logging (or passes
``progress=True`` for tqdm bars); the CLI calls ``configure`` from ``-v``/``-q``, so a
command shows each long stage by name, with its time when verbose.
"""

import contextlib
import logging
import sys
import time

LOGGER = logging.getLogger("hsanomaly")
LOGGER.addHandler(logging.NullHandler())
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


def configure(verbosity=0):
    """Send hsanomaly's log to stderr: -1 warnings only, 0 stage names, 1 stage
    names with their times and debug lines."""
    handler = next((h for h in LOGGER.handlers if getattr(h, "hsanomaly_cli", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.hsanomaly_cli = True
        handler.setFormatter(_CliFormatter("%(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(LEVELS[max(-1, min(1, verbosity))])
    LOGGER.propagate = False
    return handler


class _CliFormatter(logging.Formatter):
    """Messages as they are; a warning begins ``Warning:``, as the CLI prints warnings about
    the data, so the two read alike."""

    def format(self, record):
        text = super().format(record)
        return f"Warning: {text}" if record.levelno == logging.WARNING else text


@contextlib.contextmanager
def stage(message, logger=LOGGER):
    """Log ``message`` when a long stage starts and its duration when it ends (debug)."""
    logger.info("%s ...", message)
    start = time.perf_counter()
    yield
    logger.debug("%s: done in %.1f s", message, time.perf_counter() - start)
