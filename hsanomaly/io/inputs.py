"""The in-memory inputs ``Detector`` takes, each as a pixel source and a way back to its form:
numpy cubes (bands, rows, cols), masked arrays (the mask is nodata), open rasterio datasets,
and xarray DataArrays (the band dimension found by name; fill values, scale and offset in
the attributes, as an unmasked rioxarray read carries them, honoured as a raster's are)."""

import os

import numpy as np

from ..errors import HsanomalyError, describe
from ..spelling import kind_of
from .bandaxis import check_band_axis
from .checks import warn_once
from .source import ArraySource, RasterSource, band_scaling
from .tiff import check_part_read
from .units import nanometres


def as_source(X):
    """(a pixel source over X, a function giving a (rows, cols) or (k, rows, cols) result X's
    form back): numpy arrays stay numpy, xarray DataArrays come back with coordinates."""
    if hasattr(X, "read") and getattr(X, "closed", False) is True:   # asked before GDAL is
        raise HsanomalyError(f"{X.name}: the rasterio dataset is closed")
    if hasattr(X, "read") and hasattr(X, "profile"):          # an open rasterio dataset
        if getattr(X, "mode", "r") == "w":                   # "r+" reads, "w" does not
            raise HsanomalyError(f"{X.name}: the rasterio dataset is open for writing only; "
                                 "open it with mode 'r' or 'r+'")
        return RasterSource.from_dataset(X), _same
    if is_data_array(X):
        source, wrap = _xarray_source(X)
    elif isinstance(X, np.ma.MaskedArray):
        check_band_axis(np.ma.getdata(X), "the masked array", mask=np.ma.getmaskarray(X))
        source, wrap = _masked_source(X), _same
    elif isinstance(X, np.ndarray) or (hasattr(X, "__array__") and not hasattr(X, "data_vars")):
        cube = np.asarray(X)          # once: a dask or torch array computes or copies each time
        check_band_axis(cube, "the array")
        source, wrap = ArraySource(cube), _same
    else:
        hint = ("; a file's name: open it (rasterio.open), or score the file with "
                "hsanomaly.detect" if isinstance(X, (str, os.PathLike)) else
                "; an xarray Dataset: give one of its variables" if hasattr(X, "data_vars")
                else "")
        raise HsanomalyError(f"{type(X).__name__}: expected a numpy cube (bands, rows, cols), an "
                             f"open rasterio dataset or an xarray DataArray (band, y, x){hint}")
    source.band_axis_checked = True         # whole, or its band dimension named
    return source, wrap


def _same(value):
    return value


def _masked_source(X):
    """A masked pixel is left out (NaN score, not in the fit), as nodata is in a raster; a pixel
    masked in one band is masked, as a raster's per-band nodata makes it."""
    gaps = np.ma.getmaskarray(X)
    return ArraySource(np.ma.getdata(X), valid=~gaps.any(axis=0), gaps=gaps)


# names of the band and of the spatial dimensions in the xarray conventions users meet
# (rioxarray's band/y/x, xarray's own lat/lon, image rows/cols)
BAND_DIMS = ("band", "bands", "wavelength", "wavelengths", "wl", "channel", "channels")
SPATIAL_DIMS = ("y", "x", "lat", "lon", "latitude", "longitude", "row", "rows", "col", "cols",
                "column", "columns", "line", "lines", "sample", "samples", "northing", "easting")


# the (y, x) dimension names of a map's axes, whose coordinates place pixels (``placement``)
MAP_AXES = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))
# coordinates that number a result's pixels in the whole grid (rows, columns), where its map
# coordinates cannot carry the grid (rotated, or axes not named as a map's): a cut keeps them.
# Named and marked as ours (a user's own row/col may count from 1), and read only so marked.
INDEX_COORDS = ("grid_row", "grid_col")
INDEX_MARK = {"hsanomaly": "pixel number in the grid of the transform attribute (0 = first)"}


