"""Every score against an independent reference (scikit-learn, plain numpy, onnxruntime called
directly), and the default path a user meets first, end to end through the CLI."""

import contextlib
import importlib.util
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsanomaly.cli import main
from hsanomaly.engine import score_array
from hsanomaly.errors import HsanomalyError
from hsanomaly.evaluation import evaluate
from hsanomaly.io import ArraySource
from hsanomaly.scorers import make_scorer

from synthetic import synthetic_cube, write_raster

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the GAN references train a model: needs torch")
TARGETS = ((4, 4), (9, 30), (30, 7), (38, 40))


def _cli(*args):
    outcome = CliRunner().invoke(main, [str(a) for a in args])
    assert outcome.exit_code == 0, outcome.output
    return outcome


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small scene (44 x 46 pixels, 12 bands: the default score's largest ring is 41x41) with
    four planted 2x2 targets."""
    root = tmp_path_factory.mktemp("references")
    cube, truth = synthetic_cube(rows=44, cols=46, targets=TARGETS, seed=7)
    return root, write_raster(root / "scene.tif", cube), cube, truth


@pytest.fixture(scope="module")
def model(scene):
    from hsanomaly.training import train

    root, path, _, _ = scene
    return train([path], root / "model", iterations=5, progress=False).path


def test_gmm_equals_scikit_learn_pca_and_mixture(scene):
    """scikit-learn's PCA and mixture, less the components that hold fewer pixels than their
    covariance needs or than a tenth of their fair share, and scipy's densities."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    _, _, cube, _ = scene
    pixels = cube.reshape(cube.shape[0], -1).T.astype(np.float64)   # the sample is every pixel
    pca = PCA(n_components=5, random_state=3).fit(pixels)
    components = pca.transform(pixels) / np.sqrt(np.mean(pca.explained_variance_))
    mixture = GaussianMixture(3, covariance_type="full", random_state=3, reg_covar=1e-6)
    mixture.fit(components)
    held = mixture.weights_ * len(pixels)          # a covariance on 5 dimensions needs 6, and
    kept = held >= max(5 + 1, 0.1 * len(pixels) / 3)  # a tenth of a fair share of 3 components
    assert not kept.all()                            # the planted targets' component goes
    weights = mixture.weights_[kept] / mixture.weights_[kept].sum()
    reference = -logsumexp([np.log(w) + multivariate_normal(m, c).logpdf(components) for w, m, c
                            in zip(weights, mixture.means_[kept], mixture.covariances_[kept])],
                           axis=0)
    scorer = make_scorer("gmm", components=3, pca=5, seed=3).fit(ArraySource(cube))
    ours = score_array(ArraySource(cube), scorer)["score"][0].ravel()
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def _isolated_outliers():
    """Two background materials, 100x100 pixels, 20 bands, and five one-pixel anomalies."""
    rng = np.random.default_rng(0)
    bands, rows, cols = 20, 100, 100
    two = rng.random((rows, cols)) < 0.5
    first, second = rng.normal(size=bands) * 5 + 100, rng.normal(size=bands) * 5 + 80
    mixing = rng.normal(size=(bands, bands)) * 0.3
    cube = (np.where(two, first[:, None, None], second[:, None, None])
            + np.einsum("ij,jrc->irc", mixing, rng.normal(size=(bands, rows, cols))))
    targets = [(10, 10), (30, 70), (50, 50), (80, 20), (90, 90)]
    for r, c in targets:
        cube[:, r, c] += 3 * rng.normal(size=bands)
    return cube.astype(np.float32), targets


def test_gmm_ranks_isolated_outliers_highest_not_lowest():
    """EM gave the five outliers components of their own (4 and 9 pixels), whose collapsed
    covariances made them the scene's most normal pixels (ranks 9987-9997 of 10000).
    Components that hold fewer pixels than a covariance on their dimensions needs are
    dropped; the score is then -log of the rest's density, renormalised, as scipy computes
    it from the fitted parameters."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    cube, targets = _isolated_outliers()
    scorer = make_scorer("gmm").fit(ArraySource(cube))
    heat = score_array(ArraySource(cube), scorer)["score"][0]
    assert max(int((heat > heat[r, c]).sum()) for r, c in targets) < len(targets)
    mixture = scorer.mixture_
    assert mixture.weights_.min() * 10000 >= 21 and mixture.weights_.sum() == pytest.approx(1)
    X = scorer._components(cube.reshape(cube.shape[0], -1).T)
    density = logsumexp([np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in
                         zip(mixture.weights_, mixture.means_, mixture.covariances_)], axis=0)
    np.testing.assert_allclose(heat.ravel(), -density, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("side", [6, 9])
def test_gmm_ranks_a_compact_target_highest_not_lowest(side):
    """EM gives a spare component to a compact target of a few dozen pixels: enough for a
    covariance, so it was kept, and the target scored as the scene's most normal pixels
    (AUC 0.00). A component under a tenth of its fair share goes."""
    rng = np.random.default_rng(0)
    two = rng.random((100, 100)) < 0.5
    first, second = rng.normal(size=20) * 5 + 100, rng.normal(size=20) * 5 + 80
    cube = (np.where(two, first[:, None, None], second[:, None, None])
            + 0.3 * rng.normal(size=(20, 100, 100)))
    truth = np.zeros((100, 100), bool)
    truth[40:40 + side, 60:60 + side] = True
    cube[:, truth] = (first + 15 * rng.normal(size=20))[:, None] + 0.3 * rng.normal(
        size=(20, side * side))
    source = ArraySource(cube.astype(np.float32))
    heat = score_array(source, make_scorer("gmm").fit(source))["score"][0]
    assert evaluate(heat, truth)["auc"] == 1.0


def test_gmm_with_many_components_keeps_every_background_class():
    """Each of 120 background classes holds under 1 % of the pixels but plenty for its
    covariance: a share rule would have dropped most of them (AUC 1.00 -> 0.52)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 120, size=(100, 100))
    spectra = rng.normal(size=(120, 10)) * 10 + 100
    cube = (spectra[labels].transpose(2, 0, 1) + rng.normal(size=(10, 100, 100))).astype(
        np.float32)
    scorer = make_scorer("gmm", components=120).fit(ArraySource(cube))
    assert scorer.mixture_.n_components == 120


def test_rx_and_multi_ring_local_rx_equal_plain_numpy(scene):
    _, _, cube, _ = scene
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    d = X - X.mean(0)
    rx = np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(X, rowvar=False)), d)
    scorer = make_scorer("rx").fit(ArraySource(cube))
    np.testing.assert_allclose(score_array(ArraySource(cube), scorer)["score"][0].ravel(), rx,
                               rtol=1e-4)
    # multi-ring local RX: the mean of the rings' log local RX, each a plain loop here
    rings = ((5, 3), (7, 3))
    mlrx = make_scorer("mlrx", rings="5/3;7/3", pca=4).fit(ArraySource(cube))
    ours = score_array(ArraySource(cube), mlrx)["score"][0]
    vecs = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :4]
    P = ((X - X.mean(0)) @ vecs).reshape(cube.shape[1], cube.shape[2], 4)
    for r, c in ((11, 12), (2, 20), (31, 8)):
        assert ours[r, c] == pytest.approx(_ring_log_rx(P, r, c, rings), abs=1e-3)


