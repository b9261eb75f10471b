import json

import numpy as np
import pytest

from hsanomaly.errors import HsanomalyError
from hsanomaly.preprocess import Preprocessor


def pixels(n=500, bands=10, seed=0):
    X = np.random.default_rng(seed).random((n, bands)) * 100 + 5
    X[:, 3] = 7.0  # constant band
    return X


def test_constant_bands_dropped_and_bins_average_adjacent_bands():
    X = pixels()
    pre = Preprocessor(n_bands=3, scale=False).fit(X)
    assert pre.keep_[3] is False and sum(pre.keep_) == 9
    out = pre.transform(X)
    kept = X[:, np.asarray(pre.keep_)]
    np.testing.assert_allclose(out[:, 0], kept[:, 0:3].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], kept[:, 6:9].mean(axis=1), rtol=1e-6)


def test_nan_band_dropped():
    X = pixels()
    X[5, 1] = np.nan
    assert Preprocessor().fit(X).keep_[1] is False


def test_scaling_maps_central_range_to_unit_interval():
    X = pixels(n=5000)
    out = Preprocessor(quantile=0.01).fit_transform(X)
    lo, hi = np.quantile(out, [0.01, 0.99], axis=0)
    np.testing.assert_allclose(lo, -1, atol=1e-5)
    np.testing.assert_allclose(hi, 1, atol=1e-5)


def test_sqrt_transform_then_json_round_trip():
    X = pixels()
    pre = Preprocessor(n_bands=4, sqrt=True).fit(X)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(pre.transform(X), again.transform(X))
    raw = Preprocessor(n_bands=4, scale=False).fit(X).transform(X)
    assert not np.allclose(raw, Preprocessor(n_bands=4, sqrt=True, scale=False).fit(X).transform(X))


def test_sqrt_keeps_pixels_darker_than_the_training_apart():
    """Values below the training's minimum were clipped to it: a dark anomaly 2.0 below the
    background became the same pixel as one 0.25 below (the training audit's F1)."""
    rng = np.random.default_rng(1)
    X = rng.uniform(1.0, 2.0, size=(200, 6))
    pre = Preprocessor(sqrt=True, scale=False).fit(X)
    dark = X[:2] - np.array([[0.25], [2.0]]) - 1.0
    out = pre.transform(np.vstack([X, dark]))
    assert np.allclose(out[:200], np.sqrt(X - X.min(axis=0)), atol=1e-6)   # unchanged above it
    below = dark - X.min(axis=0)
    assert np.allclose(out[200:], -np.sqrt(-below), atol=1e-6)
    assert out[201].max() < out[200].min()      # the darker pixel stays further out


def test_bad_inputs():
    with pytest.raises(HsanomalyError, match="cannot bin 9 usable bands into 20"):
        Preprocessor(n_bands=20).fit(pixels())
    with pytest.raises(HsanomalyError, match="fitted on 10 bands, got 4"):
        Preprocessor().fit(pixels()).transform(np.zeros((2, 4)))
    with pytest.raises(HsanomalyError, match="incomplete"):
        Preprocessor.from_dict({"params": {}, "state": {}})


def correlated_pixels(n=2000, bands=12, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) @ rng.normal(size=(4, bands)) * 30 + rng.normal(size=(n, bands)) + 100


def test_whitening_makes_euclidean_distances_mahalanobis_distances():
    X = correlated_pixels()
    binned = Preprocessor(n_bands=6, scale=False).fit(X).transform(X).astype(np.float64)
    white = Preprocessor(n_bands=6, scale=False, whiten=True).fit(X).transform(X).astype(np.float64)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(6), atol=1e-4)
    centred = binned - binned.mean(axis=0)
    mahalanobis = np.einsum("ij,jk,ik->i", centred, np.linalg.inv(np.cov(binned, rowvar=False)),
                            centred)
    np.testing.assert_allclose((white ** 2).sum(axis=1), mahalanobis, rtol=1e-3)


def test_whitened_bands_come_in_principal_order():
    """The whitened bands are the binned bands' principal components, the largest first, each
    scaled to unit variance (a recon raster's first band is the main component)."""
    X = correlated_pixels()
    binned = Preprocessor(n_bands=6, scale=False).fit(X).transform(X).astype(np.float64)
    white = Preprocessor(n_bands=6, scale=False, whiten=True).fit(X).transform(X).astype(np.float64)
    lam, vec = np.linalg.eigh(np.cov(binned, rowvar=False))
    principal = (binned - binned.mean(axis=0)) @ vec[:, ::-1] / np.sqrt(lam[::-1])
    np.testing.assert_allclose(np.abs(white), np.abs(principal), rtol=1e-3, atol=1e-3)


