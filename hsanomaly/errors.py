"""The one exception type users see: a one-line message naming the file and the problem."""


class HsanomalyError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits non-zero."""


def fail(path, problem):
    """Raise an error whose message names ``path`` and ``problem``."""
    raise HsanomalyError(f"{path}: {problem}")
