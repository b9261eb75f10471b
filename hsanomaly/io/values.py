"""Pixel values checked before the work: values float32, in which pixels are scored, cannot
hold (beyond its range) or tells apart too coarsely, and fill values far out of every spectrum
that no nodata value declares."""

import numpy as np

from ..errors import HsanomalyError
from .checks import warn_once

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_EPS = float(np.finfo(np.float32).eps)
EXTREME = 1e6           # deviations from a band's median beyond which a value is a fill
PRECISION_RATIO = 0.01 * 2**23   # largest value over spread float32 resolves to 1 % of the spread


def wider_than_float32(dtype):
    """Whether float32, in which pixels are scored, cannot hold every value of ``dtype``
    exactly (float64, and integers wider than 16 bits)."""
    dtype = np.dtype(dtype)
    return dtype.itemsize > 2 and dtype != np.float32


def check_float32_range(name, values, nodata, bands, scaled=False):
    """Refuse values beyond float32's range, which pixels are scored in: they would become
    infinite, then nodata, silently (the most anomalous pixels among them). ``bands``: the
    band numbers of ``values``' rows; ``scaled``: the values are the stored ones times the
    band's scale, plus its offset."""
    for row, band in enumerate(bands):          # band by band: no cube-sized temporaries
        with np.errstate(invalid="ignore"):
            beyond = (np.abs(values[row]) > FLOAT32_MAX) & np.isfinite(values[row]) & ~nodata[row]
        if beyond.any():
            raise HsanomalyError(f"{name}: band {band} holds values beyond float32's range (up "
                                 f"to {np.abs(values[row][beyond]).max():.3g}"
                                 + (", once scaled by the band's scale and offset" if scaled
                                    else "") + "), in which pixels are scored; rescale the "
                                 "data first")


def coarsest_in_float32(values, nodata, bands):
    """(band, ratio) of the band whose values float32, in which pixels are scored, cannot tell
    apart to a hundredth of their spread, the largest value over the spread the worst; None
    if every band is fine. Values stored in float64 or wide integers far from zero against
    their spread (temperatures in kelvin varying by millikelvins, say) are."""
    worst = None
    for row, band in enumerate(bands):
        ok = ~nodata[row] & np.isfinite(values[row])
        if ok.sum() < 2:
            continue
        v = np.asarray(values[row][ok], np.float64)
        with np.errstate(over="ignore", invalid="ignore"):   # 1e300: refused when read
            spread = v.std()
        ratio = np.abs(v).max() / spread if spread > 0 else 0.0
        if ratio > PRECISION_RATIO and (worst is None or ratio > worst[1]):
            worst = (band, ratio)
    return worst


def exact(value):
    """A value as text that reads back as the same number (a nodata value to declare must
    match the pixels exactly; ``:g`` rounds -3.4028235e38 to another float32)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def extreme_values(pixels):
    """(how many, the commonest value) of the pixels (bands, n) lying more than EXTREME
    median absolute deviations from a band's median, in any band that has a spread; None
    where there are none. No spectrum lies so far out (a bright target is a few hundred
    deviations out); -3.4e38 or 1e20 fills do, and a handful of them outweighs every other
    pixel in a covariance, beyond float64's precision."""
    if pixels.shape[1] < 2:
        return None
    pixels = pixels.astype(np.float64)
    median = np.median(pixels, axis=1, keepdims=True)
    spread = np.median(np.abs(pixels - median), axis=1, keepdims=True)
    # a band at one value give or take float32's rounding has no spread to count in
    spread = np.where(spread < 1e3 * FLOAT32_EPS * np.abs(median), 0, spread)
    with np.errstate(invalid="ignore", divide="ignore"):
        far = (np.abs(pixels - median) > EXTREME * spread) & (spread > 0)
    out = far.any(axis=0)
    if not out.any():
        return None
    found = pixels[far]
    values, counts = np.unique(found, return_counts=True)
    return int(out.sum()), float(values[np.argmax(counts)])


def warn_coarse(name, worst, scaled=False):
    """``scaled``: the values are the stored ones times the band's scale, plus its offset."""
    if worst is not None:
        warn_once(f"{name}: band {worst[0]}'s values lie {worst[1]:.3g} times their spread "
                  "from zero" + (" once scaled by its scale and offset" if scaled else "")
                  + ", so float32, in which pixels are scored, rounds them by more than "
                  "a hundredth of that spread; subtract an offset from the data first"
                  + (" (or set a smaller offset: gdal_edit.py -offset)" if scaled else ""))