def test_whitening_round_trips_and_older_models_load_unwhitened():
    X = correlated_pixels()
    pre = Preprocessor(n_bands=6, whiten=True).fit(X)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(pre.transform(X), again.transform(X))
    plain = Preprocessor(n_bands=6).fit(X)
    older = plain.to_dict()
    older["params"].pop("whiten")   # written before whitening existed
    np.testing.assert_array_equal(Preprocessor.from_dict(older).transform(X), plain.transform(X))
    broken = pre.to_dict()
    broken["state"].pop("whiten_matrix_")
    with pytest.raises(HsanomalyError, match="incomplete"):
        Preprocessor.from_dict(broken)


def test_whitening_collinear_bands_stays_finite():
    X = correlated_pixels(n=300, bands=6)
    X = np.hstack([X, X[:, :2] * 2.0])              # two bands that repeat others exactly
    out = Preprocessor(whiten=True).fit(X).transform(X)
    assert np.isfinite(out).all()
    lo, hi = np.quantile(out, [0.001, 0.999], axis=0)
    np.testing.assert_allclose(lo, -1, atol=1e-4)   # the scaling still bounds every component
    np.testing.assert_allclose(hi, 1, atol=1e-4)


@pytest.mark.parametrize("options", [{}, {"n_bands": 5}, {"n_bands": 5, "whiten": True},
                                     {"n_bands": 4, "sqrt": True}])
def test_float32_pixels_are_transformed_as_their_float64_values(options):
    """float32 pixels (as rasters are read) are binned in float64 without a float64 copy of
    every band first; the result is the float64 path's, bit for bit."""
    X = (np.random.default_rng(3).random((3000, 17)) * 100).astype(np.float32)
    X[:, 2] = 7.0                                    # a constant band, dropped
    pre = Preprocessor(**options).fit(X)
    np.testing.assert_array_equal(pre.transform(X), pre.transform(X.astype(np.float64)))
    np.testing.assert_array_equal(pre.transform(np.asfortranarray(X)), pre.transform(X))


def test_a_stored_state_of_text_is_refused():
    """Text such as "1" passed the check (it converts to a number) and failed in transform
    with numpy's UFuncTypeError, in the middle of a run."""
    X = np.random.default_rng(0).normal(size=(50, 6))
    stored = Preprocessor(n_bands=3).fit(X).to_dict()
    stored = json.loads(json.dumps(stored))
    stored["state"]["center_"] = [str(v) for v in stored["state"]["center_"]]
    with pytest.raises(HsanomalyError, match="center_ is not 3 finite numbers"):
        Preprocessor.from_dict(stored)


@pytest.mark.parametrize("param, value, said", [("sqrt", "no", "sqrt is 'no', not true or false"),
                                                ("n_bands", 2.5, "n_bands is 2.5"),
                                                ("quantile", 0.7, "quantile is 0.7")])
def test_stored_parameters_of_another_type_are_refused(param, value, said):
    """"no" for sqrt counted as true: the square root ran on a model trained without it."""
    X = np.random.default_rng(0).normal(size=(50, 6))
    stored = json.loads(json.dumps(Preprocessor(n_bands=3).fit(X).to_dict()))
    stored["params"][param] = value
    with pytest.raises(HsanomalyError, match=said):
        Preprocessor.from_dict(stored)


def test_a_band_constant_but_for_a_few_pixels_is_scaled_alike_in_any_units():
    """Its quantiles are equal, and its width was 1 in the data's units: the same hot pixels
    lay 4095 half-widths out in counts and under 1 in reflectance. It now spans its range."""
    X = correlated_pixels(n=3000, bands=6) * 100 + 1000
    X[:, 5] = 0.0
    X[:2, 5] = 4095.0                               # a zeroed band's hot pixels
    X[:2, 4] = 4095.0                               # a saturated band's dead pixels
    X[2:, 4] = 4095.0
    X[:2, 4] = 0.0
    counts = Preprocessor().fit(X).transform(X)
    reflectance = Preprocessor().fit(X * 1e-4).transform(X * 1e-4)
    np.testing.assert_allclose(counts, reflectance, rtol=1e-4, atol=1e-4)
    assert np.abs(counts[:, 4:]).max() <= 1.0 + 1e-6
