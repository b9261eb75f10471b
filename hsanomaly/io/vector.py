"""Vector masks: target polygons, points or lines (GeoPackage, Shapefile, GeoJSON, anything
OGR reads) burnt onto a raster's grid, so that a truth digitised in QGIS evaluates a heatmap
as a truth raster would, and an exclusion mask leaves out what it covers.

A pixel is a polygon's when its centre lies inside (GDAL's rule); a polygon too small to hold
a pixel centre, a point or a line takes every pixel it touches, so that no feature is lost.
Features in another CRS are reprojected onto the raster's; one without a CRS is taken to be in
the raster's, with a warning.
"""

import math
from pathlib import Path

import numpy as np
from affine import Affine

from ..errors import HsanomalyError, describe
from ..spelling import counted
from .checks import check_memory, warn_once
from .gdal import is_gdal_name, open_raster, placed_without_transform, require_file

# QGIS names one layer of a file so (a layer's "source"): "targets.gpkg|layername=truth"
LAYER_TAG = "|layername="
# the options QGIS may write after a vector file's name; of them, only layername is taken
QGIS_OPTIONS = ("layername", "layerid", "subset", "geometrytype")
# the files a shapefile is made of besides the .shp (an output must not replace them)
SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd")
BURN_BYTES_PER_PIXEL = 8     # the mask, two rasters of part numbers and a boolean at once
# where QGIS shows a raster without georeferencing, and so its targets and the features drawn
# on it: x the column, y minus the row (GDAL's own default grid, y the row, would draw them
# mirrored off the raster there)
PIXEL_GRID = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def split_layer(path):
    """(the file, the layer or None) of a vector source; QGIS's "|layername=" picks the layer.
    A name with a "|" that starts no QGIS option, or that names an existing file, is a file."""
    text = str(path)
    file, _, options = text.partition("|")
    if not options or Path(text).exists() or \
            options.partition("=")[0].lower() not in QGIS_OPTIONS:
        return text, None
    layer = None
    for option in options.split("|"):
        key, _, value = option.partition("=")
        if key.lower() == "layername" and value:
            layer = value
        elif key.lower() == "subset":
            raise HsanomalyError(f"{path}: a filtered layer ('|{option}'); save the features "
                                 "it shows to a file of their own")
        else:
            raise HsanomalyError(f"{path}: '|{option}' is not understood; name the layer as "
                                 f"'{file}{LAYER_TAG}NAME'")
    return file, layer


def vector_files(path):
    """The files on disk a vector source reads (a shapefile's parts), for collision checks."""
    file = split_layer(path)[0]
    return [file] + [str(part) for part in _shapefile_parts(file, SHAPEFILE_PARTS)]


def _shapefile_parts(file, suffixes):
    """The side files of a shapefile with these suffixes, each in either case, that exist."""
    path = Path(file)
    if is_gdal_name(file) or path.suffix.lower() != ".shp":
        return []
    found = (next((part for part in (path.with_suffix(suffix), path.with_suffix(suffix.upper()))
                   if part.exists()), None) for suffix in suffixes)
    return [part for part in found if part is not None]


def is_vector(path):
    """True for a vector dataset: one named with a layer, or a file GDAL does not open as a
    raster but OGR lists layers of (a GeoPackage holding rasters stays a raster)."""
    file, layer = split_layer(path)
    if layer is not None:
        return True
    if str(path).lower().endswith(".mat") or not (is_gdal_name(file) or Path(file).exists()):
        return False
    require_file(file)               # a pipe or a device: refused before OGR waits on it
    try:
        with open_raster(file, check=False):       # a raster, whole or not
            return False
    except HsanomalyError:          # not a raster GDAL reads
        pass
    return bool(_layers(file))


def _features(file, layer):
    """How many features layer ``layer`` of ``file`` holds, counted where the driver does not
    know (GPX); 1 where it cannot be told: it may hold some."""
    import pyogrio

    try:
        count = pyogrio.read_info(file, layer=layer, force_feature_count=True)["features"]
    except Exception:       # pyogrio's and GDAL's errors: reading the layer will say them
        return 1
    return 1 if count is None or count < 0 else count


