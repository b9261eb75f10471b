"""Whether a raster is one a model can score: same band count, the same wavelengths where
both the model and the raster carry them, and values in the units the model was trained on
(the last also for a Detector fitted on one scene and scoring another)."""

import hashlib

import numpy as np

from ..errors import HsanomalyError
from ..io.checks import warn
from ..io.units import MICROMETRE_GUESS
from ..spelling import counted, listed, spell

# The model's preprocessing maps the central range of its training values to [-1, 1]; a
# raster whose typical preprocessed value lies beyond OUT_OF_RANGE is in other units (raw
# counts against reflectance, a scale factor missing) or another band order.
OUT_OF_RANGE = 4.0
# ... and one whose bands vary over less than UNDER_RANGE of it, far less than even a uniform
# patch of the training's own units does, is in smaller ones: reflectance against raw counts.
UNDER_RANGE = 1e-3
# ... and one whose bands' levels are all this many times the training's, or less, alike
# within ALIKE (their ratios' 10th to 90th percentile), is in other units too: reflectance in
# percent against a 0-10000 product. Another land cover (water, shadow) changes each band by
# its own ratio; a crop of a scene's darkest water was over ALIKE, its dark roofs above 1/3.
SCALED, ALIKE = 4.0, 1.5
PROBE_MIN_PIXELS = 16        # valid pixels a probe window (io.source) must hold to judge by

# Two centre wavelengths are "the same band" within this many nanometres, or this fraction.
TOLERANCE_NM, TOLERANCE_FRACTION = 1.0, 1e-3


def check_wavelengths(bundle, wavelengths, path):
    """Refuse, naming the first mismatching band, a raster whose band centres differ from the
    model's (or are the model's in another order: then it is told to reorder them, since
    scoring with the wavelengths ignored would compare each band with another); where only
    one side has them (only the band count can be checked), pass with a
    warning that nothing vouches for the raster's band order."""
    trained = bundle.wavelengths
    if trained and max(trained) < MICROMETRE_GUESS:     # bundles written before units were read
        trained = [value * 1e3 for value in trained]
    if bool(trained) != bool(wavelengths):
        unchecked = (f"has no band centres to check against the {trained[0]:g}-"
                     f"{trained[-1]:g} nm the model {bundle.path} was trained with" if trained
                     else f"its band centres ({wavelengths[0]:g}-{wavelengths[-1]:g} nm) "
                     f"cannot be checked: the model {bundle.path} records none")
        warn(f"{path}: {unchecked}; its bands are taken as the model's, in that order "
             f"({spell('ignore_wavelengths', True)} says that is meant)")
        return
    compare_centres(trained, wavelengths, path,
                    (f"the model {bundle.path} was trained with", "the model's"),
                    f", not {spell('ignore_wavelengths', True)}, which would score each band as "
                    "another", f"pass {spell('ignore_wavelengths', True)} to score it anyway")


def compare_centres(expected, found, path, holder, unlike, remedy):
    """Refuse band centres ``found`` that differ from ``expected``, ``holder``'s ((whose
    they are, "the model's")), naming the first band that differs; the same centres in
    another order are told to be put in order (``unlike``: not what), others ``remedy``."""
    mismatch = first_mismatch(expected, found)
    if mismatch and not first_mismatch(sorted(expected), sorted(found)):
        band, centre, given = mismatch
        raise HsanomalyError(
            f"{path}: holds the band centres {holder[0]}, in another order (band {band} is "
            f"centred at {given:g} nm, {holder[1]} band {band} at {centre:g} nm); put its bands "
            f"in {holder[1]} order (gdal_translate -b, a DataArray's sortby){unlike}")
    if mismatch:
        band, centre, given = mismatch
        raise HsanomalyError(
            f"{path}: band {band} is centred at {given:g} nm but {holder[0]} {centre:g} nm "
            f"there (another sensor or band subset?); {remedy}")


