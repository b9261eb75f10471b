"""Distributed detection on a real local Dask cluster (2 worker processes x 1 thread).

Every test compares against the single-process engine: distributed outputs must be the
same bytes, including after a worker is killed mid-run and after a resumed run.
"""

import os
import signal
import traceback
import warnings
from pathlib import Path

import numpy as np
import rasterio
import pytest
from click.testing import CliRunner

from synthetic import synthetic_cube, write_raster
import hsanomaly
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.io.checks import one_job, warn_once
from hsanomaly.io.source import RasterSource
from hsanomaly.scorers import GlobalRX
from hsanomaly.scorers.base import SCENE_MOMENTS, scene_moments

distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (the [dask] extra)")

from hsanomaly.cli.detect_many import detect_many as detect_many_command  # noqa: E402
from hsanomaly.cluster import dask_client  # noqa: E402
from hsanomaly.distributed import DaskExecutor, DistributedSource  # noqa: E402
from hsanomaly.engine import detect as run_engine  # noqa: E402

TILE = 16


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def detect_on_cluster(src, dst, scorer, cluster, **kwargs):
    """The engine with its Dask executor on ``cluster`` (a Client or a scheduler address)."""
    with dask_client(scheduler=cluster) as client:
        return run_engine(src, dst, scorer, executor=DaskExecutor(client), **kwargs)


def local_and_distributed(src, tmp_path, client, score, **kwargs):
    """Bytes of the single-process and the distributed heatmap of ``src``."""
    local, remote = tmp_path / f"{score}-local.tif", tmp_path / f"{score}-dask.tif"
    hsanomaly.detect(src, local, score=score, tile=TILE, progress=False)
    result = hsanomaly.detect(src, remote, score=score, tile=TILE, scheduler=client, progress=False,
                              **kwargs)
    return local.read_bytes(), remote.read_bytes(), result


@pytest.mark.parametrize("score", ["rx", "lrx", "gmm"])
def test_same_bytes_as_single_process(synthetic_raster, tmp_path, client, score):
    path, _, _ = synthetic_raster
    local, remote, result = local_and_distributed(path, tmp_path, client, score)
    assert result.tiles == 12 and not (tmp_path / f"{score}-dask.tif.partial").exists()
    assert local == remote


def test_an_exclusion_mask_travels_to_the_workers(synthetic_raster, tmp_path, client):
    """Tiles scored on workers leave the mask's pixels out as this process does."""
    path, truth, _ = synthetic_raster
    out = np.zeros((1,) + truth.shape, np.float32)
    out[0, 15:30, 5:20] = 1
    mask = write_raster(tmp_path / "mask.tif", out)
    local, remote = tmp_path / "local.tif", tmp_path / "dask.tif"
    hsanomaly.detect(path, local, score="gmm", tile=TILE, mask=mask)
    hsanomaly.detect(path, remote, score="gmm", tile=TILE, mask=mask, scheduler=client)
    assert local.read_bytes() == remote.read_bytes()
    hsanomaly.detect(path, tmp_path / "plain.tif", score="gmm", tile=TILE)
    assert local.read_bytes() != (tmp_path / "plain.tif").read_bytes()


def test_statistics_match_the_local_pass(synthetic_raster, client):
    """Many tiles, so the ordered fold spans several chunks; samples pick the same pixels,
    and fold the same moments on their pass (sources of their own: a source keeps its folds)."""
    source = RasterSource(synthetic_raster[0])
    cluster_source = DistributedSource(RasterSource(synthetic_raster[0]), client)
    for local, remote in zip(scene_moments(source, tile=4), scene_moments(cluster_source, tile=4)):
        assert np.array_equal(local, remote)
    assert np.array_equal(source.sample(300, seed=3, tile=4), cluster_source.sample(300, seed=3, tile=4))
    folding = DistributedSource(RasterSource(synthetic_raster[0]), client)
    with folding.folding(SCENE_MOMENTS):
        assert np.array_equal(folding.sample(300, seed=3, tile=4),
                              source.sample(300, seed=3, tile=4))
        folding.client = None                # the moments are the sample's: no cluster pass
        for local, remote in zip(scene_moments(source, tile=4), scene_moments(folding, tile=4)):
            assert np.array_equal(local, remote)
    maximum = cluster_source.reduce(lambda X: X.max(axis=0, initial=-np.inf), tile=4, combine=np.maximum)
    assert np.array_equal(maximum, source.sample(10**6).max(axis=0))


class WarnsOfItsTiles(GlobalRX):
    """RX that warns of each tile it scores, as the library warns of what it reads."""

    def score_block(self, block, valid):
        warn_once(f"tile of {block.shape[1]} rows: looked at")
        return super().score_block(block, valid)


class WarnsOfItsSample(RasterSource):
    def sample_tile(self, window, *args):
        warn_once("sampled")
        return super().sample_tile(window, *args)


def _warns_of_each_part(X):
    warn_once("folded")
    return X.sum(axis=0)


