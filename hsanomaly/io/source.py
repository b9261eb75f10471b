"""Pixel sources: windowed, halo-aware reads from a raster on disk or from an in-memory cube.

A source is what the tiled engine and the scorers' fit steps read from. Both kinds give
``read(window, halo)`` returning a float32 (bands, rows, cols) block padded by ``halo``
pixels on every side (NaN outside the raster) and a boolean validity mask, plus
``reduce`` (a pass over all tiles) and ``sample`` (random valid pixels). A distributed
runner can wrap a source and replace ``reduce`` and ``sample`` with cluster versions.
"""

import contextlib
import os
import re
import socket
import stat
import threading
import uuid
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from ..cancel import cancel_point
from ..defaults import TILE
from ..errors import HsanomalyError
from ..spelling import counted, listed, some_of, spell
from .bandaxis import MIN_LINE, warn_if_bands_elsewhere
from .checks import absolute, available_memory, size_text, warn_once
from .digest import file_sha256
from .gdal import (GDAL_CACHE_BYTES, band_wavelengths, bad_bands, check_dataset, check_raw_size,
                   dataset_found, envi_header, gdal_env, geolocation, is_gdal_name, open_raster,
                   read_checked, read_masked, require_file, vrt_blocks, vrt_source_pixels,
                   without_secrets)
from .values import (ATTRIBUTE_SCALING, EXTREME, FLOAT32_MAX, RASTER_SCALING,
                     check_float32_range, code_bands, coarsest_in_float32, commonest,
                     declare_nodata, exact, extreme_values, noise_bands, two_values_text,
                     warn_coarse, wider_than_float32)

PROBE = 64              # pixels across a window the data is probed on before the work
AXIS_STRIP, AXIS_LINE, AXIS_LINES = 4, 512, 200   # the band-axis check's lines: strips 4
                                                  # pixels wide, 512 long; 200 lines an axis
PROBE_AT = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))  # fractions
FILL_SHARE = 0.05       # share of probed pixels holding one fill value in every band, or nodata
                        # in more than a tenth of the bands but not all, beyond which to warn
FILL_MIN_BANDS = 10     # fewer bands may well hold one value in all of them (a saturated or
                        # black pixel of a few-band image)

SATURATION_NEAR = 0.8  # of the type's largest value: a band beside a saturated one comes that
#                        near the ceiling (spectra are smooth), ordinary bright pixels rarely do
SAMPLE_REDRAW = 1.1   # sample again when nodata left a tenth fewer valid pixels than drawn for
SCALED_BANDS = 16     # bands scaled at once, in place
# a tiled raster's block cache at most: its blocks read again cost a run a tenth or so of its
# time (a striped one's, many times it), and several runs at once would each take it
TILED_CACHE_BYTES = 4 * GDAL_CACHE_BYTES