def map_axes(value):
    """The (y, x) dimensions of a DataArray named as a map's axes (``MAP_AXES``), or None."""
    dims = {str(d).lower(): d for d in value.dims}
    return next(((dims[y], dims[x]) for y, x in MAP_AXES if y in dims and x in dims), None)


def band_dimension(X):
    """The band dimension of a 3-D DataArray: the one named like a band, else the one left
    beside two spatially named ones, else (no dimension named either way, as xarray's
    dim_0, dim_1, dim_2) the first, as documented. Anything else is refused, not guessed."""
    bands = [d for d in X.dims if str(d).lower() in BAND_DIMS]
    spatial = [d for d in X.dims if str(d).lower() in SPATIAL_DIMS]
    if len(bands) == 1 and len(spatial) <= 2:
        return bands[0]
    if not bands and len(spatial) == 2:
        return next(d for d in X.dims if d not in spatial)
    if not bands and not spatial:
        return X.dims[0]
    raise HsanomalyError(f"{_name(X)}: cannot tell which of its dimensions {X.dims} "
                         "holds the bands; name it 'band' (X.rename({...: 'band'}))")


def _name(X):
    """How messages name a DataArray (an unnamed one's name is None)."""
    return "an unnamed DataArray" if X.name is None else f"DataArray {X.name!r}"


# where an unmasked DataArray (rioxarray's open_rasterio, decode_cf=False) names its nodata
FILL_ATTRS = ("_FillValue", "nodata", "missing_value")


def _filled(values, attrs):
    """Where a cube whose attributes name a fill value holds it, band by band (None: no fill
    value named): a pixel holding it in any band is nodata, as in a raster."""
    fill = next((attrs[name] for name in FILL_ATTRS if attrs.get(name) is not None), None)
    try:
        fill = float(np.ravel(fill)[0])
    except (TypeError, ValueError, IndexError):
        return None
    if not np.isfinite(fill):
        return None                 # NaN fills are nodata anyway
    return values == fill


def _scaling(values, attrs, name, numbers=None):
    """The attributes' ``scale_factor`` and ``add_offset`` (one number, or one per band) as
    ``band_scaling`` gives a raster's band scales and offsets, which ``ArraySource`` applies
    as a raster's are; None where there are none, or 1 and 0 (rioxarray writes them always:
    no copy of the cube then). Where the bands' scales (or offsets) differ, rioxarray gives
    them as ``scales`` (``offsets``), one per band of the file, and keeps them whole when
    bands are selected: ``numbers``, the file's band numbers (rioxarray's band coordinate,
    from 1), pick the selected bands' own."""
    scale = _per_band(attrs.get("scale_factor", attrs.get("scales")), len(values), numbers)
    offset = _per_band(attrs.get("add_offset", attrs.get("offsets")), len(values), numbers)
    if scale is None and offset is None:
        return None
    return band_scaling(1.0 if scale is None else scale, 0.0 if offset is None else offset,
                        len(values), lambda: HsanomalyError(
                            f"{name}: its scale and offset attributes are not usable "
                            f"(scale {scale!r}, offset {offset!r}, for {len(values)} bands); "
                            "each must be finite, one value or one per band kept"))


def _per_band(given, bands, numbers):
    """``given`` (one value, or one per band of the file) for the ``bands`` kept: where it holds
    more, those of the file's band ``numbers``; as it is otherwise (checked by its user)."""
    listed = np.ravel(given) if isinstance(given, (list, tuple, np.ndarray)) else None
    if listed is None or len(listed) in (1, bands) or numbers is None:
        return given
    numbers = np.asarray(numbers)
    if numbers.dtype.kind not in "iu" or len(numbers) != bands or numbers.min() < 1 \
            or numbers.max() > len(listed):
        return given
    return listed[numbers - 1]


# coordinates along the band dimension that give each band's centre wavelength
CENTRE_COORDS = ("wavelength", "wavelengths", "wl", "center_wavelength", "centre_wavelength")


