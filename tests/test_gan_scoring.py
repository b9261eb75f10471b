"""GAN scores in the tiled detector: orientation, the anogan combination, per-pixel outputs,
windows, refusals (band count, CUDA), no torch on the scoring path, pickling."""

import json
import pickle
import shlex
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import hsanomaly
import hsanomaly.cli
from hsanomaly.errors import HsanomalyError
from hsanomaly.latent import reconstruction_cost
from hsanomaly.scorers import make_scorer
from hsanomaly.scorers.gan import _windows

from synthetic import NODATA, synthetic_cube, write_raster
from test_latent import tiny_bundle


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def recon(bundle):
    return make_scorer("recon", model=bundle.path, threads=1)


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    cube, truth = synthetic_cube(rows=40, cols=50)
    return write_raster(tmp_path_factory.mktemp("gan") / "scene.tif", cube), cube, truth


def test_critic_score_is_the_negated_critic_output(bundle, raster):
    _, cube, _ = raster
    X = cube.reshape(cube.shape[0], -1).T[:100]
    scorer = make_scorer("critic", model=bundle.path, threads=1)
    pre = bundle.preprocessor.transform(X)[:, :, None, None]
    raw = scorer._session("critic").run(["score"], {"x": pre})[0]
    np.testing.assert_allclose(scorer.score_samples(X), -raw, rtol=1e-6)
    assert scorer.extra_bands == {}


def test_recon_score_is_the_cost_at_the_latent_output(recon, bundle, raster):
    _, cube, _ = raster
    block = cube[:, :8, :8].copy()
    out = recon.score_block(block, np.ones(block.shape[1:], bool))
    x = bundle.preprocessor.transform(block.reshape(block.shape[0], -1).T)
    z = out["latent"].reshape(bundle.latent_dim, -1).T
    g = recon.generator()(z)
    np.testing.assert_allclose(out["score"].ravel(), reconstruction_cost(x, g, z), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["recon"].reshape(bundle.bands, -1).T, g, atol=1e-6)


def test_targets_score_higher_than_background(recon, raster):
    _, cube, truth = raster
    scores = recon.score_samples(cube.reshape(cube.shape[0], -1).T)
    t = truth.ravel() != 0
    assert np.median(scores[t]) > np.percentile(scores[~t], 99)


def test_anogan_combines_residual_and_feature_distance(bundle, raster):
    _, cube, _ = raster
    X = cube.reshape(cube.shape[0], -1).T[::37]
    lam = 0.3
    anogan = make_scorer("anogan", model=bundle.path, lam=lam, threads=1)
    windows = bundle.preprocessor.transform(X)[:, :, None, None]
    out = anogan.score_windows(windows)
    recon = anogan.generator()(out["latent"])
    cost = reconstruction_cost(windows.reshape(len(X), -1), recon, out["latent"])
    _, f_x = anogan.critic(windows)
    _, f_g = anogan.critic(recon.reshape(windows.shape))
    expected = (1 - lam) * cost + lam * np.mean((f_x - f_g) ** 2, axis=1)
    np.testing.assert_allclose(out["score"], expected, rtol=1e-4, atol=1e-7)
    assert anogan.params()["lam"] == lam


def test_score_block_shapes_and_invalid_pixels(recon, bundle, raster):
    _, cube, _ = raster
    block = cube[:, :6, :7].copy()
    valid = np.ones(block.shape[1:], bool)
    valid[0, :3] = False
    block[:, ~valid] = np.nan
    out = recon.score_block(block, valid)
    assert recon.extra_bands == {"recon": bundle.bands, "latent": bundle.latent_dim, "convergence": 1}
    assert {k: v.shape for k, v in out.items()} == {
        "score": (1, 6, 7), "recon": (bundle.bands, 6, 7), "latent": (bundle.latent_dim, 6, 7),
        "convergence": (1, 6, 7)}
    for value in out.values():
        assert value.dtype == np.float32
        assert np.isnan(value[:, ~valid]).all() and np.isfinite(value[:, valid]).all()
    assert (out["convergence"][:, valid] >= 0).all()