def _is_geojson(file):
    return str(file).lower().endswith((".geojson", ".json", ".geojsonl", ".geojsons"))


def _layers(file):
    """{layer name: whether it holds geometries} of a vector dataset; empty if it is none."""
    import pyogrio

    try:
        return {str(name): kind is not None for name, kind in pyogrio.list_layers(file)}
    except Exception:       # pyogrio's DataSourceError and GDAL's own: not a vector dataset
        return {}


# a GeoPackage's entries for a layer without a CRS (srs_id 0 and -1), which GDAL reads as
# CRSs of these names: QGIS saves a layer without a CRS under srs_id 0
GPKG_NO_CRS = ("Undefined geographic SRS", "Undefined Cartesian SRS")
GEOJSON_CRS = ("a GeoJSON file without a 'crs' member is read as EPSG:4326, lon/lat, whatever "
               "its coordinates")


def read_vector_mask(path, grid_of, required=True):
    """A uint8 mask (1 = covered by a feature) of ``path``'s features on raster ``grid_of``'s
    grid. Refused in one line: a raster with no map grid to burn onto, a file with several
    layers and none named, a layer without features, features that cannot be reprojected,
    or (``required``) features none of which fall on the raster, the usual sign of a wrong
    CRS; without ``required`` that is a warning (a mask shared by several rasters)."""
    file, layer = split_layer(path)
    crs, transform, shape, placed = _grid_of(grid_of, path)
    check_memory(path, BURN_BYTES_PER_PIXEL * shape[0] * shape[1],
                 f"burning its features onto the {shape[0]}x{shape[1]} grid of {grid_of}")
    frame = _read_layer(path, file, layer)
    empty = frame.geometry.isna() | frame.geometry.is_empty
    if empty.all():
        raise HsanomalyError(f"{path}: no feature of the layer has a geometry")
    if empty.any():
        warn_once(f"{path}: {counted(int(empty.sum()), 'feature')} without a geometry left out")
    frame = frame[~empty]
    if frame.crs is None:
        if crs is not None:
            warn_once(f"{path}: the features have no CRS; taken to be {grid_of}'s "
                      f"({crs.to_string()})")
        elif placed:                                    # as --polygons writes its targets
            warn_once(f"{path}: {grid_of} is placed on the map by {placed}, which the "
                      "features are not burnt by: they are taken in its pixel coordinates "
                      "(x the column, y minus the row)")
    elif crs is None:
        named = frame.crs.to_string() if frame.crs.to_epsg() else frame.crs.name   # not a WKT
        drawn = f"drawn in the raster's {'pixel ' if transform == PIXEL_GRID else ''}coordinates"
        drop = ("" if placed else f"if it is {drawn}, save it without a CRS in another format "
                f"({GEOJSON_CRS}), or " if _is_geojson(file) else
                f"drop the layer's CRS if it is {drawn}, or ")
        raise HsanomalyError(f"{path}: the features are in {named}, but {grid_of} has no "
                             f"{'map grid' if placed else 'CRS'}, so nothing says where they "
                             f"fall on it; {drop}rasterise the mask onto its pixels")
    given = frame
    if frame.crs is not None and crs is not None and not same_crs(
            frame.crs, crs, near=footprint(transform, shape).exterior.xy,
            tolerance=0.01 * pixel_size(transform)):
        try:
            frame = frame.to_crs(crs.to_wkt())
        except Exception as err:      # pyproj's CRSError, ProjError: no transformation known
            raise HsanomalyError(f"{path}: its features cannot be reprojected from "
                                 f"{frame.crs.name} to {grid_of}'s CRS ({crs.to_string()}): "
                                 f"{describe(err)}") from None
    turn = 360 / degrees_per_unit(crs) if crs is not None and crs.is_geographic else None
    mask, outside = _burn(frame.geometry.values, transform, shape, turn)
    n = len(frame)
    if outside == n:
        import shapely

        mapped = np.isfinite(shapely.total_bounds(frame.geometry.values)).all()
        where = (f"x {_span(frame.geometry.values, 0)}, y {_span(frame.geometry.values, 1)} "
                 "against" if mapped else    # beyond the CRS's reach: in the file's own
                 f"x {_span(given.geometry.values, 0)}, y {_span(given.geometry.values, 1)} "
                 f"in {given.crs.name}, which do not reproject to its CRS; it spans") + (
                 f" x {_span([footprint(transform, shape)], 0)}, y "
                 f"{_span([footprint(transform, shape)], 1)} in its "
                 f"{'pixel coordinates' if transform == PIXEL_GRID else 'CRS'}")
        cause = ("is the file's CRS right?" + (f" ({GEOJSON_CRS})" if _is_geojson(file)
                                                else "") if frame.crs is not None else
                 "the file has no CRS, so they were taken to be in the raster's; give the file "
                 "its CRS" if crs is not None else "the raster has no georeferencing, so they "
                 "were taken in its pixel coordinates, x the column and y minus the row (GDAL's "
                 "tools write y the row: flip y)")
        none = "its only feature does not" if n == 1 else f"none of its {n} features"
        message = f"{path}: {none} fall on {grid_of} ({where}); {cause}"
        if required:
            raise HsanomalyError(message)
        warn_once(message)
    elif outside:
        warn_once(f"{path}: {outside} of its {n} features {'lies' if outside == 1 else 'lie'} "
                  f"outside {grid_of}; left out")
    return mask


