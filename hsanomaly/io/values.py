"""Pixel values checked before the work: values float32, in which pixels are scored, cannot
hold (beyond its range) or tells apart too coarsely, and fill values far out of every spectrum
that no nodata value declares."""

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from ..spelling import counted
from .checks import warn_once

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT32_STEP = float(np.finfo(np.float32).smallest_subnormal)   # float32's finest step, anywhere
EXTREME = 1e6           # deviations from a band's median beyond which a value is a fill
CENTRE_SAMPLE = 4096    # pixels a band's median and deviation, or its neighbours' correlation,
                        # are taken from (drawn at random)
PRECISION = 0.01        # float32's rounding, as a share of a band's spread, beyond which it is said
IGNORE_CODES = (255, 65535)   # a mask's "unlabelled" codes, where other labels are non-zero too
MASK_VALUES_SHOWN = 3   # a mask's values above 0 named in a message
MASK_LABELS = 4         # more values above 0 than a mask's classes, where they mix in regions
CODE_BESIDE_ZERO = 0.25 # an ignore code's edge pixels touching zero, under which it is a core


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
    """(band, rounding, largest value over spread) of the band whose values float32, in which
    pixels are scored, cannot tell apart to a hundredth of their spread (``rounding``: its
    step as a share of the spread), the coarsest; None if every band is fine. Values stored
    in float64 or wide integers far from zero against their spread (temperatures in kelvin
    varying by millikelvins, say) are; so are values too small for float32's finest step
    (float64 in units a million times too large, which float32 rounds to few steps, or 0)."""
    worst = None
    for row, band in enumerate(bands):
        ok = ~nodata[row] & np.isfinite(values[row])
        if ok.sum() < 2:
            continue
        v = np.asarray(values[row][ok], np.float64)
        largest = np.abs(v).max()
        if not 0 < largest < np.inf:
            continue
        spread = (v / largest).std() * largest    # in units of the largest: 1e-300 squared is 0
        if not spread > 0:
            continue
        rounding = max(largest * FLOAT32_EPS, FLOAT32_STEP) / spread
        if rounding > PRECISION and (worst is None or rounding > worst[1]):
            worst = (band, rounding, largest / spread)
    return worst


def commonest(values):
    """(the value most of ``values`` hold, how many hold it): a fill's or a code's value."""
    found, counts = np.unique(values, return_counts=True)
    return found[np.argmax(counts)], int(counts.max())


