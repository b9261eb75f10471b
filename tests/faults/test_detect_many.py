"""detect-many: every raster it can is scored, failures are one line each at the end, and a
rerun rescores exactly the rasters whose input or settings changed."""

import os

import pytest

from .conftest import Tree, assert_ok, make_scene, run_cli

RX = ["--score", "rx", "--tile", "16", "-q"]


def truncate(path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


@pytest.fixture
def batch(tmp_path):
    return [make_scene(tmp_path / f"{name}.tif", seed=i) for i, name in enumerate("abc")]


def test_one_truncated_raster_among_good_ones(tmp_path, batch):
    truncate(batch[1])
    tree = Tree(tmp_path)
    result = run_cli("detect-many", *batch, "--out-dir", tmp_path / "out", *RX)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "b.tif" in lines[0], lines
    assert "truncated or corrupt" in lines[0]
    assert "2 scored, 0 skipped, 1 failed" in result.stdout
    tree.assert_unchanged(new=["out", "out/a_rx.tif", "out/c_rx.tif"])


def test_rerun_rescores_what_changed(tmp_path, batch):
    out = tmp_path / "out"
    assert "3 scored" in assert_ok(run_cli("detect-many", *batch, "--out-dir", out, *RX)).stdout
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, *RX))
    assert "0 scored, 3 skipped" in result.stdout                      # nothing changed
    make_scene(batch[0], seed=9)                                        # same path, same shape
    os.utime(batch[2], (0, 0))                                          # only touched
    result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, *RX))
    assert "1 scored, 2 skipped" in result.stdout
    # a line per raster names its heatmap (it printed the counts alone)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{out / 'a_rx.tif'}: rx heatmap, ") and lines[1:] == [
        f"{out / 'b_rx.tif'}: skipped, finished before for {batch[1]}",
        f"{out / 'c_rx.tif'}: skipped, finished before for {batch[2]}",
        f"{out}: 1 scored, 2 skipped, 0 failed"]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after["a_rx.tif"] != before["a_rx.tif"]
    assert after["b_rx.tif"] == before["b_rx.tif"] and after["c_rx.tif"] == before["c_rx.tif"]
    result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, "--score", "rx",
                               "--tile", "32", "-q"))
    assert "3 scored, 0 skipped" in result.stdout                      # a setting changed


def test_a_rerun_over_rasters_without_georeferencing_is_quiet(tmp_path):
    """The skip check read each finished heatmap with a bare rasterio.open: two lines of
    NotGeoreferencedWarning per raster, even with -q."""
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(bands=12, rows=40, cols=50)
    plain = write_raster(tmp_path / "plain.tif", cube, crs=None, transform=None)
    out = tmp_path / "out"
    assert_ok(run_cli("detect-many", plain, "--out-dir", out, *RX))
    result = assert_ok(run_cli("detect-many", plain, "--out-dir", out, *RX))
    assert "0 scored, 1 skipped" in result.stdout and result.stderr == "", result.stderr


def test_a_finished_heatmap_with_a_tile_store_left_beside_it_is_skipped(tmp_path, batch):
    """A run killed between its commit's renames is completed by the next write, but its tile
    store stays: a rerun saw the store and scored the finished raster again. Now the rerun
    skips the raster and removes the store; another settings' store, or one in use, stays."""
    from hsanomaly.io.lock import lock_folder

    from .conftest import interrupted

    out = tmp_path / "out"
    assert_ok(run_cli("detect-many", *batch, "--out-dir", out, *RX))
    before = (out / "a_rx.tif").read_bytes()
    assert interrupted(batch[0], out / "a_rx.tif").exists()     # same input and settings
    in_use = interrupted(batch[1], out / "b_rx.tif")
    held = lock_folder(in_use)                                  # another run writing it now
    other = interrupted(batch[2], out / "c_rx.tif", tile=32)    # another run's settings
    try:
        result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, *RX))
    finally:
        os.close(held)
    assert "0 scored, 3 skipped" in result.stdout
    assert (out / "a_rx.tif").read_bytes() == before
    assert not (out / "a_rx.tif.partial").exists()
    assert in_use.is_dir() and other.is_dir()