def same_crs(first, second, near=None, tolerance=0.0):
    """Whether two CRSs (pyproj's or rasterio's) place coordinates alike: equal but for axis
    order; two engineering CRSs of one name (a site grid, written by two programs two ways);
    or, ``near`` points ((xs, ys) in ``second``'s coordinates), taken from one to the other
    within ``tolerance`` of where they are (one written with a datum shift of zero to WGS 84,
    +towgs84=0, say; a shift of another datum moves them, so those are not alike)."""
    import pyproj

    first, second = (crs if isinstance(crs, pyproj.CRS) else pyproj.CRS.from_wkt(crs.to_wkt())
                     for crs in (first, second))
    if first.equals(second, ignore_axis_order=True):
        return True
    if first.is_engineering or second.is_engineering:
        return first.is_engineering and second.is_engineering and first.name == second.name
    if near is None:
        return False
    try:
        x, y = pyproj.Transformer.from_crs(second, first, always_xy=True).transform(*near)
    except Exception:          # pyproj's errors: no transformation, so not alike
        return False
    steps = np.hypot(np.subtract(x, near[0]), np.subtract(y, near[1]))
    return bool(np.all(np.isfinite(steps)) and np.max(steps) <= tolerance)


def pixel_size(transform):
    """The shorter side of a pixel, in the raster's CRS units."""
    return min(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))


def _grid_of(raster, path):
    """(crs, transform, (rows, cols), what places it otherwise) of the raster the features are
    burnt onto; a raster without a geotransform lies on ``PIXEL_GRID``, where its targets and
    the features drawn on it in QGIS are (what places it on the map otherwise, ground control
    points say, in words: ``placed_without_transform``)."""
    if raster is None:
        raise HsanomalyError(f"{path}: a vector mask is burnt onto a raster's grid, and none "
                             "was given")
    if str(raster).lower().endswith(".mat"):
        raise HsanomalyError(f"{path}: a vector mask needs a georeferenced raster to lie on, "
                             f"and {raster} is a .mat file; rasterise it onto the scene's grid")
    with open_raster(raster) as ds:
        if ds.transform.is_identity and ds.crs is None:
            return None, PIXEL_GRID, ds.shape, placed_without_transform(ds)
        return ds.crs, ds.transform, ds.shape, None