def test_top_rings_average_each_pixels_largest_ring_distances(scene):
    """top_rings=2 of 3 rings: each pixel's two largest log local RX, whichever rings they are
    (they differ from pixel to pixel), against plain loops; the mean of all 3 differs."""
    _, _, cube, _ = scene
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    rings = ((5, 3), (7, 3), (11, 5))
    top = make_scorer("mlrx", rings="5/3;7/3;11/5", pca=4, top_rings=2)
    ours = score_array(ArraySource(cube), top.fit(ArraySource(cube)))["score"][0]
    vecs = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :4]
    P = ((X - X.mean(0)) @ vecs).reshape(cube.shape[1], cube.shape[2], 4)
    dropped = set()
    for r, c in ((11, 12), (2, 20), (31, 8), (20, 30), (9, 30)):
        assert ours[r, c] == pytest.approx(_ring_log_rx(P, r, c, rings, top=2), abs=1e-3)
        assert abs(ours[r, c] - _ring_log_rx(P, r, c, rings)) > 1e-3
        logs = [_ring_log_rx(P, r, c, (ring,)) for ring in rings]
        dropped.add(int(np.argmin(logs)))
    assert len(dropped) > 1
    assert top.params()["top_rings"] == 2
    assert make_scorer("mlrx", rings="5/3;7/3", top_rings=2).params()["top_rings"] == 0  # = all
    with pytest.raises(HsanomalyError, match="'top_rings' must be a whole number"):
        make_scorer("mlrx", top_rings=-1)


def test_a_ring_too_short_of_pixels_leaves_the_pixel_to_the_other_rings(scene):
    """At a corner the 3/1 ring holds 3 pixels, too few for a 4 x 4 covariance: the corner is
    scored by its 9/3 ring alone, not left without a score."""
    _, _, cube, _ = scene
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    mlrx = make_scorer("mlrx", rings="3/1;9/3", pca=4).fit(ArraySource(cube))
    ours = score_array(ArraySource(cube), mlrx)["score"][0]
    vecs = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :4]
    P = ((X - X.mean(0)) @ vecs).reshape(cube.shape[1], cube.shape[2], 4)
    assert not np.isnan(ours).any()
    assert ours[0, 0] == pytest.approx(_ring_log_rx(P, 0, 0, ((9, 3),)), abs=1e-3)
    assert ours[20, 20] == pytest.approx(_ring_log_rx(P, 20, 20, ((3, 1), (9, 3))), abs=1e-3)


def test_purged_rings_leave_the_excluded_pixels_out_of_their_statistics(scene):
    """``purge``: excluded pixels (say a cluster of anomalies) are not part of any ring's
    background, and are still scored."""
    _, _, cube, _ = scene
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    rings = ((5, 3), (7, 3))
    mlrx = make_scorer("mlrx", rings="5/3;7/3", pca=4).fit(ArraySource(cube))
    h = mlrx.halo
    block = np.pad(cube, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    valid = np.pad(np.ones(cube.shape[1:], bool), h)
    skip = np.zeros(cube.shape[1:], bool)
    skip[10:13, 11:14] = True
    ours = mlrx.log_score(block, valid, np.pad(skip, h))
    vecs = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :4]
    P = ((X - X.mean(0)) @ vecs).reshape(cube.shape[1], cube.shape[2], 4)
    for r, c in ((11, 12), (9, 10), (13, 15), (31, 8)):
        assert ours[r, c] == pytest.approx(_ring_log_rx(P, r, c, rings, skip), abs=1e-3)
    assert abs(ours[9, 10] - mlrx.log_score(block, valid)[9, 10]) > 1e-3   # it did change


def test_purge_threshold_comes_from_windows_spread_across_a_larger_scene():
    """On a scene of several fit windows, the threshold is the first pass's quantile over the
    windows placed in its quarters, as the plain score gives; placed alike from every side, so
    that the scene flipped or transposed has the same threshold (it was fitted on windows of
    a grid anchored at the top left corner: a flipped scene on other pixels, another
    heatmap)."""
    from hsanomaly.scorers import purge

    cube, _ = synthetic_cube(rows=300, cols=140, targets=TARGETS, seed=3)
    source = ArraySource(cube)
    picked = purge.fit_windows(300, 140)
    assert [window for window, *_ in next(purge.fit_batches(source, 0))[1]] == picked
    first = score_array(source, make_scorer("mlrx", rings="5/3;7/3", pca=4)
                        .fit(source))["score"][0]
    values = np.concatenate([first[w.toslices()].ravel() for w in picked])
    values = values[np.isfinite(values)]
    fitted = make_scorer("mlrx", rings="5/3;7/3", pca=4, purge=0.05).fit(source)
    assert fitted.purge_threshold_ == pytest.approx(np.quantile(values, 0.95), rel=1e-6)
    strip = synthetic_cube(rows=40, cols=700, targets=TARGETS, seed=4)[0]    # windows along it
    for scene in (cube, strip):
        fitted = make_scorer("mlrx", rings="5/3;7/3", pca=4, purge=0.05).fit(ArraySource(scene))
        for turned in (scene[:, ::-1], scene[:, :, ::-1], scene.transpose(0, 2, 1)):
            other = ArraySource(np.ascontiguousarray(turned))
            again = make_scorer("mlrx", rings="5/3;7/3", pca=4, purge=0.05).fit(other)
            assert again.purge_threshold_ == pytest.approx(fitted.purge_threshold_, rel=1e-6)


def test_the_purge_fit_windows_are_the_same_from_every_side():
    """Of every shape, squares, strips and odd sides: flipped and transposed, the windows are
    the same pixels (a middle window one pixel off centre gave a flipped strip another
    threshold)."""
    from hsanomaly.scorers.purge import fit_windows

    for rows in (*range(1, 140, 3), 200, 257, 401, 1000):
        for cols in (*range(1, 140, 7), 300, 401, 1650, 5000):
            windows = {(w.row_off, w.col_off, w.height, w.width) for w in fit_windows(rows, cols)}
            flipped = {(rows - r - h, cols - c - w, h, w) for r, c, h, w in windows}
            turned = {(c, r, w, h) for r, c, h, w in
                      ((w.row_off, w.col_off, w.height, w.width) for w in fit_windows(cols, rows))}
            assert windows == flipped == turned, (rows, cols)


def test_a_small_scenes_purge_is_fitted_on_one_first_pass(monkeypatch):
    """A scene of one fit window was fitted twice over (its window, then the same pixels as a
    tile): the default score's first pass, GAN terms and all, ran twice."""
    from hsanomaly.scorers import purge

    passes = []
    first_pass = purge.Purged._first_pass
    monkeypatch.setattr(purge.Purged, "_first_pass",
                        lambda self, *args: passes.append(1) or first_pass(self, *args))
    make_scorer("mlrx", rings="5/3;7/3", pca=4, purge=0.05).fit(ArraySource(synthetic_cube()[0]))
    assert len(passes) == 1


