import os
import shutil
import sys

import numpy as np
import pytest
import rasterio
from sklearn.metrics import roc_auc_score

import hsanomaly
from hsanomaly.engine import detect
from hsanomaly.errors import HsanomalyError
from hsanomaly.io import ArraySource
from hsanomaly.scorers import BASELINES, GlobalRX, LocalRX, make_scorer
from hsanomaly.scorers.rx import RIDGE

from synthetic import CRS, TRANSFORM, synthetic_cube, write_raster


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


@pytest.mark.parametrize("score", ["rx", "lrx", "gmm"])
def test_georeferencing_size_and_nodata_round_trip(tmp_path, synthetic_raster, score):
    path, truth, nodata_mask = synthetic_raster
    opts = {"outer": 9, "guard": 3} if score == "lrx" else {}
    detect(path, tmp_path / "out.tif", make_scorer(score, **opts), tile=16, progress=False)
    heat, profile = read(tmp_path / "out.tif")
    assert profile["crs"] == CRS and profile["transform"] == TRANSFORM
    assert (profile["width"], profile["height"]) == (50, 40)
    assert profile["dtype"] == "float32" and profile["tiled"] and profile["compress"] == "deflate"
    assert np.isnan(profile["nodata"])
    np.testing.assert_array_equal(np.isnan(heat), nodata_mask)
    ok = ~nodata_mask
    if score != "gmm":  # a 5-component mixture fits the two tight planted clusters themselves
        assert roc_auc_score(truth[ok], heat[ok]) > 0.99
    assert not (tmp_path / "out.tif.partial").exists()


@pytest.mark.parametrize("score", BASELINES)
def test_tiling_does_not_change_scores(tmp_path, score):
    """Every baseline, its halo as declared (a halo too small for what a pixel's score reads
    gives seams at the tile borders): the same heatmap in one tile, in 16-pixel tiles and in
    13-pixel ones (the rings and the purge's second pass reach past a tile's own pixels). The
    GAN scores' tiles are compared in test_context.py and test_gan_scoring.py."""
    small = {"lrx": {"outer": 7, "guard": 3}, "mlrx": {"rings": "5/1;9/3", "purge": 0.05},
             "rxmlrx": {"rings": "5/1;9/3", "purge": 0.05}}.get(score, {})
    cube, _ = synthetic_cube()
    whole = None
    for tile in (256, 16, 13):
        detect(ArraySource(cube), tmp_path / f"{tile}.tif", make_scorer(score, **small),
               tile=tile, progress=False)
        heat = read(tmp_path / f"{tile}.tif")[0]
        whole = heat if whole is None else whole
        np.testing.assert_allclose(heat, whole, rtol=1e-5, atol=1e-6, err_msg=f"tile {tile}")


def test_global_rx_equals_mahalanobis_in_memory():
    cube, _ = synthetic_cube()
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    rx = GlobalRX().fit(ArraySource(cube))
    d = X - X.mean(0)
    expected = np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(X.T)), d)
    np.testing.assert_allclose(rx.score_samples(X), expected, rtol=1e-4)


def test_local_rx_matches_brute_force_ring():
    cube, _ = synthetic_cube(bands=6, rows=20, cols=20)
    lrx = LocalRX(outer=7, guard=3, pca=4).fit(ArraySource(cube))
    block, valid = ArraySource(cube).read(ArraySource(cube).windows()[0], lrx.halo)
    heat = lrx.score_block(block, valid)["score"][0]
    x = (cube.reshape(6, -1).T - lrx.mean_) @ lrx.projection_
    x = x.reshape(20, 20, 4)
    r, c = 10, 9
    ring = [x[i, j] for i in range(r - 3, r + 4) for j in range(c - 3, c + 4)
            if max(abs(i - r), abs(j - c)) > 1]
    ring = np.array(ring)
    d = x[r, c] - ring.mean(0)
    cov = np.cov(ring.T)
    cov[np.diag_indices(4)] += RIDGE * np.trace(cov) + lrx.floor_     # what keeps it solvable
    n, k = len(ring), 4
    expected = d @ np.linalg.solve(cov, d) * n * (n - k - 2) / ((n + 1) * (n - 1))  # T^2's mean
    assert heat[r, c] == pytest.approx(expected, rel=1e-4)
    assert np.isfinite(heat).all()  # edge pixels use the part of the ring inside the image


def test_cancel_leaves_nothing(tmp_path):
    """A cancel is its own error class (``hsanomaly.Cancelled``), which a caller such as QGIS
    tells from a failure of the input."""
    cube, _ = synthetic_cube()
    with pytest.raises(hsanomaly.Cancelled, match="cancelled"):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               callback=lambda fraction, message: fraction > 0.2)
    assert list(tmp_path.iterdir()) == []


def cancel_points_passed(fit):
    """The functions whose ``cancel_point()`` ran while ``fit()`` ran ``cancellable``."""
    from hsanomaly.cancel import cancellable

    passed = set()
    with cancellable(lambda: passed.add(sys._getframe(2).f_code.co_qualname)):
        fit()
    return passed


@pytest.mark.parametrize("score", ["rx", "gmm"])
def test_a_cancel_asked_while_the_score_fits_stops_the_fit(tmp_path, monkeypatch, score):
    """A fit says nothing of its progress, so it calls back as it reads and solves
    (``hsanomaly.cancel``): a cancel asked then stops it before any tile is scored."""
    monkeypatch.setattr("hsanomaly.engine.run.CANCEL_INTERVAL", 0)
    cube, _ = synthetic_cube()
    seen = []

    def callback(fraction, message):
        seen.append(message)
        return len(seen) == 2

    with pytest.raises(hsanomaly.Cancelled, match="cancelled"):
        detect(ArraySource(cube), tmp_path / "out.tif", make_scorer(score), tile=16,
               progress=False, callback=callback)
    assert len(seen) == 2 and all(m.startswith(f"fitting {score} on") for m in seen), seen
    assert list(tmp_path.iterdir()) == []


def test_a_cancel_stops_the_threads_a_fit_started_and_its_wait_for_them():
    """The purge's first pass runs in pool threads, where no callback is called: a cancel
    waited for the whole pass, seconds (the review's F01). Its threads now stop at their next
    cancel point once the caller's check has raised, and the wait lets the cancel through."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from hsanomaly.cancel import cancel_point, cancellable, results
    from hsanomaly.spelling import submit

    started, stopped = threading.Event(), []

    def work():                       # a long pass: cancel points, for at most 5 s
        started.set()
        for _ in range(500):
            try:
                cancel_point()
            except hsanomaly.Cancelled as err:
                stopped.append(str(err))
                raise
            time.sleep(0.01)

    def check():                      # the caller's callback: cancel once the pass runs
        if started.is_set():
            raise hsanomaly.Cancelled("out.tif: cancelled")

    with ThreadPoolExecutor(1) as pool:
        with cancellable(check), pytest.raises(hsanomaly.Cancelled, match="out.tif: cancelled"):
            results([submit(pool, work)])
    assert stopped == ["out.tif: cancelled"]      # stopped, not run out its 5 s


def test_the_mixtures_fit_lets_a_cancel_through_while_it_reads_and_between_em_steps():
    cube, _ = synthetic_cube()
    scorer = make_scorer("gmm", sample=2000)
    passed = cancel_points_passed(lambda: scorer.fit(ArraySource(cube)))
    assert {"_Source.read", "_Source.draw_sample", "GaussianMixtureScorer.fit"} <= passed


def interrupted_halfway(cube, dst):
    """Score ``cube`` into ``dst`` with rx in 16-pixel tiles, interrupted (Ctrl-C) past half
    of them: the finished tiles are kept for a resume."""
    def interrupt(fraction, message):
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:
        detect(ArraySource(cube), dst, GlobalRX(), tile=16, progress=False, callback=interrupt)
    return stopped.value


def test_resume_after_interruption_gives_identical_output(tmp_path):
    cube, _ = synthetic_cube()
    detect(ArraySource(cube), tmp_path / "full.tif", GlobalRX(), tile=16, progress=False)

    stopped = interrupted_halfway(cube, tmp_path / "out.tif")
    if sys.version_info >= (3, 11):     # a notebook shows the note under the interrupt
        assert stopped.__notes__ == [f"{tmp_path / 'out.tif'}: the finished tiles are kept in "
                                     f"{tmp_path / 'out.tif.partial'} (delete it to discard "
                                     "them): rerun with resume=True; a run without it starts "
                                     "over"]
    assert not (tmp_path / "out.tif").exists()
    finished = len(list((tmp_path / "out.tif.partial").glob("tile_*.npz")))
    assert 0 < finished < 12
    result = detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
                    resume=True)
    assert result.tiles_resumed == finished
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[0], read(tmp_path / "full.tif")[0])


def test_a_failed_fit_says_whether_tiles_are_kept_for_a_resume(tmp_path, monkeypatch):
    """A fit that fails before any tile (memory, a Dask worker killed) said "the finished tiles
    are kept" with none; a resume's fit that fails has its earlier run's tiles, still kept."""
    import hsanomaly.engine.run as run

    def out_of_memory(scorer, source, **kwargs):
        raise MemoryError

    cube, _ = synthetic_cube()
    monkeypatch.setattr(run, "fit_scorer", out_of_memory)
    with pytest.raises(HsanomalyError, match=r"out of memory while scoring .*; nothing was "
                                             "written$"):
        detect(ArraySource(cube), tmp_path / "new.tif", GlobalRX(), tile=16, progress=False)
    monkeypatch.undo()
    interrupted_halfway(cube, tmp_path / "out.tif")
    monkeypatch.setattr(run, "fit_scorer", out_of_memory)
    with pytest.raises(HsanomalyError, match="the finished tiles are kept"):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               resume=True)
    assert (tmp_path / "out.tif.partial").is_dir()


