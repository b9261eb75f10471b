"""Data loss: two outputs of one command that name the same file (or one inside the other)."""

import pytest

from .conftest import Tree, assert_one_error, run_cli

MODEL = ["--score", "recon", "--model", "no-model"]   # refused before any model is read


@pytest.mark.parametrize("args, fragment", [
    (["--png", "{heat}", "--score", "rx"], "--png"),
    (["--polygons", "{heat}", "--threshold", "1", "--score", "rx"], "--polygons"),
    (["--png", "{tmp}/x.gpkg", "--polygons", "{tmp}/x.gpkg", "--far", "auto", "--score", "rx"],
     "--polygons"),
    (["--recon-out", "{heat}"] + MODEL, "--recon-out"),
    (["--latent-out", "{tmp}/z.tif", "--convergence-out", "{tmp}/z.tif"] + MODEL,
     "--convergence-out"),
    (["--png", "{heat}.partial", "--score", "rx"], "--png"),
    (["--png", "{tmp}/heat.model", "--score", "context"], "quick model"),
], ids=["png=dst", "polygons=dst", "png=polygons", "recon=dst", "latent=convergence",
        "png=tile-store", "png=quick-model"])
def test_detect_outputs_collide(tmp_path, scene, earlier, args, fragment):
    args = [a.format(heat=earlier, tmp=tmp_path) for a in args]
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, earlier, *args, "-q", cwd=tmp_path)
    assert_one_error(result, fragment)
    tree.assert_unchanged()


def test_evaluate_json_is_one_of_the_plots(tmp_path, earlier, truth):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "roc.png").write_bytes(b"an earlier plot")
    tree = Tree(tmp_path)
    result = run_cli("evaluate", earlier, truth, "--plots", plots, "--json", plots / "roc.png")
    assert_one_error(result, "--json", "--plots")
    tree.assert_unchanged()


def test_convert_truth_is_dst(tmp_path):
    import numpy as np
    import scipy.io

    scipy.io.savemat(tmp_path / "s.mat", {"data": np.ones((5, 6, 3), np.uint16),
                                          "map": np.eye(5, 6)})
    (tmp_path / "c.tif").write_bytes(b"an earlier conversion")
    tree = Tree(tmp_path)
    result = run_cli("convert", tmp_path / "s.mat", tmp_path / "c.tif", "--truth", tmp_path / "c.tif")
    assert_one_error(result, "--truth", "DST")
    tree.assert_unchanged()


def test_detect_many_two_inputs_one_output(tmp_path, scene):
    from .conftest import make_scene

    (tmp_path / "b").mkdir()
    other = make_scene(tmp_path / "b" / "scene.tif", seed=1)
    tree = Tree(tmp_path)
    result = run_cli("detect-many", scene, other, "--out-dir", tmp_path / "out", "--score", "rx")
    assert_one_error(result, "would overwrite")
    tree.assert_unchanged()


def test_detect_many_input_listed_twice(tmp_path, scene):
    tree = Tree(tmp_path)
    result = run_cli("detect-many", scene, scene, "--out-dir", tmp_path / "out", "--score", "rx")
    assert_one_error(result, "scene.tif: listed twice among the inputs")
    tree.assert_unchanged()


@pytest.mark.parametrize("args, message", [
    (["ext.png"], "ext.png: DST writes a GeoTIFF; give it a .tif or .tiff name"),
    (["h.tif "], "'h.tif ': DST writes a GeoTIFF; its name ends in a space: remove it"),
    (["h.tif", "--png", "q.tif"], "q.tif: --png writes a PNG; give it a .png name"),
    (["h.tif", "--polygons", "t.shp", "--far", "0.01"],
     "t.shp: --polygons writes a GeoPackage; give it a .gpkg name"),
])
def test_an_output_name_that_says_another_format_is_refused(tmp_path, scene, args, message):
    """A GeoTIFF written under a .png name (or a PNG under .tif) misleads every tool that goes
    by the name; the polygons' .gpkg rule now holds for every output."""
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, *[tmp_path / a if a[-1].isalpha() and "." in a else a
                                        for a in args],
                     "--score", "rx", "-q", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().endswith(message.split(": ", 1)[1])
    assert message.split(":")[0] in result.stderr
    tree.assert_unchanged()


@pytest.mark.parametrize("name", ["heat_10:30.tif", "./heat_10:30.tif"])
def test_an_output_with_a_time_of_day_in_its_name_is_a_file(tmp_path, scene, name):
    """A "word:" prefix was taken for a GDAL driver's (NETCDF:f.nc:v): heat_10:30.tif was
    refused as "must be a file path", and ./heat_10:30.tif through its .aux.xml."""
    result = run_cli("detect", scene, name, "--score", "rx", "-q", "--png", "quick_10:30.png",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "heat_10:30.tif").is_file() and (tmp_path / "quick_10:30.png").is_file()


@pytest.mark.parametrize("name", ["NETCDF:heat.nc:score", "GTIFF_DIR:1:heat.tif",
                                  "/vsizip/heat.zip/heat.tif"])
def test_an_output_named_as_a_gdal_dataset_is_refused(tmp_path, scene, name):
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, name, "--score", "rx", "-q", cwd=tmp_path)
    assert_one_error(result, f"{name}: DST must be a file path")
    tree.assert_unchanged()


@pytest.mark.parametrize("option", ["layername=targets", "layerid=0", "geometrytype=Polygon"])
def test_polygons_named_with_a_qgis_layer_say_a_layer_cannot_be_chosen(tmp_path, scene, option):
    """QGIS's spelling was told to "give it a .gpkg name", which it had (or, for a layer by
    number, to name it by name, which was refused next)."""
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, "heat.tif", "--score", "rx", "--far", "1e-3",
                     "--polygons", f"t.gpkg|{option}", cwd=tmp_path)
    assert_one_error(result, f"t.gpkg|{option}: --polygons is written whole, a file of its own, "
                             "so a layer of it cannot be chosen: name the file alone (t.gpkg)")
    tree.assert_unchanged()
