"""What users see when something is wrong: one exception type (a one-line message naming the
file and the problem) and one warning type."""


class HsanomalyError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits non-zero."""


class NotFittedError(HsanomalyError, ValueError, AttributeError):
    """Scoring before ``fit``: an ``HsanomalyError`` that code written for scikit-learn's
    ``NotFittedError`` (a ValueError and an AttributeError) catches as it does that one."""


class HsanomalyWarning(UserWarning):
    """A one-line warning about the data (the CLI prints it as ``Warning: ...``)."""


def fail(path, problem):
    """Raise an error whose message names ``path`` and ``problem``."""
    raise HsanomalyError(f"{path}: {problem}")
