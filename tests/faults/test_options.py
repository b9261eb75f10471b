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
    (["--far", "often", "--polygons", "t.gpkg"], "--far must be a false-alarm rate", 1),
    (["--threshold", "nan", "--polygons", "t.gpkg"], "--threshold", 1),
    (["--threshold", "3"], "--polygons", 1),
    (["--polygons", "t.gpkg"], "--threshold or --far", 1),
    (["--polygons", "t.shp", "--far", "0.01"], "t.shp: --polygons writes a GeoPackage", 1),
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
    for address in ("not a url", "garbage"):       # Dask needs a port: 20 s, then a traceback
        result = run_cli("detect", scene, earlier, "--score", "rx", "--scheduler", address, "-q")
        assert_one_error(result, "--scheduler", "not a Dask scheduler address", "host:port")
        assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 20
    tree.assert_unchanged()


@pytest.mark.parametrize("args, fragment, status", [
    (["--tile", "0"], "--tile", 2),
    (["--threads", "1"], "--threads", 1),
    (["--scheduler", "::bad::"], "--scheduler", 1),
    (["--outer", "4", "--score", "lrx"], "--outer/--guard", 1),    # a range: before any raster
])
def test_detect_many_option(tmp_path, scene, args, fragment, status):
    tree = Tree(tmp_path)
    base = [] if "--score" in args else ["--score", "rx"]
    result = run_cli("detect-many", scene, "--out-dir", tmp_path / "out", *base, *args)
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


# The library's one-call functions get whatever a script hands them: a switch given as text
# ("no" is truthy), a number as text, an empty score name. Each is refused in one line before
# anything is read or written, and an earlier output is left as it was.
@pytest.mark.parametrize("call, kwargs, fragment", [
    ("detect", {"score": "rx", "overwrite": "no"}, "'overwrite' must be True or False"),
    ("detect", {"score": "rx", "cog": "no"}, "'cog' must be True or False"),
    ("detect", {"score": "rx", "progress": 1}, "'progress' must be True or False"),
    ("detect", {"score": "rx", "resume": "yes"}, "'resume' must be True or False"),
    ("detect", {"score": ""}, "unknown score ''"),
    ("detect", {"score": "rx", "polygons": "t.gpkg", "threshold": "5", "overwrite": True},
     "'threshold' must be a finite number"),
    ("detect_many", {"score": "rx", "overwrite": "no"}, "'overwrite' must be True or False"),
    ("detect_many", {"score": "lrx", "outer": 4}, "'outer'/'guard'"),
    ("train", {"iterations": "5"}, "'iterations' must be a whole number"),
    ("train", {"seed": -1}, "'seed' must be a whole number from 0"),
    ("train", {"sqrt": "yes"}, "'sqrt' must be True or False"),
    ("train", {"bands": 2.5}, "'bands' must be a whole number or None"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_library_call_refuses_a_value_of_the_wrong_kind(tmp_path, scene, call, kwargs, fragment):
    import hsanomaly
    from hsanomaly.errors import HsanomalyError

    (tmp_path / "heat.tif").write_bytes(b"an earlier file of the user's")
    tree = Tree(tmp_path)
    where = {"detect": ("heat.tif",), "detect_many": ("out",), "train": ("model",)}[call]
    args = [scene] + [str(tmp_path / w) for w in where]
    if "polygons" in kwargs:
        kwargs = {**kwargs, "polygons": str(tmp_path / kwargs["polygons"])}
    with pytest.raises(HsanomalyError, match=fragment) as refused:
        getattr(hsanomaly, call)(*args, **kwargs)
    assert "\n" not in str(refused.value)
    tree.assert_unchanged()


def test_an_output_file_named_as_a_folder_is_refused(tmp_path, scene, earlier, truth):
    """``detect in.tif out.tif/`` blamed a '.partial' path nobody typed, and ``evaluate
    --json r.json/`` wrote the file r.json."""
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, f"{tmp_path}/out.tif/", "--score", "rx", "-q"),
                     "out.tif/: DST ends in '/'")
    assert_one_error(run_cli("evaluate", earlier, truth, "--json", f"{tmp_path}/r.json/"),
                     "r.json/: --json ends in '/'")
    tree.assert_unchanged()


@pytest.mark.parametrize("skipped, args, fragment", [
    ("GPKG", ["--polygons", "t.gpkg", "--far", "1e-3"], "--polygons: this GDAL has no GPKG"),
    ("COG", ["--cog"], "--cog: this GDAL has no COG driver")])
def test_an_output_gdal_has_no_driver_for_is_refused_before_the_work(scene, tmp_path,
                                                                      monkeypatch, skipped,
                                                                      args, fragment):
    """GDAL_SKIP (or a GDAL built without the driver) failed the run only as its GeoPackage
    or COG was written, after the whole raster was scored (the GDAL settings audit's F04)."""
    monkeypatch.setenv("GDAL_SKIP", skipped)
    before = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, tmp_path / "h.tif", "--score", "rx", *args),
                     fragment)
    before.assert_unchanged()
