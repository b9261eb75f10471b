"""Target polygons: the pixels above a threshold, as 8-connected regions
(``hsanomaly.regions``: a target that straddles tiles comes out as one polygon), in a
GeoPackage."""

import contextlib
import math
import warnings

import numpy as np

from .errors import HsanomalyError
from .io.atomic import atomic_path, check_writable, native_quiet
from .io.checks import warn
from .io.heatmap import SCORE_TAG
from .io.paths import check_suffix
from .io.styles import STYLE_TABLE, gpkg_tables, sqlite_tables, write_default_style
from .io.vector import map_coordinates
from .options import check_rate, is_real, rate_count
from .logs import stage as log_stage
from .regions import Regions
from .spelling import spell
from .thresholds import READ_CHUNK, open_heatmap, score_chunks, threshold_from_far

LAYER = "targets"
TARGET_COLUMNS = {"pixels", "area", "max_score", "mean_score", "centroid_x", "centroid_y"}


def is_targets_file(path):
    """True for a GeoPackage ``write_polygons`` wrote: the targets layer, with the columns it
    writes, and its style; no table of anyone else's (a user's own layer named "targets",
    or a table added to ours, is not replaced without --overwrite)."""
    tables, listed, ours = sqlite_tables(path), gpkg_tables(path), {LAYER, STYLE_TABLE}
    return (LAYER in listed and listed <= ours and TARGET_COLUMNS <= tables.get(LAYER, set())
            and all(name in ours or name.startswith(("gpkg_", "rtree_", "sqlite_"))
                    for name in tables))


def check_not_in_use(gpkg_path, scored=False):
    """Refuse to replace a GeoPackage with changes still in its write-ahead log (``-wal``): a
    program has it open (QGIS opens GeoPackages in WAL mode), and SQLite would lay those pages
    of the old database over the new file. ``scored``: refused at the end of a run, whose
    scored tiles a resumed run keeps."""
    from pathlib import Path

    wal, resume = Path(f"{gpkg_path}-wal"), spell("resume", True)
    with contextlib.suppress(OSError):
        if wal.stat().st_size > 0:
            raise HsanomalyError(f"{gpkg_path}: {spell('polygons')} is open in another program with changes "
                                 f"not yet written into it ({wal.name}); close it there (or "
                                 "choose another name) and run again"
                                 f"{f' with {resume} (the scored tiles are kept)' if scored else ''}"
                                 ". If no program has it open, one stopped before merging "
                                 "them: open it once (QGIS, ogrinfo) to merge them")


def check_threshold(gpkg_path, threshold, far):
    """Refuse, before any scoring, a polygon request that cannot work (or a threshold
    without one: ``gpkg_path`` None)."""
    given = threshold is not None or far is not None
    either = f"{spell('threshold')} or {spell('far')}"
    if gpkg_path is None:
        if given:
            raise HsanomalyError(f"{either}: they set the {spell('polygons')} threshold, and no "
                                 f"{spell('polygons')} was given")
        return
    check_suffix(gpkg_path, spell("polygons"), (".gpkg",), "a GeoPackage")
    if not given:
        raise HsanomalyError(f"{gpkg_path}: polygons need {either}")
    if threshold is not None and far is not None:
        raise HsanomalyError(f"{gpkg_path}: give {either}, not both")
    if threshold is not None and not is_real(threshold):
        raise HsanomalyError(f"{gpkg_path}: {spell('threshold')} must be a finite number, got "
                             f"{threshold}")
    if far is not None:
        check_rate(f"{gpkg_path}: {spell('far')}", far, auto=True)
    check_writable(gpkg_path, directory=False)


def pixel_area(transform, crs):
    """A pixel's area in square metres where the CRS is projected, or local with a named
    linear unit (a site grid; the unit converted: US feet, say); None elsewhere (degrees, a
    local CRS of unknown unit, no CRS, no geotransform)."""
    metres = None if transform.is_identity or crs is None else _metres_per_unit(crs)
    return None if metres is None else abs(transform.determinant) * metres ** 2


