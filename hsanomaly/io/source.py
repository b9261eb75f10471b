"""Pixel sources: windowed, halo-aware reads from a raster on disk or from an in-memory cube.

A source is what the tiled engine and the scorers' fit steps read from. Both kinds give
``read(window, halo)`` returning a float32 (bands, rows, cols) block padded by ``halo``
pixels on every side (NaN outside the raster) and a boolean validity mask, plus
``reduce`` (a pass over all tiles) and ``sample`` (random valid pixels). A distributed
runner can wrap a source and replace ``reduce`` and ``sample`` with cluster versions.
"""

import numbers
import os
import re
import socket
import threading
import uuid
import warnings
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from ..defaults import TILE
from ..errors import HsanomalyError
from .bandaxis import MIN_LINE, warn_if_bands_elsewhere
from .checks import warn_once
from .units import nanometres

PROBE = 64              # pixels across a window the data is probed on before the work
AXIS_STRIP, AXIS_LINE, AXIS_LINES = 4, 512, 200   # the band-axis check's lines: strips 4
                                                  # pixels wide, 512 long; 200 lines an axis
PROBE_AT = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))  # fractions
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_EPS = float(np.finfo(np.float32).eps)
PARTIAL_NODATA = 0.05   # share of probed pixels nodata in a few bands only, beyond which to warn
                        # (and of pixels holding one fill value in every band)
FILL_MIN_BANDS = 10     # fewer bands may well hold one value in all of them (a saturated or
                        # black pixel of a few-band image)
EXTREME = 1e6           # deviations from a band's median beyond which a value is a fill
PRECISION_RATIO = 0.01 * 2**23   # largest value over spread float32 resolves to 1 % of the spread

# GDAL's block cache defaults to 5% of RAM; cap it so memory is bounded by the tile size.
GDAL_CACHE_BYTES = 256 * 2**20
SAMPLE_REDRAW = 1.1   # sample again when nodata left a tenth fewer valid pixels than drawn for
SCALED_BANDS = 16     # bands scaled at once, in place