def test_warnings_on_the_workers_are_said_by_the_run_once_each(synthetic_raster, tmp_path, client):
    """A worker's warnings reach the run that asked for its tasks, not only the worker's
    stderr: each once, as in a local run, and again in the next run (a worker process said
    each message once for good)."""
    path, _, _ = synthetic_raster
    scorer = WarnsOfItsTiles()
    scorer.options_asked = {}
    for run in ("first", "second"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with one_job():         # a run of the library's, as hsanomaly.detect's
                detect_on_cluster(path, tmp_path / f"{run}.tif", scorer, tile=TILE, cluster=client)
        said = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
        assert said.count("tile of 16 rows: looked at") == 1, said
        assert all(w.filename == __file__ for w in caught if "looked at" in str(w.message))
    cluster_source = DistributedSource(WarnsOfItsSample(path), client)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with one_job():
            cluster_source.reduce(_warns_of_each_part, tile=4)
            cluster_source.sample(300, seed=3, tile=4)
    assert [str(w.message) for w in caught] == ["folded", "sampled"]


class WarnsThenFails(GlobalRX):
    def score_block(self, block, valid):
        warn_once("band 3 looks odd")
        raise HsanomalyError("the tile failed")


def test_a_task_that_warns_and_fails_says_its_warnings_with_its_error(synthetic_raster, tmp_path,
                                                                      client):
    """A warning just before a failure often explains it: said with the error, as locally."""
    scorer = WarnsThenFails()
    scorer.options_asked = {}
    with pytest.warns(HsanomalyWarning, match="^band 3 looks odd$"), \
            pytest.raises(HsanomalyError, match="the tile failed"), one_job():
        detect_on_cluster(synthetic_raster[0], tmp_path / "x.tif", scorer, tile=TILE,
                          cluster=client)


def _warns_or_fails_late(X):
    """A tile's part that warns, or, for the tile holding the marker, fails a moment later."""
    if (X == MARKER).any():
        import time

        time.sleep(1)       # the other tiles finish first
        raise ValueError("this tile failed")
    warn_once("folded")
    return X.sum(axis=0)


MARKER = -12345.0


def test_a_fit_that_fails_on_one_tile_says_the_warnings_of_those_finished(tmp_path, client):
    """The fit's parts travel with the fold, which a failed tile ends: the warnings of the
    tiles finished before it were lost with it."""
    cube, _ = synthetic_cube(rows=24, cols=24)
    cube[:, 20, 20] = MARKER
    source = RasterSource(write_raster(tmp_path / "scene.tif", cube))
    with pytest.warns(HsanomalyWarning, match="^folded$"), \
            pytest.raises(ValueError, match="this tile failed"), one_job():
        DistributedSource(source, client).reduce(_warns_or_fails_late, tile=8)


class KillsItsWorker(GlobalRX):
    """RX that kills the worker process scoring its first tile (once per run, via a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def score_block(self, block, valid):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().score_block(block, valid)
        os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_loses_no_tile(synthetic_raster, tmp_path, client):
    path, _, _ = synthetic_raster
    hsanomaly.detect(path, tmp_path / "local.tif", score="rx", tile=TILE, progress=False)
    pids = set(client.run(os.getpid).values())
    marker = tmp_path / "killed"
    killer = KillsItsWorker(marker)
    killer.options_asked = {}      # asked of rx as detect asks it: the same record, byte for byte
    result = detect_on_cluster(path, tmp_path / "dask.tif", killer, tile=TILE, cluster=client)
    assert marker.exists() and pids - set(client.run(os.getpid).values())
    assert result.tiles == 12
    assert (tmp_path / "dask.tif").read_bytes() == (tmp_path / "local.tif").read_bytes()


class AlwaysKillsItsWorker(GlobalRX):
    def score_block(self, block, valid):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_tile_that_keeps_killing_workers_stops_the_run(synthetic_raster, tmp_path):
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=":0") as cluster:
        # --resume and a smaller tile together are refused: each is said as the other way
        with pytest.raises(HsanomalyError, match=r"died 1 times \(out of memory\?\); the finished "
                                                 r"tiles are kept: rerun with resume=True on "
                                                 r"workers of more memory, or run again with a "
                                                 r"smaller 'tile', which starts over$"):
            detect_on_cluster(synthetic_raster[0], tmp_path / "x.tif", AlwaysKillsItsWorker(),
                               cluster=cluster.scheduler_address)
    assert not (tmp_path / "x.tif").exists()


class FailsOnFourthTile(GlobalRX):
    """RX whose copy on each worker fails on the fourth tile it scores: an interrupted run."""

    scored = 0

    def score_block(self, block, valid):
        self.scored += 1
        if self.scored == 4:
            raise RuntimeError("interrupted")
        return super().score_block(block, valid)


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path, client):
    cube, _ = synthetic_cube(rows=48, cols=64)
    path = write_raster(tmp_path / "scene.tif", cube)
    with pytest.raises(RuntimeError, match="interrupted"):
        detect_on_cluster(path, tmp_path / "rx-dask.tif", FailsOnFourthTile(), tile=TILE,
                           cluster=client)
    assert not (tmp_path / "rx-dask.tif").exists()
    local, remote, result = local_and_distributed(path, tmp_path, client, "rx", resume=True)
    assert 0 < result.tiles_resumed < result.tiles == 12
    assert local == remote


def test_detect_many_skips_finished_rasters(tmp_path, client):
    inputs = []
    for seed in range(2):
        cube, _ = synthetic_cube(seed=seed)
        inputs.append(str(write_raster(tmp_path / f"scene{seed}.tif", cube)))
    out_dir = tmp_path / "out"
    address = client.scheduler.address
    first = CliRunner().invoke(detect_many_command, [*inputs, "--out-dir", str(out_dir), "--score",
                                                     "lrx", "--outer", "7", "--guard", "3",
                                                     "--scheduler", address, "--quiet"])
    assert first.exit_code == 0, first.output
    assert "2 scored, 0 skipped, 0 failed" in first.output
    written = out_dir / "scene1_lrx.tif"
    single = tmp_path / "single.tif"
    hsanomaly.detect(inputs[1], single, score="lrx", outer=7, guard=3, progress=False)
    assert written.read_bytes() == single.read_bytes()
    mtime = written.stat().st_mtime_ns
    again = hsanomaly.detect_many(inputs, out_dir, score="lrx", outer=7, guard=3,
                        scheduler=address, progress=False)
    assert [item.status for item in again] == ["skipped", "skipped"]
    assert written.stat().st_mtime_ns == mtime


def test_detect_many_scores_again_a_heatmap_of_an_earlier_format(tmp_path, monkeypatch):
    """The rings' scaling changed lrx's heatmaps for the same settings: one written before it
    was taken for current and skipped. The store's format is part of the run's fingerprint."""
    from hsanomaly.engine import store

    cube, _ = synthetic_cube()
    src = str(write_raster(tmp_path / "scene.tif", cube))
    monkeypatch.setattr(store, "FORMAT_VERSION", store.FORMAT_VERSION - 1)
    first = hsanomaly.detect_many([src], tmp_path / "out", score="lrx", outer=7, guard=3,
                                  progress=False)
    monkeypatch.undo()
    again = hsanomaly.detect_many([src], tmp_path / "out", score="lrx", outer=7, guard=3,
                                  progress=False)
    assert [item.status for item in first + again] == ["scored", "scored"]


def test_detect_many_scores_again_a_heatmap_damaged_since(tmp_path):
    """A heatmap whose pixels no longer read (its header and tags whole) was skipped as
    finished, and the batch said all was done; it is scored again, with a word why."""
    cube, _ = synthetic_cube()
    src = str(write_raster(tmp_path / "scene.tif", cube))
    [first] = hsanomaly.detect_many([src], tmp_path / "out", score="rx", progress=False)
    with rasterio.open(first.dst) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        whole = ds.read(1)
    with open(first.dst, "r+b") as f:
        f.seek(offset)
        f.write(b"\x55" * 256)
    with pytest.warns(HsanomalyWarning, match=r"scene_rx.tif: cannot read pixels, the file is "
                                              r"truncated or corrupt .*; scored again"):
        [again] = hsanomaly.detect_many([src], tmp_path / "out", score="rx", progress=False)
    assert again.status == "scored"
    with rasterio.open(again.dst) as ds:
        np.testing.assert_array_equal(ds.read(1), whole)


def test_detect_many_reports_a_failed_raster_and_goes_on(tmp_path):
    cube, _ = synthetic_cube()
    good = write_raster(tmp_path / "good.tif", cube)
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    items = hsanomaly.detect_many([bad, good], tmp_path / "out", score="rx", progress=False)
    assert [item.status for item in items] == ["failed", "scored"]
    assert "not a raster GDAL can read" in items[0].error
    assert isinstance(items[0].exception, hsanomaly.HsanomalyError) and items[1].exception is None


def test_a_batch_keeps_a_failed_rasters_exception_and_logs_a_bugs_traceback(tmp_path,
                                                                           monkeypatch, caplog):
    """A bug in one raster's run was a line of text on its item: its class, traceback and
    cause went, and nothing was logged (the contract audit's F03)."""
    import logging

    from hsanomaly.scorers import GlobalRX

    def bug(self, X):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(GlobalRX, "score_samples", bug)
    cube, _ = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)
    with caplog.at_level(logging.DEBUG, logger="hsanomaly"):
        [item] = hsanomaly.detect_many([path], tmp_path / "out", score="rx")
    assert item.error == f"{path}: ZeroDivisionError: division by zero"
    assert isinstance(item.exception, ZeroDivisionError)
    assert "bug" in [frame.name for frame in traceback.extract_tb(item.exception.__traceback__)]
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == f"{path} failed" and record.exc_info[1] is item.exception
    assert "exception=" not in repr(item)


def test_detect_many_tells_each_rasters_progress_and_a_cancel_stops_the_batch(tmp_path):
    cube, _ = synthetic_cube()
    rasters = [write_raster(tmp_path / f"{name}.tif", cube) for name in ("a", "b", "c")]
    heard = []
    items = hsanomaly.detect_many(rasters, tmp_path / "out", score="rx", tile=16,
                                  callback=lambda fraction, message: heard.append(message))
    assert [item.status for item in items] == ["scored"] * 3
    assert {message.split(": ")[0] for message in heard} == {"a.tif", "b.tif", "c.tif"}
    items = hsanomaly.detect_many(rasters, tmp_path / "again", score="rx", tile=16,
                                  callback=lambda fraction, message: message.startswith("b.tif"))
    assert [item.status for item in items] == ["scored", "failed", "failed"]
    assert items[1].error.endswith("cancelled") and "batch was cancelled" in items[2].error
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["a_rx.tif"]
    # a cancel as a finished raster's drawings are about to be drawn: none is (review 1 F04)
    items = hsanomaly.detect_many(rasters, tmp_path / "again", score="rx", tile=16,
                                  polygons=True, threshold=5, png=True,
                                  callback=lambda fraction, message: True)
    assert [item.status for item in items] == ["failed"] * 3
    assert items[0].error.endswith("cancelled before drawing from its kept heatmap")
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["a_rx.tif"]


def test_detect_many_hands_over_each_raster_once_settled_in_order(tmp_path):
    """A batch's command printed its lines only once every raster was scored: a long batch, or
    one killed, said nothing of the rasters it had finished."""
    cube, _ = synthetic_cube()
    rasters = [write_raster(tmp_path / f"{name}.tif", cube) for name in ("a", "b", "c")]
    hsanomaly.detect_many(rasters[1:2], tmp_path / "out", score="rx", tile=16)    # b: skipped
    heard = []
    items = hsanomaly.detect_many(
        [*rasters, tmp_path / "missing.tif"], tmp_path / "out", score="rx", tile=16,
        callback=lambda fraction, message: heard.append(message.split(": ")[0]),
        settled=lambda item: heard.append((Path(item.src).name, item.status)))
    assert [item.status for item in items] == ["scored", "skipped", "scored", "failed"]
    told = [event for event in heard if isinstance(event, tuple)]
    assert told == [("a.tif", "scored"), ("b.tif", "skipped"), ("c.tif", "scored"),
                    ("missing.tif", "failed")]
    # a raster is told before the next one's scoring starts
    assert heard.index(("b.tif", "skipped")) < heard.index("c.tif")
    assert heard.index(("a.tif", "scored")) < heard.index("c.tif")
    with pytest.raises(HsanomalyError, match="'settled' must be None or a function"):
        hsanomaly.detect_many(rasters, tmp_path / "out", settled="print")


def test_a_store_whose_manifest_cannot_be_read_fails_its_raster_alone(tmp_path, monkeypatch):
    """A colleague's interrupted run whose manifest one may not read (stores were 0600) made
    the whole batch fail, none scored; it fails that raster alone, saying why, and its tiles
    are not removed (as starting over would)."""
    from hsanomaly.engine import store

    cube, _ = synthetic_cube(rows=16, cols=16)
    rasters = [write_raster(tmp_path / f"{name}.tif", cube) for name in "ab"]
    partial = store.store_path(tmp_path / "out" / "a_rx.tif")
    partial.mkdir(parents=True)
    (partial / store.MANIFEST).write_text("{}")
    real_read, real_access = store.read_small, os.access

    def refused(path, *args, **kwargs):
        if Path(path).name == store.MANIFEST:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, *args, **kwargs)
    monkeypatch.setattr(store, "read_small", refused)
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: Path(path).name != store.MANIFEST
                        and real_access(path, mode, *a, **k))
    told = []
    items = hsanomaly.detect_many(rasters, tmp_path / "out", score="rx", tile=16,
                                  settled=told.append)
    assert [item.status for item in items] == ["failed", "scored"] and told == items
    assert "cannot read the interrupted run's manifest (permission denied)" in items[0].error
    assert (partial / store.MANIFEST).exists()


