"""User-facing paths no other test reached (coverage audit, stop 53, findings F02 and F03).

F02: the one-line errors of evaluate and find_targets inputs, convert of a .mat, masks,
output locations, training's option checks and ``hsanomaly info`` on a missing path.
F03: the progress bar a caller or a terminal user sees, a cancel at training's last step,
and the merging of target regions across read windows.

Each error case checks the message the user reads, and that nothing was left behind.
"""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
import rasterio
import scipy.io
from click.testing import CliRunner

import hsanomaly
from hsanomaly.cli import main
from hsanomaly.errors import Cancelled, HsanomalyError

from synthetic import synthetic_cube, write_raster

CLI = [sys.executable, "-m", "hsanomaly.cli"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    """Exit status 1, one "Error:" line that holds every fragment, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def files_under(folder):
    """Every path under ``folder`` with its bytes (folders as None): a snapshot to compare."""
    snapshot = {}
    for root, dirs, names in os.walk(folder):
        for d in dirs:
            snapshot[os.path.relpath(os.path.join(root, d), folder)] = None
        for n in names:
            with open(os.path.join(root, n), "rb") as f:
                snapshot[os.path.relpath(os.path.join(root, n), folder)] = f.read()
    return snapshot


@pytest.fixture
def scene(tmp_path):
    """A small 12-band 40x50 raster (two planted targets) and its truth raster."""
    cube, truth = synthetic_cube()
    path = write_raster(tmp_path / "scene.tif", cube)
    truth_path = write_raster(tmp_path / "truth.tif", truth[None], dtype="uint8")
    return path, truth_path


@pytest.fixture
def heatmap(tmp_path):
    """A 40x50 float32 heatmap GeoTIFF of random scores."""
    scores = np.random.default_rng(1).random((1, 40, 50))
    return write_raster(tmp_path / "heat.tif", scores)


@pytest.fixture
def torch():
    """torch on one thread (as tests/test_train.py: small networks, a busy machine)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


# --- F02: evaluate and find_targets inputs ----------------------------------------------------

def test_find_targets_refuses_a_bool_heatmap_array():
    """A bool array (a thresholded mask passed by mistake) is not scores: without the check
    it would be vectorised as 0/1 scores, or fail deep inside numpy."""
    with pytest.raises(HsanomalyError, match=r"^the heatmap array holds bool values, not scores$"):
        hsanomaly.find_targets(np.eye(20, dtype=bool), threshold=0.5)


def test_evaluate_refuses_a_bool_heatmap_array():
    """evaluate's own dtype check (evaluation/files.py): a mask is not a heatmap, and its
    AUC would be computed from two values without a word."""
    with pytest.raises(HsanomalyError, match=r"^the heatmap array holds bool values, not scores$"):
        hsanomaly.evaluate(np.eye(20, dtype=bool), np.eye(20))


def test_evaluate_refuses_a_complex_heatmap_file(tmp_path, scene):
    """A complex raster (an SAR product, say) has no order: its scores would be compared
    by their real part alone, or numpy would fail casting them."""
    _, truth = scene
    complex_heat = write_raster(tmp_path / "complex.tif", np.ones((1, 40, 50)), dtype="complex64")
    with pytest.raises(HsanomalyError, match=r"complex\.tif: complex pixels \(complex64\) are "
                                             r"not scores$"):
        hsanomaly.evaluate(complex_heat, truth)


def test_evaluate_refuses_a_heatmap_whose_band_scale_is_zero(heatmap, scene):
    """A band scale of 0 would turn every score into the offset: an AUC of 0.5 reported as
    if it were the detector's."""
    _, truth = scene
    with rasterio.open(heatmap, "r+") as ds:
        ds.scales = (0.0,)
    with pytest.raises(HsanomalyError, match=r"heat\.tif: band 1's scale and offset are not "
                                             r"usable \(scale 0\.0, offset 0\.0\)$"):
        hsanomaly.evaluate(heatmap, truth)


def test_evaluate_refuses_a_truth_that_is_all_nodata(tmp_path, heatmap):
    """A truth raster of nodata only leaves no pixel to score: said as such, not as an
    AUC of NaN or a division by zero."""
    truth = write_raster(tmp_path / "blank.tif", np.full((1, 40, 50), 255), dtype="uint8",
                         nodata=255)
    with pytest.raises(HsanomalyError, match=r"blank\.tif: every pixel of the mask is nodata$"):
        hsanomaly.evaluate(heatmap, truth)


def test_evaluate_refuses_a_mat_truth_of_another_shape(tmp_path, heatmap):
    """A .mat truth of another scene (10x10 for a 40x50 heatmap) would be broadcast or
    fail in numpy; the user is told both shapes."""
    rng = np.random.default_rng(0)
    mat = tmp_path / "other.mat"
    scipy.io.savemat(mat, {"data": rng.random((10, 10, 6)), "map": np.eye(10)})
    with pytest.raises(HsanomalyError, match=r"other\.mat: the mask is 10x10 pixels, the "
                                             r"heatmap is 40x50$"):
        hsanomaly.evaluate(heatmap, mat)


def test_evaluate_refuses_a_mat_truth_without_a_truth_variable(tmp_path, heatmap):
    """A .mat scene without its map has no truth to evaluate against: said, not a KeyError."""
    mat = tmp_path / "cube_only.mat"
    scipy.io.savemat(mat, {"data": np.random.default_rng(0).random((40, 50, 6))})
    with pytest.raises(HsanomalyError, match=r"cube_only\.mat: no ground-truth variable found "
                                             r"in the \.mat file$"):
        hsanomaly.evaluate(heatmap, mat)


def test_find_targets_at_a_rate_refuses_a_heatmap_file_without_scores(tmp_path):
    """A rate's threshold over a heatmap of NaN only (thresholds.py, the histogram path a
    file takes) has no score to rank: said, not an IndexError or a NaN threshold."""
    empty = write_raster(tmp_path / "nan.tif", np.full((1, 20, 20), np.nan))
    with pytest.raises(HsanomalyError, match=r"nan\.tif: the heatmap has no score$"):
        hsanomaly.find_targets(empty, far=0.01)


def test_find_targets_far_auto_refuses_a_heatmap_array_without_scores():
    """far='auto' over an all-NaN array takes the same histogram path: the same message."""
    with pytest.raises(HsanomalyError, match=r"^the heatmap array: the heatmap has no score$"):
        hsanomaly.find_targets(np.full((20, 20), np.nan), far="auto")


def test_an_outer_mask_and_unknown_truth_pixels_are_both_left_out():
    """A truth array's NaN pixels are unknown and an outer mask's pixels are ambiguous:
    both must be left out of the AUC. hsanomaly.evaluation.evaluate (the metrics on arrays)
    folds the NaN pixels into the outer mask itself; had it dropped them (counted them as
    background), the false alarms there would lower the AUC below sklearn's on the kept
    pixels, and below what hsanomaly.evaluate reports."""
    from sklearn.metrics import roc_auc_score

    from hsanomaly.evaluation import evaluate as metrics

    rng = np.random.default_rng(3)
    scores = rng.random((20, 20))
    truth = np.zeros((20, 20))
    truth[5:8, 5:8] = 1
    scores[5:8, 5:8] += 1                         # the target above all the background
    truth[12:16, 2:6] = np.nan                    # unknown
    scores[12:16, 2:6] = 5                        # false alarms, were they counted
    outer = np.zeros((20, 20), np.uint8)
    outer[4:9, 4:9] = 1
    outer[5:8, 5:8] = 0                           # a ring around the target
    scores[4, 4:9] = 5                            # false alarms too, were the ring counted
    keep = (outer == 0) & ~np.isnan(truth)
    expected = roc_auc_score(truth[keep], scores[keep])
    assert expected == 1.0
    assert metrics(scores, truth, outer_mask=outer)["auc"] == expected
    assert hsanomaly.evaluate(scores, truth, outer_mask=outer)["auc"] == expected


# --- F02: convert of a .mat -------------------------------------------------------------------

def test_convert_truth_of_a_mat_without_truth_is_one_line_and_writes_nothing(tmp_path):
    """`convert --truth` on a .mat without a map: the user is told, and neither the cube
    nor an empty truth raster is written."""
    scipy.io.savemat(tmp_path / "notruth.mat", {"data": np.random.default_rng(0).random((10, 10, 6))})
    before = files_under(tmp_path)
    result = run("convert", tmp_path / "notruth.mat", tmp_path / "nt.tif",
                 "--truth", tmp_path / "nt_truth.tif")
    assert_one_line_error(result, "notruth.mat: --truth asked for, but the .mat file has no "
                                  "ground-truth variable")
    assert files_under(tmp_path) == before


def test_convert_refuses_a_complex_v73_mat_cube_from_its_header(tmp_path):
    """A complex cube in a MATLAB v7.3 (HDF5) file, stored as MATLAB stores it (a compound
    of real and imag), is refused from its header, before it is loaded, with what to do
    instead; no GeoTIFF is left. (A v5 file's complex cube is refused once loaded.)"""
    h5py = pytest.importorskip("h5py")
    pair = np.dtype([("real", "<f8"), ("imag", "<f8")])
    with h5py.File(tmp_path / "complex.mat", "w") as f:   # h5py's axes: MATLAB's reversed
        data = f.create_dataset("data", data=np.zeros((6, 10, 10), pair))
        data.attrs["MATLAB_class"] = np.bytes_("double")
    before = files_under(tmp_path)
    result = run("convert", tmp_path / "complex.mat", tmp_path / "c.tif")
    assert_one_line_error(result, "complex.mat: the cube 'data' has complex pixels, which are "
                                  "not supported; convert to amplitude or real/imaginary bands "
                                  "first")
    assert files_under(tmp_path) == before


# --- F02: masks -------------------------------------------------------------------------------

def test_a_vector_mask_layer_without_geometries_is_one_line(tmp_path, scene):
    """A GeoPackage's attribute table named as the mask layer has nothing to burn: said by
    name, not an empty mask that silently excludes nothing."""
    import sqlite3

    gpd = pytest.importorskip("geopandas")
    import pandas as pd

    path, _ = scene
    gpkg = tmp_path / "v.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=gpd.GeoSeries.from_xy([500010.0], [6699990.0]),
                     crs="EPSG:32633").to_file(gpkg, layer="pts")
    with sqlite3.connect(gpkg) as db:
        pd.DataFrame({"a": [1, 2]}).to_sql("attrs", db, index=False)
    before = files_under(tmp_path)
    result = run("detect", path, tmp_path / "h.tif", "--score", "rx", "--mask",
                 f"{gpkg}|layername=attrs")
    assert_one_line_error(result, "v.gpkg|layername=attrs: layer 'attrs' has no geometries")
    assert files_under(tmp_path) == before