def warn_mask_values(name, values, unknown, remedy):
    """Say the values of a mask that count as non-zero (1) though they may not mean "target":
    negative ones (-1 often means unknown), an ignore code such as 255 beside other non-zero
    labels, fractions (a soft mask, or one resampled smoothly, widens the targets). Unsaid, each
    silently changes the answer. ``unknown``: pixels already marked so (or None);
    ``remedy(value)``: how this kind of input marks a value unknown."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        return
    with np.errstate(invalid="ignore"):
        labelled = np.isfinite(values) & (values != 0)
    if unknown is not None:
        labelled &= ~unknown
    nonzero = values[labelled]
    negative = nonzero < 0
    if negative.any():
        value, _ = commonest(nonzero[negative])
        n = int(negative.sum())
        warn_once(f"{name}: {counted(n, 'pixel')} of the mask {'holds' if n == 1 else 'hold'} "
                  "negative values "
                  f"({value:g} the commonest), which count as non-zero (1); if {value:g} means "
                  f"unknown, {remedy(value)}")
    found, counts = np.unique(nonzero[~negative], return_counts=True)
    code = found[-1] if len(found) > 1 and found[-1] in IGNORE_CODES else None
    labels = found[:-1] if code is not None else found        # the code's pixels apart
    positive = labelled & (values > 0)
    blurred = (labels != np.round(labels)).any() or (len(labels) > MASK_LABELS and _mostly_mixed(
        values, positive & (values != (code if code is not None else np.inf)))) or (
        code is not None and _code_within(values, positive, code))
    if blurred or code is not None:
        # a few values each with its pixels; many by their range (their commonest were a
        # blurred mask's near-zero tails, two float32s apart printed alike)
        shown = ", ".join(f"{v:g} in {counted(int(c), 'pixel')}" for v, c in
                          sorted(zip(found, counts), key=lambda vc: -vc[1])) \
            if len(found) <= MASK_VALUES_SHOWN else f"from {found[0]:g} to {found[-1]:g}"
        warn_once(f"{name}: the mask holds {counted(len(found), 'value')} above 0 ({shown}"
                  "), each counting as a target "
                  "(1); " + ("a soft mask, or one resampled smoothly or saved lossy (JPEG)? "
                             "Set its targets to 1 and the rest to 0, or resample it by "
                             "nearest neighbour (gdalwarp -r near)" if blurred else
                             f"if {code:g} means unlabelled, {remedy(code)}"))


def _code_within(values, positive, code):
    """Whether the pixels of ``code`` in a 2-D mask lie within its other values, as a 0/255
    mask's targets do once resampled smoothly (their edges turned 1 to 254), rather than
    beside the background, as an "ignore" region or ring does: few of its edge pixels touch
    a zero."""
    from scipy import ndimage

    if values.ndim != 2:
        return False
    ring = np.ones((3, 3))
    coded = positive & (values == code)
    edge = coded & ndimage.binary_dilation(~coded, structure=ring)
    if not edge.any() or not (positive & ~coded).any():
        return False
    beside_zero = ndimage.binary_dilation(~positive & (values == 0), structure=ring)
    return bool(beside_zero[edge].mean() < CODE_BESIDE_ZERO)


def _mostly_mixed(values, positive):
    """Whether most of a 2-D mask's ``positive`` pixels lie in regions (8-connected) holding
    more than one value: a mask blurred at its edges (resampled smoothly, saved as JPEG), not
    labels, one value a target or class region."""
    from scipy import ndimage

    if values.ndim != 2 or not positive.any():
        return False
    regions, count = ndimage.label(positive, structure=np.ones((3, 3)))
    index = np.arange(1, count + 1)
    low, high = (np.asarray(f(values, regions, index)) for f in (ndimage.minimum,
                                                                 ndimage.maximum))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    return sizes[low != high].sum() > sizes.sum() / 2


def two_values_text(pixels, first_band=None):
    """The two values ``pixels`` (any shape, NaN skipped) hold when they hold two, as a truth
    or an exclusion mask given for a scene does, in words ("0 and 1"); else None (one value
    is a constant raster, said as such). ``first_band``, some of them, rules most scenes out
    before all are looked at."""
    for values in ([] if first_band is None else [first_band]) + [pixels]:
        values = np.asarray(values)
        found = np.unique(values[np.isfinite(values)])
        if len(found) > 2:
            return None
    return " and ".join(f"{v:g}" for v in found) if len(found) == 2 else None


def declare_nodata(value):
    """The command that declares ``value`` a raster's nodata, to quote in a message."""
    return f"gdal_edit.py -a_nodata {exact(value)}"


