"""Training: window sampling, networks, WGAN-GP steps, ONNX export, the train() run and its CLI."""

import json
import re

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsanomaly.errors import Cancelled, HsanomalyError
from hsanomaly.training.data import load_training_data, rare_spectra_weights

from synthetic import NODATA, synthetic_cube, write_raster


@pytest.fixture
def torch():
    """torch on one thread: these networks' products are small, and a busy machine makes
    two threads many times slower than one."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


# --- window sampling (no torch) -------------------------------------------------------------

def test_windows_skip_nodata_and_masked_pixels(synthetic_raster, tmp_path):
    path, truth, nodata = synthetic_raster
    data = load_training_data([path], window=3, val_fraction=0.1)
    windows = np.concatenate([data.train, data.val])
    # 3x3 windows fully inside the 40x50 raster whose pixels avoid the 5x7 nodata corner
    inside = np.zeros(nodata.shape, bool)
    inside[1:-1, 1:-1] = True
    touches_nodata = np.zeros_like(nodata)
    touches_nodata[:6, :8] = True
    assert len(windows) == (inside & ~touches_nodata).sum()
    assert windows.shape[1:] == (12, 3, 3) and np.isfinite(windows).all()

    mask = write_raster(tmp_path / "mask.tif", truth[None].astype(np.float32))
    centre = load_training_data([path], window=3, mask=mask)
    touching = load_training_data([path], window=3, mask=mask, background_only=True)
    n_centre, n_touching = (len(d.train) + len(d.val) for d in (centre, touching))
    assert n_centre == len(windows) - 8          # the two 2x2 targets' centres
    assert n_touching == len(windows) - 2 * 16   # every window touching them (4x4 each)
    # a mask's nodata pixels are excluded too (nothing says they are background)
    unknown = truth.astype(np.float32)
    unknown[20:, :] = -1
    mask = write_raster(tmp_path / "unknown.tif", unknown[None], nodata=-1)
    partial = load_training_data([path], window=3, mask=mask)
    centres = inside & ~touches_nodata & (truth == 0)
    centres[20:, :] = False
    assert len(partial.train) + len(partial.val) == centres.sum() < n_centre


def test_sampling_is_repeatable_and_split(synthetic_raster):
    path, _, _ = synthetic_raster
    a = load_training_data([path], seed=3)
    b = load_training_data([path], seed=3)
    assert a.fingerprint == b.fingerprint and np.array_equal(a.train, b.train)
    assert len(a.val) == round(0.1 * (len(a.train) + len(a.val)))
    assert a.bands == 12 and a.bands_in == 12   # 12 usable bands: default keeps them all
    assert load_training_data([path], bands=4).bands == 4


def test_a_band_constant_in_the_training_data_is_said_as_it_is_left_out(tmp_path):
    """Training said only "12 -> 11 bands": a spike in that band alone then ranked 76th of
    1,600 under recon, 1st under rx."""
    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    cube[4] = 0.25
    path = write_raster(tmp_path / "flat.tif", cube)
    with pytest.warns(HsanomalyWarning, match=r"flat.tif: 1 band of the 12 read constant .* left "
                                              r"out of the model \(5\): its GAN scores cannot"):
        assert load_training_data([path]).bands == 11


def test_rare_spectra_are_boosted_but_singular_ones_are_not():
    rng = np.random.default_rng(0)
    centres = {0.0: 6400, 5.0: 400, 10.0: 20}   # 94 %, 6 %, 0.3 % of the pixels
    X = np.concatenate([rng.normal(c, 0.1, (n, 3)) for c, n in centres.items()])
    w = rare_spectra_weights(X, seed=0, clusters=3)
    share = [w[X[:, 0].round() == c].sum() for c in centres]
    natural = np.array(list(centres.values())) / len(X)
    assert share[1] > 2 * natural[1]                # rare cluster boosted
    assert share[2] == pytest.approx(natural[2])    # singular cluster keeps its share
    assert sum(share) == pytest.approx(1.0)


# --- networks and WGAN-GP ---------------------------------------------------------------------

def test_spectral_lengths_halve_from_the_band_count():
    from hsanomaly.training.networks import spectral_lengths

    assert spectral_lengths(20) == [1, 2, 3, 5, 10, 20]
    assert spectral_lengths(32) == [1, 2, 4, 8, 16, 32]
    assert spectral_lengths(205) == [7, 13, 26, 52, 103, 205]


@pytest.mark.parametrize("bands, window", [(1, 1), (7, 1), (20, 1), (32, 1), (205, 1),
                                           (20, 3), (13, 5), (32, 5)])
def test_network_shapes(torch, bands, window):
    from hsanomaly.training.networks import Critic, Generator

    generator, critic = Generator(bands, window), Critic(bands, window)
    x = generator(torch.randn(5, 4))
    assert x.shape == (5, bands, window, window) and x.abs().max() <= 1
    score, features = critic(x)
    assert score.shape == (5,) and features.shape == (5, critic.n_features)
    assert (features >= 0).all()


def test_window_one_layers_are_spectral_convolutions(torch):
    """The channels-last matrix products equal kernel-2/3 Conv1d layers with the same weights."""
    from torch import nn

    from hsanomaly.training.networks import _PixelDown, _PixelSameConv, _PixelUp

    cin, cout, n = 3, 4, 2
    for length, odd in ((4, False), (5, True)):
        x = torch.randn(n, length, cin)
        down, conv = _PixelDown(cin, cout, length, odd), nn.Conv1d(cin, cout, 2, 2, padding=int(odd))
        with torch.no_grad():
            down.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(cout, 2 * cin))
            down.linear.bias.copy_(conv.bias)
        assert torch.allclose(down(x), conv(x.transpose(1, 2)).transpose(1, 2), atol=1e-6)

        short = (length + 1) // 2
        y = torch.randn(n, short, cin)
        up = _PixelUp(cin, cout, short, odd)
        convt = nn.ConvTranspose1d(cin, cout, 2, 2, padding=int(odd), output_padding=int(odd))
        with torch.no_grad():
            up.linear.weight.copy_(convt.weight.permute(2, 1, 0).reshape(2 * cout, cin))
            up.linear.bias.copy_(convt.bias.repeat(2))
        expected = convt(y.transpose(1, 2)).transpose(1, 2)
        assert expected.shape[1] == length
        assert torch.allclose(up(y), expected, atol=1e-6)

    same, conv3 = _PixelSameConv(cin, cout), nn.Conv1d(cin, cout, 3, padding=1)
    with torch.no_grad():
        same.linear.weight.copy_(conv3.weight.permute(0, 2, 1).reshape(cout, 3 * cin))
        same.linear.bias.copy_(conv3.bias)
    x = torch.randn(n, 6, cin)
    assert torch.allclose(same(x), conv3(x.transpose(1, 2)).transpose(1, 2), atol=1e-6)


def test_gradient_penalty_is_per_sample(torch):
    from hsanomaly.training.networks import Critic
    from hsanomaly.training.wgan import gradient_penalty

    torch.manual_seed(0)
    critic = Critic(9, 1)
    real, fake = torch.randn(6, 9, 1, 1), torch.randn(6, 9, 1, 1)
    eps = torch.rand(6)
    batch = gradient_penalty(critic, real, fake, eps)
    single = torch.cat([gradient_penalty(critic, real[i:i + 1], fake[i:i + 1], eps[i:i + 1])
                        for i in range(6)])
    assert batch.shape == (6,)
    assert torch.allclose(batch, single, atol=1e-6)
    assert batch.std() > 0   # genuinely different per sample, not one batch-wide norm


def _trainer(torch, bands=8, seed=0, **settings):
    from hsanomaly.training.networks import Critic, Generator
    from hsanomaly.training.settings import Settings
    from hsanomaly.training.wgan import WGANGP

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return WGANGP(Generator(bands), Critic(bands), Settings(seed=seed, **settings))


def test_one_critic_step_lowers_the_critic_loss_on_a_fixed_batch(torch):
    trainer = _trainer(torch, batch=64)
    gen = torch.Generator().manual_seed(1)
    real = torch.sin(torch.linspace(0, 3, 8)).reshape(1, 8, 1, 1) \
        + 0.1 * torch.randn(64, 8, 1, 1, generator=gen)
    z, eps = torch.randn(64, 4, generator=gen), torch.rand(64, generator=gen)
    before = trainer.critic_objective(real, z, eps)[0].item()
    trainer.critic_step(real, z, eps)
    after = trainer.critic_objective(real, z, eps)[0].item()
    assert after < before


def test_training_steps_repeat_exactly_with_a_seed(torch):
    data = torch.rand(500, 8, 1, 1) * 2 - 1
    runs = []
    for seed in (0, 0, 1):
        trainer = _trainer(torch, seed=seed, batch=32, critic_steps=2)
        for _ in range(3):
            trainer.step(data)
        runs.append(torch.cat([p.flatten() for p in trainer.generator.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("bands, window", [(20, 1), (7, 3)])
def test_onnx_export_matches_torch(torch, tmp_path, bands, window):
    ort = pytest.importorskip("onnxruntime")
    from hsanomaly.training.export import export_networks
    from hsanomaly.training.networks import Critic, Generator

    torch.manual_seed(0)
    generator, critic = Generator(bands, window), Critic(bands, window)
    export_networks(generator, critic, {"bands": bands}, tmp_path, codebook=None)
    z = torch.randn(37, 4)
    x = torch.rand(37, bands, window, window) * 2 - 1
    with torch.no_grad():
        expected = [generator(z).numpy(), *(t.numpy() for t in critic(x))]
    g = ort.InferenceSession(str(tmp_path / "generator.onnx"), providers=["CPUExecutionProvider"])
    c = ort.InferenceSession(str(tmp_path / "critic.onnx"), providers=["CPUExecutionProvider"])
    got = g.run(["x"], {"z": z.numpy()}) + c.run(["score", "features"], {"x": x.numpy()})
    for e, o in zip(expected, got):
        assert o.shape == e.shape
        np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-5)
    meta = g.get_modelmeta().custom_metadata_map
    assert json.loads(meta["hsanomaly"]) == {"bands": bands}


# --- the train() run --------------------------------------------------------------------------

def _files(out):
    return json.loads((out / "model.json").read_text())["files"]


def test_train_writes_a_loadable_bundle_repeatably(torch, synthetic_raster, tmp_path):
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    bundle = train([path], tmp_path / "a", iterations=6, batch=32, critic_steps=2, threads=1,
                   progress=False)
    assert (bundle.bands_in, bundle.bands, bundle.window, bundle.latent_dim) == (12, 12, 1, 4)
    names = {p.name for p in bundle.path.iterdir()}
    codebook = {"codebook.z.npy", "codebook.g.npy", "codebook.jacobian.npy"}
    assert names == {"generator.onnx", "critic.onnx", "model.json", "training.csv",
                     "training.png"} | codebook
    assert set(_files(bundle.path)) == {"generator.onnx", "critic.onnx"} | codebook
    assert bundle.meta["codebook"]["seed"] == 0 and bundle.codebook.load()[0].shape == (65536, 4)
    rows = (bundle.path / "training.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,seconds,critic_loss") and len(rows) == 7
    assert bundle.meta["training"]["iterations"] == 6
    assert bundle.meta["training"]["run"] == {"threads": 1, "device": "cpu"}
    assert not checkpoint_dir(bundle.path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "scene.tif"]

    again = train([path], tmp_path / "b", iterations=6, batch=32, critic_steps=2, threads=1,
                  progress=False)
    assert _files(again.path) == _files(bundle.path)
    # the same data elsewhere, under another name, as another heatmap's quick model: the same
    # networks, so the same digest (it named where the data lay, and a resume after the
    # project moved refused its finished tiles as another model's)
    import shutil

    (tmp_path / "moved").mkdir()
    copy = shutil.copy(path, tmp_path / "moved" / "renamed.tif")
    moved = train([copy], tmp_path / "moved" / "c", iterations=6, batch=32, critic_steps=2,
                  threads=1, progress=False, quick_model_of=tmp_path / "moved" / "heat.tif")
    assert moved.meta["training"]["inputs"] == ["renamed.tif"]
    assert moved.meta["training"]["quick_model_of"] == "heat.tif"
    assert _files(moved.path) == _files(bundle.path) and moved.digest() == bundle.digest()


def test_train_with_a_window_mask_and_rare_spectra_boost(torch, synthetic_raster, tmp_path):
    from hsanomaly.training import train

    path, truth, _ = synthetic_raster
    mask = write_raster(tmp_path / "mask.tif", truth[None].astype(np.float32))
    bundle = train([path], tmp_path / "m", mask=mask, window=3, bands=6, background_only=True,
                   boost_rare=True, iterations=2, batch=16, critic_steps=1, progress=False)
    assert (bundle.window, bundle.bands, bundle.bands_in) == (3, 6, 12)
    settings = bundle.meta["training"]["settings"]
    assert settings["mask"] and settings["background_only"] and settings["boost_rare"]
    assert bundle.codebook is None     # windows > 1 build theirs when scoring, as before
    import onnx

    import hsanomaly

    plain = train([path], tmp_path / "plain", iterations=2, batch=16, progress=False)
    for network in ("generator.onnx", "critic.onnx"):  # torch's export, then the dense graphs
        for made in (bundle, plain):                   # (torch's version was the exported's)
            model = onnx.load(made.path / network)
            assert (model.producer_name, model.producer_version) == \
                ("hsanomaly", hsanomaly.__version__)


def test_train_defaults_to_one_torch_thread_and_restores_the_callers(torch, synthetic_raster,
                                                                      tmp_path, monkeypatch):
    from hsanomaly.training import train
    from hsanomaly.training import wgan

    path, _, _ = synthetic_raster
    seen = []
    step = wgan.WGANGP.step
    monkeypatch.setattr(wgan.WGANGP, "step",
                        lambda self, *a, **k: seen.append(torch.get_num_threads()) or step(self, *a, **k))
    before = torch.get_num_threads()
    settings = dict(iterations=2, batch=16, critic_steps=1, progress=False)
    train([path], tmp_path / "one", **settings)
    train([path], tmp_path / "two", threads=2, **settings)
    assert seen == [1, 1, 2, 2] and torch.get_num_threads() == before


def test_cancel_leaves_no_bundle_and_resume_finishes_the_same_run(torch, synthetic_raster,
                                                                  tmp_path):
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    settings = dict(iterations=8, batch=32, critic_steps=2, threads=1, progress=False)
    whole = train([path], tmp_path / "whole", **settings)

    out = tmp_path / "model"
    calls = []

    def cancel_halfway(fraction, message):
        calls.append(message)
        return fraction >= 0.5

    with pytest.raises(Cancelled, match="cancelled"):
        train([path], out, callback=cancel_halfway, **settings)
    assert not out.exists() and (checkpoint_dir(out) / "state.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # the value it was made with: given again, it resumes (deleting it was the advice)
    with pytest.raises(HsanomalyError, match=r"different data or settings \(seed: 0 -> 1\)"):
        train([path], out, resume=True, seed=1, **settings)
    # smaller networks: told by the settings, before the tensors are weighed against them
    with pytest.raises(HsanomalyError, match=r"different data or settings \(dim: \d+ -> 2\)"):
        train([path], out, resume=True, dim=2, **settings)
    # another thread count gives a model that neither makes, recorded as the last one's
    with pytest.raises(HsanomalyError, match=r"different data or settings \(threads: 1 -> 2\)"):
        train([path], out, resume=True, **{**settings, "threads": 2})
    # one made by an earlier version, which recorded fewer settings: not a setting to match
    state = checkpoint_dir(out) / "state.npz"
    saved_bytes = state.read_bytes()
    with np.load(state) as saved:
        arrays = dict(saved)
    tree = json.loads(str(arrays["__tree__"]))
    key = dict(tree["dict"])["key"]["dict"]
    key[:] = [item for item in key if item[0] != "whiten"]
    with open(state, "wb") as f:
        np.savez(f, **{**arrays, "__tree__": np.array(json.dumps(tree))})
    with pytest.raises(HsanomalyError, match=r"state.npz: checkpoint was made by an earlier "
                                             r"hsanomaly, which recorded no whiten; delete it"):
        train([path], out, resume=True, **settings)
    with open(state, "wb") as f:              # a planted member: refused before it unpacks
        np.savez_compressed(f, **arrays, planted=np.zeros((2048, 4096), np.float32))
    with pytest.raises(HsanomalyError, match=r"state.npz: not a readable checkpoint \(ValueError\)"):
        train([path], out, resume=True, **settings)
    state.write_bytes(saved_bytes)
    resumed = train([path], out, resume=True, **settings)
    assert _files(resumed.path) == _files(whole.path)
    assert calls[0] == "reading training windows"
    with pytest.raises(Cancelled, match="early: training cancelled"):       # before any data
        train([path], tmp_path / "early", callback=lambda fraction, message: True, **settings)
    assert not (tmp_path / "early").exists()
    from hsanomaly.errors import HsanomalyWarning

    with pytest.warns(HsanomalyWarning, match="no interrupted training here to resume"):
        train([path], tmp_path / "fresh", resume=True, **settings)     # as detect says it


def test_a_second_training_into_the_same_out_is_refused_up_front(torch, synthetic_raster, tmp_path):
    """Two trainings shared <out>.checkpoint/: the first to finish removed it under the other,
    which failed after all its work (or left a bundle of mixed checkpoints)."""
    import os

    from hsanomaly.io.lock import lock_folder
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    out = tmp_path / "model"
    checkpoint_dir(out).mkdir()
    (checkpoint_dir(out) / "state.npz").write_bytes(b"the first run's")
    held = lock_folder(checkpoint_dir(out))                 # the first training, still running
    try:
        with pytest.raises(HsanomalyError) as err:
            train([path], out, iterations=4, batch=32, critic_steps=2, threads=1)
        # the output the user named, not only the folder of its checkpoints (threads audit F4)
        assert str(err.value).startswith(f"{out}: another hsanomaly run is writing this output "
                                         f"now (its working folder {checkpoint_dir(out)} is "
                                         "locked)")
        assert (checkpoint_dir(out) / "state.npz").read_bytes() == b"the first run's"
        assert not out.exists()
    finally:
        os.close(held)


def test_starting_over_beside_an_interrupted_training_says_so(torch, synthetic_raster, tmp_path):
    from hsanomaly.io.checks import HsanomalyWarning
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    out = tmp_path / "model"
    settings = dict(iterations=8, batch=32, critic_steps=2, threads=1)
    with pytest.raises(HsanomalyError, match="cancelled; its state is kept"):
        train([path], out, callback=lambda fraction, message: fraction >= 0.5, **settings)
    with pytest.warns(HsanomalyWarning, match="interrupted training's checkpoint .* starts over"):
        train([path], out, **settings)
    assert not checkpoint_dir(out).exists() and (out / "model.json").is_file()


def test_a_diverged_training_writes_no_model(torch, synthetic_raster, tmp_path):
    """A learning rate far too high sends the weights to NaN: no bundle that loads and scores
    every pixel NaN, and no checkpoint to resume the same weights from."""
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    out = tmp_path / "model"
    with pytest.raises(HsanomalyError, match="training diverged .* no model was written"):
        train([path], out, iterations=30, batch=32, critic_steps=2, lr=100.0, threads=1)
    assert not out.exists() and not checkpoint_dir(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_generated_spectra_match_a_real_scene(torch, example_scene, tmp_path):
    """Per-band mean and std of generator samples against every pixel of airport-2 (32 bins).

    Tolerances: with these settings (300 iterations and 5 critic steps, the training defaults
    when they were set; the 2-step default of now fits the spectra less closely, worst band
    0.61 data standard deviations, and detects as well: docs/training/quality.md) seeds 0-2 gave a worst-band mean error of 0.25-0.35 data
    standard deviations (median band 0.08-0.12) and std ratios between 0.69 and 1.24; the limits
    below leave about 1.5 times that margin for other BLAS builds. The untrained generator is
    nearly constant (std ratio about 0.1) and fails them by far, as does one that collapses
    onto a few spectra or drops a band's variation.
    """
    from hsanomaly.io import read_scene
    from hsanomaly.training import train

    ort = pytest.importorskip("onnxruntime")
    scene, _ = example_scene
    bundle = train([scene], tmp_path / "model", iterations=300, critic_steps=5, threads=1,
                   progress=False)
    data = bundle.preprocessor.transform(read_scene(scene).pixels)
    session = ort.InferenceSession(str(bundle.generator_path), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).normal(size=(8192, bundle.latent_dim)).astype(np.float32)
    fake = session.run(["x"], {"z": z})[0][:, :, 0, 0]
    mean_error = np.abs(fake.mean(0) - data.mean(0)) / data.std(0)
    std_ratio = fake.std(0) / data.std(0)
    assert mean_error.max() < 0.5 and np.median(mean_error) < 0.2, mean_error.round(2)
    assert 0.5 < std_ratio.min() and std_ratio.max() < 1.6, std_ratio.round(2)


# --- the CLI ----------------------------------------------------------------------------------

def _cli(*args):
    from hsanomaly.cli import main

    return CliRunner().invoke(main, ["train", *map(str, args)])


def _one_line_error(result, fragment):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _nothing_written(tmp_path, *keep):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_cli_trains_with_defaults_otherwise(torch, synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    result = _cli(path, "--out", tmp_path / "model", "--iterations", 3, "--threads", 1, "--quiet")
    assert result.exit_code == 0, result.output
    assert "12 -> 12 bands, window 1, 3 iterations" in result.output
    assert (tmp_path / "model" / "model.json").is_file()
    from hsanomaly.model import load_bundle

    # the line QGIS prints too, the library's: the folder as given, the generator's health last
    assert result.output.strip().splitlines()[-1] == \
        load_bundle(tmp_path / "model").text(tmp_path / "model")
    assert re.fullmatch(r".*: 12 -> 12 bands, window 1, 3 iterations, generator spread "
                        r"\d+\.\d\d of the data's", result.output.strip().splitlines()[-1])

    assert not load_bundle(tmp_path / "model").preprocessor.whiten


def test_cli_whiten_trains_on_decorrelated_bands(torch, synthetic_raster, tmp_path):
    from hsanomaly.model import load_bundle

    path, _, nodata = synthetic_raster
    result = _cli(path, "--out", tmp_path / "model", "--iterations", 2, "--whiten", "--quiet")
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "model")
    assert bundle.preprocessor.whiten and bundle.meta["training"]["settings"]["whiten"]
    with rasterio.open(path) as ds:
        pixels = ds.read()[:, ~nodata].T
    white = bundle.preprocessor.transform(pixels).astype(np.float64)
    correlation = np.corrcoef(white, rowvar=False)
    assert np.abs(correlation - np.eye(len(correlation))).max() < 0.05


def test_cli_band_counts_that_differ_between_inputs(torch, synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    other = write_raster(tmp_path / "ten.tif", synthetic_cube(bands=10)[0])
    _one_line_error(_cli(path, other, "--out", tmp_path / "m"), "has 10 bands but")
    _nothing_written(tmp_path, "scene.tif", "ten.tif")


def test_cli_wavelengths_that_differ_between_inputs(torch, tmp_path):
    """Inputs of other wavelengths trained one model, which recorded the first's and then
    refused the second's pixels."""
    import rasterio

    cube = synthetic_cube()[0]
    paths = []
    for name, start in (("visible.tif", 400.0), ("swir.tif", 1400.0)):
        paths.append(write_raster(tmp_path / name, cube))
        with rasterio.open(paths[-1], "r+") as ds:
            for band in range(1, 13):
                ds.update_tags(band, wavelength=str(start + 10 * band))
    _one_line_error(_cli(*paths, "--out", tmp_path / "m"),
                    f"swir.tif: band 1 is centred at 1410 nm but {paths[0]} has 410 nm there")
    _nothing_written(tmp_path, "visible.tif", "swir.tif")


