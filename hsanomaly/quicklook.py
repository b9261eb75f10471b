"""A quick-look PNG of a heatmap GeoTIFF, for eyes rather than analysis."""

import numpy as np

MAX_SIZE = 2048   # pixels on the longer side; larger heatmaps are decimated


def write_png(heatmap, png, max_size=MAX_SIZE):
    """Write a PNG of band 1 of ``heatmap``, decimated to at most ``max_size`` pixels a side."""
    import rasterio

    from .evaluation.plots import save_heatmap_png
    from .io.atomic import atomic_path

    with rasterio.open(heatmap) as ds:
        step = max(1, -(-max(ds.height, ds.width) // max_size))
        shape = (max(1, ds.height // step), max(1, ds.width // step))
        scores = ds.read(1, out_shape=shape, masked=True).filled(np.nan)
    with atomic_path(png) as tmp:
        save_heatmap_png(scores, tmp)