def test_a_tile_store_edited_between_runs_resumes_or_is_refused_in_one_line(tmp_path):
    """A manifest whose configuration is no mapping, and a tile numbered past the run's plan,
    gave tracebacks (TypeError, IndexError) on resuming: the first is refused as damaged, the
    stray tile is dropped and the rest resumes."""
    import json

    cube, _ = synthetic_cube()
    detect(ArraySource(cube), tmp_path / "full.tif", GlobalRX(), tile=16, progress=False)
    interrupted_halfway(cube, tmp_path / "out.tif")
    store = tmp_path / "out.tif.partial"
    first = sorted(store.glob("tile_*.npz"))[0]
    (store / "tile_0009999.npz").write_bytes(first.read_bytes())
    result = detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
                    resume=True)
    assert 0 < result.tiles_resumed < 12
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[0], read(tmp_path / "full.tif")[0])
    interrupted_halfway(cube, tmp_path / "again.tif")
    manifest = tmp_path / "again.tif.partial" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "config": [1]}))
    with pytest.raises(HsanomalyError, match=r"again.tif.partial: the interrupted run here was "
                                             r"written by another hsanomaly version or is "
                                             r"damaged; rerun without resume=True"):
        detect(ArraySource(cube), tmp_path / "again.tif", GlobalRX(), tile=16, progress=False,
               resume=True)


def test_cancelling_a_resumed_run_keeps_the_tiles_an_earlier_run_finished(tmp_path):
    """A cancel removed the whole tile store, the interrupted run's tiles among them (hours
    of a real scene; QGIS's Cancel button goes this way)."""
    cube, _ = synthetic_cube()

    interrupted_halfway(cube, tmp_path / "out.tif")
    store = tmp_path / "out.tif.partial"
    finished = len(list(store.glob("tile_*.npz")))
    with pytest.raises(HsanomalyError, match=r"out.tif: cancelled; the finished tiles are kept "
                                             r"in .*out.tif.partial \(delete it to discard "
                                             r"them\): rerun with resume=True"):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               resume=True, callback=lambda fraction, message: message.startswith("tile"))
    assert len(list(store.glob("tile_*.npz"))) > finished and not (tmp_path / "out.tif").exists()
    result = detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
                    resume=True)
    assert result.tiles_resumed > finished


def test_a_rerun_without_resume_says_it_discards_an_interrupted_runs_tiles(tmp_path):
    """A notebook cell run again as it was threw the finished tiles away without a word
    (resume=True with nothing to resume does say so)."""
    cube, _ = synthetic_cube()

    interrupted_halfway(cube, tmp_path / "out.tif")
    finished = len(list((tmp_path / "out.tif.partial").glob("tile_*.npz")))
    with pytest.warns(UserWarning, match=rf"out.tif.partial: scoring from the start, the "
                                         rf"{finished} finished tiles of an earlier run "
                                         r"discarded \(resume=True continues an interrupted run "
                                         "of the same input and settings"):
        result = detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16,
                        progress=False)
    assert result.tiles_resumed == 0


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    """A warning: a script asked to resume and should hear that it did not (a log line at
    INFO reached nobody without -v)."""
    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    with pytest.warns(HsanomalyWarning, match="out.tif: no interrupted run here to "
                                              "resume; scoring from the start"):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, resume=True)


def test_resume_with_other_settings_is_refused(tmp_path):
    cube, _ = synthetic_cube()
    with pytest.raises(KeyboardInterrupt):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               callback=lambda f, m: f > 0 and (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(HsanomalyError, match=r"other settings is here \(scorer: rx -> lrx\)"):
        detect(ArraySource(cube), tmp_path / "out.tif", LocalRX(), tile=16, progress=False,
               resume=True)
    with pytest.raises(HsanomalyError) as refused:      # it says what changed
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=32, progress=False,
               resume=True)
    assert "other settings is here (tile: 16 -> 32); rerun without resume=True" in str(refused.value)


