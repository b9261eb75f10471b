"""Finished tiles on disk, one file each: what makes --resume and distributed workers safe.

A run's tiles live in ``<output>.partial/`` next to the output. ``manifest.json`` records the
fingerprint of the input (``hsanomaly.io.fingerprint``: its bytes, or a sample of them for
large files) and the configuration (score and its parameters, among them the model bundle's
digest, outputs, tile size); a resume after either changed is refused. Each tile is a
compressed ``.npz`` written to an exclusively created temporary file, fsync'd and renamed, so
a tile file is either whole or absent; it carries the sha256 of its arrays together with the
run's fingerprint and its index, so a tile that is corrupt, of the wrong shape, or from
another run is found and scored again, never used. A tile written twice (a retried task) is
simply replaced by identical content. The run holds an exclusive lock on the store's folder
(``flock``, released when the process ends however it ends), so a second run on the same output
is refused instead of removing or mixing the first one's tiles (``hsanomaly.io.lock``).
"""

import contextlib
import contextvars
import hashlib
import json
import math
import os
import re
import shutil
import weakref
import zipfile
from pathlib import Path

import numpy as np

from ..errors import NO_ROOM, HsanomalyError, OutOfResources, describe, ran_out
from ..io.atomic import (fsync_path, interrupts_held, private_folder, remove_private,
                         replace_durably)
from ..io.checks import absolute, path_text, read_npz, read_small, warn
from ..io.fingerprint import digest
from ..io.lock import busy, lock_folder
from ..spelling import counted, spell

FORMAT = "hsanomaly-tiles"
# 3: per-pixel thesis starts, rings scaled to their size: a store or heatmap of 2 differs.
# 4: the purge's fit windows (3 was not raised for them: builds of 3 differ).
# Raise it whenever a score's results change for the same settings (run_fingerprint);
# tests/test_score_pins.py fails until it is.
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
STORE_SUFFIX = ".partial"        # a run's tile store: beside its heatmap, ``<dst>.partial/``
TILE_FILES = "tile_*.npz"       # a finished tile each (``TileStore._file``)
CHECKSUM = "_sha256"
OWN_FILES = re.compile(r"^(manifest\.json|\.?tile_\d+.*|\.manifest.*)$")


# How a message tells the user to resume: ``detect_many`` resumes by itself on a rerun (it has
# no --resume), so it words this for its batch while it runs (``batch_resumes``).
_RESUME_HINT = contextvars.ContextVar("resume_hint", default=None)


def resume_hint():
    return _RESUME_HINT.get() or f"rerun with {spell('resume', True)}"


def tiles_kept(hint=None, room=False, store=None):
    """The one wording of what a failed run keeps for its resume; ``hint``: the run's own
    ``resume_hint`` (a store on a Dask worker carries it), ``room``: once disk space is made;
    ``store``: the folder they are kept in, said with how to discard them."""
    where = "" if store is None else f" in {store} (delete it to discard them)"
    return f"the finished tiles are kept{where}: {'once there is room, ' if room else ''}" \
           f"{hint or resume_hint()}"


@contextlib.contextmanager
def batch_resumes():
    token = _RESUME_HINT.set("rerun the batch, which resumes it")
    try:
        yield
    finally:
        _RESUME_HINT.reset(token)


def store_path(dst):
    """Where the tiles of the run writing ``dst`` are kept: ``<dst>.partial/``."""
    return Path(absolute(path_text(dst) + STORE_SUFFIX))


def run_fingerprint(input_fingerprint, config):
    """The fingerprint of a run: its input, its configuration (plain JSON) and the store's
    format, which changes with the scores' results: a heatmap of an earlier format is not
    current (``detect-many`` scores it again, rather than skipping it)."""
    return digest({"input": input_fingerprint, "config": json.loads(json.dumps(config)),
                   "format_version": FORMAT_VERSION})