def test_a_pattern_is_expanded_where_no_shell_did(tmp_path, batch):
    """Windows' cmd and PowerShell, and a quoted pattern, hand the pattern itself over: it was
    refused as "file not found"."""
    out = tmp_path / "out"
    result = assert_ok(run_cli("detect-many", str(tmp_path / "*.tif"), "--out-dir", out, *RX))
    assert "3 scored" in result.stdout
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_rx.tif", "b_rx.tif", "c_rx.tif"]
    result = run_cli("detect-many", str(tmp_path / "x*.tif"), "--out-dir", out, *RX)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'x*.tif'}: no file matches this pattern"
    # a pattern as a Path, as pathlib makes it, is one too: it was "file not found"
    import hsanomaly

    items = hsanomaly.detect_many(tmp_path / "[ab].tif", tmp_path / "out2", score="rx", tile=16)
    assert [(os.path.basename(i.src), i.status) for i in items] == [("a.tif", "scored"),
                                                                     ("b.tif", "scored")]


def test_a_pattern_leaves_out_the_files_gdal_reads_as_part_of_a_match(tmp_path):
    """"scenes/*" over ENVI scenes matched their headers too, and the batch was refused (a.img's
    output "would overwrite that of a.hdr"); a GeoTIFF's external .msk was scored as a scene."""
    import numpy as np
    import rasterio

    folder = tmp_path / "scenes"
    folder.mkdir()
    for name, seed in (("a", 0), ("b", 1)):
        cube = np.asarray(rasterio.open(make_scene(tmp_path / f"{name}.tif", seed=seed)).read())
        with rasterio.open(folder / name, "w", driver="ENVI", dtype="float32", count=len(cube),
                           height=cube.shape[1], width=cube.shape[2]) as ds:
            ds.write(cube)                       # a data file without a suffix, as AVIRIS's
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False), rasterio.open(
            make_scene(folder / "c.tif", seed=2), "r+") as ds:
        hole = np.full((ds.height, ds.width), 255, np.uint8)
        hole[:4, :4] = 0
        ds.write_mask(hole)
    assert sorted(p.name for p in folder.iterdir()) == ["a", "a.hdr", "b", "b.hdr", "c.tif",
                                                        "c.tif.msk"]
    out = tmp_path / "out"
    result = assert_ok(run_cli("detect-many", str(folder / "*"), "--out-dir", out, *RX))
    assert "3 scored, 0 skipped, 0 failed" in result.stdout
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_rx.tif", "b_rx.tif", "c_rx.tif"]
    # a VRT's sources are rasters of their own, scored beside it
    from .test_same_file import _vrt

    _vrt(folder / "v.vrt", folder / "c.tif")
    result = assert_ok(run_cli("detect-many", str(folder / "*.[tv]*"), "--out-dir", out, *RX))
    assert "1 scored, 1 skipped, 0 failed" in result.stdout     # v.vrt, and c.tif as before


def test_two_variables_of_one_file_have_two_heatmaps(tmp_path):
    """NETCDF:"two.nc":radiance and NETCDF:"two.nc":reflectance were both two_rx.tif, and the
    batch was refused as overwriting one with the other."""
    from hsanomaly.batch import batch_output

    (tmp_path / "two.nc").touch()
    (tmp_path / "f.h5").touch()
    out = tmp_path / "out"
    assert [batch_output(f'NETCDF:"{tmp_path / "two.nc"}":{variable}', out, "rx").name
            for variable in ("radiance", "reflectance")] == ["two_radiance_rx.tif",
                                                           "two_reflectance_rx.tif"]
    assert batch_output(f'HDF5:"{tmp_path / "f.h5"}"://cube/reflectance', out, "rx").name == \
        "f_cube_reflectance_rx.tif"
    assert batch_output(f"GTIFF_DIR:2:{tmp_path / 'f.tif'}", out, "rx").name == "f_2_rx.tif"
    assert batch_output('NETCDF:"/vsicurl/https://host/two.nc":radiance', out, "rx").name == \
        "two_radiance_rx.tif"                                   # a remote file's too
    assert batch_output(tmp_path / "scene.tif", out, "rx") == out / "scene_rx.tif"