def test_window_larger_than_image(tmp_path):
    cube, _ = synthetic_cube(rows=8, cols=8)
    with pytest.raises(HsanomalyError, match="15x15 window of score 'lrx' is larger than the 8x8"):
        detect(ArraySource(cube), tmp_path / "o.tif", LocalRX(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_score():
    with pytest.raises(HsanomalyError, match="unknown score 'foo'"):
        make_scorer("foo")


# --- the tile store, fingerprints and failures (issue 11) -------------------------------------

def test_tile_store_checksums_catch_damage_other_runs_and_shapes(tmp_path):
    from hsanomaly.engine.store import TileStore

    job = {"input": {"sha256": "a"}, "config": {"tile": 16}}
    store = TileStore(tmp_path / "s.partial", job)
    arrays = {"score": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}
    store.put(0, arrays)
    store.put(1, arrays)
    np.testing.assert_array_equal(store.load(0, {"score": (1, 2, 3)})["score"], arrays["score"])
    assert store.load(0, {"score": (1, 2, 4)}) is None                    # wrong shape
    tile = tmp_path / "s.partial" / "tile_0000001.npz"
    tile.write_bytes(tile.read_bytes()[:-20])                              # truncated
    assert store.load(1, {"score": (1, 2, 3)}) is None
    (tmp_path / "s.partial" / "tile_0000002.npz").write_bytes(
        (tmp_path / "s.partial" / "tile_0000000.npz").read_bytes())       # another index
    assert store.load(2, {"score": (1, 2, 3)}) is None
    assert store.discard_bad({0, 1, 2}, lambda i: {"score": (1, 2, 3)}) == {0}
    assert store.done() == {0}
    other = TileStore(tmp_path / "o.partial", {"input": {"sha256": "b"}, "config": {"tile": 16}})
    (tmp_path / "o.partial" / "tile_0000000.npz").write_bytes(
        (tmp_path / "s.partial" / "tile_0000000.npz").read_bytes())       # another run's tile
    assert other.load(0, {"score": (1, 2, 3)}) is None
    with pytest.raises(HsanomalyError, match="another hsanomaly run is writing this output"):
        TileStore(tmp_path / "s.partial", job, resume=True)      # the first run holds it
    assert store.done() == {0}                                   # and keeps its tiles
    store.release()                                              # the first run ends
    with pytest.raises(HsanomalyError, match="input changed.*without resume=True"):
        TileStore(tmp_path / "s.partial", {**job, "input": {"sha256": "c"}}, resume=True)
    assert TileStore(tmp_path / "s.partial", job, resume=True).done() == {0}


def test_a_removed_store_is_not_left_holding_a_tile_a_worker_wrote_meanwhile(tmp_path,
                                                                            monkeypatch):
    """A cancelled Dask run removed its store while tasks that had started wrote their tiles
    into it: the folder, emptied as they wrote, was left behind with their tiles in it."""
    from hsanomaly.engine.store import TileStore
    from hsanomaly.io.atomic import replace_durably

    store = TileStore(tmp_path / "s.partial", {"input": {"sha256": "a"}, "config": {}})
    unlink, written = os.unlink, []

    def unlink_as_a_worker_writes(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if not written:                 # a worker's tile lands as the removal begins
            written.append(1)
            try:
                replace_durably(store.path / "tile_0000007.npz", lambda f: f.write(b"x"), ".t")
            except OSError:
                pass                    # no folder to write into: the tile is lost, rightly

    monkeypatch.setattr(os, "unlink", unlink_as_a_worker_writes)
    store.remove()
    monkeypatch.undo()
    assert written and not store.path.exists()
    assert [p.name for p in tmp_path.iterdir()] == []      # nor a private folder


def test_a_tile_store_removed_during_the_run_says_so(tmp_path):
    """It said "make room" (and, from the engine, blamed Dask workers) for a folder another
    process removed; a full disk still says to make room."""
    import errno

    from hsanomaly.engine.store import TileStore

    store = TileStore(tmp_path / "s.partial", {"input": {"sha256": "a"}, "config": {}})
    store.put(0, {"score": np.zeros((1, 2, 2), np.float32)})
    assert "once there is room" in str(store._write_error(OSError(errno.ENOSPC, "No space")))
    assert "room" not in str(store._write_error(OSError(errno.EIO, "I/O error")))
    shutil.rmtree(tmp_path / "s.partial")
    with pytest.raises(HsanomalyError, match=r"s.partial: the tile store was removed during the "
                                             r"run \(by another process\?\); rerun"):
        store.put(1, {"score": np.zeros((1, 2, 2), np.float32)})


@pytest.mark.parametrize("taken", ["folder", "tile"])
def test_tiles_taken_from_the_store_during_a_local_run_say_so(synthetic_raster, tmp_path, taken):
    """Missing tiles of a local run were blamed on Dask workers' storage."""
    import hsanomaly
    from hsanomaly.engine.store import store_path

    path, _, _ = synthetic_raster
    dst = tmp_path / "heat.tif"
    store = store_path(dst)

    def take(fraction, message):
        if message.startswith("tile") and fraction == 1:      # every tile stored
            if taken == "folder":
                shutil.rmtree(store)
            else:
                next(store.glob("tile_*.npz")).unlink()

    expected = ("the tile store was removed during the run" if taken == "folder" else
                "1 finished tile went missing from the tile store during the run")
    with pytest.raises(HsanomalyError, match=f"heat.tif.partial: {expected}"):
        hsanomaly.detect(path, dst, score="rx", tile=16, callback=take)
    assert not dst.exists()


def test_tile_store_never_replaces_a_foreign_folder(tmp_path):
    from hsanomaly.engine.store import TileStore

    (tmp_path / "s.partial").mkdir()
    (tmp_path / "s.partial" / "thesis.tex").write_text("mine")
    with pytest.raises(HsanomalyError, match="not hsanomaly tiles"):
        TileStore(tmp_path / "s.partial", {"input": {}, "config": {}})
    assert (tmp_path / "s.partial" / "thesis.tex").read_text() == "mine"


@pytest.mark.parametrize("when", ["before the check", "after the check", "resuming"])
def test_a_store_another_run_makes_meanwhile_is_never_removed(tmp_path, monkeypatch, when):
    """A run that found no store took no lock; another run then made and locked the store, and
    the first removed it (rmtree when it saw it, or on its own mkdir's FileExistsError)."""
    import fcntl
    import os

    import hsanomaly.engine.store as store

    path = tmp_path / "s.partial"
    held = []
    real_lock = store.lock_folder

    def other_run_gets_in_first():
        os.mkdir(path)
        (path / "tile_0000000.npz").write_bytes(b"the other run's tile")
        (path / store.MANIFEST).write_text("{}")
        held.append(os.open(path, os.O_RDONLY))
        fcntl.flock(held[-1], fcntl.LOCK_EX)

    def lock_folder(folder, output=None):
        fd = real_lock(folder, output)
        if fd is None and not held and when in ("before the check", "resuming"):
            other_run_gets_in_first()
        return fd

    monkeypatch.setattr(store, "lock_folder", lock_folder)
    if when == "after the check":
        real_mkdir = type(path).mkdir

        def mkdir(self, *args, **kwargs):
            if self == path and not held:
                other_run_gets_in_first()
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(type(path), "mkdir", mkdir)
    try:
        with pytest.raises(HsanomalyError, match="another hsanomaly run is writing this output"):
            store.TileStore(path, {"input": {}, "config": {}}, resume=when == "resuming")
        assert (path / "tile_0000000.npz").read_bytes() == b"the other run's tile"
    finally:
        for fd in held:
            os.close(fd)

def test_heatmap_carries_the_run_fingerprint(tmp_path, synthetic_raster):
    from hsanomaly.engine.run import expected_fingerprint, read_fingerprint

    path = synthetic_raster[0]
    detect(path, tmp_path / "out.tif", GlobalRX(), tile=16, progress=False)
    found = read_fingerprint(tmp_path / "out.tif")
    assert found and found == expected_fingerprint(path, GlobalRX(), tile=16)
    assert found != expected_fingerprint(path, GlobalRX(), tile=32)
    assert found != expected_fingerprint(path, LocalRX(), tile=16)


def test_tile_size_is_checked_by_the_engine(tmp_path):
    cube, _ = synthetic_cube()
    for tile in (0, -5, 7, 8.5, True):
        with pytest.raises(HsanomalyError, match="'tile' must be a whole number of at least 8"):
            detect(ArraySource(cube), tmp_path / "o.tif", GlobalRX(), tile=tile, progress=False)
    assert list(tmp_path.iterdir()) == []


class RuntimeException(Exception):
    """Stands in for onnxruntime's exception type (same module, so recognised the same way)."""


RuntimeException.__module__ = "onnxruntime.capi.onnxruntime_pybind11_state"


@pytest.mark.parametrize("error", [MemoryError(), RuntimeException(
    "Failed to allocate memory for requested buffer of size 123456789")])
def test_running_out_of_memory_while_scoring_is_one_line(tmp_path, error):
    cube, _ = synthetic_cube()
    scorer = GlobalRX()

    def fail(block, valid):
        raise error

    scorer.score_block = fail
    with pytest.raises(hsanomaly.OutOfResources, match="out of memory while scoring"):
        detect(ArraySource(cube), tmp_path / "o.tif", scorer, tile=16, progress=False)
    assert list(tmp_path.iterdir()) == []        # no tile finished: no store left


def test_what_runs_out_is_told_from_what_is_wrong_with_the_input(tmp_path, monkeypatch):
    """Memory, disk space or a limit running out was the same bare HsanomalyError as a bad
    input through ``detect``, and a raw MemoryError or OSError through a ``Detector``: a
    service could not tell "retry with more" from "your input is wrong" (the contract
    audit's F02)."""
    import errno

    import hsanomaly.io.atomic

    cube, _ = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(hsanomaly.io.atomic, "fsync_path", full)
        with pytest.raises(hsanomaly.OutOfResources, match="no space left on the device"):
            hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", tile=16)
    with monkeypatch.context() as patched:
        patched.setattr(GlobalRX, "score_samples", lambda self, X: np.empty(2**50))
        with pytest.raises(hsanomaly.OutOfResources, match=r"^<array>: out of memory; try a "
                                                           r"smaller 'tile'$"):
            hsanomaly.Detector("rx").fit_score(cube)
        patched.setattr(GlobalRX, "fit", lambda self, source: np.empty(2**50))
        with pytest.raises(hsanomaly.OutOfResources, match="^<array>: out of memory"):
            hsanomaly.Detector("rx").fit(cube)

    class Lazy:                  # a lazy cube (dask, say): read whole as a Detector takes it
        def __array__(self, dtype=None, copy=None):
            return np.empty((2**20, 2**20, 2**10))

    with pytest.raises(hsanomaly.OutOfResources, match=r"^Lazy: out of memory; a Detector "
                                                        r"holds its input whole"):
        hsanomaly.Detector("rx").fit(Lazy())
    with pytest.raises(HsanomalyError) as bad:
        hsanomaly.detect(tmp_path / "missing.tif", tmp_path / "heat.tif", score="rx")
    assert not isinstance(bad.value, hsanomaly.OutOfResources)


def test_a_failing_write_leaves_the_earlier_output(tmp_path, monkeypatch):
    import hsanomaly.io.atomic as atomic

    cube, _ = synthetic_cube()
    detect(ArraySource(cube), tmp_path / "o.tif", GlobalRX(), tile=16, progress=False)
    before = (tmp_path / "o.tif").read_bytes()

    def broken(width, height, count):
        def check(path):
            raise OSError(28, "No space left on device")
        return check

    monkeypatch.setattr(atomic, "raster_check", broken)
    with pytest.raises(HsanomalyError, match="o.tif.*no space left.*nothing was replaced"):
        detect(ArraySource(cube * 2), tmp_path / "o.tif", GlobalRX(), tile=16, progress=False)
    assert (tmp_path / "o.tif").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "o.tif.partial"]
    assert not list(tmp_path.glob(f"*{atomic.TMP_SUFFIX}"))


def test_library_calls_validate_like_the_cli(tmp_path, synthetic_raster):
    import hsanomaly

    path = synthetic_raster[0]
    cases = [
        (dict(tile=0), "'tile'"),
        (dict(scheduler="not a url"), "scheduler='not a url'"),
        (dict(workers=0), "'workers'"),
        (dict(png=path), "'png'"),
        (dict(threshold=1.0), "'polygons'"),
        (dict(polygons=tmp_path / "t.gpkg", far=float("nan")), "'far'"),
        (dict(threads=2), "'threads'"),
        (dict(extras={"recon": tmp_path / "r.tif"}), r"extras\['recon'\]"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(HsanomalyError, match=fragment):
            hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", **kwargs)
    with pytest.raises(HsanomalyError, match="'dst' is the same file as the input 'src'"):
        hsanomaly.detect(path, path, score="rx")
    with pytest.raises(HsanomalyError, match="'c1' must be a finite number"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="recon", model=tmp_path, c1=float("nan"))
    with pytest.raises(HsanomalyError, match="'json'"):
        hsanomaly.evaluate(path, path, json=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_tiles_scored_in_threads_equal_one_at_a_time_and_stop_when_closed():
    from hsanomaly.engine.tiles import scored_tiles

    cube, _ = synthetic_cube()
    source = ArraySource(cube)
    scorer = make_scorer("lrx", outer=7, guard=3).fit(source)
    windows = source.windows(16)
    alone = list(scored_tiles(source, scorer, windows, range(len(windows)), threads=1))
    together = list(scored_tiles(source, scorer, windows, range(len(windows)), threads=3))
    assert [i for i, _ in together] == list(range(len(windows)))     # in order
    for (_, a), (_, b) in zip(alone, together):
        np.testing.assert_array_equal(a["score"], b["score"])

    reads = []
    original = source.read
    source.read = lambda *args: reads.append(args) or original(*args)
    tiles = scored_tiles(source, scorer, windows, range(len(windows)), threads=2)
    next(tiles), next(tiles)
    tiles.close()                    # e.g. a cancelled run: the pending tiles are not started
    assert len(reads) <= 2 + 3


def test_fitting_and_scoring_run_numpy_blas_on_one_thread(tmp_path):
    """The engine parallelises over tiles; BLAS threads would compete with them."""
    from threadpoolctl import threadpool_info

    seen = []

    class Recording(GlobalRX):
        def fit(self, source):
            seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
            return super().fit(source)

        def score_samples(self, X):
            seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
            return super().score_samples(X)

    cube, _ = synthetic_cube()
    detect(ArraySource(cube), tmp_path / "rx.tif", Recording(), tile=16, progress=False)
    assert len(seen) > 2 and all(threads == {1} for threads in seen if threads)


def test_tiles_past_ten_million_are_found_again(tmp_path):
    """Their files are named with 8 digits and more, but were read back by 7 of them: every
    tile from ten million on looked missing (a 100,000-pixel mosaic at --tile 31), and the
    run failed after scoring them all, at every resume."""
    from hsanomaly.engine import TileStore

    store = TileStore(tmp_path / "s.partial", {"input": {"sha256": "a"}, "config": {"tile": 16}})
    arrays = {"score": np.ones((1, 2, 2), np.float32)}
    for index in (9_999_999, 10_000_000, 156_249_999):
        store.put(index, arrays)
    assert store.done() == {9_999_999, 10_000_000, 156_249_999}
    assert store.load(156_249_999, {"score": (1, 2, 2)}) is not None


def test_a_planted_tile_is_refused_before_it_unpacks(tmp_path):
    """A resumed store's tiles were unpacked whole before their checksums and shapes were
    looked at: a planted tile of a few hundred KB unpacked to whatever it declared (1.5 GiB
    from 1.5 MB in the audit). What the zip's directory declares is now weighed first."""
    import tracemalloc
    import zipfile

    from hsanomaly.engine import TileStore

    store = TileStore(tmp_path / "s.partial", {"input": {"sha256": "a"}, "config": {"tile": 16}})
    store.put(0, {"score": np.ones((1, 4, 4), np.float32)})
    tile = tmp_path / "s.partial" / "tile_0000000.npz"
    with zipfile.ZipFile(tile, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("score", "_range"):
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.zeros((1, 2048, 4096), np.float32))
    assert tile.stat().st_size < 2**20
    tracemalloc.start()
    try:
        assert store.load(0, {"score": (1, 4, 4)}) is None
        assert store.members(0, ["_range"]) == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**23, peak


def test_tile_store_keeps_only_the_planned_outputs(tmp_path):
    """A scorer's extras nobody asked for (e.g. recon's reconstruction) are not written."""
    from hsanomaly.engine import TileStore

    job = {"input": {"sha256": "a"}, "config": {"tile": 16, "outputs": {"score": 1}}}
    store = TileStore(tmp_path / "s.partial", job)
    tile = np.ones((1, 4, 4), np.float32)
    store.put(0, {"score": tile, "recon": np.ones((20, 4, 4), np.float32), "_range": np.zeros((2, 3))})
    assert sorted(store.load(0, {"score": (1, 4, 4)})) == ["_range", "score"]


def test_an_image_smaller_than_the_window_is_refused_before_a_quick_model_is_trained(
        tmp_path, monkeypatch):
    import hsanomaly.api
    import hsanomaly.quickmodel

    def never(*args, **kwargs):
        raise AssertionError("trained a quick model for an image the score cannot take")

    monkeypatch.setattr(hsanomaly.quickmodel, "train_on_scene", never)
    cube, _ = synthetic_cube(rows=20, cols=30, targets=())
    path = write_raster(tmp_path / "small.tif", cube)
    with pytest.raises(HsanomalyError, match="window of score 'dualcontext' is larger than the 20x30"):
        hsanomaly.api.detect(path, tmp_path / "heat.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.tif"]


def test_valid_pixels_a_ring_cannot_score_are_counted_not_passed_for_nodata(tmp_path):
    """Local RX leaves NaN (the heatmap's nodata) where a ring holds too few valid pixels.
    On a one-row strip of valid pixels that was every pixel, written with exit 0; near
    nodata blobs, a few pixels no message mentioned. Now all is an error (no output, no
    tile store left), some a warning with the count; a score with several rings scores
    them from its others."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    rng = np.random.default_rng(0)
    cube = (100 + rng.normal(size=(6, 40, 40))).astype(np.float32)
    strip = cube.copy()
    strip[:, np.arange(40) != 20] = -9999
    path = write_raster(tmp_path / "strip.tif", strip, nodata=-9999)
    with pytest.raises(HsanomalyError, match="left every valid pixel without a value: the local "
                                             "RX ring"):
        detect(path, tmp_path / "heat.tif", make_scorer("lrx", outer=7, guard=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strip.tif"]

    holes = np.ma.masked_array(cube, np.zeros(cube.shape, bool))
    holes[:, 3:, 3:] = np.ma.masked                      # a corner's ring runs short
    valid = int((~holes.mask[0]).sum())
    with pytest.warns(HsanomalyWarning, match=rf"of {valid} valid pixels .* have no lrx score"):
        heat = hsanomaly.Detector("lrx", outer=7, guard=3).fit_score(holes)
    unscored = np.isnan(heat) & ~holes.mask[0]
    assert 0 < unscored.sum() < valid
    path = write_raster(tmp_path / "holes.tif", holes.filled(-9999), nodata=-9999)
    with pytest.warns(HsanomalyWarning, match=f"{unscored.sum()} of {valid} valid pixels"):
        detect(path, tmp_path / "heat.tif", make_scorer("lrx", outer=7, guard=3))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        lifted = hsanomaly.Detector("mlrx", rings="7/3;15/5").fit_score(holes)
    assert not np.isnan(lifted[~holes.mask[0]]).any()


def test_an_input_rewritten_while_it_is_scored_is_refused_not_mixed(tmp_path):
    """An input rewritten in place during scoring gave a heatmap mixing both contents, with
    exit 0 and the first content's fingerprint (the input was fingerprinted once, at the start)."""
    import hsanomaly

    cube, _ = synthetic_cube(rows=48, cols=48)
    src = write_raster(tmp_path / "scene.tif", cube)
    rewritten = []

    def rewrite_once(fraction, message):
        if fraction > 0 and not rewritten:
            write_raster(src, cube[:, ::-1].copy())          # same layout, other pixels
            rewritten.append(message)
        return False

    with pytest.raises(HsanomalyError, match="scene.tif: the input changed while it was scored"):
        hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16, callback=rewrite_once)
    assert rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16)    # a rerun scores it


def test_an_input_moved_while_it_is_scored_keeps_its_tiles_and_a_copy_of_it_is_no_change(
        tmp_path, monkeypatch):
    """Moved away mid-run, or put back as a copy of the same bytes (a sync), the input's tiles
    were thrown away as "the input changed": a local run reads through the file it opened, so
    they stand; moved back, --resume takes them up."""
    import os
    import shutil

    import hsanomaly
    from hsanomaly.io import fingerprint

    cube, _ = synthetic_cube(rows=48, cols=48)
    src = write_raster(tmp_path / "scene.tif", cube)
    done = []

    def moved(fraction, message):
        if fraction > 0.5 and not done:
            os.replace(src, tmp_path / "away.tif")
            done.append(message)
        return False

    with pytest.raises(HsanomalyError, match="scene.tif: moved or removed while it was scored; "
                                             "nothing was replaced, and the tiles scored are "
                                             "kept for resume=True once it is back"):
        hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16, callback=moved)
    os.replace(tmp_path / "away.tif", src)
    result = hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16, resume=True)
    assert result.tiles_resumed == result.tiles == 9
    reference = hsanomaly.detect(src, tmp_path / "ref.tif", score="rx", tile=16)
    copied = []

    def copy_put_back(fraction, message):
        if fraction > 0.5 and not copied:
            shutil.copy2(src, tmp_path / "copy.tif")           # its time kept too
            os.replace(tmp_path / "copy.tif", src)            # another file, the same bytes
            copied.append(message)
        return False

    again = hsanomaly.detect(src, tmp_path / "again.tif", score="rx", tile=16,
                             callback=copy_put_back)
    assert copied and again.tiles == reference.tiles
    assert (tmp_path / "again.tif").exists()
    # a file known by samples of its bytes (a large one): another file there is a change
    monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 100)
    monkeypatch.setattr(fingerprint, "SAMPLE_BLOCK", 16)
    copied.clear()
    with pytest.raises(HsanomalyError, match="scene.tif: the input changed while it was scored"):
        hsanomaly.detect(src, tmp_path / "sampled.tif", score="rx", tile=16,
                         callback=copy_put_back)