def gdal_env():
    """The rasterio environment every read and write of the engine runs in."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)


def iter_windows(height, width, tile=TILE):
    """Row-major tiles covering the raster; the last row/column of tiles may be smaller."""
    for row in range(0, height, tile):
        for col in range(0, width, tile):
            yield Window(col, row, min(tile, width - col), min(tile, height - row))


class _Source:
    """Shared tile logic; subclasses provide ``count``, ``bands`` (the numbers, from 1, of the
    bands read), ``height``, ``width``, ``_read`` and ``_read_bands``."""

    _token_lock = threading.Lock()
    exact_scaling = None     # a raster's band (scale, offset), float64: see RasterSource
    exclusion = None         # an ``io.exclusion.Exclusion``: pixels read as nodata, whatever they hold

    @property
    def token(self):
        """A name drawn for this source, which its copies on other workers keep: what results
        kept for its pixels are filed under (``scorers.halo``)."""
        with self._token_lock:
            if getattr(self, "_token", None) is None:
                self._token = uuid.uuid4().hex
            return self._token

    def read(self, window, halo=0, masked=True):
        """Return (block, valid) for ``window`` grown by ``halo`` pixels, NaN/False outside.
        A block inside the raster is the array read (no second copy of a tile's every band).
        ``masked``: the exclusion's pixels are nodata too (False: the data as the file has it,
        which is what identifies an input)."""
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

    @staticmethod
    def axis_advice(axis, where):
        """What to do when the bands seem to lie along ``axis`` (``bandaxis``)."""
        return (f"If its spectra lie along that axis (an HDF5 or netCDF cube stored with its "
                f"bands {where}), store the cube bands first: GDAL reads bands first")

    def check_data(self):
        """Warn, from the probe windows, about what would make the scores silently worse: a
        cube whose bands seem to lie along another axis than GDAL's (``_check_band_axis``),
        values float32 rounds by more than a hundredth of their spread (``coarsest_in_float32``),
        and a large share of pixels nodata in only a few bands (GDAL's rule leaves a pixel out
        whole once one band says nodata, so a nodata value that some band holds as real data,
        0 over water, say, silently removes those pixels), and a large share of pixels that
        hold one value in every band, which no spectrum does: a fill value not declared as
        nodata (-9999 around a swath), which the scene's statistics would then take in."""
        total, partial, per_band, coarse = 0, 0, np.zeros(self.count), []
        flat, whole = [], 0       # the value of each valid pixel that is one value in every
                                  # band; the valid pixels
        pixels = []               # every valid pixel, for the extreme ones
        infinite = 0              # pixels infinite in some band: left out like nodata
        if not self.band_axis_checked:
            self._check_band_axis()
        for window in self.probe_windows():
            values, nodata = self._read_bands(window, stored=True)
            if self.exclusion is not None:      # what the mask leaves out is not scored
                keep = ~self.exclusion.window(int(window.row_off), int(window.col_off),
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
            bad = nodata.sum(axis=0)
            few = (bad > 0) & (bad <= self.count // 2)
            total, partial = total + bad.size, partial + int(few.sum())
            per_band += nodata[:, few].sum(axis=1)
            if self.count >= FILL_MIN_BANDS:
                same = (bad == 0) & (values == values[:1]).all(axis=0)
                flat.append(values[0][same])
                whole += int((bad == 0).sum())
        warn_coarse(self.name, max((c for c in coarse if c), key=lambda c: c[1], default=None),
                    scaled=self.exact_scaling is not None)
        if infinite:
            warn_once(f"{self.name}: {infinite} of the pixels probed are infinite in some band; "
                      "they are left out like nodata (NaN in the heatmap), though such a value "
                      "may mark the scene's most anomalous pixels (saturated?)")
        extreme = extreme_values(np.concatenate(pixels, axis=1))
        if extreme is not None:
            count, value = extreme
            declare = (f"declare it nodata (gdal_edit.py -a_nodata {exact(value)})"
                       if isinstance(self, RasterSource) else "mask them, or set them to NaN")
            warn_once(f"{self.name}: {count} of the pixels probed hold values such as {value:g}, "
                      f"more than {EXTREME:g} times the other pixels' spread away from them: a "
                      "fill value not declared as nodata? A few such pixels outweigh every "
                      f"other in the scene's statistics, and the scores flatten; {declare}")
        if total and partial > PARTIAL_NODATA * total:
            warn_once(f"{self.name}: {partial / total:.0%} of the pixels probed are nodata in "
                      f"only a few bands (band {int(np.argmax(per_band)) + 1} most often), so "
                      "they are left out whole; is the nodata value also real data there (0 "
                      "over water, say)? If so, set another nodata value, or none")
        flat = np.concatenate(flat) if flat else np.empty(0)
        if total and len(flat) > PARTIAL_NODATA * total:
            fills, counts = np.unique(flat, return_counts=True)
            fill, count = fills[np.argmax(counts)], int(counts.max())
            if PARTIAL_NODATA * total < count < whole:   # all: a constant raster, said so
                declare = (f"declare it (gdal_edit.py -a_nodata {exact(fill)})"
                           if isinstance(self, RasterSource) else "mask it, or set it to NaN")
                warn_once(f"{self.name}: {count / total:.0%} of the pixels probed hold {fill:g} "
                          "in every band, which no spectrum does: a fill value not declared as "
                          f"nodata? If so, {declare}, or the scene's statistics take those "
                          "pixels in")

    def _check_band_axis(self):
        """``bandaxis.warn_if_bands_elsewhere`` on lines read by window: every band at the
        pixels of small blocks, and each spatial axis along strips as long as the image (at
        most ``AXIS_LINE`` pixels), at a quarter, half and three quarters of the other axis
        (one strip could run along a road), with nodata, the exclusion mask's pixels and
        fills (one value in every band: they look smooth) left out."""
        if min(self.count, max(self.height, self.width)) < MIN_LINE:
            return                                   # too short to tell (bandaxis.MIN_LINE)
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
        warn_if_bands_elsewhere([np.concatenate(along) for along in lines],
                                (self.count, self.height, self.width), self.name,
                                self.axis_advice, shape_is="read as (bands, rows, cols)")

    def reduce(self, fn, tile=TILE, combine=None):
        """Fold ``fn(pixels)`` over all tiles in order, where ``pixels`` are a tile's valid
        (n, bands) pixels; ``combine`` (default: sum) may be any associative function."""
        combine = combine or add
        total = None
        for window in self.windows(tile):
            part = self.reduce_tile(window, fn)
            total = part if total is None else combine(total, part)
        return total

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

    def sample_tile(self, window, key, fraction):
        """(the tile's drawn valid pixels, how many valid pixels it has)."""
        pixels = self.reduce_tile(window, lambda X: X)
        return pixels[np.random.default_rng(key).random(len(pixels)) < fraction], len(pixels)

    def sample(self, n, seed=0, tile=TILE):
        """About ``n`` valid pixels (n, bands) drawn uniformly without replacement, repeatably."""
        return self.draw_sample(n, seed, tile, lambda jobs: [self.sample_tile(*job) for job in jobs])

    def draw_sample(self, n, seed, tile, run):
        """``sample``, with ``run(jobs)`` giving ``sample_tile`` of each job (here or on a
        cluster). The first draw assumes every pixel valid; where nodata leaves noticeably
        fewer (a swath's empty corners), it draws again at n over the valid pixels counted,
        with the same keys, so the sample is about n either way and the same wherever run."""
        jobs = self.sample_plan(n, seed, tile)
        parts = run(jobs)
        valid = sum(count for _, count in parts)
        again = self.sample_plan(n, seed, tile, valid)
        if again[0][2] > SAMPLE_REDRAW * jobs[0][2]:
            parts = run(again)
        return self.join_samples([pixels for pixels, _ in parts])

    def join_samples(self, parts):
        pixels = np.concatenate(parts) if parts else np.empty((0, self.count), np.float32)
        if len(pixels) == 0:
            raise self.no_valid_pixels()
        return pixels

    def no_valid_pixels(self, tile=TILE):
        """The error for a raster where no pixel is valid in every band. A pixel counts only
        when all its bands are finite and not nodata, so one dead or masked band (NaN water
        vapour bands, say) voids the whole raster: the message names such bands."""
        seen = np.zeros(self.count, bool)
        for window in self.windows(tile):
            seen |= self._bands_with_values(window)
        if seen.all() and self.exclusion is not None:
            return HsanomalyError(f"{self.name}: no valid pixel is left outside the mask "
                                  f"{self.exclusion.path}")
        if not seen.any():
            return HsanomalyError(f"{self.name}: the raster has no valid pixels "
                                  "(every value is NaN, infinite or nodata)")
        empty = [self.band_names[i] for i in np.flatnonzero(~seen)]
        if empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            return HsanomalyError(f"{self.name}: no pixel is valid in every band: {shown} "
                                  f"{'holds' if len(empty) == 1 else 'hold'} only NaN or nodata; "
                                  "leave such bands out first (for example gdal_translate -b)")
        return HsanomalyError(f"{self.name}: no pixel is valid in every band (each pixel is NaN, "
                              "infinite or nodata in at least one band)")

    def _bands_with_values(self, window):
        """Per band: whether ``window`` holds a finite, non-nodata value in it."""
        data, nodata = self._read_bands(window)
        return (~nodata & np.isfinite(data)).any(axis=(1, 2))


def add(a, b):
    """Sum of two reduction parts: arrays, numbers, or tuples of them."""
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b))
    return a + b