def test_cli_more_bins_than_bands(torch, synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    _one_line_error(_cli(path, "--out", tmp_path / "m", "--bands", 50),
                    "cannot bin 12 bands into 50 bands")
    _nothing_written(tmp_path, "scene.tif")


def test_cli_window_larger_than_the_image(torch, synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    _one_line_error(_cli(path, "--out", tmp_path / "m", "--window", 41),
                    "window 41 is larger than the 40x50 image")
    _one_line_error(_cli(path, "--out", tmp_path / "m", "--window", 4), "positive odd number")
    _nothing_written(tmp_path, "scene.tif")


def test_cli_all_nodata_raster(torch, tmp_path):
    path = write_raster(tmp_path / "empty.tif", np.full((5, 20, 20), NODATA, np.float32),
                        nodata=NODATA)
    _one_line_error(_cli(path, "--out", tmp_path / "m"), "no valid pixels")
    _nothing_written(tmp_path, "empty.tif")


def test_cli_names_a_band_without_values(torch, tmp_path):
    cube = np.random.default_rng(0).normal(100, 5, (5, 20, 20)).astype(np.float32)
    cube[1] = np.nan
    path = write_raster(tmp_path / "scene.tif", cube)
    _one_line_error(_cli(path, "--out", tmp_path / "m"),
                    "scene.tif: no pixel is valid in every band: band 2 holds only NaN")
    _nothing_written(tmp_path, "scene.tif")


def test_cli_unwritable_out(torch, synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    _one_line_error(_cli(path, "--out", tmp_path / "missing" / "m"), "does not exist")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    _one_line_error(_cli(path, "--out", tmp_path / "notes"), "not a model bundle")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    _nothing_written(tmp_path, "scene.tif", "notes")


def test_cli_cuda_without_cuda(torch, synthetic_raster, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    path, _, _ = synthetic_raster
    _one_line_error(_cli(path, "--out", tmp_path / "m", "--device", "cuda"), "CUDA is not available")
    _nothing_written(tmp_path, "scene.tif")


def test_checkpoint_is_never_written_through_a_link_at_a_predictable_name(tmp_path):
    import torch

    from hsanomaly.training.wgan import save_checkpoint

    class Trainer:
        def state_dict(self):
            return {"w": torch.ones(3)}

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = tmp_path / "state.npz"
    (tmp_path / "state.npz.tmp").symlink_to(victim)     # the old fixed temporary name
    save_checkpoint(state, Trainer(), [{"step": 1}], "key")
    assert victim.read_text() == "keep me"
    with np.load(state, allow_pickle=False) as z:
        assert "__tree__" in z.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz", "state.npz.tmp", "victim.txt"]


def test_training_without_onnx_or_its_runtime_is_refused_before_any_work(synthetic_raster,
                                                                          tmp_path, monkeypatch):
    """The export and its check come last: without onnx or onnxruntime every iteration ran
    before the failure."""
    import importlib.util

    from hsanomaly.training import train

    real = importlib.util.find_spec
    path, _, _ = synthetic_raster
    for missing in ("onnx", "onnxruntime"):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, missing=missing: None if name == missing else real(name, *a))
        with pytest.raises(HsanomalyError, match=f"training needs {missing}: pip install torch "
                                                 r"--index-url https://download.pytorch.org/whl/"
                                                 r"cpu && pip install 'hsanomaly\[cpu,train\]'"):
            train([path], tmp_path / "model", iterations=4)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_background_only_without_a_mask_is_refused(synthetic_raster, tmp_path):
    """It was accepted and did nothing: windows are dropped for touching mask pixels only."""
    from hsanomaly.training import train

    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError, match="'background_only': .* no 'mask' was given"):
        train([path], tmp_path / "m", background_only=True)
    assert not (tmp_path / "m").exists()


def test_pooled_inputs_keep_the_wavelengths_of_any_and_differing_units_are_said(tmp_path):
    """The bundle took its band centres from the first input only (none, so detect's
    wavelength check was off for the model) and inputs 10,000 times apart trained as one."""
    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    plain = write_raster(tmp_path / "plain.tif", cube)
    named = write_raster(tmp_path / "named.tif", cube)
    centres = [400.0 + 10 * b for b in range(len(cube))]
    with rasterio.open(named, "r+") as ds:
        for band, centre in enumerate(centres, start=1):
            ds.update_tags(band, wavelength=str(centre), wavelength_units="nm")
    with pytest.warns(HsanomalyWarning, match="plain.tif: has no band centres to check against "
                                              "those of .*named.tif"):
        assert load_training_data([plain, named]).wavelengths == pytest.approx(centres)
    scaled = write_raster(tmp_path / "scaled.tif", cube * 10000)
    with pytest.warns(HsanomalyWarning, match=r"scaled.tif: its values are typically 1e\+04 times "
                                              r"those of .*plain.tif"):
        load_training_data([plain, scaled])


def test_training_warns_of_the_data_as_detect_does_but_not_twice_for_a_quick_model(tmp_path):
    """An undeclared fill value entered a model's training range without a word; a quick
    model's raster is checked by detect as it scores it, so its training says nothing more
    (it named the temporary copy a Detector trains on)."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    cube[:, :, :15] = -9999
    path = write_raster(tmp_path / "filled.tif", cube)
    with pytest.warns(HsanomalyWarning, match="filled.tif: 30% of the pixels probed hold -9999"):
        load_training_data([path])
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        load_training_data([path], check_data=False)


def test_a_device_torch_does_not_know_is_named_by_its_option(torch, synthetic_raster, tmp_path):
    from hsanomaly.training import train

    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError, match=r"^device='gpu': unknown device; use cpu, "
                                             r"cuda or cuda:N$"):
        train([path], tmp_path / "m", device="gpu", iterations=1)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("device", ["mps", "meta", "xpu"])
def test_a_device_it_does_not_train_on_is_refused_before_the_data_are_read(
        torch, synthetic_raster, tmp_path, device):
    """torch parses these names: --device mps (the natural guess on Apple hardware) ended in a
    55-line traceback after the data were read (the training audit's F4). Said as detect says
    it (train said "not a torch device" of --device gpu)."""
    path, _, _ = synthetic_raster
    _one_line_error(_cli(path, "--out", tmp_path / "m", "--device", device),
                    f"--device {device}: unknown device; use cpu, cuda or cuda:N")
    assert not (tmp_path / "m").exists()


def test_a_truth_given_as_the_scene_is_refused(torch, synthetic_raster, tmp_path):
    """train truth.tif trained a one-band model on 0s and 1s without a word; the mistake
    surfaced at detect, as a band count (the training audit's F6)."""
    path, truth, _ = synthetic_raster
    truth_path = write_raster(tmp_path / "truth.tif", truth[None].astype(np.uint8))
    _one_line_error(_cli(truth_path, "--out", tmp_path / "m"),
                    f"{truth_path}: its pixels hold only 0 and 1: a truth or mask raster, not "
                    "a scene to train on")
    assert not (tmp_path / "m").exists()


def test_detect_warns_of_a_truth_given_as_the_scene_and_scores_a_two_valued_one(
        torch, tmp_path):
    """The refusal reached detect's quick model too, worded for training, and refused a toy
    scene of two values the earlier versions scored (the review's F4): detect warns instead,
    whatever the score."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    cube = np.ones((12, 24, 24), np.float32)
    cube[:, 10:14, 10:14] = 2.0
    toy = write_raster(tmp_path / "toy.tif", cube)
    for score in ("rx", "recon"):
        with pytest.warns(HsanomalyWarning, match=f"{toy}: the pixels probed hold only 1 and 2: "
                                                  "a truth or mask raster rather than a scene"):
            hsanomaly.detect(toy, tmp_path / f"{score}.tif", score=score)
        assert (tmp_path / f"{score}.tif").is_file()


@pytest.mark.parametrize("option, value, message", [
    ("latent_dim", 10**6, "must be from 1 to 64, got 1000000"),
    ("latent_dim", 0, "must be from 1 to 64, got 0"),
    ("dim", 10**5, "must be from 1 to 1024, got 100000"),
    ("batch", 10**9, "must be at most 65536, got 1000000000"),
])
def test_network_sizes_past_any_useful_model_are_refused_first(torch, synthetic_raster, tmp_path,
                                                               option, value, message):
    """latent_dim=10**6 trained, wrote a 1.5 GB checkpoint, then died in a raw RuntimeError at
    the export; batch=10**9 in one at the first step (the training audit's F7)."""
    from hsanomaly.training import checkpoint_dir, train

    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError, match=f"^{tmp_path / 'm'}: '{option}' {message}$"):
        train([path], tmp_path / "m", iterations=1, **{option: value})
    assert not (tmp_path / "m").exists() and not checkpoint_dir(tmp_path / "m").exists()


def test_the_log_cadence_leaves_the_model_as_it_is(torch, synthetic_raster, tmp_path, monkeypatch):
    """training.csv gets at most LOG_ROWS rows, each with the held-out estimate (both networks
    over the held-out windows: as costly as training when run every iteration). How often it
    is measured never changes the networks: it draws nothing from the training's stream."""
    import hsanomaly.training as training

    path, _, _ = synthetic_raster
    bundles = []
    for rows in (10, 2):
        monkeypatch.setattr(training, "LOG_ROWS", rows)
        bundles.append(training.train([path], tmp_path / f"rows{rows}", iterations=10, batch=32,
                                      threads=1, progress=False))
    import onnx
    from onnx import numpy_helper

    logged = [len((b.path / "training.csv").read_text().splitlines()) - 1 for b in bundles]
    assert logged == [10, 2]
    for network in ("generator.onnx", "critic.onnx"):   # the weights (the metadata holds the log)
        weights = [[numpy_helper.to_array(w) for w in onnx.load(b.path / network).graph.initializer]
                   for b in bundles]
        assert len(weights[0]) > 5 and all(np.array_equal(*pair) for pair in zip(*weights))


def test_a_checkpoint_write_cut_short_by_a_kill_blocks_nothing(synthetic_raster, tmp_path):
    """A SIGKILL while state.npz was written left the writer's private folder in the
    checkpoint directory; every later train on that --out was refused ("not an hsanomaly
    output"), --resume included, until the user found and deleted it."""
    import subprocess
    import sys

    from hsanomaly.training import check_out, checkpoint_dir

    path, _, _ = synthetic_raster
    checkpoints = checkpoint_dir(tmp_path / "m")
    checkpoints.mkdir()
    (checkpoints / "state.npz").write_bytes(b"the last whole checkpoint")
    killed = subprocess.run([sys.executable, "-c", (
        "import os\nfrom hsanomaly.io.atomic import atomic_path\n"
        f"with atomic_path({str(checkpoints / 'state.npz')!r}) as tmp:\n"
        "    open(tmp, 'wb').write(b'half')\n    os._exit(9)\n")])
    assert killed.returncode == 9 and len(list(checkpoints.iterdir())) == 2
    check_out(tmp_path / "m", [path])
    assert [p.name for p in checkpoints.iterdir()] == ["state.npz"]


@pytest.mark.parametrize("options, message", [
    ({"threads": -1}, "'threads' must be a whole number of at least 1, got -1"),
    ({"threads": 0}, "'threads' must be a whole number of at least 1, got 0"),
    ({"mask": ()}, "'mask': expected one mask for all inputs, or one per input (1), got 0"),
    ({"mask": [None]}, "'mask': expected a mask's path (a str or path-like), got None"),
    ({"mask": 3}, "'mask': expected a mask's path (a str or path-like), got an int")])
def test_bad_thread_counts_and_masks_are_one_line_before_any_work(synthetic_raster, tmp_path,
                                                                  options, message):
    """They ended in torch's RuntimeError after the data were read, an IndexError while the
    error message itself was built, or a TypeError; 0 threads was taken as 1."""
    import hsanomaly

    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.train(path, tmp_path / "m", iterations=1, **options)
    assert str(err.value) == message
    assert not (tmp_path / "m").exists()


def test_numpy_numbers_train_as_the_numbers_they_are(torch, synthetic_raster, tmp_path):
    """np.int64 iterations, seed or bands passed the checks, then crashed at the first
    checkpoint or, for bands, at export after the whole training."""
    import hsanomaly

    path, _, _ = synthetic_raster
    plain = hsanomaly.train(path, tmp_path / "plain", iterations=2, seed=1, bands=6, lr=1e-3)
    typed = hsanomaly.train(path, tmp_path / "typed", iterations=np.int64(2), seed=np.int64(1),
                            bands=np.int64(6), lr=np.float64(1e-3))
    assert _files(typed.path) == _files(plain.path)


def test_the_command_line_takes_one_mask_per_input(torch, synthetic_raster, tmp_path):
    """--mask given twice kept the last for every input: the first input's masked targets
    were trained on. It is one mask per input now, as hsanomaly.train(mask=[...]) takes."""
    import hsanomaly
    from hsanomaly.cli import main

    path, truth, _ = synthetic_raster
    other = write_raster(tmp_path / "other.tif", synthetic_cube(seed=7)[0])
    masks = [write_raster(tmp_path / f"mask{i}.tif", m[None].astype(np.float32))
             for i, m in enumerate((truth, np.zeros_like(truth)))]
    result = CliRunner().invoke(main, ["train", str(path), str(other), "--out", str(tmp_path / "cli"),
                                       "--mask", str(masks[0]), "--mask", str(masks[1]),
                                       "--iterations", "2", "-q"])
    assert result.exit_code == 0, result.output
    library = hsanomaly.train([path, other], tmp_path / "lib", mask=masks, iterations=2)
    assert _files(tmp_path / "cli") == _files(library.path)
    # which masks, not only that one was (the provenance audit's F08)
    assert hsanomaly.info(library.path)["settings"]["mask"] == ["mask0.tif", "mask1.tif"]
    result = CliRunner().invoke(main, ["train", str(path), str(other), "--out", str(tmp_path / "x"),
                                       *[a for m in masks + masks[:1] for a in ("--mask", str(m))]])
    assert result.exit_code == 1 and "one per input (2)" in result.output


def test_an_input_given_twice_is_said(torch, synthetic_raster, tmp_path):
    """Its windows counted twice and held-out windows duplicated training ones, silently."""
    import os

    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    path, _, _ = synthetic_raster
    with pytest.warns(HsanomalyWarning, match=f"{path}: given 2 times; its windows count"):
        hsanomaly.train([path, path], tmp_path / "m", iterations=1)
    # under two spellings too (the training audit's F5): it was trained on without a word
    (tmp_path / "link.tif").symlink_to(path)
    with pytest.warns(HsanomalyWarning, match=f"{path}: given 3 times; its windows count"):
        hsanomaly.train([path, tmp_path / "link.tif", os.path.relpath(path)], tmp_path / "n",
                        iterations=1)


def test_train_refuses_a_codebook_jacobians_that_is_no_flag_before_training(tmp_path):
    """``codebook_jacobians="no"`` was taken as true, after the whole training; its fellow
    flags (``whiten``) are refused at once."""
    from hsanomaly.training import train

    with pytest.raises(HsanomalyError, match=r"^'codebook_jacobians' must be True or False, "
                                             r"got 'no'$"):
        train([str(tmp_path / "never-read.tif")], tmp_path / "model", codebook_jacobians="no")


def test_a_model_beyond_what_a_bundle_takes_is_refused_before_training(torch, tmp_path):
    """205 bands in 19x19 windows trained whole, then the bundle was refused as it loaded
    (and the checkpoint went with the training)."""
    from hsanomaly.training import train
    from synthetic import EXAMPLE

    with pytest.raises(HsanomalyError, match=r"205 bands in 19x19 windows make 74,005 values a "
                                             r"pixel, beyond what any model takes \(65,536\); "
                                             r"ask for fewer 'bands' or a smaller 'window'"):
        train([EXAMPLE], tmp_path / "model", window=19, bands=205, iterations=1, progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("first", ["main thread", "another thread"])
def test_overlapping_trainings_leave_torchs_threads_as_the_caller_had_them(torch, first):
    """Each training put back the count it saw on entry: of two that overlap, the second to
    end put back the first's one thread, and new threads of the caller ran on one for good."""
    import threading

    from hsanomaly.training import _torch_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    entered, leave = threading.Event(), threading.Event()

    def other():
        with _torch_threads(torch, 1):
            entered.set()
            leave.wait(10)
    try:
        if first == "main thread":
            worker = threading.Thread(target=other)
            with _torch_threads(torch, 1):           # first in, first out
                worker.start()
                entered.wait(10)
            leave.set()
            worker.join()
        else:
            worker = threading.Thread(target=other)
            worker.start()
            entered.wait(10)
            with _torch_threads(torch, 1):           # last in, first out
                leave.set()
                worker.join()
        seen = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert (torch.get_num_threads(), seen) == (2, [2])
    finally:
        torch.set_num_threads(before)


def test_a_generator_that_did_not_learn_the_scene_is_said(torch, synthetic_raster, tmp_path):
    """A collapsed, untrained or diverged generator was exported without a word, and the
    summary's held-out Wasserstein estimate read best for exactly those (the training audit's
    F01, F03): its spread against the data's is measured, recorded and said."""
    import hsanomaly

    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"model: the trained generator's "
                      r"spectra spread 0\.\d+ of the training data's .* did not learn in 1 "
                      r"iterations"):
        bundle = hsanomaly.train([synthetic_raster[0]], tmp_path / "model", iterations=1,
                                 threads=1)
    health = bundle.meta["training"]["health"]
    assert health["spread"] < 0.2 and health["offset"] >= 0
    assert bundle.text().endswith(f", generator spread {health['spread']:.2f} of the data's")
    # two bands or one always collapse (clean HYDICE too): said so, not a saturated pixel
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"; with 2 bands it always does\. "
                      r"recon, critic and anogan would score against it$"):
        hsanomaly.train([synthetic_raster[0]], tmp_path / "two", iterations=1, bands=2,
                        threads=1)
    # a multispectral scene's quick model: no saturated pixel to blame, and no model to train
    # (the multispectral audit's F03: 4-7 bands collapsed, the advice could not be followed)
    from hsanomaly.training.health import warn_unhealthy

    for bands, why, remedy in [
            (5, "with 5 bands (a multispectral scene) it often does", "a score without a GAN "
             "(lrx or gmm, as 'score') suits so few bands"),
            (50, "a few saturated or extreme pixels can do it", "train a model and pass it as "
             "'model'")]:
        with pytest.warns(hsanomaly.HsanomalyWarning) as caught:
            warn_unhealthy({"spread": 0.15, "offset": 0.1}, "scene.tif", {
                "iterations": 250, "bands": bands, "whitened": False, "quick": True})
        said = str(caught[0].message)
        assert why in said and said.endswith(f"GAN terms are scored against it: {remedy}")


def test_inputs_in_other_units_are_said_when_training(tmp_path):
    """Reflectance 0-1 beside the same ground in percent (99 times) or a 10-times unit
    convention trained without a word: only a typical value over 100 times another's was
    said, where detect says 4 times of every band alike (the multi-raster audit). Two scenes
    of one sensor are not said."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    def said(*cubes):
        paths = [write_raster(tmp_path / f"{i + 1}.tif", cube) for i, cube in enumerate(cubes)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_training_data(paths, max_pixels=2000)
        return [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)
                and "times those of" in str(w.message)]

    a = synthetic_cube(bands=12, rows=30, cols=30, seed=1)[0]
    a = (a - a.min()) / np.ptp(a) * 0.5 + 0.05                       # reflectance 0-1
    b = synthetic_cube(bands=12, rows=30, cols=30, seed=2)[0]
    b = (b - b.min()) / np.ptp(b) * 0.5 + 0.05
    assert said(a, b) == []
    for times in (10, 50):
        [message] = said(a, b * times)
        assert message.startswith(f"{tmp_path / '2.tif'}: its values are about {times:.2g} "
                                  f"times those of {tmp_path / '1.tif'}, in every band alike: "
                                  "other units"), message
    [message] = said(a, b * 1000)
    assert "its values are typically" in message and "times those of" in message


def test_training_leaves_out_hsanomaly_s_own_outputs_a_pattern_matches(tmp_path):
    """``train "dir/*.tif"`` over a folder holding a --recon-out raster of the bands it takes
    trained on the reconstruction too (model.json listed it), said only as "no band
    centres"; detect-many already left such files out (the multi-raster audit)."""
    import warnings

    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    cube = synthetic_cube(bands=8, rows=20, cols=20)[0]
    scenes = [write_raster(tmp_path / f"{name}.tif", cube + i) for i, name in enumerate("ab")]
    hsanomaly.detect(scenes[0], tmp_path / "a_rx.tif", score="rx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = hsanomaly.train(str(tmp_path / "*.tif"), tmp_path / "model", iterations=2,
                                 batch=32, critic_steps=1, threads=1)
    said = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
    assert f"{tmp_path / 'a_rx.tif'}: left out of the inputs, being hsanomaly's own outputs " \
        "(heatmaps, quick models, tile stores, quick looks, target polygons)" in said
    assert bundle.meta["training"]["inputs"] == ["a.tif", "b.tif"]


def test_inputs_of_the_same_bands_in_another_order_are_told_to_reorder(tmp_path):
    """Training said "all inputs must have the same bands" of a raster holding the same band
    centres in another order, where detect tells it to put them in order (the multi-raster
    audit)."""
    cube = synthetic_cube(bands=6, rows=12, cols=12)[0]
    centres = [450.0, 550.0, 650.0, 750.0, 850.0, 950.0]

    def scene(name, order):
        path = write_raster(tmp_path / name, cube[order])
        with rasterio.open(path, "r+") as ds:
            for band, i in enumerate(order, start=1):
                ds.update_tags(band, wavelength=str(centres[i]), wavelength_units="nm")
        return path
    first, turned = scene("a.tif", [0, 1, 2, 3, 4, 5]), scene("b.tif", [5, 4, 3, 2, 1, 0])
    with pytest.raises(HsanomalyError) as err:
        load_training_data([first, turned])
    assert str(err.value) == (
        f"{turned}: holds the band centres {first} has, in another order (band 1 is centred at "
        f"950 nm, {first}'s band 1 at 450 nm); put its bands in {first}'s order (gdal_translate "
        "-b, a DataArray's sortby)")


def test_the_windows_each_input_gave_are_recorded_and_shown(tmp_path):
    """A small raster beside a large one was 2 % of the training, which nothing said: each
    counts by its valid pixels, and model.json and ``info`` now say how many windows each
    gave (the multi-raster audit)."""
    import hsanomaly

    small = write_raster(tmp_path / "small.tif", synthetic_cube(bands=6, rows=12, cols=12)[0])
    large = write_raster(tmp_path / "large.tif", synthetic_cube(bands=6, rows=48, cols=48)[0])
    data = load_training_data([small, large])
    assert data.per_input == [144, 2304]                     # every valid pixel, in order
    assert sum(data.per_input) == len(data.train) + len(data.val)
    assert load_training_data([small, large], max_pixels=1000).per_input[0] < 100
    bundle = hsanomaly.train([small, large], tmp_path / "model", iterations=2, batch=32,
                             critic_steps=1, threads=1)
    assert bundle.meta["training"]["windows"]["per_input"] == [144, 2304]
    assert hsanomaly.info(tmp_path / "model")["windows"]["per_input"] == [144, 2304]


def test_training_on_nothing_but_its_own_outputs_says_so(tmp_path):
    """A heatmap alone given to train was left out, said, and then "no input rasters given"
    (review 1's F07)."""
    import hsanomaly

    scene = write_raster(tmp_path / "a.tif", synthetic_cube(bands=8, rows=20, cols=20)[0])
    hsanomaly.detect(scene, tmp_path / "a_rx.tif", score="rx")
    with pytest.warns(hsanomaly.HsanomalyWarning, match="left out of the inputs"), \
            pytest.raises(HsanomalyError) as err:
        hsanomaly.train(tmp_path / "a_rx.tif", tmp_path / "model", iterations=2)
    assert str(err.value) == ("'inputs': every raster given is hsanomaly's own output, left out: "
                              "no scene to work on")
    assert not (tmp_path / "model").exists()