def _save(how, other, src):
    import os

    if how == "replaced":                       # saved whole: a new file renamed over it
        os.replace(other, src)
    elif how == "rewritten":                    # saved in place, the same size
        with open(src, "r+b") as f:
            f.write(other.read_bytes())
    else:                                       # only touched: the same bytes
        os.utime(src, ns=(1, 1))


@pytest.mark.parametrize("how", ["replaced", "rewritten", "touched"])
def test_an_input_saved_once_the_engine_opened_it_is_refused_and_one_touched_is_not(
        tmp_path, monkeypatch, how):
    """Saved between the engine's opening it and fingerprinting it by its path, the input was
    scored from the pixels read before (a replaced file's, or a mix) and labelled as the new
    one, with exit 0; detect-many then skipped the new raster on every rerun. A touch (the
    same bytes) is no change: refusing it threw a resumed run's finished tiles away."""
    import hsanomaly
    import hsanomaly.engine.run as run

    cube, _ = synthetic_cube(rows=48, cols=48)
    src = write_raster(tmp_path / "scene.tif", cube)
    other = write_raster(tmp_path / "other.tif", cube[:, ::-1].copy())   # same layout
    plan, saved = run.plan_outputs, []

    def saved_once_opened(source, *args, **kwargs):
        if not saved:
            _save(how, other, src)
            saved.append(how)
        return plan(source, *args, **kwargs)

    monkeypatch.setattr(run, "plan_outputs", saved_once_opened)
    if how == "touched":
        hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16)
        assert (tmp_path / "heat.tif").exists()
        return
    with pytest.raises(HsanomalyError, match="scene.tif: the input changed while it was scored"):
        hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16)
    assert saved and not (tmp_path / "heat.tif").exists()