class RasterSource(_Source):
    """Any raster GDAL reads, opened lazily so the source can travel to worker processes."""

    def __init__(self, path):
        self.path = str(path)
        self.name = self.path
        with open_raster(self.path) as ds:
            self._describe(ds)
        self._ds, self._owned = None, True

    @classmethod
    def from_dataset(cls, dataset):
        """A source reading an already open rasterio dataset, which stays open and the caller's."""
        source = cls.__new__(cls)
        source.path = source.name = dataset.name
        source._describe(dataset)
        source._ds, source._owned = dataset, False
        return source

    def _describe(self, ds):
        for band, dtype in enumerate(ds.dtypes, start=1):
            if dtype.startswith("complex"):
                raise HsanomalyError(f"{self.name}: complex pixels ({dtype}, band {band}) are not "
                                     "supported; convert to amplitude or real/imaginary bands first")
        # an alpha band says which pixels are there (0: transparent); it is no spectral band.
        # GDAL masks with it only in 2- and 4-band rasters, so it is read here as the mask
        alpha = [b for b, c in enumerate(ds.colorinterp, start=1) if c.name == "alpha"]
        _check_raw_size(ds, self.name)
        bad = _bad_bands(ds, self.name)
        self.bands = [b for b in range(1, ds.count + 1) if b not in alpha and b not in bad]
        if not ds.count:
            inside = ds.subdatasets
            shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
            raise HsanomalyError(f"{self.name}: " + (f"a container of {len(inside)} datasets and "
                                                     f"no bands of its own; name one: {shown}"
                                                     if inside else "has no bands"))
        if not self.bands:
            raise HsanomalyError(f"{self.name}: every band is an alpha band or marked bad in the "
                                 "ENVI header's bbl; no spectra to score")
        self.alpha_bands = alpha
        self.all_bands = len(self.bands) == ds.count
        dropped = [f"{len(bad)} marked bad in the ENVI header's bbl"] if bad else []
        dropped += [f"{len(alpha)} alpha"] if alpha else []
        self.left_out = (f"of its {ds.count} bands, {' and '.join(dropped)} left out"
                         if dropped else "")
        self.mixed_types = len({ds.dtypes[b - 1] for b in self.bands}) > 1
        self.has_float64 = any(ds.dtypes[b - 1] == "float64" for b in self.bands)
        self.wider_than_float32 = any(_wider_than_float32(ds.dtypes[b - 1]) for b in self.bands)
        self.count, self.height, self.width = len(self.bands), ds.height, ds.width
        georeferenced = not ds.transform.is_identity or ds.crs is not None
        gcps, gcp_crs = ds.gcps
        self.profile = {"crs": ds.crs if georeferenced or not gcps else None,
                        "transform": ds.transform if georeferenced else None,
                        "width": ds.width, "height": ds.height,
                        "gcps": (gcps, gcp_crs) if gcps else None, "rpcs": ds.rpcs}
        self.wavelengths = _wavelengths(ds, self.bands)
        self.band_names = [ds.descriptions[b - 1] or f"band {b}" for b in self.bands]
        self.dtype = ds.dtypes[self.bands[0] - 1]
        # a band's value is its stored value * scale + offset (GDAL's metadata, which reads leave
        # to the reader): applied here, or a scaled product would be scored in its raw counts
        scales = np.array([1.0 if ds.scales[b - 1] is None else ds.scales[b - 1]
                           for b in self.bands], np.float64)
        offsets = np.array([0.0 if ds.offsets[b - 1] is None else ds.offsets[b - 1]
                            for b in self.bands], np.float64)
        scaling = band_scaling(scales, offsets, len(self.bands), lambda: HsanomalyError(
            f"{self.name}: band scale/offset metadata is not usable (scales {ds.scales}, "
            f"offsets {ds.offsets})"))
        self.exact_scaling = scaling        # float64: what the precision check scales by
        self.scaling = None if scaling is None else tuple(a.astype(np.float32) for a in scaling)

    def __getstate__(self):
        """What travels to a worker: a local file by its absolute path (a worker of another
        host or working directory reads it there, on storage it shares), messages by its name."""
        if not self._owned:
            raise HsanomalyError(f"{self.name}: a source over an open dataset stays in this process; "
                                 "pass the raster's path to score it on a cluster")
        state = {k: v for k, v in vars(self).items() if k != "_ds"} | {"_ds": None}
        if not is_gdal_name(self.path) and Path(self.path).exists():   # a URL or /vsi name
            state["path"] = os.path.abspath(self.path)                 # travels as it is
            state["_local_file"] = True
        return state

    def _dataset(self):
        if self._ds is None or self._ds.closed:
            if getattr(self, "_local_file", False) and not Path(self.path).exists():
                raise HsanomalyError(
                    f"{self.name}: not found on worker host {socket.gethostname()} (as "
                    f"{self.path}); inputs must be readable under the same name on every "
                    "worker: shared storage or a URL (docs/distributed.md)")
            self._ds = open_raster(self.path)
        return self._ds

    def close(self):
        if self._ds is not None and self._owned:
            self._ds.close()
            self._ds = None

    def _read(self, window):
        data, nodata = self._read_bands(window)
        return data, ~nodata.any(axis=0)

    def _read_bands(self, window, stored=False):
        """(data, nodata) with the nodata mask per band (and where an alpha band is 0); with
        ``stored``, the values as stored (in float64 where float32 cannot hold them all:
        float64 and wide integers), unscaled."""
        ds = self._dataset()
        indexes = None if self.all_bands else self.bands
        wide = self.wider_than_float32 if stored else self.has_float64   # float64: checked below
        kind = "float64" if wide else "float32"
        with gdal_env():
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
        if self.scaling is not None:
            scale, offset = self.scaling
            # in place, SCALED_BANDS at a time: no second copy of the block
            for start in range(0, len(values), SCALED_BANDS):
                part = slice(start, start + SCALED_BANDS)
                with np.errstate(over="ignore", invalid="ignore"):
                    scaled = values[part] * scale[part] + offset[part]
                # a scale can carry stored values beyond float32, in which pixels are scored:
                # the brightest would turn infinite, then nodata
                if (np.isinf(scaled) & np.isfinite(values[part]) & ~nodata[part]).any():
                    exact = values[part].astype(np.float64) * scale[part].astype(np.float64) \
                        + offset[part]
                    check_float32_range(self.name, exact, nodata[part], self.bands[part],
                                        scaled=True)
                values[part] = scaled
        return values, nodata


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


