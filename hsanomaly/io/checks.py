"""Checks that refuse, before any work, a job the machine cannot hold; where a path leads
and what a path that is no file is; and one-line warnings.

The whole-raster paths (.mat scenes are loaded whole, ``evaluate`` reads whole heatmaps and
masks) compare what they would need, computed from the file's header (HDF5 dataset shapes,
``scipy.io.whosmat``, GDAL's size), with the memory available now (``MemAvailable`` in
/proc/meminfo, else free physical pages), so a file that declares a huge size is refused
with one line instead of a MemoryError after minutes.
"""

import contextlib
import contextvars
import os
import stat
import sys
import warnings
from pathlib import Path

from ..errors import HsanomalyError, HsanomalyWarning, describe
from ..spelling import spelled

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# a path that is neither a file nor a folder, by its stat mode: what messages call it
SPECIAL = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
           (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"))


def path_text(path):
    """A path argument as text: a path-like object by its path (``os.fspath``), not by its
    ``str()``, which need not be it (a catalogue's handle); anything else by ``str()``."""
    return os.fspath(path) if isinstance(path, os.PathLike) else str(path)


def absolute(path):
    """``path`` made absolute as the kernel resolves it: its folder's links and '..' in their
    order (``os.path.abspath`` drops 'link/..' as text, which names another folder: an output
    was staged in one folder and renamed into the other, across file systems even); its own
    name kept: an output that is a link is refused, never followed, and an input's link
    (git-annex and DVC replace a file by a link to new content) names the dataset."""
    folder, name = os.path.split(os.fspath(path).rstrip(os.sep) or os.sep)
    if not os.path.isabs(folder):           # ("", ".", "sub", "..": of the current folder)
        folder = os.path.join(current_folder(path), folder)
    return os.path.join(os.path.realpath(folder), name)


FOLDER_GONE = "the current folder no longer exists (removed or moved since the shell entered it)"


def current_folder(path=None):
    """The current folder, or one line where it is gone (``FOLDER_GONE``) and ``path``, named
    relative to it, cannot be found."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise HsanomalyError(f"{path or '.'}: {FOLDER_GONE}; cd into a folder, or give the "
                             "path in full") from None


def special_kind(mode):
    """What a path of stat ``mode`` is when it is a device, a pipe or a socket; else None."""
    return next((kind for test, kind in SPECIAL if test(mode)), None)


def warn(message, category=HsanomalyWarning):
    """Warn with ``category``, attributed to the first line outside hsanomaly (the caller's
    own, in a script or a notebook), not to the library line that noticed; a file the user
    never made is named as ``shown_as`` says."""
    for path, name in _SHOWN_AS.get():
        message = message.replace(path, name)
    relayed = _RELAYED.get()
    if relayed is not None:           # a Dask task's: said by the run that asked for it
        relayed.append((message, category))
        return
    frame, level = sys._getframe(1), 2
    while frame is not None and (os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE)
                                 or frame.f_code.co_filename == contextlib.__file__):
        frame, level = frame.f_back, level + 1      # contextlib: the jobs' ``one_job`` scope
    warnings.warn(message, category, stacklevel=level)


_SHOWN_AS: contextvars.ContextVar = contextvars.ContextVar("hsanomaly_shown_as", default=())


@contextlib.contextmanager
def shown_as(names):
    """Within it, warnings name each file of ``names`` (its path -> a name) by that name: a
    temporary copy the user never made (a quick model's) by what it is a copy of."""
    token = _SHOWN_AS.set(_SHOWN_AS.get() + tuple((str(k), v) for k, v in names.items()))
    try:
        yield
    finally:
        _SHOWN_AS.reset(token)


_SAID: set = set()                # outside any job: once per process
_SAID_IN_JOB = contextvars.ContextVar("hsanomaly_said_in_job", default=None)
_CHECKED_IN_JOB = contextvars.ContextVar("hsanomaly_checked_in_job", default=None)


@contextlib.contextmanager
def one_job(spelling=None):
    """The scope of ``warn_once``: each job of the library (a ``train``, ``detect``,
    ``evaluate``, ``Detector.fit`` or ``score``) says each warning once, and the next job
    says it again, as the user's warning filters decide; and of ``checked_outputs``. Usable
    as a decorator. ``spelling``: how the job's messages name arguments (``spelling``
    module), where its door differs from the one it is called through."""
    with spelled(spelling) if spelling is not None else contextlib.nullcontext():
        if _SAID_IN_JOB.get() is not None:      # a job inside a job (detect_many's detects)
            yield
            return
        said, checked = _SAID_IN_JOB.set(set()), _CHECKED_IN_JOB.set({})
        try:
            yield
        finally:
            _CHECKED_IN_JOB.reset(checked)
            _SAID_IN_JOB.reset(said)


_RELAYED: contextvars.ContextVar = contextvars.ContextVar("hsanomaly_relayed", default=None)
# the attribute a task's error carries its warnings in (an exception's attributes travel
# with it from a Dask worker)
RELAYED_WITH = "hsanomaly_relayed"


@contextlib.contextmanager
def relayed():
    """Within it, warnings are kept, as (message, category), in the list it yields instead of
    said, each once (``warn_once``'s, which a worker process would say once for good): a Dask
    task's, which its worker would write on its own stderr, are said by the run that asked
    for them (``say_relayed``)."""
    kept = []
    token, said = _RELAYED.set(kept), _SAID_IN_JOB.set(set())
    try:
        yield kept
    except Exception as err:        # its warnings go with it: often they explain it
        with contextlib.suppress(AttributeError, TypeError):
            setattr(err, RELAYED_WITH, kept)
        raise
    finally:
        _SAID_IN_JOB.reset(said)
        _RELAYED.reset(token)


def say_relayed(kept):
    """The warnings ``relayed`` kept, each said once in the caller's job (``warn_once``);
    ``kept`` may be a task's error, which carries those said before it failed."""
    if isinstance(kept, BaseException):
        kept = getattr(kept, RELAYED_WITH, ())
    for message, category in kept:
        warn_once(message, category)


def checked_outputs():
    """{output's absolute path: what it held when this job checked it}, kept for the job
    (``one_job``; None outside one): ``io.atomic`` fills it as outputs are checked and
    refuses to replace one that changed since (another run's result, a user's file written
    there while the work ran)."""
    return _CHECKED_IN_JOB.get()


def warn_once(message, category=HsanomalyWarning):
    """``warn``, once per job (``one_job``) for each message, or once per process outside
    one: a warning said at every use would repeat for each tile or scene (Python's own
    once-per-line rule forgets whenever the warning filters change, which reading rasters
    does often)."""
    said = _SAID_IN_JOB.get()
    said = _SAID if said is None else said
    if message not in said:
        said.add(message)
        warn(message, category)


# memory limits of control groups (containers, Slurm jobs, systemd units): cgroup v2's, then
# v1's memory controller: (its line in /proc/self/cgroup, where its tree is mounted, the
# files of a group's limit and use, the statistic of the page cache the group can drop)
CGROUP_MEMORY = (("", "/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                 ("memory", "/sys/fs/cgroup/memory", "memory.limit_in_bytes",
                  "memory.usage_in_bytes", "total_inactive_file"))
OWN_CGROUPS = "/proc/self/cgroup"
NO_LIMIT = 1 << 60      # cgroup v1 writes "no limit" as a number near 2**63


def available_memory():
    """Bytes of memory available to a new allocation now, or None when unknown: the machine's,
    or less where a container's memory limit leaves less (the machine's free memory is no
    measure inside a container, whose limit is where its processes are killed)."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    room = _container_room()
    return room if free is None else free if room is None else min(free, room)


def _container_room():
    """What the tightest memory limit over this process leaves (a limit less its group's use,
    less the page cache the group can drop), of its own control group and each above it: a
    container's is at the mount's root, a Slurm job's or a systemd unit's further down. None
    where no limit is set or none can be read."""
    try:
        with open(OWN_CGROUPS) as f:
            own = [line.rstrip("\n").split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        own = []
    rooms = []
    for controller, mount, limit_name, use_name, droppable in CGROUP_MEMORY:
        paths = [path for _, controllers, path in own       # v2's line names no controller
                 if (controller in controllers.split(",") if controller else not controllers)]
        folder = Path(mount + (paths[0] if paths else "/")).resolve()
        for group in (folder, *folder.parents):
            room = _room(group, limit_name, use_name, droppable)
            if room is not None:
                rooms.append(room)
            if group == Path(mount):
                break
    return min(rooms) if rooms else None


def _room(group, limit_name, use_name, droppable):
    """A control group's limit less its use and droppable cache, or None without a limit."""
    try:
        limit = (group / limit_name).read_text().strip()
        used = int((group / use_name).read_text())
    except (OSError, ValueError):
        return None
    if not limit.isdigit() or int(limit) >= NO_LIMIT:     # v2 writes "max"
        return None
    cache = 0
    try:
        with open(group / "memory.stat") as f:
            cache = next((int(line.split()[1]) for line in f
                          if line.split()[:1] == [droppable]), 0)
    except (OSError, ValueError, IndexError):
        pass
    return max(0, int(limit) - used + cache)


def size_text(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


SMALL_FILE_BYTES = 16 * 2**20      # far beyond any description, manifest or journal of ours


def read_small(path, limit=SMALL_FILE_BYTES, follow=False):
    """The text of a small file hsanomaly reads as data: a model's description, a tile
    store's manifest, a commit journal. Folders a run comes across may hold anything in that
    file's place: a link (refused unless ``follow``), a pipe or a device (a read of a pipe
    waits for ever, one of /dev/zero never ends) is refused unread (OSError), and a file
    larger than ``limit`` (ValueError) before it is read."""
    with _open_regular(path, follow) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{path} holds {size_text(size)}, more than {size_text(limit)}")
        data = f.read(limit + 1)                  # no more, should it have grown since
    if len(data) > limit:
        raise ValueError(f"{path} holds more than {size_text(limit)}")
    return data.decode("utf-8")


def read_npz(path, limit, names=None):
    """{name: array} of an .npz hsanomaly wrote (a tile, a training checkpoint): all its
    arrays, or those of ``names`` it holds. Refused as ``read_small`` refuses, and (ValueError)
    before any is unpacked where they would unpack to more than ``limit`` bytes: the zip's
    directory says what each member unpacks to and zipfile unpacks no more, so a planted file
    of a few MB cannot fill the memory. No pickle: never code from a file."""
    import numpy as np

    with _open_regular(path, follow=False) as f, np.load(f, allow_pickle=False) as z:
        names = z.files if names is None else [name for name in names if name in z.files]
        size = sum(info.file_size for info in z.zip.infolist()
                   if info.filename.removesuffix(".npy") in names)
        if size > limit:
            raise ValueError(f"{path}: its arrays unpack to {size_text(size)}, more than the "
                             f"{size_text(limit)} expected")
        return {name: z[name] for name in names}


def _open_regular(path, follow):
    """``path`` open for reading in binary, refused (OSError) unless a regular file: a link
    unless ``follow``, a pipe (not waited on) or a device."""
    flags = os.O_RDONLY | sum(getattr(os, flag, 0) for flag in    # some are POSIX's alone; on
                              ("O_NONBLOCK", "O_CLOEXEC", "O_BINARY"))   # Windows, binary
    f = os.fdopen(os.open(path, flags if follow else flags | getattr(os, "O_NOFOLLOW", 0)), "rb")
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        raise OSError(f"{path} is {special_kind(mode) or 'not a file'}")
    return f


def check_disk(folder, nbytes, what):
    """Refuse ``what`` (e.g. "the tile store and outputs need") when it would not fit in
    ``folder``'s file system."""
    import shutil

    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise HsanomalyError(f"{folder}: {what} about {size_text(nbytes)} of disk, only "
                             f"{size_text(free)} is free")


def check_inodes(folder, files, what):
    """Refuse ``what`` (e.g. "the tile store") when ``folder``'s file system has fewer free
    inodes than its ``files`` files take (a file system that counts none says 0: no check)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):          # Windows: no inodes to count
        return
    if stats.f_files and files > stats.f_favail:
        raise HsanomalyError(f"{folder}: {what} needs {files:,} files, and its file system has "
                             f"room for only {stats.f_favail:,} more (free inodes); choose a "
                             "larger tile, or another file system")


def check_memory(path, nbytes, what):
    """Refuse ``what`` (e.g. "loading the 610x340x103 cube") when it needs more than is free."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise HsanomalyError(f"{path}: {what} needs about {size_text(nbytes)} of memory, "
                             f"only {size_text(free)} is available")


def check_drawing(label):
    """Refuse, before the work, an output that matplotlib draws where matplotlib cannot start:
    it wants a writable folder for its settings and font cache (MPLCONFIGDIR, else HOME's or
    a temporary folder), and it was imported only once the scores were done, which failed
    the run then (a read-only container, say)."""
    import importlib

    try:
        importlib.import_module("matplotlib")
    except ImportError as err:
        raise HsanomalyError(f"{label}: drawing it needs matplotlib ({describe(err)})") from None
    except OSError:
        raise HsanomalyError(f"{label}: matplotlib, which draws it, finds no writable folder for "
                             "its cache (HOME or a temporary folder); set MPLCONFIGDIR to "
                             "one") from None