def test_purge_threshold_fitted_past_windows_a_mask_leaves_few_pixels_in():
    """A mask that leaves a few pixels in the windows spread across the scene (islands in
    water left out) fitted the scene's threshold on those few, their rings cut short: a
    fraction of the share asked was purged, without a word; isolated pixels there made the
    scene refused ("no pixel to fit its purge on"). Further windows are taken until a
    window's worth of pixels is scored."""
    from hsanomaly.scorers import purge

    cube, _ = synthetic_cube(rows=384, cols=384, bands=8, targets=(), seed=4)
    windows = ArraySource(cube).windows(purge.FIT_TILE)
    spread = [window for window, *_ in next(purge.fit_batches(ArraySource(cube), 0))[1]]
    for island in (5, 1):
        masked = cube.copy()
        for window in spread:
            rows, cols = window.toslices()
            kept = masked[:, rows.start + 40:rows.start + 40 + island,
                          cols.start + 40:cols.start + 40 + island].copy()
            masked[:, rows, cols] = np.nan
            masked[:, rows.start + 40:rows.start + 40 + island,
                   cols.start + 40:cols.start + 40 + island] = kept
        source = ArraySource(masked)
        first = score_array(source, make_scorer("mlrx", rings="5/1;9/3", pca=4)
                            .fit(source))["score"][0]
        fitted = make_scorer("mlrx", rings="5/1;9/3", pca=4, purge=0.03).fit(source)
        share = np.mean(first[np.isfinite(first)] > fitted.purge_threshold_)
        assert share == pytest.approx(0.03, abs=0.005), (island, share)
    assert len(windows) == 9


@pytest.mark.parametrize("flag, value, option", [("--purge", "0.05", {"purge": 0.05}),
                                                 ("--top-rings", "3", {"top_rings": 3}),
                                                 ("--rings", "5/3;11/5", {"rings": "5/3;11/5"})])
def test_ring_options_reach_the_score_from_the_cli(scene, tmp_path, flag, value, option):
    """``--purge``, ``--top-rings`` and ``--rings`` are the library's options: the same
    heatmap, and its tags say so; a score without rings refuses them."""
    _, path, cube, _ = scene
    heat = tmp_path / "heat.tif"
    _cli("detect", path, heat, "--score", "mlrx", flag, value, "-q")
    source = ArraySource(cube)
    expected = score_array(source, make_scorer("mlrx", **option).fit(source))["score"][0]
    np.testing.assert_allclose(_read(heat), expected, rtol=1e-5, atol=1e-5)
    with rasterio.open(heat) as ds:
        assert json.loads(ds.tags()["HSANOMALY_PARAMETERS"]).items() >= option.items()
    outcome = CliRunner().invoke(main, ["detect", str(path), str(tmp_path / "rx.tif"), "--score",
                                        "rx", flag, value, "-q"])
    assert outcome.exit_code == 1 and flag in outcome.output, outcome.output
    assert not (tmp_path / "rx.tif").exists()