def _wider_than_float32(dtype):
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


class ArraySource(_Source):
    """An in-memory cube (bands, rows, cols); used for .mat scenes and tests."""

    def __init__(self, cube, valid=None, profile=None, name="<array>", wavelengths=None):
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
        self.bands = list(range(1, len(cube) + 1))
        self.left_out = ""             # every band of the cube is a band of the spectra
        if _wider_than_float32(cube.dtype):
            invalid = np.broadcast_to(~self.valid, cube.shape)
            check_float32_range(name, cube, invalid, self.bands)
            warn_coarse(name, coarsest_in_float32(cube, invalid, self.bands))
        self.cube = cube.astype(np.float32, copy=False)
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
        return data, np.broadcast_to(~valid, data.shape)

    def close(self):
        pass


# A GDAL dataset name that is not a plain file path: a subdataset (NETCDF:"f.nc":var, HDF5:...,
# GTIFF_DIR:2:f.tif), a virtual file system path (/vsizip/..., /vsicurl/...) or a URL.
_GDAL_NAME = re.compile(r"^([A-Za-z0-9_]{2,}:|/vsi[a-z0-9_]+/|[a-z][a-z0-9+.-]*://)")


def is_gdal_name(path):
    """True for dataset names GDAL resolves itself, which are not files on disk."""
    return bool(_GDAL_NAME.match(str(path)))


