"""Planted symbolic links at every name the write path could use: never followed, never
replaced by a link; a link at an output's name, or where hsanomaly must create a directory of
its own, is refused."""

import os

import pytest

from .conftest import Tree, assert_ok, assert_one_error, interrupted, reference, run_cli


@pytest.fixture
def victim(tmp_path):
    """Somebody else's file, which a followed link would overwrite."""
    path = tmp_path / "victim.txt"
    path.write_text("not yours")
    return path


# Names a writer might predict: hsanomaly's old temporary names and the usual conventions.
PREDICTABLE = [".heat.tif.tmp.tif", ".heat.tmp.tif", "heat.tif.tmp", ".heat.tif.tmp", "heat.tmp.tif",
               ".heat.png.tmp.png", ".heat.tmp.png", "heat.png.tmp", ".report.tmp.json",
               ".report.json.tmp", "report.json.tmp"]


def test_links_at_predictable_temporary_names(tmp_path, scene, truth, victim):
    for name in PREDICTABLE:
        os.symlink(victim, tmp_path / name)
    tree = Tree(tmp_path)
    assert_ok(run_cli("detect", scene, tmp_path / "heat.tif", "--png", tmp_path / "heat.png",
                      "--score", "rx", "-q"))
    assert_ok(run_cli("evaluate", tmp_path / "heat.tif", truth, "--json", tmp_path / "report.json"))
    tree.assert_unchanged(new=["heat.tif", "heat.png", "heat.pgw", "heat.png.aux.xml", "report.json"])
    for name in ("heat.tif", "heat.png", "report.json"):
        assert not (tmp_path / name).is_symlink()


@pytest.mark.parametrize("name", ["heat.tif", "heat.png"])
def test_link_at_the_destination_is_refused_neither_followed_nor_replaced(tmp_path, scene, victim,
                                                                          name):
    """The link was replaced by the new file: the link gone, what it led to left as it was
    (with /dev/stdout leading to a redirected stdout's file, /dev/stdout replaced for every
    process)."""
    os.symlink(victim, tmp_path / name)
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--png", tmp_path / "heat.png",
                     "--score", "rx", "-q")
    assert_one_error(result, f"{tmp_path / name}: ", f"is a symbolic link (to {victim})")
    tree.assert_unchanged()
    assert (tmp_path / name).is_symlink()


def test_a_link_refusal_names_the_output_it_stands_for(tmp_path, scene, truth, victim):
    os.symlink(victim, tmp_path / "report.json")
    result = run_cli("evaluate", scene, truth, "--json", tmp_path / "report.json")
    assert_one_error(result, f"{tmp_path / 'report.json'}: --json is a symbolic link (to {victim})")


def test_a_link_made_at_the_destination_during_the_run_is_not_replaced(tmp_path, victim):
    from hsanomaly.errors import HsanomalyError
    from hsanomaly.io import atomic

    dst = tmp_path / "report.json"
    with pytest.raises(HsanomalyError, match="is a symbolic link"):
        with atomic.staged() as stage:
            stage.path(dst).write_text("new")
            os.symlink(victim, dst)
    assert dst.is_symlink() and victim.read_text() == "not yours"


def test_link_at_the_tile_store_is_refused(tmp_path, scene):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "heat.tif.partial")
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "heat.tif.partial", "tile store")
    tree.assert_unchanged()


def test_link_at_the_quick_model_directory_is_refused(tmp_path, scene):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "heat.model")
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "critic", "-q")
    assert_one_error(result, "heat.model", "symbolic link")
    tree.assert_unchanged()


def test_links_inside_an_interrupted_tile_store(tmp_path, scene, victim):
    """A tile replaced by a link and a link at a temporary tile name: the tile is scored
    again, the links are removed, the victim is untouched."""
    dst = tmp_path / "heat.tif"
    store = interrupted(scene, dst)
    (store / "tile_0000003.npz").unlink()
    os.symlink(victim, store / "tile_0000003.npz")
    os.symlink(victim, store / ".tile_0000004.tmp")
    tree = Tree(tmp_path)
    result = assert_ok(run_cli("detect", scene, dst, "--score", "rx", "--tile", "16", "-q",
                               "--resume"))
    assert "(11 resumed)" in result.stdout
    assert tree.snapshot()["victim.txt"] == tree.before["victim.txt"]
    assert dst.read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not store.exists()


def test_link_planted_in_the_training_checkpoint_directory_is_refused(tmp_path, scene, victim):
    (tmp_path / "model.checkpoint").mkdir()
    os.symlink(victim, tmp_path / "model.checkpoint" / "state.npz.tmp")
    tree = Tree(tmp_path)
    result = run_cli("train", scene, "--out", tmp_path / "model", "-q")
    assert_one_error(result, "checkpoint directory")
    tree.assert_unchanged()


