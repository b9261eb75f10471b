"""Targets: the pixels of a heatmap above a threshold, as 8-connected regions
(``hsanomaly.regions``: a target that straddles chunks comes out whole), in a GeoDataFrame
with their size, area, scores and centroid. ``polygons`` writes them to a GeoPackage."""

import math
import os

import numpy as np
from affine import Affine

from .errors import HsanomalyError, ignoring
from .io.checks import warn
from .io.gdal import open_raster, placed_without_transform
from .io.heatmap import SCORE_TAG
from .io.paths import is_path
from .io.vector import PIXEL_GRID, degrees_per_unit, map_coordinates
from .logs import stage as log_stage
from .options import is_real
from .rates import as_number, check_rate, rate_count
from .regions import Regions
from .spelling import spell
from .io.scores import READ_CHUNK, score_chunks, warn_bands
from .thresholds import threshold_from_far

# A target's attributes, in the order of the frame and the GeoPackage's layer (besides its
# geometry).
COLUMNS = ("id", "pixels", "area", "max_score", "mean_score", "centroid_x", "centroid_y", "score",
           "threshold")


def check_threshold_choice(threshold, far, label, wanted="targets"):
    """Refuse, in one line, anything but one of a finite ``threshold`` or a false-alarm rate
    ``far`` (a rate or "auto", text that reads as one too: a command line's, a dialog's),
    which ``wanted`` need; returns ``far`` as a rate. A choice missing or doubled is said of
    ``label`` (the output that needs it); a value out of range of the option alone."""
    either = f"{spell('threshold')} or {spell('far')}"
    if threshold is None and far is None:
        raise HsanomalyError(f"{label}: {wanted} need {either}")
    if threshold is not None and far is not None:
        raise HsanomalyError(f"{label}: give {either}, not both")
    if threshold is not None and not is_real(as_number(threshold)):
        raise HsanomalyError(f"{spell('threshold')} must be a finite number, got {threshold!r}")
    return None if far is None else check_rate(spell("far"), far, auto=True)


def find_targets(heatmap, *, threshold=None, far=None, transform=None, crs=None,
                 chunk=READ_CHUNK, name=None, given=False):
    """(GeoDataFrame of the targets, the layer's description) of a heatmap: a GeoTIFF path
    (its georeferencing and score name read from it) or a 2-D array placed by ``transform``
    and ``crs`` (pixel coordinates without). Targets are 8-connected regions of pixels
    scoring strictly above ``threshold``, or above ``threshold_from_far(heatmap, far)`` (far:
    a rate or "auto"). Per target: id (1 = highest max score), pixels, area (``target_areas``;
    NaN without a geotransform, whose coordinates are pixel coordinates), max_score,
    mean_score, centroid_x and centroid_y (map coordinates of the mean pixel centre), score
    (the score's name a heatmap file records; empty for an array) and threshold. Memory is
    bounded by ``chunk`` plus the targets themselves. ``name``: how
    messages and the description name the heatmap; ``given``: the caller gave ``transform``
    (not read off a DataArray's coordinates), so it is taken as it is (``pixel_coordinates``)."""
    import geopandas as gpd

    is_file = is_path(heatmap)
    name = name or (heatmap if is_file else "<array>")
    far = check_threshold_choice(threshold, far, name)
    threshold = as_number(threshold)
    score = ""
    if is_file:
        transform, crs, width, score = _placement(heatmap, name)
    else:
        width = heatmap.shape[-1]
        transform = Affine.identity() if transform is None else transform
        if transform.is_identity and crs is not None and not given:
            _warn_crs_unplaced(name, "it", "a transform attribute places a DataArray, and so do "
                                           "its x and y coordinates where they are evenly "
                                           "spaced, two or more each way, and stored finely "
                                           "enough to tell a pixel")
            crs = None
    pixels = None if given else pixel_coordinates(transform, crs, in_memory=not is_file)
    georeferenced = pixels is None
    transform = transform if georeferenced else pixels
    if threshold is None:
        with log_stage(f"threshold at false-alarm rate {far} of {name}"):
            threshold = threshold_from_far(heatmap, far, chunk=chunk, name=name)
    with log_stage(f"vectorising the pixels of {name} above {threshold:.6g}"):
        regions = Regions(width, transform)
        highest, scored = -math.inf, 0               # for the warnings
        for win, scores in score_chunks(heatmap, chunk):
            regions.add(win, scores, threshold)
            highest = max(highest, float(np.nanmax(scores, initial=-math.inf)))
            scored += int(np.count_nonzero(~np.isnan(scores)))
        records = regions.targets()
    if not scored:        # the rate's threshold refuses this; a given threshold met it silently
        raise HsanomalyError(f"{name}: the heatmap has no score")
    if not records:
        _warn_none_found(name, threshold, far, highest, scored)
    areas, area_unit = target_areas(records, transform if georeferenced else None, crs)
    if records and area_unit == "square metres" and not crs.is_geographic:
        middle = np.mean([r["geometry"].centroid.coords[0] for r in records], axis=0)
        warn_map_areas(name, crs, middle, "the targets' areas")
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
    with ignoring(UserWarning, "'crs' was not provided"):   # said in the description
        frame = gpd.GeoDataFrame({name: columns[name] for name in COLUMNS},
                                 geometry=[r["geometry"] for r in records],
                                 crs=crs.to_wkt() if crs is not None else None)
    # the heatmap by its file's name: the same run writes the same layer wherever it is typed from
    shown = os.path.basename(str(name)) if is_file else name
    description = f"{shown}: pixels with score > {float(threshold)!r}"    # exact: typed back
    if not georeferenced:
        description += ("; not georeferenced: coordinates are pixel coordinates, x the column "
                        "and y minus the row (where QGIS shows the raster), area is null")
    else:
        if crs is None:
            description += "; no CRS: map coordinates of a reference system the raster does not name"
        description += f"; area in {area_unit}"
    return frame, description