# --- F02: output locations --------------------------------------------------------------------

def test_detect_into_an_existing_directory_is_refused(tmp_path, scene):
    """detect(dst=<a directory>) would replace the user's folder by a GeoTIFF, or fail
    half-way; it is refused, and the folder and its file are kept."""
    path, _ = scene
    folder = tmp_path / "out.tif"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(HsanomalyError, match=r"out\.tif: is a directory, not a file$"):
        hsanomaly.detect(path, folder, score="rx")
    assert sorted(os.listdir(folder)) == ["keep.txt"] and (folder / "keep.txt").read_text() == "mine"


def test_detect_many_out_dir_that_is_a_file_is_refused(tmp_path, scene):
    """detect_many(out_dir=<a file>): refused before any work, and the file is kept (the
    command line's click option refuses it first, so only the API reaches this check)."""
    path, _ = scene
    (tmp_path / "afile").write_text("mine")
    before = files_under(tmp_path)
    with pytest.raises(HsanomalyError, match=r"afile: 'out_dir' exists and is not a directory$"):
        hsanomaly.detect_many([path], tmp_path / "afile", score="rx")
    assert files_under(tmp_path) == before


def test_train_out_that_is_a_file_is_refused_before_training(tmp_path, scene):
    """train's --out naming a file of the user's: refused before torch is even needed, and
    the file is kept (a model bundle is a folder, it would have replaced it)."""
    path, _ = scene
    (tmp_path / "model").write_text("mine")
    before = files_under(tmp_path)
    with pytest.raises(HsanomalyError, match=r"model: 'out' exists and is not a directory$"):
        hsanomaly.train(path, tmp_path / "model", iterations=2)
    assert files_under(tmp_path) == before


