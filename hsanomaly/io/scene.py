"""Whole scenes in memory: for training, evaluation and benchmarks on small rasters."""

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import HsanomalyError
from .checks import warn_once
from .gdal import open_raster, read_masked
from .values import declare_nodata, warn_mask_values
from .source import open_source


@dataclass
class Scene:
    cube: np.ndarray                    # float32 (bands, rows, cols), NaN where invalid
    valid: np.ndarray                   # bool (rows, cols)
    truth: Optional[np.ndarray] = None  # uint8 (rows, cols), 1 = anomaly
    profile: dict = field(default_factory=dict)
    wavelengths: Optional[list] = None
    name: str = ""
    known: Optional[np.ndarray] = None  # bool (rows, cols): where the truth is known; None: everywhere

    @property
    def evaluated(self):
        """The pixels an evaluation counts: valid, and with a known truth. (Scores are computed
        on every valid pixel, as ``detect`` computes them: a truth never changes a score.)"""
        return self.valid if self.known is None else self.valid & self.known

    @property
    def pixels(self):
        """Valid pixels as (n, bands)."""
        return self.cube[:, self.valid].T


def read_scene(path, truth=None):
    """Read a raster or .mat scene whole; ``truth`` is an optional truth raster path (on the
    scene's grid; pixels whose truth is nodata are not known: ``Scene.evaluated``)."""
    source = open_source(path)
    try:
        from rasterio.windows import Window

        cube, valid = source.read(Window(0, 0, source.width, source.height))
    finally:
        source.close()
    gt = known = None
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat_truth

        gt, known = split_unknown(read_mat_truth(path))    # the cube is read above
    if truth is not None:
        gt, known = read_truth(truth, shape=cube.shape[1:], grid_of=path)
    return Scene(cube, valid, gt, source.profile, source.wavelengths, Path(str(path)).stem, known)


def split_unknown(truth):
    """(truth with its ``mat.UNKNOWN`` pixels as 0, where it is known or None) of a .mat truth."""
    from .mat import UNKNOWN

    if truth is None or not (truth == UNKNOWN).any():
        return truth, None
    known = truth != UNKNOWN
    return np.where(known, truth, 0).astype(np.uint8), known


def read_truth(path, shape=None, grid_of=None, what="scene", required=True, values_said=True):
    """(mask, known): a binary mask (uint8, non-zero = 1) from a raster, the truth variable of
    a .mat file, or vector features burnt onto ``grid_of``'s grid (``io.vector``), and where it
    is known (bool, or None when everywhere). A raster's NaN and nodata pixels are unknown,
    unless its nodata value is 0, which a mask already reads as 0.

    shape: the (rows, cols) it must have; grid_of: a raster it must line up with where both
    are georeferenced (same CRS, origin and pixel size), so that a mask cut or resampled for
    another grid is refused instead of scoring the wrong pixels; what: what ``shape`` is of,
    for the message; required: features none of which fall on ``grid_of`` are refused (else
    said: a mask shared by several rasters); values_said: a raster's values that count as
    non-zero though they may not mean so are said (``values.warn_mask_values``; not for an
    exclusion mask, which leaves nodata out as it does non-zero).
    """
    from .vector import is_vector, read_vector_mask

    known = None
    if is_vector(path):        # on grid_of's grid, known everywhere
        return read_vector_mask(path, grid_of, required), None
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat_truth

        gt, known = split_unknown(read_mat_truth(path))
        if gt is None:
            raise HsanomalyError(f"{path}: no ground-truth variable found in the .mat file")
        if grid_of is not None:
            check_same_grid(path, grid_of)
    else:
        with open_mask_raster(path, shape, grid_of, what) as (ds, band_index):
            band = read_masked(ds, band_index)
            gt, unknown = mask_values(band, ds.nodata)
        if values_said:
            warn_mask_values(path, np.ma.getdata(band), unknown,
                               lambda value: f"declare it nodata ({declare_nodata(value)})")
        if unknown.any():
            if unknown.all():
                raise HsanomalyError(f"{path}: every pixel of the mask is nodata")
            known = ~unknown
        return gt, known
    if shape is not None and gt.shape != tuple(shape):
        raise HsanomalyError(f"{path}: the mask is {gt.shape[0]}x{gt.shape[1]} pixels, "
                             f"the {what} is {shape[0]}x{shape[1]}")
    return gt, known


@contextmanager
def open_mask_raster(path, shape=None, grid_of=None, what="scene"):
    """(open dataset, the band that holds the mask) of a mask raster, its size and grid
    checked first (``read_truth``), before any pixel is read."""
    with open_raster(path) as ds:
        data = [b for b, c in enumerate(ds.colorinterp, start=1) if c.name != "alpha"]
        if len(data) != 1:          # an alpha band beside the mask masks it, as GDAL reads
            raise HsanomalyError(f"{path}: a mask must have one band, this raster has "
                                 f"{len(data)}; pick the one meant (gdal_translate -b N)")
        if grid_of is not None:     # first: a mask on another grid is told how to fit it
            check_same_grid(path, grid_of)
        if shape is not None and ds.shape != tuple(shape):
            raise HsanomalyError(f"{path}: the mask is {ds.height}x{ds.width} pixels, "
                                 f"the {what} is {shape[0]}x{shape[1]}")
        yield ds, data[0]


def mask_values(band, nodata):
    """(mask (uint8, non-zero = 1, 0 where unknown), unknown (bool)) of a masked band read
    from a mask raster: NaN and nodata are unknown, unless nodata is 0, which a mask already
    reads as 0."""
    values = np.ma.getdata(band)
    nan = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    unknown = nan if nodata == 0 else np.ma.getmaskarray(band) | nan
    gt = (np.nan_to_num(values) != 0).astype(np.uint8)
    gt[unknown] = 0
    return gt, unknown


