"""Data loss: an output that names an input, for every command (also through links)."""

import os

import numpy as np
import pytest
import scipy.io

from .conftest import Tree, assert_one_error, run_cli


@pytest.fixture
def mat(tmp_path):
    cube = (np.arange(5 * 6 * 3).reshape(5, 6, 3) % 7).astype(np.uint16)
    scipy.io.savemat(tmp_path / "scene.mat", {"data": cube, "map": np.eye(5, 6)})
    return tmp_path / "scene.mat"


def test_detect_dst_is_src(tmp_path, scene):
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, scene, "--score", "rx", "-q"), "DST", "input SRC")
    tree.assert_unchanged()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_detect_dst_is_a_link_to_src(tmp_path, scene, link):
    dst = tmp_path / "heat.tif"
    (os.symlink if link == "symlink" else os.link)(scene, dst)
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, dst, "--score", "rx", "-q"), "input SRC")
    tree.assert_unchanged()


@pytest.mark.parametrize("option", ["--png", "--polygons", "--recon-out", "--latent-out",
                                    "--convergence-out"])
def test_detect_side_output_is_src(tmp_path, scene, option):
    model = ["--score", "recon", "--model", tmp_path / "no-model"] if option.endswith("-out") \
        else ["--score", "rx"]
    extra = ["--threshold", "1"] if option == "--polygons" else []
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", option, scene, *model, *extra, "-q")
    assert_one_error(result, option, "input SRC")
    tree.assert_unchanged()


def test_detect_output_inside_the_model_bundle(tmp_path, scene):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "critic", "--model", model,
                     "--png", model / "model.json", "-q")
    assert_one_error(result, "--png", "--model")
    tree.assert_unchanged()


def test_detect_input_inside_the_tile_store(tmp_path):
    from .conftest import make_scene

    store = tmp_path / "heat.tif.partial"
    store.mkdir()
    src = make_scene(store / "scene.tif")
    tree = Tree(tmp_path)
    result = run_cli("detect", src, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "tile store", "input SRC")
    tree.assert_unchanged()


def test_convert_dst_is_src(tmp_path, mat):
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", mat, mat), "DST", "input SRC")
    tree.assert_unchanged()


def test_convert_truth_is_src(tmp_path, mat):
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", mat, tmp_path / "c.tif", "--truth", mat), "--truth",
                     "input SRC")
    tree.assert_unchanged()


@pytest.mark.parametrize("which", ["heatmap", "truth"])
def test_evaluate_json_is_an_input(tmp_path, earlier, truth, which):
    target = earlier if which == "heatmap" else truth
    tree = Tree(tmp_path)
    assert_one_error(run_cli("evaluate", earlier, truth, "--json", target), "--json", "input")
    tree.assert_unchanged()


def test_evaluate_plot_is_the_heatmap(tmp_path, earlier, truth):
    plots = tmp_path / "plots"
    plots.mkdir()
    heat = plots / "roc.png"
    os.replace(earlier, heat)
    tree = Tree(tmp_path)
    assert_one_error(run_cli("evaluate", heat, truth, "--plots", plots), "--plots", "HEATMAP")
    tree.assert_unchanged()


def test_train_out_holds_the_input(tmp_path):
    from .conftest import make_scene

    folder = tmp_path / "data"
    folder.mkdir()
    src = make_scene(folder / "scene.tif")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", src, "--out", folder, "-q"), "--out")
    tree.assert_unchanged()


@pytest.mark.parametrize("which", ["input", "mask"])
def test_train_out_is_an_input_file(tmp_path, scene, which):
    mask = tmp_path / "mask.tif"
    mask.write_bytes(scene.read_bytes())
    tree = Tree(tmp_path)
    result = run_cli("train", scene, "--mask", mask, "--out", scene if which == "input" else mask)
    assert_one_error(result, "--out", status=2)
    tree.assert_unchanged()


def test_detect_many_output_is_another_input(tmp_path, scene):
    out = tmp_path / "out"
    out.mkdir()
    other = out / "scene_rx.tif"
    other.write_bytes(scene.read_bytes())
    tree = Tree(tmp_path)
    result = run_cli("detect-many", scene, other, "--out-dir", out, "--score", "rx", "-q")
    assert_one_error(result, "scene_rx.tif", "input")
    tree.assert_unchanged()


def test_benchmark_markdown_is_the_reference(tmp_path):
    reference = tmp_path / "reference.csv"
    reference.write_text("scene,method,auc\n")
    tree = Tree(tmp_path)
    result = run_cli("benchmark", tmp_path, "--reference", reference, "--markdown", reference,
                     "--out", tmp_path / "results", "-q")
    assert_one_error(result, "--markdown", "--reference")
    tree.assert_unchanged()


def _vrt(path, source, bands=12, rows=40, cols=50):
    """A VRT of ``source``'s bands, written by hand (no gdalbuildvrt needed)."""
    band = ('<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource>'
            '<SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>{b}</SourceBand>'
            '</SimpleSource></VRTRasterBand>')
    path.write_text(f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">'
                    + "".join(band.format(b=b, name=source.name) for b in range(1, bands + 1))
                    + "</VRTDataset>")
    return path


@pytest.mark.parametrize("through", ["vrt", "subdataset"])
def test_detect_dst_is_the_file_an_input_reads(tmp_path, scene, through):
    """A VRT over scene.tif (or GTIFF_DIR:1:scene.tif) as the input, scene.tif as the output:
    only paths were compared, and with --overwrite (QGIS always passes it) the scene became a
    heatmap. GDAL's own file list of the input is compared now."""
    src = _vrt(tmp_path / "scene.vrt", scene) if through == "vrt" else f"GTIFF_DIR:1:{scene}"
    tree = Tree(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert_one_error(run_cli("detect", src, scene, "--score", "rx", "-q", *extra),
                         "scene.tif: DST is the same file as the input")
        tree.assert_unchanged()



def test_detect_many_output_is_the_file_an_input_reads(tmp_path, scene):
    scene.rename(tmp_path / "a_rx.tif")                  # a.vrt's heatmap would be a_rx.tif
    src = _vrt(tmp_path / "a.vrt", tmp_path / "a_rx.tif")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect-many", src, "--out-dir", tmp_path, "--score", "rx"),
                     "a_rx.tif", "is the same file as the input")
    tree.assert_unchanged()