def exact(value):
    """A value as text that reads back as the same number (a nodata value to declare must
    match the pixels exactly; ``:g`` rounds -3.4028235e38 to another float32)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _centre_sample(pixels):
    """CENTRE_SAMPLE of pixels (bands, n) in float64, drawn at random (a fill every k-th
    column would be all of a k-th stride), in their order; all of them where fewer."""
    n = pixels.shape[1]
    picked = (np.sort(np.random.default_rng(0).choice(n, CENTRE_SAMPLE, replace=False))
              if n > CENTRE_SAMPLE else slice(None))
    return pixels[:, picked].astype(np.float64)


def extreme_values(pixels):
    """(how many, the commonest value) of the pixels (bands, n) lying more than EXTREME
    median absolute deviations from a band's median, in any band that has a spread; None
    where there are none. No spectrum lies so far out (a bright target is a few hundred
    deviations out); -3.4e38 or 1e20 fills do, and a handful of them outweighs every other
    pixel in a covariance, beyond float64's precision."""
    if pixels.shape[1] < 2:
        return None
    # the centre and spread of a few thousand pixels: a threshold a million deviations out
    # does not need them exactly, and the medians of every pixel probed took most of the check
    sample = _centre_sample(pixels)
    median = np.median(sample, axis=1, keepdims=True)
    spread = np.median(np.abs(sample - median), axis=1, keepdims=True)
    # a band at one value give or take float32's rounding has no spread to count in
    flat = (spread <= 0) | (spread < 1e3 * FLOAT32_EPS * np.abs(median))
    spread = np.where(flat, np.inf, spread)
    # the pixels compared in their own type with each band's bounds (no float64 copy)
    low, high = median - EXTREME * spread, median + EXTREME * spread
    if pixels.dtype.kind == "f":
        with np.errstate(over="ignore"):          # beyond the type: no pixel lies there
            low, high = low.astype(pixels.dtype), high.astype(pixels.dtype)
    far = (pixels < low) | (pixels > high)
    out = far.any(axis=0)
    if not out.any():
        return None
    return int(out.sum()), float(commonest(pixels[far])[0])


CODE_VALUES = 16          # a band holding this many values at most holds codes, not radiance,
SPECTRAL_VALUES = 64      # ... where the median band holds more than this many
CODE_MIN_PIXELS = 1000    # ... in this many pixels probed at least


def code_bands(pixels, scaling=None):
    """(rows of ``pixels`` (bands, n, as stored) holding a few codes where the other bands hold
    many values, rows left unscaled where the others carry a scale or offset), numbered from
    0, of those varying more than the median band once scaled: a quality, cloud or
    scene-classification layer stacked with the bands (QA_PIXEL, SCL), which, scored as a
    band of the spectra in larger units than them, takes over the local rings and principal
    components, and the targets drop out of the ranking without a word. ``scaling``: the
    bands' (scale, offset), or None where none carries one."""
    bands, n = pixels.shape
    if bands < 2 or n < 2:
        return [], []
    sample = _centre_sample(pixels)
    scaled = sample if scaling is None else \
        sample * np.reshape(scaling[0], (-1, 1)) + np.reshape(scaling[1], (-1, 1))
    spread = scaled.std(axis=1)
    larger = spread > np.median(spread)
    codes, unscaled = [], []
    if n >= CODE_MIN_PIXELS:
        distinct = np.array([np.unique(row).size for row in sample])
        if np.median(distinct) > SPECTRAL_VALUES:
            codes = [int(b) for b in np.flatnonzero(larger & (distinct > 1) &
                                                    (distinct <= CODE_VALUES))]
    if scaling is not None:
        plain = (np.ravel(scaling[0]) == 1) & (np.ravel(scaling[1]) == 0)
        if not plain.all():
            unscaled = [int(b) for b in np.flatnonzero(plain & larger)]
    return codes, unscaled


NOISE_MIN_BANDS = 30      # fewer bands, further apart, need not follow their neighbours
NOISE_CORRELATION = 0.5   # a band correlated less than this with either neighbour is noise-like
SMOOTH_CORRELATION = 0.9  # ... where the median band follows a neighbour this closely
NOISE_VARIANCE = 0.05     # ... and the noise-like bands hold this share of the variance or more,
NOISE_COMPONENT = defaults.LRX_PCA   # or typically more than the others' component this far down
NOISE_TAILS = 0.005       # the share of a band's pixels at either end held in for correlations


