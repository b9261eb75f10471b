"""Whether a cube's bands lie where they are read from: spectra are smooth.

The step from one band to the next is a small part of a spectrum's spread, while the step
from one pixel to the next is not (on the shared scenes, several times smaller). A cube whose
second or last axis is much the smoothest was most likely stored with its bands there:
(rows, cols, bands) as scipy's loadmat and spectral python give cubes, an HDF5 or netCDF
product stored bands last, (rows, bands, cols) as some push-broom products store lines.
Read as (bands, rows, cols) it would be scored on the wrong axes without a word.
"""

import numpy as np

# The margin is wide, since a false warning would give bad advice: a cube is warned about
# when one of its other axes is this many times smoother than each of the rest.
SMOOTHER = 2.0
# Lines shorter than this say too little: a multispectral raster's short spectra step far, and any
# smooth direction of its image (a gradient, striping) would pass for its bands. A cube stored
# the other way round has spatial lines of at least this length where GDAL sees bands.
MIN_LINE = 30
# where the bands would lie, by axis: its name in advice, and the layout it means
PLACES = {1: ("second", "(rows, bands, cols)"), 2: ("last", "(rows, cols, bands)")}
# products stored so, for a refusal's reader
STORED_SO = {1: "as PRISMA stores its cubes", 2: "as EMIT stores its reflectance"}


def detector_advice(axis, where):
    return (f"Detector takes (bands, rows, cols): if the bands are {where}, pass "
            f"np.moveaxis(X, {-1 if axis == 2 else axis}, 0)")


def check_band_axis(cube, name, mask=None, lines=200, advice=detector_advice):
    """Warn when a cube's second or last axis varies much more smoothly than the others, as
    a spectrum does (``warn_if_bands_elsewhere``), from ``lines`` whole lines along each
    axis (read alone: a memory-mapped cube is not loaded); masked values (``mask``, True =
    left out) and NaN left out."""
    if cube.ndim != 3 or cube.dtype.kind not in "uif" or min(cube.shape) < 3:
        return
    rng = np.random.default_rng(0)
    warn_if_bands_elsewhere([_lines(cube, mask, axis, lines, rng) for axis in range(3)],
                            cube.shape, name, advice)


def warn_if_bands_elsewhere(lines, shape, name, advice=detector_advice, shape_is="of shape",
                            refused_by=None):
    """Warn when the lines along axis 1 or 2 of a cube of ``shape`` (``lines``: per axis, a
    (n, length) float array, NaN left out; whole lines, or as long as they can be read) vary
    much more smoothly than those along the others. A hint, so a warning; only cubes of
    ``MIN_LINE`` and more values along the first axis and the one taken for the bands' are
    looked at. ``advice(axis, where)``: how to put the bands first; ``shape_is``: what the
    shape is of (a file's is the cube as read, not as stored). True where it warned.
    ``refused_by``: the reader whose guess put the bands first (GDAL's HDF5 driver takes an
    array's first dimension for them, whatever it holds): refused in one line instead, since
    the likelier layout is then the stored one and every score would rank bands for pixels."""
    steps = [median_step(values) for values in lines]
    if None in steps:
        return False
    axis = int(np.argmin(steps))
    rest = min(step for other, step in enumerate(steps) if other != axis)
    if axis == 0 or min(shape[0], shape[axis]) < MIN_LINE or not steps[axis] * SMOOTHER < rest:
        return False
    from .checks import warn_once

    where, layout = PLACES[axis]
    others = "first two" if axis == 2 else "first and last"
    if refused_by:
        from ..errors import HsanomalyError

        raise HsanomalyError(f"{name} {shape_is} {tuple(shape)}: its {where} axis varies far "
                             f"more smoothly than its {others}, as spectra do: it is most likely "
                             f"stored {layout} ({STORED_SO[axis]}), which {refused_by} "
                             f"reads as {shape[0]} bands of {shape[1]} x {shape[2]} pixels, so "
                             f"every score would rank bands, not pixels. {advice(axis, where)}")
    warn_once(f"{name} {shape_is} {tuple(shape)}: its {where} axis varies far more smoothly than "
              f"its {others}, as spectra do, so it may be {layout}; it is scored as "
              f"{shape[0]} bands of {shape[1]} x {shape[2]} pixels. {advice(axis, where)}")
    return True


def median_step(values):
    """The median over lines (rows of ``values``, NaN left out) of (mean absolute step between
    neighbours that differ) / (the line's spread), or None when no line varies. Steps of zero
    are left out: an image resampled by repeating pixels (nearest neighbour, as a push-broom
    line is made square) repeats values along a spatial axis, which would pass for smooth."""
    ratios = []
    for line in values:
        line = line[np.isfinite(line)]
        steps = np.abs(np.diff(line))
        steps = steps[steps > 0]
        if line.size >= 3 and steps.size:      # a constant line: no step (its std need not be 0)
            ratios.append(steps.mean() / line.std())
    return float(np.median(ratios)) if ratios else None


def _lines(cube, mask, axis, lines, rng):
    """``lines`` random whole lines of ``cube`` along ``axis``: (lines, length) float64, with
    masked and not finite values NaN."""
    others = [n for n in range(3) if n != axis]
    at = [rng.integers(0, cube.shape[n], lines) for n in others]
    index = [None, None, None]
    index[axis] = np.arange(cube.shape[axis])[None, :]
    for n, picked in zip(others, at):
        index[n] = picked[:, None]
    values = np.asarray(cube[tuple(index)], dtype=np.float64)
    if mask is not None:
        values[np.asarray(mask[tuple(index)], bool)] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values
