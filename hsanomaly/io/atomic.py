"""The one write path: every file and directory hsanomaly produces appears whole or not at all.

A write is staged. Each destination gets a private temporary directory created exclusively
beside it (``tempfile.mkdtemp``: an unpredictable name, mode 0700, ``mkdir`` never follows
a symlink), and the writer writes the file inside it under the destination's own name, a
file first created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` where the writer allows it. Nothing
another user planted (a symlink at a predictable name, say) is ever opened or followed.
On commit each staged file is flushed to disk (``fsync``), re-opened and checked by the
writer's ``check`` (readable; for rasters the expected size and band count, every block
read back), then renamed over its destination (atomic on one file system) and the
destination's directory is fsync'd. On Linux the rename swaps the two (``renameat2``) and
checks what it took out against what the job checked: another run's commit that landed in
between is swapped back in and this one stops (elsewhere ``os.replace``, checked just
before). Several outputs of one job (a heatmap, its extras, the PNG and polygons) are all
written and checked before any is replaced.

Replacing several outputs takes several renames, and a process killed between them would
leave a new heatmap beside the polygons of an earlier run. So before the first rename a
journal (``commit.json``: each destination, its staged path, and the identities both had)
goes into every staged output's private directory. The next write in any of those folders
finds a dead process's journal and finishes its renames, so the outputs belong to one run
again; a destination changed since (by the user, say) is left as it is.

A rename that fails (a destination made a directory or unwritable meanwhile) undoes the ones
before it: each replaced file was kept as a hard link in its private directory, each replaced
directory lies in it (or moved aside), so every output is put back as it was.

On any error (disk full, ``EFBIG`` under a file-size limit, an unreadable result) the
destination keeps its previous content, the temporaries are removed and the error is one
line (``HsanomalyError``). ``SIGXFSZ`` kills a process that exceeds ``RLIMIT_FSIZE`` before
it can clean up, so ``file_size_signal_ignored`` (around a CLI command) turns it into ``EFBIG``.
"""

import contextlib
import contextvars
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
from pathlib import Path

from ..errors import (INTERRUPTS, NO_ROOM, HsanomalyError, OutOfResources, describe,
                      raised_by_callback, ran_out)
from .checks import (absolute, checked_outputs, path_text, read_small, special_kind, warn,
                     warn_once)
from .lock import UNLOCKABLE

TMP_SUFFIX = ".hsanomaly-tmp"
OLD = ".old"               # a directory moved aside while its replacement moves in: kept if killed
JOURNAL = "commit.json"    # in each private directory while several outputs are replaced
JOURNAL_MARK = "hsanomaly commit journal"
HOST_TAG = 8               # hex digits of the host's name hash in a private directory's name
HOLDS = "L"                # after the host's tag: the writer holds a lock on its folder (_hold)

try:
    import fcntl
except ImportError:        # Windows: journals are finished without a lock
    fcntl = None          # type: ignore[assignment]


_QUIET_NATIVE = False
_QUIET_LOCK = threading.Lock()
_quieted = {"blocks": 0, "saved": None}     # ``native_quiet`` blocks open, descriptor 2 kept


@contextlib.contextmanager
def file_size_signal_ignored():
    """In the block (a CLI command), writes beyond ``RLIMIT_FSIZE`` fail with EFBIG instead of
    killing the process, and libtiff's own messages about such failures are kept off stderr
    (the write path reports them as one line); then the process is as it was (a library
    caller's is never touched; a command run in-process, as click's CliRunner does, leaves
    nothing behind)."""
    global _QUIET_NATIVE
    if not hasattr(signal, "SIGXFSZ") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _QUIET_NATIVE = True
    try:
        yield
    finally:
        _QUIET_NATIVE = False
        if before is not None:           # None: set outside Python, which cannot put it back
            signal.signal(signal.SIGXFSZ, before)


