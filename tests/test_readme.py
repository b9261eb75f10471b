"""The README's Python examples run as written and give what `hsanomaly detect` writes."""

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from synthetic import EXAMPLE, ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def run_block(code, workdir):
    """Run one README block in a fresh interpreter in ``workdir``; returns its ``heat``."""
    (workdir / "examples").mkdir(exist_ok=True)
    for path in (ROOT / "examples").glob("abu-airport-2*"):
        link = workdir / "examples" / path.name
        if not link.exists():
            link.symlink_to(path)
    out = workdir / "heat.npy"
    save = f"\nimport numpy\nnumpy.save({str(out)!r}, numpy.asarray(heat))\n"
    subprocess.run([sys.executable, "-c", code + save], cwd=workdir, check=True, timeout=600)
    return np.load(out)


def cli_heatmap(workdir, score, *options):
    out = workdir / f"{score}.tif"
    subprocess.run([sys.executable, "-m", "hsanomaly.cli", "detect", str(EXAMPLE), str(out),
                    "--score", score, "-q", *options], check=True, timeout=600)
    with rasterio.open(out) as ds:
        return ds.read(1)


def block_using(score):
    found = [code for code in BLOCKS if f'Detector("{score}"' in code]
    assert len(found) == 1, f"the README has no single Python example for {score}"
    return found[0]


def test_readme_has_an_example_per_input_kind():
    assert len(BLOCKS) >= 3
    text = "".join(BLOCKS)
    assert "rasterio.open" in text and "xr.DataArray" in text and ".read()" in text
    assert all(len(block.strip().splitlines()) <= 4 for block in BLOCKS)


def test_the_evaluation_example_gives_what_the_files_give(tmp_path):
    """It follows the numpy example, whose ``heat`` it evaluates."""
    import hsanomaly

    found = [code for code in BLOCKS if "hsanomaly.evaluate(heat" in code]
    assert len(found) == 1
    code = block_using("rx") + found[0] + "heat = [report['auc'], report['pd']]\n"
    figures = run_block(code, tmp_path)
    cli_heatmap(tmp_path, "rx")                                 # writes rx.tif
    from_files = hsanomaly.evaluate(tmp_path / "rx.tif", ROOT / "examples" / "abu-airport-2-truth.tif")
    np.testing.assert_array_equal(figures, [from_files["auc"], from_files["pd"]])


@pytest.mark.parametrize("score", ["rx", "lrx"])
def test_baseline_examples_equal_the_cli(tmp_path, score):
    heat = run_block(block_using(score), tmp_path)
    expected = cli_heatmap(tmp_path, score)
    assert heat.shape == expected.shape == (100, 100) and heat.dtype == np.float32
    np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.train
@pytest.mark.skipif(importlib.util.find_spec("torch") is None or
                    importlib.util.find_spec("xarray") is None, reason="needs torch and xarray")
def test_default_score_example_on_xarray_equals_the_cli(tmp_path):
    heat = run_block(block_using("dualcontext"), tmp_path)
    expected = cli_heatmap(tmp_path, "dualcontext", "--model", str(tmp_path / "airport-2.model"))
    np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("placed", [False, True])
def test_the_targets_example_gives_the_polygons_detect_writes(tmp_path, placed):
    """The README said a plain array's targets were "the --polygons layer's rows", true of the
    unplaced example only: on a georeferenced raster they lay at pixel coordinates, without a
    CRS (the newcomer audit). Its call for a raster on a map places them as detect does, and
    the example's own call gives detect's pixel coordinates (given the example's identity
    transform, they were mirrored: review 3)."""
    import geopandas
    from rasterio.transform import from_origin

    (tmp_path / "examples").mkdir()
    scene = tmp_path / "examples" / "abu-airport-2.tif"
    with rasterio.open(EXAMPLE) as src:
        profile = {**src.profile, **({"crs": "EPSG:32633", "transform": from_origin(
            500000, 4100000, 17, 17)} if placed else {})}
        with rasterio.open(scene, "w", **profile) as dst:
            dst.write(src.read())
    [block] = [code for code in BLOCKS if "hsanomaly.find_targets(heat" in code]
    call = re.search(r"# on a map: (.*)\n", block).group(1) if placed else \
        re.search(r"^targets = (hsanomaly\.find_targets\([^)]*\))", block, re.M).group(1)
    code = block_using("rx") + block + f"targets = {call}\ntargets.to_file('t.gpkg')\nheat = 0\n"
    run_block(code, tmp_path)
    subprocess.run([sys.executable, "-m", "hsanomaly.cli", "detect", str(scene),
                    str(tmp_path / "heat.tif"), "--score", "rx", "-q", "--polygons",
                    str(tmp_path / "written.gpkg"), "--far", "1e-3"], check=True, timeout=600)
    example = geopandas.read_file(tmp_path / "t.gpkg")
    written = geopandas.read_file(tmp_path / "written.gpkg", layer="targets")
    assert example.crs == written.crs and (example.crs == "EPSG:32633") == placed
    assert len(example) == len(written) > 0
    assert example.geometry.geom_equals(written.geometry).all()
    assert example["area"].equals(written["area"])
