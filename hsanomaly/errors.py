"""What users see when something is wrong: one exception type (a one-line message naming the
file and the problem) and one warning type."""

import errno
import threading

DESCRIBED = 160             # characters of a library's own message kept in the one line


class HsanomalyError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits non-zero."""


class NoWorkers(HsanomalyError):
    """A Dask run stopped because its cluster had no worker for ``cluster.worker_wait()``
    seconds: a batch on that cluster stops there rather than wait as long for each raster."""


def _not_fitted_error():
    """scikit-learn's NotFittedError as an ``HsanomalyError`` too; made on first use, since
    importing scikit-learn takes most of a second that ``hsanomaly detect`` need not wait."""
    try:
        from sklearn.exceptions import NotFittedError as base
    except ImportError:            # a dependency; a broken one is no reason to fail here
        base = type("NotFittedError", (ValueError, AttributeError), {})

    class NotFittedError(HsanomalyError, base):
        """Scoring before ``fit``: an ``HsanomalyError`` that is also scikit-learn's
        ``NotFittedError`` (a ValueError and an AttributeError), caught as that one is."""

    NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"
    return NotFittedError


_MAKING = threading.Lock()


def __getattr__(name):
    if name == "NotFittedError":
        with _MAKING:        # one class for every thread, or an ``except`` could miss another's
            if name not in globals():
                globals()[name] = _not_fitted_error()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def describe(err):
    """The short reason an exception gives, for a one-line message: an OSError's or
    MemoryError's in plain words, else its message's first line (its type's name when it
    has none: ``"".splitlines()[0]`` would raise inside the handler)."""
    if isinstance(err, MemoryError):
        return "out of memory"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        return "file too large (a file-size limit, ulimit -f, or the file system's maximum)"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    text = text.replace(". See previous exception for details.", "")   # GDAL's: none is shown
    return text if len(text) <= DESCRIBED else text[:DESCRIBED - 3] + "..."   # SQL, say


class HsanomalyWarning(UserWarning):
    """A one-line warning about the data (the CLI prints it as ``Warning: ...``)."""


class HsanomalyDeprecationWarning(HsanomalyWarning, FutureWarning):
    """A former name or option that still works and goes in the next release (a
    FutureWarning, so it is shown to users of a script, not only to its tests)."""


def fail(path, problem):
    """Raise an error whose message names ``path`` and ``problem``."""
    raise HsanomalyError(f"{path}: {problem}")
