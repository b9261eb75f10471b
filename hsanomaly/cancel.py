"""Cancel points: where a long step that reports no progress of its own (a scorer's fit: a
sample read tile by tile, a latent search batch by batch, EM iteration by iteration) lets a
caller's cancel through. The engine runs such a step within ``cancellable(check)``; the step's
loops call ``cancel_point()``, which runs ``check`` in the thread that opened the block and
does nothing anywhere else (tile threads, Dask workers, a fit outside a run)."""

import contextlib
import contextvars
import threading

_CHECK = contextvars.ContextVar("hsanomaly_cancel_check", default=None)


@contextlib.contextmanager
def cancellable(check):
    """A block whose ``cancel_point()`` calls run ``check()``, which raises to cancel."""
    token = _CHECK.set((threading.get_ident(), check))
    try:
        yield
    finally:
        _CHECK.reset(token)


def cancel_point():
    """Let a cancel through here: ``check()`` of the enclosing ``cancellable`` block, in its
    own thread only (a thread that inherits the context is not the caller's)."""
    found = _CHECK.get()
    if found is not None and found[0] == threading.get_ident():
        found[1]()
