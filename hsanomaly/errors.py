"""What users see when something is wrong: one exception type (a one-line message naming the
file and the problem) and one warning type; the warnings of other libraries the library hides,
and the exceptions of the caller's own callback, which it passes on unchanged."""

import contextlib
import errno
import os
import re
import signal
import sys
import threading
import warnings
from typing import TYPE_CHECKING

DESCRIBED = 160             # characters of a library's own message kept in the one line


# the signals that stop a job as Ctrl-C does: Ctrl-C, kill (systemd, Slurm, docker stop), a
# terminal or SSH session closing, and a CPU-time limit's warning (ulimit -St, a batch queue's)
INTERRUPTS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGXCPU")
                   if hasattr(signal, name))


class HsanomalyError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits non-zero."""


class Cancelled(HsanomalyError):
    """A callback asked the job to stop: nothing is wrong with the input, and the job left
    nothing of its own behind (a training keeps its checkpoint to resume from, and says where)."""


class OutOfResources(HsanomalyError):
    """The machine, or a limit set on the process, ran out of what the job needed: memory,
    disk space, open files, threads. Nothing need be wrong with the input: the same job may
    succeed with more of it (a smaller tile, fewer workers, room on the disk)."""


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


if TYPE_CHECKING:       # what ``__getattr__`` makes, as a checker is to see it
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted

    class NotFittedError(HsanomalyError, _SklearnNotFitted):
        ...
else:                   # no catch-all a checker would take typos through
    def __getattr__(name):
        if name == "NotFittedError":
            with _MAKING:    # one class for every thread, or an ``except`` could miss another's
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
    if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
        return "too many open files (a limit on them, ulimit -n)"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    text = text.replace(". See previous exception for details.", "")   # GDAL's: none is shown
    return text if len(text) <= DESCRIBED else text[:DESCRIBED - 3] + "..."   # SQL, say


# how libraries say they ran out of memory or of threads under a limit (ulimit -v, -d, -u; a
# container's), where Python's own MemoryError is not what they raise; and what the loader says
# of a library it could not map, under a memory limit or from a noexec mount alike
OUT_OF_MEMORY = re.compile(r"can't allocate memory|bad_alloc|can't start new thread", re.I)
NOT_MAPPED = re.compile(r"failed to map segment|cannot allocate memory", re.I)


def out_of_memory(err):
    """Whether ``err`` (torch's or onnxruntime's allocation failure, a thread that could not
    start; a library that could not be mapped where a memory limit is set) says memory ran
    out. Read in its message, not in the name of a file it names."""
    said = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return isinstance(err, MemoryError) or (
        isinstance(err, OSError) and err.errno == errno.ENOMEM) or bool(
        OUT_OF_MEMORY.search(said)) or bool(NOT_MAPPED.search(said) and memory_limit())


def limit_reached(err):
    """Whether ``err`` says a limit of the process ran out: memory (``out_of_memory``), open
    files (ulimit -n) or processes and threads (ulimit -u)."""
    return out_of_memory(err) or getattr(err, "errno", None) in (
        errno.EMFILE, errno.ENFILE, errno.EAGAIN)


# the errors of a write that found no room: a full disk, a quota, a file-size limit
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def ran_out(err):
    """Whether ``err`` says the machine or a limit ran out (``OutOfResources``): memory, open
    files, threads (``limit_reached``), disk space or a file-size limit (``NO_ROOM``)."""
    return limit_reached(err) or getattr(err, "errno", None) in NO_ROOM


@contextlib.contextmanager
def ran_out_said(name, advice=""):
    """Where the machine or a limit runs out in this block (``ran_out``): ``OutOfResources``
    naming ``name``, in one line with ``advice``, not the library's own error."""
    try:
        yield
    except HsanomalyError:
        raise
    except Exception as err:
        if raised_by_callback(err) or not ran_out(err):
            raise
        said = out_of_memory_text(err) if out_of_memory(err) else describe(err)
        raise OutOfResources(f"{name}: {said}{advice}") from None


def memory_limit():
    """A process limit on memory set below the machine's memory, for a message ("an
    address-space limit of 800 MiB, ulimit -v"), or ""."""
    try:
        import resource
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, ValueError, OSError, AttributeError):      # Windows
        return ""
    for name, flag in (("RLIMIT_AS", "-v"), ("RLIMIT_DATA", "-d")):
        limit = resource.getrlimit(getattr(resource, name))[0] if hasattr(resource, name) \
            else resource.RLIM_INFINITY
        if limit != resource.RLIM_INFINITY and limit < memory:
            kind = "an address-space" if flag == "-v" else "a data"
            return f"{kind} limit of {limit // 2**20} MiB, ulimit {flag}"
    return ""


def out_of_memory_text(err):
    """"out of memory", with what the library said and the process's limit where one is set."""
    said = [] if isinstance(err, MemoryError) else [describe(err)]
    said += [limit] if (limit := memory_limit()) else []
    return "out of memory" + (f" ({'; '.join(said)})" if said else "")


class HsanomalyWarning(UserWarning):
    """A one-line warning about the data (the CLI prints it as ``Warning: ...``)."""


class HsanomalyDeprecationWarning(HsanomalyWarning, FutureWarning):
    """A former name or option that still works and goes in the next release (a
    FutureWarning, so it is shown to users of a script, not only to its tests)."""


class _Text:
    """A warning filter's message pattern equal to itself alone, so that the filter a block
    put in is the one it takes out, whatever equal filters the caller has."""

    def __init__(self, message):
        self.pattern = re.compile(message, re.I)

    def match(self, text):
        return self.pattern.match(text)


@contextlib.contextmanager
def ignoring(category=Warning, message=""):
    """Hide warnings of ``category`` whose text starts with ``message`` (a regular expression)
    while the block runs. ``warnings.catch_warnings`` saves the process's filter list and puts
    it back: two blocks overlapping in threads left one's filter for good, or dropped a filter
    the caller set meanwhile. Here each block puts a filter of its own first and takes that
    one out, each in one step. (A caller's own ``catch_warnings`` overlapping it in another
    thread can still put it back; where warning filters are per context, Python 3.14's
    ``context_aware_warnings``, ``catch_warnings`` is safe and used instead.)"""
    if getattr(sys.flags, "context_aware_warnings", False):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message, category)
            yield
        return
    entry = ("ignore", _Text(message), category, None, 0)
    warnings.filters.insert(0, entry)       # as filterwarnings would, less its removing of
    _filters_mutated()                       # an equal filter of the caller's
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):      # gone if the caller reset the filters
            warnings.filters.remove(entry)
        _filters_mutated()


def _filters_mutated():
    """Tell the warnings machinery its filter list changed (the version its caches check)."""
    if hasattr(warnings, "_filters_mutated"):
        warnings._filters_mutated()
    elif hasattr(warnings, "_filters_mutated_lock_held"):      # newer Pythons
        with warnings._lock:
            warnings._filters_mutated_lock_held()


def caller_callback(callback):
    """``callback``, the caller's ``callback(fraction, message)``, with what it raises marked
    as the caller's own (``raised_by_callback``): a web service's client gone
    (BrokenPipeError) is no failure to write the output, and passes through the library's
    one-line messages unchanged, with its traceback."""
    if callback is None:
        return None

    def reported(fraction, message):
        try:
            return callback(fraction, message)
        except Exception as err:
            err.hsanomaly_callback = True
            raise
    return reported


def raised_by_callback(err):
    """Whether ``err`` came from the caller's callback (``caller_callback``)."""
    return getattr(err, "hsanomaly_callback", False)