def _metres_per_unit(crs):
    """Metres in the CRS's linear unit: a projected CRS's, or a local one's where both axes
    name one (a unit called "unknown" is none); None otherwise."""
    if crs.is_projected:
        return crs.linear_units_factor[1]
    if crs.is_geographic:
        return None
    import pyproj

    axes = pyproj.CRS.from_wkt(crs.to_wkt()).coordinate_system
    factors = {_metres(axis.get("unit")) for axis in (axes.to_json_dict()["axis"] if axes else [])}
    return factors.pop() if len(factors) == 1 and None not in factors else None


def _metres(unit):
    """Metres in one axis's unit (PROJJSON), or None if it is not a known linear unit."""
    if unit == "metre":
        return 1.0
    linear = isinstance(unit, dict) and unit.get("type") == "LinearUnit"
    return unit.get("conversion_factor") if linear and unit.get("name") != "unknown" else None


def target_areas(records, transform, crs):
    """(each target's area, its unit): square metres from a pixel's area (``pixel_area``), or
    the geodesic area of the target's polygon on the ellipsoid of a geographic CRS (a pixel in
    degrees has no one area); the map's own units squared where the CRS is missing or local
    of unknown unit; NaN without a geotransform."""
    pixels = np.array([r["pixels"] for r in records], dtype=np.float64)
    if transform.is_identity:
        return np.full(len(records), np.nan), None
    if crs is not None and crs.is_geographic:
        import pyproj

        geod = pyproj.CRS.from_wkt(crs.to_wkt()).get_geod()
        return np.array([abs(geod.geometry_area_perimeter(r["geometry"])[0]) for r in records],
                        dtype=np.float64), "square metres"
    area = pixel_area(transform, crs)
    if area is not None:
        return pixels * area, "square metres"
    return pixels * abs(transform.determinant), "map units squared"


