"""Training windows from one or several rasters, read tile by tile through hsanomaly.io sources.

A window is the ``window`` x ``window`` neighbourhood of a centre pixel, kept only if every pixel
in it is valid (no nodata, inside the raster). An optional exclusion mask (non-zero = exclude,
e.g. known targets) drops windows centred on a masked pixel, or with ``background_only`` every
window touching one (the thesis code's rule: train on background only). With no mask the training is
fully unsupervised, which the thesis's figure 15 showed to work as well.

At most ``max_pixels`` pixels (``MAX_SAMPLE_PIXELS``, counted over a window's pixels) are
kept, drawn uniformly and repeatably, so memory stays bounded on large rasters. The
preprocessor is fitted on exactly these pixels. Nothing here needs torch.
"""

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import defaults
from ..errors import HsanomalyError
from ..io import open_source
from ..io.exclusion import Exclusion
from ..io.checks import warn
from ..io.values import two_values_text
from ..model.bundle import size_problem
from ..model.compat import ALIKE, SCALED, compare_centres, levels_ratio
from ..preprocess import Preprocessor
from ..spelling import counted, listed, spell

MAX_SAMPLE_PIXELS = 2**17
VAL_FRACTION = 0.1
MIN_WINDOWS = 64
INPUT_RANGE_RATIO = 100  # inputs whose typical values differ more are warned about (water
                         # and desert reflectance may differ 10 times; units or scaling, more)
RARE_CLUSTERS = 16
RARE_FLOOR = 0.01


@dataclass
class TrainingData:
    train: np.ndarray               # float32 (n, bands, window, window), preprocessed
    val: np.ndarray                 # float32 (n_val, bands, window, window), held out
    preprocessor: Preprocessor
    bands_in: int
    window: int
    wavelengths: Optional[list]
    fingerprint: str                # sha256 of the raw sampled windows
    weights: Optional[np.ndarray] = None   # per-window sampling weights when boosting rare spectra
    per_input: Optional[list] = None       # the windows each input gave: each counts by its
                                           # valid pixels (a small one beside a large, little)

    @property
    def bands(self):
        return self.train.shape[1]


