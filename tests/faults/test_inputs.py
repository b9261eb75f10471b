"""Bad inputs, refused up front with one line (or, for a constant raster, warned about)."""

import sys

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io

from synthetic import write_raster

from .conftest import Tree, assert_one_error, make_scene, run_cli


def truncated_raster(path):
    """A striped, uncompressed GeoTIFF cut at 60%: the header reads, the pixels do not."""
    make_scene(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    return path


def test_complex_geotiff(tmp_path):
    path = tmp_path / "complex.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=2,
                       dtype="complex64") as ds:
        ds.write(np.ones((2, 8, 8), np.complex64) * (1 + 2j))
    tree = Tree(tmp_path)
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "complex.tif", "complex pixels")
    tree.assert_unchanged()


def test_complex_mat(tmp_path):
    scipy.io.savemat(tmp_path / "c.mat", {"data": np.ones((5, 6, 3)) * (1 + 1j)})
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", tmp_path / "c.mat", tmp_path / "c.tif"), "complex pixels")
    tree.assert_unchanged()


def test_mat_v73_declaring_a_huge_cube(tmp_path):
    """An HDF5 (v7.3) .mat whose chunked cube is declared but never written: a few KiB on
    disk, 16 TB in memory. Refused from its header, before anything is loaded."""
    path = tmp_path / "huge.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(200, 10**5, 10**5), dtype="float64", chunks=(1, 64, 64))
    tree = Tree(tmp_path)
    for command in (["convert", path, tmp_path / "huge.tif"],
                    ["detect", path, tmp_path / "heat.tif", "--score", "rx", "-q"]):
        assert_one_error(run_cli(*command), "huge.mat", "of memory", "available")
    tree.assert_unchanged()


def test_heatmap_declaring_a_huge_size(tmp_path, truth):
    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=10**6, height=10**6, count=1,
                       dtype="float32", tiled=True, blockxsize=16384, blockysize=16384,
                       sparse_ok=True, BIGTIFF="YES"):
        pass
    tree = Tree(tmp_path)
    assert_one_error(run_cli("evaluate", huge, truth), "huge.tif", "of memory", "available")
    tree.assert_unchanged()


@pytest.mark.parametrize("kind", ["constant", "near-constant"])
def test_constant_raster_is_warned_about(tmp_path, kind):
    cube = np.full((6, 20, 30), 1000.0, np.float32)
    if kind == "near-constant":
        cube += np.random.default_rng(0).normal(0, 1e-4, cube.shape).astype(np.float32)
    src = write_raster(tmp_path / "flat.tif", cube)
    result = run_cli("detect", src, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Warning: ") and "constant" in lines[0], lines
    assert (tmp_path / "heat.tif").exists()


@pytest.mark.parametrize("command", ["detect", "rio", "train", "evaluate"])
def test_truncated_geotiff(tmp_path, command, earlier, truth):
    bad = truncated_raster(tmp_path / "cut.tif")
    tree = Tree(tmp_path)
    if command == "detect":
        result = run_cli("detect", bad, earlier, "--score", "rx", "-q")
    elif command == "rio":
        import subprocess

        result = subprocess.run([sys.executable, "-c", "from rasterio.rio.main import main_group;"
                                 " main_group()", "hsanomaly", "detect", str(bad), str(earlier),
                                 "--score", "rx", "-q"], capture_output=True, text=True)
    elif command == "train":
        result = run_cli("train", bad, "--out", tmp_path / "model", "--iterations", "2", "-q")
    else:
        result = run_cli("evaluate", bad, truth)
    assert_one_error(result, "cut.tif", "truncated or corrupt")
    tree.assert_unchanged()


@pytest.mark.parametrize("content", [b"", b"hello", b"II*\x00" + bytes(100)],
                         ids=["empty", "text", "tiff-magic"])
def test_unreadable_file(tmp_path, content):
    (tmp_path / "bad.tif").write_bytes(content)
    tree = Tree(tmp_path)
    result = run_cli("detect", tmp_path / "bad.tif", tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "bad.tif")
    tree.assert_unchanged()


def test_not_a_mat_file(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really" + bytes(200))
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", tmp_path / "x.mat", tmp_path / "x.tif"), "x.mat")
    tree.assert_unchanged()


@pytest.mark.parametrize("score, valid, fragment", [
    ("rx", 3, "RX on 12 bands needs at least 13 valid pixels (one more than bands); the raster has 3"),
    ("rx", 12, "the raster has 12"),
    ("gmm", 3, "a mixture of 5 components needs at least 5 valid pixels"),
])
def test_too_few_valid_pixels_for_the_statistics(tmp_path, score, valid, fragment):
    """RX fitted on 3 pixels of 12 bands wrote negative squared distances with exit 0, and the
    mixture stopped with scikit-learn's traceback: both are refused in one line."""
    cube = np.full((12, 20, 30), np.nan, np.float32)
    cube[:, 0, :valid] = np.random.default_rng(0).normal(100, 5, (12, valid))
    src = write_raster(tmp_path / "sparse.tif", cube)
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", src, tmp_path / "heat.tif", "--score", score, "-q"),
                     "sparse.tif", fragment)
    tree.assert_unchanged()