@pytest.mark.parametrize("output", ["heatmap", "polygons", "json", "link to a pipe"])
def test_an_output_that_is_a_pipe_or_links_to_one_is_refused(tmp_path, scene, truth, output):
    """A pipe, a device or a link to one (/dev/stdout, /dev/null) was replaced by a plain
    file, the run reporting success: a reader on the pipe got nothing, and as root
    `--json /dev/stdout` replaced /dev/stdout for every process."""
    fifo = tmp_path / ("out.json" if output == "json" else "t.gpkg" if output == "polygons"
                       else "heat.tif")
    os.mkfifo(fifo)
    named = fifo
    if output == "link to a pipe":
        named = tmp_path / "linked.tif"
        os.symlink(fifo, named)
    if output == "json":
        result = run_cli("evaluate", scene, truth, "--json", named)
    elif output == "polygons":
        result = run_cli("detect", scene, tmp_path / "h.tif", "--score", "rx", "-q",
                         "--polygons", named, "--far", "0.01")
    else:
        result = run_cli("detect", scene, named, "--score", "rx", "-q")
    assert_one_error(result, f"{named}: ", "is a pipe, not a file; hsanomaly writes an output "
                     "whole" if output != "link to a pipe" else f"is a symbolic link (to {fifo})")
    assert fifo.is_fifo() and (output != "link to a pipe" or named.is_symlink())
    assert not (tmp_path / "h.tif").exists()


def test_a_pipe_among_a_batchs_or_a_benchmarks_outputs_is_refused_before_any_work(tmp_path,
                                                                                    scene):
    """detect-many read the pipe at its output to see whose file it was and waited there for
    good (SIGTERM did not end it); benchmark refused one at --out/results.csv only once every
    scene was scored."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "scene_rx.tif")
    result = run_cli("detect-many", scene, "--out-dir", out, "--score", "rx", "-q", timeout=60)
    assert_one_error(result, f"{out / 'scene_rx.tif'}: ", "is a pipe, not a file")
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(scene, data / "scene.tif")
    os.mkfifo(out / "results.csv")
    result = run_cli("benchmark", data, "--scores", "rx", "--out", out, "-q", timeout=60)
    assert_one_error(result, f"{out / 'results.csv'}: this file of --out is a pipe, not a file")
    assert "scene" not in result.stdout                        # refused before any scene


def test_a_pipe_in_place_of_a_description_hsanomaly_reads_is_refused_unread(tmp_path, scene):
    """A folder a run looks into to see whose it is (a quick model's beside the heatmap, a
    training's --out, a batch's tile store) held a pipe, or a link to one, where a model.json
    or a store's manifest.json would be: the run waited for good at its read (a link to
    /dev/zero instead read until memory ran out)."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "heat.model").mkdir()
    os.mkfifo(tmp_path / "heat.model" / "model.json")
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "critic", timeout=60)
    assert_one_error(result, "heat.model: the quick model directory is a directory that is "
                             "not a model bundle")
    (tmp_path / "trained").mkdir()
    os.symlink(tmp_path / "pipe", tmp_path / "trained" / "model.json")
    result = run_cli("train", scene, "--out", tmp_path / "trained", timeout=60)
    assert_one_error(result, "trained: --out is a directory that is not a model bundle")
    store = tmp_path / "out" / "scene_rx.tif.partial"
    store.mkdir(parents=True)
    os.symlink(tmp_path / "pipe", store / "manifest.json")
    assert_ok(run_cli("detect-many", scene, "--out-dir", tmp_path / "out", "--score", "rx", "-q",
                      timeout=60))
    assert (tmp_path / "out" / "scene_rx.tif").is_file() and (tmp_path / "pipe").is_fifo()


def test_small_files_are_read_only_when_regular_and_small(tmp_path, monkeypatch):
    """``read_small``: links only when asked to follow them; never a device, a pipe or a
    file beyond its limit. Where the system lacks POSIX's flags (Windows), it still reads:
    every tile read as damaged there."""
    from hsanomaly.io.checks import read_npz, read_small

    (tmp_path / "meta.json").write_text('{"a": 1}')
    os.symlink(tmp_path / "meta.json", tmp_path / "link.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    os.mkfifo(tmp_path / "pipe.json")
    assert read_small(tmp_path / "meta.json") == '{"a": 1}'
    assert read_small(tmp_path / "link.json", follow=True) == '{"a": 1}'
    with pytest.raises(OSError):
        read_small(tmp_path / "link.json")
    with pytest.raises(OSError, match="is a character device"):
        read_small(tmp_path / "zero.json", follow=True)
    with pytest.raises(OSError, match="is a pipe"):
        read_small(tmp_path / "pipe.json")
    with pytest.raises(ValueError, match="more than 7 bytes"):
        read_small(tmp_path / "meta.json", limit=7)
    import numpy as np

    np.savez(tmp_path / "a.npz", x=np.arange(3))
    for flag in ("O_NONBLOCK", "O_NOFOLLOW", "O_CLOEXEC"):
        monkeypatch.delattr(os, flag, raising=False)
    assert read_small(tmp_path / "meta.json") == '{"a": 1}'
    assert read_npz(tmp_path / "a.npz", 2**20)["x"].tolist() == [0, 1, 2]