def _read_layer(path, file, layer):
    """The layer's features (geometries only) as a GeoDataFrame: the named one, or the file's
    only layer with geometries (tables of attributes, such as QGIS's layer_styles, do not
    count)."""
    import pyogrio

    require_file(path, file)
    layers = _layers(file)
    spatial = [name for name, has_geometry in layers.items() if has_geometry]
    if not layers:
        raise HsanomalyError(f"{path}: not a vector dataset OGR can read")
    if layer is None:
        if not spatial:
            raise HsanomalyError(f"{path}: no layer has geometries (only tables: "
                                 f"{', '.join(layers)})")
        if len(spatial) > 1 and str(file).lower().endswith(".gpx"):  # its five kinds of
            spatial = [name for name in spatial if _features(file, name)] or spatial  # layer
        if len(spatial) > 1:
            raise HsanomalyError(f"{path}: has {len(spatial)} layers ({', '.join(spatial)}); "
                                 f"name one as '{file}{LAYER_TAG}NAME'")
        layer = spatial[0]
    elif layer not in layers:
        alike = [name for name in layers if name.lower() == layer.lower()]
        if len(alike) != 1:
            raise HsanomalyError(f"{path}: no layer {layer!r}; it has {', '.join(layers)}")
        layer = alike[0]
    if layer not in spatial:
        raise HsanomalyError(f"{path}: layer {layer!r} has no geometries")
    try:
        frame = pyogrio.read_dataframe(file, layer=layer, columns=[])
    except Exception as err:     # pyogrio's and GDAL's errors: one line, whatever the driver
        raise HsanomalyError(f"{path}: unreadable as a vector layer ({describe(err)})") from None
    if len(frame) == 0:
        raise HsanomalyError(f"{path}: the layer has no features")
    prj = _shapefile_parts(file, [".prj"])
    if frame.crs is None and prj:       # GDAL reads a .prj it cannot parse as no CRS at all
        raise HsanomalyError(f"{prj[0]}: not a CRS GDAL can read, so nothing says where the "
                             "features lie; fix the file, or remove it to take the raster's CRS")
    if frame.crs is not None and frame.crs.name in GPKG_NO_CRS:
        import geopandas as gpd

        frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(frame.geometry.to_numpy(),
                                                        index=frame.index))
    return frame


def degrees_per_unit(crs):
    """Degrees in one unit of geographic ``crs``'s coordinates (0.9 for grads)."""
    import math

    import pyproj

    return math.degrees(pyproj.CRS.from_wkt(crs.to_wkt()).axis_info[0].unit_conversion_factor)


def _on_the_same_turn(parts, turn, outline):
    """``parts`` a whole ``turn`` of longitude off the raster's span (``outline``) moved onto
    it, part by part (GeoJSON splits a feature at 180 degrees): a raster across the
    antimeridian runs past 180 degrees (or before -180), and a feature there may be given at
    -179.98 as well as at 180.02."""
    import shapely

    x0, _, x1, _ = outline.bounds
    bounds = shapely.bounds(parts)
    placed = (bounds[:, 2] >= x0) & (bounds[:, 0] <= x1)
    parts = parts.copy()
    for shift in (-turn, turn):
        onto = ~placed & (bounds[:, 2] + shift >= x0) & (bounds[:, 0] + shift <= x1)
        parts[onto] = shapely.transform(parts[onto], lambda xy, shift=shift: xy + (shift, 0))
        placed |= onto
    return parts


def _simple_parts(geometries):
    """(the polygons, lines and points the features are made of, the feature each belongs
    to): collections are opened down to their simple parts, however deeply nested."""
    import shapely

    parts, owner = shapely.get_parts(geometries, return_index=True)
    while True:
        nested = np.isin(shapely.get_type_id(parts), [
            shapely.GeometryType.MULTIPOINT, shapely.GeometryType.MULTILINESTRING,
            shapely.GeometryType.MULTIPOLYGON, shapely.GeometryType.GEOMETRYCOLLECTION])
        if not nested.any():
            return parts, owner
        inner, at = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], inner])
        owner = np.concatenate([owner[~nested], owner[nested][at]])