def read_exclusion(path, shape, grid_of, required=True):
    """Where an exclusion mask leaves pixels out (bool (rows, cols)): non-zero or covered by a
    feature, and its nodata pixels too, since nothing says they may stay in. ``required``:
    as ``read_truth``."""
    mask, known = read_truth(path, shape=shape, grid_of=grid_of, what="raster",
                             required=required, values_said=False)
    return mask.astype(bool) if known is None else mask.astype(bool) | ~known


def _grid(path):
    """(kind, crs, placement) of a georeferenced raster: ("map", crs, transform), or
    ("gcps", crs, ground control points) for a raster placed only by them (an airborne line
    not yet orthorectified); None for .mat files and plain images."""
    if str(path).lower().endswith(".mat"):
        return None
    with open_raster(path) as ds:
        if not ds.transform.is_identity or ds.crs is not None:
            return "map", ds.crs, ds.transform
        gcps, gcp_crs = ds.gcps
        return ("gcps", gcp_crs, gcps) if gcps else None


PLACED_BY = {"map": "a map grid", "gcps": "ground control points"}


def check_same_grid(path, other):
    """Refuse mask ``path`` unless it lies on raster ``other``'s grid, where both say where they
    are: same CRS, same pixel size and an origin within a hundredth of a pixel; or, placed by
    ground control points, the same points to a hundredth of a pixel. Where only one of them
    is placed, the mask is taken pixel for pixel, with a warning."""
    from .vector import pixel_size, same_crs

    mine, theirs = _grid(path), _grid(other)
    if mine is None or theirs is None:
        if mine is not theirs:         # one placed, one not: lined up by size alone
            whose = "the mask has" if mine is None else f"{other} has"
            warn_once(f"{path}: {whose} no georeferencing, so nothing checks that the mask "
                      f"lies on the grid of {other}; it is taken pixel for pixel")
        return
    (kind, crs, t), (other_kind, other_crs, o) = mine, theirs
    if kind != other_kind:
        raise HsanomalyError(f"{path}: the mask is placed by {PLACED_BY[kind]} and {other} by "
                             f"{PLACED_BY[other_kind]}, so nothing says they line up; give the "
                             "mask that raster's own georeferencing")
    # alike where the other raster lies, to a hundredth of its pixel
    near = {} if kind == "gcps" else {"near": ([o.c], [o.f]), "tolerance": 0.01 * pixel_size(o)}
    if crs is not None and other_crs is not None and not same_crs(crs, other_crs, **near):
        raise HsanomalyError(f"{path}: the mask is in {crs.to_string()} but {other} is in "
                             f"{other_crs.to_string()}; reproject it onto that raster's grid"
                             + _onto_grid(path, other))
    if kind == "gcps":
        if not _same_points(t, o):
            raise HsanomalyError(f"{path}: the mask's ground control points are not those of "
                                 f"{other}; give the mask that raster's georeferencing")
        return
    size = max(abs(o.a), abs(o.e), abs(o.b), abs(o.d))
    steps = np.abs(np.subtract(t[:6], o[:6]))
    if steps[[0, 1, 3, 4]].max() > 1e-6 * size or steps[[2, 5]].max() > 0.01 * size:
        raise HsanomalyError(f"{path}: the mask is not on the grid of {other} ({grid_text(t)} "
                             f"against {grid_text(o)}); resample it onto that raster's grid"
                             + _onto_grid(path, other))


def _onto_grid(path, other):
    """The command that puts mask ``path`` on north-up raster ``other``'s grid, by nearest
    neighbour: a smooth resampler turns a mask's edges into fractions, each a target."""
    import shlex

    with open_raster(other) as ds:
        t, crs, (left, bottom, right, top) = ds.transform, ds.crs, ds.bounds
    if t.b or t.d or crs is None:
        return " by nearest neighbour, which keeps its labels"
    out = shlex.quote(f"{Path(str(path)).stem}_on_grid.tif")
    return (", by nearest neighbour, which keeps its labels: gdalwarp -r near -t_srs "
            f"{shlex.quote(crs.to_string())} -te {left:.10g} {bottom:.10g} {right:.10g} "
            f"{top:.10g} -tr {abs(t.a):.10g} {abs(t.e):.10g} {shlex.quote(str(path))} {out}")


def grid_text(t):
    """A geotransform for a message: the pixel's width and height as stored (a negative
    height: rows run south), its origin, and its rotation terms where it has them."""
    text = f"pixel {t.a:.10g} x {t.e:.10g} at {t.c:.10g}, {t.f:.10g}"
    return text + (f", rotated by {t.b:.10g}, {t.d:.10g}" if t.b or t.d else "")


def _same_points(mine, theirs):
    """Whether two lists of ground control points place the same pixels at the same spots,
    to a hundredth of a pixel (its size estimated from the points' spread)."""
    if len(mine) != len(theirs):
        return False
    key = lambda p: (p.row, p.col)              # noqa: E731
    a = np.array([(p.row, p.col, p.x, p.y) for p in sorted(mine, key=key)], np.float64)
    b = np.array([(p.row, p.col, p.x, p.y) for p in sorted(theirs, key=key)], np.float64)
    pixels = np.ptp(a[:, :2], axis=0).max()
    size = np.ptp(a[:, 2:], axis=0).max() / pixels if pixels > 0 else 1.0
    return bool(np.abs(a[:, :2] - b[:, :2]).max() <= 0.01
                and np.abs(a[:, 2:] - b[:, 2:]).max() <= 0.01 * size)