def test_an_input_saved_before_the_engine_reads_it_is_scored_as_saved(tmp_path, monkeypatch):
    """The engine fingerprints its input before it opens it: a save just before is scored,
    and labelled, as the new raster."""
    import hsanomaly
    import hsanomaly.engine.run as run
    from hsanomaly.io.fingerprint import digest, input_fingerprint
    from hsanomaly.io.ownership import recorded_input

    cube, _ = synthetic_cube(rows=48, cols=48)
    src = write_raster(tmp_path / "scene.tif", cube)
    other = write_raster(tmp_path / "other.tif", cube[:, ::-1].copy())
    expected = write_raster(tmp_path / "expected.tif", cube[:, ::-1].copy())
    hsanomaly.detect(expected, tmp_path / "clean.tif", score="rx", tile=16)
    fingerprint, saved = run.input_fingerprint, []

    def saved_first(*args, **kwargs):
        if not saved:
            _save("replaced", other, src)
            saved.append(True)
        return fingerprint(*args, **kwargs)

    monkeypatch.setattr(run, "input_fingerprint", saved_first)
    hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16)
    with rasterio.open(tmp_path / "heat.tif") as a, rasterio.open(tmp_path / "clean.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    assert recorded_input(tmp_path / "heat.tif")["fingerprint"] == digest(input_fingerprint(src))


def test_a_finished_runs_store_left_by_a_kill_after_its_commit_is_not_called_discarded(
        tmp_path, monkeypatch):
    """Killed after its commit and before its store's removal, a finished run left its tile
    store; the next run warned that the finished tiles of an earlier run were discarded."""
    import warnings

    import hsanomaly
    from hsanomaly.engine.store import TileStore

    src = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=48, cols=48)[0])
    with monkeypatch.context() as patch:
        patch.setattr(TileStore, "remove", lambda store: None)     # killed before it
        hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", tile=16)
    assert (tmp_path / "heat.tif.partial").is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hsanomaly.detect(src, tmp_path / "heat.tif", score="lrx", tile=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif", "scene.tif"]


def test_a_result_is_plain_values_that_hold_no_model(tmp_path, synthetic_raster):
    """Each result kept the live scorer, and with it the model's codebook and ONNX session: a
    batch held one model per raster, and a result could not be written as JSON."""
    import dataclasses
    import json

    import hsanomaly

    path = synthetic_raster[0]
    items = hsanomaly.detect_many([path], tmp_path / "out", score="rx")
    result = items[0].result
    assert result.score == "rx" and result.model is None
    json.dumps(dataclasses.asdict(result))
    assert {f.name for f in dataclasses.fields(result)} == {
        "path", "outputs", "tiles", "tiles_resumed", "seconds", "score", "model", "polygons",
        "pixels_scored", "pixels_nodata", "mask", "bands_left_out", "earlier", "training_seconds"}


def test_an_interrupt_ends_the_tile_threads_before_the_source_is_closed(tmp_path, monkeypatch):
    """Ctrl-C between two tiles left the tile generators suspended, their worker threads
    reading the dataset that the run's cleanup then closed: a segmentation fault, now and
    then, instead of the one-line interrupt."""
    import threading

    from hsanomaly.io.source import RasterSource

    path = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=64, cols=64)[0])
    closed_with_threads = []
    close = RasterSource.close

    def closing(self):
        closed_with_threads.append(sorted(t.name for t in threading.enumerate()
                                          if t.name.startswith("hsanomaly-tile")))
        close(self)
    monkeypatch.setattr(RasterSource, "close", closing)

    def interrupt(fraction, message):
        if message.startswith("tile 2/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        detect(str(path), tmp_path / "heat.tif", GlobalRX(), tile=8, callback=interrupt)
    assert closed_with_threads and closed_with_threads[-1] == []


def test_the_engines_module_keeps_its_name_until_0_2_for_imports_and_pickles():
    """The module ``hsanomaly.engine.detect`` became ``engine.run`` (the function ``detect``
    hid it): its old name still imports, and a DetectResult pickled under it still loads."""
    import importlib
    import pickle

    from hsanomaly.engine import DetectResult

    assert importlib.import_module("hsanomaly.engine.detect").DetectResult is DetectResult
    result = DetectResult("h.tif", {"score": "h.tif"}, 4, 0, 1.5, "rx")
    old = pickle.dumps(result, protocol=0).replace(b"hsanomaly.engine.run", b"hsanomaly.engine.detect")
    assert b"hsanomaly.engine.detect" in old and pickle.loads(old) == result
    assert result.text().endswith("4 tiles in 1.5 s")
    trained = DetectResult("h.tif", {"score": "h.tif"}, 4, 0, 31.5, "dualcontext",
                           training_seconds=30.25)
    assert trained.text() == ("h.tif: dualcontext heatmap, 4 tiles in 31.5 s (30.2 s of it "
                              "training the quick model)")
    # one that kept its scorer (before 0.2.0) loaded, then failed at its first repr or text()
    kept = DetectResult.__new__(DetectResult)
    kept.__dict__.update(path="h.tif", outputs={"score": "h.tif"}, tiles=4, tiles_resumed=0,
                         seconds=1.5, scorer=make_scorer("rx"))
    loaded = pickle.loads(pickle.dumps(kept))
    assert loaded.score == "rx" and loaded.text() == "h.tif: rx heatmap, 4 tiles in 1.5 s"


def test_score_array_takes_its_thread_count_and_writers_take_any_byte_order(tmp_path):
    """benchmarks/train_quality.py scores on one thread (its parameter went once, as unused);
    a big-endian array failed to write once the profile named its dtype by str()."""
    from hsanomaly.engine import score_array
    from hsanomaly.io.convert import write_geotiff
    from hsanomaly.io.source import ArraySource
    from hsanomaly.scorers import make_scorer

    cube = np.random.default_rng(0).random((6, 40, 40), dtype=np.float32)
    source = ArraySource(cube)
    scorer = make_scorer("rx").fit(source)
    np.testing.assert_array_equal(score_array(source, scorer, tile=16, threads=1)["score"],
                                  score_array(source, scorer, tile=16)["score"])
    write_geotiff(tmp_path / "big.tif", cube.astype(">f4"))
    with rasterio.open(tmp_path / "big.tif") as ds:
        np.testing.assert_array_equal(ds.read(), cube)


@pytest.mark.parametrize("appears", ["a user's file", "another input's heatmap"])
def test_an_output_written_by_another_while_the_run_went_is_not_replaced(tmp_path, appears):
    """The outputs were checked once, before the work: a user's file, or another run's
    heatmap of another input, written at the output's name while a long run went, was
    replaced without a word (and without --overwrite). The commit compares each output with
    what it held when checked."""
    import hsanomaly

    cube, _ = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)
    other = write_raster(tmp_path / "other.tif", cube[:, ::-1])
    dst = tmp_path / "heat.tif"
    (tmp_path / "elsewhere").mkdir()
    others = hsanomaly.detect(other, tmp_path / "elsewhere" / "heat.tif", score="rx").path

    def meanwhile(fraction, message):
        if message.startswith("tile") and fraction == 1 and not dst.exists():
            if appears == "a user's file":
                dst.write_bytes(b"a user's own file")
            else:                                   # as a run that scored faster would
                shutil.copy(others, dst)

    before = None
    with pytest.raises(HsanomalyError, match=r"heat.tif: changed since this run checked its "
                                             r"outputs \(another run or program wrote there "
                                             r"meanwhile\); nothing was replaced"):
        before = dst.exists() and dst.read_bytes()
        hsanomaly.detect(path, dst, score="rx", tile=16, callback=meanwhile)
    assert before is False
    if appears == "a user's file":
        assert dst.read_bytes() == b"a user's own file"
    else:
        with rasterio.open(dst) as ds:
            assert ds.tags()["HSANOMALY_INPUT"].endswith("other.tif")
    # checked now, it is refused before the work, as it always was
    with pytest.raises(HsanomalyError, match="heat.tif: 'dst' (exists and is not a heatmap|holds "
                                             "the result of another input)"):
        hsanomaly.detect(path, dst, score="rx", tile=16)