def open_raster(path):
    """rasterio.open for reading, with one-line errors for a missing or unreadable raster
    and without the warning for rasters that carry no georeferencing."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    if not is_gdal_name(path) and not Path(path).exists():
        raise HsanomalyError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        detail = str(err).splitlines()[0] if str(err) else "unreadable"
        raise HsanomalyError(f"{path}: not a raster GDAL can read ({detail})") from None


def local_files(name):
    """The files on disk a GDAL dataset name lies in, as it spells them: the archive of
    /vsizip/a.zip/x.tif (/vsitar/, /vsigzip/, ...), the file of HDF5:"f.h5"://x,
    NETCDF:f.nc:v or GTIFF_DIR:2:f.tif. Found by trying each stretch between separators."""
    text = str(name or "")
    return sorted({os.path.realpath(text[a:b]) for a, b in _file_stretches(text)})


def _file_stretches(text):
    """(start, end) of each stretch of ``text`` between separators that names a file on
    disk."""
    starts = {0}
    for m in re.finditer(r'/vsi[a-z0-9_]+/|[:"]', text):
        starts |= {m.end(), m.end() - 1} if m.group().startswith("/vsi") else {m.end()}
    ends = [m.start() for m in re.finditer(r'[/:"]', text)] + [len(text)]
    return [(a, b) for a in sorted(starts) for b in ends       # not GTIFF_DIR:1:'s "1"
            if b > a and not text[a:b].isdigit() and os.path.isfile(text[a:b])]


def spelled_absolute(name):
    """A dataset name with the file it names spelled as an absolute path (for a GDAL name,
    its longest file stretch), so that two spellings of one dataset read alike: a key, not a
    name to open."""
    text = str(name)
    if not is_gdal_name(text):
        return _in_real_folder(text)
    stretches = _file_stretches(text)
    if not stretches:
        return text
    a, b = max(stretches, key=lambda span: span[1] - span[0])
    head, path = text[:a], _in_real_folder(text[a:b]).lstrip("/")    # POSIX keeps "//"
    return (head.rstrip("/") if head.startswith("/vsi") else head) + "/" + path + text[b:]


def _in_real_folder(path):
    """``path`` absolute, its folder's links resolved (one folder reached two ways is one), the
    file's own name kept (git-annex and DVC replace a file by a link to new content)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(folder), name)


