"""Target polygons in a GeoPackage: the targets of a heatmap (``hsanomaly.targets``) in the
layer "targets", styled for QGIS, written through the one write path."""

import os

from .errors import HsanomalyError, ignoring
from .io.atomic import check_writable, native_quiet, staged_into, staged_length
from .io.checks import absolute
from .io.ownership import TAG_PREFIX, drawing_record
from .io.paths import check_name_fits, check_suffix, refuse_layer_choice
from .io.styles import (STYLE_TABLE, column_value, foreign_styles, gpkg_tables,
                        layer_description, pin_dates, sqlite_tables, write_default_style)
from .logs import stage as log_stage
from .spelling import spell
from .targets import COLUMNS, check_threshold_choice, find_targets
from .io.scores import READ_CHUNK

LAYER = "targets"
FAR_RECORD = TAG_PREFIX + "FAR"      # the false-alarm rate asked, where one chose the threshold
STAGED_NAME = "targets.gpkg"   # the GeoPackage as written first: a name GDAL and SQLite take
SQLITE_PATH_MAX = 512          # the longest path SQLite opens (its unix file system layer)
# the columns that tell a GeoPackage of ours: the targets' (targets.COLUMNS), but those 0.1.0
# did not write yet
OWN_COLUMNS = set(COLUMNS) - {"score", "threshold"}


def is_targets_file(path):
    """True for a GeoPackage ``write_polygons`` wrote: the targets layer, with the columns it
    writes, and its style; no table of anyone else's (a user's own layer named "targets",
    or a table or a column added to ours, is not replaced without --overwrite)."""
    return holds_targets(path) and not added_parts(path)


GEOMETRY_COLUMNS = {"fid", "geom"}    # the layer's own besides the targets' attributes


def holds_targets(path):
    """Whether GeoPackage ``path`` holds the targets layer with the columns it writes (added
    to or not)."""
    return LAYER in gpkg_tables(path) and OWN_COLUMNS <= sqlite_tables(path).get(LAYER, set())


def added_parts(path):
    """What GeoPackage ``path`` holds that hsanomaly does not write, which writing the targets
    anew would remove: others' tables (``other_tables``), and columns added to the targets
    layer (a reviewer's "verified")."""
    added = sorted(sqlite_tables(path).get(LAYER, set()) - set(COLUMNS) - GEOMETRY_COLUMNS)
    return other_tables(path) + ([f"the column(s) {', '.join(added)} of its targets"]
                                 if added else [])


def drawn_threshold(path):
    """The score threshold the targets of GeoPackage ``path`` were drawn above, as its layer's
    description records it (exactly: ``targets.find_targets``), or, where a copy lost that
    (QGIS's Save Features As), its targets' threshold column; None where neither says."""
    import re

    found = re.search(r"pixels with score > ([^;]+)", layer_description(path, LAYER) or "")
    try:
        return float(found.group(1)) if found else column_value(path, LAYER, "threshold")
    except ValueError:
        return None


def other_tables(path):
    """The tables of GeoPackage ``path`` that are not the targets, their style or the
    format's own: its layers, and what it holds unlisted (a QGIS project, a DB Manager
    table)."""
    listed, ours = gpkg_tables(path), {LAYER, STYLE_TABLE}
    unlisted = set(sqlite_tables(path)) - listed     # the format's own, or a user's table
    styles = [f"{STYLE_TABLE}: the style '{name}'" for name in foreign_styles(path, LAYER)]
    return sorted((listed - ours) | {name for name in unlisted - ours
                                     if not name.startswith(("gpkg_", "rtree_", "sqlite_"))}) \
        + styles


def check_replaceable_targets(path, label=None, remedy=None):
    """Refuse, without ``--overwrite``, to replace a GeoPackage hsanomaly did not write, or one
    it wrote to which a layer, a table or a style was added since (named in the message);
    ``label``, ``remedy``: as a batch names the file and what to do instead."""
    import os

    from .io.paths import check_replaceable_file

    label = label or spell("polygons")
    ours = os.path.isfile(path) and not os.path.islink(path) and holds_targets(path)
    others = added_parts(path) if ours else []
    if others:
        raise HsanomalyError(f"{path}: {label} holds, beside hsanomaly's targets, "
                             f"{', '.join(others)}, which writing the targets would remove; "
                             + (remedy or "choose another file, or pass "
                                f"{spell('overwrite', True)}"))
    check_replaceable_file(path, label, is_targets_file, "a targets GeoPackage", remedy)


def check_no_other_layers(path):
    """Refuse a GeoPackage holding tables besides the targets and their style: the polygons
    replace the whole file, which a caller that replaces its outputs without asking each time
    (the QGIS provider: a "Save to GeoPackage" adds a layer there) must not do to them."""
    others = added_parts(path)
    if others:
        raise HsanomalyError(f"{path}: {spell('polygons')} is a GeoPackage holding other tables "
                             f"({', '.join(others)}), which writing the targets would remove "
                             "(hsanomaly writes a GeoPackage of its own); choose another file")