def write_polygons(heatmap_path, gpkg_path, *, threshold=None, far=None, chunk=READ_CHUNK,
                   stage=None, name=None):
    """Vectorise the targets of a heatmap GeoTIFF into a GeoPackage; returns their number.

    Targets are 8-connected regions of pixels scoring strictly above ``threshold``, or above
    ``threshold_from_far(heatmap_path, far)`` (far: a rate or "auto"). The layer "targets"
    is in the raster's CRS with, per target: id (1 = highest max score), pixels, area (square
    metres, ``target_areas``; null when the raster has no geotransform, whose coordinates are
    pixel coordinates, as the layer description says), max_score, mean_score, centroid_x and
    centroid_y (map coordinates of the mean pixel centre). Memory is bounded by ``chunk``
    plus the targets themselves; the file is written through the one write path (read back
    and its features counted before it replaces ``gpkg_path``; with ``stage``, together with
    that stage's other outputs), and no target writes a valid empty layer. ``name``: how the
    messages and the layer description name the heatmap (default ``heatmap_path``; detect
    passes its output's name for the staged temporary it vectorises).
    """
    import geopandas as gpd

    check_threshold(gpkg_path, threshold, far)
    name = name or heatmap_path
    with open_heatmap(heatmap_path) as ds:
        crs, transform, width = ds.crs, ds.transform, ds.width
        score = ds.tags().get(SCORE_TAG, "")
        placed_by = ("ground control points" if ds.gcps[0] else
                     "rational polynomial coefficients (RPCs)" if ds.rpcs else None)
        if transform.is_identity and placed_by:
            warn(f"{name}: the raster is placed on the map by {placed_by}, which "
                 "polygons do not follow: they are in pixel coordinates (gdalwarp the input to "
                 "a map grid first)")
        elif transform.is_identity and crs is not None:
            warn(f"{name}: the raster names a CRS but has no geotransform, so "
                 "polygons are in pixel coordinates and their layer names no CRS (give the "
                 "input a geotransform to place them)")
        if transform.is_identity:          # pixel coordinates are in no reference system
            crs = None
    if threshold is None:
        with log_stage(f"threshold at false-alarm rate {far} of {name}"):
            threshold = threshold_from_far(heatmap_path, far, chunk=chunk, name=name)
    with log_stage(f"vectorising the pixels above {threshold:.6g} into {gpkg_path}"):
        regions = Regions(width, transform)
        highest, scored = -math.inf, 0               # for the warnings
        for win, scores in score_chunks(heatmap_path, chunk):
            regions.add(win, scores, threshold)
            highest = max(highest, float(np.nanmax(scores, initial=-math.inf)))
            scored += int(np.count_nonzero(~np.isnan(scores)))
        records = regions.targets()
    if not records and far == "auto":
        warn(f"{name}: the automatic threshold {threshold:.6g} lies above every "
             f"score (the highest is {highest:.6g}), so no target was found; the tail fit "
             f"extrapolates far on a small or heavy-tailed heatmap: pass {spell('far')} (e.g. "
             f"1e-3) or {spell('threshold')} instead")
    elif not records and far is None and scored and highest <= threshold:
        warn(f"{name}: the threshold {threshold:.6g} lies at or above every "
             f"score (the highest is {highest:.6g}), so no target was found; pass a lower "
             f"{spell('threshold')} or a {spell('far')}")
    elif not records and far is not None:
        allowed = rate_count(far, scored)
        why = (f"the rate allows no pixel of these {scored} (it needs at least 1/{scored})"
               if not allowed else f"the rate allows {allowed} of {scored} pixels above it, "
               "and more share the highest score")
        warn(f"{name}: no target found at false-alarm rate {far:g}: {why}; pass "
             f"a larger {spell('far')} or a {spell('threshold')}")

    areas, area_unit = target_areas(records, transform, crs)
    columns = {
        "id": np.arange(1, len(records) + 1, dtype=np.int64),
        "pixels": np.array([r["pixels"] for r in records], dtype=np.int64),
        "area": areas,
        "max_score": np.array([r["max_score"] for r in records], dtype=np.float64),
        "mean_score": np.array([r["mean_score"] for r in records], dtype=np.float64),
    }
    rows = np.array([r["row"] for r in records], dtype=np.float64)
    cols = np.array([r["col"] for r in records], dtype=np.float64)
    columns["centroid_x"], columns["centroid_y"] = map_coordinates(transform, rows, cols)
    columns["score"] = np.array([score] * len(records), dtype=object)
    columns["threshold"] = np.full(len(records), threshold, dtype=np.float64)
    frame = gpd.GeoDataFrame(columns, geometry=[r["geometry"] for r in records],
                             crs=crs.to_wkt() if crs is not None else None)
    description = f"{name}: pixels with score > {threshold:.6g}"
    if transform.is_identity:
        description += "; not georeferenced: coordinates are pixel coordinates, area is null"
    else:
        if crs is None:
            description += "; no CRS: map coordinates of a reference system the raster does not name"
        description += f"; area in {area_unit}"
    counted = _gpkg_check(len(records))

    def check(tmp):                # at the commit too: a program may have opened it since
        counted(tmp)
        check_not_in_use(gpkg_path, scored=True)
    with contextlib.ExitStack() as stack:
        tmp = (stage.path(gpkg_path, check=check, create=False) if stage is not None else
               stack.enter_context(atomic_path(gpkg_path, check=check, create=False)))
        with warnings.catch_warnings(), native_quiet():
            warnings.filterwarnings("ignore", "'crs' was not provided")   # said in the description
            # GeoPackage 1.2: the GDAL of QGIS 3.22 (the plugin's LTR) warns on each read of
            # the 1.4 that newer GDALs write by default
            frame.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio",
                          geometry_type="MultiPolygon", dataset_options={"VERSION": "1.2"},
                          layer_options={"DESCRIPTION": description})
            write_default_style(tmp, LAYER, frame.geometry.name)
    return len(records)


def _gpkg_check(count):
    """Re-open a written GeoPackage and count its targets."""
    def check(path):
        import pyogrio

        found = pyogrio.read_info(path, layer=LAYER)["features"]
        if found != count:
            raise HsanomalyError(f"{path}: {found} targets written, {count} expected")
    return check