def test_windows_are_cut_around_each_pixel_and_holes_take_the_centre():
    pre = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)   # a halo-padded block, halo 1
    pre[:, 0, 0] = np.nan
    inner = np.zeros((3, 4), bool)
    inner[0, 0] = inner[2, 3] = True
    cut = _windows(pre, inner, 3)
    assert cut.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(cut[1], pre[:, 2:5, 3:6])
    assert cut[0, 0, 0, 0] == pre[0, 1, 1] and cut[0, 1, 0, 0] == pre[1, 1, 1]
    np.testing.assert_array_equal(cut[0][:, 1:, 1:], pre[:, 1:3, 1:3])


def test_detect_writes_the_extra_rasters(bundle, raster, tmp_path):
    path, _, _ = raster
    extras = {name: tmp_path / f"{name}.tif" for name in ("recon", "latent", "convergence")}
    with pytest.raises(HsanomalyError, match=r"extras\['convergence'\]: the fast solver with "
                                             "refine=0 .* takes no step"):
        hsanomaly.detect(path, tmp_path / "score.tif", score="recon", model=bundle.path,
                         extras=extras)                       # it wrote a band of zeros
    assert not any(p.exists() for p in extras.values())
    result = hsanomaly.detect(path, tmp_path / "score.tif", score="recon", model=bundle.path,
                              threads=1, extras=extras, progress=False, refine=2)
    assert result.score == "recon"
    for name, bands in (("recon", bundle.bands), ("latent", bundle.latent_dim), ("convergence", 1)):
        with rasterio.open(extras[name]) as ds:
            assert ds.count == bands and (ds.height, ds.width) == (40, 50)
            assert ds.descriptions[0]
    with rasterio.open(tmp_path / "score.tif") as ds, rasterio.open(path) as src:
        assert ds.crs == src.crs and ds.transform == src.transform


def test_band_mismatch_is_refused_in_one_line(bundle, tmp_path):
    cube, _ = synthetic_cube(bands=7, rows=10, cols=10)
    path = write_raster(tmp_path / "seven.tif", cube)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(path, tmp_path / "out.tif", score="critic", model=bundle.path, progress=False)
    message = str(err.value)
    assert "\n" not in message and "7 bands" in message and f"trained on {bundle.bands_in}" in message


def test_a_raster_in_other_units_than_the_training_data_is_warned_about(bundle, raster, tmp_path):
    """The same scene times 10,000 (reflectance stored as integers): scoring it against the
    model trained on the plain values would rank pixels by the unit difference, silently."""
    from hsanomaly.io.checks import HsanomalyWarning

    path, cube, _ = raster
    scaled = write_raster(tmp_path / "scaled.tif", cube * 10_000)
    with pytest.warns(HsanomalyWarning, match=r"scaled.tif: its values lie far outside those "
                                              r"the model .* was trained on"):
        hsanomaly.Detector("critic", model=bundle.path).fit(rasterio.open(scaled))
    with rasterio.open(path) as ds, warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.Detector("critic", model=bundle.path).fit(ds)    # the training's own units
    result = CliRunner().invoke(hsanomaly.cli.main, ["detect", str(scaled), str(tmp_path / "h.tif"),
                                                     "--model", str(bundle.path), "--score",
                                                     "critic", "-q"])
    assert result.exit_code == 0 and "Warning: " in result.output and "other units" in result.output
    # and the other way: the scene in ten-thousandths (reflectance against counts) passed
    smaller = write_raster(tmp_path / "smaller.tif", cube * 1e-4)
    with pytest.warns(HsanomalyWarning, match=r"smaller.tif: its values vary far less than "
                                              r"those the model .* was trained on"):
        hsanomaly.Detector("critic", model=bundle.path).fit(rasterio.open(smaller))
    # in tenths (radiance in other units, reflectance in percent against 0-10000): its pixels
    # fell near the zero spectrum's place, inside the range, and passed (the bundle audit's F01)
    tenths = write_raster(tmp_path / "tenths.tif", cube * 0.1)
    with pytest.warns(HsanomalyWarning, match=r"tenths.tif: its values are about 0.1 times "
                                              r"those the model .* was trained on, in every band "
                                              r"alike: other units"):
        hsanomaly.Detector("critic", model=bundle.path).fit(rasterio.open(tenths))