def pixel_coordinates(transform, crs, in_memory):
    """The transform of pixel coordinates, x the column and y minus the row of the whole
    raster (``PIXEL_GRID``), for a heatmap that is not on a map; None for one that is. A file
    is not without a geotransform (QGIS draws one with a geotransform where it says, even in
    pixel units); scores in memory placed by their DataArray's coordinates (``in_memory``)
    are not where those count pixels: no CRS, pixels one unit wide, rows downwards, unrotated
    (a cut of such a raster, placed by rioxarray's or ``Detector``'s pixel-centre
    coordinates). A transform a caller gives is a map's, whatever its numbers: its caller
    does not ask (``find_targets``'s ``given``)."""
    counts_pixels = crs is None and (transform.a, transform.b, transform.d, transform.e) == (
        1, 0, 0, 1)
    if transform.is_identity or (in_memory and counts_pixels):
        return PIXEL_GRID @ Affine.translation(transform.c, transform.f)
    return None


def _placement(path, name):
    """(transform, crs, width, score name) of a heatmap file; georeferencing that polygons
    cannot follow (GCPs, RPCs, a CRS without a transform) is said."""
    with open_raster(path) as ds:
        crs, transform, width = ds.crs, ds.transform, ds.width
        score = ds.tags().get(SCORE_TAG, "")
        placed_by = placed_without_transform(ds)
        warn_bands(ds, name)
    if transform.is_identity and placed_by:
        warn(f"{name}: the raster is placed on the map by {placed_by}, which "
             "polygons do not follow: they are in pixel coordinates (gdalwarp the input to "
             "a map grid first)")
    elif transform.is_identity and crs is not None:
        _warn_crs_unplaced(name, "the raster", "give the input a geotransform to place them")
    return transform, None if transform.is_identity else crs, width, score


def _warn_crs_unplaced(name, what, remedy):
    warn(f"{name}: {what} names a CRS but has no geotransform, so polygons are in pixel "
         f"coordinates and their layer names no CRS ({remedy})")


