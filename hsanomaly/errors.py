"""What users see when something is wrong: one exception type (a one-line message naming the
file and the problem) and one warning type."""

import threading


class HsanomalyError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits non-zero."""


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


class HsanomalyWarning(UserWarning):
    """A one-line warning about the data (the CLI prints it as ``Warning: ...``)."""


class HsanomalyDeprecationWarning(HsanomalyWarning, FutureWarning):
    """A former name or option that still works and goes in the next release (a
    FutureWarning, so it is shown to users of a script, not only to its tests)."""


def fail(path, problem):
    """Raise an error whose message names ``path`` and ``problem``."""
    raise HsanomalyError(f"{path}: {problem}")