def test_a_dead_band_or_bands_in_another_order_are_warned_about(bundle, raster, tmp_path):
    """One band stuck at a plausible value, or the bands reversed (no wavelengths to tell),
    moved no median over the bands: a whitened model's recon lost the targets (rank 1 to 136,
    and to 3598 of 3600) without a word."""
    from hsanomaly.io.checks import HsanomalyWarning

    path, cube, _ = raster
    dead = cube.copy()
    dead[3] = float(np.median(cube[3]))
    dead = write_raster(tmp_path / "dead.tif", dead)
    with pytest.warns(HsanomalyWarning, match=r"dead.tif: 1 band \(4\) holds one value across "
                                              r"the pixels probed, where those the model .* was "
                                              r"trained on varied: a dead detector\?"):
        hsanomaly.Detector("critic", model=bundle.path).fit(rasterio.open(dead))
    from hsanomaly.model.compat import check_units
    from hsanomaly.io.source import RasterSource
    from hsanomaly.preprocess import Preprocessor

    cube = cube * (1 + 0.1 * np.arange(len(cube)))[:, None, None]   # bands of growing range
    path = write_raster(tmp_path / "graded.tif", cube)
    whitened = Preprocessor(whiten=True).fit(cube.reshape(cube.shape[0], -1).T)
    reversed_ = write_raster(tmp_path / "reversed.tif", cube[::-1].copy())
    with pytest.warns(HsanomalyWarning, match=r"reversed.tif: \d+ of the \d+ whitened components "
                                              r"of its bands lie far outside those seen: a dead "
                                              r"band, or the bands in another order\?"):
        check_units(whitened, RasterSource(reversed_), "seen", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        check_units(whitened, RasterSource(path), "seen", "")


def test_the_value_range_is_probed_beyond_a_centre_of_nodata(bundle, tmp_path):
    """A scene in other units whose centre (wider than the probe window) is nodata."""
    from hsanomaly.io.checks import HsanomalyWarning

    cube, _ = synthetic_cube(rows=150, cols=150)
    cube = cube * 10_000
    cube[:, 35:115, 35:115] = NODATA
    path = write_raster(tmp_path / "holed.tif", cube, nodata=NODATA)
    with pytest.warns(HsanomalyWarning, match=r"holed.tif: its values lie far outside"):
        hsanomaly.Detector("critic", model=bundle.path).fit(rasterio.open(path))


def test_cuda_without_a_gpu_is_a_clear_line(bundle, raster, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    from hsanomaly.cli import main

    path, _, _ = raster
    for device in ("cuda", "cuda:1"):
        result = CliRunner().invoke(main, ["detect", str(path), str(tmp_path / "out.tif"),
                                           "--model", str(bundle.path), "--device", device, "-q"])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"--device {device}: " in lines[0] and "--device cpu" in lines[0]
        assert not (tmp_path / "out.tif").exists()


def test_cuda_sessions_compute_in_full_float32(monkeypatch):
    """The CUDA provider is asked for without TF32: its default TF32 products made the critic's
    scores differ from the CPU's in the third digit on an H200 (docs/speed.md)."""
    import onnxruntime

    from hsanomaly.devices import providers

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    chosen = providers("cuda")
    assert chosen[0] == ("CUDAExecutionProvider", {"use_tf32": "0"})
    assert chosen[1:] == ["CPUExecutionProvider"] and providers("cpu") == ["CPUExecutionProvider"]
    # the GPUs are named as training names them
    assert providers("cuda:0")[0] == ("CUDAExecutionProvider", {"use_tf32": "0"})
    assert providers("cuda:2")[0] == ("CUDAExecutionProvider", {"use_tf32": "0", "device_id": "2"})


def test_a_cuda_provider_that_does_not_start_is_refused_before_any_training(raster, tmp_path,
                                                                              monkeypatch):
    """onnxruntime-gpu lists its CUDA provider whether or not the CUDA and cuDNN libraries
    load; the device was checked against that list alone, so a quick model was trained first,
    and the error then named its staged folder, gone with the model. Here onnxruntime lists a
    provider it cannot start, as such an installation does: its session lands on the CPU."""
    import onnxruntime

    import hsanomaly.quickmodel

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(hsanomaly.quickmodel, "train_on_scene",
                        lambda *args, **kwargs: pytest.fail("trained before the device check"))
    with pytest.raises(HsanomalyError, match=r"^device='cuda:1': onnxruntime could not start "
                                             r"its CUDA provider: is the GPU there"):
        hsanomaly.detect(raster[0], tmp_path / "out.tif", device="cuda:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    import hsanomaly.devices

    tried = []
    start = hsanomaly.devices._cuda_start
    monkeypatch.setattr(hsanomaly.devices, "_cuda_start",
                        lambda *args: tried.append(args) or start(*args))
    for _ in range(2):      # a failure is not kept: a GPU busy at one call may be free at the next
        with pytest.raises(HsanomalyError, match="could not start its CUDA provider"):
            hsanomaly.detect(raster[0], tmp_path / "out.tif", device="cuda:1")
    assert len(tried) == 2


def test_the_banner_of_a_provider_that_failed_is_the_errors_reason(capsys):
    """onnxruntime prints why a provider failed on stdout (then retries on the CPU): it went
    to the caller's output, and the error blamed the libraries whatever the cause."""
    from hsanomaly.devices import ep_error

    with ep_error() as said:
        print("a line of another thread")
        print("*************** EP Error ***************")
        print("EP Error CUDA failure 101: invalid device ordinal ; GPU=3 when using "
              "['CUDAExecutionProvider', 'CPUExecutionProvider']")
        print("Falling back to ['CPUExecutionProvider'] and retrying.")
        print("****************************************")
    assert capsys.readouterr().out == "a line of another thread\n"
    assert said.cuda_failure("cuda:3").startswith(
        "device='cuda:3': onnxruntime could not start its CUDA provider (CUDA failure 101: "
        "invalid device ordinal ; GPU=3): is the GPU there and free")


def test_sessions_starting_in_threads_at_once_leave_stdout_as_it_was(capsys):
    """Each start swapped the process's stdout for a buffer: a second start inside the first
    put back the first's buffer as it ended, so all later output was lost."""
    import sys
    import threading
    import time

    from hsanomaly.devices import ep_error

    before = sys.stdout
    first_in, second_going, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with ep_error():
            print("line 0")
            first_in.set()
            second_going.wait(10)
            time.sleep(0.2)         # the second start is under way (it waits for this one)
        first_out.set()

    def second():
        first_in.wait(10)
        second_going.set()
        with ep_error():
            print("line 1")
            first_out.wait(10)      # ends after the first: not nested in it

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sys.stdout is before
    print("after")
    assert capsys.readouterr().out.splitlines() == ["line 0", "line 1", "after"]


def test_both_onnx_runtimes_installed_are_said_once(monkeypatch):
    """``[cpu]`` and ``[gpu]`` both installed overwrite each other's files without a word from
    the library (only the QGIS plugin said it: the packaging audit's F9)."""
    import importlib.metadata
    import warnings

    from hsanomaly.errors import HsanomalyWarning
    from hsanomaly.devices import import_onnxruntime

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "1.0" if name == "onnxruntime-gpu" else real(name))
    with pytest.warns(HsanomalyWarning, match="onnxruntime and onnxruntime-gpu are both "
                                              "installed.*pip uninstall -y onnxruntime"):
        import_onnxruntime()
    monkeypatch.setattr(importlib.metadata, "version", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_onnxruntime()                              # one runtime: nothing said


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cpu:0", "CUDA", ""])
def test_an_unknown_device_is_one_line_before_any_work(bundle, raster, tmp_path, device):
    from hsanomaly.cli import main

    path, _, _ = raster
    result = CliRunner().invoke(main, ["detect", str(path), str(tmp_path / "out.tif"),
                                       "--model", str(bundle.path), "--device", device, "-q"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: --device {shlex.quote(device)}: unknown device; use cpu, cuda or cuda:N"]
    assert not (tmp_path / "out.tif").exists()
    with pytest.raises(HsanomalyError, match="unknown device"):
        hsanomaly.Detector("recon", model=bundle.path, device=device)


def test_cli_solver_options_reach_the_scorer(bundle, raster, tmp_path):
    from hsanomaly.cli import main

    path, cube, _ = raster
    out = tmp_path / "recon.tif"
    options = ["--codebook", "64", "--c2", "0.2"]
    result = CliRunner().invoke(main, ["detect", str(path), str(out), "--score", "recon",
                                       "--model", str(bundle.path), *options, "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as heatmap:
        scores = heatmap.read(1).ravel()
    expected = make_scorer("recon", model=bundle.path, codebook=64, c2=0.2, threads=1)
    np.testing.assert_allclose(scores, expected.score_samples(cube.reshape(cube.shape[0], -1).T),
                               rtol=1e-5, atol=1e-7)
    default = make_scorer("recon", model=bundle.path, threads=1)
    assert not np.allclose(scores, default.score_samples(cube.reshape(cube.shape[0], -1).T))


def test_bad_options_are_refused(bundle):
    with pytest.raises(HsanomalyError, match="'lam' must lie in"):
        make_scorer("anogan", model=bundle.path, lam=2.0)
    with pytest.raises(HsanomalyError, match="^'c1' and 'c2' must not both be 0$"):
        make_scorer("recon", model=bundle.path, c1=0.0, c2=0.0)
    with pytest.raises(HsanomalyError, match="model bundle"):
        make_scorer("recon", model=bundle.path / "missing").bundle   # loaded on first use
    with pytest.raises(HsanomalyError, match="'lam': score 'recon' does not take"):
        make_scorer("recon", model=bundle.path, lam=0.5)
    with pytest.raises(HsanomalyError, match="'codebook': score 'critic' does not take"):
        make_scorer("critic", model=bundle.path, codebook=64)
    with pytest.raises(HsanomalyError, match="'threads' must be a whole number"):
        make_scorer("recon", model=bundle.path, threads=0)
    with pytest.raises(HsanomalyError, match="'codebook' must be a whole number of at least 16, got 4"):
        make_scorer("recon", model=bundle.path, codebook=4)


def test_params_tell_configurations_apart(bundle, recon):
    seed = make_scorer("recon", model=bundle.path, solver="thesis", restarts=4, steps=50)
    assert seed.params() != recon.params()
    assert seed.params()["restarts"] == 4
    assert make_scorer("critic", model=bundle.path).params() == {
        "name": "critic", "model": recon.params()["model"]}


def test_scorer_pickles_without_sessions_and_scores_the_same(recon, raster):
    _, cube, _ = raster
    X = cube.reshape(cube.shape[0], -1).T[:50]
    before = recon.score_samples(X)
    assert recon._sessions
    clone = pickle.loads(pickle.dumps(recon))
    assert clone._sessions == {} and clone.solver._codebook is None
    np.testing.assert_array_equal(clone.score_samples(X), before)


def test_a_gan_score_pickled_by_an_hsanomaly_before_0_2_is_refused_in_one_line(recon):
    """Such a pickle (no wavelength check, a model without a codebook) loaded, then failed at
    its first use with an AttributeError."""
    from hsanomaly.errors import HsanomalyError

    state = pickle.loads(pickle.dumps(recon)).__dict__
    del state["ignore_wavelengths"]
    old = type(recon).__new__(type(recon))
    with pytest.raises(HsanomalyError, match="^a recon score pickled by an hsanomaly before 0.2.0 "
                                             "cannot be used by this one: fit the Detector again$"):
        old.__setstate__(state)


def test_scoring_does_not_import_torch(bundle, raster, tmp_path):
    path, _, _ = raster
    code = (
        "import sys\n"
        "import hsanomaly\n"
        f"for score in ('critic', 'recon', 'anogan'):\n"
        f"    hsanomaly.detect({str(path)!r}, {str(tmp_path)!r} + '/' + score + '.tif', score=score,\n"
        f"                     model={str(bundle.path)!r}, threads=1, progress=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_run_scores_with_the_bundle_it_loaded_even_if_the_folder_changes(bundle, raster, tmp_path):
    """A training into the same --out (or any edit) while a run is going never mixes another
    model's networks into it: scoring runs the networks' bytes checked at load, and the stored
    codebook, read when the search starts, must still match its checksums."""
    import shutil

    from hsanomaly.latent import fast

    _, cube, _ = raster
    X = cube.reshape(cube.shape[0], -1).T[:200]
    copy = tmp_path / "model"
    shutil.copytree(bundle.path, copy)
    expected = make_scorer("critic", model=copy, threads=1).score_samples(X)
    critic, recon = (make_scorer(name, model=copy, threads=1) for name in ("critic", "recon"))
    assert critic.bundle and recon.bundle                       # both loaded (and checked) now
    for name in ("critic.onnx", "generator.onnx"):
        (copy / name).write_bytes(b"replaced by another training")
    np.testing.assert_array_equal(critic.score_samples(X), expected)
    array = copy / "codebook.g.npy"        # one the default search reads (not the Jacobians)
    np.save(array, np.zeros_like(np.load(array)))
    fast._shared.clear()
    try:
        with pytest.raises(HsanomalyError, match=f"{array.name} changed since the model was loaded"):
            recon.score_samples(X)
    finally:
        fast._shared.clear()


def test_a_pickled_detector_finds_its_model_from_another_working_directory(bundle, raster,
                                                                            tmp_path, monkeypatch):
    """A model given by a relative path (as the README's example leaves it) was read again,
    codebook and all, relative to wherever the detector was unpickled; and a bundle moved
    away was "not a plain .npy array"."""
    import pickle
    import shutil
    import subprocess
    import sys

    import hsanomaly

    _, cube, _ = raster
    block = cube[:, :20, :20]
    shutil.copytree(bundle.path, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    detector = hsanomaly.Detector("recon", model="m", threads=1).fit(block)
    np.save(tmp_path / "expected.npy", detector.score(block))
    np.save(tmp_path / "block.npy", block)
    (tmp_path / "detector.pkl").write_bytes(pickle.dumps(detector))
    (tmp_path / "elsewhere").mkdir()
    code = ("import pickle, numpy as np; d = pickle.load(open('../detector.pkl', 'rb')); "
            "assert np.array_equal(d.score(np.load('../block.npy')), np.load('../expected.npy'), "
            "equal_nan=True)")

    def in_another_process():
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere",
                              capture_output=True, text=True, timeout=300)

    result = in_another_process()
    assert result.returncode == 0, result.stderr
    shutil.move(tmp_path / "m", tmp_path / "moved")
    result = in_another_process()
    assert "codebook.z.npy is gone since the model was loaded" in result.stderr


def test_score_outputs_leaves_out_what_the_search_cannot_measure(bundle, raster):
    """With refine 0 (the default) the search takes no step: its "convergence" band was all
    zeros in score_outputs, while detect refuses to write it."""
    import hsanomaly

    _, cube, _ = raster
    block = cube[:, :20, :20]
    plain = hsanomaly.Detector("recon", model=bundle.path, threads=1).fit(block)
    assert sorted(plain.score_outputs(block)) == ["latent", "recon", "score"]
    refined = hsanomaly.Detector("recon", model=bundle.path, threads=1, refine=2).fit(block)
    outputs = refined.score_outputs(block)
    assert sorted(outputs) == ["convergence", "latent", "recon", "score"]
    assert (outputs["convergence"] > 0).any()


def test_a_residual_ring_too_small_is_refused_before_the_residuals(bundle, raster, monkeypatch):
    """The rings over the GAN residuals were checked only when fitted on them, after the
    latent search over the sample (or, without a model, after training a quick one)."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyError
    from hsanomaly.scorers.gan import GanScorer

    def searched(*args):
        raise AssertionError("the latent search ran")

    monkeypatch.setattr(GanScorer, "score_windows", searched)
    _, cube, _ = raster
    with pytest.raises(HsanomalyError, match="local RX ring 3/1 holds 8 pixels, too few for a "
                                             "covariance on 10 principal components"):
        hsanomaly.Detector("rescontext", model=bundle.path, rings="3/1").fit(cube)   # residuals only


def test_the_default_score_fits_its_pixel_rings_on_the_moments_its_sample_folded(bundle):
    """The default score's fit read the whole raster twice: a pass for the GAN residuals'
    sample, then one for the moments its rings on the pixels fit on. The rings now fit on
    the moments the sample's pass folded, the ones a pass of their own gives."""
    from hsanomaly.io import ArraySource
    from hsanomaly.scorers.base import mean_cov, moments, scene_moments

    cube, _ = synthetic_cube(rows=300, cols=40)              # two tiles, not fitted whole
    source, folds = ArraySource(cube), []
    reduce_tile = source.reduce_tile
    source.reduce_tile = lambda window, fn: folds.append(fn) or reduce_tile(window, fn)
    scorer = make_scorer("dualcontext", model=bundle.path, rings="5/3;7/3", pca=4,
                         threads=1).fit(source)
    assert folds and moments not in folds                    # no pass of the moments' own
    mean, _ = mean_cov(*scene_moments(ArraySource(cube)))
    np.testing.assert_array_equal(scorer.local.locals[0].mean_, mean)


def test_score_outputs_takes_with_extras_and_its_former_name(bundle, raster):
    """``extras`` was detect's {output: path} and score_outputs' switch."""
    from hsanomaly.errors import HsanomalyDeprecationWarning

    block = raster[1]
    detector = hsanomaly.Detector("recon", model=bundle.path, threads=1).fit(block)
    assert sorted(detector.score_outputs(block, with_extras=False)) == ["score"]
    with pytest.warns(HsanomalyDeprecationWarning, match="'extras': score_outputs calls it "
                                                         "'with_extras' now"):
        assert sorted(detector.score_outputs(block, extras=False)) == ["score"]


def test_scores_that_overflow_are_refused_not_written(bundle, raster, tmp_path):
    """Values 1e20 times the model's squared to infinity in the reconstruction cost: detect
    wrote an all-inf heatmap and said it had succeeded. Values near float32's limit became
    inf once scaled and ended in scipy's traceback."""
    path, cube, _ = raster
    huge = write_raster(tmp_path / "huge.tif", cube * np.float32(1e20))
    with pytest.raises(HsanomalyError, match="every recon score overflowed to infinity"):
        hsanomaly.detect(huge, tmp_path / "heat.tif", score="recon", model=bundle.path,
                         threads=1)
    assert not (tmp_path / "heat.tif").exists()
    limit = cube / np.float32(cube.max()) * np.float32(3e38)
    with pytest.raises(HsanomalyError, match="exceed float32's range"):
        hsanomaly.Detector("dualcontext", model=bundle.path, threads=1).fit(limit)
    fill = cube.copy()
    fill[:, 20, 25] = np.float32(3e38)            # one undeclared fill pixel, mid-scene
    with pytest.warns(hsanomaly.HsanomalyWarning, match="1 of 2000 valid pixels .* have no "
                      "critic score .*: the networks gave no number there: values that overflow "
                      "once scaled for the model"):
        heat = hsanomaly.Detector("critic", model=bundle.path, threads=1).fit_score(fill)
    assert np.isnan(heat[20, 25]) and np.isfinite(np.delete(heat.ravel(), 20 * 50 + 25)).all()
    fill[:, 20, 25], fill[:, 0, 0] = cube[:, 20, 25], np.float32(3e38)    # outside the probe
    for solver in ("fast", "thesis"):       # the thesis's descent went on with NaN steps
        with pytest.raises(HsanomalyError, match="a pixel is no finite number once scaled for the model: its values overflow float32"):
            hsanomaly.Detector("recon", model=bundle.path, threads=1, solver=solver,
                               restarts=1, steps=1).fit_score(fill)


def test_scoring_past_the_band_check_is_said_recorded_and_another_run(bundle, tmp_path):
    """A model without band centres checked nothing but the band count against a raster that
    has them (its bands reversed, say) and said nothing; a heatmap scored past the check
    (ignore_wavelengths) did not record it, and detect-many took it for current in a rerun
    without the override, where a fresh run checks."""
    cube, _ = synthetic_cube(rows=40, cols=50)              # the tiny model's 12 bands
    path = write_raster(tmp_path / "scene.tif", cube)
    with rasterio.open(path, "r+") as ds:
        for band in range(1, 13):
            ds.update_tags(band, wavelength=str(400 + 10 * band), wavelength_units="nm")
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"scene.tif: its band centres "
                      r"\(410-520 nm\) cannot be checked: the model .* records none"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", model=bundle.path)
    many = dict(score="resrx", model=bundle.path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        first = hsanomaly.detect_many([path], tmp_path / "out", ignore_wavelengths=True, **many)
        assert [item.status for item in first] == ["scored"]
        with rasterio.open(first[0].dst) as ds:
            assert json.loads(ds.tags()["HSANOMALY_PARAMETERS"])["ignore_wavelengths"] is True
        again = hsanomaly.detect_many([path], tmp_path / "out", ignore_wavelengths=True, **many)
        assert [item.status for item in again] == ["skipped"]
    with pytest.warns(hsanomaly.HsanomalyWarning, match="cannot be checked"):
        checked = hsanomaly.detect_many([path], tmp_path / "out", **many)
    assert [item.status for item in checked] == ["scored"]


def test_a_model_trained_otherwise_than_the_score_wants_is_said_plainly(bundle):
    """The advice ended "trained with 'whiten' ...; this one was not", which read as trained
    without the without."""
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"recon ranks best on a model trained "
                      r"with 'whiten' \(an option of training: .*\); this one was trained "
                      r"without 'whiten'$"):
        hsanomaly.Detector("recon", model=bundle.path).fit(synthetic_cube(rows=40, cols=50)[0])


TELEMETRY_RUN = """
import sys
import onnx
from onnx import TensorProto, helper
from hsanomaly.devices import import_onnxruntime
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
onnx.save(helper.make_model(graph), sys.argv[1])
import_onnxruntime().InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
"""


def test_onnxruntimes_telemetry_is_off_unless_asked_for(tmp_path):
    """onnxruntime 1.29 on keeps a device id and a queue of events in HOME (sent to
    Microsoft where there is a network): every GAN-score run added to it."""
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    subprocess.run([sys.executable, "-c", TELEMETRY_RUN, str(tmp_path / "m.onnx")], check=True,
                   env={**env, "HOME": str(home), "TMPDIR": str(home)})
    assert not list(home.rglob("*"))


def test_info_gives_the_command_that_makes_a_heatmap_again(bundle, raster, tmp_path,
                                                            monkeypatch):
    """A heatmap recorded its score's inner settings (dualcontext's damping, its rings'
    own parts), which ``detect`` refuses as options: nothing said how to make it again
    (the provenance audit's F05). It records the options as asked, and ``info`` turns them
    into the command, run where its input, model and mask lie."""
    import shutil

    path, cube, truth = raster
    mask = write_raster(tmp_path / "mask.tif", (truth > 0)[None].astype("uint8"))
    from fractions import Fraction

    runs = {"m.tif": dict(score="mlrx", rings=((np.int64(5), 3), (9, 5)), pca=np.int64(6),
                          tile=16, mask=mask, purge=Fraction(1, 20)),   # numbers JSON lacks
            "r.tif": dict(score="recon", model=bundle.path, codebook=512, threads=1)}
    again = tmp_path / "again"
    again.mkdir()
    for name, asked in runs.items():
        hsanomaly.detect(path, tmp_path / name, **asked)
    commands = [hsanomaly.info(tmp_path / name)["command"] for name in runs]
    assert commands == [
        "hsanomaly detect scene.tif m.tif --score mlrx --mask mask.tif --tile 16 --pca 6 "
        "--purge 0.05 --rings '5/3;9/5'",
        f"hsanomaly detect scene.tif r.tif --score recon --model {bundle.path.name} "
        "--codebook 512 --threads 1"]
    for name in (path, mask):
        shutil.copy(name, again)
    shutil.copytree(bundle.path, again / bundle.path.name)
    monkeypatch.chdir(again)
    for name, command in zip(runs, commands):
        run = CliRunner().invoke(hsanomaly.cli.main, shlex.split(command)[1:])
        assert run.exit_code == 0, run.output
        assert hsanomaly.info(name)["pixels"] == hsanomaly.info(tmp_path / name)["pixels"]
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", "m.tif"])
    assert f"\ncommand: {commands[0]}\n" in run.output + "\n"
    # a name the command line would take for a flag, or split, is written as it takes it
    shutil.copy(path, again / "-s.tif")
    hsanomaly.detect("-s.tif", "h s.tif", score="rx", cog=True)
    assert hsanomaly.info("h s.tif")["command"] == \
        "hsanomaly detect ./-s.tif 'h s.tif' --score rx --cog"        # and a COG is one again