# --- F02: training option checks --------------------------------------------------------------

@pytest.mark.parametrize("option, message", [
    ("lr", "'lr' must be positive, got 0"),
    ("iterations", "'iterations' must be at least 1, got 0"),
    ("batch", "'batch' must be at least 1, got 0"),
])
def test_training_settings_below_range_are_one_line_errors(tmp_path, scene, option, message):
    """Settings' ValueError is said as a one-line HsanomalyError naming the model: a zero
    learning rate would train nothing for the whole run, zero iterations export an
    untrained model."""
    path, _ = scene
    before = files_under(tmp_path)
    with pytest.raises(HsanomalyError) as caught:
        hsanomaly.train(path, tmp_path / "m", **{option: 0})
    assert str(caught.value) == f"{tmp_path / 'm'}: {message}"
    assert files_under(tmp_path) == before


@pytest.mark.train
def test_training_without_inputs_is_one_line(torch, tmp_path):
    """train([]) is said as such, not an IndexError on the first input."""
    with pytest.raises(HsanomalyError, match=r"^no input rasters given$"):
        hsanomaly.train([], tmp_path / "m", iterations=2)
    assert os.listdir(tmp_path) == []


@pytest.mark.train
def test_training_on_too_few_windows_is_one_line(torch, tmp_path):
    """A 4x4 raster has four 3x3 windows: too few to train on, said with the count needed."""
    cube, _ = synthetic_cube(rows=4, cols=4)
    small = write_raster(tmp_path / "small.tif", cube)
    before = files_under(tmp_path)
    with pytest.raises(HsanomalyError, match=r"small\.tif: only 4 usable 3x3 windows, training "
                                             r"needs at least \d+$"):
        hsanomaly.train(small, tmp_path / "m", iterations=2, window=3)
    assert files_under(tmp_path) == before