def test_a_batch_leaves_its_own_outputs_out_of_a_pattern_saying_how_many(tmp_path):
    cube, _ = synthetic_cube(rows=16, cols=16)
    rasters = [write_raster(tmp_path / f"{name}.tif", cube) for name in "abcde"]
    hsanomaly.detect_many(rasters, tmp_path, score="rx", tile=16)
    with pytest.warns(HsanomalyWarning, match=r"_rx.tif and 2 more: left out of the inputs"):
        items = hsanomaly.detect_many(tmp_path / "*.tif", tmp_path, score="rx", tile=16)
    assert [item.status for item in items] == ["skipped"] * 5


def test_outputs_that_would_collide_are_refused(tmp_path):
    with pytest.raises(HsanomalyError, match="would overwrite"):
        hsanomaly.detect_many([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"], tmp_path, progress=False)
    # apart only by case: one file on macOS's and Windows' disks, the second replacing the first
    with pytest.raises(HsanomalyError, match=r"X.tif: its output .*X_rx.tif would overwrite that "
                                             r"of .*a/x.tif \(.*x_rx.tif: one file on macOS and "
                                             r"Windows disks\)"):
        hsanomaly.detect_many([tmp_path / "a" / "x.tif", tmp_path / "b" / "X.tif"], tmp_path,
                              score="rx")
    # the model's folder as the batch's: refused for the batch, not for each raster in it
    scene = write_raster(tmp_path / "scene.tif", synthetic_cube()[0])
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(HsanomalyError, match="scene_resrx.tif: the output of .*scene.tif lies in "
                                             "the input 'model'"):
        hsanomaly.detect_many([scene], model, score="resrx", model=model)
    assert list(model.iterdir()) == []


def test_a_scheduler_port_out_of_range_and_an_out_dir_that_cannot_be_made_are_refused(
        synthetic_raster, tmp_path):
    with pytest.raises(HsanomalyError, match="scheduler='tcp://127.0.0.1:70000': port 70000 is out "
                                             "of range"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx",
                         scheduler="tcp://127.0.0.1:70000")
    (tmp_path / "a file").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(HsanomalyError, match=r"a file/out: cannot create 'out_dir'"):
        hsanomaly.detect_many([synthetic_raster[0]], tmp_path / "a file" / "out", score="rx")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("scheduler", [8786, ("localhost", 8786), "PATH"])
def test_a_scheduler_of_another_kind_is_refused_in_one_line(synthetic_raster, tmp_path,
                                                            scheduler):
    """An int, a tuple or a path passed the check and failed in the connection with
    AttributeError: 'int' object has no attribute 'startswith'."""
    from pathlib import Path

    scheduler = Path("localhost:8786") if scheduler == "PATH" else scheduler
    with pytest.raises(HsanomalyError, match=r"'scheduler': expected a Dask scheduler's address "
                                             r"\(text, such as tcp://host:8786\) or a "
                                             r"distributed.Client, got an? "
                                             + type(scheduler).__name__):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", scheduler=scheduler)
    assert not (tmp_path / "x.tif").exists()


def test_a_client_of_a_subclass_is_taken_as_a_client():
    """The kind check compared the class's name: a subclass of distributed.Client was
    refused, saying it expected a distributed.Client."""
    distributed = pytest.importorskip("distributed")
    from hsanomaly.cluster import check_execution

    class MyClient(distributed.Client):
        pass

    check_execution(None, MyClient.__new__(MyClient))       # not connected: the kind is checked


def test_a_scheduler_that_does_not_answer_is_refused_before_a_quick_model_trains(
        synthetic_raster, tmp_path, monkeypatch):
    """Found when the client was opened, after the training (minutes to hours on a real
    scene), whose model was then thrown away."""
    pytest.importorskip("torch")
    import hsanomaly.training

    trained, before = [], sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(hsanomaly.training, "train", lambda *a, **k: trained.append(a))
    with pytest.raises(HsanomalyError, match="tcp://127.0.0.1:1: no Dask scheduler answers"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", scheduler="tcp://127.0.0.1:1")
    assert trained == [] and sorted(tmp_path.rglob("*")) == before


def test_workers_and_scheduler_exclude_each_other(synthetic_raster, tmp_path):
    with pytest.raises(HsanomalyError, match="either"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", workers=2,
                         scheduler="tcp://127.0.0.1:1", progress=False)


def test_detect_many_never_replaces_a_file_it_did_not_write(tmp_path):
    cube, _ = synthetic_cube()
    scene = write_raster(tmp_path / "scene.tif", cube)
    other = write_raster(tmp_path / "other.tif", synthetic_cube(seed=1)[0])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    theirs = write_raster(out_dir / "other_rx.tif", cube[:2])       # a user's file, same name
    before = theirs.read_bytes()
    with pytest.raises(HsanomalyError, match="other_rx.tif: the output of .*other.tif exists and "
                                             "is not a heatmap written by hsanomaly"):
        hsanomaly.detect_many([scene, other], out_dir, score="rx", progress=False)
    assert theirs.read_bytes() == before and sorted(p.name for p in out_dir.iterdir()) == ["other_rx.tif"]
    items = hsanomaly.detect_many([scene, other], out_dir, score="rx", overwrite=True, progress=False)
    assert [item.status for item in items] == ["scored", "scored"]
    assert theirs.read_bytes() != before


def test_a_lost_cluster_is_one_line_with_the_way_to_resume():
    """The scheduler killed mid-run ended in an 81-line traceback; the tiles were kept."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    from hsanomaly.engine.checks import runtime_error
    from hsanomaly.engine.store import batch_resumes

    for err in (FutureCancelledError("tile-3", "scheduler-connection-lost"),
                CommClosedError("in <TCP (closed)>: Stream is closed")):
        message = str(runtime_error(err, "heat.tif"))
        assert message.startswith("heat.tif: ") and "rerun with resume=True" in message, message
        assert "\n" not in message
        with batch_resumes():       # detect-many has no --resume: rerunning it resumes
            message = str(runtime_error(err, "heat.tif"))
        assert message.endswith("finished tiles are kept: rerun the batch, which resumes it")


@pytest.fixture
def short_worker_wait(monkeypatch):
    from hsanomaly import cluster, workers as hs_workers

    monkeypatch.setattr(cluster, "WORKER_WAIT", 1)
    monkeypatch.setattr(hs_workers, "WORKER_POLL", 0.2)


def test_a_cluster_that_never_gets_a_worker_stops_in_one_line(synthetic_raster, tmp_path,
                                                              short_worker_wait, caplog):
    """--scheduler with no worker waited for good (611 s in the audit), first without a word."""
    import logging

    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as cluster, \
            caplog.at_level(logging.WARNING, logger="hsanomaly"):
        with pytest.raises(HsanomalyError, match=r"scene.tif: the Dask cluster has had no worker "
                                                 r"for 1 s while fitting the score; nothing was "
                                                 r"written$"):
            hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE,
                             scheduler=cluster.scheduler_address, progress=False)
    assert caplog.text.count("no worker;") == 1
    assert ("scene.tif: the Dask cluster has no worker; the run waits up to 1 s for one to join "
            f"(dask worker {cluster.scheduler_address})") in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("given, stops", [("1.5s", True), (2, True), ("soon", False),
                                           (-3, False)])
def test_dasks_config_sets_the_wait_for_a_worker(synthetic_raster, tmp_path, monkeypatch, given,
                                                 stops):
    """Ten minutes is short for workers from a slow batch queue: Dask's config key
    hsanomaly.worker-wait (DASK_HSANOMALY__WORKER_WAIT) sets the wait, checked in one line."""
    import dask

    from hsanomaly import workers as hs_workers

    monkeypatch.setattr(hs_workers, "WORKER_POLL", 0.2)
    said = (rf"no worker for {float(given[:-1]) if isinstance(given, str) else given:g} s "
            r"while fitting") if stops else \
        rf"hsanomaly.worker-wait \(Dask's config\): {given!r} is no wait"
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as cluster, \
            dask.config.set({"hsanomaly.worker-wait": given}):
        with pytest.raises(HsanomalyError, match=said):
            hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE,
                             scheduler=cluster.scheduler_address, progress=False)


def test_a_run_whose_workers_all_left_stops_keeping_its_tiles(tmp_path, short_worker_wait):
    """Every worker of a --scheduler cluster gone mid-run left the run waiting without a word
    (the parity audit's F2); it stops now, and the kept tiles resume to the same bytes."""
    cube, _ = synthetic_cube(rows=48, cols=64)
    path = write_raster(tmp_path / "scene.tif", cube)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        def leave(fraction, message):       # after the first tile, every worker goes
            if fraction > 0 and len(cluster.workers):
                cluster.scale(0)
                cluster.sync(cluster._correct_state)

        with pytest.raises(HsanomalyError, match=r"dask.tif.partial: the Dask cluster has had no "
                                                 r"worker for 1 s; rerun with resume=True: the "
                                                 r"finished tiles are kept$"):
            detect_on_cluster(path, tmp_path / "dask.tif", GlobalRX(), tile=TILE,
                              cluster=cluster.scheduler_address, callback=leave)
        assert not (tmp_path / "dask.tif").exists() and (tmp_path / "dask.tif.partial").is_dir()
        cluster.scale(1)
        cluster.wait_for_workers(1, timeout=120)    # a worker slow to start is no worker gone
        result = hsanomaly.detect(path, tmp_path / "dask.tif", score="rx", tile=TILE,
                                  scheduler=cluster.scheduler_address, resume=True, progress=False)
    assert 0 < result.tiles_resumed < result.tiles == 12
    hsanomaly.detect(path, tmp_path / "local.tif", score="rx", tile=TILE, progress=False)
    assert (tmp_path / "dask.tif").read_bytes() == (tmp_path / "local.tif").read_bytes()


class SlowToLoad:
    """A result whose unpickling takes ``seconds``: a large result over a slow link."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __reduce__(self):
        return _loaded_slowly, (self.seconds,)


def _loaded_slowly(seconds):
    import time

    time.sleep(seconds)
    return "loaded"


def test_a_result_slower_to_fetch_than_a_look_at_the_workers_arrives(short_worker_wait):
    """Each look at the workers cut the fetch short and started it again: a result taking
    longer than WORKER_POLL to arrive never did (the review's F1)."""
    import time

    from hsanomaly.workers import Watch

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        futures = [client.submit(SlowToLoad, 0.6, pure=False) for _ in range(2)]
        while not all(future.done() for future in futures):     # computed, not fetched
            time.sleep(0.05)
        watch = Watch(client, "x")
        assert watch.result(futures[0]) == "loaded"
        assert list(watch.finished(futures[1:])) == [(0, "loaded")]
        watch.close()


def test_a_run_that_moves_is_not_alone_any_more(short_worker_wait, monkeypatch, caplog):
    """A run that waited for its first worker kept that wait's start: when a worker later
    left for a moment, the run stopped at once, saying it had had none all along (the
    review's F2)."""
    import logging
    import threading

    from hsanomaly import cluster as hs_cluster, workers as hs_workers
    from hsanomaly.workers import Watch

    monkeypatch.setattr(hs_cluster, "WORKER_WAIT", 60)
    monkeypatch.setattr(hs_workers, "ALONE_SAY", 0.2)
    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, \
            caplog.at_level(logging.WARNING, logger="hsanomaly"):
        threading.Timer(0.5, cluster.scale, (1,)).start()
        watch = Watch(client, "heat.tif.partial")
        results = []
        for _, result in watch.finished(client.map(abs, [-1, -2, -3], pure=False)):
            results.append(result)
            assert watch.alone_since is None
        watch.close()
    assert sorted(results) == [1, 2, 3] and "the Dask cluster has no worker" in caplog.text


def test_a_batch_stops_at_the_first_raster_that_finds_no_worker(tmp_path, short_worker_wait):
    """Each raster of detect-many waited WORKER_WAIT in turn on the same empty cluster: 17
    hours for 100 rasters before a word (the review's F3)."""
    import time

    inputs = [str(write_raster(tmp_path / f"scene{i}.tif", synthetic_cube(seed=i)[0]))
              for i in range(3)]
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as cluster:
        start = time.monotonic()
        items = hsanomaly.detect_many(inputs, tmp_path / "out", score="rx",
                                      scheduler=cluster.scheduler_address, progress=False)
        took = time.monotonic() - start
    assert [item.status for item in items] == ["failed"] * 3
    assert "the Dask cluster has had no worker for 1 s while fitting" in items[0].error
    assert items[1].error == (f"{inputs[1]}: not scored: the Dask cluster had no worker "
                              f"(scoring {inputs[0]}); rerun the batch once it has")
    assert took < 10


def test_a_batch_goes_on_once_its_cluster_has_a_worker_again(tmp_path, short_worker_wait,
                                                             monkeypatch):
    """A worker that joined just after the first raster found none: the others failed with it
    (the re-review's R3). They are scored now, the first one failed in one line."""
    from hsanomaly import batch
    from hsanomaly.errors import NoWorkers

    inputs = [str(write_raster(tmp_path / f"scene{i}.tif", synthetic_cube(seed=i)[0]))
              for i in range(3)]
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        def detect_then_a_worker_joins(*args, **kwargs):     # the real run, found alone
            try:
                return hsanomaly.detect(*args, **kwargs)
            except NoWorkers:
                cluster.scale(1)
                client.wait_for_workers(1)
                raise

        monkeypatch.setattr(batch, "detect", detect_then_a_worker_joins)
        items = hsanomaly.detect_many(inputs, tmp_path / "out", score="rx", scheduler=client,
                                      progress=False)
    assert [item.status for item in items] == ["failed", "scored", "scored"]


def test_a_source_and_a_model_travel_by_absolute_path(tmp_path, monkeypatch):
    """A Dask worker runs in its own working directory: a relative input or model given to
    the driver was opened there relative to the worker's ("file not found"; "codebook.z.npy
    is gone since the model was loaded"). Both travel by their absolute paths now, messages
    keep the names given, and an input a worker cannot see says so and where."""
    import pickle

    from rasterio.windows import Window

    from hsanomaly.model import load_bundle
    from test_latent import tiny_bundle

    monkeypatch.chdir(tmp_path)
    write_raster(tmp_path / "scene.tif", synthetic_cube(bands=6, rows=12, cols=10)[0])
    tiny_bundle(tmp_path)
    source, bundle = RasterSource("scene.tif"), load_bundle("tiny-model")
    expected = source.read(Window(0, 0, 10, 12))[0]
    travelled = pickle.loads(pickle.dumps((source, bundle)))
    lost = pickle.loads(pickle.dumps(source))
    (tmp_path / "worker").mkdir()
    monkeypatch.chdir(tmp_path / "worker")
    copy, model = travelled
    assert copy.name == "scene.tif"
    np.testing.assert_array_equal(copy.read(Window(0, 0, 10, 12))[0], expected)
    assert model.path == tmp_path / "tiny-model" and len(model.codebook.load()[0]) > 0
    os.rename(tmp_path / "scene.tif", tmp_path / "moved.tif")
    with pytest.raises(HsanomalyError, match=r"^scene.tif: not found on worker host .* \(as "
                                             f"{tmp_path}/scene.tif\\); inputs must be readable"):
        lost.read(Window(0, 0, 10, 12))


def test_a_source_and_a_model_named_through_a_link_and_dotdot_travel_to_those_files(
        tmp_path, monkeypatch):
    """'link/..' names the parent of the link's target, as the kernel reads it; made absolute
    as text it named the folder the link is in: a worker read another file of the input's
    name there, and a model was loaded from another folder."""
    import pickle

    from rasterio.windows import Window

    from hsanomaly.model import load_bundle
    from test_latent import tiny_bundle

    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep" / "inner").mkdir(parents=True)
    cube = synthetic_cube(bands=6, rows=12, cols=10)[0]
    write_raster(tmp_path / "deep" / "scene.tif", cube)
    write_raster(tmp_path / "scene.tif", cube[:, ::-1].copy())     # the file the text names
    tiny_bundle(tmp_path / "deep")
    (tmp_path / "jump").symlink_to(tmp_path / "deep" / "inner")
    source = RasterSource("jump/../scene.tif")
    expected = source.read(Window(0, 0, 10, 12))[0]
    travelled = pickle.loads(pickle.dumps(source))
    (tmp_path / "worker").mkdir()
    monkeypatch.chdir(tmp_path / "worker")
    np.testing.assert_array_equal(travelled.read(Window(0, 0, 10, 12))[0], expected)
    assert not travelled.changed()
    monkeypatch.chdir(tmp_path)
    assert load_bundle("jump/../tiny-model").path == tmp_path / "deep" / "tiny-model"


def test_the_command_line_keeps_dask_s_own_logs_quiet(monkeypatch):
    """A scheduler lost mid-run printed about 35 lines of Dask's tracebacks (its client
    logger's) before the command's one line. The CLI lowers Dask's loggers, which Dask sets
    when first imported, so they are lowered after that import."""
    import logging

    import hsanomaly.cluster as cluster

    names = ["distributed", "distributed.client", "distributed.worker"]
    before = {name: logging.getLogger(name).level for name in names}
    for name in names:          # as Dask leaves them (an earlier command may have lowered them)
        logging.getLogger(name).setLevel(logging.WARNING)
    monkeypatch.setattr(cluster, "_quiet", None)
    cluster.import_distributed()
    assert logging.getLogger("distributed.client").getEffectiveLevel() < logging.CRITICAL
    try:
        with cluster.quiet_dask():
            cluster.import_distributed()
            assert all(logging.getLogger(n).getEffectiveLevel() == logging.CRITICAL for n in names)
        # a command run in-process (click's CliRunner) leaves Dask's loggers as they were
        assert cluster._quiet is None
        assert [logging.getLogger(n).level for n in names] == [logging.WARNING] * 3
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("speaks, said", [
    (b"", "no Dask scheduler answers within 2 s"),
    (b"SSH-2.0-OpenSSH_8.9\r\n" * 20, "what answers there is no Dask scheduler$")])
def test_an_address_where_no_dask_scheduler_answers_is_refused_in_time(tmp_path, monkeypatch,
                                                                       speaks, said):
    """A port that accepts and stays silent (a web server) kept the run waiting for good;
    one that sends another service's bytes ended in "out of memory" and a traceback, then in
    "no Dask scheduler answers within 10 s (out of memory)" after 2 s (the Dask audit)."""
    import socket
    import threading
    import time

    import hsanomaly.cluster as cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        peer, _ = server.accept()
        peer.sendall(speaks)
        time.sleep(5)
        peer.close()
    threading.Thread(target=serve, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(HsanomalyError, match=f"{address}: {said}"):
        with cluster.dask_client(scheduler=address):
            pass
    assert time.monotonic() - start < 10
    server.close()


def test_a_tls_address_without_tls_settings_is_one_line():
    import hsanomaly.cluster as cluster

    with pytest.raises(HsanomalyError, match=r"tls://127.0.0.1:1: no Dask scheduler answers "
                                             r"within 10 s \(TLS expects"):
        with cluster.dask_client(scheduler="tls://127.0.0.1:1"):
            pass


def test_a_batch_store_keeps_its_resume_hint_on_a_worker(tmp_path):
    """A tile write that failed on a Dask worker advised --resume, which detect-many lacks:
    the batch's wording lived in the driver's context only."""
    import pickle

    from hsanomaly.engine.store import TileStore, batch_resumes

    with batch_resumes():
        store = TileStore(tmp_path / "h.tif.partial", {"input": {"size": 1}, "config": {}})
    store.put(0, {"score": np.zeros((1, 2, 2), np.float32)})
    on_worker = pickle.loads(pickle.dumps(store))
    message = str(on_worker._write_error(OSError(28, "No space left on device")))
    assert message.endswith("the finished tiles are kept: once there is room, rerun the "
                            "batch, which resumes it")
    store.release()


def test_without_dask_a_batch_is_refused_before_its_output_folder_is_made(synthetic_raster,
                                                                          tmp_path, monkeypatch):
    """``detect-many --workers`` without the [dask] extra made an empty --out-dir, then said
    Dask was missing (the packaging audit's F8)."""
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)       # as if not installed
    with pytest.raises(HsanomalyError, match=r"need Dask: pip install 'hsanomaly\[dask\]'"):
        hsanomaly.detect_many([synthetic_raster[0]], tmp_path / "out", score="rx", workers=2)
    assert not (tmp_path / "out").exists()


def test_the_workers_are_counted_by_schedulers_before_distributed_2025_4_too():
    """``scheduler_info(n_workers=0)`` is refused before distributed 2025.4: the count was
    taken for an unanswering scheduler, and a cluster without a worker was waited on for
    good (the packaging audit's F3)."""
    from hsanomaly.cluster import worker_count

    class Older:
        def scheduler_info(self, **kwargs):
            if kwargs:
                raise TypeError("unexpected keyword argument 'n_workers'")
            return {"workers": {"tcp://a": {}, "tcp://b": {}}}

    class Lost:
        def scheduler_info(self, **kwargs):
            raise OSError("Timed out trying to connect")

    class OlderLost(Older):           # answers from its cache: no worker, taken for none
        status = "connecting"

    assert worker_count(Older()) == 2 and worker_count(Lost()) is None
    assert worker_count(OlderLost()) is None


def test_a_bad_wait_for_a_worker_is_refused_before_any_work(synthetic_raster, tmp_path):
    """An empty value (``export DASK_HSANOMALY__WORKER_WAIT=``, to clear it) ended in an
    IndexError traceback; any bad one was refused once the run reached the cluster, after
    the quick model had trained."""
    import dask

    for given in ("", "abc"):
        with dask.config.set({"hsanomaly.worker-wait": given}), \
                pytest.raises(HsanomalyError, match=rf"{given!r} is no wait"):
            hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_local_cluster_leaves_the_callers_environment_as_it_was(synthetic_raster, tmp_path):
    """Dask's nanny wrote its workers' settings into the caller's os.environ: the caller's
    later subprocesses ran on one thread (OMP_NUM_THREADS=1) and kept MALLOC_TRIM_THRESHOLD_."""
    import os

    import sklearn    # noqa: F401 - sets KMP_DUPLICATE_LIB_OK on its first import, as it may

    before = dict(os.environ)
    hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE, workers=1,
                     progress=False)
    assert dict(os.environ) == before


def test_a_worker_sets_glibcs_thresholds_once_where_dask_fixed_them(monkeypatch):
    """With Dask's MALLOC_TRIM_THRESHOLD_ every large temporary was mapped and unmapped again
    (workers spent a large share of their time in the kernel); a process without it is left
    to glibc."""
    import ctypes

    from hsanomaly import runtime

    calls = []

    class Libc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    for given in (None, "1048576"):          # none, or the user's own: left to glibc
        if given is None:
            monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
        else:
            monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", given)
        runtime.malloc_as_alone.cache_clear()
        runtime.malloc_as_alone()
        assert calls == []
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(distributed_config_trim()))
    runtime.malloc_as_alone.cache_clear()
    runtime.malloc_as_alone()
    runtime.malloc_as_alone()
    runtime.malloc_as_alone.cache_clear()
    assert calls == [(-3, 32 << 20), (-1, 64 << 20)]


def distributed_config_trim():
    import dask

    return dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_")


def test_workers_dying_before_any_tile_say_so_and_promise_no_tiles():
    """Workers killed for memory while fitting the score were "the Dask cluster was lost while
    scoring ...; the finished tiles are kept", with no tile and the cluster still up."""
    from distributed import KilledWorker

    from hsanomaly.engine.checks import runtime_error

    from types import SimpleNamespace

    died = KilledWorker("_reduce_tile-1", SimpleNamespace(address="tcp://w:1"), 3)
    message = str(runtime_error(died, "heat.tif", kept=False))
    assert message == ("heat.tif: the Dask workers running one task died each time it ran (out "
                       "of memory?); nothing was written")


def test_a_batch_that_lost_its_scheduler_fails_the_rest_in_one_line(synthetic_raster, tmp_path,
                                                                      monkeypatch):
    """Each raster after a lost scheduler failed on the closed client with its own Dask error
    and "the finished tiles are kept", for rasters never started."""
    import hsanomaly.batch

    scenes = [synthetic_raster[0]] + [write_raster(tmp_path / f"s{i}.tif", synthetic_cube()[0])
                                      for i in (1, 2)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") \
            as cluster, distributed.Client(cluster, set_as_default=False) as client:
        real = hsanomaly.batch.detect

        def loses_the_scheduler(src, *args, **kwargs):
            client.close()                 # as a scheduler gone mid-run leaves the client
            return real(src, *args, **kwargs)

        monkeypatch.setattr(hsanomaly.batch, "detect", loses_the_scheduler)
        items = hsanomaly.detect_many(scenes, tmp_path / "out", score="rx", scheduler=client,
                                      progress=False)
    assert [item.status for item in items] == ["failed"] * 3
    for item in items[1:]:
        assert item.error == (f"{item.src}: not scored: the Dask scheduler was lost (scoring "
                              f"{scenes[0]}); rerun the batch")


def test_a_local_clusters_workers_leave_ctrl_c_to_the_command():
    """A terminal's Ctrl-C reaches every process of the command: each worker printed its
    KeyboardInterrupt traceback around the command's one line, and so did a worker the
    nanny restarted (after one died) until they took it from their own start."""
    from hsanomaly.cluster import dask_client

    def ignores_sigint():
        import signal

        return signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    before = signal.getsignal(signal.SIGINT)
    with dask_client(workers=1) as client:
        assert list(client.run(ignores_sigint).values()) == [True]
        client.restart()
        assert list(client.run(ignores_sigint).values()) == [True]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_local_clusters_workers_keep_the_preloads_dask_is_configured_with(tmp_path):
    """Our preload hook was passed as the workers' preload list, which replaces the one Dask's
    config names (credentials for /vsis3/ inputs, plugins): that one ran no more."""
    import dask

    from hsanomaly.cluster import dask_client

    hook = tmp_path / "user_hook.py"
    hook.write_text("def dask_setup(worker):\n    worker.user_hook_ran = True\n")

    def ran(dask_worker):
        import signal

        return (getattr(dask_worker, "user_hook_ran", False),
                signal.getsignal(signal.SIGINT) is signal.SIG_IGN)

    with dask.config.set({"distributed.worker.preload": [str(hook)]}), \
            dask_client(workers=1) as client:
        assert list(client.run(ran).values()) == [(True, True)]


def test_what_the_caller_sets_while_a_local_cluster_runs_stays(synthetic_raster, tmp_path,
                                                               monkeypatch):
    """Only the nanny's own values are put back: a callback's or another thread's setting made
    during the run was undone with them."""
    import os

    monkeypatch.delenv("HSANOMALY_TEST_SETTING", raising=False)

    def callback(fraction, message):
        os.environ["HSANOMALY_TEST_SETTING"] = "mine"

    hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE, workers=1,
                     progress=False, callback=callback)
    assert os.environ["HSANOMALY_TEST_SETTING"] == "mine"


def test_a_local_cluster_that_does_not_start_is_one_line(synthetic_raster, tmp_path):
    """A user's Dask configuration (an HPC scratch folder this machine lacks) kept the local
    cluster from starting: --workers ended in a traceback of about a hundred lines."""
    import dask

    before = sorted(os.listdir(tmp_path))
    with dask.config.set({"temporary-directory": "/proc/no-such-scratch"}):
        with pytest.raises(HsanomalyError, match=r"^a local Dask cluster of 2 workers did not "
                                                 r"start \(.*no-such-scratch.*\); look at Dask's "
                                                 r"configuration"):
            hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE,
                             workers=2, progress=False)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_local_cluster_stopped_by_a_limit_says_the_limit(monkeypatch):
    """Under ulimit -n 32 Dask said "Nanny failed to start" and the message sent the user to
    Dask's configuration, the cause ("too many open files") at the end of its chain."""
    import errno

    import distributed

    from hsanomaly.cluster import optional_client

    def limited(*args, **kwargs):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as err:
            raise RuntimeError("Nanny failed to start.") from err
    monkeypatch.setattr(distributed, "LocalCluster", limited)
    with pytest.raises(HsanomalyError, match=r"^a local Dask cluster of 2 workers did not start: "
                                             r"too many open files \(a limit on them, ulimit -n\)$"):
        with optional_client(2, None):
            pass


BLOCK_HSANOMALY = '''import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hsanomaly":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
'''


@pytest.mark.parametrize("worker", ["other sources", "another version", "no hsanomaly"])
def test_a_worker_of_other_hsanomaly_code_is_refused_before_any_work(tmp_path, worker):
    """A worker of another build wrote its tiles into the run through the driver's tile store,
    and the mixed heatmap passed every check (2 of 16 tiles differed in the Dask audit); a
    worker without hsanomaly died on its first task, and the run waited 600 s for one."""
    import shutil
    import subprocess
    import sys
    import time

    package = Path(hsanomaly.__file__).parent
    other = tmp_path / "other"
    if worker == "no hsanomaly":
        other.mkdir()
        (other / "sitecustomize.py").write_text(BLOCK_HSANOMALY)
        said = r"^the Dask worker tcp://\S+ cannot run hsanomaly \(.*No module named " \
            r"'hsanomaly'.*\); "
    else:
        shutil.copytree(package, other / "hsanomaly",
                        ignore=shutil.ignore_patterns("__pycache__"))
        if worker == "other sources":
            with open(other / "hsanomaly" / "scorers" / "rx.py", "a") as f:
                f.write("# another build\n")
            said = rf"^the Dask worker tcp://\S+ runs hsanomaly {hsanomaly.__version__} from " \
                r"other sources, not this run's"
        else:
            (other / "hsanomaly" / "_version.py").write_text('__version__ = "0.1.9"\n')
            said = rf"^the Dask worker tcp://\S+ runs hsanomaly 0.1.9, not this run's " \
                rf"{hsanomaly.__version__}: its results would differ"
    path = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=32, cols=32)[0])
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        child = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nthreads", "1", "--no-dashboard"], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(other)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.scheduler_info()["workers"], "the worker did not join"
            with pytest.raises(HsanomalyError, match=said):
                hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", tile=TILE,
                                 scheduler=cluster.scheduler_address)
        finally:
            child.terminate()
            child.wait(30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "scene.tif"]