def _ring_log_rx(P, r, c, rings, skip=None, top=None):
    """Mean over rings (``top``: the ``top`` largest only) of log local RX at (r, c), as plain
    loops over each ring's pixels."""
    logs = []
    for outer, guard in rings:
        ring = np.array([P[i, j] for i in range(r - outer // 2, r + outer // 2 + 1)
                         for j in range(c - outer // 2, c + outer // 2 + 1)
                         if 0 <= i < P.shape[0] and 0 <= j < P.shape[1]
                         and max(abs(i - r), abs(j - c)) > guard // 2
                         and (skip is None or not skip[i, j])])
        cov = np.cov(ring, rowvar=False)
        cov += 1e-6 * np.trace(cov) * np.eye(P.shape[2]) + 1e-12 * np.eye(P.shape[2])
        e = P[r, c] - ring.mean(0)
        n, k = len(ring), P.shape[2]
        hotelling = n * (n - k - 2) / ((n + 1) * (n - 1))    # expected distance k for any n
        logs.append(np.log(e @ np.linalg.solve(cov, e) * hotelling + 1e-12))
    return np.mean(sorted(logs)[-top:] if top else logs)


def _generator(bundle):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(bundle.generator_path),
                                           providers=["CPUExecutionProvider"])
    return lambda z: session.run(None, {"z": z.astype(np.float32)})[0].reshape(len(z), -1)


@needs_torch
def test_codebook_scale_reaches_the_latent_search_from_the_cli(scene, model, tmp_path):
    """``--codebook-scale`` is the library's ``codebook_scale``: the same heatmap, its tags say
    so, and it is not the default's (whose codebook covers the prior, scale 1)."""
    _, path, cube, _ = scene
    heat = tmp_path / "heat.tif"
    _cli("detect", path, heat, "--score", "recon", "--model", model, "--codebook-scale", "2.5",
         "-q")
    source = ArraySource(cube)
    expected = score_array(source, make_scorer("recon", model=model, codebook_scale=2.5))
    np.testing.assert_allclose(_read(heat), expected["score"][0], rtol=1e-5, atol=1e-7)
    with rasterio.open(heat) as ds:
        assert json.loads(ds.tags()["HSANOMALY_PARAMETERS"])["codebook_scale"] == 2.5
    default = score_array(source, make_scorer("recon", model=model))["score"][0]
    assert not np.allclose(default, expected["score"][0])


@needs_torch
def test_reconstruction_cost_with_c1_c2_equals_the_formula(scene, model):
    _, _, cube, _ = scene
    scorer = make_scorer("recon", model=model, c1=2.5, c2=0.7)
    out = score_array(ArraySource(cube), scorer)
    valid = np.ones(cube.shape[1:], bool)
    x = scorer.bundle.preprocessor.transform(cube[:, valid].T)
    z = out["latent"][:, valid].T
    g = _generator(scorer.bundle)(z)                    # G(z*) from onnxruntime directly
    residual = x - g
    assert np.ptp(np.abs(residual).mean(0)) > 0         # non-uniform residuals across bands
    np.testing.assert_allclose(out["recon"][:, valid].T, g, rtol=1e-4, atol=1e-5)
    expected = 2.5 * np.mean(residual ** 2, axis=1) + 0.7 * np.mean(z ** 2, axis=1)
    np.testing.assert_allclose(out["score"][0][valid], expected, rtol=1e-4, atol=1e-6)


@needs_torch
def test_resrx_equals_numpy_log_mahalanobis_of_the_residual(scene, model):
    _, _, cube, _ = scene
    scorer = make_scorer("resrx", model=model, sample=10**6)      # the sample is every pixel
    scorer.fit(ArraySource(cube))
    out = score_array(ArraySource(cube), scorer)
    bundle = scorer.gan.bundle
    x = bundle.preprocessor.transform(cube.reshape(cube.shape[0], -1).T)
    z = out["latent"].reshape(out["latent"].shape[0], -1).T
    residual = (x - _generator(bundle)(z)).astype(np.float64)
    d = residual - residual.mean(0)
    reference = np.log(np.einsum("ij,jk,ik->i", d, np.linalg.pinv(np.cov(residual, rowvar=False)),
                                 d) + 1e-12)
    np.testing.assert_allclose(out["score"][0].ravel(), reference, rtol=1e-3, atol=1e-3)


@needs_torch
def test_purged_dualcontext_is_its_one_pass_terms_with_the_top_pixels_left_out(scene, model):
    """dualcontext's purge: the one-pass score ranks the pixels; with its top 5 % left out of
    the rings, the resrx term (numpy-checked above) and the two ring terms make the score."""
    _, _, cube, _ = scene
    source = ArraySource(cube)
    options = dict(model=model, rings="5/3;7/3", pca=4, sample=10**6,
                   neighbour_weight=0)                  # the lift is tested below
    one = make_scorer("dualcontext", purge=0, **options).fit(source)
    out = score_array(source, one)
    first = out["score"][0]
    skip = first > np.quantile(first[np.isfinite(first)], 0.95)
    ours = score_array(source, make_scorer("dualcontext", purge=0.05, **options)
                       .fit(source))["score"][0]
    h = one.halo
    pad = ((0, 0), (h, h), (h, h))
    x = one.gan.bundle.preprocessor.transform(cube.reshape(cube.shape[0], -1).T)
    residual = (x - out["recon"].reshape(out["recon"].shape[0], -1).T).T
    residual = np.pad(residual.reshape(-1, *cube.shape[1:]), pad, constant_values=np.nan)
    valid, exclude = np.pad(np.ones(cube.shape[1:], bool), h), np.pad(skip, h)
    resrx = score_array(source, make_scorer("resrx", model=model, sample=10**6)
                        .fit(source))["score"][0]
    expected = (0.5 * resrx
                + one.local.log_score(np.pad(cube, pad, constant_values=np.nan), valid, exclude)
                + one.residual_local.log_score(residual, valid, exclude))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    assert not np.isnan(ours).any()
    assert np.abs(ours - first).max() > 1e-2                  # the purge did change the score


def _lift_by_loops(score, weight):
    """Each pixel plus ``weight`` x the highest finite score among its 3x3 neighbours (itself
    included), by plain loops; NaN stays NaN."""
    rows, cols = score.shape
    out = np.full(score.shape, np.nan)
    for r in range(rows):
        for c in range(cols):
            if np.isnan(score[r, c]):
                continue
            around = score[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
            out[r, c] = score[r, c] + weight * np.nanmax(around)
    return out


@pytest.mark.parametrize("purge", [0.05, 0.0])
def test_neighbour_weight_adds_the_highest_score_around_each_pixel_on_every_tile(scene, purge):
    """``neighbour_weight`` on a ring score, purged or not: the unlifted score plus w x its
    3x3 neighbourhood's maximum, against loops, with nodata pixels inside, tiled or whole."""
    _, _, cube, _ = scene
    cube = cube.copy()
    cube[:, 20:23, 5] = np.nan                               # nodata among the pixels
    source = ArraySource(cube)
    options = dict(rings="5/3;7/3", pca=4, purge=purge)
    plain = score_array(source, make_scorer("mlrx", **options).fit(source))["score"][0]
    lifted = make_scorer("mlrx", neighbour_weight=0.7, **options).fit(source)
    expected = _lift_by_loops(plain.astype(np.float64), 0.7)
    for tile in (16, 64):
        ours = score_array(source, lifted, tile=tile)["score"][0]
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    assert np.nanmax(np.abs(expected - plain)) > 0.5      # the lift did change the score
    assert lifted.halo == make_scorer("mlrx", **options).halo + 1
    assert lifted.params()["neighbour_weight"] == 0.7
    assert make_scorer("mlrx", **options).params()["neighbour_weight"] == 0     # said when off
    with pytest.raises(HsanomalyError, match="'neighbour_weight' must be at least 0"):
        make_scorer("mlrx", neighbour_weight=-0.5)


def test_neighbour_weight_on_the_default_score_lifts_its_purged_score(scene, model):
    _, _, cube, _ = scene
    source = ArraySource(cube)
    options = dict(model=model, rings="5/3;7/3", pca=4, sample=10**6, purge=0.05)
    plain = score_array(source, make_scorer("dualcontext", neighbour_weight=0,
                                            **options).fit(source))["score"][0]
    lifted = make_scorer("dualcontext", **options).fit(source)       # the default lifts by 0.5
    assert lifted.neighbour_weight == 0.5
    np.testing.assert_allclose(score_array(source, lifted, tile=16)["score"][0],
                               _lift_by_loops(plain.astype(np.float64), 0.5),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, options", [
    ("resrx", {}), ("context", dict(outer=7, guard=3, pca=4))])
def test_neighbour_weight_lifts_unpurged_residual_scores_across_tiles(scene, model, name,
                                                                      options):
    """Without a purge the residual scores solve only the pixels they score, unless the lift
    needs the halo's: a tile's edge pixels are lifted by their neighbours in the next tile.
    resrx scores pixels alone; lifted, ``score_samples`` refuses instead of not lifting."""
    _, _, cube, _ = scene
    source = ArraySource(cube)
    options = dict(model=model, sample=10**6, **options)
    plain = score_array(source, make_scorer(name, **options).fit(source))["score"][0]
    lifted = make_scorer(name, neighbour_weight=2.0, **options).fit(source)
    np.testing.assert_allclose(score_array(source, lifted, tile=16)["score"][0],
                               _lift_by_loops(plain.astype(np.float64), 2.0),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(HsanomalyError, match=f"'{name}' compares pixels with their neighbours"):
        lifted.score_samples(cube[:, 0, :].T)


@needs_torch
def test_the_default_score_ranks_planted_targets_through_the_cli(scene, model, tmp_path):
    _, path, _, truth = scene
    heat = tmp_path / "heat.tif"
    _cli("detect", path, heat, "--model", model, "-q")
    assert evaluate(_read(heat), truth)["auc"] > 0.99


@needs_torch
def test_the_first_path_a_user_meets_trains_then_scores_resumes_and_scales_out(
        scene, tmp_path, monkeypatch):
    """`hsanomaly detect in.tif out.tif` with no model, then --resume, --workers 2 and
    --polygons, default score. The CLI offers no iteration count for the model it trains and
    training costs per iteration whatever the scene's size (800 iterations: minutes on a busy
    2-core machine), so the one thing changed here is the iteration count hsanomaly.api's
    train receives; everything else is the default path."""
    import hsanomaly.api

    train = hsanomaly.api.train
    monkeypatch.setattr(hsanomaly.api, "train",
                        lambda *args, **options: train(*args, **{**options, "iterations": 30}))
    _, path, _, truth = scene
    first = tmp_path / "out.tif"
    outcome = _cli("detect", path, first, "-q")
    assert "model trained on" in outcome.output
    # the time is the whole call's, which a quick model's training is most of: said so
    assert re.search(r"heatmap, \d+ tiles? in [\d.]+ s \([\d.]+ s of it training the quick "
                     r"model\)", outcome.output)
    model = tmp_path / "out.model"
    assert (model / "model.json").exists()
    from hsanomaly.model import load_bundle

    assert not load_bundle(model).preprocessor.whiten     # the default score's plain model
    heat = _read(first)
    assert evaluate(heat, truth)["auc"] > 0.99

    resumed = tmp_path / "resumed.tif"
    _cli("detect", path, resumed, "--model", model, "--resume", "--tile", "16", "-q")
    _cli("detect", path, resumed, "--model", model, "--resume", "--tile", "16", "-q")
    np.testing.assert_allclose(_read(resumed), heat, rtol=1e-5, atol=1e-5)

    spread = tmp_path / "workers.tif"
    gpkg = tmp_path / "targets.gpkg"
    _cli("detect", path, spread, "--model", model, "--workers", "2", "--tile", "16",
         "--polygons", gpkg, "--far", "0.005", "-q")   # auto on so small a scene: test_targets
    np.testing.assert_array_equal(_read(spread), _read(resumed))
    import pyogrio

    layer = pyogrio.read_dataframe(gpkg, layer="targets")
    assert len(layer) >= 1 and layer.crs is not None


@needs_torch
def test_recon_trains_its_quick_model_on_whitened_bands_through_detect_and_detector(
        scene, tmp_path, monkeypatch):
    """A score's quick model gets the training its class declares (``model_training``): recon's
    whitens, through ``hsanomaly.detect`` (the CLI's path) and through ``Detector.fit``."""
    import hsanomaly
    import hsanomaly.training
    from hsanomaly.model import load_bundle

    train = hsanomaly.training.train
    monkeypatch.setattr(hsanomaly.training, "train",
                        lambda *args, **options: train(*args, **{**options, "iterations": 30}))
    _, path, cube, truth = scene
    hsanomaly.detect(path, tmp_path / "recon.tif", score="recon")
    quick = load_bundle(tmp_path / "recon.model")
    assert quick.preprocessor.whiten
    detector = hsanomaly.Detector("recon").fit(cube)
    assert load_bundle(detector.model_).preprocessor.whiten
    assert evaluate(detector.score(cube), truth)["auc"] > 0.9
    # neither stores the codebook's Jacobians, which only refinement steps read (and build)
    assert not quick.codebook.has_jacobian and not load_bundle(detector.model_).codebook.has_jacobian
    assert not list(quick.path.glob("*jacobian*"))
    stepped = hsanomaly.Detector("recon", model=quick.path, refine=2).fit(cube).score(cube)
    assert evaluate(stepped, truth)["auc"] > 0.9


def _calm_water():
    """uint16: water whose noise is below one count, land along one edge, a target off-centre:
    the probe windows (the centre and about the quarter points) hold water only."""
    rng = np.random.default_rng(0)
    wl = np.linspace(0, 1, 60)
    X = np.empty((60, 150, 150))
    X[:] = (300 * np.exp(-3 * wl) + 20)[:, None, None]
    X += rng.normal(0, 0.3, X.shape)
    X[:, :, 130:] = (1500 + 800 * wl)[:, None, None] + rng.normal(0, 60, (60, 150, 20))
    X[:, 5:7, 5:7] = (800 + 1500 * np.sin(6 * wl) ** 2)[:, None, None]
    return np.round(X).astype(np.uint16)


def _units_warnings(call):
    """The "other units" and "dead detector" warnings ``call()`` gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught
            if re.search("other units|dead detector|another band order", str(w.message))]


@needs_torch
def test_a_scene_is_not_said_to_be_in_other_units_than_itself(tmp_path, monkeypatch):
    """A scene scored against what was fitted on it was told to be in other units than itself
    ("fit it on this one") where its centre was calmer than the rest: its centre was compared
    with a fit on every probe window, or with a quick model trained on the whole scene."""
    import hsanomaly

    X = _calm_water()
    fitted = hsanomaly.Detector("rx").fit(X)
    assert _units_warnings(lambda: hsanomaly.Detector("rx").fit_score(X)) == []
    assert _units_warnings(lambda: fitted.score(X)) == []
    assert _units_warnings(lambda: fitted.score((X * 1e-3).astype(np.float32)))   # still said
    short_trainings(monkeypatch, 5)
    path = write_raster(tmp_path / "calm.tif", X, dtype="uint16")
    assert _units_warnings(lambda: hsanomaly.detect(path, tmp_path / "heat.tif")) == []
    assert _units_warnings(lambda: hsanomaly.Detector().fit(X).score(X)) == []


def short_trainings(monkeypatch, iterations):
    """The calls of hsanomaly.training.train from now on (a list), each cut to ``iterations``."""
    import hsanomaly.training

    trained, train = [], hsanomaly.training.train
    monkeypatch.setattr(hsanomaly.training, "train", lambda *args, **options: trained.append(args)
                        or train(*args, **{**options, "iterations": iterations}))
    return trained


@contextlib.contextmanager
def disk_full_at_tile(index):
    """Within the block, storing tile ``index`` fails as a full disk would."""
    from hsanomaly.engine import TileStore

    put = TileStore.put

    def put_or_fail(self, i, outputs):
        if i == index:
            raise HsanomalyError(f"{self.path}: cannot write a tile (disk full)")
        return put(self, i, outputs)

    TileStore.put = put_or_fail
    try:
        yield
    finally:
        TileStore.put = put


@needs_torch
def test_resume_reuses_the_quick_model_of_the_interrupted_run(scene, tmp_path, monkeypatch):
    """`detect in.tif out.tif --resume` after a failure: the failed run's quick model was staged
    with its heatmap and went with it, so the resume trains it again; training is repeatable,
    so the model is the same (the store's fingerprint vouches for it), the finished tiles are
    reused and the result equals a run that was never interrupted."""
    import hsanomaly.api

    trained = short_trainings(monkeypatch, 30)
    _, path, _, _ = scene
    dst = tmp_path / "out.tif"
    with disk_full_at_tile(3), pytest.raises(HsanomalyError, match="disk full"):
        hsanomaly.api.detect(path, dst, tile=16)
    assert not (tmp_path / "out.model").exists()
    resumed = hsanomaly.api.detect(path, dst, tile=16, resume=True)
    assert len(trained) == 2 and resumed.tiles_resumed >= 1
    fresh = hsanomaly.api.detect(path, tmp_path / "fresh.tif", model=tmp_path / "out.model", tile=16)
    np.testing.assert_array_equal(_read(dst), _read(fresh.path))


@needs_torch
def test_resuming_a_finished_quick_model_run_keeps_it_and_draws_only_what_is_new(
        scene, tmp_path, monkeypatch):
    """`detect in.tif out.tif --resume` after a run that finished trained the quick model and
    scored every tile again, and replaced both; now both are kept, and a PNG and polygons
    asked for then are drawn from the kept heatmap, as a full run would draw them."""
    import hsanomaly.api
    import hsanomaly.engine

    trained = short_trainings(monkeypatch, 30)
    _, path, _, _ = scene
    dst, model = tmp_path / "out.tif", tmp_path / "out.model"
    hsanomaly.api.detect(path, dst, tile=16)
    before = {p: p.read_bytes() for p in [dst, *sorted(model.iterdir())]}

    def scored(*args, **kwargs):
        raise AssertionError("a finished run was scored again")

    monkeypatch.setattr(hsanomaly.engine, "detect", scored)
    result = _cli("detect", path, dst, "--resume", "--tile", "16", "--png", tmp_path / "q.png",
                  "--polygons", tmp_path / "t.gpkg", "--far", "0.005")
    assert len(trained) == 1 and {p: p.read_bytes() for p in before} == before
    assert "out.tif: dualcontext heatmap finished earlier with this input and these settings: " \
           "kept, nothing scored again" in result.output
    assert f"out.model: model trained earlier on {path}; reuse it with --model" in result.output
    drawn = hsanomaly.find_targets(dst, far=0.005)
    assert f"t.gpkg: {len(drawn)} target polygon" in result.output and len(drawn) >= 1
    assert (tmp_path / "q.png").stat().st_size > 0
    monkeypatch.undo()
    other = hsanomaly.api.detect(path, dst, tile=8, resume=True, model=model)   # other settings
    assert not other.earlier and other.tiles == 36 and other.tiles_resumed == 0


@needs_torch
def test_a_finished_run_with_extras_is_kept_only_with_each_output_in_its_role(scene, model,
                                                                            tmp_path):
    """All of a run's outputs carry its fingerprint: the heatmap and the recon raster given in
    each other's place were kept, and the PNG drawn from the recon's first band."""
    import hsanomaly.api

    _, path, _, _ = scene
    heat, recon = tmp_path / "heat.tif", tmp_path / "recon.tif"
    hsanomaly.api.detect(path, heat, model=model, extras={"recon": recon})
    assert hsanomaly.api.detect(path, heat, model=model, extras={"recon": recon},
                                resume=True).earlier
    swapped = hsanomaly.api.detect(path, recon, model=model, extras={"recon": heat},
                                   resume=True, overwrite=True)
    assert not swapped.earlier
    with rasterio.open(recon) as ds:
        assert ds.count == 1


@needs_torch
def test_a_failed_run_keeps_the_earlier_heatmap_and_its_quick_model(scene, tmp_path, monkeypatch):
    """The quick model was put in place before scoring: a run cancelled or failed over an
    earlier output kept that heatmap beside a model trained on the new input."""
    import hsanomaly.api
    from hsanomaly import defaults
    from hsanomaly.io.convert import write_geotiff

    short_trainings(monkeypatch, 10)
    _, path, cube, _ = scene
    dst = tmp_path / "out.tif"
    first = hsanomaly.api.detect(path, dst, tile=16)
    assert first.model == str(tmp_path / "out.model") and first.score == defaults.SCORE
    before = {p.name: p.read_bytes() for p in [dst, *(tmp_path / "out.model").iterdir()]}
    other = tmp_path / "other.tif"
    write_geotiff(other, cube[:, ::-1].copy())
    with pytest.raises(hsanomaly.Cancelled, match="cancelled"):
        hsanomaly.api.detect(other, dst, tile=16, overwrite=True,
                             callback=lambda fraction, message: "tile" in message)
    after = {p.name: p.read_bytes() for p in [dst, *(tmp_path / "out.model").iterdir()]}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tif", "out.model", "out.tif"]


@needs_torch
def test_an_input_replaced_while_its_quick_model_trains_is_refused(scene, tmp_path, monkeypatch):
    """The heatmap scored the new raster with a model trained on the old one, and carried the
    new raster's fingerprint, so reruns took it for current."""
    import os

    import hsanomaly.api
    from hsanomaly.io.convert import write_geotiff

    short_trainings(monkeypatch, 10)
    _, path, cube, _ = scene
    src = tmp_path / "in.tif"
    src.write_bytes(path.read_bytes())
    other = tmp_path / "other.tif"
    write_geotiff(other, cube[:, ::-1] * 5)

    def replace_once(fraction, message):
        if "iteration" in message and other.exists():
            os.replace(other, src)

    with pytest.raises(HsanomalyError, match="in.tif: the input changed while the quick model "
                                             "was trained on it"):
        hsanomaly.api.detect(src, tmp_path / "out.tif", tile=16, callback=replace_once)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


@needs_torch
def test_masked_quick_model_runs_pass_the_input_check(scene, tmp_path, monkeypatch):
    """The check compared the file's fingerprint with the engine's of a masked .mat scene's
    cube in memory, which never match: every such run was refused."""
    import scipy.io

    import hsanomaly.api

    short_trainings(monkeypatch, 5)
    _, path, cube, truth = scene
    scipy.io.savemat(tmp_path / "scene.mat", {"data": np.moveaxis(cube, 0, -1), "map": truth})
    mask = np.zeros((1, *truth.shape), np.float32)
    mask[0, 30:, 30:] = 1
    mask_path = write_raster(tmp_path / "mask.tif", mask)
    for src in (tmp_path / "scene.mat", path):
        result = hsanomaly.api.detect(src, tmp_path / f"{Path(src).name}-heat.tif", tile=16,
                                      mask=mask_path)
        assert result.mask is not None and result.pixels_nodata >= 16 * 14


@needs_torch
def test_a_cancelled_quick_model_training_names_its_place_and_leaves_nothing(scene, tmp_path):
    """Staged, the quick model trains in a temporary folder that goes when the run is cancelled:
    the message must name the model's place and promise no checkpoint to resume."""
    import hsanomaly.api

    _, path, _, _ = scene
    with pytest.raises(hsanomaly.Cancelled) as err:
        hsanomaly.api.detect(path, tmp_path / "out.tif", tile=16,
                             callback=lambda fraction, message: fraction >= 0.5)
    assert str(err.value) == f"{tmp_path / 'out.model'}: training cancelled"
    assert list(tmp_path.iterdir()) == []


@needs_torch
@pytest.mark.parametrize("after", [0.25, 0.75])       # in the training's half, the scoring's
def test_an_os_error_of_the_callers_callback_beside_a_quick_model_reaches_the_caller(
        scene, tmp_path, monkeypatch, after):
    """With a quick model staged, a callback's BrokenPipeError (a client gone) became
    "out.model: cannot write (broken pipe)": the caller's ``except BrokenPipeError`` passed
    by, and a batch went on to its next raster (the contract audit's F01)."""
    import traceback

    import hsanomaly.api

    short_trainings(monkeypatch, 5)

    def hang_up(fraction, message):
        if fraction > after:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError) as err:
        hsanomaly.api.detect(scene[1], tmp_path / "out.tif", tile=16, callback=hang_up)
    assert "hang_up" in [frame.name for frame in traceback.extract_tb(err.value.__traceback__)]


@needs_torch
def test_a_quick_models_run_reports_one_rising_fraction_and_its_whole_time(scene, tmp_path,
                                                                            monkeypatch):
    """The fraction went from 1 (training done) back to 0 (scoring), and the result's
    seconds left the training out."""
    import time

    import hsanomaly.api
    import hsanomaly.training.wgan

    short_trainings(monkeypatch, 5)
    saved = []          # a quick model's checkpoints could never be resumed: none is written
    monkeypatch.setattr(hsanomaly.training.wgan, "save_checkpoint", lambda *a: saved.append(a))
    heard = []
    start = time.perf_counter()
    result = hsanomaly.api.detect(scene[1], tmp_path / "out.tif", tile=16,
                                  callback=lambda fraction, message: heard.append(
                                      (fraction, message)))
    took = time.perf_counter() - start
    fractions = [fraction for fraction, _ in heard]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("iteration" in m for f, m in heard if f <= 0.5)
    assert all("iteration" not in m for f, m in heard if f > 0.5)
    assert 0.9 * took <= result.seconds <= took
    assert 0 < result.training_seconds < result.seconds and not saved
    # said what trains (QGIS showed "iteration 5/5, W 0.123" alone)
    assert all(m.startswith("training the quick model: ") for f, m in heard if f < 0.5)
    assert "training the quick model: iteration 5/5 (the critic's Wasserstein estimate " in \
        "\n".join(m for _, m in heard)


@needs_torch
def test_resume_on_another_input_is_refused_before_a_quick_model_is_trained(scene, tmp_path,
                                                                         monkeypatch):
    import hsanomaly.api
    from hsanomaly.io.convert import write_geotiff

    trained = short_trainings(monkeypatch, 10)
    _, _, cube, _ = scene
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    write_geotiff(src, cube)
    with disk_full_at_tile(3), pytest.raises(HsanomalyError, match="disk full"):
        hsanomaly.api.detect(src, dst, tile=16)
    write_geotiff(src, cube[:, ::-1].copy())                    # the input changed meanwhile
    with pytest.raises(HsanomalyError, match="the input changed since the interrupted run"):
        hsanomaly.api.detect(src, dst, tile=16, resume=True)
    assert len(trained) == 1


@needs_torch
@pytest.mark.parametrize("changed, refusal", [
    ({"tile": 24}, r"other settings is here \(tile: 16 -> 24\)"),
    ({"score": "context"}, r"other settings is here \(scorer: dualcontext -> context\)"),
    ({"trim": 0.2}, r"other settings is here \(scorer.trim: 0.0 -> 0.2\)"),
    ({"extras": {"recon": "recon.tif"}}, r"other settings is here \(outputs: \['score'\] -> "
                                         r"\['recon', 'score'\]\)"),
])
def test_resume_with_other_settings_is_refused_before_a_quick_model_is_trained(
        scene, tmp_path, monkeypatch, changed, refusal):
    """The settings were compared in the engine, with the retrained model's digest: the quick
    model trained first, only to be refused."""
    import hsanomaly.api

    trained = short_trainings(monkeypatch, 10)
    src, dst = scene[1], tmp_path / "out.tif"
    with disk_full_at_tile(3), pytest.raises(HsanomalyError, match="disk full"):
        hsanomaly.api.detect(src, dst, tile=16)
    options = {"tile": 16, **changed}
    if "extras" in options:
        options["extras"] = {k: tmp_path / v for k, v in options["extras"].items()}
    with pytest.raises(HsanomalyError, match=refusal):
        hsanomaly.api.detect(src, dst, resume=True, **options)
    assert len(trained) == 1
    result = hsanomaly.api.detect(src, dst, tile=16, resume=True)     # the same settings resume
    assert len(trained) == 2 and result.tiles_resumed > 0


@needs_torch
def test_a_quick_model_that_cannot_be_written_is_named_by_its_place(scene, tmp_path, monkeypatch):
    """Its export failed in the training's staged folder inside detect's, and the message named
    that hidden temporary path."""
    import resource

    import hsanomaly.api

    import hsanomaly.training

    train = hsanomaly.training.train               # short, with the codebook's largest array
    monkeypatch.setattr(hsanomaly.training, "train", lambda *args, **options: train(
        *args, **{**options, "iterations": 5, "codebook_jacobians": True}))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2**20, hard))   # its Jacobians are larger
    try:
        with pytest.raises(HsanomalyError) as err:
            hsanomaly.api.detect(scene[1], tmp_path / "out.tif", tile=16)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(err.value).startswith(f"{tmp_path / 'out.model'}"), err.value
    assert "a file-size limit of 8.0 MiB" in str(err.value) and list(tmp_path.iterdir()) == []