@pytest.mark.train
def test_training_where_no_window_is_free_of_nodata_is_one_line(torch, tmp_path):
    """Nodata on every other pixel of every other row leaves valid pixels but no 3x3 window
    without nodata: said so (not 'only 0 usable windows', which hides why)."""
    cube, _ = synthetic_cube()
    cube[:, ::2, ::2] = -9999
    holes = write_raster(tmp_path / "holes.tif", cube, nodata=-9999)
    before = files_under(tmp_path)
    with pytest.raises(HsanomalyError, match=r"holes\.tif: no 3x3 window is free of nodata$"):
        hsanomaly.train(holes, tmp_path / "m", iterations=2, window=3)
    assert files_under(tmp_path) == before


# --- F02: hsanomaly info ----------------------------------------------------------------------

def test_info_on_a_missing_path_is_one_line(tmp_path):
    """`hsanomaly info nothere.tif`: one line saying it is not found, not a GDAL traceback."""
    result = run("info", tmp_path / "nothere.tif")
    assert_one_line_error(result, f"{tmp_path / 'nothere.tif'}: not found")
    assert os.listdir(tmp_path) == []


# --- F03: progress bars -----------------------------------------------------------------------

def test_detect_progress_true_draws_a_bar_on_stderr(tmp_path, scene, capfd):
    """detect(progress=True) draws tqdm's bar on stderr, to its end (12 tiles of 16 over
    40x50); progress=False draws none. A broken bar (a tqdm API change, a bad keyword)
    fails the caller's run or draws nothing."""
    path, _ = scene
    hsanomaly.detect(path, tmp_path / "h.tif", score="rx", progress=True, tile=16)
    err = capfd.readouterr().err
    assert "rx h.tif: 100%|" in err and "| 12/12 [" in err and "tile/s]" in err
    hsanomaly.detect(path, tmp_path / "h2.tif", score="rx", progress=False, tile=16)
    assert "%|" not in capfd.readouterr().err


def test_detect_many_progress_true_draws_a_bar_per_raster(tmp_path, scene, capfd):
    """detect_many(progress=True) counts rasters on stderr's bar."""
    path, _ = scene
    hsanomaly.detect_many([path], tmp_path / "many", score="rx", progress=True)
    err = capfd.readouterr().err
    assert "100%|" in err and "| 1/1 [" in err and "raster/s]" in err


