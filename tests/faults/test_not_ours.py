"""Data loss: files that name hsanomaly, or sit beside its outputs, but are not a result a
detect run may replace. Each is refused without --overwrite, and left as it was."""

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
                             tmp_path / "q.png", "-q"), "q.png.aux.xml: --png's world file")
    (tmp_path / "q.png.aux.xml").unlink()
    assert_ok(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                      tmp_path / "q.png", "-q"))
    again = Tree(tmp_path)                       # a rerun replaces its own picture and sidecars
    assert_ok(run_cli("detect", scene, tmp_path / "q.tif", "--score", "rx", "--png",
                      tmp_path / "q.png", "-q"))
    assert {p for p in again.snapshot()} == {p for p in again.before}
