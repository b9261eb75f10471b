"""Data loss: files that name hsanomaly, or sit beside its outputs, but are not a result a
detect run may replace. Each is refused without --overwrite, and left as it was."""

import pytest

from synthetic import synthetic_cube, write_mat

from .conftest import Tree, assert_ok, assert_one_error, run_cli


def test_a_converted_scene_is_an_input_not_an_earlier_heatmap(tmp_path, scene):
    """`convert` tags its GeoTIFFs with hsanomaly's name; detect took that as its own earlier
    output and replaced a converted 12-band scene by a 1-band heatmap."""
    cube, truth = synthetic_cube()
    assert_ok(run_cli("convert", write_mat(tmp_path / "scene.mat", cube, truth),
                      tmp_path / "cube.tif"))
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, tmp_path / "cube.tif", "--score", "rx", "-q"),
                     "cube.tif: DST exists and is not a heatmap written by hsanomaly",
                     "--overwrite")
    tree.assert_unchanged()
    assert_ok(run_cli("convert", tmp_path / "scene.mat", tmp_path / "cube.tif"))   # convert's own


def test_a_world_file_beside_a_new_quick_look_is_not_ours(tmp_path, scene):
    (tmp_path / "q.pgw").write_text("my world file\n")
    (tmp_path / "q.png.aux.xml").write_text("<mine/>\n")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                             tmp_path / "q.png", "-q"), "q.pgw: --png's world file exists")
    tree.assert_unchanged()
    (tmp_path / "q.pgw").unlink()
    assert_one_error(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                             tmp_path / "q.png", "-q"), "q.png.aux.xml: --png's CRS file")
    (tmp_path / "q.png.aux.xml").unlink()
    assert_ok(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                      tmp_path / "q.png", "-q"))
    again = Tree(tmp_path)                       # a rerun replaces its own picture and sidecars
    assert_ok(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                      tmp_path / "q.png", "-q"))
    assert {p for p in again.snapshot()} == {p for p in again.before}


def test_an_input_named_as_a_side_file_of_the_output_is_never_removed(tmp_path, scene):
    """GDAL side files of the heatmap (.ovr, .msk, .aux.xml) are removed with an earlier
    heatmap; an input named ``heat.tif.ovr`` was deleted by ``detect heat.tif.ovr heat.tif``,
    and a user's ``fresh.tif.aux.xml`` by a first ``detect ... fresh.tif``."""
    import shutil

    for suffix in (".ovr", ".msk"):
        src = shutil.copy(scene, tmp_path / f"heat.tif{suffix}")
        tree = Tree(tmp_path)
        assert_one_error(run_cli("detect", src, tmp_path / "heat.tif", "--score", "rx", "-q"),
                         f"heat.tif{suffix}: DST's GDAL side file is the same file as the input")
        tree.assert_unchanged()
        (tmp_path / f"heat.tif{suffix}").unlink()
    (tmp_path / "fresh.tif.aux.xml").write_text("<PAMDataset/>\n")
    tree = Tree(tmp_path)
    for extra in ([], ["--resume"]):
        assert_one_error(run_cli("detect", scene, tmp_path / "fresh.tif", "--score", "rx", "-q",
                                 *extra), "fresh.tif.aux.xml: a file GDAL would read as part "
                                          "of DST", "--overwrite")
        tree.assert_unchanged()
    assert_ok(run_cli("detect", scene, tmp_path / "fresh.tif", "--score", "rx", "-q",
                      "--overwrite"))
    assert not (tmp_path / "fresh.tif.aux.xml").exists()
    (tmp_path / "fresh.tif.aux.xml").write_text("<PAMDataset/>\n")    # an earlier heatmap's
    assert_ok(run_cli("detect", scene, tmp_path / "fresh.tif", "--score", "rx", "-q"))
    assert not (tmp_path / "fresh.tif.aux.xml").exists()
    cube, truth = synthetic_cube()
    mat = write_mat(tmp_path / "scene.mat", cube, truth)
    (tmp_path / "cube.tif.msk").write_text("mine\n")
    assert_one_error(run_cli("convert", mat, tmp_path / "cube.tif"),
                     "cube.tif.msk: a file GDAL would read as part of DST")


def test_a_users_geopackage_with_a_targets_layer_is_not_ours(tmp_path, scene):
    """Only the table names told a targets GeoPackage: a user's own layer named ``targets``
    (hand-digitised truth, say) was replaced by ``--polygons``; so was a table added to ours."""
    import sqlite3

    import geopandas as gpd
    from shapely.geometry import Point

    mine = tmp_path / "truth.gpkg"
    gpd.GeoDataFrame({"name": ["a plane"]}, geometry=[Point(3, 4).buffer(1)]).to_file(
        mine, layer="targets")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, tmp_path / "heat.tif", "--score", "rx", "-q",
                             "--polygons", mine, "--threshold", "5"),
                     "truth.gpkg: --polygons exists and is not a targets GeoPackage")
    tree.assert_unchanged()
    ours = tmp_path / "ours.gpkg"
    args = ["detect", scene, tmp_path / "heat.tif", "--score", "rx", "-q", "--polygons", ours,
            "--threshold", "5"]
    assert_ok(run_cli(*args))
    assert_ok(run_cli(*args))                    # a rerun replaces its own
    with sqlite3.connect(ours) as db:
        db.execute('CREATE TABLE "my ""notes""" (text TEXT)')   # a quote: said, not disowned
    assert_one_error(run_cli(*args), "ours.gpkg: --polygons holds, beside hsanomaly's targets, "
                                     'my "notes", which writing the targets would remove')