def test_a_long_output_name_the_file_system_takes_is_written_and_a_longer_refused_first(
        tmp_path):
    """A private staging folder named after the output added some 40 bytes to its name: a
    235-byte name, which the file system takes, failed as "file name too long" at the commit,
    after all the work, its tile store left behind. Past what a side file's name allows, the
    refusal names the side file and the limit, before the work."""
    import os

    import hsanomaly

    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("a file system with another name limit")
    cube, _ = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)
    taken = tmp_path / ("a" * 231 + ".tif")
    hsanomaly.detect(path, taken, score="rx", png=tmp_path / ("p" * 231 + ".png"))
    left = [p.name for p in tmp_path.iterdir()]
    assert taken.exists() and not [n for n in left if n.startswith(".") or "partial" in n]
    too_long = tmp_path / ("b" * 244 + ".tif")
    with pytest.raises(HsanomalyError, match=r"b+\.tif\.aux\.xml: 'dst''s GDAL side file would "
                                             r"be named with 256 bytes, past the 255 this file "
                                             r"system takes; choose a shorter output name"):
        hsanomaly.detect(path, too_long, score="rx")
    # SQLite's journal beside a GeoPackage: it failed after the work, in a raw SQL statement
    with pytest.raises(HsanomalyError, match=r"g+\.gpkg-journal: 'polygons''s SQLite journal "
                                             r"would be named with 258 bytes"):
        hsanomaly.detect(path, tmp_path / "h.tif", score="rx", far=0.01,
                         polygons=tmp_path / ("g" * 245 + ".gpkg"))
    # a GeoPackage is written first in a private folder beside it, where its name twice
    # passed SQLite's 512 bytes, and GDAL read "a;b.gpkg" as "a": both failed after the work
    import sqlite3

    for name in ("g" * 235 + ".gpkg", "a;b.gpkg"):
        hsanomaly.detect(path, tmp_path / "p.tif", score="rx", far=0.01,
                         polygons=tmp_path / name)
        with sqlite3.connect(tmp_path / name) as db:        # pyogrio reads "a;b" as "a" too
            assert db.execute("SELECT count(*) FROM targets").fetchone()[0] >= 1
    # a quick model's training keeps its checkpoints beside it: refused after the scene was
    # read, named by its temporary folder
    with pytest.raises(HsanomalyError, match=r"/k+\.model\.checkpoint: the quick model's "
                                             r"checkpoint folder would be named with 260 bytes"):
        hsanomaly.detect(path, tmp_path / ("k" * 243 + ".tif"), score="critic")
    deep = tmp_path.joinpath(*["d" * 99] * 4)
    deep.mkdir(parents=True)
    with pytest.raises(HsanomalyError, match=r"t\.gpkg: 'polygons' would be written at a path "
                                             r"of \d+ bytes, past the 512 SQLite opens"):
        hsanomaly.detect(path, deep / "t.tif", score="rx", far=0.01, polygons=deep / "t.gpkg")
    assert not list(deep.iterdir())
    with pytest.raises(HsanomalyError, match=r"/a\\nb.gpkg': the name of 'polygons' holds a "
                                             r"control character"):
        hsanomaly.detect(path, tmp_path / "p.tif", score="rx", far=0.01,
                         polygons=tmp_path / "a\nb.gpkg")
    # a batch names its outputs after its inputs: the input is the one to rename, and a new
    # output folder has the limit of the folder it is made in
    named = write_raster(tmp_path / ("c" * 241 + ".tif"), cube)     # its heatmap: c..c_rx.tif
    with pytest.raises(HsanomalyError, match=r"the tile store of .*c+\.tif would be named with "
                                             r"256 bytes, .*; rename .*c+\.tif \(its outputs are "
                                             r"named after it\)"):
        hsanomaly.detect_many([named], tmp_path / "new" / "out", score="rx")
    assert not (tmp_path / "h.tif").exists() and not (tmp_path / "new").exists()
    # an output folder to be made: it failed after the evaluation, naming a staging folder
    truth = np.zeros((40, 50), np.uint8)
    truth[10, 10] = 1
    with pytest.raises(HsanomalyError, match=r"d+: 'plots' would be named with 256 bytes.*; "
                                             r"choose a shorter folder name"):
        hsanomaly.evaluate(np.ones((40, 50), np.float32), truth,
                           plots=tmp_path / "sub" / ("d" * 256))


