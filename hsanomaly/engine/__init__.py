"""The tiled detection engine: every scorer, local or distributed, runs through it."""

from .detect import DetectResult, assemble, detect, finish, plan, score_tile
from .store import TileStore, store_path

__all__ = ["DetectResult", "TileStore", "assemble", "detect", "finish", "plan", "score_tile", "store_path"]