@contextlib.contextmanager
def native_quiet():
    """Around a GDAL write or read-back: libtiff prints write failures straight to file
    descriptor 2, which the one-line error already covers. Silenced only in a CLI command
    (``file_size_signal_ignored``), and only while a block is open: descriptor 2 belongs to
    the process, so blocks in several threads share one swap, undone as the last one ends."""
    if not _QUIET_NATIVE:
        yield
        return
    import sys

    with _QUIET_LOCK:
        if not _quieted["blocks"]:
            sys.stderr.flush()
            _quieted["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _quieted["blocks"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quieted["blocks"] -= 1
            if not _quieted["blocks"]:
                os.dup2(_quieted["saved"], 2)
                os.close(_quieted["saved"])


def to_stderr(text):
    """Write ``text`` to the process's standard error, also while a ``native_quiet`` block (of
    this thread or another's GDAL write) has descriptor 2 silenced: a warning said then was
    lost."""
    import sys

    try:                    # a stream that is no descriptor (a test's capture) takes it
        own = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        own = False
    with _QUIET_LOCK:       # held while written: no block starts or ends meanwhile
        if _quieted["blocks"] and own:
            os.write(_quieted["saved"], text.encode(sys.stderr.encoding or "utf-8",
                                                    "backslashreplace"))
        else:
            sys.stderr.write(text)
            sys.stderr.flush()


def write_failure(path, err):
    """The one-line HsanomalyError for a failed write of ``path`` (``OutOfResources`` where
    it ran out of space, memory or a limit)."""
    reason = PRIVATE_FOLDER.sub("", describe(err))    # a library's text names the temporary
    kind, hint = failed_write(path, err)
    return kind(f"{destination_of(path)}: cannot write ({reason}{hint}); nothing was replaced")


LOW_SPACE = 16 * 2**20      # free bytes under which a failed write names the free space


def failed_write(path, err, written=None):
    """(the error class, a hint) for a failed write of ``path``. The hint is what a writer's
    own message may hide (SQLite says "no such table", numpy "N requested and M written"):
    little space left in the folder, or a file-size limit (with ``written``, the size of the
    file that failed, only when it reached the limit). The class is ``OutOfResources`` where
    the write ran out of room or memory, said by its error (``ran_out``), or, by a writer that
    names no cause (GDAL's "Write failed", a file cut short that reads back so), on a nearly
    full disk or at a file-size limit the file reached; ``HsanomalyError`` otherwise (a
    permission or I/O error near a full disk too)."""
    if isinstance(err, OSError) and err.errno in NO_ROOM:
        return OutOfResources, ""      # ``describe`` says so already
    hints, certain = [], False
    # a writer's error without a cause, or an I/O error (a file cut short reads back so)
    unsaid = getattr(err, "errno", None) in (None, errno.EIO)
    if written is None and isinstance(getattr(err, "filename", None), str):
        with contextlib.suppress(OSError):
            written = os.stat(err.filename).st_size      # the file that failed, as it is
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(os.path.dirname(absolute(path))).free
        if free < LOW_SPACE:
            hints.append(f"only {_size(free)} free on its disk")
            certain = unsaid
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and (written is None or written >= limit - 2**16):
            hints.append(f"a file-size limit of {_size(limit)} (ulimit -f)")
            certain = certain or (written is not None and unsaid)
    return OutOfResources if certain or ran_out(err) else HsanomalyError, \
        (f"; {' and '.join(hints)}" if hints else "")


def _size(n):
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def is_write_error(err):
    """Errors a writer raises when the disk, the file system or GDAL fails under it."""
    return isinstance(err, (OSError, MemoryError)) or type(err).__module__.startswith(
        ("rasterio", "pyogrio", "fiona", "PIL", "zipfile", "zlib", "sqlite3"))


def check_writable(path, directory=None, label=None):
    """Fail early, with one line, when ``path`` cannot be created or replaced: its folder must
    exist and be writable; with ``directory=False`` it is to be a file, so it must not be an
    existing directory. ``label``: the output's name in messages (``refuse_special``)."""
    path = Path(path)
    parent = Path(absolute(path)).parent
    try:
        mode = os.stat(parent).st_mode
    except FileNotFoundError:
        home = path.parts[:1] == ("~",)        # the shell leaves it as it is after "--png="
        raise HsanomalyError(f"{path}: output directory {parent} does not exist"
                             + (" ('~' is a shell's, which leaves it as it is after '='; give "
                                "the full path)" if home else "")) from None
    except NotADirectoryError:
        raise HsanomalyError(f"{path}: output directory {parent} cannot be: a file stands in "
                             "its path") from None
    except OSError as err:                            # a loop of links, no permission
        raise HsanomalyError(f"{path}: output directory {parent}: {describe(err)}") from None
    if not stat.S_ISDIR(mode):
        raise HsanomalyError(f"{path}: output directory {parent} is "
                             f"{special_kind(mode) or 'a file'}, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HsanomalyError(f"{path}: output directory {parent} is not writable")
    if directory is False and path.is_dir() and not path.is_symlink():
        raise HsanomalyError(f"{path}: is a directory, not a file")
    refuse_special(path, label)
    if os.path.lexists(path) and not _may_replace(path, parent):
        raise HsanomalyError(f"{path}: belongs to another user in a shared (sticky) directory, "
                             "so it cannot be replaced; choose another output")


def refuse_special(path, label=None):
    """Refuse an output that is a symbolic link, or a device, a pipe or a socket (/dev/null,
    /dev/stdout, a FIFO a reader waits on): outputs are written whole and renamed into place,
    which would put a plain file where the link or device was (as root, /dev/stdout for every
    process) and leave what it leads to as it was. ``label``: the output's name in messages."""
    named = f"{path}: {label} " if label else f"{path}: "
    if os.path.islink(path):
        raise HsanomalyError(f"{named}is a symbolic link (to {os.readlink(path)}); hsanomaly "
                             "writes an output whole and renames it into place, which would "
                             "replace the link, so remove it or name another output")
    try:
        mode = os.stat(path).st_mode           # through a link: what it leads to
    except OSError:
        return
    kind = special_kind(mode)
    if kind:
        raise HsanomalyError(f"{named}is {kind}, not a file; hsanomaly writes an output "
                             "whole and renames it into place, so name a file (and read "
                             "it from there)")


def _may_replace(path, parent):
    """False when the sticky bit of ``parent`` forbids renaming over ``path`` (another user's
    file in a shared directory such as /tmp), which would only fail after all the work."""
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    folder = os.stat(parent)
    if euid is None or not folder.st_mode & stat.S_ISVTX or (euid == 0 and _owns_any_file()):
        return True
    return euid in (os.lstat(path).st_uid, folder.st_uid)


CAP_FOWNER = 3


def _owns_any_file():
    """Whether this process may act as any file's owner (``CAP_FOWNER``: root, unless a
    container or ``setpriv`` dropped it); where the system does not say, root is taken to."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_FOWNER & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def fsync_path(path, directory=False):
    """Flush ``path`` (a file, or with ``directory`` a directory entry list) to disk. A file is
    never opened through a symlink; a directory may be one (an output folder reached through a
    link is still the folder the outputs were renamed in). Windows cannot open a folder to
    flush it, so a folder is left to the system there."""
    if directory and os.name == "nt":
        return
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory
                           else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EROFS):   # some file systems cannot sync dirs
            raise
    finally:
        os.close(fd)


def replace_durably(final, write, prefix):
    """Make a run's private file ``final`` (a tile store's tile or manifest, not an output:
    those are ``Staging``'s) with ``write(file)`` into a temporary beside it (``prefix``),
    flushed to disk and renamed over it: a reader finds the former file or the whole new one.
    The temporary is removed on any error, which is raised. Its mode is the umask's, as an
    output's (``mkstemp``'s 0600 kept a group's colleague from resuming a shared run)."""
    folder = os.path.dirname(final)
    while True:
        tmp = os.path.join(folder, f"{prefix}{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                         | getattr(os, "O_NOFOLLOW", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _create_exclusive(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    os.close(fd)


class Staging:
    """Temporary siblings for several outputs, checked and then replaced together.
    ``is_output``: what it writes is a job's output, not a job's own state (a checkpoint),
    so ``recording_writes`` lists it."""

    def __init__(self, is_output=True):
        self.is_output = is_output
        self._entries = []            # (destination, temporary path, private dir, check, is_dir)
        self._stale = []              # (file, private dir): set aside as the outputs go in
        self._sources = []            # files the outputs are drawn from, not replaced
        self._after = []
        self._finally = []

    def path(self, dst, check=None, create=True, stale=(), name=None):
        """A temporary path for file ``dst``; ``check(tmp)`` re-reads it before the replace.
        ``stale``: files beside ``dst`` that describe its earlier content (GDAL's side files,
        a world file), set aside before the outputs go in (or a GIS would lay them over the
        new, were the run killed in between) and removed once the commit stands. ``name``:
        the temporary's own name (default ``dst``'s), for a writer that takes only some
        names or short paths (SQLite's, ``staged_length``)."""
        dst = Path(dst)
        check_writable(dst, directory=False)
        private = self._private_dir(dst)
        tmp = private / (name or dst.name)
        if create:
            _create_exclusive(tmp)
        self._entries.append((dst, tmp, private, check, False))
        self._stale.extend((Path(path), private) for path in stale)
        return tmp

    def directory(self, dst, check=None):
        """An empty temporary directory that will replace directory ``dst``."""
        dst = Path(dst)
        check_writable(dst, directory=True)
        private = self._private_dir(dst)
        tmp = private / dst.name
        tmp.mkdir()
        self._entries.append((dst, tmp, private, check, True))
        return tmp

    def drawn_from(self, path):
        """The outputs are drawn from file ``path``, which is not replaced (a kept heatmap's new
        PNG): the commit is refused where it changed since the job checked it, as a replaced
        output is (another run wrote there meanwhile)."""
        self._sources.append(Path(path))

    def on_commit(self, fn):
        """Run ``fn()`` once every output is in place (e.g. remove the tile store)."""
        self._after.append(fn)

    def on_end(self, fn):
        """Run ``fn()`` when the staging ends, committed or not (e.g. release a lock)."""
        self._finally.append(fn)

    def _private_dir(self, dst):
        try:
            return private_folder(os.path.dirname(absolute(dst)), dst.name)
        except OSError as err:
            raise write_failure(dst, err) from None

    def checked_temporary(self, dst):
        """The temporary path staged for ``dst``, read back first as the commit will: an
        output drawn from a staged one (a PNG or polygons from the heatmap) meets a file cut
        short as the commit would, said of the output with what may have cut it (it was of a
        temporary, as "not a raster")."""
        for entry in self._entries:
            if entry[0] == Path(dst):
                _checked(*entry[:2], *entry[3:])
                return entry[1]
        raise KeyError(dst)

    def commit(self):
        for dst, tmp, _, check, is_dir in self._entries:
            refuse_special(dst)                # made one since the run was checked
            _checked(dst, tmp, check, is_dir)
        job_checked = checked_outputs()
        checked = job_checked if job_checked is not None else {}
        # what each destination must still hold when its rename comes (what the job checked,
        # else what is there now); not the side files removed with an earlier output: they
        # describe it, and a GIS showing it writes them (QGIS's statistics in .aux.xml)
        expected = []
        for dst, _, _, _, is_dir in self._entries:
            held = _held(dst, is_dir)
            expected.append(checked.get(absolute(dst), held))
            if expected[-1] != held:
                raise HsanomalyError(_changed_text(dst, "nothing was replaced"))
        for source in self._sources:
            held = _held(source, False)
            if checked.get(absolute(source), held) != held:
                raise HsanomalyError(_changed_text(source, "nothing was replaced"))
        for dst, tmp, _, _, is_dir in self._entries:
            _keep_access(tmp, dst, is_dir)
            if not is_dir:         # before the journal: a new link changes the file's identity
                _keep_earlier(tmp, dst)
        # one file alone needs none, unless an earlier one's side files are set aside: a kill
        # before its rename would leave it without them
        if len(self._entries) > 1 or any(entry[4] for entry in self._entries) or \
                any(os.path.lexists(path) for path, _ in self._stale):
            _write_journal([(dst, tmp, is_dir, [path for path, folder in self._stale
                                                 if folder == private])
                            for dst, tmp, private, _, is_dir in self._entries])
        undos, moved_aside, renaming = [], [], None
        try:
            undos += _set_aside(self._stale)
            for (dst, tmp, _, _, is_dir), held in zip(self._entries, expected):
                renaming = (dst, tmp, _inode(tmp), os.path.lexists(dst)) if not is_dir else None
                undos.append((dst, _replace(tmp, dst, is_dir, moved_aside, held)))
                renaming = None
                _sync_folder(dst)
        except _Changed:
            raise HsanomalyError(_changed_text(dst, _put_back(undos))) from None
        except OSError as err:
            held = (" (on Windows, a file another program has open, QGIS say, cannot be "
                    "replaced: close it there)") if os.name == "nt" and \
                isinstance(err, PermissionError) else ""
            raise HsanomalyError(f"{dst}: cannot replace it ({describe(err)}){held}; "
                                 f"{_put_back(undos)}") from None
        except BaseException:
            # interrupted (Ctrl-C): put back the renames done, the one the interrupt came in
            # the middle of too when it had happened (its staged file is at the destination;
            # what a swap took out lies at the staged path, and is swapped back in)
            if renaming is not None and _inode(renaming[0]) == renaming[2]:
                dst, tmp = renaming[0], renaming[1]
                swapped = os.path.lexists(tmp)
                undos.append((dst, functools.partial(_rename2, tmp, dst, RENAME_EXCHANGE)
                              if swapped else _file_undo(tmp, dst, renaming[3])))
            _put_back(undos)
            raise
        if job_checked is not None:    # what the job wrote is what it checked from now on
            job_checked.update((absolute(entry[0]), _held(entry[0], entry[4]))
                               for entry in self._entries)
        written = _WRITTEN.get()
        if written is not None and self.is_output:   # not what a job stages in its own folder
            written.extend(str(entry[0]) for entry in self._entries
                           if destination_of(entry[0]) == Path(entry[0]))
        with interrupts_held():      # the outputs are in place: their cleanup runs whole
            for aside in moved_aside:
                shutil.rmtree(aside, ignore_errors=True)
            for path, _ in self._stale:       # those that could not be set aside
                _remove_stale_file(path)
            for fn in self._after:
                fn()

    def discard(self):
        for _, _, private, _, _ in self._entries:
            remove_private(private)
        self._entries = []
        for fn in self._finally:
            fn()
        self._finally = []


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C, SIGTERM and SIGHUP held until the block ends, then delivered: an interrupt
    there (a commit's cleanup, once every output is in place) would leave a tile store half
    removed."""
    if threading.current_thread() is not threading.main_thread():
        yield                    # only the main thread receives signals
        return
    held = []
    # a handler set outside Python (an embedding host's: uWSGI, mod_wsgi) reads as None and
    # cannot be put back: that signal is left to it
    previous = {sig: signal.signal(sig, lambda number, _: held.append(number))
                for sig in INTERRUPTS if signal.getsignal(sig) is not None}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])


_WRITTEN = contextvars.ContextVar("hsanomaly_written", default=None)


@contextlib.contextmanager
def recording_writes():
    """Yield a list of the outputs put in place by every commit in this block (as a command
    sees them: a run interrupted after its commit has its outputs, complete)."""
    written = []
    token = _WRITTEN.set(written)
    try:
        yield written
    finally:
        _WRITTEN.reset(token)


@contextlib.contextmanager
def staged(is_output=True):
    """``with staged() as stage: tmp = stage.path(dst, check)`` ... every output replaced at
    the end if the block and every check succeed; otherwise nothing is. ``is_output``: as
    ``Staging`` takes it."""
    stage = Staging(is_output)
    try:
        yield stage
        stage.commit()
    except HsanomalyError:
        raise
    except Exception as err:
        # the output being written failed (the last staged), unless the caller's callback
        # raised it (a client gone: BrokenPipeError), which reaches the caller as it is
        if is_write_error(err) and stage._entries and not raised_by_callback(err):
            raise write_failure(stage._entries[-1][0], err) from None
        raise
    finally:
        stage.discard()


@contextlib.contextmanager
def drawing_folder(folder):
    """A private folder inside ``folder`` to draw many outputs into before they are staged
    (on the same file system, so they move into the stage by rename). Named as the stage's
    own are, so what a killed run left is removed by the next write in ``folder``."""
    path = private_folder(folder, "drawn")
    try:
        yield path
    finally:
        remove_private(path)


@contextlib.contextmanager
def atomic_path(path, check=None, create=True, is_output=True):
    """Yield a temporary path for ``path``; it replaces ``path`` only if the block and ``check``
    succeed. ``create=False`` leaves the file for the writer to create (e.g. GeoPackages);
    ``is_output``: as ``Staging`` takes it."""
    with staged(is_output) as stage:
        yield stage.path(path, check=check or non_empty, create=create)


@contextlib.contextmanager
def staged_into(stage=None):
    """The staging a writer writes into: the caller's ``stage`` (its owner commits it, with
    its other outputs), or else one of the writer's own, committed when the block ends."""
    if stage is not None:
        yield stage
        return
    with staged() as own:
        yield own


@contextlib.contextmanager
def atomic_directory(path, check=None, on_commit=None):
    """Yield an empty temporary directory that replaces directory ``path`` on success, then
    calls ``on_commit`` (as ``Staging.on_commit``: whole, whatever interrupt comes)."""
    with staged() as stage:
        tmp = stage.directory(path, check=check)
        if on_commit is not None:
            stage.on_commit(on_commit)
        yield tmp


# a private folder's name within a path in a text (a library's message), to leave out of it
PRIVATE_FOLDER = re.compile(r"[/\\]\.[^/\\]*?" + re.escape(TMP_SUFFIX) + r"(?=[/\\])")


def destination_of(path):
    """The place a staged temporary stands for, what messages name: ``path`` without its
    private folders (a quick model is staged in detect's, and its export and checkpoints in
    the training's own inside it)."""
    return Path(*(part for part in Path(path).parts if not part.endswith(TMP_SUFFIX)))


def private_folder(folder, name):
    """A new private folder in ``folder`` (``_new_private``), once the temporaries dead
    writers left there are gone; ``remove_private`` removes it."""
    remove_stale(folder)
    return _new_private(folder, name, TMP_SUFFIX)


def _new_private(folder, name, suffix):
    """A new folder ``.<name>.<pid>-<host>.<random><suffix>`` in ``folder``. ``name`` (the
    output's, for whoever looks) is cut short where the folder's name would pass the file
    system's limit: an output's name the system takes must not fail at the commit, after
    the work."""
    writer = _this_writer()
    cut = _cut_name(folder, name, writer, suffix)
    path = Path(tempfile.mkdtemp(prefix=f".{cut}.{writer}.", suffix=suffix, dir=folder))
    if suffix == TMP_SUFFIX:       # not a folder moved aside: that one is left for the user
        _hold(path)
    return path


def _cut_name(folder, name, writer, suffix):
    """``name`` as a private folder of ``writer`` in ``folder`` gives it: cut short where the
    folder's name would pass the file system's limit (mkdtemp adds 8 characters), without
    the characters a writer may read as more than a name (``NOT_IN_PRIVATE_NAMES``)."""
    room = name_max(folder) - 1 - len(os.fsencode(f".{writer}.")) - 8 - len(suffix)
    name = NOT_IN_PRIVATE_NAMES.sub("_", name)
    return os.fsencode(name)[:max(room, 1)].decode(errors="ignore") or "o"


# GDAL's GeoPackage driver, through pyogrio, reads "a;b.gpkg" as "a"; control characters
NOT_IN_PRIVATE_NAMES = re.compile(r"[;\x00-\x1f\x7f]")


def staged_length(dst, name):
    """The bytes of the path a stage gives temporary ``name`` for output ``dst``
    (``Staging.path``): the output's folder, its private folder and the name."""
    folder, writer = os.path.dirname(absolute(dst)), _this_writer()
    cut = _cut_name(folder, Path(dst).name, writer, TMP_SUFFIX)
    private = len(os.fsencode(f".{cut}.{writer}.")) + 8 + len(TMP_SUFFIX)
    return len(os.fsencode(folder)) + 1 + private + 1 + len(os.fsencode(name))


def name_max(folder):
    """The longest name, in bytes, the file system of ``folder`` takes (255 where unknown)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def non_empty(path):
    with open(path, "rb") as f:
        if not f.read(1):
            raise HsanomalyError(f"{path}: the written file is empty")


def _fsync_tree(root):
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder, directory=True)


def remove_stale(folder):
    """Remove this user's temporaries in ``folder`` left by a process that no longer runs (one
    killed while writing), whatever output they were for (``_abandoned``): those of a live
    process, or of another host's (a shared folder), are never touched. A directory moved
    aside during a replace is left for the user, as it may be the only copy."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")
                   and e.name.endswith(TMP_SUFFIX) and not e.name.endswith(OLD + TMP_SUFFIX)
                   and e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in entries:
        writer = _writer(entry.name)
        try:
            if writer is None or entry.stat(follow_symlinks=False).st_uid != _euid():
                continue
        except FileNotFoundError:      # removed with its journal's other directories
            continue
        if _abandoned(entry.path, writer):
            _finish_journal(Path(entry.path), writer)
            shutil.rmtree(entry.path, ignore_errors=True)


def live_writer(dst):
    """The private folder in which a live process (this one too) writes ``dst`` now, or None:
    another run's quick model in training, say, which has no tile store to lock yet."""
    folder, name = os.path.dirname(absolute(dst)), Path(dst).name
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        writer = _writer(entry.name)
        if writer is None or entry.name.endswith(OLD + TMP_SUFFIX) or \
                entry.name[1:-len(TMP_SUFFIX)].rsplit(".", 2)[0] != \
                _cut_name(folder, name, writer, TMP_SUFFIX):
            continue
        # held: a lock tells a live writer on any host; a folder left by a run on another
        # host that died is no hindrance (its pid tells nothing here), nor one where locks
        # cannot tell (the commit's check still keeps the two runs apart)
        if entry.is_dir(follow_symlinks=False) and _held_by_another(entry.path):
            return Path(entry.path)
    return None


def _host():
    """A short tag of this host's name: a process id means something on its own host only."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:HOST_TAG]


def _this_writer():
    return f"{os.getpid()}-{_host()}{HOLDS}"


def _euid():
    return os.geteuid() if hasattr(os, "geteuid") else None     # Windows: no user ids here


# a private folder's writer holds a lock on it while it lives (``_hold``): path -> descriptor
_HELD: dict = {}
_HELD_LOCK = threading.Lock()
NEWBORN = 60.0             # seconds after which a private folder nobody holds is a dead writer's


def _hold(path):
    """Hold a shared ``flock`` on private folder ``path`` until ``remove_private`` removes it:
    the kernel drops it when the process ends, however it ends."""
    fd = _open_folder(path)
    if fd is None:
        return
    try:          # waits out another run's look (``_held_by_another``: an instant's lock)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as err:
        os.close(fd)
        if err.errno in UNLOCKABLE:     # a file system without locks: the writer's pid tells
            return
        raise
    with _HELD_LOCK:
        _HELD[absolute(path)] = fd


@contextlib.contextmanager
def private_temporary(name):
    """A private folder of TMPDIR for a job's working files (the models a benchmark trains),
    removed when the job ends; one a killed job left is removed when the next is made
    (``private_folder``), where tempfile's would stay for good."""
    folder = private_folder(tempfile.gettempdir(), name)
    try:
        yield str(folder)
    finally:
        remove_private(folder)


def remove_private(path):
    """Remove private folder ``path`` (``private_folder``'s) and let go of its lock."""
    shutil.rmtree(path, ignore_errors=True)
    with _HELD_LOCK:
        fd = _HELD.pop(absolute(path), None)
    if fd is not None:
        os.close(fd)


def _abandoned(path, writer):
    """Whether private folder ``path`` of ``writer`` (``<pid>-<host>``) was left by a process
    that has ended. A writer that holds a lock on its folder (``HOLDS`` in its name) lives
    while the lock is held: a pid tells less, as a writer in another pid namespace of this
    host (a container) looked dead to this one, and a dead one's pid may be another
    process's now. A folder made in the last ``NEWBORN`` seconds (its writer may not hold it
    yet), one of a writer before the locks, or one where locks cannot tell goes by the pid;
    another host's and this process's own are kept."""
    import time

    _, _, host = writer.partition("-")
    if (host and host.rstrip(HOLDS) != _host()) or writer == _this_writer():
        return False
    held = _held_by_another(path) if host.endswith(HOLDS) else None
    if held:
        return False
    try:
        young = time.time() - os.stat(path).st_mtime < NEWBORN
    except OSError:
        return False
    return _has_ended(writer) if held is None or young else True


def _open_folder(path):
    """A descriptor of folder ``path`` to ``flock``, or None: no such locks on this system, or
    the folder cannot be opened."""
    if fcntl is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _held_by_another(path):
    """Whether a process (this one too, for another of its stagings) holds ``_hold``'s lock on
    ``path``; None where locks cannot tell."""
    fd = _open_folder(path)
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:                # a file system without locks
        return None
    finally:
        os.close(fd)               # a lock taken here goes with it


def _has_ended(writer):
    """Whether the process that wrote under ``writer`` (``<pid>-<host>``; names before hosts
    were recorded hold the pid alone) has ended; another host's process cannot be judged, nor
    any on Windows (where signal 0 would interrupt the process, not probe it)."""
    pid, _, host = writer.partition("-")
    if (host and host.rstrip(HOLDS) != _host()) or os.name == "nt":
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        pass
    return False


def _inode(path):
    """(device, inode) of ``path``, or None where nothing is there: the staged file or folder
    itself, wherever a rename has moved it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


_FINISHED = object()     # in a job's checked outputs: the folders whose killed runs it finished


def note_checked(path, is_dir=False):
    """Keep what output ``path`` holds as its job checks it (``checks.checked_outputs``; the
    first check counts): a commit refuses to replace it if that changes meanwhile. A killed
    run's journal in its folder is finished first: at the commit, its renames would look like
    another program's change to what the job checked."""
    checked = checked_outputs()
    key = absolute(path)
    if checked is None or key in checked:
        return
    folder, finished = os.path.dirname(key), checked.setdefault(_FINISHED, set())
    if folder not in finished:
        remove_stale(folder)
        finished.add(folder)
    checked[key] = _held(path, is_dir)


def _held(path, is_dir):
    """What a commit compares of an output with what it held when checked: a file's place,
    size and modification time (not its change time, which a chmod, a backup's hard link or
    an extended attribute moves too); a folder's place alone (its times move with every
    entry written into it)."""
    identity = _identity(path, is_dir)
    if identity is None:
        return None
    return identity[:2] if is_dir else identity[:2] + identity[3:]


def _identity(path, is_dir=False):
    """What tells a path's content apart: its inode and change time (a deleted inode reused by
    a new file or folder has another), and a file's size and modification time; None where
    nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    found = [st.st_dev, st.st_ino, st.st_ctime_ns]
    return found if is_dir else found + [st.st_size, st.st_mtime_ns]


class _Changed(Exception):
    """A destination held something else than the commit expected when its rename came."""


_ANY = object()


def _changed_text(dst, outcome):
    return (f"{dst}: changed since this run checked its outputs (another run or program wrote "
            f"there meanwhile); {outcome}: look at what is there, then rerun")


def _replace(tmp, dst, is_dir, moved_aside=None, expected=_ANY):
    """Put staged ``tmp`` in ``dst``'s place (the caller flushes the folder). Returns a
    function that puts back what ``dst`` was, so a commit whose later rename fails leaves every
    output as it was (None where that cannot be done: a file system without hard links). An
    old directory moved aside is added to ``moved_aside``, for the caller to remove once the
    commit stands (without the list it is removed at once).

    ``expected``: what ``dst`` must hold for the rename to stand (``_held``; None: nothing).
    Checking it before the rename would leave a moment for another run's commit to land in
    between, and both runs would succeed with outputs of the two mixed. So where the system
    can (``_swap_checked``), what the rename took out of ``dst`` is checked after it, and a
    rename that met something else is undone (``_Changed``)."""
    if expected is not _ANY and _swap_checked(tmp, dst, is_dir, expected):
        if expected is None:
            return lambda: os.replace(dst, tmp)
        return lambda: _rename2(tmp, dst, RENAME_EXCHANGE) or _refuse_swap(dst)
    return _replace_dir(tmp, dst, moved_aside) if is_dir else _replace_file(tmp, dst)


def _swap_checked(tmp, dst, is_dir, expected):
    """Move ``tmp`` to ``dst`` in one atomic step that takes out what ``dst`` held, to ``tmp``'s
    place (Linux ``renameat2``: ``RENAME_EXCHANGE``, or ``RENAME_NOREPLACE`` where nothing is
    expected), and check that against ``expected``; a mismatch is swapped back and raises
    ``_Changed``. False where the system or file system cannot, with nothing moved."""
    try:
        if expected is None:
            return _rename2(tmp, dst, RENAME_NOREPLACE)
        if not _rename2(tmp, dst, RENAME_EXCHANGE):
            return False
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOENT):     # made, or removed, meanwhile
            raise _Changed(dst) from None
        raise
    taken_out = os.lstat(tmp).st_mode
    if stat.S_ISDIR(taken_out) != is_dir:          # a file swapped for a folder, or back
        _rename2(tmp, dst, RENAME_EXCHANGE)
        raise OSError(errno.ENOTDIR if is_dir else errno.EISDIR,
                      os.strerror(errno.ENOTDIR if is_dir else errno.EISDIR), str(dst))
    if _held(tmp, is_dir) != expected:
        _rename2(tmp, dst, RENAME_EXCHANGE)
        raise _Changed(dst)
    return True


def _sync_folder(dst):
    """Flush the folder of ``dst`` after a rename in it. The rename has happened, so a failure
    to flush is a warning, not a failed replace; said once for the folder in a job (a folder
    one may write but not read, a drop box, fails for every output)."""
    folder = os.path.dirname(absolute(dst))
    try:
        fsync_path(folder, directory=True)
    except OSError as err:
        warn_once(f"{folder}: cannot flush the folder to disk ({describe(err)}); the outputs "
                  "renamed into it are in place, but a system crash now could undo that")


def _kept(tmp):
    """Where the earlier file of staged ``tmp``'s destination is kept during the commit."""
    return Path(tmp).parent / (".was." + Path(tmp).name)


def _keep_access(tmp, dst, is_dir):
    """Give staged ``tmp`` the permission bits and group of the earlier output at ``dst``, as
    editors and rsync do: one the user made private (or gave a group) stays so when a rerun
    replaces it; in a folder, each file those of the earlier file of its name (a folder the
    user closed keeps its files from others whatever their own bits). A new output has the
    umask's. The group only where the user may set it."""
    pairs = [(Path(tmp), Path(dst))]
    if is_dir:
        pairs += [(path, Path(dst) / path.relative_to(tmp)) for path in Path(tmp).rglob("*")
                  if not path.is_symlink()]
    for new, earlier in pairs:
        try:
            found = os.lstat(earlier)
        except OSError:
            continue
        if stat.S_ISDIR(found.st_mode) != new.is_dir() or stat.S_ISLNK(found.st_mode):
            continue
        with contextlib.suppress(OSError, AttributeError):     # Windows has no chown
            os.chown(new, -1, found.st_gid)
        with contextlib.suppress(OSError):
            os.chmod(new, stat.S_IMODE(found.st_mode))


def _keep_earlier(tmp, dst):
    """Keep the file at ``dst`` as a hard link in ``tmp``'s private directory (removed with it),
    to put it back if the commit fails; nothing where it cannot be linked."""
    with contextlib.suppress(OSError):
        if os.path.lexists(dst):
            os.link(dst, _kept(tmp), follow_symlinks=False)


def _replace_file(tmp, dst):
    """``os.replace``, returning its undo (``_file_undo``)."""
    existed = os.path.lexists(dst)
    os.replace(tmp, dst)
    return _file_undo(tmp, dst, existed)


def _file_undo(tmp, dst, existed):
    """What puts back ``dst`` after staged ``tmp`` replaced it: the earlier file from
    ``_keep_earlier``'s link, or the new one removed where there was none; None if neither."""
    kept = _kept(tmp)
    if not existed:
        return lambda: os.unlink(dst)
    return (lambda: os.replace(kept, dst)) if os.path.lexists(kept) else None


def _put_back(undos):
    """Undo the renames in ``undos`` ((destination, undo) pairs, latest last); says what the
    outputs are now."""
    stuck = []
    for dst, undo in reversed(undos):
        try:
            if undo is None:
                raise OSError(errno.EPERM, "no copy of the earlier one was kept")
            undo()
        except OSError as err:
            stuck.append(f"{dst} ({describe(err)})")
            continue
        with contextlib.suppress(Exception):   # a flush warning made an error stops no undo
            _sync_folder(dst)
    if not stuck:
        return "nothing was replaced"
    return f"these were replaced and could not be put back: {', '.join(reversed(stuck))}"


def _write_journal(entries):
    """Record the renames about to happen in every private directory, on disk before the
    first, with the earlier outputs' side files (``entries``: (dst, tmp, is_dir, side files)),
    which a completion removes. The first output's journal is written last: it marks the
    commit, and without it the others are ignored (a run killed while writing them had
    replaced nothing)."""
    record = json.dumps({"mark": JOURNAL_MARK, "entries": [
        {"dst": absolute(dst), "tmp": absolute(tmp), "dir": is_dir,
         "tmp_was": _inode(tmp), "dst_was": _identity(dst, is_dir),
         "stale": [[absolute(path), _identity(path)] for path in stale if os.path.lexists(path)]}
        for dst, tmp, is_dir, stale in entries]})
    for _, tmp, _, _ in entries[1:] + entries[:1]:
        journal = _journal_path(tmp)
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
        try:
            os.write(fd, record.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_path(journal.parent, directory=True)


def _journal_path(tmp):
    """The journal beside staged ``tmp``, under a name that is not the output's own."""
    tmp = Path(tmp)
    return tmp.parent / (JOURNAL if tmp.name != JOURNAL else "." + JOURNAL)


def _writer(name):
    """The writer in a private directory's name (``.<output>.<pid>-<host>.<random><suffix>``),
    or None where the name is not one."""
    parts = name[:-len(TMP_SUFFIX)].split(".") if name.endswith(TMP_SUFFIX) else []
    writer = parts[-2] if len(parts) >= 4 and name.startswith(".") else ""
    pid, dash, host = writer.partition("-")
    host = host[:-len(HOLDS)] if host.endswith(HOLDS) else host
    if pid.isdigit() and (not dash or (len(host) == HOST_TAG and host.isalnum())):
        return writer
    return None


def _read_journal(private, writer):
    """The entries of the journal in private directory ``private`` of dead ``writer``,
    or None: no journal (an output may be named like one: the mark tells), a damaged one, or
    one naming places that are not that process's private directories."""
    for name in (JOURNAL, "." + JOURNAL):
        path = private / name
        if not path.is_file() or path.is_symlink():
            continue
        try:
            record = json.loads(read_small(path))
        except (OSError, ValueError, RecursionError):
            record = None
        if not isinstance(record, dict) or record.get("mark") != JOURNAL_MARK:
            continue            # an output named like it (the earlier one, swapped out)
        try:
            entries = record["entries"]
            if not entries:
                continue
            for entry in entries:
                folder = Path(entry["tmp"]).parent
                if (_writer(folder.name) != writer or not isinstance(entry["dir"], bool)
                        or not {"dst", "tmp_was", "dst_was"} <= set(entry)):
                    return None
            return entries
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    return None


def _finish_journal(private, writer):
    """Finish the renames a dead process recorded in the journal in directory ``private`` (if
    there is one) and remove its private directories. Taken under a lock on the first
    output's journal, the commit's mark, so two processes never swap one directory twice."""
    entries = _read_journal(private, writer)
    if entries is None:
        return
    first = _journal_path(entries[0]["tmp"])
    try:
        fd = os.open(first, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return          # never marked (nothing was replaced), or finished by another process
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if not os.path.lexists(first):
            return                 # another process finished it while this one waited
        staged = [_inode(e["tmp"]) == e["tmp_was"] for e in entries]
        placed = [_inode(e["dst"]) == e["tmp_was"] for e in entries]
        lost = [e["dst"] for e, s, d in zip(entries, staged, placed) if not (s or d)]
        done, left, failed = [], [], []
        for entry, waiting in zip(entries, staged):
            if lost or not waiting:
                continue
            dst, is_dir = entry["dst"], entry["dir"]
            if _identity(dst, is_dir) not in (entry["dst_was"], None):
                left.append(dst)   # changed since: the user's now
                continue
            try:
                _replace(entry["tmp"], dst, is_dir)
                _sync_folder(dst)
                done.append(dst)
            except OSError as err:
                failed.append(f"{dst} ({describe(err)})")
        for entry, was_placed in zip(entries, placed):     # the earlier output's side files,
            if was_placed or entry["dst"] in done:         # unless someone's changed them since
                for path, identity in entry.get("stale") or []:
                    if _identity(path) == identity:
                        _remove_stale_file(path)
        if done:
            pid = writer.partition("-")[0]
            warn(f"{', '.join(done)}: completed, as the run that wrote them (process {pid}) was "
                 "stopped while replacing its outputs")
        if left:
            warn(f"{', '.join(left)}: changed since a run that was stopped while replacing its "
                 "outputs, so its own were not put in their place")
        if failed:
            warn(f"{', '.join(failed)}: a run that was stopped while replacing its outputs "
                 "could not have its own put in their place, so the earlier stay there, and "
                 "the outputs beside them may be that run's")
        if lost:
            warn(f"{', '.join(lost)}: the staged output of a run that was stopped while "
                 "replacing its outputs is gone, so they could not be completed; the outputs "
                 "beside it may come from two runs")
        for entry in entries:
            shutil.rmtree(Path(entry["tmp"]).parent, ignore_errors=True)
    finally:
        os.close(fd)


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2      # renameat2's flags (linux/fs.h)


@functools.lru_cache(maxsize=1)
def _renameat2():
    """libc's ``renameat2``, or None: Linux only (glibc 2.28, musl 1.1.24 and later)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None


def _rename2(a, b, flag):
    """Rename ``a`` to ``b`` with Linux ``renameat2``'s ``flag``: ``RENAME_EXCHANGE`` swaps the
    two paths in one atomic step, ``RENAME_NOREPLACE`` fails with EEXIST where ``b`` exists.
    False where the system or file system cannot."""
    import ctypes

    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), flag) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_dir(tmp, dst, moved_aside=None):
    """Move directory ``tmp`` to ``dst`` and return the undo. An existing ``dst`` is swapped
    with ``tmp`` in one atomic step where the system can (the old one then lies in ``tmp``,
    removed with its private folder); elsewhere it is moved aside first and restored if the
    move fails."""
    if not os.path.lexists(dst):
        os.replace(tmp, dst)
        return lambda: os.replace(dst, tmp)
    if _rename2(tmp, dst, RENAME_EXCHANGE):
        return lambda: _rename2(tmp, dst, RENAME_EXCHANGE) or _refuse_swap(dst)
    aside = _new_private(os.path.dirname(absolute(dst)), Path(dst).name, OLD + TMP_SUFFIX)
    try:
        os.replace(dst, aside)       # rename(2) onto the empty directory just made
    except OSError:                  # Windows renames no folder over another, empty or not
        os.rmdir(aside)
        os.replace(dst, aside)
    try:
        os.replace(tmp, dst)
    except OSError:
        os.replace(aside, dst)
        raise
    if moved_aside is None:
        shutil.rmtree(aside, ignore_errors=True)
        return None
    moved_aside.append(aside)

    def undo():
        os.replace(dst, tmp)
        os.replace(aside, dst)
    return undo


def _refuse_swap(dst):
    raise OSError(errno.EOPNOTSUPP, "the system cannot swap it back", str(dst))


def _set_aside(stale):
    """Move the ``stale`` files ((file, private dir) pairs) into their private folders, which
    go with the staging; the undos that put them back. One that cannot move stays, for the
    commit to remove once it stands."""
    undos = []
    for path, private in stale:
        aside = private / f"earlier-{path.name}"
        with contextlib.suppress(OSError):
            if os.path.lexists(path) and not os.path.isdir(path):
                os.replace(path, aside)
                undos.append((path, functools.partial(os.replace, aside, path)))
    return undos


def _checked(dst, tmp, check, is_dir):
    """Temporary ``tmp`` of output ``dst`` made durable and read back (``check``), a failure
    said of the output, with what may have caused it (``failed_write``)."""
    try:
        if not tmp.exists() or tmp.is_symlink():
            raise HsanomalyError(f"{dst}: the writer produced no output")
        _fsync_tree(tmp) if is_dir else fsync_path(tmp)
        if check is not None:
            with native_quiet():
                check(tmp)
    except HsanomalyError as err:      # said of the output, not of its temporary
        text = str(err).replace(str(tmp), str(dst))
        kind, hint = failed_write(dst, err, tmp.stat().st_size if tmp.is_file() else None)
        if isinstance(err, OutOfResources):
            kind = OutOfResources
        raise kind(f"{text}{hint}; nothing was replaced") from None
    except Exception as err:
        if is_write_error(err):
            guess = "" if isinstance(err, OSError) and err.errno in (
                errno.EMFILE, errno.ENFILE) else "; disk full or a file-size limit?"
            raise failed_write(dst, err)[0](
                f"{dst}: the written file does not read back whole ({describe(err)}{guess}); "
                "nothing was replaced") from None
        raise


def _remove_stale_file(path):
    """Remove ``path`` if it is a file (or a link), warning where it cannot be removed."""
    try:
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
    except OSError as err:
        warn(f"{path}: cannot remove it ({describe(err)}); it describes the earlier output, "
             "so remove it by hand")


def gdal_side_files(path):
    """The files GDAL reads beside raster ``path`` and lays over it: its PAM ``.aux.xml``
    (georeferencing, tags, statistics), external overviews ``.ovr``, mask ``.msk`` and the
    world files named after its format (heat.tfw, heat.tifw: they place a heatmap that has no
    geotransform of its own, as one of a GCP or RPC input has not; not heat.wld, which any
    format's picture of that name may own). An earlier raster's would describe a new one
    written in its place."""
    path = path_text(path)
    ext = Path(path).suffix[1:]
    worlds = dict.fromkeys(case(name) for name in ([f"{ext[:1]}{ext[-1:]}w", f"{ext}w"]
                                                   if ext else [])
                           for case in (str.lower, str.upper))
    return [Path(f"{path}{suffix}") for suffix in (".aux.xml", ".ovr", ".msk")] + \
        [Path(path).with_suffix(f".{world}") for world in worlds]


def stage_raster(stage, dst, width, height, count):
    """``stage.path`` for a GeoTIFF: checked with ``raster_check``, the earlier raster's GDAL
    side files removed once it is replaced."""
    return stage.path(dst, check=raster_check(width, height, count), stale=gdal_side_files(dst))


def raster_check(width, height, count):
    """A ``check`` that re-opens a written raster, compares its size and band count, and
    reads every block back (a truncated or corrupt file fails here, not in the user's hands)."""
    def check(path):
        from .gdal import open_raster

        with open_raster(path) as ds:
            if (ds.width, ds.height, ds.count) != (width, height, count):
                raise HsanomalyError(f"{path}: written as {ds.width}x{ds.height}x{ds.count}, "
                                     f"expected {width}x{height}x{count}")
        read_back(path)
    return check


def read_back(path):
    """Read every block of raster ``path``: a truncated or corrupt file fails here, in one
    line (``gdal.read_checked``), not in the user's hands."""
    from .gdal import open_raster, read_checked

    with open_raster(path) as ds:
        for _, window in ds.block_windows(1):
            read_checked(ds, window=window)