def test_an_earlier_output_whose_metadata_alone_changed_is_replaced(tmp_path):
    """A chmod, a backup's hard link or an extended attribute moves a file's change time, not
    its content: the commit refused such an earlier heatmap after all the work, saying another
    program wrote there. It compares place, size and modification time."""
    import os

    import hsanomaly

    cube, _ = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)
    dst = tmp_path / "heat.tif"
    hsanomaly.detect(path, dst, score="rx")

    def meanwhile(fraction, message):
        if message.startswith("tile") and fraction == 1:
            os.chmod(dst, 0o640)
            os.link(dst, tmp_path / f"backup{len(list(tmp_path.glob('backup*')))}.tif")

    hsanomaly.detect(path, dst, score="lrx", outer=7, guard=3, callback=meanwhile)
    with rasterio.open(dst) as ds:
        assert ds.tags()["HSANOMALY_SCORE"] == "lrx"


def test_outputs_made_while_evaluate_or_convert_went_are_not_replaced(tmp_path, monkeypatch):
    """A plots folder new when checked was replaced whole, with a user's files made in it
    meanwhile; convert ran outside any job, so nothing was compared at its commit."""
    import scipy.io

    import hsanomaly
    import hsanomaly.evaluation.plots as plots
    import hsanomaly.io.convert as convert

    scores = np.arange(100, dtype=np.float32).reshape(10, 10)
    truth = np.zeros((10, 10), np.uint8)
    truth[9, 9] = 1
    folder = tmp_path / "plots"
    real = plots._draw_plots

    def drawing(*args, **kwargs):
        folder.mkdir(exist_ok=True)
        (folder / "notes.txt").write_text("mine")
        return real(*args, **kwargs)

    monkeypatch.setattr(plots, "_draw_plots", drawing)
    with pytest.raises(HsanomalyError, match="plots: changed since this run checked its outputs"):
        hsanomaly.evaluate(scores, truth, plots=folder)
    assert (folder / "notes.txt").read_text() == "mine"
    monkeypatch.undo()

    mat = tmp_path / "scene.mat"
    scipy.io.savemat(mat, {"data": np.random.default_rng(0).random((6, 5, 4))})
    dst = tmp_path / "scene.tif"
    reading = convert.read_mat

    def read_mat(*args, **kwargs):
        dst.write_bytes(b"a user's own file")
        return reading(*args, **kwargs)

    monkeypatch.setattr(convert, "read_mat", read_mat)
    with pytest.raises(HsanomalyError, match="scene.tif: changed since this run checked"):
        convert.convert_mat(mat, dst)
    assert dst.read_bytes() == b"a user's own file"



def test_a_finished_run_resumed_is_kept_unless_it_differs_from_what_is_asked(tmp_path):
    """resume=True after a run that finished scored everything again; now its heatmap is kept
    where the input, the settings and the outputs are those asked for, and read back whole,
    and scored anew otherwise: other settings, an input changed since, damaged pixels, the
    Cloud-Optimized layout asked for a plain file."""
    from hsanomaly.errors import HsanomalyWarning
    from hsanomaly.io.heatmap import is_cog

    cube, _ = synthetic_cube()
    src, dst = write_raster(tmp_path / "scene.tif", cube), tmp_path / "out.tif"
    first = hsanomaly.detect(src, dst, score="rx", tile=16)
    written = dst.read_bytes()
    heard = []                    # a progress bar ends there too (it stayed at 0 %)
    kept = hsanomaly.detect(src, dst, score="rx", tile=16, resume=True,
                            callback=lambda fraction, message: heard.append((fraction, message)))
    assert kept.earlier and dst.read_bytes() == written
    assert heard == [(1.0, f"{dst}: finished earlier, kept")]
    assert (kept.path, kept.outputs, kept.tiles, kept.score) == \
        (first.path, first.outputs, first.tiles, "rx")
    with pytest.warns(HsanomalyWarning) as said:
        assert not hsanomaly.detect(src, dst, score="rx", tile=32, resume=True).earlier
    assert [str(w.message) for w in said] == [      # one line, saying why: what changed
        f"{dst}: no interrupted run here to resume, and the finished run there is not kept: it "
        "was scored otherwise (tile: 16 -> 32); scoring from the start"]
    with pytest.warns(HsanomalyWarning, match=r"it was scored otherwise \(score: rx -> lrx; "
                                              r"guard: none -> 1; outer: none "
                                              r"-> 5; pca: none -> .*; tile: 32 -> 16\)"):
        hsanomaly.detect(src, dst, score="lrx", outer=5, guard=1, tile=16, resume=True)
    hsanomaly.detect(src, dst, score="rx", tile=32)

    cube[0, 0, 0] += 1          # the input changed since: scored again
    write_raster(src, cube)
    assert not hsanomaly.detect(src, dst, score="rx", tile=32, resume=True).earlier
    assert hsanomaly.detect(src, dst, score="rx", tile=32, resume=True).earlier

    with rasterio.open(dst) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        whole = ds.read(1)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(b"\x55" * 256)
    with pytest.warns(HsanomalyWarning, match=r"out.tif: cannot read pixels, the file is "
                                              r"truncated or corrupt .*; scored again"):
        again = hsanomaly.detect(src, dst, score="rx", tile=32, resume=True)
    assert not again.earlier and np.array_equal(read(dst)[0], whole, equal_nan=True)

    assert not is_cog(dst)
    assert not hsanomaly.detect(src, dst, score="rx", tile=32, resume=True, cog=True).earlier
    assert is_cog(dst) and hsanomaly.detect(src, dst, score="rx", tile=32, resume=True,
                                            cog=True).earlier


