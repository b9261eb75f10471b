"""Heatmap GeoTIFFs that describe themselves: profile, tags, band descriptions, overviews,
statistics, and optionally a Cloud-Optimized GeoTIFF.

A heatmap carries what made it (score, every parameter, the model bundle's digest and its
training data fingerprint, the hsanomaly version, the input's name) as GeoTIFF tags, so a
result can be traced to its model years later; statistics and internal overviews so QGIS
styles and pans it at once. Nothing time-dependent is written: the same run gives the same
bytes, which is what ``--resume`` and the Dask runner are checked against.
"""

import errno
import json
from pathlib import Path

import numpy as np

from .gdal import geolocation_beside
from .ownership import PIXELS_TAG, SOFTWARE, TAG_PREFIX, grid_tag, input_name, input_place

OUTPUT_BLOCK = 256
OVERVIEW_MIN = 256        # build overview levels until the longer side is below this


def geotiff_profile(width, height, bands, dtype):
    """The creation profile of every GeoTIFF hsanomaly writes: tiled in output blocks,
    deflate (with the float predictor for floats), BigTIFF where it might need it."""
    profile = {"driver": "GTiff", "dtype": np.dtype(dtype).name, "count": bands, "width": width,
               "height": height, "tiled": True, "blockxsize": OUTPUT_BLOCK,
               "blockysize": OUTPUT_BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if np.dtype(dtype).kind == "f":
        profile["predictor"] = 3
    return profile


def heatmap_profile(source, bands):
    """The creation profile of every float32 output: ``geotiff_profile``, NaN nodata, the
    input's CRS and transform (or GCPs/RPCs, added by ``describe_bands``)."""
    profile = {**geotiff_profile(source.width, source.height, bands, "float32"),
               "nodata": float("nan")}
    if source.profile.get("crs") is not None:
        profile["crs"] = source.profile["crs"]
    if source.profile.get("transform") is not None:
        profile["transform"] = source.profile["transform"]
    return profile


SCORE_TAG = TAG_PREFIX + "SCORE"     # the score's name, which readers of a heatmap go by


def heatmap_tags(scorer, source, fingerprint, tile):
    """Dataset tags naming what scored it (``run_record``), the model, the input (its name,
    place and a digest of its ``fingerprint``, as the run took it: ``ownership.other_input``
    reads them), the bands reading left out, its exclusion mask (name and digest: two masks
    of one name score otherwise) and the tile size (a ring's sums may round differently in
    another tile's blocks)."""
    from .fingerprint import digest

    tags = {**run_record(scorer), "INPUT": input_name(source.name),
            "INPUT_PLACE": input_place(source.name), "INPUT_FINGERPRINT": digest(fingerprint),
            "GRID": grid_tag(source.width, source.height, source.profile.get("transform")),
            "TILE": str(int(tile))}
    if source.left_out:        # alpha bands, bands an ENVI header's bbl marks bad
        tags["BANDS_LEFT_OUT"] = source.left_out
    if source.exclusion is not None:
        tags["MASK"] = Path(source.exclusion.path).name
        tags["MASK_FINGERPRINT"] = source.exclusion.digest
    bundle = scorer.model_bundle
    if bundle is not None:
        tags["MODEL_DIGEST"] = bundle.digest()         # as its parameters name it
        tags["MODEL_FINGERPRINT"] = str(bundle.meta.get("fingerprint", ""))
        tags["MODEL_PATH"] = Path(str(bundle.path)).name
    point = {"AREA_OR_POINT": "Point"} if source.profile.get("area_or_point") == "Point" else {}
    return {TAG_PREFIX + key: value for key, value in tags.items()} | \
        {"TIFFTAG_SOFTWARE": SOFTWARE, **point}


def run_record(scorer):
    """What scored a result, as a heatmap's tags and a Detector's DataArray attributes record
    it: the score, its parameters (JSON), the options asked of it (JSON: what a rerun asks
    again; its parameters hold the score's inner settings), hsanomaly's version and the
    libraries' (JSON)."""
    from .._version import __version__

    asked = {} if scorer.options_asked is None else {
        "OPTIONS": json.dumps(scorer.options_asked, sort_keys=True, default=_json_number)}
    return {"SCORE": scorer.name, "PARAMETERS": json.dumps(scorer.params(), sort_keys=True),
            **asked, "VERSION": __version__,
            "VERSIONS": json.dumps(_versions(scorer), sort_keys=True)}


def _json_number(value):
    """A number an option was asked as that JSON lacks (numpy's, in rings too; a Fraction: the
    option kinds take no other) as the number it holds."""
    return value.item() if hasattr(value, "item") else float(value)


def _versions(scorer):
    """The libraries whose versions may change a heatmap's last digits (numpy's and BLAS's
    sums, scikit-learn's mixture, GDAL's reading, onnxruntime's networks) and the device a
    model's networks ran on: what a rerun elsewhere compares before its bytes."""
    import importlib.metadata

    import numpy
    import rasterio

    # scikit-learn by its metadata: not imported for a version's sake (rx never uses it);
    # under Dask, this process's versions: workers are checked for hsanomaly's code alone
    found = {"numpy": numpy.__version__, "rasterio": rasterio.__version__,
             "gdal": rasterio.__gdal_version__,
             "scikit-learn": importlib.metadata.version("scikit-learn")}
    if scorer.model_bundle is not None:
        import onnxruntime

        networks = getattr(scorer, "gan", scorer)         # a context score's own GAN score
        found |= {"onnxruntime": onnxruntime.__version__, "device": str(networks.device)}
    return found


def score_description(scorer):
    """Band 1's description: the score's name, what it measures and what high values mean."""
    return f"{scorer.name} anomaly score ({scorer.meaning or scorer.name}; high = anomalous)"


def describe_bands(dataset, source, names, path):
    """Band descriptions ``names`` (one per band) and the input's GCPs, RPCs or geolocation
    arrays on an open output ``dataset`` that becomes ``path``, so georeferencing without a
    transform is not lost."""
    for band, text in enumerate(names, start=1):
        dataset.set_band_description(band, text)
    gcps, rpcs = source.profile.get("gcps"), source.profile.get("rpcs")
    if source.profile.get("transform") is None and gcps:
        dataset.gcps = gcps
    if rpcs:
        dataset.rpcs = rpcs
    if source.profile.get("geolocation"):
        dataset.update_tags(ns="GEOLOCATION",
                            **geolocation_beside(source.profile["geolocation"], path))


def band_descriptions(scorer, output, bands, input_bands):
    """What each band of output ``output`` ("score" or an extra's name) holds;
    ``input_bands``: the input file's numbers of the bands read."""
    if output == "score":
        return [score_description(scorer)]
    names = scorer.extra_descriptions(input_bands).get(output)
    return list(names) if names else [f"{output} {b + 1}" for b in range(bands)]


def overview_factors(width, height, minimum=OVERVIEW_MIN):
    """Powers of two until the longer side of the coarsest overview is below ``minimum``, as
    GDAL's COG driver and gdaladdo go: a long, narrow swath is shown whole from its overviews
    too."""
    factors, factor = [], 2
    while max(width, height) // (factor // 2) > minimum:
        factors.append(factor)
        factor *= 2
    return factors


def _reopen(path, mode="r"):
    """Open a raster just written. GDAL's block writes and close do not fail on a full disk or
    past a file-size limit, so a file cut short is first seen here, where rasterio raises
    TypeError for a file GDAL cannot identify, RasterioIOError, or (GDAL before 3.10, as QGIS
    and conda ship it) GDAL's own error class: that is a failed write (an OSError)."""
    import rasterio

    try:
        from rasterio._err import CPLE_BaseError     # not in rasterio.errors
    except ImportError:
        CPLE_BaseError = rasterio.errors.RasterioIOError
    try:
        return rasterio.open(path, mode)
    except (TypeError, rasterio.errors.RasterioIOError, CPLE_BaseError) as err:
        raise OSError(errno.EIO, "the file written cannot be read back: the disk is full, or "
                      "a file-size limit cut it short", str(path)) from err


# internal overviews written as the heatmap is, whatever the user's GDAL settings say: JPEG
# or WEBP overviews of floats are left empty (a GIS zoomed out showed no scores), others
# changed the bytes a rerun writes, and TIFF_USE_OVR or USE_RRD put them in a file left
# behind (their interleave: the file's own, ``overview_config``)
OVERVIEW_CONFIG = {"COMPRESS_OVERVIEW": "DEFLATE", "PREDICTOR_OVERVIEW": "3",
                   "ZLEVEL_OVERVIEW": "6", "GDAL_TIFF_OVR_BLOCKSIZE": str(OUTPUT_BLOCK),
                   "TIFF_USE_OVR": "NO", "USE_RRD": "NO"}


def overview_config(path):
    """``OVERVIEW_CONFIG`` for GeoTIFF ``path``, its overviews interleaved as it is."""
    with _reopen(path) as ds:
        interleave = ds.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL")
    return {**OVERVIEW_CONFIG, "INTERLEAVE_OVERVIEW": interleave}


def finish_heatmap(path):
    """Internal average overviews, per-band STATISTICS_* tags (what QGIS reads to style) and
    the digest of the pixels as written (``PIXELS_TAG``): a copy rescaled or edited since
    keeps the tags that describe the run, and only this tells it from the heatmap."""
    import numpy as np
    from rasterio.enums import Resampling

    from .gdal import gdal_env

    with gdal_env(**overview_config(path)), _reopen(path, "r+") as ds:
        ds.update_tags(**{PIXELS_TAG: pixels_digest(ds)})
        factors = overview_factors(ds.width, ds.height)
        if factors:
            ds.build_overviews(factors, Resampling.average)
            ds.update_tags(ns="rio_overview", resampling="average")
        for b in range(1, ds.count + 1):
            stats = _band_statistics(ds, b, np)
            if stats is not None:
                ds.update_tags(b, **stats)


STRIP_PIXELS = 1 << 22    # pixels of a heatmap read at once where it is read whole, row by row


def strips(width, height):
    """The windows of whole rows, ``STRIP_PIXELS`` at most, that cover a raster of ``width``
    and ``height`` top to bottom."""
    from rasterio.windows import Window

    rows = max(1, STRIP_PIXELS // max(1, width))
    return [Window(0, top, width, min(rows, height - top)) for top in range(0, height, rows)]


def pixels_digest(ds):
    """"sha256:" and the hex digest of an open raster's pixels as float32, band by band, row
    by row: ``hashlib.sha256(ds.read().astype("<f4").tobytes())``, read in ``strips``."""
    import hashlib

    digest = hashlib.sha256()
    for band in range(1, ds.count + 1):
        for strip in strips(ds.width, ds.height):
            digest.update(ds.read(band, window=strip).astype("<f4", copy=False).tobytes())
    return "sha256:" + digest.hexdigest()


def _band_statistics(ds, band, np):
    """Exact min, max, mean and standard deviation of a band's finite values, window by window."""
    n, total, square = 0, 0.0, 0.0
    low, high = np.inf, -np.inf
    for _, window in ds.block_windows(band):
        values = ds.read(band, window=window)
        values = values[np.isfinite(values)].astype(np.float64)
        if values.size:
            n += values.size
            total += values.sum()
            square += np.square(values).sum()
            low, high = min(low, values.min()), max(high, values.max())
    if n == 0:
        return None
    mean = total / n
    std = max(square / n - mean * mean, 0.0) ** 0.5
    return {"STATISTICS_MINIMUM": f"{low:.9g}", "STATISTICS_MAXIMUM": f"{high:.9g}",
            "STATISTICS_MEAN": f"{mean:.9g}", "STATISTICS_STDDEV": f"{std:.9g}",
            "STATISTICS_VALID_PERCENT": f"{100.0 * n / (ds.width * ds.height):.6g}"}


def to_cog(path, dst):
    """Copy the finished GeoTIFF ``path`` to ``dst`` as a Cloud-Optimized GeoTIFF (GDAL's COG
    driver: tiled, overviews, header first), keeping tags, descriptions and statistics."""
    from rasterio.shutil import copy

    from .gdal import gdal_env

    with gdal_env(**overview_config(path)):
        copy(path, dst, driver="COG", COMPRESS="DEFLATE", PREDICTOR="FLOATING_POINT",
             BLOCKSIZE=OUTPUT_BLOCK, OVERVIEWS="IGNORE_EXISTING", RESAMPLING="AVERAGE",
             BIGTIFF="IF_SAFER")
    if not is_cog(dst):
        raise OSError(f"{dst}: GDAL did not write a Cloud-Optimized layout")


def is_cog(path):
    """Whether GeoTIFF ``path`` has the Cloud-Optimized layout GDAL's COG driver writes."""
    with _reopen(path) as ds:
        return ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