def test_train_takes_patterns_through_the_front_door(tmp_path):
    """The train command called the training module past hsanomaly.train, the front door
    that reads its inputs (patterns included) as detect-many's are read."""
    result = run_cli("train", str(tmp_path / "x*.tif"), "--out", tmp_path / "m", "-q")
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'x*.tif'}: no file matches this pattern"
    assert not (tmp_path / "m").exists()


def test_a_pattern_that_matches_the_batchs_own_heatmaps_reruns(tmp_path, batch):
    """Outputs beside the inputs, the same pattern rerun: the pattern matched the heatmaps of
    the first run, which the batch refused as inputs it would overwrite, and every rerun
    failed as a whole."""
    pattern = str(tmp_path / "*.tif")
    assert "3 scored" in assert_ok(run_cli("detect-many", pattern, "--out-dir", tmp_path,
                                           *RX)).stdout
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*_rx.tif")}
    result = assert_ok(run_cli("detect-many", pattern, "--out-dir", tmp_path, *RX))
    assert "0 scored, 3 skipped, 0 failed" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Warning: {tmp_path / 'a_rx.tif'}, {tmp_path / 'b_rx.tif'}, "
                     f"{tmp_path / 'c_rx.tif'}: left out of the inputs, being hsanomaly's "
                     "own outputs (heatmaps, quick models, tile stores, quick looks, target "
                     "polygons)"]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*_rx.tif")} == before
    other = assert_ok(run_cli("detect-many", pattern, "--out-dir", tmp_path, "--score", "gmm",
                              "--tile", "16", "-q"))         # another score: the scenes alone
    assert "3 scored" in other.stdout and not list(tmp_path.glob("*_rx_gmm.tif"))


def test_a_pattern_leaves_out_the_quick_models_and_tile_stores_beside_the_inputs(tmp_path,
                                                                                 batch):
    """``detect-many "dir/*" --out-dir dir`` with a model score: the rerun took the batch's own
    quick models for inputs (and refused the whole batch as overwriting one), and another
    run's tile store (``x.tif.partial``) failed as a raster GDAL cannot read."""
    import json

    quick = tmp_path / "a_dualcontext.model"        # as the first run leaves it
    quick.mkdir()
    (quick / "model.json").write_text(json.dumps({
        "format": "hsanomaly-model", "files": {},
        "training": {"quick_model_of": "a_dualcontext.tif"}}))
    store = tmp_path / "other.tif.partial"            # another run's, still scoring
    store.mkdir()
    (store / "manifest.json").write_text("{}")
    result = assert_ok(run_cli("detect-many", tmp_path / "*", "--out-dir", tmp_path / "out", *RX))
    assert "3 scored, 0 skipped, 0 failed" in result.stdout
    assert f"{quick}, {store}: left out of the inputs, being hsanomaly's own outputs" in \
        result.stderr


def _targets(gpkg):
    import geopandas

    return geopandas.read_file(gpkg, layer="targets")