def test_an_output_missing_or_of_another_run_means_the_run_is_not_finished(tmp_path):
    """Every output must be as the finished run wrote it, and why not is said: another
    score's heatmap, one left by another run, or none there."""
    from hsanomaly.engine.run import RUN_TAG, expected_fingerprint, why_not_kept

    cube, _ = synthetic_cube()
    src, dst = write_raster(tmp_path / "scene.tif", cube), tmp_path / "out.tif"
    hsanomaly.detect(src, dst, score="rx")
    scorer, outputs = make_scorer("rx"), {"score": (str(dst), 1)}
    fingerprint = expected_fingerprint(src, scorer, outputs=outputs)
    assert why_not_kept(src, src, scorer, outputs, fingerprint) is None
    assert why_not_kept(src, src, make_scorer("gmm"), outputs, fingerprint) == \
        f"{dst} holds another output than its score"
    with rasterio.open(dst, "r+") as ds:
        ds.update_tags(**{RUN_TAG: "another run"})
    assert why_not_kept(src, src, scorer, outputs, fingerprint) == \
        "it is of another input, model, settings or outputs, or of a version of hsanomaly " \
        "that scored otherwise"
    dst.unlink()
    assert why_not_kept(src, src, scorer, outputs, fingerprint) == ""


def test_a_finished_run_of_a_mat_scene_is_known_by_the_files_fingerprint(tmp_path):
    """A .mat scene is fingerprinted as a file, not as the cube read from it: a resume that
    fingerprinted the cube never found its finished run."""
    import scipy.io

    cube = np.random.default_rng(0).random((30, 30, 8)).astype(np.float32)
    scipy.io.savemat(tmp_path / "scene.mat", {"data": cube})
    hsanomaly.detect(tmp_path / "scene.mat", tmp_path / "out.tif", score="rx")
    assert hsanomaly.detect(tmp_path / "scene.mat", tmp_path / "out.tif", score="rx",
                            resume=True).earlier


def test_nodata_pixels_are_nan_whatever_a_scorer_writes_there():
    """The engine's promise, not each scorer's: a pixel that is nodata in the input is NaN in
    every output, even where a scorer's ``score_block`` left a number there."""
    from hsanomaly.engine import score_array
    from hsanomaly.scorers.base import Scorer

    class Everywhere(Scorer):
        name = "everywhere"
        fits_on_scene = False

        def score_block(self, block, valid):
            return {"score": np.ones((1,) + valid.shape, np.float32)}

    cube, _ = synthetic_cube()
    cube[:, 3:6, 4:9] = np.nan
    heat = score_array(ArraySource(cube), Everywhere(), tile=16)["score"][0]
    assert np.isnan(heat[3:6, 4:9]).all() and np.isnan(heat).sum() == 15


def test_a_finished_run_is_kept_only_as_detect_wrote_it(tmp_path):
    """Its run's fingerprint alone was taken for the finished run: a copy GDAL cut from the
    heatmap (tags and all) or the result of the same pixels under another name was kept with
    --overwrite (as QGIS runs), and the PNG and polygons drawn from it."""
    cube, _ = synthetic_cube()
    src, dst = write_raster(tmp_path / "scene.tif", cube), tmp_path / "out.tif"
    hsanomaly.detect(src, dst, score="rx")
    with rasterio.open(dst) as ds:          # what gdal_translate -srcwin 0 0 20 20 makes
        profile = {**ds.profile, "width": 20, "height": 20}
        tags, descriptions = ds.tags(), ds.descriptions
        part = ds.read(window=rasterio.windows.Window(0, 0, 20, 20))
    cut = tmp_path / "cut.tif"
    with rasterio.open(cut, "w", **profile) as ds:
        ds.write(part)
        ds.update_tags(**tags)
        ds.descriptions = descriptions
    shutil.copy(cut, dst)
    assert not hsanomaly.detect(src, dst, score="rx", resume=True, overwrite=True).earlier
    with rasterio.open(dst) as ds:
        assert (ds.width, ds.height) == (50, 40)

    copy = tmp_path / "copy.tif"               # the same pixels under another name
    shutil.copy(src, copy)
    assert not hsanomaly.detect(copy, dst, score="rx", resume=True, overwrite=True).earlier
    assert hsanomaly.detect(copy, dst, score="rx", resume=True).earlier


def test_a_kept_heatmap_replaced_while_its_png_is_drawn_replaces_nothing(tmp_path,
                                                                         monkeypatch):
    """A kept run holds no tile store: another run may replace the heatmap while the new PNG
    and polygons are drawn from it, and they would be of the other run's heatmap."""
    import hsanomaly.polygons

    cube, _ = synthetic_cube()
    src, dst = write_raster(tmp_path / "scene.tif", cube), tmp_path / "out.tif"
    hsanomaly.detect(src, dst, score="rx")
    drawing = hsanomaly.polygons.write_polygons

    def replaced_meanwhile(*args, **kwargs):
        written = dst.read_bytes()                 # another process's commit: a new file
        dst.unlink()
        dst.write_bytes(written)
        return drawing(*args, **kwargs)

    monkeypatch.setattr(hsanomaly.polygons, "write_polygons", replaced_meanwhile)
    with pytest.raises(HsanomalyError, match="out.tif: changed since this run checked its "
                                             "outputs .*nothing was replaced"):
        hsanomaly.detect(src, dst, score="rx", resume=True, polygons=tmp_path / "t.gpkg",
                         threshold=5.0)
    assert not (tmp_path / "t.gpkg").exists()


def test_the_heatmap_of_an_envi_scene_is_known_as_hsanomalys_own(tmp_path):
    """GDAL's ENVI geotransform holds negative zeros: the heatmap recorded its grid with "-0",
    read back as "0", so hsanomaly no longer knew its own heatmap (a rerun refused it as
    another program's, a resume never kept it, detect-many refused its own output)."""
    from rasterio.shutil import copy

    cube, _ = synthetic_cube()
    copy(write_raster(tmp_path / "scene.tif", cube), tmp_path / "scene.img", driver="ENVI")
    src, dst = tmp_path / "scene.img", tmp_path / "out.tif"
    hsanomaly.detect(src, dst, score="rx")
    hsanomaly.detect(src, dst, score="rx")                  # its own: replaced
    assert hsanomaly.detect(src, dst, score="rx", resume=True).earlier
    with rasterio.open(dst, "r+") as ds:                   # as an earlier version wrote it
        grid = ds.tags()["HSANOMALY_GRID"]
        ds.update_tags(HSANOMALY_GRID=grid.replace(",0,", ",-0,"))
    assert "-0" in grid.replace(",0,", ",-0,")
    hsanomaly.detect(src, dst, score="rx")                  # still its own
    [again] = hsanomaly.detect_many([src], tmp_path / "many", score="rx")
    [skipped] = hsanomaly.detect_many([src], tmp_path / "many", score="rx")
    assert again.status == "scored" and skipped.status == "skipped"


def test_an_interrupted_run_beside_a_finished_one_of_other_settings_is_resumed_without_a_word(
        tmp_path):
    """A finished run, then one with another tile size interrupted: its resume continues the
    interrupted tiles, and was told that the finished run was "scored again"."""
    import warnings

    cube, _ = synthetic_cube()
    src, dst = write_raster(tmp_path / "scene.tif", cube), tmp_path / "out.tif"
    hsanomaly.detect(src, dst, score="rx")

    def interrupt(fraction, message):
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hsanomaly.detect(src, dst, score="rx", tile=16, callback=interrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = hsanomaly.detect(src, dst, score="rx", tile=16, resume=True)
    assert resumed.tiles_resumed > 0 and not resumed.earlier


def test_a_finished_run_of_a_subdataset_is_kept_after_its_project_moved(tmp_path):
    """A subdataset's fingerprint held its absolute GDAL name: once the project folder moved,
    its finished run was refused as another input's, and never kept (a plain .tif's was)."""
    cube, _ = synthetic_cube()
    (tmp_path / "a").mkdir()
    write_raster(tmp_path / "a" / "scene.tif", cube)
    hsanomaly.detect(f"GTIFF_DIR:1:{tmp_path}/a/scene.tif", tmp_path / "a" / "out.tif",
                     score="rx")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = f"GTIFF_DIR:1:{tmp_path}/b/scene.tif"
    assert hsanomaly.detect(moved, tmp_path / "b" / "out.tif", score="rx", resume=True).earlier
    hsanomaly.detect(moved, tmp_path / "b" / "out.tif", score="rx")     # its own: replaced
