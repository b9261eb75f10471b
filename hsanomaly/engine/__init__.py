"""The tiled detection engine: every scorer, local or distributed, runs through it."""

from .run import (DetectResult, LocalExecutor, assemble, detect, fit_scorer, score_array,
                     score_tile)
from .store import TileStore, store_path

__all__ = ["DetectResult", "LocalExecutor", "TileStore", "assemble", "detect", "fit_scorer",
           "score_array", "score_tile", "store_path"]
