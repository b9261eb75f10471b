"""Every option checked before any work, with one line naming it: nothing scored, nothing left."""

import time

import pytest

from .conftest import Tree, assert_one_error, run_cli

GAN = ["--score", "recon", "--model", "no-model"]     # refused before the model is read


@pytest.mark.parametrize("args, fragment, status", [
    (["--tile", "0"], "--tile", 2),
    (["--tile", "-5"], "--tile", 2),
    (["--tile", "7"], "--tile", 2),
    (["--threads", "0"], "--threads", 2),
    (["--threads", "2"], "--threads", 1),                 # rx takes no threads
    (["--score", "gmm", "--device", "cpu"], "--device", 1),
    (["--score", "critic", "--model", "m", "--outer", "9"], "--outer", 1),
    (["--score", "lrx", "--outer", "4"], "--outer", 1),
    (["--score", "lrx", "--outer", "9", "--guard", "11"], "--outer/--guard", 1),
    (["--score", "mlrx", "--rings", "7/3;3/5"], "--rings: local RX needs odd ring sizes with "
                                               "0 < guard < outer, got outer 3, guard 5", 1),
    (["--score", "mlrx", "--rings", "7/3;abc"], "--rings", 1),
    (["--score", "mlrx", "--top-rings", "-1"], "--top-rings", 2),
    (["--rings", "7/3"], "--rings", 1),                   # rx has no rings
    (["--score", "mlrx", "--purge", "0.5"], "--purge", 1),
    (["--score", "mlrx", "--purge", "nan"], "--purge", 1),
    (["--purge", "0.05"], "--purge", 1),                  # rx has no rings
    (GAN + ["--c1", "nan"], "--c1", 1),
    (GAN + ["--c2", "inf"], "--c2", 1),
    (GAN + ["--c1", "0", "--c2", "0"], "--c1", 1),
    (GAN + ["--lam", "2"], "--lam", 2),
    (GAN + ["--codebook-scale", "0"], "--codebook-scale", 2),
    (GAN + ["--codebook-scale", "nan"], "--codebook-scale", 1),
    (GAN + ["--codebook-scale", "inf"], "--codebook-scale", 1),
    (["--codebook-scale", "1"], "--codebook-scale", 1),   # rx has no latent search
    (["--far", "2", "--polygons", "t.gpkg"], "--far", 1),
    (["--far", "nan", "--polygons", "t.gpkg"], "--far", 1),
    (["--far", "often", "--polygons", "t.gpkg"], "--far", 2),
    (["--threshold", "nan", "--polygons", "t.gpkg"], "--threshold", 1),
    (["--threshold", "3"], "--polygons", 1),
    (["--polygons", "t.gpkg"], "--threshold or --far", 1),
    (["--png", "missing/q.png"], "does not exist", 1),
    (["--polygons", "missing/t.gpkg", "--far", "auto"], "does not exist", 1),
    (["--recon-out", "r.tif"], "--recon-out", 1),         # rx has no reconstruction
    (["--workers", "0"], "--workers", 2),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers", 1),
    (["--solver", "magic"], "--solver", 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_detect_option(tmp_path, scene, earlier, args, fragment, status):
    tree = Tree(tmp_path)          # heat.tif, the destination, holds an earlier good heatmap
    base = [] if "--score" in args else ["--score", "rx"]
    result = run_cli("detect", scene, "heat.tif", *base, *args, "-q", cwd=tmp_path)
    assert_one_error(result, fragment, status=status)
    tree.assert_unchanged()


def test_scheduler_that_is_not_an_address_fails_fast(tmp_path, scene, earlier):
    tree = Tree(tmp_path)
    start = time.monotonic()
    result = run_cli("detect", scene, earlier, "--score", "rx", "--scheduler",
                     "not a url", "-q")
    assert_one_error(result, "--scheduler", "not a Dask scheduler address")
    assert time.monotonic() - start < 20
    tree.assert_unchanged()


@pytest.mark.parametrize("args, fragment, status", [
    (["--tile", "0"], "--tile", 2),
    (["--threads", "1"], "--threads", 1),
    (["--scheduler", "::bad::"], "--scheduler", 1),
])
def test_detect_many_option(tmp_path, scene, args, fragment, status):
    tree = Tree(tmp_path)
    result = run_cli("detect-many", scene, "--out-dir", tmp_path / "out", "--score", "rx", *args)
    assert_one_error(result, fragment, status=status)
    tree.assert_unchanged()


@pytest.mark.parametrize("args, fragment, status", [
    (["--bands", "0"], "--bands", 2),
    (["--iterations", "0"], "--iterations", 2),
    (["--window", "0"], "--window", 2),
])
def test_train_option(tmp_path, scene, args, fragment, status):
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", scene, "--out", tmp_path / "model", *args), fragment,
                     status=status)
    tree.assert_unchanged()


def test_evaluate_plots_is_a_file(tmp_path, earlier, truth):
    (tmp_path / "plots").write_text("a file")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("evaluate", earlier, truth, "--plots", tmp_path / "plots"), "--plots",
                     status=2)
    tree.assert_unchanged()