def dataset_files(path, _seen=None):
    """The files on disk that raster ``path`` reads: itself, or those a VRT, a subdataset name
    (GTIFF_DIR:1:f.tif) or an archive path points at (GDAL's file list, with the files its
    dataset names lie in, ``local_files``), through nested VRTs (GDAL lists an outer VRT's
    inner VRT, not what that reads); none where it does not open. An output must not be one
    of them, whatever name the input reaches it by, and they make the input's fingerprint. A
    .mat scene is no raster of GDAL's (its HDF5 driver would print a damaged one's error
    stack)."""
    if str(path).lower().endswith(".mat"):
        return [os.fspath(path)]
    seen = set() if _seen is None else _seen
    try:
        with open_raster(path) as ds:
            listed = list(ds.files)
    except HsanomalyError:
        return []
    files = []
    for file in listed:
        for found in local_files(file) if is_gdal_name(file) else [file]:
            if os.path.abspath(found) not in seen:
                seen.add(os.path.abspath(found))
                files.append(found)
                if found.lower().endswith(".vrt") and os.path.abspath(found) != \
                        os.path.abspath(path):
                    files += dataset_files(found, seen)
    return files


def read_masked(dataset, indexes=None, **kwargs):
    """``dataset.read(indexes, masked=True)``, with every band's declared nodata value masked
    too: where a raster carries a mask band (internal, .msk or per dataset), GDAL's mask
    replaces its nodata test, and pixels holding the declared nodata value would read as
    data (a fill row scored, an "unknown" truth pixel read as a target)."""
    from rasterio.enums import MaskFlags

    if isinstance(indexes, numbers.Integral):
        indexes = int(indexes)                 # rasterio reads a Python int as one band
    data = read_checked(dataset, indexes, masked=True, **kwargs)
    bands = ([indexes] if isinstance(indexes, int) else
             list(range(1, dataset.count + 1)) if indexes is None else list(indexes))
    # read once: each of rasterio's properties asks GDAL about every band
    nodatavals, flags, dtypes = dataset.nodatavals, dataset.mask_flag_enums, dataset.dtypes
    values, mask = np.ma.getdata(data), np.array(np.ma.getmaskarray(data))   # a copy of our own
    planes, masks = values.reshape(-1, *values.shape[-2:]), mask.reshape(-1, *mask.shape[-2:])
    for row, band in enumerate(bands):
        nodata = nodatavals[band - 1]
        if nodata is None or MaskFlags.nodata in flags[band - 1] or (
                not np.isnan(nodata) and np.asarray(nodata).astype(dtypes[band - 1]) != nodata):
            continue     # none declared, GDAL's mask is that test, or no stored value is it
        plane = planes[row]
        masks[row] |= np.isnan(plane) if np.isnan(nodata) else \
            plane == np.asarray(nodata).astype(plane.dtype)
    return np.ma.MaskedArray(values, mask)


def read_checked(dataset, *args, **kwargs):
    """``dataset.read`` with a one-line error for a raster that is truncated or corrupt."""
    import rasterio

    try:
        return dataset.read(*args, **kwargs)
    except rasterio.errors.RasterioIOError as err:
        reason = _gdal_reason(err)
        if "No such file or directory" in reason:      # a VRT's source, a .hdr's data file
            raise HsanomalyError(f"{dataset.name}: cannot read pixels, a file it reads from is "
                                 f"missing ({reason})") from None
        raise HsanomalyError(f"{dataset.name}: cannot read pixels, the file is truncated or "
                             f"corrupt ({reason})") from None


def _gdal_reason(err):
    """GDAL's own reason for a failed read: rasterio's message is often "Read failed. See
    previous exception for details.", and the details are in the chain of causes (where the
    block failed, then the codec's complaint)."""
    chain = []
    while err is not None and len(chain) < 10:
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if text and "See previous exception" not in text and text not in chain:
            chain.append(text)
        err = err.__cause__
    return ": ".join(chain[:1] + chain[-1:] if len(chain) > 1 else chain) or "read error"