def _band_centres(X, band_dim):
    """The bands' centre wavelengths in nm from a numeric coordinate along the band dimension
    named like one (the dimension's own, or another such as rioxarray's band numbers beside
    a ``wavelength`` coordinate), in its ``units`` attribute; None without one, so a model's
    band check has what a raster's header gives it."""
    for coord_name, coord in X.coords.items():
        if (str(coord_name).lower() in CENTRE_COORDS and coord.dims == (band_dim,)
                and np.issubdtype(coord.dtype, np.number)):
            return nanometres(np.asarray(coord.values).tolist(), coord.attrs.get("units"))
    return None


# the attributes a score keeps from its input: where it lies, not what its values mean (a
# fill value, scale or units copied onto the scores would be applied to them by the next reader)
PLACE_ATTRS = ("crs", "transform", "grid_mapping", "spatial_ref", "AREA_OR_POINT", "res")


def _xarray_source(X):
    name = str(X.name) if X.name is not None else "<DataArray>"
    if X.ndim != 3:
        raise HsanomalyError(f"{_name(X)}: expected dimensions (band, y, x), got {X.dims}")
    band_dim = band_dimension(X)
    spatial = [d for d in X.dims if d != band_dim]
    X = X.transpose(band_dim, *spatial)
    origin = X.encoding.get("source")      # the file rioxarray read: damage GDAL reads silently
    if isinstance(origin, str):
        check_part_read([origin], X.size * X.dtype.itemsize, nodata=any(
            k in X.attrs or k in X.encoding for k in ("_FillValue", "nodata")))
    values = np.asarray(X.values)
    if not any(str(d).lower() in BAND_DIMS + SPATIAL_DIMS for d in X.dims):   # the first guessed
        check_band_axis(values, _name(X), advice=lambda axis, where: "No dimension is named, so "
                        f"the first was taken for the bands: if they are {where}, name theirs: "
                        f"X.rename({{{X.dims[axis]!r}: 'band'}})")
    gaps = _filled(values, X.attrs)
    valid = None if gaps is None else ~gaps.any(axis=0)
    partial = gaps is not None and bool((~valid & ~gaps.all(axis=0)).any())   # check_data's
    numbers = X.coords[band_dim].values if band_dim in X.coords else None
    source = ArraySource(values, valid=valid, name=name, wavelengths=_band_centres(X, band_dim),
                         gaps=gaps if partial else None,
                         scaling=_scaling(values, X.attrs, name, numbers))
    attrs = {k: v for k, v in X.attrs.items() if k in PLACE_ATTRS}
    centres = _centres_of(X, spatial)

    def wrap(value):
        import xarray as xr

        coords = {d: X.coords[d] for d in spatial if d in X.coords}
        coords.update(centres)
        coords.update({name: c for name, c in X.coords.items()
                       if not set(c.dims) & {band_dim} and name not in coords})
        if value.ndim == 2:        # NaN where no score, declared as detect's heatmap declares it
            return xr.DataArray(value, dims=spatial, coords=coords, name="score",
                                attrs={**attrs, "long_name": "anomaly score (high = anomalous)",
                                       "_FillValue": float("nan")})
        dims = ("output_band", *spatial)
        return xr.DataArray(value, dims=dims, coords=coords, attrs=dict(attrs))

    return source, wrap


def _centres_of(X, spatial):
    """The coordinates a result of ``X`` (spatial dimensions ``spatial``) needs so that a cut
    of it is still placed right (``placement``), the ``transform`` attribute keeping the whole
    grid's origin: the pixel centres that attribute gives map axes without coordinates; where
    those cannot carry the grid (rotated, or axes not named as a map's), the pixels' numbers
    (``INDEX_COORDS``); {} where nothing needs placing or coordinates place it already."""
    try:
        transform, _ = placement(X)
    except HsanomalyError:          # attributes that place nothing: the scores need none
        return {}
    axes = map_axes(X)
    if transform is None:
        return {}
    if axes and not (transform.b or transform.d):
        if set(axes) & set(X.coords):
            return {}
        (y, x) = axes
        return {x: transform.c + (np.arange(X.sizes[x]) + 0.5) * transform.a,
                y: transform.f + (np.arange(X.sizes[y]) + 0.5) * transform.e}
    if set(INDEX_COORDS) & set(X.coords):
        return {}
    rows, cols = axes or spatial
    return {INDEX_COORDS[0]: (rows, np.arange(X.sizes[rows]), INDEX_MARK),
            INDEX_COORDS[1]: (cols, np.arange(X.sizes[cols]), INDEX_MARK)}


