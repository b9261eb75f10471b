"""Benchmark .mat scenes to tiled, compressed GeoTIFFs (cube plus truth mask)."""

import json
import os

import numpy as np

from ..errors import HsanomalyError, ignoring
from ..spelling import spell
from .atomic import native_quiet, stage_raster, staged
from .checks import one_job
from .heatmap import geotiff_profile
from .mat import read_mat, read_mat_wavelengths
from .ownership import (CONVERTED_TAG, SOFTWARE, converted_from, input_record, is_own_detect_output,
                        is_own_geotiff, other_input)
from .paths import (GEOTIFF_SUFFIXES, check_path_kind, check_paths, check_replaceable_file,
                    check_suffix, refuse_foreign_side_files, side_files)


def write_geotiff(path, array, crs=None, transform=None, nodata=None, descriptions=None,
                  stage=None, wavelengths=None, tags=None):
    """Write (bands, rows, cols) ``array`` as a tiled deflate GeoTIFF through the one write
    path: read back and checked before it replaces ``path`` (with ``stage``, together with
    that stage's other outputs). ``wavelengths``: band centres in nm, written as each band's
    ``wavelength`` metadata (what GDAL's ENVI driver writes and hsanomaly reads back).
    ``tags``: more dataset tags.

    With no ``crs``/``transform`` the file carries no georeferencing at all rather than
    an invented one (GDAL then reports pixel coordinates).
    """
    if stage is None:
        with staged() as own:
            return write_geotiff(path, array, crs, transform, nodata, descriptions, own,
                                 wavelengths, tags)
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    bands, rows, cols = array.shape
    profile = {**geotiff_profile(cols, rows, bands, array.dtype),
               "interleave": "pixel" if bands > 1 else "band"}
    for key, value in (("crs", crs), ("transform", transform), ("nodata", nodata)):
        if value is not None:
            profile[key] = value
    tmp = stage_raster(stage, path, cols, rows, bands)
    with ignoring(NotGeoreferencedWarning), native_quiet():
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
            dst.update_tags(TIFFTAG_SOFTWARE=SOFTWARE, **(tags or {}))
            for i, d in enumerate(descriptions or []):
                dst.set_band_description(i + 1, d)
            for i, centre in enumerate(wavelengths or []):
                dst.update_tags(i + 1, wavelength=f"{centre:.6g}", wavelength_units="nanometers")


@one_job()
def convert_mat(src, dst, truth=None, overwrite=False):
    """Convert a .mat scene; returns (bands, rows, cols, anomaly pixel count or None).

    The cube and truth GeoTIFFs are replaced together, once both are written and checked;
    an output that names the input or the other output, or (without ``overwrite``) an
    existing file hsanomaly did not write, is refused before anything is read.
    """
    rasters = [(spell("dst"), dst), (spell("truth"), truth)]
    for label, path in [(spell("src"), src)] + rasters:
        if path is not None:
            check_path_kind(path, label)
    check_paths([(spell("src"), src)], rasters + side_files(rasters))
    if not str(src).lower().endswith(".mat"):
        raise HsanomalyError(f"{src}: convert reads MATLAB .mat scenes; train and detect read "
                             "GeoTIFF, ENVI and every other raster GDAL reads as they are")
    for label, path in rasters:
        if path is not None:
            check_suffix(path, label, GEOTIFF_SUFFIXES, "a GeoTIFF")
        if path is not None and not overwrite:
            check_replaceable_file(path, label, is_own_geotiff, "a GeoTIFF")
            _refuse_other_results(path, label, src)
    if not overwrite:
        refuse_foreign_side_files(rasters, is_own_geotiff)
    cube, labels = read_mat(src, labels=True)
    if truth is not None and labels is None:
        raise HsanomalyError(f"{src}: {spell('truth')} asked for, but the .mat file has no ground-truth variable")
    cube = _exact_type(src, cube)
    tags = {CONVERTED_TAG: json.dumps(input_record(src))}
    with staged() as stage:
        write_geotiff(dst, cube, stage=stage, wavelengths=read_mat_wavelengths(src, len(cube)),
                      tags=tags)
        if truth is not None:
            array, nodata = _truth_raster(labels)
            write_geotiff(truth, array, nodata=nodata, stage=stage, tags=tags)
    targets = None if labels is None else int(np.count_nonzero(np.nan_to_num(labels)))
    return cube.shape + (targets,)


def _refuse_other_results(path, label, src):
    """Refuse to replace, without --overwrite, what hsanomaly wrote but not from ``src``: a
    heatmap of detect, or a scene converted from another .mat (a slip in a name). A symbolic
    link is replaced, never followed (``check_replaceable_file``)."""
    if os.path.islink(path):
        return
    if is_own_detect_output(path):
        raise HsanomalyError(f"{path}: {label} holds a result of detect, not a converted scene; "
                             f"choose another name, or pass {spell('overwrite', True)}")
    other = other_input(converted_from(path), src)
    if other is not None:
        raise HsanomalyError(f"{path}: {label} holds the scene converted from another input "
                             f"({other}), which this conversion of {os.path.basename(src)} "
                             f"would replace; choose another name, or pass "
                             f"{spell('overwrite', True)}")


def _truth_raster(labels):
    """(array (1, rows, cols), nodata) holding the truth as the file does: its labels in the
    smallest integer type (a labelled map keeps its labels), NaN (not known either way) as
    nodata, never a target."""
    labels = np.asarray(labels)
    unknown = np.isnan(labels) if labels.dtype.kind == "f" else np.zeros(labels.shape, bool)
    known = labels[~unknown]
    if labels.dtype.kind in "uib" or np.all(known == np.round(known)):
        low, high = (known.min(), known.max()) if known.size else (0, 0)
        for dtype in (np.uint8, np.uint16, np.int16, np.int32):
            info = np.iinfo(dtype)
            nodata = info.max if unknown.any() else None    # a value no label takes
            if info.min <= low and high <= info.max - (nodata is not None):
                array = np.where(unknown, nodata or 0, np.nan_to_num(labels)).astype(dtype)
                return array[None], nodata
    return labels.astype(np.float32)[None], (float("nan") if unknown.any() else None)


def _exact_type(src, cube):
    """The cube in the smallest GeoTIFF type that holds its values exactly: whole numbers in
    16 or 32 bits (a float64 file of counts too), other floats in float32, which pixels are
    scored in, once the checks that a float64 raster gets have passed (values beyond its
    range refused, too coarse a rounding said)."""
    from .values import check_float32_range, coarsest_in_float32, warn_coarse

    whole = cube.dtype.kind in "ui" or bool(np.all(cube == np.round(cube)))
    if whole and cube.size:
        low, high = cube.min(), cube.max()
        for dtype in (np.uint16, np.int16, np.int32, np.uint32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return cube.astype(dtype)
    if cube.dtype.kind in "ui":
        return cube                                  # 64-bit integers: GeoTIFF holds them
    if cube.dtype != np.float32:
        nodata, bands = np.isnan(cube), list(range(1, len(cube) + 1))
        check_float32_range(src, cube, nodata, bands)
        warn_coarse(src, coarsest_in_float32(cube, nodata, bands))
    return cube.astype(np.float32, copy=False)