def _warn_none_found(name, threshold, far, highest, scored):
    if far == "auto":
        warn(f"{name}: the automatic threshold {threshold:.6g} lies "
             f"{'at' if threshold == highest else 'above'} every "
             f"score (the highest is {highest:.6g}), so no target was found; the tail fit "
             f"extrapolates far on a small or heavy-tailed heatmap: pass {spell('far')} (e.g. "
             f"1e-3) or {spell('threshold')} instead")
    elif far is None and scored and highest <= threshold:
        warn(f"{name}: the threshold {threshold:.6g} lies at or above every "
             f"score (the highest is {highest:.6g}), so no target was found; pass a lower "
             f"{spell('threshold')} or a {spell('far')}")
    elif far is not None:
        allowed = rate_count(far, scored)
        why = (f"the rate allows no pixel of these {scored} (it needs at least 1/{scored})"
               if not allowed else f"the rate allows {allowed} of {scored} pixels above it, "
               "and more share the highest score")
        warn(f"{name}: no target found at false-alarm rate {far:g}: {why}; pass "
             f"a larger {spell('far')} or a {spell('threshold')}")


def projected_pixel_area(transform, crs):
    """A pixel's area in square metres where the CRS is projected (its linear unit converted:
    US feet, say); None elsewhere (degrees, no CRS, no geotransform, or a local CRS: GDAL
    gives one a metre of its own where the file names no unit, ENVI's "Arbitrary" grid of
    pixel coordinates, say)."""
    if transform.is_identity or crs is None or not crs.is_projected:
        return None
    return abs(transform.determinant) * crs.linear_units_factor[1] ** 2


MAP_AREA_SLACK = 0.02     # a projection whose map area strays more from the ground's is said


def warn_map_areas(name, crs, point, what):
    """Areas in a projected CRS are its map's square metres: in UTM, a national grid or an
    equal-area projection the ground's to a part in a thousand, but not in all (Web Mercator
    at 60 degrees north: 4 times). Said where the projection's areal scale at ``point`` (map
    coordinates) strays from 1 by more than ``MAP_AREA_SLACK``."""
    import pyproj

    try:
        projection = pyproj.Proj(pyproj.CRS.from_wkt(crs.to_wkt()))
        scale = projection.get_factors(*projection(*point, inverse=True)).areal_scale
    except (pyproj.exceptions.CRSError, pyproj.exceptions.ProjError, ValueError):
        return
    if np.isfinite(scale) and abs(scale - 1) > MAP_AREA_SLACK:
        warn(f"{name}: {what} are in the map's square metres, which this projection "
             f"({crs.to_string()}) draws {scale:.3g} times as large as the ground's there; "
             "warp the input to an equal-area or local CRS for ground areas")


def geodesic_areas(geometries, crs):
    """The areas in square metres, on the ellipsoid of geographic ``crs``, of polygons in its
    coordinates: those are in the CRS's own angular unit (grads, say), and pyproj's geodesic
    takes degrees."""
    import pyproj
    from shapely import affinity

    degrees = degrees_per_unit(crs)
    geod = pyproj.CRS.from_wkt(crs.to_wkt()).get_geod()
    if abs(degrees - 1) > 1e-12:
        geometries = [affinity.scale(g, degrees, degrees, origin=(0, 0)) for g in geometries]
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geometries],
                    dtype=np.float64)


def target_areas(records, transform, crs):
    """(each target's area, its unit): square metres from a pixel's area
    (``projected_pixel_area``), or
    the geodesic area of the target's polygon on the ellipsoid of a geographic CRS (a pixel in
    degrees has no one area); the map's own units squared where the CRS is missing or local;
    NaN without a geotransform (``transform`` None)."""
    pixels = np.array([r["pixels"] for r in records], dtype=np.float64)
    if transform is None:
        return np.full(len(records), np.nan), None
    if crs is not None and crs.is_geographic:
        return geodesic_areas([r["geometry"] for r in records], crs), "square metres"
    area = projected_pixel_area(transform, crs)
    if area is not None:
        return pixels * area, "square metres"
    return pixels * abs(transform.determinant), "map units squared"
