"""The tiled detection engine: every scorer, local or distributed, runs through it."""

from .detect import DetectResult, assemble, detect, plan, score_tile
from .store import TileStore

__all__ = ["DetectResult", "TileStore", "assemble", "detect", "plan", "score_tile"]