def test_polygons_and_quick_looks_of_every_raster(tmp_path, batch):
    """--polygons and --png draw each raster's targets and quick look beside its heatmap, the
    targets those of its own heatmap at the rate given; a rerun scores nothing and draws them
    again at another threshold; a pattern over the outputs leaves them out as our own."""
    import hsanomaly
    from hsanomaly.io.ownership import is_own_png

    out = tmp_path / "out"
    result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, "--polygons", "--far",
                               "0.01", "--png", *RX))
    lines = result.stdout.splitlines()
    assert lines[:3] == [lines[0], f"{out / 'a_rx.png'}: quick look",
                         f"{out / 'a_rx.gpkg'}: {len(_targets(out / 'a_rx.gpkg'))} target "
                         f"polygon{'s' if len(_targets(out / 'a_rx.gpkg')) != 1 else ''}"]
    assert lines[-1] == f"{out}: 3 scored, 0 skipped, 0 failed"
    for name in "abc":
        heatmap, gpkg = out / f"{name}_rx.tif", out / f"{name}_rx.gpkg"
        assert is_own_png(out / f"{name}_rx.png")
        drawn, expected = _targets(gpkg), hsanomaly.find_targets(heatmap, far=0.01)
        assert len(drawn) > 0
        assert list(drawn["max_score"]) == list(expected["max_score"])
        assert drawn.geometry.geom_equals(expected.geometry).all()
    heatmaps = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.tif")}
    result = assert_ok(run_cli("detect-many", *batch, "--out-dir", out, "--polygons",
                               "--threshold", "5", *RX))
    assert "0 scored, 3 skipped, 0 failed" in result.stdout
    assert f"{out / 'b_rx.tif'}: skipped, finished before for {batch[1]}" in result.stdout
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.tif")} \
        == heatmaps                                                      # nothing scored
    for name in "abc":
        drawn = _targets(out / f"{name}_rx.gpkg")
        assert set(drawn["threshold"]) <= {5.0} and (drawn["max_score"] > 5).all()
        assert len(drawn) == len(hsanomaly.find_targets(out / f"{name}_rx.tif", threshold=5))
    # SQLite's companions of a GeoPackage QGIS holds open, and targets a reviewer added a
    # layer to, were taken as rasters to score (review 1's F03)
    for side in ("-wal", "-shm"):
        (out / f"a_rx.gpkg{side}").write_bytes(b"\0" * 64)
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(out / "b_rx.gpkg")) as db, db:
        db.execute("CREATE TABLE notes (note TEXT)")
    result = assert_ok(run_cli("detect-many", str(out / "*"), "--out-dir", out, *RX))
    assert "0 scored, 0 skipped, 0 failed" in result.stdout       # ours, every one of them