def noise_bands(pixels):
    """(the bands, numbered from 1, that barely follow either neighbour in pixels (bands, n),
    as noise does, the share of the variance they hold), or None: water vapour absorption
    bands left in a scene whose other bands follow theirs closely. The leading principal
    components (local RX's, gmm's, the rings') are spent on them where they hold a noticeable
    share of the variance, or where a typical one varies more than the other bands'
    ``NOISE_COMPONENT``-th component (noise far below the scene's brightness can: a few
    times the sensor's own), and those scores collapse without a word."""
    bands, n = pixels.shape
    if bands < NOISE_MIN_BANDS or n < NOISE_MIN_BANDS:
        return None
    sample = _centre_sample(pixels)
    sample -= sample.mean(axis=1, keepdims=True)
    spread = sample.std(axis=1)
    live = spread > 0                      # a constant band follows nothing and holds nothing
    # followed within each band's NOISE_TAILS quantiles: a few hot pixels, extreme in one
    # band and in no other, would make it follow nothing (its variance they do hold)
    low, high = np.quantile(sample, [NOISE_TAILS, 1 - NOISE_TAILS], axis=1, keepdims=True)
    held = np.clip(sample, low, high)
    held -= held.mean(axis=1, keepdims=True)
    deviation = held.std(axis=1)
    held /= np.where(deviation > 0, deviation, 1.0)[:, None]
    adjacent = np.abs((held[1:] * held[:-1]).mean(axis=1))
    best = np.zeros(bands)
    best[:-1] = adjacent                           # with the next band
    best[1:] = np.maximum(best[1:], adjacent)      # or with the one before
    noisy = live & (deviation > 0) & (best < NOISE_CORRELATION)   # not hot pixels alone
    if not noisy.any() or np.median(best[live]) < SMOOTH_CORRELATION:
        return None
    share = float((spread[noisy] ** 2).sum() / (spread ** 2).sum())
    if share >= NOISE_VARIANCE:
        return (np.flatnonzero(noisy) + 1).tolist(), share
    clean = live & ~noisy
    if clean.sum() <= NOISE_COMPONENT:
        return None
    others = sample[clean]                                # the other bands, in their units
    component = np.linalg.eigvalsh(others @ others.T / others.shape[1])[-NOISE_COMPONENT]
    typical = float(np.median(spread[noisy] ** 2))
    return ((np.flatnonzero(noisy) + 1).tolist(), share) if typical > component else None


# where a raster's band scale and offset are set, and a DataArray's: ``warn_coarse``'s advice
RASTER_SCALING = ("gdal_edit.py -offset", "gdal_edit.py -scale")
ATTRIBUTE_SCALING = ("its add_offset attribute", "its scale_factor attribute")


def warn_coarse(name, worst, scaling=None):
    """``worst``: from ``coarsest_in_float32``; ``scaling``: where the values are the stored
    ones times a scale, plus an offset, where those are set (``RASTER_SCALING``,
    ``ATTRIBUTE_SCALING``)."""
    if worst is None:
        return
    band, rounding, far = worst
    once_scaled = " once scaled by its scale and offset" if scaling else ""
    far_out = far * FLOAT32_EPS > PRECISION       # far from zero against their spread
    tiny = rounding > far * FLOAT32_EPS           # below float32's finest steps, too
    shift = "subtract an offset from the data" + (
        f" (or set a smaller offset: {scaling[0]})" if scaling else "")
    grow = "multiply the data by a power of ten" + (
        f" (or set a larger scale: {scaling[1]})" if scaling else "")
    advice = " and ".join(a for a, needed in ((shift, far_out), (grow, tiny)) if needed)
    if far_out:
        warn_once(f"{name}: band {band}'s values lie {far:.3g} times their spread from zero"
                  f"{once_scaled}, so float32, in which pixels are scored, rounds them by "
                  f"more than a hundredth of that spread; {advice} first")
    else:
        warn_once(f"{name}: band {band}'s values are so small{once_scaled} that float32, in "
                  f"which pixels are scored, rounds them by {rounding:.3g} times their spread "
                  f"(beyond a hundredth of it, or to 0); {advice} first")