def check_scaling(bundle, source):
    """Refuse a raster whose bands carry a scale or offset for a model hsanomaly 0.1 trained:
    it read the stored values, this version reads them scaled, and the model would see other
    units than it was trained on (a scale of 0.5 reversed the critic's ranking, unwarned)."""
    version = str(bundle.meta.get("hsanomaly_version", ""))
    if version.startswith("0.1.") and source.scaled:
        raise HsanomalyError(f"{source.name}: its bands carry a scale or offset, which "
                             f"hsanomaly {version} ignored as it trained the model "
                             f"{bundle.path} (it saw the stored values, this version reads "
                             "them scaled); train the model again, or unset the band scale "
                             "and offset")


def check_value_range(bundle, source):
    """Warn, with the typical value found, when a raster's values lie far outside those the
    model was trained on: its scores would rank pixels by that difference, silently."""
    check_units(bundle.preprocessor, source, f"the model {bundle.path} was trained on",
                "Its scores would mostly measure that difference")


def units_of(pixels):
    """What ``check_units`` compares another scene with: a scaling fitted on a scene's
    ``probe_pixels``; None where they are None or all constant."""
    from ..preprocess import Preprocessor

    if pixels is None:
        return None
    try:
        return Preprocessor().fit(pixels)
    except HsanomalyError:
        return None


def fitted_scene(source, statistics):
    """What a ``Detector`` keeps of the scene it was fitted on to tell it from another:
    ``probe_digest``, and where its statistics are the scene's (``statistics``) ``units_of``
    its probe pixels (the probe windows read once for both) and its band centres."""
    probed = probe(source)
    if not statistics:
        return probe_digest(probed), None, None
    return probe_digest(probed), units_of(probe_pixels(probed)), source.wavelengths


def is_fitted_scene(fitted, source, detector):
    """Whether ``source`` is the scene ``fitted`` (``fitted_scene``) was taken of, which is in
    its own units whatever a check of them would judge. Another is checked against the
    fitted scene's band centres and units (``check_units``): its scores would use that
    scene's statistics."""
    # (one pickled before the centres were kept holds two)
    digest, units, centres = (*fitted, None)[:3] if isinstance(fitted, tuple) else (None,) * 3
    probed = probe(source)
    if digest == probe_digest(probed):
        return True
    if centres and source.wavelengths:          # its statistics are of other bands
        compare_centres(centres, source.wavelengths, source.name,
                        (f"the scene {detector} was fitted on held", "that scene's"), "",
                        "fit it on this one")
    if units is not None:
        check_units(units, source, f"of the scene {detector} was fitted on",
                    "Its scores would use that scene's statistics: fit it on this one", probed)
    return False


def check_units(pre, source, seen, consequence, probed=None):
    """Warn, with the typical value found, when ``source``'s values lie far outside those
    ``pre`` was fitted on (``seen``: "the model ... was trained on", say), or vary far less:
    other units. Probed on ``probe_pixels``, as ``units_of`` fits them (a check of the
    centre alone against a fit on every window told a scene with calm water in its centre
    that it was in other units than itself), so the check costs a few small reads (none
    where the caller read them already: ``probed``)."""
    if not pre.scale:
        return
    pixels = probe_pixels(probe(source) if probed is None else probed)
    if pixels is None:
        return
    with np.errstate(over="ignore"):
        values = pre.transform(pixels)
    finite = np.isfinite(values).all(axis=1)
    if not finite.mean() > 0.5:                  # the scene overflows, not a fill value or two
        raise HsanomalyError(f"{source.name}: its values, scaled as those {seen}, exceed "
                             "float32's range: other units, or a missing scale factor?")
    values = values[finite]                      # fill values: check_data says so
    typical = float(np.median(np.median(np.abs(values), axis=1)))
    spread = float(np.median(values.std(axis=0)))
    scaled = level_ratio(pre, pixels)
    if typical > OUT_OF_RANGE:
        warn(f"{source.name}: its values lie far outside those {seen} (a typical pixel at "
             f"{typical:.3g} times their range's half-width): other units, a missing scale "
             f"factor or another band order? {consequence}")
    elif spread < UNDER_RANGE:
        warn(f"{source.name}: its values vary far less than those {seen} (a typical band "
             f"spreads over {spread:.3g} of their range's half-width): other units, or a scale "
             f"factor applied twice? {consequence}")
    elif scaled is not None and not 1 / SCALED <= scaled[0] <= SCALED and scaled[1] <= ALIKE:
        warn(f"{source.name}: its values are about {scaled[0]:.2g} times those {seen}, in "
             f"every band alike: other units (reflectance in percent against a 0-10000 "
             f"product, say), or a scale factor missing or applied twice? {consequence}")
    else:                 # one band: a dead detector, or bands in another order (no wavelengths)
        far = np.median(np.abs(values), axis=0) > OUT_OF_RANGE
        flat = values.std(axis=0) < UNDER_RANGE
        kept = np.asarray(getattr(pre, "keep_", [True] * pixels.shape[1]), bool)
        stuck = np.flatnonzero((np.ptp(pixels, axis=0) == 0) & kept) + 1
        if len(stuck):       # seen before whitening spreads it over every component
            warn(f"{source.name}: {counted(len(stuck), 'band')} ({listed(stuck, 5)}) "
                 f"{'holds' if len(stuck) == 1 else 'hold'} "
                 f"one value across the pixels probed, where those {seen} varied: a dead "
                 f"detector? {consequence}")
        elif far.any() or flat.any():
            which, count = ("lie far outside", far.sum()) if far.any() else \
                ("vary far less than", flat.sum())
            warn(f"{source.name}: {int(count)} of the {values.shape[1]} {_judged(pre)} {which} "
                 f"those {seen}: a dead band, or the bands in another order? {consequence}")


