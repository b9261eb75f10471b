"""Every path of a job resolved and checked before any work starts.

``check_paths`` takes the job's inputs and outputs, each with the option that named it,
resolves them (real paths, and ``os.path.samefile`` for files that exist, so symbolic and
hard links are seen through) and refuses with one line naming the option: an output that
names an input, two outputs that name one file, an output directory that holds an input or
another output, and an output whose directory does not exist or is not writable.
"""

import contextlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import HsanomalyError
from ..spelling import either, kind_of, spell
from .atomic import check_writable, name_max, note_checked, refuse_special
from .checks import absolute, check_drawing, path_text, read_small

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

FILE, DIRECTORY = "file", "directory"
CHECKPOINT_SUFFIX = ".checkpoint"   # <out>.checkpoint/ holds a training's resumable state


def checkpoint_dir(out):
    """A training's checkpoints live beside its bundle, never in it: ``<out>.checkpoint/``."""
    out = Path(out)
    return out.with_name(out.name + CHECKPOINT_SUFFIX)


class Item:
    """One path of a job: ``label`` is how the user named it (``spell("png")``, ...)."""

    def __init__(self, label, path, kind=FILE):
        from .gdal import is_gdal_name
        from .vector import split_layer

        self.label, self.path, self.kind = label, path_text(path), kind
        self.virtual = is_gdal_name(self.path)
        self.file = split_layer(self.path)[0]       # a vector layer's file
        self.real = self.path if self.virtual else os.path.realpath(self.file)

    def __str__(self):
        return f"{self.label} ({self.path})"

    def same(self, other):
        if self.virtual or other.virtual:
            return self.path == other.path
        if self.real == other.real:
            return True
        try:
            return os.path.samefile(self.file, other.file)
        except OSError:
            return False

    def holds(self, other):
        """True when ``other`` lies inside this directory."""
        return (self.kind == DIRECTORY and not self.virtual and not other.virtual
                and other.real.startswith(self.real.rstrip(os.sep) + os.sep))


def check_paths(inputs, outputs, writable=True):
    """Refuse colliding or (``writable``) unwritable outputs. ``inputs``/``outputs``: (label,
    path[, kind]) tuples; a None path is skipped. Directory outputs are replaced by the job."""
    ins = [Item(*entry) for entry in inputs if entry[1] is not None]
    outs = [Item(*entry) for entry in outputs if entry[1] is not None]
    for i, out in enumerate(outs):
        for src in ins:
            if out.same(src) or out.holds(src) or src.holds(out):
                relation = ("is the same file as" if out.same(src) else
                            "holds" if out.holds(src) else "lies in")
                raise HsanomalyError(f"{out.path}: {out.label} {relation} the input {src}; "
                                     "choose another output")
        for other in outs[:i]:
            if out.same(other) or out.holds(other) or other.holds(out):
                raise HsanomalyError(f"{out.path}: {out.label} collides with {other}; "
                                     "give each output its own name")
        if out.virtual:
            raise HsanomalyError(f"{out.path}: {out.label} must be a file path")
        if out.kind == FILE and str(out.path).endswith(("/", os.sep)):   # a name said as a folder
            raise HsanomalyError(f"{out.path}: {out.label} ends in '/', as a folder's name does; "
                                 "give it a file name")
        check_name_fits(out.path, out.label)
        if writable:
            check_writable(out.path, directory=out.kind == DIRECTORY, label=out.label)
        elif not out.virtual:
            refuse_special(out.path, out.label)   # reading one to see whose it is would block
        if out.kind == FILE and Path(out.path).is_dir():
            raise HsanomalyError(f"{out.path}: {out.label} is a directory, not a file")
        note_checked(out.path, is_dir=out.kind == DIRECTORY)


