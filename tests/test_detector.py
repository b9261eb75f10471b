"""hsanomaly.Detector: scikit-learn's contract over the engine's own tiles."""

import numpy as np
import pytest
import rasterio

import hsanomaly
from hsanomaly.errors import HsanomalyError
from hsanomaly.scorers import GlobalRX

from synthetic import synthetic_cube, write_raster


def test_fit_returns_self_and_learned_state_ends_in_underscore():
    cube, _ = synthetic_cube()
    detector = hsanomaly.Detector("rx")
    assert detector.fit(cube) is detector
    assert isinstance(detector.scorer_, GlobalRX) and detector.n_bands_in_ == cube.shape[0]
    assert detector.model_ is None and not hasattr(hsanomaly.Detector("rx"), "scorer_")


def test_params_round_trip_and_sklearn_clone():
    from sklearn.base import clone

    detector = hsanomaly.Detector("lrx", outer=9, guard=3)
    assert detector.get_params() == {"score": "lrx", "model": None, "tile": 256, "outer": 9,
                                     "guard": 3}
    copy = clone(detector)
    assert copy is not detector and copy.get_params() == detector.get_params()
    assert detector.set_params(outer=11).get_params()["outer"] == 11
    with pytest.raises(HsanomalyError, match="--outer: score 'rx' does not take"):
        detector.set_params(score="rx")


def test_scores_match_the_scorer_and_mark_invalid_pixels():
    cube, truth = synthetic_cube()
    cube[:, 0, :4] = np.nan
    heat = hsanomaly.Detector("rx").fit_score(cube)
    assert heat.dtype == np.float32 and heat.shape == truth.shape
    assert np.isnan(heat[0, :4]).all() and np.isfinite(heat[1:]).all()
    reference = GlobalRX()
    valid = np.isfinite(cube).all(axis=0)
    reference.mean_ = cube[:, valid].T.astype(np.float64).mean(axis=0)
    reference.precision_ = np.linalg.inv(np.cov(cube[:, valid].astype(np.float64)))
    np.testing.assert_allclose(heat[valid], reference.score_samples(cube[:, valid].T), rtol=1e-4)
    assert heat[truth == 1].min() > np.nanpercentile(heat[truth == 0], 99)


def test_halo_scores_need_no_padding_by_hand_and_equal_across_tiles():
    cube, _ = synthetic_cube(rows=40, cols=50)
    whole = hsanomaly.Detector("lrx", outer=7, guard=3).fit_score(cube)
    tiled = hsanomaly.Detector("lrx", outer=7, guard=3, tile=16).fit_score(cube)
    np.testing.assert_allclose(whole, tiled, rtol=1e-5)
    assert np.isfinite(whole).all()


def test_open_dataset_with_nodata_is_read_with_its_mask(tmp_path):
    cube, _ = synthetic_cube()
    cube[:, :3, :3] = -9999
    path = write_raster(tmp_path / "scene.tif", cube, nodata=-9999)
    with rasterio.open(path) as ds:
        heat = hsanomaly.Detector("rx").fit(ds).score(ds)
        assert not ds.closed                      # the caller's dataset stays open
    assert np.isnan(heat[:3, :3]).all() and np.isfinite(heat[3:, 3:]).all()


def test_xarray_result_keeps_coordinates_and_attributes():
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    da = xr.DataArray(cube, dims=("band", "y", "x"),
                      coords={"band": np.arange(12), "y": 100.0 - np.arange(40),
                              "x": 5.0 + np.arange(50), "spatial_ref": 0},
                      attrs={"crs": "EPSG:32633"})
    heat = hsanomaly.Detector("rx").fit(da).score(da.transpose("y", "x", "band"))
    assert heat.dims == ("y", "x") and heat.attrs["crs"] == "EPSG:32633"
    np.testing.assert_array_equal(heat["x"], da["x"]) and "spatial_ref" in heat.coords
    np.testing.assert_allclose(heat.values, hsanomaly.Detector("rx").fit_score(cube))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5)), "expected a cube of shape"),
    (np.zeros((3, 4, 5), np.complex64), "complex64 are not supported"),
    ("scene.tif", "expected a numpy cube"),
])
def test_bad_inputs_are_refused_with_one_line(bad, message):
    with pytest.raises(HsanomalyError, match=message) as err:
        hsanomaly.Detector("rx").fit(bad)
    assert "\n" not in str(err.value)


def test_scoring_before_fit_and_unknown_scores_are_refused():
    with pytest.raises(HsanomalyError, match="not fitted yet"):
        hsanomaly.Detector("rx").score(np.zeros((3, 4, 5)))
    with pytest.raises(HsanomalyError, match="unknown score 'bogus'"):
        hsanomaly.Detector("bogus")
    with pytest.raises(HsanomalyError, match="--model: score 'gmm' takes no model"):
        hsanomaly.Detector("gmm", model="m")


def test_scorers_declare_whether_they_fit_on_the_scene():
    assert hsanomaly.Detector("rx").fits_on_scene and hsanomaly.Detector("context").fits_on_scene
    assert not hsanomaly.Detector("critic").fits_on_scene
