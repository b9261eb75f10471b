"""hsanomaly: unsupervised anomaly detection in hyperspectral rasters with Wasserstein GANs.

The front door:

    hsanomaly.Detector(score, model, **options).fit(X).score(X)   # arrays, datasets, xarray
    hsanomaly.train(inputs, out)            # a GAN model bundle (needs the [train] extra)
    hsanomaly.detect(src, dst)              # a heatmap GeoTIFF, tiled, resumable: DetectResult
    hsanomaly.detect_many(inputs, out_dir)  # many rasters, optionally on Dask: [BatchItem]
    hsanomaly.find_targets(heatmap, far=1e-3)   # the targets as a GeoDataFrame
    hsanomaly.evaluate(heatmap, truth)      # AUC, logAUC, lgFAR, Pd, per target
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .api import detect, evaluate, find_targets, train
from .batch import BatchItem, detect_many
from .detector import Detector
from .errors import HsanomalyDeprecationWarning, HsanomalyError, HsanomalyWarning
from . import model            # hsanomaly.model.Bundle: what train returns, what model= takes
from .scorers import SCORES

if TYPE_CHECKING:              # loaded on first use (``__getattr__``); named for type checkers
    from .engine import DetectResult
    from .errors import NotFittedError

__all__ = ["BatchItem", "DetectResult", "Detector", "HsanomalyDeprecationWarning", "HsanomalyError",
           "HsanomalyWarning", "NotFittedError", "SCORES", "__version__", "detect", "detect_many",
           "evaluate", "find_targets", "model", "train"]


def __getattr__(name):
    if name == "NotFittedError":       # made on first use: it imports scikit-learn
        from . import errors

        return errors.NotFittedError
    if name == "DetectResult":         # what ``detect`` returns; the engine loads on first use
        from .engine import DetectResult

        return DetectResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "DetectResult", "NotFittedError"])