def level_ratio(pre, pixels):
    """(the typical ratio of the bands' levels in ``pixels`` to those ``pre`` was fitted on,
    how far the bands' ratios spread: their 90th over their 10th percentile), or None where
    fewer than half the bands (or 4) can be compared (``Preprocessor.levels``)."""
    fitted = pre.levels()
    if fitted is None:
        return None
    return levels_ratio(fitted, pre.levels(pixels))


def levels_ratio(fitted, found):
    """``level_ratio`` of band levels ``found`` against ``fitted`` (each band's, in the same
    order): the typical ratio, and its spread over the bands."""
    usable = np.isfinite(fitted) & (fitted > 0) & np.isfinite(found) & (found > 0)
    if usable.sum() < max(4, usable.size / 2):
        return None
    ratios = np.log(found[usable] / fitted[usable])
    low, middle, high = np.quantile(ratios, [0.1, 0.5, 0.9])
    return float(np.exp(middle)), float(np.exp(high - low))


def _judged(pre):
    """What ``check_units`` judges band by band, as a message names it: the preprocessing's
    outputs (bands, the raster's binned, or their whitened components)."""
    if getattr(pre, "whiten", False):
        return "whitened components of its bands"
    binned = getattr(pre, "n_features_in_", None) != getattr(pre, "n_features_out_", None)
    return f"bands (binned from its {pre.n_features_in_})" if binned else "bands"


def probe(source):
    """[(block, valid)] of every probe window of ``source`` (the centre and about the
    quarter points: one window may hold a lake, another land), as read."""
    return [source.read(window) for window in source.probe_windows()]


def probe_pixels(probed):
    """The valid pixels (n, bands) of windows ``probed`` (``probe``); None where they are
    fewer than PROBE_MIN_PIXELS."""
    pixels = np.concatenate([block[:, valid].T for block, valid in probed])
    return pixels if len(pixels) >= PROBE_MIN_PIXELS else None


def probe_digest(probed):
    """A digest of windows ``probed`` (``probe``): a scene scored against a fit of its own
    pixels there (the scene a ``Detector`` or a quick model was fitted on) is in its own
    units, whatever ``check_units`` would judge of a part of it."""
    digest = hashlib.sha256()
    for block, valid in probed:
        digest.update(np.ascontiguousarray(block).tobytes())
        digest.update(np.packbits(valid).tobytes())
    return digest.hexdigest()


def first_mismatch(expected, found):
    """(band number, expected, found) of the first band whose centres differ, or None; two
    lists of centres in nm (either None: nothing to compare)."""
    if not expected or not found or len(expected) != len(found):
        return None
    for band, (a, b) in enumerate(zip(expected, found), start=1):
        if abs(a - b) > max(TOLERANCE_NM, TOLERANCE_FRACTION * abs(a)):
            return band, a, b
    return None