def test_a_column_a_reviewer_added_to_our_targets_is_not_replaced(tmp_path, scene):
    """A "verified" column added to the targets layer (as QGIS adds a field) was dropped by a
    rerun: only tables added beside the layer were said (review 1's F01). The QGIS provider,
    which replaces its outputs without asking, refuses it too."""
    import sqlite3

    from hsanomaly.errors import HsanomalyError
    from hsanomaly.polygons import check_no_other_layers

    ours = tmp_path / "ours.gpkg"
    args = ["detect", scene, tmp_path / "heat.tif", "--score", "rx", "-q", "--polygons", ours,
            "--threshold", "5"]
    assert_ok(run_cli(*args))
    check_no_other_layers(ours)
    with sqlite3.connect(ours) as db:
        db.execute("ALTER TABLE targets ADD COLUMN verified INTEGER")
    before = ours.read_bytes()
    assert_one_error(run_cli(*args), "ours.gpkg: --polygons holds, beside hsanomaly's targets, "
                                     "the column(s) verified of its targets, which writing the "
                                     "targets would remove")
    with pytest.raises(HsanomalyError, match="the column.s. verified of its targets"):
        check_no_other_layers(ours)
    assert ours.read_bytes() == before
    assert_ok(run_cli(*args, "--overwrite"))


def test_a_program_whose_name_begins_with_hsanomaly_is_not_hsanomaly():
    from hsanomaly.io.ownership import _ours

    assert _ours("hsanomaly 0.2.0") and _ours("hsanomaly")
    assert not _ours("hsanomaly-viewer 3.1") and not _ours("hsanomalyx") and not _ours(None)


def test_a_heatmap_cut_by_gdal_keeps_our_tags_but_is_not_ours(tmp_path, scene, earlier):
    """gdal_translate, gdalwarp and QGIS's Save As copy a heatmap's HSANOMALY_ tags: a clip of
    an earlier heatmap was replaced by the next detect named after it. The heatmap records its
    own grid; a copy on another grid is someone's file, a copy on the same grid is ours."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    rasterio.shutil.copy(earlier, tmp_path / "copy.tif", driver="GTiff")
    with rasterio.open(earlier) as ds:
        window = Window(2, 3, 20, 15)
        profile = {**ds.profile, "width": 20, "height": 15,
                   "transform": ds.window_transform(window)}
        data, tags = ds.read(window=window), ds.tags()
    with rasterio.open(tmp_path / "clip.tif", "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", scene, tmp_path / "clip.tif", "--score", "rx", "-q"),
                     "clip.tif: DST exists and is not a heatmap written by hsanomaly")
    tree.assert_unchanged()
    assert_ok(run_cli("detect", scene, tmp_path / "copy.tif", "--score", "rx", "-q"))


def test_convert_replaces_only_a_scene_of_the_same_mat(tmp_path, scene):
    """convert took every GeoTIFF hsanomaly wrote for its own: a slip in a name replaced a
    heatmap by a cube, or one .mat's converted scene by another's."""
    cube, truth = synthetic_cube()
    first = write_mat(tmp_path / "first.mat", cube, truth)
    second = write_mat(tmp_path / "second.mat", cube[:, ::-1].copy(), truth[::-1].copy())
    assert_ok(run_cli("detect", scene, tmp_path / "heat.tif", "--score", "rx", "-q"))
    assert_ok(run_cli("convert", first, tmp_path / "cube.tif", "--truth", tmp_path / "truth.tif"))
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", first, tmp_path / "heat.tif"),
                     "heat.tif: DST holds a result of detect, not a converted scene", "--overwrite")
    assert_one_error(run_cli("convert", second, tmp_path / "cube.tif"),
                     "cube.tif: DST holds the scene converted from another input (first.mat), "
                     "which this conversion of second.mat would replace", "--overwrite")
    assert_one_error(run_cli("convert", second, tmp_path / "other.tif", "--truth",
                             tmp_path / "truth.tif"), "truth.tif: --truth holds the scene "
                     "converted from another input (first.mat)")
    tree.assert_unchanged()
    assert_ok(run_cli("convert", first, tmp_path / "cube.tif", "--truth", tmp_path / "truth.tif"))
    assert_ok(run_cli("convert", second, tmp_path / "cube.tif", "--overwrite"))