def as_band(value, name):
    """A (rows, cols) input, scores or a mask in memory, as a masked array (masked = nodata or
    unknown): numpy's, a masked array, a DataArray (its fill value, ``FILL_ATTRS``, masked:
    an unmasked rioxarray read of a truth file carries its nodata so), anything numpy
    converts; one band of a (1, rows, cols) array too."""
    if is_data_array(value):
        if map_axes(value):                             # rows are y, whatever the order
            value = value.transpose(..., *map_axes(value))
        values = np.asarray(value.values)
        gaps = _filled(values[None], value.attrs)
        value = values if gaps is None else np.ma.masked_array(values, gaps[0])
    if hasattr(value, "data_vars"):                     # an xarray Dataset: which variable?
        raise HsanomalyError(f"{name}: expected a raster's path or an array, got an xarray "
                             "Dataset; give one of its variables (a DataArray)")
    if not (hasattr(value, "__array__") or isinstance(value, (list, tuple))):
        raise HsanomalyError(f"{name}: expected a raster's path or an array, got "
                             f"{kind_of(value)}")
    try:
        array = np.ma.asarray(value)
    except (TypeError, ValueError) as err:              # ragged lists, objects numpy refuses
        raise HsanomalyError(f"{name}: expected a (rows, cols) array of numbers, got "
                             f"{kind_of(value)} numpy cannot read as one "
                             f"({describe(err)})") from None
    if array.ndim == 3 and array.shape[0] == 1:          # one band, as a raster reads it
        array = array[0]
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise HsanomalyError(f"{name}: expected a (rows, cols) array of numbers, got "
                             f"{array.dtype} of shape {array.shape}")
    return array


def is_data_array(value):
    return type(value).__module__.startswith("xarray") and type(value).__name__ == "DataArray"


def placement(value):
    """(geotransform, CRS) that a DataArray's attributes give it: ``transform`` (an Affine or
    its six numbers) and ``crs``, as hsanomaly's results keep them from their input
    (``PLACE_ATTRS``), or a ``spatial_ref`` coordinate's ``GeoTransform`` and ``crs_wkt``
    (the CF and GDAL convention rioxarray writes); (None, None) for anything else. Where it
    has ``x`` and ``y`` coordinates, they place its pixels (``_by_coordinates``). One that
    does not parse is refused in one line. One with a CRS but no transform is placed by its
    coordinates alone, as rioxarray places it (``rio.write_crs`` on an array built by hand)."""
    if not is_data_array(value):
        return None, None
    from affine import Affine

    ref = value.coords["spatial_ref"].attrs if "spatial_ref" in value.coords else {}
    transform, crs = value.attrs.get("transform"), value.attrs.get("crs", ref.get("crs_wkt"))
    if transform is None and ref.get("GeoTransform"):
        try:        # GDAL's order: x0, a, b, y0, d, e
            transform = Affine.from_gdal(*map(float, str(ref["GeoTransform"]).split()))
        except (TypeError, ValueError):
            raise HsanomalyError(f"{_name(value)}: its spatial_ref's GeoTransform "
                                 f"{ref['GeoTransform']!r} is not six numbers") from None
    transform = as_transform(transform, f"{_name(value)}'s transform attribute")
    crs = as_crs(crs, f"{_name(value)}'s crs attribute")
    degrees = crs is not None and crs.is_geographic
    if transform is None and crs is not None:
        transform = _by_coordinates(value, None, degrees)
    elif transform is not None:
        if pixel_centres(value) is not None and not (transform.b or transform.d):
            transform = _by_coordinates(value, transform, degrees)
        else:
            transform = _by_index(value, transform)
    return transform, crs


