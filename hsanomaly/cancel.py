"""Cancel points: where a long step that reports no progress of its own (a scorer's fit: a
sample read tile by tile, a latent search batch by batch, EM a few iterations at a time) lets
a caller's cancel through. The engine runs such a step within ``cancellable(check)``; the
step's loops call ``cancel_point()``, which runs ``check`` in the thread that opened the block
(the caller's callback is called from no other). Threads the step starts in a copy of its
context (``spelling.submit``) stop at their next cancel point once the check has raised, and
the step waits for them with ``results``, which lets a cancel through while it waits."""

import concurrent.futures
import contextlib
import contextvars
import threading

from .errors import Cancelled

POLL = 0.1          # seconds between two cancel points while ``results`` waits

_BLOCK = contextvars.ContextVar("hsanomaly_cancellable", default=None)


class _Block:
    def __init__(self, check):
        self.thread, self.check = threading.get_ident(), check
        self.stopped = None         # what the check raised, said to the block's other threads


@contextlib.contextmanager
def cancellable(check):
    """A block whose ``cancel_point()`` calls run ``check()``, which raises to cancel."""
    token = _BLOCK.set(_Block(check))
    try:
        yield
    finally:
        _BLOCK.reset(token)


def cancel_point():
    """Let a cancel through here: ``check()`` of the enclosing ``cancellable`` block in the
    thread that opened it; in a thread of its own, ``Cancelled`` once the check has raised."""
    block = _BLOCK.get()
    if block is None:
        return
    if block.stopped is not None:
        raise Cancelled(block.stopped)
    if block.thread == threading.get_ident():
        try:
            block.check()
        except BaseException as err:
            block.stopped = str(err) or type(err).__name__
            raise


def results(jobs, poll=POLL):
    """The results of futures ``jobs``, in order, with a cancel point every ``poll`` seconds
    while they run."""
    done = []
    for job in jobs:
        while True:
            cancel_point()
            try:
                done.append(job.result(timeout=poll))
                break
            except concurrent.futures.TimeoutError:
                continue
    return done
