"""One writer per output: an exclusive ``flock`` on the folder a run keeps its state in (a
detect run's tile store, a training's checkpoints), released when the process ends however
it ends. A second run on the same output is refused instead of removing or mixing the first
one's state."""

import errno
import os
from pathlib import Path

from ..errors import HsanomalyError, describe

try:
    import fcntl
except ImportError:          # Windows: no advisory locks; runs on one output must not overlap
    fcntl = None            # type: ignore[assignment]

UNLOCKABLE = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def busy(path, output=None):
    """The one line for an ``output`` another run is writing now (``path``: its run's locked
    folder, which the message names where no output is given)."""
    held = "" if output is None else f" (its working folder {path} is locked)"
    return HsanomalyError(f"{output or path}: another hsanomaly run is writing this output "
                          f"now{held}; wait for it to finish or choose another output")


def lock_folder(path, output=None):
    """An exclusive lock on the folder ``path`` (its descriptor, or None where there is nothing
    to lock), or one line saying another run holds it: its ``output``, the file or folder
    the user named, which the run writes from this folder."""
    if fcntl is None or not Path(path).is_dir():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise HsanomalyError(f"{path}: cannot be opened to lock it ({describe(err)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy(path, output) from None
    except OSError as err:
        os.close(fd)
        if err.errno in UNLOCKABLE:      # a file system without locks: as on Windows
            return None
        raise HsanomalyError(f"{path}: cannot be locked ({describe(err)})") from None
    return fd


def check_unlocked(path, output=None):
    """Refuse early, before a long fit, when another run holds the folder at ``path``."""
    fd = lock_folder(path, output)
    if fd is not None:
        os.close(fd)