def _alpha_levels(ds, band):
    """How many values alpha band ``band`` of open dataset ``ds`` holds in its centre window
    of ``PROBE`` pixels where most of them are neither transparent (0) nor opaque (the
    highest), as a band of data's are; 0 where most are (a mask, its edges anti-aliased)."""
    rows, cols = min(PROBE, ds.height), min(PROBE, ds.width)
    window = Window((ds.width - cols) // 2, (ds.height - rows) // 2, cols, rows)
    values = ds.read(band, window=window)
    between = (values != 0) & (values != values.max())
    return len(np.unique(values)) if between.mean() > 0.5 else 0


def iter_windows(height, width, tile=TILE):
    """Row-major tiles covering the raster; the last row/column of tiles may be smaller."""
    for row in range(0, height, tile):
        for col in range(0, width, tile):
            yield Window(col, row, min(tile, width - col), min(tile, height - row))


def file_identity(path):
    """(path, device, inode, size, modification time in ns) of file ``path``, or None where
    there is no such file (a URL, an archive member): what a save in place or a replacement
    changes, at the cost of a stat."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return (absolute(path), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def content_digest(path):
    """sha256 of every byte of file ``path`` (or None where it cannot be read): what a scene
    loaded whole into memory is compared by, whatever its modification time says."""
    try:
        return file_sha256(path)
    except OSError:
        return None


class _Source:
    """Shared tile logic; subclasses provide ``count``, ``bands`` (the numbers, from 1, of the
    bands read), ``height``, ``width``, ``_read`` and ``_read_bands``."""

    _token_lock = threading.Lock()
    exact_scaling = None     # a raster's band (scale, offset), float64: see RasterSource
    scaled = False           # the values read are stored ones scaled (a band scale, a
                             # DataArray's scale_factor or add_offset)
    exclusion = None         # an ``io.exclusion.Exclusion``: pixels read as nodata, whatever they hold
    identity = None          # the file's ``file_identity`` when the source was opened
    loaded = None            # pixels held in memory: the file's ``content_digest`` before they
                             # were read

    def changed(self):
        """Whether the file this source was opened on has been replaced or saved anew since:
        what it describes (or holds) and a fingerprint taken by its path after would be of
        two rasters. Another file at its path or another size is a change; a new modification
        time alone (a touch, a sync) is not, for a raster read by window (the content
        fingerprint, which the engine takes before any pixel is read, tells a save in place);
        pixels held in memory are compared by the file's content."""
        if self.identity is None:
            return False
        now = file_identity(self.identity[0])
        if now is None or now[:4] != self.identity[:4]:
            return True
        return self.loaded is not None and content_digest(self.identity[0]) != self.loaded

    def moved_away(self):
        """Whether the file this source was opened on is no longer at its path (moved or
        removed), which ``changed`` counts as a change too."""
        return self.identity is not None and file_identity(self.identity[0]) is None

    @property
    def token(self):
        """A name drawn for this source, which its copies on other workers keep: what results
        kept for its pixels are filed under (``scorers.halo``)."""
        with self._token_lock:
            if getattr(self, "_token", None) is None:
                self._token = uuid.uuid4().hex
            return self._token

    def cache_for(self, rows):
        """GDAL's block cache for reads of ``rows`` rows (``RasterSource``'s depends on its
        blocks)."""
        return GDAL_CACHE_BYTES

    def read(self, window, halo=0, masked=True):
        """Return (block, valid) for ``window`` grown by ``halo`` pixels, NaN/False outside.
        A block inside the raster is the array read (no second copy of a tile's every band).
        ``masked``: the exclusion's pixels are nodata too (False: the data as the file has it,
        which is what identifies an input)."""
        cancel_point()              # a fit reading the scene tile by tile stops between two
        col0, row0 = int(window.col_off) - halo, int(window.row_off) - halo
        h, w = int(window.height) + 2 * halo, int(window.width) + 2 * halo
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, self.height), min(col0 + w, self.width)
        data = None
        if r1 > r0 and c1 > c0:
            data, ok = self._read(Window(c0, r0, c1 - c0, r1 - r0))
            data = data.astype(np.float32, copy=False)
            ok &= np.isfinite(data).all(axis=0)
            if self.exclusion is not None and masked:
                ok &= ~self.exclusion.window(r0, c0, r1 - r0, c1 - c0)
            data[:, ~ok] = np.nan
            if data.shape[1:] == (h, w):
                return data, ok
        block = np.full((self.count, h, w), np.nan, dtype=np.float32)
        valid = np.zeros((h, w), dtype=bool)
        if data is not None:
            block[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = data
            valid[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = ok
        return block, valid

    def windows(self, tile=TILE):
        return list(iter_windows(self.height, self.width, tile))

    def probe_windows(self, size=PROBE):
        """Windows of ``size`` pixels (at most the image) for a quick look at the data: the
        centre first, then about the quarter points (the centre may be nodata)."""
        rows, cols = min(size, self.height), min(size, self.width)
        found = []
        for fr, fc in PROBE_AT:
            row = min(max(int(self.height * fr) - rows // 2, 0), self.height - rows)
            col = min(max(int(self.width * fc) - cols // 2, 0), self.width - cols)
            if (row, col) not in [(w.row_off, w.col_off) for w in found]:
                found.append(Window(col, row, cols, rows))
        return found

    band_axis_checked = False    # in-memory cubes are checked whole (io.inputs)
    bands_guessed_by = None      # the reader that took an array's first axis for its bands

    def probed_once(self):
        """(window, first) for every probe window, ``first`` true at the pixels no earlier
        window holds: the windows overlap on a scene under a few of them across, where a
        pixel would be counted in each."""
        windows = self.probe_windows()
        for index, window in enumerate(windows):
            first = np.ones((int(window.height), int(window.width)), dtype=bool)
            for earlier in windows[:index]:
                top = max(int(earlier.row_off) - int(window.row_off), 0)
                left = max(int(earlier.col_off) - int(window.col_off), 0)
                bottom = int(earlier.row_off + earlier.height - window.row_off)
                right = int(earlier.col_off + earlier.width - window.col_off)
                first[top:max(bottom, 0), left:max(right, 0)] = False
            yield window, first

    @staticmethod
    def axis_advice(axis, where):
        """What to do when the bands seem to lie along ``axis`` (``bandaxis``)."""
        return (f"If its spectra lie along that axis (an HDF5 or netCDF cube stored with its "
                f"bands {where}), store the cube bands first: GDAL reads bands first")

    def saturation_nodata(self):
        """The nodata value where it is the largest its integer type holds, which saturated
        pixels hold too; None elsewhere (an array is masked, with no value)."""
        return None

    def _saturated(self, values, gaps, bad, top):
        """Of pixels ``values`` (bands, n, 1) with ``gaps`` (``bad`` a pixel), those at the
        nodata value ``top`` in some bands and not all that come near it (``SATURATION_NEAR``)
        in a band beside one of those: saturated, their spectra running into the ceiling, not
        a dead column or a ragged fill edge, whose neighbouring bands hold ordinary values."""
        some = (bad > 0) & (bad < self.count)
        beside = np.zeros_like(gaps)
        beside[1:] |= gaps[:-1]
        beside[:-1] |= gaps[1:]
        near = np.where(beside & ~gaps, values, 0).max(axis=0) >= top * SATURATION_NEAR
        return some & near

    def _warn_code_bands(self, probed):
        """Say the bands that hold codes or stay unscaled among scaled ones (``code_bands``)."""
        codes, unscaled = code_bands(probed, self.exact_scaling)
        rows = sorted(set(codes) | set(unscaled))
        if not rows:
            return
        one = len(rows) == 1
        why = [f"{'holds' if one else 'hold'} a few values in the pixels probed, as codes do"
               if codes else "",
               f"{'carries' if one else 'carry'} no scale or offset where the other bands do"
               if unscaled else ""]
        subset = "gdal_translate -b, or a stack without it" if isinstance(self, RasterSource) \
            else "a band subset"
        warn_once(f"{self.name}: {counted(len(rows), 'band')} "
                  f"({listed(self.bands[r] for r in rows)}) {', and '.join(filter(None, why))}: "
                  "a quality, cloud or scene-classification layer (QA_PIXEL, SCL)? Scored as "
                  f"a band of the spectra, {'it' if one else 'they'} can take over the local "
                  f"rings and principal components (lrx, gmm, the context scores) and hide the "
                  f"targets; leave {'it' if one else 'them'} out ({subset}), and mask the clouds "
                  f"({spell('mask')})")

    def _declaring(self, value):
        """How ``value`` is declared nodata here: in a raster's file; for a dataset handed in,
        where it is opened (a warped one's fill is in no file, and its file may hold the value
        as data); None for an array, which is masked instead."""
        if not isinstance(self, RasterSource):
            return None
        return declare_nodata(value) if self._owned else \
            f"open it as rasterio's WarpedVRT(dataset, nodata={exact(value)})"

    def check_data(self, truth_like=True):
        """Warn, from the probe windows, about what would make the scores silently worse: a
        cube whose bands seem to lie along another axis than GDAL's (``_check_band_axis``),
        values float32 rounds by more than a hundredth of their spread (``coarsest_in_float32``),
        and pixels nodata or NaN in only a few bands (GDAL's rule leaves a pixel out whole once
        one band says nodata, so a nodata value that some band holds as real data, 0 over
        water, say, or one band's dropout silently removes those pixels): however few where
        they miss a tenth of the bands at most (a one-pixel target may be one), a share of them
        where they miss more (a seam of two detectors' bands at a swath's edge), however few
        again where the nodata value is its type's largest (``saturation_nodata``), and
        a large share of pixels that hold one value in every band, which no spectrum does: a
        fill value not declared as nodata (-9999 around a swath), which the scene's statistics
        would then take in; and, ``truth_like``, pixels of two values: a truth or a mask given
        as the scene (training refuses one instead)."""
        total, partial, per_band, coarse = 0, 0, np.zeros(self.count), []
        flat, whole = [], 0       # the value of each valid pixel that is one value in every
                                  # band; the valid pixels
        pixels = []               # every valid pixel, for the extreme ones
        infinite = 0              # pixels infinite in some band: left out like nodata
        nan_gaps = 0              # pixels NaN (declared nodata or not) in a few bands
        rare = 0                  # pixels nodata in a tenth of the bands at most: said however
                                  # few (a dark band's 0 taken for nodata; a one-pixel target)
        top = self.saturation_nodata()
        saturated = 0             # pixels at that value in some bands, not all: said however few
        # bands along another axis: the "pixels" are bands, and no advice about them holds
        doubt = not self.band_axis_checked and self._check_band_axis()
        for window, keep in self.probed_once():
            values, nodata = self._read_bands(window, stored=True)
            if self.exclusion is not None:      # what the mask leaves out is not scored
                keep &= ~self.exclusion.window(int(window.row_off), int(window.col_off),
                                               int(window.height), int(window.width))
            values, nodata = values[:, keep][:, :, None], nodata[:, keep][:, :, None]
            with np.errstate(invalid="ignore"):     # beyond float32: refused when read
                usable = ~nodata.any(axis=0) & (np.abs(values) <= FLOAT32_MAX).all(axis=0)
            pixels.append(values[:, usable])
            infinite += int((np.isinf(values) & ~nodata).any(axis=0).sum())
            if self.exact_scaling is not None:      # scored once scaled
                scale, offset = self.exact_scaling
                coarse.append(coarsest_in_float32(values * scale + offset, nodata, self.bands))
            elif values.dtype != np.float32:
                coarse.append(coarsest_in_float32(values, nodata, self.bands))
            nan = np.isnan(values)
            gaps = nodata | nan                     # NaN: left out too, declared or not
            bad = gaps.sum(axis=0)
            ceiling = self._saturated(values, gaps, bad, top) if top is not None else \
                np.zeros_like(bad, bool)
            saturated += int(ceiling.sum())
            few = (bad > 0) & (bad <= self.count // 2) & ~ceiling
            total, partial = total + bad.size, partial + int(few.sum())
            rare += int((few & (bad <= max(1, self.count // 10))).sum())
            nan_gaps += int((few & nan.any(axis=0)).sum())
            per_band += gaps[:, few].sum(axis=1)
            if self.count >= FILL_MIN_BANDS:
                same = (bad == 0) & (values == values[:1]).all(axis=0)
                flat.append(values[0][same])
                whole += int((bad == 0).sum())
        warn_coarse(self.name, max((c for c in coarse if c), key=lambda c: c[1], default=None),
                    RASTER_SCALING if self.exact_scaling is not None else None)
        if infinite:
            warn_once(f"{self.name}: {infinite} of the pixels probed are infinite in some band; "
                      "they are left out like nodata (NaN in the heatmap), though such a value "
                      "may mark the scene's most anomalous pixels (saturated?)")
        probed = np.concatenate(pixels, axis=1)
        shown = two_values_text(probed, first_band=probed[0]) if truth_like else None
        if shown:
            warn_once(f"{self.name}: the pixels probed hold only {shown}: a truth or mask raster "
                      "rather than a scene? Its scores rank no spectra")
        extreme = extreme_values(probed)
        if extreme is not None:
            count, value = extreme
            declare = (f"declare it nodata ({how})" if (how := self._declaring(value))
                       else "mask them, or set them to NaN")
            warn_once(f"{self.name}: {count} of the pixels probed hold values such as {value:g}, "
                      f"more than {EXTREME:g} times the other pixels' spread away from them: a "
                      "fill value not declared as nodata? A few such pixels outweigh every "
                      "other in the scene's statistics, and the scores flatten, and local "
                      "rings' sums lose the precision of every pixel after them in a tile; "
                      f"{declare}")
        noisy = noise_bands(probed)
        if noisy:
            bands, share = noisy
            subset = ("gdal_translate -b, or an ENVI header's bbl" if isinstance(self, RasterSource)
                      else "a band subset")
            one = len(bands) == 1
            warn_once(f"{self.name}: {counted(len(bands), 'band')} ({listed(bands)}) barely "
                      f"{'follows its neighbours' if one else 'follow their neighbours'} in the "
                      f"pixels probed, as noise does (water vapour absorption bands, or a layer "
                      f"that is no band of the spectra?), and {'holds' if one else 'hold'} "
                      f"{share * 100:.2g}% of the pixels' variance, enough that the principal "
                      "components of lrx, gmm and the rings of the context scores would be "
                      f"spent on {'it' if one else 'them'} (rx is not affected); leave "
                      f"{'it' if one else 'them'} out ({subset})")
        self._warn_code_bands(probed)
        if isinstance(self, RasterSource):
            self._warn_mixed_pixels()
        # every pixel probed left out: the fit's refusal names the band (``no_valid_pixels``)
        if saturated and not doubt:      # the others are said below, as they were
            warn_once(f"{self.name}: {saturated:,} of the pixels probed hold the nodata value "
                      f"{top:g}, the largest a {self.dtype} holds, in some bands and not all, "
                      f"so {'it is' if saturated == 1 else 'they are'} left out whole: "
                      "saturated pixels, often the scene's brightest and most anomalous? If "
                      "so, set another nodata value, or none")
        if total and (FILL_SHARE * total < partial or rare) and partial < total and not doubt:
            band = int(np.argmax(per_band)) + 1
            raster = isinstance(self, RasterSource)
            some = (f"{partial / total:.0%} of the pixels probed are" if 100 * partial >= total
                    else f"{partial:,} of the pixels probed {'is' if partial == 1 else 'are'}")
            they = "it is" if partial == 1 else "they are"
            if nan_gaps > partial / 2 or not raster:
                subset = "gdal_translate -b" if raster else "a band subset"
                gap = "NaN" if nan_gaps > partial / 2 else "masked"
                warn_once(f"{self.name}: {some} {gap} in only a few bands (band {band} most "
                          f"often), so {they} left out whole; leave such bands out ({subset}) "
                          "to score those pixels")
            else:
                warn_once(f"{self.name}: {some} nodata in only a few bands (band {band} most "
                          f"often), so {they} left out whole; is the nodata value also real "
                          "data there (0 over water, say)? If so, set another nodata value, or "
                          "none")
        flat = np.concatenate(flat) if flat else np.empty(0)
        if total and len(flat) > FILL_SHARE * total and not doubt:
            fill, count = commonest(flat)
            if FILL_SHARE * total < count < whole:   # all: a constant raster, said so
                declare = (f"declare it ({how})" if (how := self._declaring(fill))
                           else "mask it, or set it to NaN")
                warn_once(f"{self.name}: {count / total:.0%} of the pixels probed hold {fill:g} "
                          "in every band, which no spectrum does: a fill value not declared as "
                          f"nodata? If so, {declare}, or the scene's statistics take those "
                          "pixels in")

    def _check_band_axis(self):
        """``bandaxis.warn_if_bands_elsewhere`` on lines read by window: every band at the
        pixels of small blocks, and each spatial axis along strips as long as the image (at
        most ``AXIS_LINE`` pixels), at a quarter, half and three quarters of the other axis
        (one strip could run along a road), with nodata, the exclusion mask's pixels and
        fills (one value in every band: they look smooth) left out. True where it warned."""
        if min(self.count, max(self.height, self.width)) < MIN_LINE:
            return False                             # too short to tell (bandaxis.MIN_LINE)
        rows, cols = min(self.height, AXIS_LINE), min(self.width, AXIS_LINE)
        thick, wide = min(AXIS_STRIP, self.height), min(AXIS_STRIP, self.width)
        top, left = (self.height - rows) // 2, (self.width - cols) // 2
        rng, lines = np.random.default_rng(0), [[], [], []]
        for at in (0.25, 0.5, 0.75):
            row, col = int((self.height - thick) * at), int((self.width - wide) * at)
            for axis, window in enumerate((Window(col, row, wide, thick),
                                           Window(col, top, wide, rows),
                                           Window(left, row, cols, thick))):
                values, nodata = self._read_bands(window, stored=True)
                left_out = nodata | (values == values[:1]).all(axis=0)
                if self.exclusion is not None:
                    left_out = left_out | self.exclusion.window(
                        int(window.row_off), int(window.col_off), int(window.height),
                        int(window.width))
                values = np.where(left_out, np.nan, values.astype(np.float64))
                along = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
                lines[axis].append(along[rng.permutation(len(along))[:AXIS_LINES // 3 + 1]])
        return warn_if_bands_elsewhere([np.concatenate(along) for along in lines],
                                       (self.count, self.height, self.width), self.name,
                                       self.axis_advice, shape_is="read as (bands, rows, cols)",
                                       refused_by=self.bands_guessed_by)

    def reduce(self, fn, tile=TILE, combine=None):
        """Fold ``fn(pixels)`` over all tiles in order, where ``pixels`` are a tile's valid
        (n, bands) pixels; ``combine`` (default: sum) may be any associative function. Within
        ``folding``, the fold its sample made is taken instead of a pass of its own."""
        found = self.take_fold(fn, tile, combine)
        if found is not NOTHING:
            return found
        return fold_in_order((self.reduce_tile(window, fn) for window in self.windows(tile)),
                             combine)

    @contextlib.contextmanager
    def folding(self, fold):
        """A block in which a ``sample`` also folds ``fold`` (``(fn, combine)``; None: nothing)
        over every valid pixel of the tiles it reads, and the first ``reduce`` of it takes that
        fold: a fit that draws a sample and needs, say, the scene's moments reads the raster
        once. The fold is handed over once and never kept past the block: the pixels of an
        array may change between two fits."""
        self._folding = None if fold is None else {"fold": tuple(fold)}
        try:
            yield
        finally:
            self._folding = None

    def take_fold(self, fn, tile, combine):
        """The fold of ``fn`` over tiles of ``tile`` pixels that a sample made within
        ``folding``, handed over once; else NOTHING."""
        kept = getattr(self, "_folding", None)
        if not kept or kept["fold"] != (fn, combine) or kept.get("tile") != tile:
            return NOTHING
        return kept.pop("value", NOTHING)

    def __getstate__(self):
        """A copy in another process folds nothing for this one (``folding``)."""
        return {k: v for k, v in vars(self).items() if k != "_folding"}

    def reduce_tile(self, window, fn):
        block, valid = self.read(window)
        return fn(block[:, valid].T)

    def sample_plan(self, n, seed=0, tile=TILE, valid=None):
        """(window, key, fraction) per tile: each tile keeps the ``fraction`` of its valid
        pixels that its own random ``key`` picks, so tiles can be sampled in any order. The
        fraction is n over ``valid`` pixels (default: every pixel of the raster)."""
        windows = self.windows(tile)
        keys = np.random.default_rng(seed).integers(0, 2**31, len(windows))
        fraction = min(1.0, n / max(1, self.height * self.width if valid is None else valid))
        return [(window, key, fraction) for window, key in zip(windows, keys)]

    def sample_tile(self, window, key, fraction, fn=None):
        """(the tile's drawn valid pixels, how many valid pixels it has, ``fn`` of them all
        or None)."""
        pixels = self.reduce_tile(window, lambda X: X)
        drawn = pixels[np.random.default_rng(key).random(len(pixels)) < fraction]
        return drawn, len(pixels), None if fn is None else fn(pixels)

    def sample(self, n, seed=0, tile=TILE):
        """About ``n`` valid pixels (n, bands) drawn uniformly without replacement, repeatably
        (within ``folding``, folding on the same pass)."""
        return self.draw_sample(n, seed, tile,
                                lambda jobs: (self.sample_tile(*job) for job in jobs))

    def draw_sample(self, n, seed, tile, run):
        """``sample``, with ``run(jobs)`` giving ``sample_tile(*job)`` of each job in their
        order (here or on a cluster). The first draw assumes every pixel valid; where nodata
        leaves noticeably fewer (a swath's empty corners), it draws again at n over the valid
        pixels counted, with the same keys, so the sample is about n either way and the same
        wherever run. ``sampled_from``: the valid pixels it was drawn from. A fold asked for
        (``folding``) is folded as the tiles come, in their order, as ``reduce`` folds them."""
        kept = getattr(self, "_folding", None)
        fn, combine = kept["fold"] if kept else (None, None)
        jobs = self.sample_plan(n, seed, tile)
        drawn, valid, total = [], 0, None
        for pixels, count, part in run([job + (fn,) for job in jobs]):
            cancel_point()          # the tiles a cluster samples come back one by one
            drawn.append(pixels)
            valid += count
            if fn is not None:
                total = fold_in_order([part], combine, total)
        self.sampled_from = valid           # what a fit short of pixels tells (check_pixels)
        if fn is not None:
            kept.update(tile=tile, value=total)
        again = self.sample_plan(n, seed, tile, valid)
        if again[0][2] > SAMPLE_REDRAW * jobs[0][2]:
            drawn = []
            for pixels, _, _ in run([job + (None,) for job in again]):
                cancel_point()
                drawn.append(pixels)
        return self.join_samples(drawn)

    def join_samples(self, parts):
        pixels = np.concatenate(parts) if parts else np.empty((0, self.count), np.float32)
        if len(pixels) == 0:
            raise self.no_valid_pixels()
        return pixels

    def no_valid_pixels(self, tile=TILE):
        """The error for a raster where no pixel is valid in every band. A pixel counts only
        when all its bands are finite and not nodata, so one dead or masked band (NaN water
        vapour bands, say) voids the whole raster: the message names such bands, and where
        each band has values somewhere, those missing in most pixels."""
        valid = np.zeros(self.count, np.int64)
        for window in self.windows(tile):
            valid += self._values_per_band(window)
        seen = valid > 0
        if seen.all() and self.exclusion is not None:
            return HsanomalyError(f"{self.name}: no valid pixel is left outside the mask "
                                  f"{self.exclusion.path}")
        if not seen.any():
            return HsanomalyError(f"{self.name}: the raster has no valid pixels "
                                  "(every value is NaN, infinite or nodata)")
        subset = "gdal_translate -b" if isinstance(self, RasterSource) else "a band subset"
        empty = [self.band_names[i] for i in np.flatnonzero(~seen)]
        if empty:
            return HsanomalyError(f"{self.name}: no pixel is valid in every band: "
                                  f"{some_of(empty, 5)} {'holds' if len(empty) == 1 else 'hold'} "
                                  f"only NaN or nodata; leave such bands out first (for example "
                                  f"{subset})")
        missing = 1 - valid / valid.max()     # against the band with values at most pixels
        worst = [self.band_names[i] for i in np.flatnonzero(missing >= 0.5)] or \
            [self.band_names[int(np.argmax(missing))]]
        return HsanomalyError(f"{self.name}: no pixel is valid in every band (each pixel is NaN, "
                              f"infinite or nodata in at least one band; {some_of(worst, 5)} "
                              f"{'misses' if len(worst) == 1 else 'miss'} the most: leave "
                              f"{'it' if len(worst) == 1 else 'them'} out first ({subset}), or "
                              "set another nodata value if it is real data there)")

    def _values_per_band(self, window):
        """Per band: how many pixels of ``window`` hold a finite, non-nodata value in it."""
        data, nodata = self._read_bands(window)
        return (~nodata & np.isfinite(data)).sum(axis=(1, 2))


def add(a, b):
    """Sum of two reduction parts: arrays, numbers, or tuples of them."""
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b))
    return a + b


NOTHING = object()     # no fold to hand over (``_Source.take_fold``): None may be one


def fold_in_order(parts, combine=None, total=None):
    """``parts`` folded in order onto ``total`` by ``combine`` (default: ``add``)."""
    combine = combine or add
    for part in parts:
        total = part if total is None else combine(total, part)
    return total


# GDAL's drivers that take an array's first dimension for its bands, whatever the file
# stores there (netCDF's reads its dimensions' names): a cube whose bands seem to lie along
# another axis is refused, not warned about (``bandaxis``)
BANDS_GUESSED = {"HDF5Image": "GDAL's HDF5 driver", "HDF4Image": "GDAL's HDF4 driver"}


class RasterSource(_Source):
    """Any raster GDAL reads, opened lazily so the source can travel to worker processes."""

    def __init__(self, path):
        self.path = str(path)
        self.name = without_secrets(self.path)     # what messages and records show
        self.identity = None if is_gdal_name(self.path) else file_identity(self.path)
        with open_raster(self.path) as ds:
            self._describe(ds)
        self._ds, self._owned, self._reading = None, True, threading.Lock()

    @classmethod
    def from_dataset(cls, dataset):
        """A source reading an already open rasterio dataset, which stays open and the caller's."""
        source = cls.__new__(cls)
        source.path, source.name = dataset.name, without_secrets(dataset.name)
        check_dataset(dataset)
        source._describe(dataset)
        source._ds, source._owned, source._reading = dataset, False, threading.Lock()
        return source

    def _describe(self, ds):
        for band, dtype in enumerate(ds.dtypes, start=1):
            if dtype.startswith("complex"):
                raise HsanomalyError(f"{self.name}: complex pixels ({dtype}, band {band}) are not "
                                     "supported; convert to amplitude or real/imaginary bands first")
        # an alpha band says which pixels are there (0: transparent); it is no spectral band.
        # GDAL masks with it only in 2- and 4-band rasters, so it is read here as the mask
        alpha = [b for b, c in enumerate(ds.colorinterp, start=1) if c.name == "alpha"]
        envi = envi_header(ds)           # read once: from the header itself (``envi_header``)
        self.bands_guessed_by = BANDS_GUESSED.get(ds.driver)
        check_raw_size(ds, envi)
        bad = bad_bands(ds, self.name, envi)
        self.bands = [b for b in range(1, ds.count + 1) if b not in alpha and b not in bad]
        if not ds.count:
            inside = ds.subdatasets
            raise HsanomalyError(f"{self.name}: " + (f"a container of {len(inside)} datasets and "
                                                     "no bands of its own; name one: "
                                                     f"{some_of(inside, 3)}"
                                                     if inside else "has no bands"))
        if not self.bands:
            raise HsanomalyError(f"{self.name}: every band is an alpha band or marked bad in the "
                                 "ENVI header's bbl; no spectra to score")
        unmark = f"(gdal_translate -colorinterp_{alpha[0]} undefined)" if alpha else ""
        if alpha and (alpha[0] != ds.count or len(alpha) > 1):    # -co ALPHA=YES: band 2
            warn_once(f"{self.name}: band {alpha[0]} of {ds.count} is marked alpha "
                      "(transparency): it is left out of the spectra and its zeros are nodata; "
                      f"an alpha band is the last: if it is spectral, unmark it {unmark}")
        elif alpha and (levels := _alpha_levels(ds, alpha[0])) > 2:
            # GDAL marks the 4th band of a 4-band 8-bit GeoTIFF alpha unless told otherwise
            # (an RGB + near-infrared image): an alpha band holds 0 and its opaque value
            warn_once(f"{self.name}: band {alpha[0]} of {ds.count} is marked alpha "
                      f"(transparency) but holds {levels} values at the image's centre, as a "
                      "band of data does (GDAL marks a 4-band 8-bit GeoTIFF's 4th band alpha "
                      "unless told otherwise): it is left out of the spectra and its zeros are "
                      f"nodata; if it is spectral, unmark it {unmark}")
        self.alpha_bands = alpha
        self.all_bands = len(self.bands) == ds.count
        dropped = [f"{len(bad)} marked bad in the ENVI header's bbl"] if bad else []
        dropped += [f"{len(alpha)} alpha"] if alpha else []
        self.left_out = (f"of its {ds.count} bands, {' and '.join(dropped)} left out"
                         if dropped else "")
        self.mixed_types = len({ds.dtypes[b - 1] for b in self.bands}) > 1
        self.has_float64 = any(ds.dtypes[b - 1] == "float64" for b in self.bands)
        self.wider_than_float32 = any(wider_than_float32(ds.dtypes[b - 1]) for b in self.bands)
        self.count, self.height, self.width = len(self.bands), ds.height, ds.width
        georeferenced = not ds.transform.is_identity or ds.crs is not None
        gcps, gcp_crs = ds.gcps
        self.profile = {"crs": ds.crs if georeferenced or not gcps else None,
                        "transform": ds.transform if georeferenced else None,
                        "width": ds.width, "height": ds.height,
                        "gcps": (gcps, gcp_crs) if gcps else None, "rpcs": ds.rpcs,
                        "geolocation": None if georeferenced else self._geolocation(ds),
                        # pixel-is-point: a tie point at a pixel's centre, kept on the outputs
                        "area_or_point": ds.tags().get("AREA_OR_POINT")}
        self.wavelengths = band_wavelengths(ds, envi, self.bands)
        self.band_names = [ds.descriptions[b - 1] or f"band {b}" for b in self.bands]
        self.dtype = ds.dtypes[self.bands[0] - 1]
        # the rows of a row of blocks, the bytes of one row of it decoded (tiles past the
        # raster's edge are decoded whole), and whether they are strips (blocks as wide as
        # the raster or wider, ENVI's lines): ``cache_for``
        block_width = max(width for _, width in ds.block_shapes)
        self.striped = block_width >= ds.width
        self.rows_in_order = True       # this process reads the tiles a row after another
        self.block_rows = max(height for height, _ in ds.block_shapes)
        self.row_bytes = -(-ds.width // block_width) * block_width * sum(
            np.dtype(t).itemsize for t in ds.dtypes)
        # a VRT's reads decode its sources' blocks, not its own 128-pixel ones: theirs where
        # they are known (a cache for its own keeps too few of a tiled-512 file's, each
        # decoded again and again); where not, its own, as for any raster
        self.block_rows, self.row_bytes, self.striped = vrt_blocks(ds) or (
            self.block_rows, self.row_bytes, self.striped)
        self.cache_bytes, free = GDAL_CACHE_BYTES, available_memory()
        self.cache_limit = max(GDAL_CACHE_BYTES, free // 4 if free else 4 * GDAL_CACHE_BYTES)
        # a band's value is its stored value * scale + offset (GDAL's metadata, which reads leave
        # to the reader): applied here, or a scaled product would be scored in its raw counts
        scales = np.array([1.0 if ds.scales[b - 1] is None else ds.scales[b - 1]
                           for b in self.bands], np.float64)
        offsets = np.array([0.0 if ds.offsets[b - 1] is None else ds.offsets[b - 1]
                            for b in self.bands], np.float64)
        scaling = band_scaling(scales, offsets, len(self.bands), lambda: HsanomalyError(
            f"{self.name}: band scale/offset metadata is not usable (scales {ds.scales}, "
            f"offsets {ds.offsets})"))
        self.exact_scaling = scaling        # float64: the pixels are scaled in float32
        self.scaled = scaling is not None

    def _warn_mixed_pixels(self):
        """Say a VRT stacking bands of other pixel sizes (``vrt_source_pixels``): each is
        resampled onto the VRT's grid (by nearest neighbour unless it says otherwise), a coarse
        band's pixels each over several of the grid's, which spread a target or a cloud's edge
        past its own pixels, and gdalbuildvrt's default grid (-resolution average) is one that
        no band has."""
        ds = self._dataset()
        res = abs(ds.transform.a)
        sizes = sorted({round(res * size, 6) for band, size in vrt_source_pixels(ds).items()
                        if band in self.bands})
        if len(sizes) < 2:
            return
        shown = [f"{v:g}" for v in sizes]
        coarse = "the coarse bands out, or grow a cloud mask by the coarsest band's pixel"
        remedy = (f"Leave {coarse}" if round(res, 6) == sizes[0] else     # the finest grid
                  f"Build it at the finest band's pixels (gdalbuildvrt -resolution highest), "
                  f"and leave {coarse}")
        warn_once(f"{self.name}: its bands come at pixel sizes of {', '.join(shown[:-1])} and "
                  f"{shown[-1]}, each resampled onto its grid of {res:g}"
                  + ("" if round(res, 6) in sizes else " (a size none of them has: "
                     "gdalbuildvrt's default, -resolution average)")
                  + "; each pixel of a coarse band covers several of the grid's, which spread "
                  f"a target or a cloud's edge past its own pixels. {remedy}")

    def __getstate__(self):
        """What travels to a worker: a local file by its absolute path (a worker of another
        host or working directory reads it there, on storage it shares), messages by its name."""
        if not self._owned:
            raise HsanomalyError(f"{self.name}: a source over an open dataset stays in this process; "
                                 "pass the raster's path to score it on a cluster")
        state = {k: v for k, v in super().__getstate__().items() if k not in ("_ds", "_reading")}
        state.update(_ds=None, cache_bytes=GDAL_CACHE_BYTES, rows_in_order=False)
        if not is_gdal_name(self.path) and Path(self.path).exists():   # a URL or /vsi name
            state["path"] = absolute(self.path)                        # travels as it is
            state["_local_file"] = True
        return state

    def __setstate__(self, state):
        vars(self).update(state)
        self._reading = threading.Lock()

    def axis_advice(self, axis, where):
        """``_Source.axis_advice``, and for a netCDF file read through GDAL's HDF5 driver
        (EMIT's reflectance stored bands last), its name for the netCDF driver, which may
        read it bands first; a cube that driver reads is refused (``BANDS_GUESSED``), with
        how to give it bands first."""
        advice = _Source.axis_advice(axis, where)
        if self.bands_guessed_by:
            advice = ("Give it bands first: read the array (h5py for HDF5, pyhdf for HDF4, or "
                      f"xarray) and pass np.moveaxis(cube, {axis}, 0) to hsanomaly.Detector, or "
                      "write that to a GeoTIFF to detect or train on. If it is stored bands "
                      "first after all (a cube resampled or blurred along one spatial axis can "
                      "look so), gdal_translate it to a GeoTIFF, which is read as it is stored")
        found = re.match(r'(?i)HDF5:"?([^"]+\.(?:nc|nc4|cdf))"?:/*(.+)$', self.path)
        if found is None:
            return advice
        variable = found.group(2) if "/" not in found.group(2) else "/" + found.group(2)
        return (f'{advice}; GDAL\'s netCDF driver may read this one bands first: '
                f'NETCDF:"{found.group(1)}":{variable}')

    def saturation_nodata(self):
        kind = np.dtype(self.dtype)
        if kind.kind not in "ui":
            return None
        values = {self._dataset().nodatavals[b - 1] for b in self.bands}
        return next((v for v in values if v == np.iinfo(kind).max), None)

    def _dataset(self):
        if self._ds is None or self._ds.closed:
            if getattr(self, "_local_file", False) and not Path(self.path).exists():
                raise HsanomalyError(
                    f"{self.name}: not found on worker host {socket.gethostname()} (as "
                    f"{self.path}); inputs must be readable under the same name on every "
                    "worker: shared storage or a URL (docs/distributed.md)")
            self._ds = open_raster(self.path, check=False)     # checked when described
        return self._ds

    def close(self):
        if self._ds is not None and self._owned:
            self._ds.close()
            self._ds = None

    def _read(self, window):
        data, nodata = self._read_bands(window)
        return data, ~nodata.any(axis=0)

    def _geolocation(self, ds):
        """``gdal.geolocation``, or None with a warning where its arrays are not found: the
        heatmap would name files that place it nowhere, or a scene's that happen to be there."""
        placed = geolocation(ds)
        missing = [placed[key] for key in ("X_DATASET", "Y_DATASET")
                   if placed and not dataset_found(placed[key])]
        if missing:
            warn_once(f"{self.name}: its geolocation arrays ({', '.join(missing)}) are not "
                      "found, so its outputs are not placed on the map")
            return None
        return placed

    def cache_for(self, rows):
        """GDAL's block cache for reads of ``rows`` rows (a tile and its halo). Every tile of a
        row of tiles reads all the strips of a striped raster's rows, and a halo takes a
        tiled raster's tiles into the rows of blocks above and below, which the next row of
        tiles reads again: a cache that holds every block a row of tiles reads, not the
        default, is what keeps each from being read, and decoded, again for every tile
        (many times slower where they are compressed; a wide scene's ring scores read it
        three times). At most a quarter of the memory free when it was opened (1 GiB where
        that is unknown); a tiled raster's at most ``TILED_CACHE_BYTES``, and left as it is
        where its blocks need more, or where its tiles are not read a row after another (a
        Dask worker's, spread over the raster: ``rows_in_order``): a cache that holds less
        than a row of tiles' blocks keeps none of them till the next row (the least recently
        read go first), and the memory would be taken for nothing."""
        rows = min(rows + 2 * self.block_rows,                   # no more than the raster's
                   -(-self.height // self.block_rows) * self.block_rows)
        needed = int(1.25 * rows * self.row_bytes)
        if needed > self.cache_bytes and (self.striped or self.rows_in_order and needed <= min(
                self.cache_limit, TILED_CACHE_BYTES)):
            if needed > self.cache_limit:
                smaller = "" if self.block_rows >= self.height else \
                    f" or a smaller {spell('tile')}"
                warn_once(f"{self.name}: its blocks as wide as the raster (strips, or tiles as "
                          f"wide) of a row of tiles need {size_text(needed)} of GDAL's block "
                          f"cache, more than it may take ({size_text(self.cache_limit)}, a "
                          "quarter of the free memory), so each tile decodes them again "
                          f"(slow); a tiled copy (gdal_translate -co TILED=YES){smaller} "
                          "avoids it")
            self.cache_bytes = max(self.cache_bytes, min(needed, self.cache_limit))
        return self.cache_bytes

    def _read_bands(self, window, stored=False):
        """(data, nodata) with the nodata mask per band (and where an alpha band is 0); with
        ``stored``, the values as stored (in float64 where float32 cannot hold them all:
        float64 and wide integers), unscaled."""
        indexes = None if self.all_bands else self.bands
        wide = self.wider_than_float32 if stored else self.has_float64   # float64: checked below
        kind = "float64" if wide else "float32"
        # one dataset handle is not thread-safe: a Dask worker's threads share this source
        # (and the local engine's its own), and read mixed-up blocks without turns
        with self._reading, gdal_env(self.cache_for(int(window.height))):
            ds = self._dataset()
            if self.mixed_types:        # rasterio reads several bands at once only of one type
                data = np.ma.stack([read_masked(ds, b, window=window, out_dtype=kind)
                                    for b in self.bands])
            else:
                data = read_masked(ds, indexes, window=window, out_dtype=kind)
            nodata = np.ma.getmaskarray(data)
            for band in self.alpha_bands:
                nodata = nodata | (read_checked(ds, band, window=window) == 0)
        values = np.ma.getdata(data)
        if stored:
            return values, nodata
        if self.has_float64:
            check_float32_range(self.name, values, nodata, self.bands)
        with np.errstate(over="ignore"):    # nodata only, once checked (-DBL_MAX fills, say)
            values = values.astype(np.float32, copy=False)
        if self.exact_scaling is not None:
            scale_in_place(values, nodata, self.exact_scaling, self.name, self.bands)
        return values, nodata


def scale_in_place(values, nodata, scaling, name, bands):
    """Apply band scales and offsets (``scaling``: ``band_scaling``'s float64 pair) to float32
    ``values`` (bands, rows, cols) in place, SCALED_BANDS at a time (no second copy of the
    block), in float32 as GDAL and xarray's decoding apply them, so a DataArray's
    ``scale_factor`` (``io.inputs``) scores as the raster's band scale does. ``nodata``: where
    the values are not data; ``bands``: their band numbers, for messages."""
    scale, offset = (np.broadcast_to(a, (len(values), 1, 1)) for a in scaling)
    for start in range(0, len(values), SCALED_BANDS):
        part = slice(start, start + SCALED_BANDS)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = values[part] * scale[part].astype(np.float32) \
                + offset[part].astype(np.float32)
        # a scale can carry stored values beyond float32, in which pixels are scored: the
        # brightest would turn infinite, then nodata
        if (np.isinf(scaled) & np.isfinite(values[part]) & ~nodata[part]).any():
            exact = values[part].astype(np.float64) * scale[part] + offset[part]
            check_float32_range(name, exact, nodata[part], bands[part], scaled=True)
        values[part] = scaled


def band_scaling(scales, offsets, bands, refuse):
    """Per-band (scale, offset) arrays, (bands or 1, 1, 1) float64, from one value or one per
    band; None where every scale is 1 and every offset 0 (nothing to apply). ``refuse()``
    gives the one-line error for values that cannot be used: not finite, a zero scale, or
    another count than ``bands``."""
    try:
        scale = np.asarray(scales, np.float64).reshape(-1, 1, 1)
        offset = np.asarray(offsets, np.float64).reshape(-1, 1, 1)
    except (TypeError, ValueError):
        raise refuse() from None
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()) or (scale == 0).any() \
            or len(scale) not in (1, bands) or len(offset) not in (1, bands):
        raise refuse()
    if (scale == 1).all() and (offset == 0).all():
        return None
    return scale, offset


class ArraySource(_Source):
    """An in-memory cube (bands, rows, cols); used for .mat scenes and tests."""

    def __init__(self, cube, valid=None, profile=None, name="<array>", wavelengths=None,
                 gaps=None, scaling=None):
        cube = np.asarray(cube)
        if cube.ndim != 3:
            raise HsanomalyError(f"{name}: expected a cube of shape (bands, rows, cols), "
                                 f"got shape {cube.shape}")
        if 0 in cube.shape:
            raise HsanomalyError(f"{name}: the cube is empty (shape {cube.shape})")
        if cube.dtype.kind not in "uif":
            raise HsanomalyError(f"{name}: pixels of type {cube.dtype} are not supported "
                                 "(expected integers or floats)")
        self.valid = np.ones(cube.shape[1:], bool) if valid is None else np.asarray(valid, bool)
        self.gaps = gaps        # (bands, rows, cols): where each band is masked, for check_data
        self.bands = list(range(1, len(cube) + 1))
        self.left_out = ""             # every band of the cube is a band of the spectra
        invalid = np.broadcast_to(~self.valid, cube.shape)
        if wider_than_float32(cube.dtype):
            check_float32_range(name, cube, invalid, self.bands)
        if wider_than_float32(cube.dtype) or scaling is not None:
            exact = cube if scaling is None else cube * scaling[0] + scaling[1]
            warn_coarse(name, coarsest_in_float32(exact, invalid, self.bands),
                        ATTRIBUTE_SCALING if scaling is not None else None)
        # scaled as a raster's band scale (``scaling``: ``band_scaling``'s) is, in a copy
        self.cube = cube.astype(np.float32, copy=scaling is not None)
        self.scaled = scaling is not None
        if scaling is not None:
            scale_in_place(self.cube, invalid, scaling, name, self.bands)
        self.count, self.height, self.width = self.cube.shape
        self.profile = profile or {"crs": None, "transform": None,
                                   "width": self.width, "height": self.height}
        self.name = name
        self.wavelengths = wavelengths
        self.band_names = [f"band {i + 1}" for i in range(self.count)]

    def _read(self, window):
        sl = window.toslices()
        return self.cube[(slice(None),) + sl].copy(), self.valid[sl].copy()

    def _read_bands(self, window, stored=False):
        data, valid = self._read(window)        # checked as the cube came in (float32 since)
        nodata = np.broadcast_to(~valid, data.shape)
        if self.gaps is not None:               # the bands a masked pixel is masked in
            nodata = self.gaps[(slice(None),) + window.toslices()] & nodata
        return data, nodata

    def close(self):
        pass


def _mat_axis_advice(axis, where):
    return ("A .mat cube without a truth variable is read as (rows, cols, bands): if its "
            "bands are elsewhere in the file, save it (rows, cols, bands), or beside its truth "
            "(map, gt, mask...), whose shape tells")


def check_opens(path):
    """Refuse, in one line, an input ``open_source`` could not open, without reading it (a
    .mat's content is read when it is scored)."""
    if str(path).lower().endswith(".mat"):
        require_file(path)
    else:
        with open_raster(path):
            pass


def open_source(path):
    """A source for ``path``: .mat scenes are loaded into memory, anything else read by window."""
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat, read_mat_wavelengths

        require_file(path)
        identity, loaded = file_identity(path), content_digest(path)
        cube, _ = read_mat(path)
        source = ArraySource(cube, name=str(path),
                             wavelengths=read_mat_wavelengths(path, len(cube)))
        source.identity, source.loaded = identity, loaded
        source.axis_advice = _mat_axis_advice
        return source
    return RasterSource(path)