def test_a_task_on_a_worker_of_other_code_refuses_to_run():
    """A worker that joins after the run's check is refused by its first task."""
    import socket

    from hsanomaly.workers import code, same_code

    same_code(code())
    with pytest.raises(HsanomalyError, match=rf"^the Dask worker on {socket.gethostname()} runs "
                                             rf"hsanomaly {hsanomaly.__version__}, not this "
                                             r"run's 0.1.9: "):
        same_code(("0.1.9", "0" * 64))


def test_a_package_a_worker_lacks_is_said_of_that_worker(client, monkeypatch):
    """A worker without onnxruntime said "pip install 'hsanomaly[cpu]'" as if of the machine
    that started the run, which has it: the install changed nothing (the Dask audit)."""
    import socket
    import sys

    from hsanomaly import devices

    assert devices.on_worker() == ""
    assert client.submit(devices.on_worker, pure=False).result() == \
        f" on the Dask worker on host {socket.gethostname()}"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)        # its import fails
    monkeypatch.setattr(devices, "on_worker", lambda: " on the Dask worker on host w7")
    with pytest.raises(HsanomalyError) as err:
        devices.import_onnxruntime()
    assert str(err.value) == ("the model scores need the ONNX runtime on the Dask worker on "
                              "host w7: pip install 'hsanomaly[cpu]' there (or 'hsanomaly[gpu]' "
                              "for device='cuda')")