def _burn(geometries, transform, shape, turn=None):
    """(mask, features that took no pixel). Each feature's parts: polygons by pixel centre,
    points and lines by every pixel they touch. A polygon that took no pixel so either holds
    no pixel centre (smaller than a pixel) and takes the pixels it touches, or another polygon
    hid it and it is burnt again alone, by centre. ``turn``: a geographic CRS's full turn of
    longitude, by which parts off the raster are moved onto it (``_on_the_same_turn``)."""
    import shapely

    parts, owner = _simple_parts(shapely.force_2d(np.asarray(geometries)))
    keep = ~shapely.is_empty(parts) & np.isfinite(shapely.bounds(parts)).all(axis=1)
    parts, owner = parts[keep], owner[keep]
    if turn is not None and len(parts):
        parts = _on_the_same_turn(parts, turn, footprint(transform, shape))
    polygon = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    mask, seen = np.zeros(shape, np.uint8), np.zeros(len(parts), bool)
    centres = _burn_all(parts, np.flatnonzero(polygon), False, transform, mask, seen)
    _burn_all(parts, np.flatnonzero(~polygon), True, transform, mask, seen)
    small = []
    for i in np.flatnonzero(~seen):
        window = _pixel_window(parts[i], transform, shape)
        if window is None:
            continue                                      # off the raster
        rows, cols = window
        if centres[rows, cols].any():     # another polygon may hide it: alone, by centre
            seen[i] = any(_burn_alone(parts[i], window, touch, transform, mask)
                          for touch in (False, True))
        else:
            small.append(i)
    _burn_all(parts, np.array(small, int), True, transform, mask, seen)
    return mask, len(geometries) - len(np.unique(owner[seen]))


def _burn_all(parts, index, touch, transform, mask, seen):
    """Burn ``parts[index]`` into ``mask`` (by centre, or ``touch``) and mark those that took a
    pixel in ``seen``; returns the raster of part numbers burnt (1-based)."""
    from rasterio.features import rasterize

    if not len(index):
        return np.zeros(mask.shape, np.uint8)
    # part numbers in the narrowest type that holds them: this raster is the burn's peak
    kind = "uint16" if len(parts) < 2**16 else "int32"
    ids = rasterize(zip(parts[index], index + 1), out_shape=mask.shape, transform=transform,
                    fill=0, all_touched=touch, dtype=kind)
    burnt = ids > 0
    mask[burnt] = 1
    seen[np.unique(ids[burnt]).astype(np.int64) - 1] = True
    return ids


def _pixel_window(part, transform, shape):
    """(row slice, col slice) of the pixels around a part's bounds, or None off the raster."""
    x0, y0, x1, y1 = part.bounds
    # (col, row) of the bounds' corners: the inverse transform, applied as to pixel positions
    corners = [map_coordinates(~transform, y, x) for x in (x0, x1) for y in (y0, y1)]
    c0 = max(int(np.floor(min(c for c, _ in corners))) - 1, 0)
    r0 = max(int(np.floor(min(r for _, r in corners))) - 1, 0)
    c1 = min(int(np.ceil(max(c for c, _ in corners))) + 1, shape[1])
    r1 = min(int(np.ceil(max(r for _, r in corners))) + 1, shape[0])
    return None if c1 <= c0 or r1 <= r0 else (slice(r0, r1), slice(c0, c1))


def _burn_alone(part, window, touch, transform, mask):
    """Burn one part into ``mask`` within ``window``; whether it took any pixel."""
    from rasterio.features import rasterize
    from rasterio.transform import Affine

    rows, cols = window
    t = transform
    x, y = map_coordinates(t, rows.start, cols.start)
    local = Affine(t.a, t.b, x, t.d, t.e, y)
    alone = rasterize([(part, 1)], out_shape=(rows.stop - rows.start, cols.stop - cols.start),
                      transform=local, fill=0, all_touched=touch, dtype="uint8")
    mask[rows, cols] |= alone
    return bool(alone.any())


def map_coordinates(transform, rows, cols):
    """(x, y) map coordinates of pixel positions (fractional rows and columns; a pixel's
    centre is its index + 0.5)."""
    return (transform.c + transform.a * cols + transform.b * rows,
            transform.f + transform.d * cols + transform.e * rows)


def footprint(transform, shape):
    """A raster's outline as a polygon in its CRS."""
    import shapely

    rows, cols = shape
    return shapely.Polygon([map_coordinates(transform, row, col)
                            for col, row in ((0, 0), (cols, 0), (cols, rows), (0, rows))])


def _span(shapes, axis):
    """"low to high" of the shapes' bounds along x (0) or y (1), for a message."""
    import shapely

    bounds = shapely.total_bounds(shapes)
    return f"{bounds[axis]:.8g} to {bounds[axis + 2]:.8g}"
