"""Test data shared by the test modules: small synthetic rasters, the example scene paths.

A module of its own, not conftest.py, so that `from synthetic import ...` stays unambiguous
beside tests/qgis/conftest.py."""

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "abu-airport-2.tif"
EXAMPLE_TRUTH = ROOT / "examples" / "abu-airport-2-truth.tif"
SHARED_DATA = ROOT.parent / "shared" / "data"

CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 6700000.0, 2.0, 2.0)
NODATA = -9999.0


def synthetic_cube(bands=12, rows=40, cols=50, targets=((10, 10), (30, 40)), seed=0):
    """Background from three smooth endmembers plus noise; each target is a 2x2 half-foreign mixture."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(0, 1, bands)
    ends = np.stack([np.sin(3 * wl + k) + 2 for k in range(3)])
    abund = rng.dirichlet(np.ones(3), size=rows * cols)
    cube = (abund @ ends).T.reshape(bands, rows, cols)
    truth = np.zeros((rows, cols), np.uint8)
    foreign = np.cos(9 * wl) + 2
    for r, c in targets:
        cube[:, r:r + 2, c:c + 2] = 0.5 * cube[:, r:r + 2, c:c + 2] + 0.5 * foreign[:, None, None]
        truth[r:r + 2, c:c + 2] = 1
    cube += rng.normal(0, 0.01, cube.shape)
    return cube.astype(np.float32), truth


def write_raster(path, cube, nodata=None, crs=CRS, transform=TRANSFORM, dtype="float32"):
    profile = {"driver": "GTiff", "dtype": dtype, "count": cube.shape[0],
               "height": cube.shape[1], "width": cube.shape[2], "crs": crs,
               "transform": transform}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube.astype(dtype))
    return path


def write_mat(path, cube, truth):
    """A benchmark-style .mat scene: the cube as rows x cols x bands ("data") and its truth ("map")."""
    import scipy.io

    scipy.io.savemat(path, {"data": np.moveaxis(cube, 0, -1).astype(np.float64), "map": truth})
    return path