def test_drawings_are_checked_before_any_raster_is_scored(tmp_path, batch):
    """A threshold choice missing or doubled, a threshold without polygons and a path where a
    switch is: refused in one line before the first heatmap is written. A file of someone
    else's where a raster's polygons go fails that raster alone, before it is scored."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyError

    out = tmp_path / "out"
    for options, message in [
            (dict(polygons=True), "'polygons': polygons need 'threshold' or 'far'"),
            (dict(polygons=True, threshold=1, far=0.01), "'polygons': give 'threshold' or "
             "'far', not both"),
            (dict(far=0.01), "'threshold' or 'far': they set the 'polygons' threshold, and "
             "no 'polygons' was given"),
            (dict(png="a.png"), "'png' must be True or False, got 'a.png'")]:
        with pytest.raises(HsanomalyError) as err:
            hsanomaly.detect_many(batch, out, score="rx", **options)
        assert str(err.value) == message
        assert not out.exists()
    out.mkdir()
    (out / "b_rx.gpkg").write_text("someone's notes")
    result = run_cli("detect-many", *batch, "--out-dir", out, "--polygons", "--far", "0.01", *RX)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {out / 'b_rx.gpkg'}: ")
    assert "refusing to replace it" in result.stderr and len(result.stderr.splitlines()) == 1
    assert "the target polygons of" in result.stderr and "--overwrite" not in result.stderr
    assert "move it away (or rename it) to have it drawn again" in result.stderr
    assert "2 scored, 0 skipped, 1 failed" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_rx.gpkg", "a_rx.tif", "b_rx.gpkg",
                                                     "c_rx.gpkg", "c_rx.tif"]
    assert (out / "b_rx.gpkg").read_text() == "someone's notes"


def test_a_rerun_for_new_rasters_keeps_the_reviewed_targets_of_finished_ones(tmp_path, batch):
    """A rerun of the same ``--polygons`` command to pick up a new scene drew every finished
    raster's targets again: a reviewer's edits (a false alarm deleted, a "verified" column)
    were lost unsaid (review 1's F01). They are kept at the same rate; at another, an edited
    layer fails its raster alone and is kept, the others are drawn anew."""
    import contextlib
    import sqlite3

    out = tmp_path / "out"
    first = [*batch[:2], "--out-dir", out, "--polygons", "--far", "0.01", *RX]
    assert_ok(run_cli("detect-many", *first))
    reviewed = out / "a_rx.gpkg"
    drawn = len(_targets(reviewed))
    with contextlib.closing(sqlite3.connect(reviewed)) as db, db:     # as QGIS edits a layer
        db.execute("DELETE FROM targets WHERE id = (SELECT MAX(id) FROM targets)")
        db.execute("ALTER TABLE targets ADD COLUMN verified INTEGER")
    assert len(_targets(reviewed)) == drawn - 1
    before = reviewed.read_bytes()
    result = assert_ok(run_cli("detect-many", batch[2], *first))         # a new scene
    assert "1 scored, 2 skipped, 0 failed" in result.stdout
    assert f"{reviewed}: target polygons kept, drawn before above this threshold" \
        in result.stdout
    assert reviewed.read_bytes() == before
    other = [*batch, "--out-dir", out, "--polygons", "--far", "0.001", *RX]
    result = run_cli("detect-many", *other)                              # another rate
    assert result.returncode == 1 and "0 scored, 2 skipped, 1 failed" in result.stdout
    assert result.stderr.startswith(f"Error: {reviewed}: ") and "verified" in result.stderr
    assert result.stderr.rstrip().endswith("move it away (or rename it) to have it drawn again")
    assert reviewed.read_bytes() == before
    assert set(_targets(out / "b_rx.gpkg")["threshold"]) == {
        float(hsanomaly_threshold(out / "b_rx.tif", 0.001))}


def hsanomaly_threshold(heatmap, far):
    from hsanomaly.thresholds import threshold_from_far

    return threshold_from_far(str(heatmap), far)


def test_drawings_of_an_earlier_heatmap_are_drawn_anew_and_a_copy_keeps_its_threshold(tmp_path,
                                                                                       batch):
    """A raster rescored by a run that drew nothing kept, on the next run asking for them,
    the targets and quick look of its former heatmap, said "kept" (review 3's F01); a layer
    saved back without its description (QGIS's Save Features As) was drawn anew over a
    reviewer's deletions, its threshold unknown (review 3's F02): its column says it."""
    import contextlib
    import sqlite3

    out = tmp_path / "out"
    drawing = [*batch[:2], "--out-dir", out, "--polygons", "--threshold", "5", "--png", *RX]
    assert_ok(run_cli("detect-many", *drawing))
    make_scene(batch[0], seed=7)                           # reprocessed: rescored, undrawn
    assert "1 scored, 1 skipped" in assert_ok(run_cli("detect-many", *batch[:2], "--out-dir",
                                                      out, *RX)).stdout
    result = assert_ok(run_cli("detect-many", *drawing))
    assert f"{out / 'a_rx.gpkg'}: target polygons kept" not in result.stdout
    assert f"{out / 'b_rx.gpkg'}: target polygons kept" in result.stdout
    assert os.stat(out / "a_rx.png").st_mtime_ns >= os.stat(out / "a_rx.tif").st_mtime_ns
    import hsanomaly

    assert len(_targets(out / "a_rx.gpkg")) == len(hsanomaly.find_targets(out / "a_rx.tif",
                                                                          threshold=5))
    import pyogrio

    copy = out / "b_rx.gpkg"                      # edited, and saved back without description
    pyogrio.write_dataframe(_targets(copy).assign(mean_score=0.0), copy, layer="targets")
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT description FROM gpkg_contents WHERE table_name = "
                          "'targets'").fetchone()[0] == ""
    before = copy.read_bytes()
    result = assert_ok(run_cli("detect-many", *drawing))
    assert f"{copy}: target polygons kept" in result.stdout and copy.read_bytes() == before