def check_not_in_use(gpkg_path, scored=False):
    """Refuse to replace a GeoPackage with changes still in its write-ahead log (``-wal``), or
    that a program holds open in WAL mode (QGIS while a layer of it is edited): the log is
    found by the file's name, so those changes, or that program's next write, would be laid
    over the new file and corrupt it for good. ``scored``: refused at the end of a run, whose
    scored tiles a resumed run keeps."""
    from pathlib import Path

    wal, shm, resume = Path(f"{gpkg_path}-wal"), Path(f"{gpkg_path}-shm"), spell("resume", True)
    try:
        changes = wal.stat().st_size > 0
    except OSError:
        changes = False
    held = None if changes else held_open(shm)
    if held is False:
        return
    what, tidy = ((f"with changes not yet written into it ({wal.name})", "merge them") if changes
                  else (f"in WAL mode ({shm.name})", "") if held
                  else (f"in WAL mode, or was left so by one that stopped ({shm.name}; this "
                        "system does not say which)", "tidy it"))
    raise HsanomalyError(f"{gpkg_path}: {spell('polygons')} is open in another program {what}"
                         "; close it there (or choose another name) and run again"
                         + (f" with {resume} (the scored tiles are kept)" if scored else "")
                         + (f". If no program has it open, open it once (QGIS, ogrinfo) to "
                            f"{tidy}" if tidy else ""))


def held_open(shm):
    """Whether a connection to a SQLite database in WAL mode is open: it holds a lock on byte
    128 of the ``-shm`` file. Linux lists every lock in /proc/locks, this process's own too
    (QGIS's, for the plugin), so the file need not be opened (closing it would drop this
    process's locks on it). False without the file (or with one a closed or crashed program
    left); None where it cannot tell."""
    import os
    import re

    try:
        found = os.stat(shm)
    except OSError:
        return False
    try:
        with open("/proc/locks") as locks:
            listed = locks.read()
    except OSError:
        return None
    where = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    for start, end in re.findall(rf"\s{re.escape(where)}\s+(\d+)\s+(\d+|EOF)", listed):
        if int(start) <= 128 and (end == "EOF" or int(end) >= 128):
            return True
    return False


def check_threshold(gpkg_path, threshold, far):
    """Refuse, before any scoring, a polygon request that cannot work (or a threshold
    without one: ``gpkg_path`` None)."""
    if gpkg_path is None:
        if threshold is not None or far is not None:
            raise HsanomalyError(f"{spell('threshold')} or {spell('far')}: they set the "
                                 f"{spell('polygons')} threshold, and no {spell('polygons')} "
                                 "was given")
        return
    refuse_layer_choice(gpkg_path, spell("polygons"))
    check_suffix(gpkg_path, spell("polygons"), (".gpkg",), "a GeoPackage")
    check_threshold_choice(threshold, far, gpkg_path, wanted="polygons")
    check_writable(gpkg_path, directory=False, label=spell("polygons"))


def check_sqlite_path(path):
    """Refuse, before the work, a GeoPackage SQLite could not open where it is written first
    (``STAGED_NAME`` in a private folder beside it) or where it lands, journals included (the
    journal's name, too): it failed after the scoring."""
    check_name_fits(f"{path}-journal", f"{spell('polygons')}'s SQLite journal")
    longest = max(staged_length(path, f"{STAGED_NAME}-journal"),
                  len(os.fsencode(absolute(f"{path}-journal"))))
    if longest > SQLITE_PATH_MAX:
        raise HsanomalyError(f"{path}: {spell('polygons')} would be written at a path of "
                             f"{longest} bytes, past the {SQLITE_PATH_MAX} SQLite opens; choose "
                             "a folder of a shorter path")


def write_polygons(heatmap_path, gpkg_path, *, threshold=None, far=None, chunk=READ_CHUNK,
                   stage=None, name=None):
    """Vectorise the targets of a heatmap GeoTIFF (``targets.find_targets``: the pixels
    above ``threshold``, or above the threshold of false-alarm rate ``far``) into the layer
    "targets" of a GeoPackage, in the raster's CRS; returns their number. The file is
    written through the one write path (read back and its features counted before it
    replaces ``gpkg_path``; with ``stage``, together with that stage's other outputs), and no
    target writes a valid empty layer. ``name``: how the messages and the layer description
    name the heatmap (default ``heatmap_path``; detect passes its output's name for the
    staged temporary it vectorises).
    """
    check_threshold(gpkg_path, threshold, far)
    frame, description = find_targets(heatmap_path, threshold=threshold, far=far, chunk=chunk,
                                      name=name or heatmap_path)
    counted = _gpkg_check(len(frame))

    def check(tmp):                # at the commit too: a program may have opened it since
        counted(tmp)
        check_not_in_use(gpkg_path, scored=True)
    with log_stage(f"writing {len(frame)} targets into {gpkg_path}"), staged_into(stage) as into:
        tmp = into.path(gpkg_path, check=check, create=False, name=STAGED_NAME)
        with ignoring(UserWarning, "'crs' was not provided"), native_quiet():
            # GeoPackage 1.2: the GDAL of QGIS 3.22 (the plugin's LTR) warns on each read of
            # the 1.4 that newer GDALs write by default
            frame.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio",
                          geometry_type="MultiPolygon", dataset_options={"VERSION": "1.2"},
                          layer_options={"DESCRIPTION": description},
                          layer_metadata=drawing_record(heatmap_path, name) | (
                              {} if far is None else {FAR_RECORD: str(far)}))
            write_default_style(tmp, LAYER)
        pin_dates(tmp)
    return len(frame)


def _gpkg_check(count):
    """Re-open a written GeoPackage and count its targets."""
    def check(path):
        import pyogrio

        found = pyogrio.read_info(path, layer=LAYER)["features"]
        if found != count:
            raise HsanomalyError(f"{path}: {found} targets written, {count} expected")
    return check