@needs_torch
def test_detect_many_starts_over_a_quick_models_interrupted_run_of_other_settings(
        scene, tmp_path, monkeypatch):
    """Without its (staged, gone) quick model the batch could not fingerprint the run, so it
    resumed whatever store was there: one of other settings then failed the raster on every
    rerun, with advice to drop a --resume detect-many does not have."""
    import hsanomaly

    short_trainings(monkeypatch, 10)
    src, out = scene[1], tmp_path / "out"
    for trim, resumed in ((0.2, None), (0.0, 0), (0.2, None), (0.2, True)):
        with disk_full_at_tile(3) if resumed is None else contextlib.nullcontext():
            item, = hsanomaly.detect_many([src], out, tile=16, trim=trim)
        if resumed is None:
            assert item.status == "failed" and "disk full" in item.error
        else:                     # other settings start over; the same ones resume
            assert item.status == "scored", item.error
            assert bool(item.result.tiles_resumed) == resumed


@needs_torch
def test_the_early_resume_check_names_a_new_mask_and_refuses_a_torn_manifest(scene, tmp_path,
                                                                             monkeypatch):
    """It named the new mask "?", and took a torn manifest for no interrupted run at all, so
    the quick model trained before the engine refused the store as damaged."""
    from hsanomaly.engine.store import MANIFEST, store_path

    import hsanomaly.api

    trained = short_trainings(monkeypatch, 10)
    src, dst = scene[1], tmp_path / "out.tif"
    mask = np.zeros((1, *scene[3].shape), np.float32)
    mask[0, :5, :5] = 1
    mask_path = write_raster(tmp_path / "m.tif", mask)
    with disk_full_at_tile(3), pytest.raises(HsanomalyError, match="disk full"):
        hsanomaly.api.detect(src, dst, tile=16)
    with pytest.raises(HsanomalyError, match=r"\(mask: none -> .*m.tif \("):
        hsanomaly.api.detect(src, dst, tile=16, resume=True, mask=mask_path)
    (store_path(dst) / MANIFEST).write_text('{"format": "hsanomaly-ti')
    with pytest.raises(HsanomalyError, match="written by another hsanomaly version or is damaged"):
        hsanomaly.api.detect(src, dst, tile=16, resume=True)
    assert len(trained) == 1