def is_tile_store(path):
    """True for a directory holding nothing but entries named as a tile store's own files
    (links among them are removed or ignored, never followed)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and all(
        OWN_FILES.match(p.name) and (p.is_symlink() or p.is_file()) for p in path.iterdir())


SUMMARY_BYTES = 2**20  # what a tile's summaries and checksum unpack to: far less than this


def tile_bytes(expected):
    """The most a tile of ``expected`` ({name: shape}) outputs unpacks to: its outputs at 8
    bytes a value, and its summaries."""
    return SUMMARY_BYTES + sum(8 * math.prod(shape) for shape in expected.values())


TILE_COMPRESSION = 1   # zlib level: float scores barely compress further at higher levels


def write_npz(file, arrays):
    """``np.savez_compressed`` at TILE_COMPRESSION, readable by ``np.load`` as any .npz."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=TILE_COMPRESSION) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def read_manifest(path):
    """The manifest of the tile store at ``path`` (a dict), or {} where there is none to read;
    one the user may not read is refused as such (it is no sign of a damaged store)."""
    try:
        manifest = json.loads(read_small(Path(path) / MANIFEST))
    except PermissionError as err:
        raise HsanomalyError(f"{path}: cannot read the interrupted run's manifest "
                             f"({describe(err)}); its owner may let the group read it") from None
    except (OSError, ValueError, RecursionError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _differences(before, now, prefix=""):
    """What changed between two run configurations, one "name: before -> now" each, nested
    names joined by dots (scorer.c2, outputs.recon)."""
    found = []
    for key in sorted(set(before) | set(now), key=str):
        a, b = before.get(key, "none"), now.get(key, "none")
        if isinstance(a, dict) and isinstance(b, dict) and a.get("name") != b.get("name"):
            found.append(f"{prefix}{key}: {a.get('name')} -> {b.get('name')}")   # another score
        elif isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a} -> {b}")
    return found


def _shown(manifest):
    """A manifest's configuration as a message shows it: an exclusion mask by its name (and
    the digest of its pixels, which is what the run depends on)."""
    config = dict(manifest.get("config") or {})
    if "excluded" in config:
        config["mask"] = f"{manifest.get('mask', '?')} ({config.pop('excluded')[:8]})"
    return config


def model_free(config):
    """A run configuration less what its model decides (the model's digest, the extras' band
    counts): what a resume can compare before its quick model is trained (trained again on
    the same input with the same settings, the model is the same)."""
    scorer = {k: v for k, v in (config.get("scorer") or {}).items() if k != "model"}
    return {**config, "scorer": scorer, "outputs": sorted(config.get("outputs") or {})}


def check_resumable(path, manifest, previous=None, model=True):
    """Refuse to resume the interrupted run in the store at ``path`` (its manifest
    ``previous``, read if not given) with ``manifest``'s input and configuration: another
    hsanomaly version's store, another input, other settings (``model=False``: the model's
    own aside, as ``model_free``)."""
    previous = read_manifest(path) if previous is None else previous
    rerun = f"; rerun without {spell('resume', True)} to start over"
    if previous.get("format") != FORMAT or previous.get("format_version") != FORMAT_VERSION \
            or not isinstance(previous.get("config"), dict):
        raise HsanomalyError(f"{path}: the interrupted run here was written by another "
                             f"hsanomaly version or is damaged{rerun}")
    if previous.get("input") != manifest["input"]:
        raise HsanomalyError(f"{path}: the input changed since the interrupted run (its "
                             f"fingerprint differs){rerun}")
    before, now = previous.get("config"), manifest["config"]
    if not model and isinstance(before, dict):
        before, now = model_free(before), model_free(now)
    if before != now:
        shown = _shown({**previous, "config": before}), _shown({**manifest, "config": now})
        raise HsanomalyError(f"{path}: an interrupted run with other settings is "
                             f"here ({'; '.join(_differences(*shown))}){rerun}")


