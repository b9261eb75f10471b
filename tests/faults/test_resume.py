"""--resume: SIGKILL mid-run, a changed input or setting, damaged or foreign tiles.

A run stopped after its last tile leaves a complete tile store (12 tiles of 16x16) to tamper
with; SIGKILL stops a run of 130 tiles wherever it is.
"""

import json
import os
import signal
import time

import numpy as np
import pytest
import rasterio

from .conftest import (Tree, assert_ok, assert_one_error, interrupted, kill, make_scene, reference,
                       run_cli, start_cli)

DETECT = ["--score", "rx", "--tile", "16", "-q"]


@pytest.fixture
def store(tmp_path, scene):
    """The tile store of an interrupted run writing heat.tif (all 12 tiles finished)."""
    return interrupted(scene, tmp_path / "heat.tif")


def resume(tmp_path, scene, resumed):
    result = assert_ok(run_cli("detect", scene, tmp_path / "heat.tif", *DETECT, "--resume"))
    assert f"({resumed} resumed)" in result.stdout
    assert (tmp_path / "heat.tif").read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not (tmp_path / "heat.tif.partial").exists()


def started_run(tmp_path, tiles=10):
    """(a detect of 130 tiles started in the background, once ``tiles`` are stored; its
    arguments; its tile store)."""
    scene = make_scene(tmp_path / "scene.tif", rows=80, cols=100)
    args = ["detect", scene, tmp_path / "heat.tif", "--score", "rx", "--tile", "8", "-q"]
    process = start_cli(*args)
    store = tmp_path / "heat.tif.partial"
    deadline = time.monotonic() + 60
    while len(list(store.glob("tile_*.npz"))) < tiles and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return process, args, store


def test_sigkill_mid_run_then_resume_is_byte_identical(tmp_path):
    process, args, store = started_run(tmp_path)
    scene = args[1]
    kill(process)
    finished = len(list(store.glob("tile_*.npz")))
    assert 10 <= finished < 130 and not (tmp_path / "heat.tif").exists()
    result = assert_ok(run_cli(*args, "--resume"))
    assert "resumed" in result.stdout
    assert (tmp_path / "heat.tif").read_bytes() == reference(scene, tmp_path / "ref.tif", tile=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif", "ref.tif", "scene.tif"]


@pytest.mark.parametrize("number, status, said", [
    (signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    # a CPU-time limit's warning (the kernel sends it again each CPU second): it died unsaid
    (signal.SIGXCPU, 152, "out of CPU time (SIGXCPU: a soft CPU-time limit, ulimit -St or a "
                          "batch queue's)")])
def test_ctrl_c_and_sigterm_are_one_line_and_keep_the_tiles(tmp_path, number, status, said):
    """Ctrl-C ended in click's bare 'Aborted!' with status 1, and SIGTERM (kill, systemd,
    Slurm, docker stop) killed the process without a word or a clean-up of its staging."""
    process, args, _ = started_run(tmp_path)
    process.send_signal(number)
    _, stderr = process.communicate()
    assert process.returncode == status, stderr          # what ended it otherwise, if it did
    # where the tiles are and how to discard them, said (they were "finished, if any")
    assert stderr.strip() == (f"Error: {said}; the outputs were not replaced; {tmp_path}/"
                              f"heat.tif: the finished tiles are kept in {tmp_path}/heat.tif."
                              "partial (delete it to discard them): rerun with --resume; a run "
                              "without it starts over")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif.partial", "scene.tif"]
    assert "resumed" in assert_ok(run_cli(*args, "--resume")).stdout


def test_resume_after_the_input_changed_is_refused(tmp_path, scene, store):
    make_scene(scene, seed=3)                    # same path, same shape, other pixels
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", *DETECT, "--resume")
    assert_one_error(result, "input changed", "rerun without --resume")
    tree.assert_unchanged()


def test_resume_with_other_settings_is_refused(tmp_path, scene, store):
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", "--score", "lrx", "--tile", "16",
                     "--resume", "-q")
    assert_one_error(result, "other settings", "rerun without --resume")
    tree.assert_unchanged()


def test_resume_with_a_damaged_manifest_is_refused(tmp_path, scene, store):
    (store / "manifest.json").write_text('{"format": "hsanomaly-tiles", "format_vers')
    tree = Tree(tmp_path)
    result = run_cli("detect", scene, tmp_path / "heat.tif", *DETECT, "--resume")
    assert_one_error(result, "damaged", "rerun without --resume")
    tree.assert_unchanged()


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated", "empty", "other index",
                                    "wrong shape"])
def test_damaged_tile_is_scored_again(tmp_path, scene, store, damage):
    tile = store / "tile_0000005.npz"
    data = bytearray(tile.read_bytes())
    if damage == "flipped bytes":
        data[len(data) // 2:len(data) // 2 + 8] = bytes(8)
        tile.write_bytes(bytes(data))
    elif damage == "truncated":
        tile.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "empty":
        tile.write_bytes(b"")
    elif damage == "other index":
        tile.write_bytes((store / "tile_0000000.npz").read_bytes())
    else:   # a checksum that matches, over an array of the wrong shape
        from hsanomaly.engine.store import TileStore

        fake = TileStore.__new__(TileStore)
        fake.fingerprint = json.loads((store / "manifest.json").read_text())["fingerprint"]
        arrays = {"score": np.zeros((1, 8, 8), np.float32)}
        with open(tile, "wb") as f:
            np.savez_compressed(f, **arrays, _sha256=np.array(fake._checksum(5, arrays)))
    resume(tmp_path, scene, resumed=11)


def test_old_store_without_resume_is_replaced(tmp_path, scene, store):
    """Without --resume an interrupted run's store is simply started over."""
    assert_ok(run_cli("detect", scene, tmp_path / "heat.tif", *DETECT))
    assert (tmp_path / "heat.tif").read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not store.exists()


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path, scene,
                                                                             store):
    """Two runs on one output: the second removed the first's tiles (or mixed its own in).
    The store is locked while a run writes it; the second run is refused before any work."""
    from hsanomaly.io.lock import lock_folder

    held = lock_folder(store)                     # the first run, still writing
    tree = Tree(tmp_path)
    for args in (DETECT, DETECT + ["--resume"], ["--score", "lrx", "-q"]):
        result = run_cli("detect", scene, tmp_path / "heat.tif", *args)
        assert_one_error(result, f"{tmp_path / 'heat.tif'}: another hsanomaly run is writing "
                                 f"this output now (its working folder {store} is locked)")
        tree.assert_unchanged()
    import os

    os.close(held)                               # the first run ends (or dies)
    resume(tmp_path, scene, 12)


