"""The tiled detection engine: every scorer, local or distributed, runs through it."""

import sys

from . import run
from .run import DetectResult, assemble, detect
from .tiles import LocalExecutor, fit_and_score, fit_scorer, score_array, score_tile
from .store import TileStore, store_path

__all__ = ["DetectResult", "LocalExecutor", "TileStore", "assemble", "detect", "fit_and_score",
           "fit_scorer", "score_array", "score_tile", "store_path"]

# the module's name until 0.2.0 (when it was hidden by the function ``detect``): old imports
# and pickled DetectResults still find it
sys.modules[__name__ + ".detect"] = run
