"""A quick-look PNG of a heatmap GeoTIFF, for eyes rather than analysis."""

import numpy as np

MAX_SIZE = 2048   # pixels on the longer side; larger heatmaps are decimated


def write_png(heatmap, png, max_size=MAX_SIZE, stage=None):
    """Write a PNG of band 1 of ``heatmap``, decimated to at most ``max_size`` pixels a side.

    The PNG is written through the one write path (``hsanomaly.io.atomic``), read back and
    checked; with ``stage`` it is replaced together with that stage's other outputs.
    """
    from .evaluation.plots import save_heatmap_png
    from .io.source import open_raster, read_checked

    with open_raster(heatmap) as ds:
        step = max(1, -(-max(ds.height, ds.width) // max_size))
        shape = (max(1, ds.height // step), max(1, ds.width // step))
        scores = read_checked(ds, 1, out_shape=shape, masked=True).filled(np.nan)
    save_heatmap_png(scores, png, stage=stage)