@needs_torch
def test_resume_without_the_model_the_run_was_given_is_refused_before_training(
        model, scene, tmp_path, monkeypatch):
    """Without --model, a resume trains a quick model, whose digest the engine then found to
    differ from the given model's: the training was wasted, and the message did not say
    which model the run had."""
    import hsanomaly.api

    trained = short_trainings(monkeypatch, 5)
    src, dst = scene[1], tmp_path / "out.tif"
    monkeypatch.chdir(model.parent)                # the model given by a relative name
    with disk_full_at_tile(3), pytest.raises(HsanomalyError, match="disk full"):
        hsanomaly.api.detect(src, dst, model=model.name, tile=16)
    monkeypatch.chdir(tmp_path)                    # named absolute wherever the resume runs
    with pytest.raises(HsanomalyError, match=f"scored with the model {re.escape(str(model))} "
                                             r"\('model'\); resume with it"):
        hsanomaly.api.detect(src, dst, tile=16, resume=True)
    assert trained == [] and not (tmp_path / "out.model").exists()
    result = hsanomaly.api.detect(src, dst, model=model, tile=16, resume=True)
    assert trained == [] and result.tiles_resumed > 0


@needs_torch
def test_a_damaged_tile_store_manifest_does_not_make_resume_fail(model, scene, tmp_path):
    import json
    import shutil

    from hsanomaly.engine.store import MANIFEST, store_path
    from hsanomaly.io.ownership import input_record
    from hsanomaly.quickmodel import resumable_quick_model

    quick = tmp_path / "out.model"          # as detect trains it for out.tif on the scene
    shutil.copytree(model, quick)
    meta = json.loads((quick / "model.json").read_text())
    meta["training"].update(quick_model_of="out.tif", quick_model_input=input_record(scene[1]))
    (quick / "model.json").write_text(json.dumps(meta))
    store = store_path(tmp_path / "out.tif")
    store.mkdir()
    for damaged in ({"config": "damaged"}, {"config": {"scorer": 3}}, []):
        (store / MANIFEST).write_text(json.dumps(damaged))
        assert resumable_quick_model(scene[1], tmp_path / "out.tif", quick) is False


