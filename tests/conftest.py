"""Shared fixtures: small synthetic rasters and the example scene shipped in examples/."""

import os

import numpy as np
import pytest

import hsanomaly
from synthetic import EXAMPLE, EXAMPLE_TRUTH, NODATA, synthetic_cube, write_raster

# Child processes (the command line run as `python -m hsanomaly.cli`, scripts) import the
# hsanomaly under test, wherever a test changes folder: a relative PYTHONPATH (`PYTHONPATH=.`)
# would point elsewhere there, and the child import an installed copy instead.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [os.path.dirname(os.path.dirname(os.path.abspath(hsanomaly.__file__))),
     *(os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)])


@pytest.fixture
def synthetic_raster(tmp_path):
    """A georeferenced 12-band 40x50 GeoTIFF with a nodata corner and two planted targets.

    Returns (path, truth, nodata_mask)."""
    cube, truth = synthetic_cube()
    nodata_mask = np.zeros(truth.shape, bool)
    nodata_mask[:5, :7] = True
    cube[:, nodata_mask] = NODATA
    path = write_raster(tmp_path / "scene.tif", cube, nodata=NODATA)
    return path, truth, nodata_mask


@pytest.fixture
def example_scene():
    if not EXAMPLE.exists():
        pytest.skip("examples/abu-airport-2.tif missing")
    return EXAMPLE, EXAMPLE_TRUTH


@pytest.fixture(autouse=True)
def _warnings_said_once_are_said_again():
    """``warn_once`` says a deprecation once per process; each test is a run of its own."""
    from hsanomaly.io import checks

    checks._SAID.clear()
