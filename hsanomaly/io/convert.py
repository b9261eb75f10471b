"""Benchmark .mat scenes to tiled, compressed GeoTIFFs (cube plus truth mask)."""

import warnings

import numpy as np

from ..errors import HsanomalyError
from .atomic import native_quiet, stage_raster, staged
from .mat import UNKNOWN, read_mat
from .ownership import SOFTWARE, is_own_geotiff
from .paths import GEOTIFF_SUFFIXES, check_paths, check_replaceable_file, check_suffix


def write_geotiff(path, array, crs=None, transform=None, nodata=None, descriptions=None,
                  stage=None):
    """Write (bands, rows, cols) ``array`` as a tiled deflate GeoTIFF through the one write
    path: read back and checked before it replaces ``path`` (with ``stage``, together with
    that stage's other outputs).

    With no ``crs``/``transform`` the file carries no georeferencing at all rather than
    an invented one (GDAL then reports pixel coordinates).
    """
    if stage is None:
        with staged() as own:
            return write_geotiff(path, array, crs, transform, nodata, descriptions, own)
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    bands, rows, cols = array.shape
    profile = {"driver": "GTiff", "dtype": array.dtype.name, "count": bands, "width": cols,
               "height": rows, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate", "interleave": "pixel" if bands > 1 else "band",
               "BIGTIFF": "IF_SAFER"}
    if array.dtype.kind == "f":
        profile["predictor"] = 3
    for key, value in (("crs", crs), ("transform", transform), ("nodata", nodata)):
        if value is not None:
            profile[key] = value
    tmp = stage_raster(stage, path, cols, rows, bands)
    with warnings.catch_warnings(), native_quiet():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
            dst.update_tags(TIFFTAG_SOFTWARE=SOFTWARE)
            for i, d in enumerate(descriptions or []):
                dst.set_band_description(i + 1, d)


def convert_mat(src, dst, truth=None, overwrite=False):
    """Convert a .mat scene; returns (bands, rows, cols, anomaly pixel count or None).

    The cube and truth GeoTIFFs are replaced together, once both are written and checked;
    an output that names the input or the other output, or (without ``overwrite``) an
    existing file hsanomaly did not write, is refused before anything is read.
    """
    check_paths([("SRC", src)], [("DST", dst), ("--truth", truth)])
    for label, path in (("DST", dst), ("--truth", truth)):
        if path is not None:
            check_suffix(path, label, GEOTIFF_SUFFIXES, "a GeoTIFF")
        if path is not None and not overwrite:
            check_replaceable_file(path, label, is_own_geotiff, "a GeoTIFF")
    cube, gt = read_mat(src)
    if truth is not None and gt is None:
        raise HsanomalyError(f"{src}: --truth asked for, but the .mat file has no ground-truth variable")
    if np.all(cube == np.round(cube)):  # integer benchmark cubes stay compact and exact
        for dtype in (np.uint16, np.int16):
            info = np.iinfo(dtype)
            if info.min <= cube.min() and cube.max() <= info.max:
                cube = cube.astype(dtype)
                break
    with staged() as stage:
        write_geotiff(dst, cube, stage=stage)
        if truth is not None:      # NaN in the .mat truth: nodata, never a target
            unknown = bool((gt == UNKNOWN).any())
            write_geotiff(truth, gt.astype(np.uint8), nodata=UNKNOWN if unknown else None,
                          stage=stage)
    return cube.shape + ((int((gt == 1).sum()) if gt is not None else None),)