@needs_torch
def test_detect_replaces_only_its_own_quick_model(scene, tmp_path, monkeypatch):
    """Without --model, detect keeps its quick model at out/heat.model. A bundle someone trained
    there with `hsanomaly train` is refused, not silently retrained over, with overwrite too
    (QGIS always passes it); a quick model detect trained itself is replaced by a rerun."""
    import hashlib

    import hsanomaly
    import hsanomaly.training

    train = hsanomaly.training.train
    monkeypatch.setattr(hsanomaly.training, "train",
                        lambda *args, **options: train(*args, **{**options, "iterations": 30}))
    _, path, _, _ = scene
    model = tmp_path / "heat.model"
    hsanomaly.train(path, model, iterations=10)

    def digest():
        return hashlib.sha256((model / "model.json").read_bytes()).hexdigest()

    users = digest()
    with pytest.raises(HsanomalyError, match="heat.model: a model bundle that detect did not "
                                             "train for heat.tif .* pass it as 'model'"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", tile=16)
    assert digest() == users and not (tmp_path / "heat.tif").exists()
    with pytest.raises(HsanomalyError, match="move it away"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", tile=16, overwrite=True)
    assert digest() == users
    model.rename(tmp_path / "mine.model")
    hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", tile=16)
    meta = json.loads((model / "model.json").read_text())
    assert meta["training"]["quick_model_of"] == "heat.tif"
    quick = (model / "model.json").stat().st_ino
    hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", tile=16, overwrite=True)
    assert (model / "model.json").stat().st_ino != quick   # its own: trained again, replaced


def test_purge_leaves_the_pixels_the_first_pass_ranks_highest_out_of_the_rings(scene):
    """purge (mlrx, no GAN): the first pass is the plain score; the pixels above its scene
    quantile are left out of every ring in the second, which is the score, at any tile size."""
    _, _, cube, _ = scene
    source = ArraySource(cube)
    rings = ((5, 3), (7, 3))
    plain = make_scorer("mlrx", rings="5/3;7/3", pca=4).fit(source)
    first = score_array(source, plain)["score"][0]
    threshold = np.quantile(first[np.isfinite(first)], 0.95)
    skip = first > threshold
    purged = make_scorer("mlrx", rings="5/3;7/3", pca=4, purge=0.05).fit(source)
    assert purged.purge_threshold_ == pytest.approx(threshold, rel=1e-6)
    ours = score_array(source, purged)["score"][0]
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    vecs = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :4]
    P = ((X - X.mean(0)) @ vecs).reshape(cube.shape[1], cube.shape[2], 4)
    near = np.argwhere(skip[4:-4, 4:-4])[0] + 4 + 2        # a purged pixel in its rings
    for r, c in ((11, 12), (31, 8), tuple(near)):
        assert ours[r, c] == pytest.approx(_ring_log_rx(P, r, c, rings, skip), abs=1e-3)
    assert abs(ours[tuple(near)] - first[tuple(near)]) > 1e-3             # it did change
    np.testing.assert_allclose(score_array(source, purged, tile=16)["score"][0], ours,
                               rtol=1e-5, atol=1e-5)


@needs_torch
def test_a_model_trained_otherwise_than_the_score_declares_is_named_in_a_warning(
        scene, model):
    """recon on a plain model still scores, with one warning naming the flag; on a whitened
    model there is none, nor for the scores that declare no training on a plain model (the
    default's residual scores among them, though they solve recon's latent search inside);
    the default score on a whitened model is warned about (it loses 0.007 AUC there)."""
    from hsanomaly.training import train

    root, path, cube, _ = scene
    whitened = train([path], root / "whitened", iterations=5, whiten=True, progress=False).path
    source = ArraySource(cube)
    for score, bundle, warned in (("recon", model, True), ("recon", whitened, False),
                                  ("critic", model, False), ("resrx", model, False),
                                  ("dualcontext", model, False), ("dualcontext", whitened, True),
                                  ("critic", whitened, False)):
        options = dict(rings="5/3;7/3", pca=4) if score == "dualcontext" else {}
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            scorer = make_scorer(score, model=bundle, **options).fit(source)
            scores = score_array(source, scorer)["score"][0]
        assert np.isfinite(scores).all()
        messages = [str(w.message) for w in said if "ranks best" in str(w.message)]
        assert len(messages) == int(warned), messages
        if warned:                       # named by the score asked for, not its GAN part
            assert f"{bundle}: {score} ranks best" in messages[0]
            assert ("with 'whiten'" if score == "recon" else "without 'whiten'") in messages[0]


def test_rx_statistics_keep_their_precision_at_a_large_offset():
    """Reflectance stored with a large constant offset: the covariance summed over tiles must
    match numpy's two-pass one, not lose the spread to a one-pass sum of squares."""
    rng = np.random.default_rng(5)
    cube = (1e6 + rng.normal(size=(6, 300, 280)) * rng.uniform(0.5, 2, (6, 1, 1))).astype(np.float32)
    X = cube.reshape(6, -1).T.astype(np.float64)
    scorer = make_scorer("rx").fit(ArraySource(cube))
    np.testing.assert_allclose(scorer.mean_, X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.inv(scorer.precision_), np.cov(X, rowvar=False),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("score, options", [("rx", {}), ("lrx", {"outer": 7, "guard": 3}),
                                            ("mlrx", {"rings": "5/3;9/5"}),
                                            ("mlrx", {"rings": "5/3;9/5", "purge": 0.05}),
                                            ("gmm", {"components": 3, "pca": 5})])
def test_scores_do_not_depend_on_the_datas_units(scene, score, options):
    """The same scene in units a million times smaller (radiance in W instead of uW) or ten
    thousand times larger (reflectance stored as integers) scores the same: no constant in
    the data's own units takes over a covariance."""
    _, _, cube, _ = scene
    scores = {}
    for unit in (1.0, 1e-6, 1e4):
        source = ArraySource((cube * unit).astype(np.float32))
        scorer = make_scorer(score, **options).fit(source)
        scores[unit] = score_array(source, scorer)["score"][0]
    for unit in (1e-6, 1e4):
        np.testing.assert_allclose(scores[unit], scores[1.0], rtol=2e-3, atol=2e-3)


def test_a_duplicated_band_leaves_rx_as_it_was(scene):
    """The copy carries no information; its singular covariance must not add round-off."""
    _, _, cube, _ = scene
    doubled = np.concatenate([cube, cube[3:4]]).astype(np.float32)
    scores = [score_array(ArraySource(c), make_scorer("rx").fit(ArraySource(c)))["score"][0]
              for c in (cube.astype(np.float32), doubled)]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4, atol=1e-4)


def test_bands_in_very_different_units_leave_rx_as_it_was(scene):
    """A stack of products (one band in W, another in counts): Mahalanobis distances do not
    depend on each band's unit, and such a covariance is not a singular one."""
    _, _, cube, _ = scene
    mixed = cube.astype(np.float64).copy()
    mixed[2] *= 1e-7
    mixed[5] *= 1e5
    scores = [score_array(ArraySource(c), make_scorer("rx").fit(ArraySource(c)))["score"][0]
              for c in (cube.astype(np.float32), mixed.astype(np.float32))]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-3, atol=1e-3)


def test_a_ring_cut_by_nodata_scores_its_background_like_a_whole_one():
    """A ring of n pixels on k components inflates a background pixel's expected distance by
    (n + 1)(n - 1) / (n (n - k - 2)) (Hotelling's T^2): beside a nodata block, a 2-pixel strip
    scored a median of 18 against 10 inside, and held most of the highest scores. Each
    distance is scaled to its ring's size now: the strip's median is near the interior's (its
    ring's heavier tail puts it a little below)."""
    import hsanomaly

    rng = np.random.default_rng(0)
    cube = rng.normal(size=(10, 60, 57)).astype(np.float32)
    cube[:, :, 2:13] = np.nan                      # columns 0-1: a strip beside nodata
    heat = hsanomaly.Detector("lrx", pca=10).fit_score(cube)
    strip, inside = np.nanmedian(heat[8:-8, :2]), np.nanmedian(heat[8:-8, 25:40])
    assert inside == pytest.approx(10, rel=0.15)   # chi-square's median on 10 components, about
    assert 0.6 < strip / inside < 1.4                # 0.79; it was 1.86
