"""Whole scenes in memory: for training, evaluation and benchmarks on small rasters."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import HsanomalyError
from .source import open_raster, open_source, read_checked


@dataclass
class Scene:
    cube: np.ndarray                    # float32 (bands, rows, cols), NaN where invalid
    valid: np.ndarray                   # bool (rows, cols)
    truth: Optional[np.ndarray] = None  # uint8 (rows, cols), 1 = anomaly
    profile: dict = field(default_factory=dict)
    wavelengths: Optional[list] = None
    name: str = ""

    @property
    def pixels(self):
        """Valid pixels as (n, bands)."""
        return self.cube[:, self.valid].T


def read_scene(path, truth=None):
    """Read a raster or .mat scene whole; ``truth`` is an optional truth raster path."""
    source = open_source(path)
    try:
        from rasterio.windows import Window

        cube, valid = source.read(Window(0, 0, source.width, source.height))
    finally:
        source.close()
    gt = None
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat

        gt = read_mat(path)[1]
    if truth is not None:
        gt = read_truth(truth, shape=cube.shape[1:])
    return Scene(cube, valid, gt, source.profile, source.wavelengths, Path(str(path)).stem)


def read_truth(path, shape=None):
    """A binary truth mask (uint8) from a raster or the truth variable of a .mat file."""
    if str(path).lower().endswith(".mat"):
        from .mat import read_mat

        gt = read_mat(path)[1]
        if gt is None:
            raise HsanomalyError(f"{path}: no ground-truth variable found in the .mat file")
    else:
        with open_raster(path) as ds:
            gt = read_checked(ds, 1)
        gt = (np.nan_to_num(gt) != 0).astype(np.uint8)
    if shape is not None and gt.shape != tuple(shape):
        raise HsanomalyError(f"{path}: truth is {gt.shape[0]}x{gt.shape[1]}, "
                             f"the scene is {shape[0]}x{shape[1]}")
    return gt