def check_name_fits(path, label, advice="choose a shorter output name"):
    """Refuse a file the file system would not take by its name, naming which (a heatmap's
    side files, .aux.xml, and tile store, .partial, are longer than its own name), before the
    work: it failed at the commit, after it. The limit is that of the nearest folder there."""
    folder, name = os.path.split(absolute(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)                 # a folder the run will make
    length, limit = len(os.fsencode(name)), name_max(folder)
    if length > limit:
        raise HsanomalyError(f"{path}: {label} would be named with {length} bytes, past the "
                             f"{limit} this file system takes; {advice}")


GEOTIFF_SUFFIXES = (".tif", ".tiff")


def check_suffix(path, label, suffixes, kind):
    """Refuse an output name whose extension says another format than the one written
    (a GeoTIFF named .png, a GeoPackage named .shp): tools that go by the name misread it."""
    path = path_text(path)
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        if suffix.rstrip() in suffixes:                               # "heat.tif " pasted
            raise HsanomalyError(f"{path!r}: {label} writes {kind}; its name ends in a "
                                 "space: remove it")
        raise HsanomalyError(f"{path}: {label} writes {kind}; give it a "
                             f"{' or '.join(suffixes)} name")


def check_replaceable_file(path, label, is_own, kind, remedy=None):
    """Refuse to replace an existing file unless ``is_own(path)`` says it is ``kind`` written by
    hsanomaly (an earlier run's output): a user's raster named as the output by mistake is
    never overwritten without ``overwrite`` (``--overwrite``). A symbolic link there is left to
    ``refuse_special``, which every output meets. ``remedy``: what to do instead of the
    choices a named output has (a batch names its outputs itself)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or is_own(path):
        return
    remedy = remedy or either("delete it", "choose another name",
                              (f"pass {spell('overwrite', True)}", "overwrite"))
    raise HsanomalyError(f"{path}: {label} exists and is not {kind} written by hsanomaly 0.2 "
                         f"or later (0.1 marked none); refusing to replace it ({remedy})")


def check_output_folder(folder, label):
    """An output folder (named by ``label``) is a writable directory, or can be made with
    its parents: the nearest folder that exists is a writable directory. '-' (standard
    output elsewhere) is refused: a folder named '-' is not what it would mean."""
    if str(folder) == "-":
        raise HsanomalyError(f"-: {label} is a folder; '-' (standard output) cannot hold its "
                             "files, so name a folder")
    refuse_unexpanded_home(folder, label)
    folder = Path(folder)
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise HsanomalyError(f"{folder}: {label} is not writable")
        return
    if os.path.lexists(folder):
        raise HsanomalyError(f"{folder}: {label} exists and is not a directory")
    check_name_fits(folder, label, "choose a shorter folder name")
    nearest = Path(absolute(folder)).parent
    while not os.path.lexists(nearest) and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        raise HsanomalyError(f"{folder}: cannot create {label} ({nearest} is not a writable "
                             "directory)")


def check_report_folder(folder, label, files, overwrite=False):
    """Before a long job that writes ``files`` into ``folder`` (named by ``label``): the folder
    exists and is writable or can be created, and each file already there is the job's own
    earlier output unless ``overwrite``. ``files``: (path, is_own, kind) as
    ``check_replaceable_file`` takes them."""
    check_output_folder(folder, label)
    for path, is_own, kind in files:
        refuse_special(path, f"this file of {label}")
        if not overwrite:
            check_replaceable_file(path, f"this file of {label}", is_own, kind)


def refuse_unexpanded_home(folder, label):
    """Refuse a new folder to be made under one named '~' here: the shell leaves '~' as it
    is after '--out-dir=', and a folder named '~' is one a later 'rm -rf ~' would mistake
    for the home directory."""
    parts = Path(folder).parts
    first = parts[0] if parts else ""
    unexpanded = first == "~" or (first.startswith("~") and len(parts) > 1)   # '~heat': a name
    if unexpanded and not os.path.lexists(first):
        raise HsanomalyError(f"{folder}: {label} would be made in a new folder named '{first}' "
                             "here, not in a home directory ('~' is a shell's, which leaves "
                             "it as it is after '='); give the full path")


def check_replaceable_dir(path, label, allowed=None, kind="an hsanomaly output",
                          advice="name a new or empty directory"):
    """Refuse to replace directory ``path`` unless it is empty or ``allowed(path)`` says it is
    ``kind``, the job's own (a model bundle, a tile store); never the current directory or
    above it, never through a symbolic link. ``advice``: what to do instead (a folder the user
    did not name, as a quick model's, is moved away rather than named anew)."""
    refuse_unexpanded_home(path, label)
    path = Path(path)
    if path.is_symlink():
        raise HsanomalyError(f"{path}: {label} is a symbolic link; refusing to replace it")
    real = os.path.realpath(absolute(path))
    try:
        cwd = os.path.realpath(os.getcwd())
    except FileNotFoundError:            # the current folder is gone: nothing can be above it
        cwd = None
    if cwd is not None and (real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep)):
        raise HsanomalyError(f"{path}: {label} is the current directory or one above it; "
                             "name a new directory")
    if not path.exists():
        return
    if not path.is_dir():
        raise HsanomalyError(f"{path}: {label} exists and is not a directory")
    if any(path.iterdir()) and not (allowed and allowed(path)):
        strays = foreign_entries(path) if allowed is is_model_bundle else []
        if strays:             # a bundle and more: the more is someone's
            raise HsanomalyError(f"{path}: {label} holds {kind} and {strays[0].name}, which is "
                                 "not part of one; refusing to replace it (move that away)")
        raise HsanomalyError(f"{path}: {label} is a directory that is not {kind}; refusing to "
                             f"replace it ({advice})")


def _bundle_meta(path):
    """The ``model.json`` of an hsanomaly model bundle at ``path``, or None."""
    from ..model.bundle import FORMAT, META_FILE

    try:
        meta = json.loads(read_small(Path(path) / META_FILE))
    except (OSError, ValueError, RecursionError):
        return None
    # one whose checksums are no mapping of names is no bundle to replace: refused as such
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT and \
        isinstance(meta.get("files"), dict) else None


def foreign_entries(path):
    """The entries of a model bundle's folder that are not the bundle's own files (its
    ``model.json`` lists them); [] for a folder that holds no bundle."""
    from ..model.bundle import LOG_PLOT, LOG_TABLE, META_FILE

    meta = _bundle_meta(path)
    if meta is None:
        return []
    own = set(meta["files"]) | {META_FILE, LOG_TABLE, LOG_PLOT}
    return sorted(entry for entry in Path(path).iterdir()
                  if not (entry.is_file() and not entry.is_symlink() and entry.name in own))


def is_model_bundle(path):
    """True for a directory holding only an hsanomaly model bundle's files (its ``model.json``
    says ``"format": "hsanomaly-model"`` and lists the others)."""
    return _bundle_meta(path) is not None and not foreign_entries(path)


def is_quick_model(path, dst=None):
    """True for a model bundle that ``detect`` trained as the quick model of heatmap ``dst``
    (of any heatmap, without ``dst``; its ``model.json`` says so): the only bundle a detect
    run replaces on its own. A bundle from ``hsanomaly train`` that happens to sit there is
    someone's work."""
    meta = _bundle_meta(path) if os.path.isdir(path) else None
    training = meta.get("training") if meta else None
    made_for = training.get("quick_model_of") if isinstance(training, dict) else None
    return (made_for is not None and (dst is None or made_for == Path(dst).name)
            and is_model_bundle(path))


def quick_model_input(path):
    """The ``ownership.input_record`` of the input a quick model at ``path`` was trained on
    (its model.json), or None."""
    meta = _bundle_meta(path) if os.path.isdir(path) else None
    training = meta.get("training") if meta else None
    return training.get("quick_model_input") if isinstance(training, dict) else None


def is_path(value: object) -> "TypeGuard[Union[str, os.PathLike[str]]]":
    """A name of a file: a str, or a path-like that gives one (one giving bytes is refused
    where it is given, not deep in the job)."""
    return isinstance(value, str) or (isinstance(value, os.PathLike)
                                      and isinstance(os.fspath(value), str))


def check_path_kind(path, label, what="a path", use=None):
    """Refuse, in one line, a path given as anything but a name (a str, or a path-like of
    one), or an empty name: pathlib and GDAL fail on them deep in the job. ``use``: what to
    do instead."""
    if not is_path(path):
        given = "a path-like of bytes" if isinstance(path, os.PathLike) else kind_of(path)
        raise HsanomalyError(f"{label}: expected {what} (a str or path-like), got {given}"
                             + (f"; {use}" if use else ""))
    name = os.fspath(path)
    if not name:
        raise HsanomalyError(f"{label}: an empty name")
    if isinstance(name, str):
        _check_utf8(name, label)
        if CONTROL.search(name):     # a newline: every message naming it would break in two
            edge = not CONTROL.search(name.strip())           # a line of a list, read whole
            raise HsanomalyError(f"{name!r}: the name of {label} holds a control character "
                                 "(a newline, a tab)" + ("; strip the name (its line's end?)"
                                                         if edge else "; rename it"))


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_utf8(name, label):
    """GDAL, SQLite and onnxruntime take a path's UTF-8 bytes: where the system spells it
    otherwise (undecodable bytes kept as surrogates, a Latin-1 locale) they name another
    file, or none. A name of ASCII alone in such a locale may still lie in a folder that is
    not (a relative one, in the current folder)."""
    import sys

    if name.isascii() and not os.path.isabs(name) and \
            sys.getfilesystemencoding().lower().replace("-", "") != "utf8":
        with contextlib.suppress(HsanomalyError):        # (a removed one is said elsewhere)
            name = absolute(name)
    if not name.isascii():
        raw = os.fsencode(name)
        if raw == name.encode("utf-8", "surrogatepass"):
            return
        shown = raw.decode("utf-8", "backslashreplace")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HsanomalyError(f"{shown}: the name of {label} is not valid UTF-8, and "
                                 "hsanomaly takes UTF-8 names only; rename it") from None
        raise HsanomalyError(f"{shown}: the name of {label} was read in a locale that is not "
                             "UTF-8; run under one (LC_ALL=C.UTF-8)") from None


DRAWN = ("png", "plots")     # the outputs matplotlib draws


def check_output_paths(**paths):
    """``check_path_kind`` and ``refuse_layer_choice`` for each optional output given (None:
    not asked for); a drawn one also ``check_drawing``."""
    for name, path in paths.items():
        if path is not None:
            check_path_kind(path, spell(name))
            refuse_layer_choice(path, spell(name))
            if name in DRAWN:
                check_drawing(spell(name))


def refuse_layer_choice(path, label):
    """Refuse an output named with QGIS's layer options ('f.gpkg|layername=x'): hsanomaly
    writes each output whole, a file of its own, so no layer of it can be chosen."""
    from .vector import QGIS_OPTIONS

    file, _, options = str(path).partition("|")
    if options.partition("=")[0].lower() in QGIS_OPTIONS and not Path(str(path)).exists():
        raise HsanomalyError(f"{path}: {label} is written whole, a file of its own, so a layer "
                             f"of it cannot be chosen: name the file alone ({Path(file).name})")


def check_raster_path(src, label=None, use=None):
    """Refuse, in one line, a raster given as anything but its name (a str or path-like): an
    open dataset, an array or a DataArray is the Detector's, and an array's text is no file
    name. ``use``: what to do instead (by default, the Detector)."""
    check_path_kind(src, label or spell("src"), "a raster's path", use or
                    "to score an open dataset, an array or a DataArray, use hsanomaly.Detector")
    if path_text(src) == "-":
        raise HsanomalyError(f"-: {label or spell('src')} is a raster file, which standard "
                             "input and output cannot carry; name a file")


def input_files(path):
    """The files on disk an input reads, whatever name it is given by: a raster's through a
    VRT or a GDAL name (GTIFF_DIR:1:f.tif; ``gdal.dataset_files``), a vector layer's file and
    a shapefile's parts (``vector.vector_files``). No output may be one of them."""
    from .gdal import dataset_files
    from .vector import vector_files

    return list(dict.fromkeys([*vector_files(path), *dataset_files(path)]))


def side_files(rasters):
    """(label, path) of the GDAL side files of raster outputs (``.aux.xml``, ``.ovr``,
    ``.msk``, world files): a run removes an earlier raster's with it, so they are outputs
    too, checked against the inputs (an input named ``heat.tif.ovr`` was deleted by
    ``detect ... heat.tif``)."""
    from .atomic import gdal_side_files

    return [(f"{label}'s GDAL side file", side) for label, path in rasters if is_path(path)
            for side in gdal_side_files(path)]


def refuse_foreign_side_files(rasters, is_own):
    """Refuse a GDAL side file beside a raster output that is not an earlier output of ours
    (``is_own``): GDAL would lay it over the new raster, and it is someone's to remove."""
    from .atomic import gdal_side_files

    for label, path in rasters:
        if not is_path(path) or (os.path.lexists(path) and is_own(path)):
            continue                       # an earlier output's side files go with it
        for side in gdal_side_files(path):
            if os.path.lexists(side):
                raise HsanomalyError(f"{side}: a file GDAL would read as part of {label} "
                                     f"{path}, and no raster of hsanomaly's is there for it to "
                                     f"belong to; remove it, or pass {spell('overwrite', True)} to have it "
                                     "removed")


SQLITE_SIDES = ("-wal", "-shm", "-journal")     # beside an SQLite database such as a .gpkg


def expand_pattern(src):
    """A wildcard pattern (``inputs/*.tif``) as the rasters it matches, sorted, where no file
    has that very name: a shell expands it, but not Windows' cmd or PowerShell, nor a quoted
    one. A match that GDAL reads as part of another match (an ENVI header, a ``.msk``, an
    ``.aux.xml``: ``gdal.files_read_with``), or SQLite beside one, is that file's, not one of
    its own."""
    import glob

    from .gdal import files_read_with, is_gdal_name

    src = os.fspath(src) if is_path(src) else src      # Path("data") / "*.tif" is one too
    if not (isinstance(src, str) and any(c in src for c in "*?[")) or os.path.lexists(src) \
            or is_gdal_name(src):       # a URL's query (?sig=...), a /vsi or driver name
        return [src]
    found = sorted(glob.glob(src))
    if not found and "*" in src:
        raise HsanomalyError(f"{src}: no file matches this pattern")
    parts = {os.path.realpath(part) for match in found for part in files_read_with(match)}
    # SQLite's companions of a GeoPackage matched too (a layer QGIS holds open, a leftover)
    parts |= {os.path.realpath(match + side) for match in found for side in SQLITE_SIDES}
    return [match for match in found if os.path.realpath(match) not in parts] or [src]


def holds_numbers(inputs):
    """Whether ``inputs`` is an array of numbers (a cube), told by its dtype alone (a lazy
    cube is never read for it)."""
    import numpy as np

    try:
        return np.dtype(getattr(inputs, "dtype", object)).kind not in "USO"
    except TypeError:              # pandas' own string types
        return False