def test_a_run_whose_workers_are_all_paused_stops_in_one_line(synthetic_raster, tmp_path,
                                                             short_worker_wait, monkeypatch,
                                                             caplog):
    """A worker paused at 80 % of its memory limit holding the last task, the other idle: the
    run printed nothing and never ended, since paused workers count as workers (the Dask
    audit's F04, killed after 150 s)."""
    import logging

    from distributed.core import Status

    from hsanomaly import workers as hs_workers

    monkeypatch.setattr(hs_workers, "PAUSED_LOOK", 0.5)

    def pause(dask_worker):
        dask_worker.status = Status.paused

    # no memory limit: nothing resumes the worker paused here (its memory is low)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  memory_limit=0, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client, \
            caplog.at_level(logging.WARNING, logger="hsanomaly"):
        client.run(pause)
        with pytest.raises(HsanomalyError, match=r"scene.tif: every Dask worker has been paused "
                                                 r"at its memory limit for 1 s \(give them more "
                                                 r"memory, or score in a smaller 'tile'\) while "
                                                 r"fitting the score; nothing was written$"):
            hsanomaly.detect(synthetic_raster[0], tmp_path / "x.tif", score="rx", tile=TILE,
                             scheduler=client)
    assert "every Dask worker is paused at its memory limit" in caplog.text
    assert "no worker" not in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_moment_without_workers_is_not_said(client, caplog, monkeypatch):
    """A nanny restarting its workers after one died leaves none for a moment: the run said
    "the Dask cluster has no worker; the run waits up to 600 s" and failed 3 s later for the
    worker's death (the Dask audit's F06)."""
    import logging

    from hsanomaly import cluster as hs_cluster, workers as hs_workers
    from hsanomaly.workers import Watch

    monkeypatch.setattr(hs_workers, "WORKER_POLL", 0.1)
    counts = iter([0, 0, 2])                    # two looks without a worker, then two
    monkeypatch.setattr(hs_cluster, "worker_count", lambda _: next(counts, 2))
    watch = Watch(client, "heat.tif.partial")
    with caplog.at_level(logging.WARNING, logger="hsanomaly"):
        for _ in range(3):
            watch._check([])
    watch.close()
    assert "no worker" not in caplog.text and watch.alone_since is None