# x/y coordinates further than this share of a pixel from an even grid are no grid: a row or
# column left out of a cut moves its neighbours half a pixel
GRID_TOLERANCE = 0.25
# ... and coordinates whose storage rounds them by this share of a pixel or more (float32
# degrees of a fine grid) cannot tell such a gap from rounding: they place nothing
COARSE = 0.45


def pixel_centres(value):
    """{"x", "y": (1-D float64 pixel centres, how far their storage may have rounded them)}
    of a DataArray whose map axes (``map_axes``: y and x, lat and lon...) both have finite
    coordinates, or None."""
    axes = map_axes(value) if is_data_array(value) else None
    if axes is None or not set(axes) <= set(value.coords):
        return None
    found = {}
    for dim, name in zip(("y", "x"), axes):
        stored = np.asarray(value.coords[name].values)
        if stored.ndim != 1 or not len(stored) or stored.dtype.kind not in "iuf" \
                or not np.isfinite(stored).all():
            return None
        rounding = float(np.spacing(np.abs(stored).max())) if stored.dtype.kind == "f" else 0.0
        found[dim] = (stored.astype(np.float64), rounding)       # float32 degrees, say
    return found


def _by_coordinates(value, transform, degrees=False):
    """The transform of a DataArray's pixels by its ``x`` and ``y`` coordinates (pixel
    centres): they follow a cut, a step, a sort or a flip (``isel``, ``sortby``), while the
    attributes keep the whole array's grid, whose pixel size serves an axis of one
    coordinate, or of coordinates stored too coarsely to tell a pixel (``COARSE``: those
    still say where a cut begins). Coordinates off an even grid are refused. Without a
    ``transform``, the coordinates alone: None where they cannot tell a pixel's size.
    Longitudes (``degrees``: of a geographic CRS) that wrap at 180 are unwrapped."""
    from affine import Affine

    centres = pixel_centres(value)
    if centres is None:
        return transform
    grid, names = {}, dict(zip(("y", "x"), map_axes(value)))
    for dim, size in (("x", None if transform is None else transform.a),
                      ("y", None if transform is None else transform.e)):
        at, rounding = centres[dim]
        if degrees and dim == "x" and len(at) > 2 and np.ptp(np.diff(at)) > 180:
            at = np.unwrap(at, period=360.0)
        n = np.arange(len(at))
        if size is None and (len(at) < 2 or rounding > COARSE * np.ptp(at) / (len(at) - 1)):
            return None                                      # nothing tells a pixel's size
        if len(at) > 1 and (size is None or rounding <= COARSE * abs(size)):   # least squares
            dn = n - n.mean()
            size = float(np.dot(dn, at - at.mean()) / np.dot(dn, dn))
            off = np.abs(at - at.mean() - size * dn).max()
            if size == 0 or off > max(GRID_TOLERANCE * abs(size), rounding):
                raise HsanomalyError(f"{_name(value)}: its {names[dim]} coordinates are not "
                                     "evenly spaced, so no geotransform places its pixels (a cut "
                                     "that left rows or columns out?)")
        grid[dim] = (float(np.mean(at - size * n)) - size / 2, float(size))
        pixel = None if transform is None else transform.a if dim == "x" else transform.e
        if pixel is not None and abs(abs(size) - abs(pixel)) <= GRID_TOLERANCE * abs(pixel):
            # a cut or flip keeps the centres on the grid's (a coarsened grid has its own)
            shift = (at[0] - (transform.c if dim == "x" else transform.f) - pixel / 2) / pixel
            if abs(shift - round(shift)) * abs(pixel) > max(GRID_TOLERANCE * abs(pixel),
                                                             rounding):
                warn_once(f"{_name(value)}: its {names[dim]} coordinates lie "
                          f"{abs(shift - round(shift)):.2g} of a pixel off the grid of its "
                          "transform attribute (pixel corners, not centres?); they place its "
                          "pixels")
    (x0, a), (y0, e) = grid["x"], grid["y"]
    return Affine(a, 0.0, x0, 0.0, e, y0)


