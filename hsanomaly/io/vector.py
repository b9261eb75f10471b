"""Vector masks: target polygons, points or lines (GeoPackage, Shapefile, GeoJSON, anything
OGR reads) burnt onto a raster's grid, so that a truth digitised in QGIS evaluates a heatmap
as a truth raster would.

A pixel is a polygon's when its centre lies inside (GDAL's rule); a polygon too small to hold
a pixel centre, a point or a line takes every pixel it touches, so that no feature is lost.
Features in another CRS are reprojected onto the raster's; one without a CRS is taken to be in
the raster's, with a warning.
"""

from pathlib import Path

import numpy as np

from ..errors import HsanomalyError
from ..spelling import counted
from .checks import warn
from .source import is_gdal_name, open_raster

# QGIS names one layer of a file so (a layer's "source"): "targets.gpkg|layername=truth"
LAYER_TAG = "|layername="


def split_layer(path):
    """(the file, the layer or None) of a vector source; QGIS's "|layername=" picks the layer
    (other "|" options such as a subset filter are refused: they would be ignored)."""
    text = str(path)
    if "|" not in text:
        return text, None
    file, _, options = text.partition("|")
    layer = None
    for option in options.split("|"):
        key, _, value = option.partition("=")
        if key != "layername" or not value:
            raise HsanomalyError(f"{path}: only '|layername=NAME' is understood after the file "
                                 f"name, not '|{option}' (save the filtered layer to a file)")
        layer = value
    return file, layer


def is_vector(path):
    """True for a vector dataset: one named with a layer, or a file GDAL does not open as a
    raster but OGR lists layers of (a GeoPackage holding rasters stays a raster)."""
    file, layer = split_layer(path)
    if layer is not None:
        return True
    if str(path).lower().endswith(".mat") or not (is_gdal_name(file) or Path(file).exists()):
        return False
    import rasterio

    try:
        with rasterio.open(file):
            return False
    except rasterio.errors.RasterioIOError:
        pass
    return bool(len(_layers(file)))


def _layers(file):
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(file)]
    except Exception:       # pyogrio's DataSourceError and GDAL's own: not a vector dataset
        return []


def read_vector_mask(path, grid_of):
    """A uint8 mask (1 = covered by a feature) of ``path``'s features on raster ``grid_of``'s
    grid. Refused in one line: a raster with no map grid to burn onto, a file with several
    layers and none named, a layer without features, or features none of which fall on the
    raster (the usual sign of a wrong CRS)."""
    file, layer = split_layer(path)
    crs, transform, shape = _grid_of(grid_of, path)
    frame = _read_layer(path, file, layer)
    empty = frame.geometry.isna() | frame.geometry.is_empty
    if empty.all():
        raise HsanomalyError(f"{path}: no feature of the layer has a geometry")
    if empty.any():
        warn(f"{path}: {counted(int(empty.sum()), 'feature')} without a geometry left out")
    frame = frame[~empty]
    if frame.crs is None:
        if crs is not None:
            warn(f"{path}: the features have no CRS; taken to be {grid_of}'s "
                 f"({crs.to_string()})")
    elif crs is None:
        raise HsanomalyError(f"{path}: the features are in {frame.crs.to_string()}, but "
                             f"{grid_of} has no CRS, so nothing says where they fall on it")
    elif not frame.crs.equals(crs):
        frame = frame.to_crs(crs.to_wkt())
    return _burn(path, grid_of, frame.geometry, transform, shape)


def _grid_of(raster, path):
    """(crs, transform, (rows, cols)) of the raster the features are burnt onto."""
    if str(raster).lower().endswith(".mat"):
        raise HsanomalyError(f"{path}: a vector mask needs a georeferenced raster to lie on, "
                             f"and {raster} is a .mat file; rasterise it onto the scene's grid")
    with open_raster(raster) as ds:
        if ds.transform.is_identity and ds.crs is None:
            placed = "ground control points only" if ds.gcps[0] else "no georeferencing"
            raise HsanomalyError(f"{path}: a vector mask needs a raster on a map grid, and "
                                 f"{raster} has {placed}; rasterise the mask onto its pixels")
        return ds.crs, ds.transform, ds.shape


def _read_layer(path, file, layer):
    """The layer's features as a GeoDataFrame: the named one, or the file's only layer."""
    import pyogrio

    if not (is_gdal_name(file) or Path(file).exists()):
        raise HsanomalyError(f"{path}: file not found")
    layers = _layers(file)
    if not layers:
        raise HsanomalyError(f"{path}: not a vector dataset OGR can read")
    if layer is None and len(layers) > 1:
        raise HsanomalyError(f"{path}: has {len(layers)} layers ({', '.join(layers)}); name "
                             f"one as {file}{LAYER_TAG}NAME")
    if layer is not None and layer not in layers:
        raise HsanomalyError(f"{path}: no layer {layer!r}; it has {', '.join(layers)}")
    try:
        frame = pyogrio.read_dataframe(file, layer=layer or layers[0])
    except Exception as err:     # pyogrio's and GDAL's errors: one line, whatever the driver
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HsanomalyError(f"{path}: unreadable as a vector layer ({detail})") from None
    if not hasattr(frame, "geometry"):
        raise HsanomalyError(f"{path}: the layer has no geometry column")
    if len(frame) == 0:
        raise HsanomalyError(f"{path}: the layer has no features")
    return frame


def _burn(path, grid_of, geometries, transform, shape):
    """Burn the features: by pixel centre, then each feature that took no pixel so (a polygon
    smaller than a pixel, or one another feature hides) alone, by the pixels it touches if it
    holds no pixel centre."""
    import shapely
    from rasterio.features import rasterize

    shapes = [shapely.force_2d(g) for g in geometries]
    rows, cols = shape
    t = transform
    footprint = shapely.Polygon([(t.c + t.a * col + t.b * row, t.f + t.d * col + t.e * row)
                                 for col, row in ((0, 0), (cols, 0), (cols, rows), (0, rows))])
    inside = shapely.intersects(shapes, footprint)
    outside = int((~inside).sum())
    if outside == len(shapes):
        none = "its only feature does not" if len(shapes) == 1 else \
            f"none of its {len(shapes)} features"
        raise HsanomalyError(f"{path}: {none} fall on {grid_of} (x {_span(shapes, 0)}, y "
                             f"{_span(shapes, 1)} against x {_span([footprint], 0)}, y "
                             f"{_span([footprint], 1)} in its CRS); are they in the CRS their "
                             "file says? (is the file's CRS right?)")
    if outside:
        warn(f"{path}: {outside} of its {len(shapes)} features "
             f"{'lies' if outside == 1 else 'lie'} outside {grid_of}; left out")
    ids = rasterize(zip(shapes, range(1, len(shapes) + 1)), out_shape=shape,
                    transform=transform, fill=0, dtype="int32")
    mask = (ids > 0).astype(np.uint8)
    for i in np.setdiff1d(np.flatnonzero(inside) + 1, ids):
        for all_touched in (False, True):
            alone = rasterize([(shapes[i - 1], 1)], out_shape=shape, transform=transform,
                              fill=0, all_touched=all_touched, dtype="uint8")
            if alone.any():
                mask |= alone
                break
    return mask


def _span(shapes, axis):
    """"low to high" of the shapes' bounds along x (0) or y (1), for a message."""
    import shapely

    bounds = shapely.total_bounds(shapes)
    return f"{bounds[axis]:.8g} to {bounds[axis + 2]:.8g}"
