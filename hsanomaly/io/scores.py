"""A heatmap's scores as thresholds and targets read them: by chunk of whole output blocks,
float32 or wider where the stored values need it, a band scale and offset applied."""

import numpy as np

from ..errors import HsanomalyError
from .checks import check_memory, warn
from .gdal import open_raster, read_scaled
from .heatmap import OUTPUT_BLOCK
from .source import iter_windows

READ_CHUNK = 4 * OUTPUT_BLOCK   # pixels a side read at once: whole output blocks


def read_scores(dataset, window):
    """Band 1 of an open heatmap in ``window`` (its scale and offset applied) as float32, or
    float64 where its stored values need it (``stored_precision``), NaN where masked."""
    scores = read_scaled(dataset, 1, window=window)
    return scores.astype(stored_precision(dataset)).filled(np.nan)


def stored_precision(dataset):
    """The float type that holds band 1's values: float32 for detect's heatmaps, float64 for
    another's float64 or 32-bit integers (1 - p, near 1, is one float32 value)."""
    return np.result_type(dataset.dtypes[0], np.float32)


def read_heatmap_whole(path, bytes_per_pixel, use):
    """Band 1 of a score raster whole, as float64 (``read_scaled``), nodata and masked
    pixels NaN. One too large for the memory available (``bytes_per_pixel``: the peak of
    ``use`` a pixel), or of complex pixels, is refused before it is read."""
    with open_raster(path) as ds:
        if ds.dtypes[0].startswith("complex"):
            raise HsanomalyError(f"{path}: complex pixels ({ds.dtypes[0]}) are not scores")
        check_memory(path, ds.width * ds.height * bytes_per_pixel,
                     f"{use} the {ds.width}x{ds.height} heatmap")
        warn_bands(ds, path)
        return read_scaled(ds, 1).filled(np.nan)


def warn_bands(ds, name):
    """Say a score raster (open ``ds``, named ``name``) of several bands, whose first alone is
    read: the scene itself given for its heatmap reads as one."""
    if ds.count > 1:
        warn(f"{name}: has {ds.count} bands; the first is read as the scores (a heatmap of "
             "hsanomaly has one)")


def read_whole(path):
    """A heatmap file stored wider than float32 as one float64 array, for an exact selection
    in its own precision (the radix select's keys are float32); None for one that is not."""
    with open_raster(path) as ds:
        if stored_precision(ds) == np.float32:
            return None
    return read_heatmap_whole(path, 2 * 8, "selecting a threshold of")


def heatmap_array(heatmap):
    """A heatmap array as 2-D (one band of a (1, rows, cols) array), in its own type."""
    scores = np.asarray(heatmap)
    if scores.ndim == 3 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim != 2:
        raise HsanomalyError(f"<array>: a heatmap is 2-D, got shape {scores.shape}")
    return scores


def score_chunks(heatmap, chunk=READ_CHUNK):
    """Yield (window, scores) over a heatmap GeoTIFF path or a 2-D array, float32 or wider
    where the values need it (``stored_precision``): a threshold compares them as they are."""
    if isinstance(heatmap, np.ndarray):
        scores = heatmap_array(heatmap)
        scores = scores.astype(np.result_type(scores.dtype, np.float32), copy=False)
        for win in iter_windows(*scores.shape, chunk):
            yield win, scores[win.toslices()]
        return
    with open_raster(heatmap) as ds:
        for win in iter_windows(ds.height, ds.width, chunk):
            yield win, read_scores(ds, win)