# a number in an ENVI header's list: 1, 0.5, .5, 1.000000e+00
NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _bad_bands(ds, name):
    """Band numbers an ENVI header's bad band list (``bbl``: 1 good, 0 bad) marks bad, such as
    an AVIRIS scene's water-vapour bands: left out, as ENVI leaves them out. A list of another
    length names no band for certain: refused, not ignored (its bad bands would be scored)."""
    listed = ds.tags(ns="ENVI").get("bbl")
    if not listed:
        return set()
    flags = re.findall(NUMBER, listed)
    if len(flags) != ds.count:
        raise HsanomalyError(f"{name}: the ENVI header's bad band list (bbl) has "
                             f"{len(flags)} flags for {ds.count} bands, so it names no band for "
                             "certain; fix it or remove it from the header")
    return {b for b, flag in enumerate(flags, start=1) if float(flag) == 0}


# GDAL drivers of raw pixels beside a header, whose reads past the end of a short data file
# give zeros without an error; their first file is the data file
RAW_DRIVERS = ("ENVI", "EHdr", "GenBin", "ISCE", "PAux", "ROI_PAC")


def _check_raw_size(ds, name):
    """Refuse a raw data file shorter than its header says: GDAL would read the missing
    pixels as zeros and the run would score them, silently."""
    if ds.driver not in RAW_DRIVERS or not ds.files or is_gdal_name(ds.files[0]):
        return
    offset = ds.tags(ns="ENVI").get("header_offset", "0")
    needed = (int(offset) if offset.isdigit() else 0) + ds.width * ds.height * sum(
        np.dtype(dtype).itemsize for dtype in ds.dtypes)
    held = os.path.getsize(ds.files[0])
    if held < needed:
        raise HsanomalyError(f"{ds.files[0]}: truncated: holds {held:,} bytes, but its header "
                             f"describes {needed:,} ({ds.count} bands of {ds.width}x{ds.height} "
                             f"{ds.dtypes[0]} pixels); a copy cut short?")


def _wavelengths(ds, bands=None):
    """Band centre wavelengths in nanometres from ENVI headers or GDAL band metadata, or None;
    of ``bands`` (numbers from 1; default: every band).

    Units come from ``wavelength_units`` where given (lengths, or wavenumbers in cm^-1);
    unitless values that all lie below MICROMETRE_GUESS are micrometres (no sensor measures
    0.4-30 nm), anything else nanometres. Units that are no length (ENVI's Index, GHz) give
    None: band numbers or frequencies are no centre wavelengths to check bands by.
    """
    envi = ds.tags(ns="ENVI")
    values, units = None, envi.get("wavelength_units")
    bands = bands or range(1, ds.count + 1)
    if envi.get("wavelength"):
        found = [float(v) for v in re.findall(NUMBER,
                                               envi["wavelength"])]
        values = [found[b - 1] for b in bands] if len(found) == ds.count else None
    if values is None:
        # GDAL's own band metadata (3.10 on: the IMAGERY domain, in micrometres)
        per_band = [ds.tags(b, ns="IMAGERY").get("CENTRAL_WAVELENGTH_UM") for b in bands]
        if all(per_band):
            units = "micrometers"
        else:
            per_band = [ds.tags(b).get("wavelength") or ds.tags(b).get("WAVELENGTH")
                        for b in bands]
            units = units or ds.tags(1).get("wavelength_units") or ds.tags(1).get(
                "WAVELENGTH_UNITS")
        if not all(per_band):
            return None
        try:
            values = [float(v) for v in per_band]
        except ValueError:
            return None
    return nanometres(values, units)


def _mat_axis_advice(axis, where):
    return ("A .mat cube without a truth variable is read as (rows, cols, bands): if its "
            "bands are elsewhere in the file, save it (rows, cols, bands), or beside its truth "
            "(map, gt, mask...), whose shape tells")


def open_source(path):
    """A source for ``path``: .mat scenes are loaded into memory, anything else read by window."""
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat, read_mat_wavelengths

        if not Path(path).exists():
            raise HsanomalyError(f"{path}: file not found")
        cube, _ = read_mat(path)
        source = ArraySource(cube, name=str(path),
                             wavelengths=read_mat_wavelengths(path, len(cube)))
        source.axis_advice = _mat_axis_advice
        return source
    return RasterSource(path)
