"""hsanomaly: unsupervised anomaly detection in hyperspectral rasters with Wasserstein GANs.

The front door:

    hsanomaly.Detector(score, model, **options).fit(X).score(X)   # arrays, datasets, xarray
    hsanomaly.train(inputs, out)            # a GAN model bundle (needs the [train] extra)
    hsanomaly.detect(src, dst)              # a heatmap GeoTIFF, tiled, resumable
    hsanomaly.detect_many(inputs, out_dir)  # many rasters, optionally on a Dask cluster
    hsanomaly.evaluate(heatmap, truth)      # AUC, logAUC, lgFAR, Pd, per target
"""

from ._version import __version__
from .api import detect, detect_many, evaluate, train
from .detector import Detector
from .errors import HsanomalyError, HsanomalyWarning, NotFittedError
from .scorers import SCORES

__all__ = ["Detector", "HsanomalyError", "HsanomalyWarning", "NotFittedError", "SCORES",
           "__version__", "detect", "detect_many", "evaluate", "train"]