def remove_finished(path, fingerprint):
    """Remove the tile store at ``path`` if a finished heatmap was assembled from it (the run
    ``fingerprint`` its heatmap records): what a run killed between its commit's renames leaves
    once a later write has completed that commit. Another run's store, or one in use, stays."""
    path = Path(path)
    if not (is_tile_store(path) and read_manifest(path).get("fingerprint") == fingerprint):
        return False
    try:
        held = lock_folder(path)
    except HsanomalyError:          # another run is writing it now
        return False
    try:                            # looked at again under the lock: it may have been replaced
        if read_manifest(path).get("fingerprint") != fingerprint:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        if held is not None:
            os.close(held)


def removed(store):
    """The one line for a tile store taken away during its run."""
    return HsanomalyError(f"{store}: the tile store was removed during the run (by another "
                          "process?); rerun")


class TileStore:
    def __init__(self, path, manifest, resume=False, output=None):
        """``manifest``: {"input": fingerprint, "config": plain JSON}. With ``resume`` an
        existing store of the same input and configuration is continued. ``output``: the
        heatmap as the caller named it (by default, the store's path less its suffix)."""
        self.path = Path(path)
        self.resume_hint = resume_hint()     # kept: a Dask worker writes tiles outside the job
        manifest = json.loads(json.dumps(manifest))
        self.fingerprint = run_fingerprint(manifest["input"], manifest["config"])
        planned = manifest["config"].get("outputs")
        self.keep = None if planned is None else set(planned)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "fingerprint": self.fingerprint, **manifest}
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise HsanomalyError(f"{self.path}: the tile store's name is taken by a symbolic "
                                 "link or a file; remove it or choose another output")
        self.output = output or self.path.with_name(self.path.name[:-len(STORE_SUFFIX)])
        held = lock_folder(self.path, self.output)  # an earlier store: nobody else may write it
        try:
            self.resumed = resume and (self.path / MANIFEST).is_file()
            if resume and not self.resumed:
                warn(f"{self.output}: no interrupted run here to resume; scoring from the start")
            if self.resumed:
                if held is None:       # made since this run looked: another run's, maybe
                    held = lock_folder(self.path, self.output)
                check_resumable(self.path, manifest)
                for stray in self.path.glob(".*"):
                    stray.unlink(missing_ok=True)
                self._hold(held)
                held = None
                return
            if self.path.exists():
                if held is None:       # made since this run looked: another run's, maybe
                    held = lock_folder(self.path, self.output)
                if not is_tile_store(self.path):
                    raise HsanomalyError(f"{self.path}: holds files that are not hsanomaly "
                                         "tiles; refusing to replace it")
                finished = len(list(self.path.glob(TILE_FILES)))
                if finished and _RESUME_HINT.get() is None:    # a batch chose to start over
                    warn(f"{self.path}: scoring from the start, the "
                         f"{counted(finished, 'finished tile')} of an earlier run discarded "
                         f"({spell('resume', True)} continues an interrupted run of the same "
                         "input and settings)")
                shutil.rmtree(self.path)
            try:
                self.path.mkdir()
            except FileExistsError:    # another run made it meanwhile: it is that run's
                raise busy(self.path, self.output) from None
            except OSError as err:
                raise HsanomalyError(f"{self.path}: cannot create the tile store "
                                     f"({describe(err)})") from None
            try:
                self._hold(lock_folder(self.path, self.output))
                self._write_manifest(manifest)
            except OSError as err:
                shutil.rmtree(self.path, ignore_errors=True)
                raise HsanomalyError(f"{self.path}: cannot create the tile store "
                                     f"({describe(err)})") from None
        finally:
            if held is not None:
                os.close(held)

    def _hold(self, fd):
        """Keep the store's lock until ``remove`` or until this object (or the process) goes."""
        self._release = weakref.finalize(self, os.close, fd) if fd is not None else None

    def __getstate__(self):        # a Dask worker writes tiles under the driver's lock
        return {k: v for k, v in vars(self).items() if k != "_release"}

    def _write_manifest(self, manifest):
        text = json.dumps(manifest, indent=1).encode()
        replace_durably(self.path / MANIFEST, lambda file: file.write(text), ".manifest.")

    def _file(self, index):
        return self.path / f"tile_{index:07d}.npz"

    def done(self):
        """The indices of the finished tiles (7 digits or more: past ten million, more)."""
        return {int(p.name[5:-4]) for p in self.path.glob(TILE_FILES)}

    def _checksum(self, index, arrays):
        h = hashlib.sha256(f"{self.fingerprint}:{index};".encode())
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.data)
        return h.hexdigest()

    def put(self, index, outputs):
        """Store tile ``index`` whole (compressed, checksummed, fsync'd) or raise one line.

        Only the run's planned outputs (the manifest's ``config["outputs"]``) and private
        entries (names starting with "_") are kept: a scorer's other extras are dropped here
        rather than compressed and written for nothing."""
        if self.keep is not None:
            outputs = {k: v for k, v in outputs.items() if k in self.keep or k.startswith("_")}
        arrays = {**outputs, CHECKSUM: np.array(self._checksum(index, outputs))}
        try:
            replace_durably(self._file(index), lambda file: write_npz(file, arrays),
                            f".tile_{index:07d}.")
        except OSError as err:
            raise self._write_error(err) from None

    def _write_error(self, err):
        if not self.path.is_dir():           # not the disk: someone took the folder away
            return removed(self.path)
        full = getattr(err, "errno", None) in NO_ROOM
        kept = (tiles_kept(self.resume_hint, room=full) if self.done() else
                f"{'make room and ' if full else ''}rerun (no tile was finished)")
        return (OutOfResources if ran_out(err) else HsanomalyError)(
            f"{self.path}: cannot write a tile ({describe(err)}); {kept}")

    def load(self, index, expected):
        """Tile ``index`` as {name: array}, or None when it is missing, corrupt, from another run
        or not of the ``expected`` ({name: shape}) shapes; read within what those shapes hold
        (``tile_bytes``)."""
        try:
            arrays = read_npz(self._file(index), tile_bytes(expected))
        except Exception:          # a damaged file raises zipfile, zlib, ValueError, OSError...
            return None
        stored = arrays.pop(CHECKSUM, None)
        if stored is None or str(stored) != self._checksum(index, arrays):
            return None
        if any(name not in arrays or arrays[name].shape != tuple(shape)
               for name, shape in expected.items()):
            return None
        return arrays

    def members(self, index, names):
        """{name: array} of those ``names`` that tile ``index`` holds, without reading (or
        checking) its other arrays; empty for a missing or damaged tile."""
        try:
            return read_npz(self._file(index), SUMMARY_BYTES, names)
        except Exception:          # missing or damaged
            return {}

    def get(self, index, expected):
        arrays = self.load(index, expected)
        if arrays is None:
            raise HsanomalyError(f"{self._file(index)}: tile damaged or of the wrong shape; "
                                 f"{self.resume_hint}, which scores it again")
        return arrays

    def discard_bad(self, indices, expected):
        """Remove the tiles among ``indices`` that do not load whole with ``expected(index)``
        shapes (None: no tile of the run has that index), so they are scored again; returns
        the indices kept."""
        kept = set()
        for index in indices:
            shapes = expected(index)
            if shapes is None or self.load(index, shapes) is None:
                self._file(index).unlink(missing_ok=True)
            else:
                kept.add(index)
        return kept

    def remove(self):
        """Remove the store, moved into a private folder first and deleted there: a tile that
        a worker still writes as the run ends (a cancelled Dask task runs to its end) then
        finds no folder to write into, where a store deleted in place was left holding it."""
        aside = None
        with interrupts_held():     # a Ctrl-C meanwhile: a store gone whole, not half hidden
            try:
                aside = private_folder(self.path.parent, self.path.name)
                os.rename(self.path, aside / self.path.name)
            except OSError:         # gone already, or not to be moved: deleted where it is
                pass
            shutil.rmtree(self.path, ignore_errors=True)
            if aside is not None:
                remove_private(aside)
        try:
            fsync_path(self.path.parent, directory=True)
        except OSError:
            pass
        self.release()

    def release(self):
        """Let another run have the store (its tiles stay for ``--resume``)."""
        if getattr(self, "_release", None) is not None:
            self._release()
