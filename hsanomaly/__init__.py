"""hsanomaly: unsupervised anomaly detection in hyperspectral rasters with Wasserstein GANs.

The front door:

    hsanomaly.Detector(score, model, **options).fit(X).score(X)   # arrays, datasets, xarray
    hsanomaly.train(inputs, out)            # a GAN model bundle (needs the [train] extra)
    hsanomaly.detect(src, dst)              # a heatmap GeoTIFF, tiled, resumable: DetectResult
    hsanomaly.detect_many(inputs, out_dir)  # many rasters, optionally on Dask: [BatchItem]
    hsanomaly.find_targets(heatmap, far=1e-3)   # the targets as a GeoDataFrame
    hsanomaly.evaluate(heatmap, truth)      # AUC, logAUC, lgFAR, Pd, per target
    hsanomaly.info(path)                    # what a bundle, heatmap or drawing records
    hsanomaly.SCORES                        # the score names
"""

import importlib
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import (Cancelled, HsanomalyDeprecationWarning, HsanomalyError, HsanomalyWarning,
                     NoWorkers, OutOfResources)

if TYPE_CHECKING:              # loaded on first use (``__getattr__``); named for type checkers
    from . import model        # hsanomaly.model.Bundle: what train returns, what model= takes
    from . import cluster, defaults    # the docs name hsanomaly.defaults.TILE, cluster.worker_wait
    from .api import detect, evaluate, find_targets, train
    from .batch import BatchItem, detect_many
    from .detector import Detector
    from .engine import DetectResult
    from .errors import NotFittedError
    from .records import info
    from .scorers import SCORES

__all__ = ["BatchItem", "Cancelled", "DetectResult", "Detector", "HsanomalyDeprecationWarning",
           "HsanomalyError", "HsanomalyWarning", "NoWorkers", "NotFittedError",
           "OutOfResources", "SCORES",
           "__version__", "detect",
           "detect_many", "evaluate", "find_targets", "info", "model", "train"]

# name -> the module that holds it, imported on first use: ``import hsanomaly`` stays light
# (rasterio, numpy and the rest load with the first job), so the command line can take an
# interrupt from its first moments, and a script pays only for what it uses
_WHERE = {"detect": ".api", "evaluate": ".api", "find_targets": ".api", "train": ".api",
          "BatchItem": ".batch", "detect_many": ".batch", "Detector": ".detector",
          "DetectResult": ".engine", "NotFittedError": ".errors", "SCORES": ".scorers",
          "info": ".records"}


if not TYPE_CHECKING:    # a checker sees the names above, and no catch-all that takes typos
    def __getattr__(name):
        """A front-door name, or a module of the package, imported on first use."""
        if name in _WHERE:
            return getattr(importlib.import_module(_WHERE[name], __name__), name)   # its owner's
        if not name.isidentifier():
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:            # a module of the package (hsanomaly.model, .scorers, .defaults, ...)
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":     # one it imports is missing: say that
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    """The module's names with those loaded on first use, less the machinery of loading them
    (an editor's completion offers what a user may call)."""
    return sorted({*(name for name in globals() if not name.startswith("_")), *__all__}
                  - {"TYPE_CHECKING", "importlib"})