def test_the_command_line_draws_its_bar_on_a_terminal(tmp_path, scene):
    """On a terminal (stderr a tty) `hsanomaly detect` draws the bar; piped, it does not.
    Only terminal users see it, so only a pty shows it broken."""
    path, _ = scene
    master, slave = pty.openpty()
    # a terminal 80 columns wide: a pty starts 0x0, where tqdm fits its bar into no columns
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        child = subprocess.Popen(CLI + ["detect", str(path), str(tmp_path / "h.tif"), "--score",
                                        "rx", "--tile", "16"],
                                 stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        drawn = b""
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:                   # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = child.communicate(timeout=120)
    finally:
        os.close(master)
    assert child.returncode == 0, drawn
    text = drawn.decode(errors="replace")
    assert "100%|" in text and "| 12/12 [" in text, text
    piped = subprocess.run(CLI + ["detect", str(path), str(tmp_path / "h2.tif"), "--score", "rx",
                                  "--tile", "16"], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "%|" not in piped.stderr, piped.stderr


@pytest.mark.train
def test_train_progress_true_draws_a_bar(torch, tmp_path, scene, capfd):
    """train(progress=True) draws its bar over the iterations."""
    path, _ = scene
    hsanomaly.train(path, tmp_path / "m", iterations=3, batch=16, critic_steps=1, threads=1,
                    progress=True)
    err = capfd.readouterr().err
    assert "training: 100%|" in err and "| 3/3 [" in err, err


# --- F03: cancel at training's last step ------------------------------------------------------

@pytest.mark.train
def test_a_cancel_at_the_export_keeps_a_checkpoint_that_resume_exports(torch, tmp_path, scene):
    """A cancel on the last callback ("exporting the model bundle", fraction 1.0) came
    after the whole training: it must keep the trained state (not lose the run), leave no
    partial bundle, and a resume must export the bundle from it, removing the checkpoint."""
    from hsanomaly.training import checkpoint_dir

    path, _ = scene
    out = tmp_path / "m"
    settings = dict(iterations=3, batch=16, critic_steps=1, threads=1, progress=False)
    seen = []

    def cancel_at_export(fraction, message):
        seen.append((fraction, message))
        return message == "exporting the model bundle"

    with pytest.raises(Cancelled) as caught:
        hsanomaly.train(path, out, callback=cancel_at_export, **settings)
    state_dir = checkpoint_dir(out)
    assert str(caught.value) == (f"{out}: training cancelled; its state is kept in {state_dir} "
                                 "(resume=True continues it; delete the folder otherwise)")
    assert seen[-1] == (1.0, "exporting the model bundle")
    assert not out.exists() and (state_dir / "state.npz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # the checkpoint holds the whole run: the resume trains no iteration again, only exports
    resumed = []
    bundle = hsanomaly.train(path, out, resume=True,
                             callback=lambda fraction, message: resumed.append(message), **settings)
    assert os.path.samefile(bundle.path, out) and (out / "model.json").is_file()
    assert resumed[-1] == "exporting the model bundle"
    assert not [m for m in resumed if m.startswith("iteration")], resumed
    assert not state_dir.exists()


# --- F03: target regions merged across windows ------------------------------------------------

def test_regions_merged_across_small_windows_match_scipy_label():
    """find_targets labels the pixels above the threshold window by window and merges the
    labels across window borders (union-find with path compression and pointer jumping):
    on random masks read in windows of 2-5 pixels, the regions and their sizes must be
    scipy.ndimage.label's 8-connected ones over the whole image. A wrong merge splits one
    target into several, or joins two."""
    from scipy import ndimage

    from hsanomaly.regions import EIGHT_CONNECTED
    from hsanomaly.targets import find_targets

    # scenes this size chain labels three deep in the union-find (seeds 5, 8, 17, ...),
    # which a single pointer jump would leave unmerged
    for seed in range(20):
        rng = np.random.default_rng(seed)
        rows, cols = (int(n) for n in rng.integers(10, 60, 2))
        chunk = int(rng.integers(2, 6))
        threshold = float(rng.uniform(0.2, 0.8))
        scores = rng.random((rows, cols)).astype(np.float32)
        labels, count = ndimage.label(scores > threshold, structure=EIGHT_CONNECTED)
        want = sorted(np.bincount(labels.ravel())[1:].tolist())
        targets, _ = find_targets(scores, threshold=threshold, chunk=chunk)
        assert sorted(targets["pixels"].tolist()) == want, (seed, rows, cols, chunk, threshold)
        # each region's peak is the peak of one scipy label
        peaks = sorted(ndimage.maximum(scores, labels, np.arange(1, count + 1)).tolist())
        assert np.allclose(sorted(targets["max_score"].tolist()), peaks)