HOLDS_A_PRIVATE_FOLDER = """
import sys
from hsanomaly.io import atomic

print(atomic.private_folder(sys.argv[1], sys.argv[2]), flush=True)
sys.stdin.read()
"""


def test_a_run_is_refused_at_once_while_another_trains_the_outputs_quick_model(tmp_path, scene):
    """The quick model's training took no lock: a second run on the same output trained a
    whole model and scored every tile, and only then was refused."""
    import subprocess
    import sys

    make_scene(scene, rows=48, cols=48)           # room for the default score's window
    trainer = subprocess.Popen([sys.executable, "-c", HOLDS_A_PRIVATE_FOLDER, str(tmp_path),
                                "heat.model"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        training = trainer.stdout.readline().strip()      # the first run's staged quick model
        tree = Tree(tmp_path)
        result = run_cli("detect", scene, tmp_path / "heat.tif", "--tile", "16", "-q")
        assert_one_error(result, f"{tmp_path / 'heat.tif'}: another hsanomaly run is writing "
                                 f"this output now (its working folder {training} is locked)")
        tree.assert_unchanged()
    finally:
        trainer.communicate("")
    assert_ok(run_cli("detect", scene, tmp_path / "other.tif", "--score", "rx", "-q"))
    assert not os.path.exists(training)        # a dead run's folder is no hindrance: removed


def test_a_run_is_refused_at_once_while_another_fits_its_score(tmp_path, scene, monkeypatch):
    """A score fitted on the scene (gmm) made its tile store, and took its lock, only after
    the fit: another run on the output in the meantime went ahead and won."""
    import hsanomaly
    from hsanomaly.engine import run

    meanwhile, real_fit = [], run.fit_scorer

    def another_run_during_the_fit(scorer, source, **kwargs):
        meanwhile.append(run_cli("detect", scene, tmp_path / "heat.tif", *DETECT))
        return real_fit(scorer, source, **kwargs)

    monkeypatch.setattr(run, "fit_scorer", another_run_during_the_fit)
    hsanomaly.detect(scene, tmp_path / "heat.tif", score="gmm", tile=16, progress=False)
    assert_one_error(meanwhile[0], f"{tmp_path / 'heat.tif'}: another hsanomaly run is writing "
                                   "this output now")
    with rasterio.open(tmp_path / "heat.tif") as ds:
        assert ds.tags()["HSANOMALY_SCORE"] == "gmm"


def test_an_interrupted_fit_leaves_no_empty_tile_store(tmp_path, scene, monkeypatch):
    """The store is made before the fit (another run is refused at once): Ctrl-C during the
    fit left it, empty, beside the output."""
    import hsanomaly
    from hsanomaly.engine import run

    def interrupted(scorer, source, **kwargs):
        assert (tmp_path / "heat.tif.partial").is_dir()      # made, and locked, before the fit
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "fit_scorer", interrupted)
    tree = Tree(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        hsanomaly.detect(scene, tmp_path / "heat.tif", score="gmm", tile=16, progress=False)
    tree.assert_unchanged()


def test_detect_many_starts_over_an_interrupted_run_of_another_input(tmp_path, scene, store):
    """detect-many resumed every interrupted run, so one whose input changed failed on every
    rerun ("rerun without --resume", a flag detect-many does not have)."""
    out = tmp_path / "heat.tif"
    make_scene(scene, seed=3)                    # the input changes after the interruption
    folder = tmp_path / "batch"
    folder.mkdir()
    (tmp_path / "heat.tif.partial").rename(folder / "scene_rx.tif.partial")
    result = assert_ok(run_cli("detect-many", scene, "--out-dir", folder, *DETECT))
    assert "1 scored" in result.stdout
    assert (folder / "scene_rx.tif").read_bytes() == reference(scene, out, tile=16)
    assert not (folder / "scene_rx.tif.partial").exists()


def test_a_file_system_without_locks_runs_unlocked_and_other_lock_errors_are_one_line(
        tmp_path, monkeypatch):
    import errno

    import hsanomaly.io.lock as lock
    from hsanomaly.errors import HsanomalyError

    def refuse(code):
        def flock(fd, operation):
            raise OSError(code, os.strerror(code))
        return flock

    open_fds = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(lock.fcntl, "flock", refuse(errno.ENOLCK))
    assert lock.lock_folder(tmp_path) is None
    monkeypatch.setattr(lock.fcntl, "flock", refuse(errno.EIO))
    with pytest.raises(HsanomalyError, match="cannot be locked"):
        lock.lock_folder(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == open_fds          # no descriptor left open