def _by_index(value, transform):
    """The transform of a DataArray's pixels by their numbers in the whole grid
    (``INDEX_COORDS`` marked ``INDEX_MARK``, which a cut, a step or a flip keeps), composed
    onto the whole grid's ``transform``; ``transform`` itself where it has no such
    coordinates. Numbers that are not evenly spaced are refused."""
    from affine import Affine

    axes = map_axes(value) or value.dims[-2:]
    numbers = []
    for name, dim in zip(INDEX_COORDS, axes):
        coord = value.coords.get(name)
        if coord is None or coord.attrs.get("hsanomaly") != INDEX_MARK["hsanomaly"]:
            return transform
        if coord.dims != (dim,) or coord.dtype.kind not in "iu":
            raise HsanomalyError(f"{_name(value)}: its {name} numbers no longer run along its "
                                 f"{dim} dimension (stacked, or turned into another type?), so "
                                 "no geotransform places its pixels")
        at = np.asarray(coord.values, np.int64)
        step = int(at[1] - at[0]) if len(at) > 1 else 1
        if step == 0 or np.any(at != at[0] + step * np.arange(len(at))):
            raise HsanomalyError(f"{_name(value)}: its {name} numbers are not evenly spaced, so "
                                 "no geotransform places its pixels (a cut that left rows or "
                                 "columns out?)")
        numbers.append((int(at[0]), step))
    (row, row_step), (col, col_step) = numbers
    # pixel centres onto pixel centres: a flipped axis (step -1) keeps its pixels in place
    return (transform @ Affine.translation(col + 0.5, row + 0.5)
            @ Affine.scale(col_step, row_step) @ Affine.translation(-0.5, -0.5))


def as_transform(value, label):
    """An Affine from an Affine or its six numbers in its order (None stays None), or one
    line naming ``label``. One that puts every pixel on one line (singular) places nothing
    (its targets came out NaN); six numbers in GDAL's GeoTransform order (x0, width, 0, y0,
    0, -height: osgeo's, a spatial_ref's) read in Affine's are one where y0 is 0, and turn
    the pixels a quarter about x 0 otherwise: refused, with the remedy (an Affine turned a
    quarter is taken as one)."""
    from affine import Affine

    if value is None:
        return value
    try:
        numbers = tuple(map(float, list(value)[:6]))
        a, b, c, d, e, f = numbers
    except (TypeError, ValueError):
        raise HsanomalyError(f"{label}: expected an Affine or its six numbers, got "
                             f"{value!r}") from None
    gdal = "" if isinstance(value, Affine) else ": GDAL's GeoTransform order? Give " \
        "Affine.from_gdal(*numbers)"
    if a * e == b * d:
        raise HsanomalyError(f"{label}: {numbers} put every pixel on one line, which places "
                             f"none{gdal}")
    if gdal and c == 0 and e == 0 and b != 0 and d != 0:
        raise HsanomalyError(f"{label}: {numbers} read in Affine's order (a, b, c, d, e, f) "
                             f"turn the pixels a quarter about x 0{gdal}, or an Affine for a "
                             "grid turned so")
    return value if isinstance(value, Affine) else Affine(*numbers)


def as_crs(value, label):
    """A rasterio CRS from anything ``CRS.from_user_input`` takes (an EPSG code, WKT, a PROJ
    string, pyproj's or rasterio's CRS; None stays None), or one line naming ``label``."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return None if value is None else CRS.from_user_input(value)
    except CRSError as err:
        raise HsanomalyError(f"{label}: not a CRS ({describe(err)})") from None