def test_a_paused_worker_running_a_task_is_no_stuck_one():
    """A paused worker finishes the task it runs (its tile is often what paused it): a run
    whose workers were all paused while running long tiles was stopped after the wait, though
    the tiles would finish (the review's F05)."""
    import time

    from distributed.core import Status

    from hsanomaly.workers import all_paused

    def pause(dask_worker):
        dask_worker.status = Status.paused

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  memory_limit=0, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        running = client.submit(time.sleep, 4, pure=False)
        time.sleep(1)
        client.run(pause)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:       # the heartbeat says it executes one
            assert not all_paused(client)
            time.sleep(0.25)
        running.result()
        deadline = time.monotonic() + 10
        while not all_paused(client) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert all_paused(client)


def test_the_code_digest_is_the_same_for_a_package_imported_from_a_zip(tmp_path):
    """Workers given hsanomaly by ``client.upload_file`` (a zip, Dask's documented way to ship
    code) were refused as unable to run it: its digest walked a folder (the review's F04)."""
    import zipfile

    from hsanomaly.io.digest import sources_sha256

    package = Path(hsanomaly.__file__).parent
    with zipfile.ZipFile(tmp_path / "hsanomaly.zip", "w") as archive:
        for path in package.rglob("*"):
            if "__pycache__" not in path.parts and path.is_file():
                archive.write(path, Path("hsanomaly") / path.relative_to(package))
    zipped = zipfile.Path(tmp_path / "hsanomaly.zip", "hsanomaly/")
    assert sources_sha256(zipped) == sources_sha256(package) == sources_sha256(str(package))
    assert sources_sha256(zipped, ("io", "preprocess.py")) == \
        sources_sha256(package, ("io", "preprocess.py"))


def test_a_worker_that_leaves_while_asked_for_its_code_is_no_refusal():
    """An adaptive cluster retiring a worker as the run asked it refused the run, saying the
    workers "cannot run hsanomaly" (review 3's F05, 4 times in 5 tries)."""
    from hsanomaly.workers import check_workers, code

    class Client:
        def __init__(self, answers):
            self.answers = answers

        def run(self, function, on_error="raise"):
            assert function is code and on_error == "return"
            return self.answers

    check_workers(Client({"tcp://a:1": OSError("connection reset"), "tcp://b:1": code()}))
    with pytest.raises(HsanomalyError, match=r"^the Dask worker tcp://a:1 cannot run hsanomaly "
                                             r"\(No module named 'hsanomaly'\)"):
        check_workers(Client({"tcp://a:1": ModuleNotFoundError("No module named 'hsanomaly'"),
                              "tcp://b:1": code()}))