def load_training_data(inputs, *, mask=None, window=1, bands=None, sqrt=False,
                       whiten=False, background_only=False, boost_rare=False, seed=0,
                       max_pixels=MAX_SAMPLE_PIXELS, val_fraction=VAL_FRACTION,
                       check_data=True):
    """Sample, preprocess and split training windows; every bad input is a one-line HsanomalyError."""
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise HsanomalyError("no input rasters given")
    if window < 1 or window % 2 == 0:
        raise HsanomalyError(f"{spell('window')} must be a positive odd number, got {window}")
    sources = [open_source(p) for p in inputs]
    try:
        wavelengths = _check_inputs(inputs, sources, window, check_data)
        count = sources[0].count          # the most bands a model of them takes
        problem = size_problem(count, min(bands or defaults.TRAIN_BANDS, count), window, 1)
        if problem:       # refused as the bundle loads: after the whole training
            raise HsanomalyError(f"{inputs[0]}: {problem}; ask for fewer {spell('bands')} or "
                                 f"a smaller {spell('window')}")
        masks = _exclusion_masks(mask, inputs, sources)
        total = sum(s.height * s.width for s in sources)
        max_windows = max(1, max_pixels // (window * window))
        fraction = min(1.0, max_windows / total)
        rng = np.random.default_rng(seed)
        raw = [_sample_windows(p, s, window, m, background_only, fraction, rng)
               for p, s, m in zip(inputs, sources, masks)]
    finally:
        for source in sources:
            source.close()
    if check_data:      # a quick model's raster: detect warns of it as it scores it
        _refuse_masks(inputs, raw)
    _check_value_ranges(inputs, raw)
    origin = np.repeat(np.arange(len(raw)), [len(r) for r in raw])
    raw = np.concatenate(raw)
    if len(raw) > max_windows:
        kept = np.sort(rng.choice(len(raw), max_windows, replace=False))
        raw, origin = raw[kept], origin[kept]
    if len(raw) < MIN_WINDOWS:
        raise HsanomalyError(f"{inputs[0]}: only {len(raw)} usable {window}x{window} windows, "
                             f"training needs at least {MIN_WINDOWS}")
    fingerprint = hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()
    preprocessor = _fit_preprocessor(inputs[0], raw, bands, sqrt, whiten)
    windows = _transform(preprocessor, raw)
    order = rng.permutation(len(windows))
    n_val = max(1, int(round(val_fraction * len(windows))))
    train, val = windows[order[n_val:]], windows[order[:n_val]]
    weights = rare_spectra_weights(_centres(train), seed) if boost_rare else None
    return TrainingData(train, val, preprocessor, sources[0].count, window,
                        wavelengths, fingerprint, weights,
                        np.bincount(origin, minlength=len(inputs)).tolist())


def _check_inputs(inputs, sources, window, check_data=True):
    """Refuse inputs that are not of one sensor's bands; returns the band centres the model
    records: those of the first input that has any (an input without them is taken as of
    the same bands, as detect takes a raster without them)."""
    first = sources[0]
    named = next(((p, s.wavelengths) for p, s in zip(inputs, sources) if s.wavelengths),
                 (None, None))
    for path, source in zip(inputs, sources):
        if source.count != first.count:
            raise HsanomalyError(f"{path}: has {source.count} bands but {inputs[0]} has "
                                 f"{first.count}; all inputs must have the same bands")
        if named[1] and not source.wavelengths:    # as detect says of such a raster
            warn(f"{path}: has no band centres to check against those of {named[0]}; its "
                 "bands are taken as theirs, in that order")
        # the model would record the first's centres and refuse this one's pixels
        compare_centres(named[1], source.wavelengths, path,
                        (f"{named[0]} has", f"{named[0]}'s"), "",
                        "all inputs must have the same bands")
        if window > min(source.height, source.width):
            raise HsanomalyError(f"{path}: window {window} is larger than the "
                                 f"{source.height}x{source.width} image")
        if check_data:             # what detect warns of, before the model learns it
            source.check_data(truth_like=False)      # refused below instead
    return named[1]


def _refuse_masks(inputs, raw):
    """Refuse an input whose sampled pixels hold two values: a truth or an exclusion mask
    given as the scene (its error surfaced only at detect, as a band count)."""
    for path, windows in zip(inputs, raw):
        shown = two_values_text(windows, first_band=windows[:, 0])
        if shown:
            raise HsanomalyError(f"{path}: its pixels hold only {shown}: a truth or mask "
                                 "raster, not a scene to train on")


def _check_value_ranges(inputs, raw):
    """Warn when the inputs' typical values differ by more than ``INPUT_RANGE_RATIO``, or
    when every band of one is the first's scaled alike by more than ``compat.SCALED`` (what
    ``detect`` says of a raster against its model): other units or a missing scale factor,
    which one model would learn as two materials."""
    if len(raw) < 2:                     # one input (a quick model's): nothing to compare
        return
    typical = [float(np.median(np.median(np.abs(r), axis=(0, 2, 3)))) if len(r) else np.nan
               for r in raw]
    known = [(t, p) for t, p in zip(typical, inputs) if np.isfinite(t) and t > 0]
    if len(known) < 2:
        return
    (low, low_path), (high, high_path) = min(known), max(known)
    if high > INPUT_RANGE_RATIO * low:
        warn(f"{high_path}: its values are typically {high / low:.3g} times those of "
             f"{low_path} ({high:.3g} against {low:.3g}): other units or a missing scale "
             "factor? One model learns them as they are")
        return
    # every band scaled alike, as detect judges a raster against its model: other units
    levels = [np.median(r, axis=(0, 2, 3)) if len(r) else None for r in raw]
    for path, level in zip(inputs[1:], levels[1:]):
        scaled = None if level is None or levels[0] is None else levels_ratio(levels[0], level)
        if scaled is not None and not 1 / SCALED <= scaled[0] <= SCALED and scaled[1] <= ALIKE:
            warn(f"{path}: its values are about {scaled[0]:.2g} times those of {inputs[0]}, "
                 "in every band alike: other units (reflectance in percent against 0-1, say), "
                 "or a scale factor missing or applied twice? One model learns them as they are")


def _exclusion_masks(mask, inputs, sources):
    """One ``io.exclusion.Exclusion`` (or None) per input; a single mask path applies to all.
    A mask's nodata pixels are excluded too: nothing says they are background."""
    if mask is None:
        return [None] * len(inputs)
    paths = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(inputs)
    if len(paths) != len(inputs):
        raise HsanomalyError(f"{paths[0]}: {len(paths)} masks given for {len(inputs)} inputs")
    shared = len(set(map(str, paths))) < len(paths)   # one mask over several rasters
    return [Exclusion(path, scene, (source.height, source.width), required=not shared)
            for path, scene, source in zip(paths, inputs, sources)]


def _sample_windows(path, source, window, exclude, background_only, fraction, rng):
    """Raw windows (n, bands_in, window, window) whose pixels are all valid, kept with ``fraction``."""
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.ndimage import maximum_filter, minimum_filter

    halo = window // 2
    parts, any_valid, any_window = [], False, False
    for tile in source.windows():
        block, valid = source.read(tile, halo)
        any_valid |= bool(valid.any())
        ok = minimum_filter(valid, size=window, mode="constant", cval=False) if halo else valid
        ok = ok[halo:ok.shape[0] - halo, halo:ok.shape[1] - halo]
        if exclude is not None:
            near = exclude.around(int(tile.row_off) - halo, int(tile.col_off) - halo,
                                  *valid.shape)
            if background_only and halo:
                near = maximum_filter(near, size=window, mode="constant", cval=False)
            ok &= ~near[halo:near.shape[0] - halo, halo:near.shape[1] - halo]
        any_window |= bool(ok.any())
        rows, cols = np.nonzero(ok & (rng.random(ok.shape) < fraction))
        if len(rows):
            view = sliding_window_view(block, (window, window), axis=(1, 2))
            parts.append(np.moveaxis(view[:, rows, cols], 1, 0))
    if not any_valid:
        raise source.no_valid_pixels()
    if not any_window:
        raise HsanomalyError(f"{path}: no {window}x{window} window is free of nodata"
                             + (" and masked pixels" if exclude is not None else ""))
    if not parts:
        return np.empty((0, source.count, window, window), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _fit_preprocessor(path, raw, bands, sqrt, whiten):
    """Fit on every sampled pixel; ``bands`` None means min(defaults.TRAIN_BANDS, usable bands)."""
    n_in = raw.shape[1]
    if bands is not None and not 1 <= bands <= n_in:
        raise HsanomalyError(f"{path}: cannot bin {n_in} bands into {bands} bands "
                             f"(choose 1 to {n_in})")
    pixels = np.moveaxis(raw, 1, -1).reshape(-1, n_in)
    if bands is None and Preprocessor.usable(pixels).sum() > defaults.TRAIN_BANDS:
        bands = defaults.TRAIN_BANDS          # counted before the one fit
    try:
        pre = Preprocessor(n_bands=bands, sqrt=sqrt, whiten=whiten).fit(pixels)
    except HsanomalyError as err:
        raise HsanomalyError(f"{path}: {err}") from None
    dropped = [i + 1 for i, kept in enumerate(pre.keep_) if not kept]
    if dropped:
        warn(f"{path}: {counted(len(dropped), 'band')} of the {n_in} read constant (or not a "
             f"number) over the training pixels, left out of the model ({listed(dropped)}): its "
             "GAN scores cannot see what happens there (rx and the rings still do)")
    return pre


def _transform(preprocessor, raw):
    n, bands_in, k, _ = raw.shape
    pixels = preprocessor.transform(np.moveaxis(raw, 1, -1).reshape(-1, bands_in))
    return np.ascontiguousarray(np.moveaxis(pixels.reshape(n, k, k, -1), -1, 1))


def _centres(windows):
    h = windows.shape[-1] // 2
    return windows[:, :, h, h]


def rare_spectra_weights(X, seed=0, clusters=RARE_CLUSTERS, floor=RARE_FLOOR):
    """Sampling weights that boost rare but not singular spectra (the thesis's road experiment).

    Spectra are grouped by k-means; each cluster's share of the draws becomes proportional to
    the square root of its size (a 4 % cluster beside a 64 % one gets a quarter as many draws
    instead of a sixteenth). Clusters under ``floor`` of the windows, where anomalies would
    fall, keep their natural share so the generator does not learn to reproduce them.
    """
    from sklearn.cluster import KMeans

    k = min(clusters, len(X))
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(X)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    share = counts / len(X)
    common = share >= floor
    mass = share.copy()
    mass[common] = np.sqrt(share[common]) / np.sqrt(share[common]).sum() * share[common].sum()
    weights = mass[labels] / counts[labels]
    return (weights / weights.sum()).astype(np.float64)
