"""Disk full and file-size limits (RLIMIT_FSIZE in the child): one line, nothing replaced,
finished tiles kept for --resume, and a resumed run byte-identical to an uninterrupted one."""

import numpy as np
import pytest
import rasterio
import scipy.io

from .conftest import Tree, assert_ok, assert_one_error, make_scene, reference, run_cli

DETECT = ["--score", "rx", "--tile", "16", "-q"]   # 12 tiles of 1-2 KiB, a 9.5 KiB heatmap


def test_limit_while_writing_tiles(tmp_path, scene, earlier):
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, earlier, *DETECT, fsize=1024)
    assert_one_error(result, "cannot write a tile", "file too large")
    tree.assert_unchanged()          # no tile finished: no store left


def test_limit_while_assembling_then_resume(tmp_path, scene, earlier):
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, earlier, *DETECT, fsize=4096)
    # GDAL's own error class on reopening the file cut short: said as a read-back failure,
    # with the resume it allows (it was "cannot write (TIFFReadDirectory...)")
    assert_one_error(result, "heat.tif", "cannot be read back", "--resume")
    after = tree.assert_unchanged(new=["heat.tif.partial/"])
    assert sum(name.startswith("heat.tif.partial/tile_") for name in after) == 12
    resumed = assert_ok(run_cli("detect", scene, earlier, *DETECT, "--resume"))
    assert "(12 resumed)" in resumed.stdout
    assert earlier.read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not (tmp_path / "heat.tif.partial").exists()


def test_limit_while_writing_polygons_keeps_every_output(tmp_path, scene, earlier):
    """The GeoPackage (~100 KiB) fails after the heatmap was written: neither is replaced."""
    gpkg = tmp_path / "targets.gpkg"
    gpkg.write_bytes(b"earlier polygons")
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, earlier, *DETECT, "--polygons", gpkg, "--threshold", "50",
                     "--overwrite", fsize=32768)       # (without it, refused before any work)
    assert_one_error(result, "targets.gpkg", "a file-size limit of 32 KiB (ulimit -f)")
    tree.assert_unchanged(new=["heat.tif.partial/"])       # (SQLite only says "no such table")


def test_convert_under_a_limit(tmp_path):
    scipy.io.savemat(tmp_path / "s.mat", {"data": np.random.default_rng(0).random((60, 60, 8))})
    (tmp_path / "s.tif").write_bytes(b"an earlier conversion")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", tmp_path / "s.mat", tmp_path / "s.tif", fsize=8192),
                     "s.tif")
    tree.assert_unchanged()


def test_evaluate_json_under_a_limit(tmp_path, earlier, truth):
    (tmp_path / "report.json").write_text('{"auc": 0.9, "log_auc": 0.5, "lg_far": -2, "earlier": true}')
    tree = Tree(tmp_path)
    result = run_cli("evaluate", earlier, truth, "--json", tmp_path / "report.json", fsize=200)
    assert_one_error(result, "report.json", "file too large")
    tree.assert_unchanged()


def test_tile_store_larger_than_the_free_disk(tmp_path):
    """A raster that declares 10^12 pixels (a sparse GeoTIFF of a few KiB)."""
    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=10**6, height=10**6, count=2,
                       dtype="float32", tiled=True, blockxsize=16384, blockysize=16384,
                       sparse_ok=True, BIGTIFF="YES", nodata=-1):
        pass
    tree = Tree(tmp_path)
    result = run_cli("detect", huge, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "need about", "TiB of disk", "free")
    tree.assert_unchanged()


def test_the_space_asked_for_counts_overviews_a_cogs_copy_and_the_inodes(tmp_path, monkeypatch):
    """The check asked for twice the raw outputs, where a run holds its tile store, the heatmap
    and its overviews, and with --cog a second copy: such runs failed after the scoring. Tile
    files past the file system's free inodes filled it in the middle of the run."""
    import collections
    import os
    import shutil
    import types

    import hsanomaly
    from hsanomaly.errors import HsanomalyError

    scene = make_scene(tmp_path / "scene.tif")            # 12 x 40 x 50: 8,000 raw bytes out
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 0, 20_000))
    hsanomaly.detect(scene, tmp_path / "plain.tif", score="rx")      # 8,000 + 10,666 bytes;
    # with --cog, 8,000 + 2 x 10,666: 28.6 KiB
    with pytest.raises(HsanomalyError, match="need about 28.6 KiB of disk, only 19.5 KiB"):
        hsanomaly.detect(scene, tmp_path / "cog.tif", score="rx", cog=True)
    monkeypatch.setattr(os, "statvfs", lambda folder: types.SimpleNamespace(f_files=10**6,
                                                                            f_favail=3))
    with pytest.raises(HsanomalyError, match=r"the tile store needs 12 files, and its file "
                                             r"system has room for only 3 more"):
        hsanomaly.detect(scene, tmp_path / "tiles.tif", score="rx", tile=16)
    assert not (tmp_path / "cog.tif").exists() and not (tmp_path / "tiles.tif").exists()


def test_a_limit_that_cuts_the_heatmap_short_is_one_line(tmp_path):
    """GDAL's block writes do not fail past the limit; the cut file was first seen when
    re-opened for overviews, where rasterio raised TypeError: a 57-line traceback."""
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(rows=360, cols=360, bands=8)
    scene = write_raster(tmp_path / "scene.tif", cube)
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "rx", "--tile", "64",
                     "-q", fsize=100 * 1024)
    assert_one_error(result, "heat.tif", "cannot be read back", "--resume")
    tree.assert_unchanged(new=["heat.tif.partial/"])
