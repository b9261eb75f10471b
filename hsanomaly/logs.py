"""Logging: the library logs to the ``hsanomaly`` logger and prints nothing by itself.

A library call is silent unless the application configures logging (or passes
``progress=True`` for tqdm bars); the CLI calls ``configure`` from ``-v``/``-q``, so a
command shows each long stage by name, with its time when verbose.
"""

import contextlib
import logging
import re
import sys
import time

LOGGER = logging.getLogger("hsanomaly")
LOGGER.addHandler(logging.NullHandler())
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
NUMBER = re.compile(r"[-+]?[0-9][0-9.]*(?:e[-+]?[0-9]+)?")   # messages of one kind differ in these
# "tile 3/16": step 3 of 16 (not a path's "2020/05/scene.tif")
COUNTED = re.compile(r"(?<![\w/.])(\d+)/(\d+)(?![\w/.])")


def configure(verbosity=0):
    """Send hsanomaly's log to stderr: -1 warnings only, 0 stage names, 1 stage
    names with their times and debug lines."""
    handler = next((h for h in LOGGER.handlers if getattr(h, "hsanomaly_cli", False)), None)
    if handler is None:
        handler = _CliHandler(sys.stderr)
        handler.hsanomaly_cli = True
        handler.setFormatter(_CliFormatter("%(message)s"))
        LOGGER.addHandler(handler)
    else:       # a later command in this process (a caller's own, a test's) may have another
        handler.setStream(sys.stderr)
    LOGGER.setLevel(LEVELS[max(-1, min(1, verbosity))])
    LOGGER.propagate = False
    return handler


class _CliHandler(logging.StreamHandler):
    """Lines to stderr, also while a GDAL write has descriptor 2 silenced (``to_stderr``):
    another thread's progress and stage lines were lost meanwhile."""

    def emit(self, record):
        if self.stream is not sys.stderr:
            super().emit(record)
            return
        from .io.atomic import to_stderr

        try:
            to_stderr(self.format(record) + self.terminator)
        except Exception:       # logging's own contract: a failed line is no failed run
            self.handleError(record)


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


class Throttle:
    """Which progress messages (``callback(fraction, message)``'s) deserve a line in a log: a
    new kind of message (a new stage: fitting, training, tiles), a run starting again (the
    next raster of a batch), the last one (of the run, or of its stage: "250/250"), and
    otherwise one every ``interval`` seconds or every ``step`` of progress, whichever comes
    first, so a raster of thousands of tiles does not flood the log."""

    def __init__(self, interval, step, clock=time.monotonic):
        self.interval, self.step, self.clock = interval, step, clock
        self.time, self.fraction, self.kind = None, 0.0, None

    def __call__(self, fraction, message):
        now, kind = self.clock(), NUMBER.sub("#", str(message))
        if (kind != self.kind or fraction >= 1 or _last(message) or fraction < self.fraction
                or now - self.time >= self.interval or fraction - self.fraction >= self.step):
            self.time, self.fraction, self.kind = now, fraction, kind
            return True
        return False


def _last(message):
    """Whether ``message`` counts its stage's last step ("iteration 250/250")."""
    counted = COUNTED.search(str(message))
    return counted is not None and counted[1] == counted[2]


def progress_lines(interval=30.0, step=0.1, logger=LOGGER):
    """A ``callback(fraction, message)`` that logs counted progress ("tile 3/16", "iteration
    40/250") as info lines (``Throttle``): where no progress bar is drawn (a log file, a batch
    job) a long run still says how far it got. A stage's name is already a ``stage`` line."""
    throttle = Throttle(interval, step)

    def callback(fraction, message):
        if fraction > 0 and COUNTED.search(str(message)) and throttle(fraction, message):
            logger.info("%s (%.0f %%)", message, 100 * fraction)
    return callback


def half_of(callback, which, stage=""):
    """``callback`` for half ``which`` (0 or 1) of a run: a quick model's training, then the
    scoring, so that the fraction never goes back; its messages after ``stage`` ("training
    the quick model: iteration 40/250")."""
    if callback is None:
        return None
    return lambda fraction, message: callback((which + fraction) / 2, f"{stage}{message}")


def progress_bar(show, iterable=None, **options):
    """A tqdm bar when ``show``; otherwise one that draws nothing and starts nothing (a
    disabled tqdm still starts its monitor thread, which outlives a silent library call)."""
    if show:
        from tqdm.auto import tqdm

        return tqdm(iterable, **options)
    return _NoBar(iterable)


class _NoBar(contextlib.nullcontext):
    """What the jobs ask of a bar they do not show: iteration, update, postfix, close."""

    def __init__(self, iterable):
        super().__init__(self)
        self.iterable = () if iterable is None else iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass
