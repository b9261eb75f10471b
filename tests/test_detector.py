"""hsanomaly.Detector: scikit-learn's contract over the engine's own tiles."""

import json
import os

import numpy as np
import pytest
import rasterio

import hsanomaly
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.scorers import GlobalRX

from synthetic import synthetic_cube, write_raster


def test_fit_returns_self_and_learned_state_ends_in_underscore():
    cube, _ = synthetic_cube()
    detector = hsanomaly.Detector("rx")
    assert detector.fit(cube) is detector
    assert isinstance(detector.scorer_, GlobalRX) and detector.n_features_in_ == cube.shape[0]
    assert detector.model_ is None and not hasattr(hsanomaly.Detector("rx"), "scorer_")


def test_params_round_trip_and_sklearn_clone():
    from sklearn.base import clone

    detector = hsanomaly.Detector("lrx", outer=9, guard=3)
    assert detector.get_params() == {"score": "lrx", "model": None, "tile": 256, "outer": 9,
                                     "guard": 3}
    copy = clone(detector)
    assert copy is not detector and copy.get_params() == detector.get_params()
    assert detector.set_params(outer=11).get_params()["outer"] == 11
    with pytest.raises(HsanomalyError, match="'outer': score 'rx' does not take"):
        detector.set_params(score="rx")


def test_a_parameter_assigned_is_set_as_set_params_sets_it():
    """scikit-learn's parameters are attributes: `d.outer = 15` was ignored (the scores stayed
    outer 7's), and `d.score = "gmm"` hid the score method."""
    from sklearn.utils import get_tags

    cube, _ = synthetic_cube()
    detector = hsanomaly.Detector("lrx", outer=7, guard=3).fit(cube)
    assert (detector.outer, detector.guard, detector.pca) == (7, 3, None)     # None: default
    before = detector.score(cube)
    detector.outer = 9
    assert detector.get_params()["outer"] == 9 and not hasattr(detector, "scorer_")
    with pytest.raises(hsanomaly.NotFittedError):
        detector.score(cube)
    np.testing.assert_array_equal(detector.fit(cube).score(cube),
                                  hsanomaly.Detector("lrx", outer=9, guard=3).fit_score(cube))
    assert not np.array_equal(detector.score(cube), before, equal_nan=True)
    with pytest.raises(HsanomalyError, match="'guard' must be a whole number"):
        detector.guard = "3"
    assert detector.guard == 3 and hasattr(detector, "scorer_")       # refused: as it was
    detector.set_params(outer=None, guard=None)
    detector.score = "gmm"
    assert callable(detector.score) and detector.get_params()["score"] == "gmm"
    detector.score_name = "rx"
    assert repr(detector) == "Detector(score='rx', tile=256)"
    with pytest.raises(TypeError):
        detector.options["outer"] = 7                    # read only
    with pytest.raises(AttributeError, match="no attribute 'outer'"):
        detector.outer                                   # no option of rx's
    tags = get_tags(detector).input_tags
    assert (tags.two_d_array, tags.three_d_array, tags.allow_nan) == (False, True, True)


def test_a_detector_pickled_before_its_parameters_were_attributes_scores(tmp_path):
    """A detector pickled by an earlier 0.2 version (its options in ``options``, its bands in
    ``n_bands_in_``) unpickled, but neither scored nor showed itself; and a subclass may set
    a parameter before the detector's own ``__init__``, an option given by its former name
    is read by its name now."""
    cube, _ = synthetic_cube()
    fitted = hsanomaly.Detector("lrx", outer=7, guard=3).fit(cube)
    state = fitted.__getstate__()
    state["options"], state["n_bands_in_"] = state.pop("_options"), state.pop("n_features_in_")
    earlier = hsanomaly.Detector.__new__(hsanomaly.Detector)
    earlier.__setstate__(state)
    np.testing.assert_array_equal(earlier.score(cube), fitted.score(cube))
    assert repr(earlier) == repr(fitted) and earlier.n_features_in_ == cube.shape[0]

    class Tiled(hsanomaly.Detector):
        def __init__(self, **options):
            self.tile = 64
            super().__init__("rx", tile=self.tile, **options)
    assert Tiled().get_params()["tile"] == 64
    with pytest.warns(FutureWarning, match="'components'"):
        renamed = hsanomaly.Detector("lrx", components=3)
    assert renamed.pca == 3


def test_an_option_given_by_its_former_name_is_set_again_by_its_name_now():
    """Detector("lrx", components=5).set_params(pca=7) was refused as "both were given", so a
    parameter search over ``pca`` failed on every candidate of such a detector."""
    from sklearn.base import clone

    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning):
        detector = hsanomaly.Detector("lrx", components=5)
    assert detector.set_params(pca=7).get_params() == {"score": "lrx", "model": None,
                                                       "tile": 256, "pca": 7}
    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning):
        again = hsanomaly.Detector("lrx", components=5)
    assert clone(again).set_params(pca=3).get_params()["pca"] == 3
    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning):       # and the other way round
        assert hsanomaly.Detector("lrx", pca=5).set_params(components=7).get_params() == {
            "score": "lrx", "model": None, "tile": 256, "components": 7}
    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning):       # left behind by its name now
        built = hsanomaly.Detector("lrx", components=5)
    assert built.set_params(score="gmm", pca=None).get_params() == {
        "score": "gmm", "model": None, "tile": 256}


def test_a_refused_set_params_leaves_the_detector_as_it_was():
    detector = hsanomaly.Detector("lrx", outer=11, guard=3)
    for bad in ({"outer": 4}, {"bogus": 1}, {"tile": 0}, {"score": "bogus"}):
        with pytest.raises(HsanomalyError):
            detector.set_params(**bad)
        assert detector.get_params() == {"score": "lrx", "model": None, "tile": 256,
                                         "outer": 11, "guard": 3}


def test_changed_parameters_unfit_the_detector_and_none_is_the_default():
    """set_params(score="gmm") on a fitted RX detector printed as gmm and scored RX; an option
    could not go back to its default, so a detector could not leave local RX's options."""
    from hsanomaly.errors import NotFittedError

    cube, _ = synthetic_cube()
    detector = hsanomaly.Detector("rx").fit(cube)
    assert detector.set_params(tile=256).score(cube).shape == cube.shape[1:]   # unchanged: fitted
    detector.set_params(score="gmm")
    with pytest.raises(NotFittedError, match=r"Detector\(score='gmm', tile=256\) is not fitted"):
        detector.score(cube)
    assert issubclass(NotFittedError, (HsanomalyError, ValueError, AttributeError))
    local = hsanomaly.Detector("lrx", outer=11, guard=3, pca=None)
    assert local.get_params() == {"score": "lrx", "model": None, "tile": 256, "outer": 11,
                                  "guard": 3}
    assert local.set_params(score="rx", outer=None, guard=None).get_params() == {
        "score": "rx", "model": None, "tile": 256}

def test_an_option_given_as_none_is_the_scores_default_at_every_door(tmp_path):
    """``Detector("lrx", outer=None)`` took local RX's default, ``detect(..., outer=None)``
    refused it ("'outer' must be a whole number, got None")."""
    cube, _ = synthetic_cube(rows=24, cols=24)
    src = write_raster(tmp_path / "scene.tif", cube)
    default = hsanomaly.Detector("lrx").fit(cube).score(cube)
    assert np.array_equal(hsanomaly.Detector("lrx", outer=None).fit(cube).score(cube), default)
    hsanomaly.detect(src, tmp_path / "none.tif", score="lrx", outer=None, guard=None)
    hsanomaly.detect(src, tmp_path / "default.tif", score="lrx")
    items = hsanomaly.detect_many(src, tmp_path / "many", score="lrx", outer=None)
    assert items[0].status == "scored", items[0].error
    with rasterio.open(tmp_path / "none.tif") as a, rasterio.open(tmp_path / "default.tif") as b, \
            rasterio.open(items[0].dst) as c:
        assert np.array_equal(a.read(1), b.read(1)) and np.array_equal(c.read(1), b.read(1))
        assert np.allclose(a.read(1), np.ma.filled(default, np.nan), rtol=1e-5, equal_nan=True)


def test_a_misspelt_option_is_refused_even_as_none(tmp_path):
    """Dropped as "not given" before its name was checked, ``outr=None`` passed every door."""
    src = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=24, cols=24)[0])
    message = "'outr': score 'lrx' does not take this option"
    for call in (lambda: hsanomaly.Detector("lrx", outr=None),
                 lambda: hsanomaly.Detector("lrx").set_params(outr=None),
                 lambda: hsanomaly.detect(src, tmp_path / "o.tif", score="lrx", outr=None),
                 lambda: hsanomaly.detect_many(src, tmp_path / "many", score="lrx", outr=None)):
        with pytest.raises(HsanomalyError, match=message):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("tile", [0, 7, 1.5, "256", True])
def test_a_bad_tile_is_refused_when_built(tile):
    with pytest.raises(HsanomalyError, match="'tile' must be a whole number of at least 8"):
        hsanomaly.Detector("rx", tile=tile)


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
    np.testing.assert_allclose(whole, tiled, rtol=1e-5, equal_nan=True)
    # at the corners the 7/3 ring keeps 12 pixels, one short of a distance on 10 components
    corners = np.zeros(whole.shape, bool)
    corners[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    assert np.isnan(whole[corners]).all() and np.isfinite(whole[~corners]).all()


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
    # what scored it, as a heatmap's tags say (the provenance audit's F07: not even the score)
    lrx = hsanomaly.Detector("lrx", pca=3).fit_score(da)
    assert (lrx.attrs["hsanomaly_score"], lrx.attrs["hsanomaly_version"]) == (
        "lrx", hsanomaly.__version__)
    assert json.loads(lrx.attrs["hsanomaly_parameters"])["pca"] == 3
    assert "numpy" in json.loads(lrx.attrs["hsanomaly_versions"])


def test_a_result_placed_by_attributes_alone_is_placed_right_after_a_cut(tmp_path):
    """A (band, y, x) DataArray placed by ``transform`` and ``crs`` attributes, without
    coordinates: its result kept the attribute, the whole grid's origin, so a cut of it put
    its targets at the uncut grid's corner (900 m off here)."""
    xr = pytest.importorskip("xarray")
    from synthetic import CRS, TRANSFORM

    cube, _ = synthetic_cube(rows=40, cols=50, targets=((30, 40),), seed=2)
    da = xr.DataArray(cube, dims=("band", "y", "x"), attrs={"transform": TRANSFORM, "crs": CRS})
    heat = hsanomaly.Detector("rx").fit_score(da)
    np.testing.assert_allclose(heat["x"], TRANSFORM.c + TRANSFORM.a * (np.arange(50) + 0.5))
    threshold = float(np.nanmax(heat)) / 2
    whole = hsanomaly.find_targets(heat, threshold=threshold)
    cut = hsanomaly.find_targets(heat[20:, 30:], threshold=threshold)
    assert len(whole) == len(cut) >= 1
    np.testing.assert_allclose(cut[["centroid_x", "centroid_y"]].values,
                               whole[["centroid_x", "centroid_y"]].values)
    file = write_raster(tmp_path / "scene.tif", cube)           # the same grid, from a file
    hsanomaly.detect(file, tmp_path / "heat.tif", score="rx")
    np.testing.assert_allclose(
        hsanomaly.find_targets(tmp_path / "heat.tif", threshold=threshold)[
            ["centroid_x", "centroid_y"]].values, whole[["centroid_x", "centroid_y"]].values)


@pytest.mark.parametrize("dims, rotated", [(("band", "y", "x"), True),
                                           (("band", "lat", "lon"), False),
                                           (("band", "rows", "cols"), False)])
def test_a_cut_result_whose_grid_map_coordinates_cannot_carry_keeps_its_place(dims, rotated):
    """A rotated grid, or axes named lat/lon or otherwise: the result kept the whole grid's
    transform attribute and nothing else, so a cut of it was placed at the uncut origin (40 m
    off rotated, 2 km in degrees). Lat/lon take pixel centres as x/y do; the others number
    their pixels (``grid_row``, ``grid_col``), which a cut, a step or a flip keeps."""
    xr = pytest.importorskip("xarray")
    from affine import Affine

    cube, _ = synthetic_cube(rows=40, cols=50, targets=((30, 40),), seed=2)
    transform = (Affine.translation(5e5, 6.7e6) @ Affine.rotation(30) @ Affine.scale(2, -2)
                 if rotated else Affine(1e-3, 0, 20.0, 0, -1e-3, 10.0))
    da = xr.DataArray(cube, dims=dims, attrs={"transform": transform, "crs": "EPSG:4326"})
    heat = hsanomaly.Detector("rx").fit_score(da)
    assert set(heat.coords) == ({"grid_row", "grid_col"} if rotated or dims[1] == "rows" else
                                {"lat", "lon"})
    threshold = float(np.nanmax(heat)) / 2
    whole = hsanomaly.find_targets(heat, threshold=threshold)
    assert len(whole) == 1
    rows, cols = dims[1:]
    for cut in ({rows: slice(20, None), cols: slice(30, None)},
                {rows: slice(None, None, -1)}, {cols: slice(None, None, -1)}):
        found = hsanomaly.find_targets(heat.isel(cut), threshold=threshold)
        np.testing.assert_allclose(found[["centroid_x", "centroid_y"]].values,
                                   whole[["centroid_x", "centroid_y"]].values, rtol=1e-12)
        assert found.geometry.iloc[0].symmetric_difference(whole.geometry.iloc[0]).area < 1e-9 * (
            whole.geometry.iloc[0].area)
    if rotated or dims[1] == "rows":
        with pytest.raises(HsanomalyError, match="its grid_row numbers are not evenly spaced"):
            hsanomaly.find_targets(heat.isel({rows: [0, 1, 5]}), threshold=threshold)
        stacked = heat.stack(pixel=(rows, cols)).unstack("pixel")    # 2-D numbers: refused
        with pytest.raises(HsanomalyError, match="its grid_row numbers no longer run along"):
            hsanomaly.find_targets(stacked.isel({rows: slice(20, None)}), threshold=threshold)
    # a user's own row/col numbers (from 0 or 1) are not taken for ours, and ours are still
    # added beside them: a cut is placed right
    for first in (0, 1):
        own = xr.DataArray(cube, dims=("band", "row", "col"),
                           coords={"row": np.arange(40) + first, "col": np.arange(50) + first},
                           attrs={"transform": transform, "crs": "EPSG:4326"})
        result = hsanomaly.Detector("rx").fit_score(own)
        for part in (result, result.isel(row=slice(20, None), col=slice(30, None))):
            found = hsanomaly.find_targets(part, threshold=threshold)
            np.testing.assert_allclose(found[["centroid_x", "centroid_y"]].values,
                                       whole[["centroid_x", "centroid_y"]].values, rtol=1e-12)


def test_masked_pixels_are_left_out_like_nodata():
    """A masked array's mask is its nodata: the pixel scores NaN and stays out of the fit."""
    cube, _ = synthetic_cube()
    masked = np.ma.masked_array(cube.copy(), mask=np.zeros(cube.shape, bool))
    masked.data[:, 5, 5] = 1e6
    masked.mask[3, 5, 5] = True                 # masked in one band: the pixel is masked
    heat = hsanomaly.Detector("rx").fit_score(masked)
    unmasked = cube.copy()
    unmasked[:, 5, 5] = np.nan
    assert np.isnan(heat[5, 5])
    np.testing.assert_array_equal(heat, hsanomaly.Detector("rx").fit_score(unmasked))


def test_the_band_dimension_of_a_data_array_is_found_by_name_or_refused():
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    expected = hsanomaly.Detector("rx").fit_score(cube)
    for da in (xr.DataArray(cube.transpose(1, 2, 0), dims=("y", "x", "channel")),
               xr.DataArray(cube.transpose(1, 0, 2), dims=("lat", "wl", "lon")),
               xr.DataArray(cube)):                            # dim_0, dim_1, dim_2: as documented
        heat = hsanomaly.Detector("rx").fit_score(da)       # rows first in every one of them
        np.testing.assert_array_equal(heat.values, expected)
    with pytest.raises(HsanomalyError, match="cannot tell which of its dimensions"):
        hsanomaly.Detector("rx").fit(xr.DataArray(cube, dims=("y", "a", "b")))


def test_scoring_other_bands_than_fitted_is_refused():
    """A baseline broadcast one band against twelve and returned a plausible heatmap."""
    cube, _ = synthetic_cube()
    for score in ("rx", "lrx", "gmm"):
        detector = hsanomaly.Detector(score).fit(cube)
        for bands in (1, 11, 13):
            other = np.resize(cube, (bands,) + cube.shape[1:])
            with pytest.raises(HsanomalyError, match=f"has {bands} bands?, but .* fitted on 12"):
                detector.score(other)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5)), "expected a cube of shape"),
    (np.zeros((3, 4, 5), np.complex64), "complex64 are not supported"),
    ("scene.tif", "expected a numpy cube .*; a file's name: open it .* or score the file with "
                  "hsanomaly.detect"),
    (np.zeros((3, 0, 5)), r"the cube is empty \(shape \(3, 0, 5\)\)"),
    (np.zeros((0, 4, 5)), "the cube is empty"),
    (np.ma.masked_array(np.zeros((4, 5))), "expected a cube of shape"),
])
def test_bad_inputs_are_refused_with_one_line(bad, message):
    with pytest.raises(HsanomalyError, match=message) as err:
        hsanomaly.Detector("rx").fit(bad)
    assert "\n" not in str(err.value)


def test_a_dataset_and_a_closed_raster_are_refused_with_one_line(tmp_path, capfd):
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    with pytest.raises(HsanomalyError, match="Dataset: expected a numpy cube"):
        hsanomaly.Detector("rx").fit(xr.DataArray(cube).to_dataset(name="cube"))
    path = write_raster(tmp_path / "scene.tif", cube)
    with rasterio.open(path) as ds:
        detector = hsanomaly.Detector("rx").fit(ds)
    capfd.readouterr()
    with pytest.raises(HsanomalyError, match="scene.tif: the rasterio dataset is closed"):
        detector.score(ds)
    assert "ERROR" not in capfd.readouterr().err              # GDAL was not asked
    with rasterio.open(tmp_path / "new.tif", "w", driver="GTiff", count=3, width=5, height=4,
                       dtype="float32") as ds:
        with pytest.raises(HsanomalyError, match="new.tif: the rasterio dataset is open for "
                                                 "writing only"):
            hsanomaly.Detector("rx").fit(ds)


def test_scoring_before_fit_and_unknown_scores_are_refused():
    with pytest.raises(HsanomalyError, match="not fitted yet"):
        hsanomaly.Detector("rx").score(np.zeros((3, 4, 5)))
    with pytest.raises(HsanomalyError, match="unknown score 'bogus'"):
        hsanomaly.Detector("bogus")
    with pytest.raises(HsanomalyError, match="'model': score 'gmm' takes no model"):
        hsanomaly.Detector("gmm", model="m")


def test_scorers_declare_whether_they_fit_on_the_scene():
    from hsanomaly.scorers import scorer_class

    assert scorer_class("rx").fits_on_scene and scorer_class("context").fits_on_scene
    assert not scorer_class("critic").fits_on_scene


def test_a_model_score_without_a_model_or_torch_says_what_to_do(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(HsanomalyError, match=r"no model given and torch is not installed; .*"
                                             r"baseline score \(rx\|lrx\|gmm\|mlrx\|rxmlrx\)"):
        hsanomaly.Detector("dualcontext").fit(synthetic_cube()[0])


def short_quick_models(monkeypatch):
    """Quick models of 5 iterations from now on (skips the test without torch)."""
    pytest.importorskip("torch")
    import hsanomaly.training

    train = hsanomaly.training.train
    monkeypatch.setattr(hsanomaly.training, "train",
                        lambda *args, **options: train(*args, **{**options, "iterations": 5}))


def test_a_fitted_detector_with_a_quick_model_pickles_and_scores_in_another_process(tmp_path,
                                                                                   monkeypatch):
    """Its quick model lived in a temporary folder that went with the object: unpickled in
    another process (joblib, Dask), the detector could not find its codebook."""
    import pickle
    import subprocess
    import sys

    short_quick_models(monkeypatch)
    cube, _ = synthetic_cube(rows=40, cols=50)
    detector = hsanomaly.Detector("resrx").fit(cube)
    np.save(tmp_path / "expected.npy", detector.score(cube))
    np.save(tmp_path / "cube.npy", cube)
    (tmp_path / "detector.pkl").write_bytes(pickle.dumps(detector))
    folder = detector.model_
    del detector
    import gc

    gc.collect()
    assert not os.path.exists(folder)                 # gone with the object, as before
    code = ("import pickle, sys, numpy as np; d = pickle.load(open(sys.argv[1], 'rb')); "
            "out = d.score(np.load(sys.argv[2])); "
            "assert np.array_equal(out, np.load(sys.argv[3]), equal_nan=True); print(d.model_)")
    result = subprocess.run([sys.executable, "-c", code, tmp_path / "detector.pkl",
                             tmp_path / "cube.npy", tmp_path / "expected.npy"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("score", ["resrx", "dualcontext"])
def test_how_a_fitted_detector_runs_changes_without_unfitting_it(monkeypatch, score):
    """A detector fitted on a GPU machine, unpickled on a laptop, says to use device='cpu';
    set so, it was unfitted (its quick model trained again), though the device and the
    threads change how the networks run, not what the fit learned."""
    import copy

    from hsanomaly.errors import NotFittedError

    short_quick_models(monkeypatch)
    cube, _ = synthetic_cube(rows=45, cols=45)
    detector = hsanomaly.Detector(score, threads=1).fit(cube)
    expected, model = detector.score(cube), detector.model_
    for params in ({"threads": 2}, {"device": "cpu"}, {"threads": None}):
        detector.set_params(**params)
        assert detector.model_ == model                       # the same fit: nothing trained
        assert np.array_equal(detector.score(cube), expected, equal_nan=True)
    assert detector.scorer_.gan.threads is None                 # its networks' sessions
    copied = copy.copy(detector)                              # shares the fitted scorer
    copied.set_params(threads=2)
    assert detector.scorer_.gan.threads is None and copied.scorer_.gan.threads == 2
    with pytest.raises(HsanomalyError, match="unknown device"):
        detector.set_params(device="tpu")
    detector.set_params(threads=1, seed=3)                    # with what it learns: unfitted
    with pytest.raises(NotFittedError):
        detector.score(cube)


def test_a_quick_model_keeps_the_band_centres_of_the_scene_it_was_trained_on(tmp_path,
                                                                              monkeypatch):
    """Detector's quick model was trained on a copy of the scene without its band centres,
    so scoring the scene warned that the model records none to check them against."""
    import warnings

    from hsanomaly.model import load_bundle

    short_quick_models(monkeypatch)
    path = write_raster(tmp_path / "field-7.tif", synthetic_cube(rows=40, cols=50)[0])
    with rasterio.open(path, "r+") as ds:
        for band in range(1, ds.count + 1):
            ds.update_tags(band, wavelength=str(400 + 10 * band), wavelength_units="nm")
    with rasterio.open(path) as ds, warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        warnings.filterwarnings("ignore", ".*the trained generator's", hsanomaly.HsanomalyWarning)
        detector = hsanomaly.Detector("resrx").fit(ds)
        detector.score(ds)
    bundle = load_bundle(detector.model_)
    assert bundle.wavelengths == [400.0 + 10 * b for b in range(1, 13)]
    # and the name of the scene it was trained on, not its temporary copy's ("scene.tif")
    assert bundle.meta["training"]["inputs"] == ["field-7.tif"]


def test_a_data_arrays_fill_value_is_nodata_as_in_the_raster():
    """rioxarray's open_rasterio without masked=True keeps -9999 and names it _FillValue."""
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    cube[:, :3, :3] = -9999
    da = xr.DataArray(cube, dims=("band", "y", "x"), attrs={"_FillValue": -9999.0})
    heat = hsanomaly.Detector("rx").fit_score(da).values
    masked = np.ma.masked_equal(cube, -9999)
    assert np.isnan(heat[:3, :3]).all() and np.isfinite(heat[3:, 3:]).all()
    np.testing.assert_array_equal(heat, hsanomaly.Detector("rx").fit_score(masked))


def test_an_image_smaller_than_the_scores_window_is_refused_as_by_the_cli():
    cube, _ = synthetic_cube(rows=10, cols=10, targets=())
    with pytest.raises(HsanomalyError, match="15x15 window of score 'lrx' is larger than the 10x10 "
                                             "image; a smaller 'outer' would fit it"):
        hsanomaly.Detector("lrx").fit(cube)


def test_the_window_is_checked_before_a_quick_model_is_trained(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("trained a quick model for an image the score cannot take")

    monkeypatch.setattr("hsanomaly.quickmodel.train_on_copy", never)
    cube, _ = synthetic_cube(rows=20, cols=30, targets=())
    with pytest.raises(HsanomalyError, match="window of score 'dualcontext' is larger than the 20x30 "
                                             "image; a smaller 'rings' would fit it"):
        hsanomaly.Detector().fit(cube)


@pytest.mark.parametrize("score", ["lrx", "mlrx", "gmm"])
def test_a_detector_pickled_before_the_unit_fix_scores_as_it_did(score):
    """Detectors pickled before the ring floor was relative to the scene (``floor_``) and the
    mixture's components were scaled (``unit_``) lacked those attributes and failed to score;
    they score as they were fitted: an absolute floor, unscaled components."""
    import pickle

    from hsanomaly.scorers.rx import RING_FLOOR

    cube, _ = synthetic_cube(rows=60, cols=60)
    detector = hsanomaly.Detector(score).fit(cube)
    scorer = detector.scorer_
    fitted = getattr(scorer, "locals", None) or [scorer]
    for part in fitted:
        old = ("floor_", RING_FLOOR) if score != "gmm" else ("unit_", 1.0)
        setattr(part, *old)
    expected = detector.score(cube)
    for part in fitted:
        delattr(part, old[0])
    assert np.array_equal(pickle.loads(pickle.dumps(detector)).score(cube), expected,
                          equal_nan=True)


@pytest.mark.parametrize("score", ["lrx", "mlrx"])
def test_a_detector_pickled_before_pca_was_renamed_scores_as_it_did(score):
    """Local RX's option was ``components`` until it took gmm's name for the same thing,
    ``pca``; ring scorers pickled with the former attribute score as they were fitted (the
    GAN context scores hold these same scorers)."""
    import pickle

    cube, _ = synthetic_cube(rows=60, cols=60)
    detector = hsanomaly.Detector(score, pca=4).fit(cube)
    expected = detector.score(cube)
    scorer = detector.scorer_
    for part in [scorer, *getattr(scorer, "locals", [])]:
        part.components = part.__dict__.pop("pca")
    restored = pickle.loads(pickle.dumps(detector))
    assert np.array_equal(restored.score(cube), expected, equal_nan=True)
    assert restored.scorer_.params()["pca"] == 4


@pytest.mark.parametrize("score, options, ring", [
    ("lrx", {"outer": 3, "guard": 1}, "3/1 holds 8 pixels"),
    ("lrx", {"outer": 5, "guard": 3, "pca": 15}, "5/3 holds 16 pixels"),
    ("mlrx", {"rings": "3/1;15/5"}, "3/1 holds 8 pixels"),
])
def test_a_ring_too_small_for_its_covariance_is_refused_not_scored_nan(score, options, ring):
    """Such a ring scored no pixel: lrx gave an all-NaN heatmap, and mlrx silently averaged
    the other rings only."""
    cube, _ = synthetic_cube(bands=20)
    with pytest.raises(HsanomalyError, match=f"local RX ring {ring}, too few for a covariance"):
        hsanomaly.Detector(score, **options).fit(cube)
    few = cube[:4]                 # 4 bands: 4 components, and 8 pixels are enough
    assert np.isfinite(hsanomaly.Detector("lrx", outer=3, guard=1).fit_score(few)).any()


def test_the_file_jobs_refuse_an_array_or_a_dataset_in_one_line(synthetic_raster, tmp_path):
    """detect took an open dataset for its own pixel source (AttributeError deep inside) and
    an array's text for a file name (OSError: file name too long)."""
    path, _, _ = synthetic_raster
    cube, _ = synthetic_cube()
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with rasterio.open(path) as ds:
        for src in (cube, ds):
            for job in (lambda: hsanomaly.detect(src, tmp_path / "heat.tif", score="rx"),
                        lambda: hsanomaly.detect_many(src, tmp_path, score="rx"),
                        lambda: hsanomaly.detect_many([path, src], tmp_path, score="rx")):
                with pytest.raises(HsanomalyError, match=r"expected a raster's path .*"
                                                         r"use hsanomaly.Detector"):
                    job()
    assert not list(tmp_path.iterdir())
    import pathlib

    import pandas as pd

    hsanomaly.detect(pathlib.PurePosixPath(path), tmp_path / "heat.tif", score="rx")
    with pytest.raises(HsanomalyError, match="expected a raster's path .* got a DataFrame"):
        hsanomaly.detect_many(pd.DataFrame({"path": [str(path)]}), tmp_path / "many")
    for names in (np.array([str(path)]), pd.Series([str(path)])):      # names, not a cube
        assert [item.status for item in hsanomaly.detect_many(
            names, tmp_path / "many", score="rx", overwrite=True)] == ["scored"]


def test_a_data_arrays_scale_and_offset_apply_and_its_value_attributes_stay_behind(tmp_path):
    """An unmasked rioxarray read carries scale_factor/add_offset beside _FillValue: they were
    ignored on the way in (model scores then differed from the raster's), and every attribute
    was copied onto the scores, so a netCDF round trip scaled the scores by scale_factor."""
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    counts = np.round(cube * 1000).astype(np.int16)
    scaled = counts * np.float32(0.001) + np.float32(2.0)
    attrs = {"scale_factor": 0.001, "add_offset": 2.0, "_FillValue": -1, "units": "reflectance",
             "crs": "EPSG:32633"}
    raw = xr.DataArray(counts, dims=("band", "y", "x"), attrs=attrs)
    detector = hsanomaly.Detector("rx").fit(raw)
    np.testing.assert_allclose(detector.scorer_.mean_, hsanomaly.Detector("rx").fit(
        scaled).scorer_.mean_, rtol=1e-6)                   # fitted on the values, not the counts
    # scaled in float32, as GDAL scales the raster and xarray decodes it: the same scores
    # (it was in float64, so every score differed in its last bits from detect's)
    profile = dict(driver="GTiff", count=len(counts), height=counts.shape[1],
                   width=counts.shape[2], dtype="int16")
    with rasterio.open(tmp_path / "counts.tif", "w", **profile) as ds:
        ds.write(counts)
        ds.scales, ds.offsets = [0.001] * len(counts), [2.0] * len(counts)
    hsanomaly.detect(tmp_path / "counts.tif", tmp_path / "counts-rx.tif", score="rx")
    with rasterio.open(tmp_path / "counts-rx.tif") as ds:
        np.testing.assert_array_equal(detector.score(raw).values, ds.read(1))
    np.testing.assert_array_equal(detector.score(raw).values,
                                  hsanomaly.Detector("rx").fit_score(scaled))
    # too coarse for float32 once offset: the advice names the attribute, not gdal_edit
    with pytest.warns(hsanomaly.HsanomalyWarning, match="its add_offset attribute") as said:
        hsanomaly.Detector("rx").fit(raw.assign_attrs(add_offset=1e7))
    assert not any("gdal_edit" in str(w.message) for w in said)
    heat = detector.score(raw)
    fill = heat.attrs.pop("_FillValue")     # its own NaN, declared (rio.to_raster: nodata NaN)
    record = {k: heat.attrs.pop(k) for k in list(heat.attrs) if k.startswith("hsanomaly_")}
    assert np.isnan(fill) and heat.attrs == {"crs": "EPSG:32633",
                                             "long_name": "anomaly score (high = anomalous)"}
    heat.attrs.update(record)              # strings all: what scored it travels in the file
    heat.attrs["_FillValue"] = fill
    heat.to_netcdf(tmp_path / "heat.nc")
    with xr.open_dataarray(tmp_path / "heat.nc") as back:
        np.testing.assert_array_equal(back.values, heat.values)
        assert back.attrs["hsanomaly_score"] == "rx"
        assert np.isnan(back.encoding["_FillValue"])
    with pytest.raises(HsanomalyError, match="its scale and offset attributes are not usable"):
        hsanomaly.Detector("rx").fit(raw.assign_attrs(scale_factor=[1.0, 2.0]))
    from hsanomaly.io.inputs import _scaling

    assert _scaling(counts, {"scale_factor": 1.0, "add_offset": 0.0}, "x") is None  # no copy
    one = raw[:1].assign_attrs(scale_factor=[1.0, 2.0, 3.0])      # 3 scales for 1 band
    with pytest.raises(HsanomalyError, match="its scale and offset attributes are not usable"):
        hsanomaly.Detector("rx").fit(one)


def test_a_data_arrays_per_band_scales_and_offsets_apply_as_rioxarray_gives_them():
    """Where a raster's bands have other scales (Hyperion's 1/40 and 1/80), rioxarray's
    unmasked read gives them as ``scales`` (and differing offsets as ``offsets``), not as
    scale_factor/add_offset: they were ignored, and lrx scored the raw counts without a word."""
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    bands = len(cube)
    scales = np.where(np.arange(bands) < bands // 2, 1 / 40, 1 / 80)
    offsets = np.linspace(0.0, 1.0, bands)
    counts = np.round(cube * 4000).astype(np.int16)
    for attrs, scale, offset in (({"scales": tuple(scales), "add_offset": 0.0}, scales, 0.0),
                                 ({"scale_factor": 1 / 40, "offsets": tuple(offsets)},
                                  1 / 40, offsets),
                                 ({"scales": list(scales), "offsets": list(offsets)},
                                  scales, offsets)):
        values = (counts * np.broadcast_to(scale, (bands,))[:, None, None]
                  + np.broadcast_to(offset, (bands,))[:, None, None]).astype(np.float32)
        raw = xr.DataArray(counts, dims=("band", "y", "x"), attrs=attrs)
        np.testing.assert_allclose(hsanomaly.Detector("rx").fit(raw).scorer_.mean_,
                                   hsanomaly.Detector("rx").fit(values).scorer_.mean_, rtol=1e-5)
        local = hsanomaly.Detector("lrx", outer=7, guard=3)
        np.testing.assert_allclose(local.fit_score(raw).values, local.fit_score(values),
                                   rtol=1e-3)
    assert not np.allclose(local.fit_score(counts), local.fit_score(values), rtol=1e-2)
    # bands selected from a rioxarray read (``.sel(band=[...])``) keep the file's whole list:
    # the selected bands' own apply (the band coordinate numbers the file's bands from 1)
    numbers = [1, 2, 3, 5, 8, 9, 10, 11]
    raw = xr.DataArray(counts[np.array(numbers) - 1], dims=("band", "y", "x"),
                       coords={"band": numbers}, attrs={"scales": tuple(scales)})
    kept = (counts * scales[:, None, None])[np.array(numbers) - 1].astype(np.float32)
    np.testing.assert_allclose(local.fit_score(raw).values, local.fit_score(kept), rtol=1e-3)


def test_a_dataarrays_band_centres_reach_the_model_check():
    """A wavelength coordinate was not read, so a DataArray counted as having no band
    centres and a band-reversed one was scored by a model that records them."""
    xr = pytest.importorskip("xarray")
    from types import SimpleNamespace

    from hsanomaly.io.inputs import as_source
    from hsanomaly.model import check_wavelengths

    cube = np.ones((3, 4, 5), np.float32)
    microns = xr.DataArray(cube, dims=("wavelength", "y", "x"),
                           coords={"wavelength": ("wavelength", [0.45, 0.55, 0.65],
                                                  {"units": "micrometers"})})
    assert as_source(microns)[0].wavelengths == pytest.approx([450.0, 550.0, 650.0])
    numbered = xr.DataArray(cube, dims=("band", "y", "x"),     # rioxarray's band numbers
                            coords={"band": [1, 2, 3], "wavelength": ("band", [650, 550, 450])})
    reversed_centres = as_source(numbered)[0].wavelengths
    assert reversed_centres == [650.0, 550.0, 450.0]
    bundle = SimpleNamespace(wavelengths=[450.0, 550.0, 650.0], path="model")
    with pytest.raises(HsanomalyError, match="band 1 is centred at 650 nm"):
        check_wavelengths(bundle, reversed_centres, "<DataArray>")


def test_a_detector_fitted_on_one_scene_refuses_another_of_other_band_centres():
    """Its statistics are of the fitted scene's bands: another sensor's scene (centres 31 nm
    longer) was scored with them silently, as a model's check would have refused it."""
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube()
    centres = [500.0 + 10 * b for b in range(len(cube))]

    def scene(wavelengths, values=cube):
        return xr.DataArray(values, dims=("wavelength", "y", "x"),
                            coords={"wavelength": wavelengths})
    detector = hsanomaly.Detector("rx").fit(scene(centres))
    assert detector.score(scene(centres, cube[:, ::-1])).shape == cube.shape[1:]
    with pytest.raises(HsanomalyError, match=r"<DataArray>: band 1 is centred at 531 nm but the "
                       r"scene Detector\(.*\) was fitted on held 500 nm there \(another sensor "
                       r"or band subset\?\); fit it on this one"):
        detector.score(scene([c + 31 for c in centres], cube[:, ::-1]))
    with pytest.raises(HsanomalyError, match=r"holds the band centres the scene .* fitted on "
                       r"held, in another order \(band 1 is centred at 610 nm, that scene's band "
                       r"1 at 500 nm\); put its bands in that scene's order"):
        detector.score(scene(centres[::-1], cube[::-1, ::-1]))
    assert hsanomaly.Detector("rx").fit(cube).score(scene(centres)).shape == cube.shape[1:]


def test_a_quick_models_training_leaves_the_data_checks_to_the_scoring(monkeypatch):
    """The raster a quick model is trained on is checked before it trains (the warning came
    only once the model had learnt the fill) and once: its training warned a second time,
    naming the Detector's temporary copy."""
    import hsanomaly.training

    asked = []

    def recorded(*args, **options):
        asked.append(options.get("data_checked"))
        raise HsanomalyError("recorded")
    monkeypatch.setattr(hsanomaly.training, "train", recorded)
    monkeypatch.setattr("hsanomaly.quickmodel.check_training", lambda name: None)
    cube, _ = synthetic_cube(rows=60, cols=60)
    cube[:, :, :20] = -9999                  # said before the model trains on it, and once
    from hsanomaly.errors import HsanomalyWarning
    with pytest.warns(HsanomalyWarning, match="hold -9999 in every band") as said:
        with pytest.raises(HsanomalyError, match="recorded"):
            hsanomaly.Detector("resrx").fit(cube)
    assert len([w for w in said if "-9999" in str(w.message)]) == 1
    from hsanomaly.quickmodel import train_on_scene
    with pytest.raises(HsanomalyError, match="recorded"):
        train_on_scene("scene.tif", "heat.tif", {}, "heat.model")
    assert asked == [True, True]


class BytesPath:
    """A path-like whose name is bytes: os.PathLike, but no name pathlib or GDAL takes."""

    def __init__(self, name):
        self.name = name

    def __fspath__(self):
        return self.name


def test_the_jobs_refuse_wrong_kinds_of_arguments_in_one_line(synthetic_raster, tmp_path):
    """A list of extras, an array to train on, a misspelt training option and arrays to
    evaluate raised AttributeError, OSError (file name too long) and TypeError; a callback
    that is not one, a TypeError once the run had started."""
    path, _, _ = synthetic_raster
    cube, truth = synthetic_cube()
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    cases = [
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", score="recon", model="m",
                                  extras=["recon"]), "'extras': expected a mapping .* got a list"),
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", score="recon", model="m",
                                  extras={"recon": 3}),
         r"extras\['recon'\]: expected a path \(a str or path-like\), got an int"),
        # output paths of the wrong kind ended in pathlib's TypeError, deep in the job
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", score="rx", png=3),
         "'png': expected a path .* got an int"),
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=3, far=0.01),
         "'polygons': expected a path .* got an int"),
        (lambda: hsanomaly.evaluate(path, path, json=3), "'json': expected a path"),
        (lambda: hsanomaly.evaluate(path, path, plots=3), "'plots': expected a path"),
        (lambda: hsanomaly.detect_many(path, None, score="rx"),
         "'out_dir': expected a path .* got None"),
        (lambda: hsanomaly.train(path, None), "'out': expected a path .* got None"),
        (lambda: hsanomaly.train(path, ""), "'out': an empty name"),
        # "-" is standard output on the command line only: it wrote a file named "-"
        (lambda: hsanomaly.evaluate(path, path, json="-"),
         "'json': '-' is standard output on the command line only"),
        # a text switch is truthy: overwrite="no" replaced a file hsanomaly did not write
        (lambda: hsanomaly.evaluate(path, path, json=tmp_path / "r.json", overwrite="no"),
         "'overwrite' must be True or False, got 'no'"),
        (lambda: hsanomaly.detect_many(str(path).encode(), tmp_path, score="rx"),
         "'inputs': expected a raster's path .* got a bytes"),
        (lambda: hsanomaly.detect(BytesPath(os.fsencode(path)), tmp_path / "h.tif", score="rx"),
         "'src': expected a raster's path .* got a path-like of bytes"),
        (lambda: hsanomaly.find_targets(path, threshold="3"),
         "'threshold' must be a finite number, got '3'"),
        (lambda: hsanomaly.Detector("rx").fit(cube).score_outputs(cube, with_extras="no"),
         "'with_extras' must be True or False, got 'no'"),
        (lambda: hsanomaly.train(cube, tmp_path / "m"), "'inputs': expected a raster's path "
                                                        r".* ndarray; training reads rasters from "
                                                        "files: write it to a GeoTIFF first"),
        (lambda: hsanomaly.detect(path, None), r"'dst': expected a raster's path \(a str or "
                                               r"path-like\), got None; name the heatmap"),
        (lambda: hsanomaly.train(path, tmp_path / "m", iteration=3),
         r"train: no option 'iteration' \(did you mean 'iterations'\? the options: mask, window, "),
        (lambda: hsanomaly.train(path, tmp_path / "m", data_checked=True),   # the library's own
         r"train: no option 'data_checked'"),
        (lambda: hsanomaly.evaluate({}, truth), "'heatmap': expected a raster's path .* got "
                                                "a dict; or an array"),
        (lambda: hsanomaly.evaluate(cube[0], path), "'truth': a file .* but the heatmap is an "
                                                    "array"),
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", score="rx", callback=3),
         r"'callback' must be None or a function \(fraction, message\), got 3"),
        (lambda: hsanomaly.train(path, tmp_path / "m", callback="print"),
         r"'callback' must be None or a function"),
        (lambda: hsanomaly.Detector("resrx", model=3), "'model': expected a model bundle's "
                                                       "folder .* got an int"),
        (lambda: hsanomaly.detect(path, tmp_path / "h.tif", model=[path]),
         "'model': expected a model bundle's folder"),
    ]
    for job, message in cases:
        with pytest.raises(HsanomalyError, match=message):
            job()
    assert not list(tmp_path.iterdir())


def test_an_xarray_dataset_of_scores_is_refused_in_one_line():
    """evaluate and find_targets took a Dataset (it has __array__) and failed in xarray."""
    xr = pytest.importorskip("xarray")
    scores = xr.Dataset({"score": (("y", "x"), np.zeros((4, 5), np.float32))})
    for job in (lambda: hsanomaly.find_targets(scores, far=0.01),
                lambda: hsanomaly.evaluate(scores, np.zeros((4, 5)))):
        with pytest.raises(HsanomalyError, match="the heatmap array: expected a raster's path or "
                                                 "an array, got an xarray Dataset; give one of "
                                                 "its variables"):
            job()
    with pytest.raises(HsanomalyError, match="expected a .rows, cols. array of numbers, got a "
                                             "list numpy cannot read as one"):
        hsanomaly.find_targets([[1.0, 2.0], [3.0]], far=0.01)
    cube = xr.Dataset({"reflectance": (("band", "y", "x"), np.zeros((3, 4, 5), np.float32))})
    with pytest.raises(HsanomalyError, match="Dataset: expected .*; an xarray Dataset: give one "
                                             "of its variables$"):       # the Detector too
        hsanomaly.Detector("rx").fit(cube)
    with pytest.raises(HsanomalyError, match=r"holds a control character \(a newline, a tab\); "
                                             r"strip the name \(its line's end\?\)$"):
        hsanomaly.detect("scene.tif\n", "heat.tif", score="rx")     # a line of a file list


def test_a_bundle_that_train_returned_is_a_model(tmp_path):
    """``hsanomaly.train`` returns a Bundle; passing it on as ``model`` raised TypeError in
    Detector.fit and a page-long 'file name too long' in detect."""
    pytest.importorskip("torch")
    cube, _ = synthetic_cube(rows=24, cols=24)
    path = write_raster(tmp_path / "scene.tif", cube)
    bundle = hsanomaly.train(path, tmp_path / "m", iterations=2)
    by_path = hsanomaly.Detector("resrx", model=bundle.path).fit(cube).score(cube)
    detector = hsanomaly.Detector("resrx", model=bundle)
    assert detector.get_params()["model"] is bundle
    assert repr(detector) == f"Detector(score='resrx', model={str(bundle.path)!r}, tile=256)"
    assert repr(bundle) == (f"Bundle({str(bundle.path)!r}, bands={bundle.bands}, window=1, "
                            f"latent_dim={bundle.latent_dim})")
    assert repr(hsanomaly.Detector("lrx", outer=np.int64(15))) == \
        "Detector(score='lrx', tile=256, outer=15)"          # plain numbers, as the user reads them
    np.testing.assert_array_equal(detector.fit(cube).score(cube), by_path)
    result = hsanomaly.detect(path, tmp_path / "heat.tif", score="resrx", model=bundle)
    assert result.model == str(bundle.path)
    with rasterio.open(tmp_path / "heat.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), by_path)
    # trained into again, the folder holds another model: the Bundle, which names the folder
    # scoring loads, is refused rather than scored with the other model
    hsanomaly.train(path, tmp_path / "m", iterations=2, seed=1)
    stale = "the folder no longer holds the Bundle given as 'model'"
    for job in (lambda: hsanomaly.Detector("resrx", model=bundle),
                lambda: detector.fit(cube),
                lambda: hsanomaly.detect(path, tmp_path / "heat2.tif", score="resrx",
                                         model=bundle)):
        with pytest.raises(HsanomalyError, match=stale):
            job()
    assert repr(detector) == f"Detector(score='resrx', model={str(bundle.path)!r}, tile=256)"
    assert not (tmp_path / "heat2.tif").exists()
    with pytest.raises(HsanomalyError, match="'model': an empty name"):
        hsanomaly.Detector("resrx", model="")


def test_scikit_learns_fitted_checks_see_the_detector():
    """scikit-learn's NotFittedError catches ours, and its check_is_fitted works (it needs
    the estimator's tags since scikit-learn 1.6)."""
    from sklearn.exceptions import NotFittedError as SklearnNotFitted
    from sklearn.utils.validation import check_is_fitted

    cube, _ = synthetic_cube(rows=20, cols=20)
    detector = hsanomaly.Detector("rx")
    with pytest.raises(SklearnNotFitted):
        detector.score(cube)
    with pytest.raises(SklearnNotFitted):
        check_is_fitted(detector)
    check_is_fitted(detector.fit(cube))
    assert issubclass(hsanomaly.NotFittedError, (ValueError, AttributeError, HsanomalyError))


def test_each_job_says_its_warnings_again_under_the_users_filters():
    """warn_once said a warning once per process: after one silenced (or caught by a test's
    pytest.warns), no later job could record or escalate it. Now each job says it once."""
    import warnings

    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning) as said:
        hsanomaly.Detector("lrx", components=5)
    assert issubclass(said[0].category, FutureWarning)
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
            with pytest.raises(hsanomaly.HsanomalyDeprecationWarning):
                hsanomaly.Detector("lrx", components=5)
    cube, _ = synthetic_cube(rows=20, cols=20)
    cube = cube.astype(np.float64) + 1e12        # float32 rounds these: a data warning
    for _ in range(2):
        with pytest.warns(hsanomaly.HsanomalyWarning, match="float32, in which pixels are scored"):
            hsanomaly.Detector("rx").fit(cube)


def test_a_cube_that_looks_bands_last_is_warned_about():
    """scipy's loadmat gives the benchmark scenes as (rows, cols, bands); Detector scored such a
    cube as (bands, rows, cols) without a word (a square one even came back square)."""
    import warnings

    cube, _ = synthetic_cube(bands=40, rows=40, cols=40)
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"the array of shape \(40, 40, 40\): its "
                      r"last axis varies far more smoothly than its first two, as spectra do.*"
                      r"if the bands are last, pass np.moveaxis\(X, -1, 0\)"):
        hsanomaly.Detector("rx").fit(np.moveaxis(cube, 0, -1))
    with pytest.warns(hsanomaly.HsanomalyWarning, match="the masked array of shape"):
        hsanomaly.Detector("rx").fit(np.ma.masked_invalid(np.moveaxis(cube, 0, -1)))
    xr = pytest.importorskip("xarray")
    last = xr.DataArray(np.moveaxis(cube, 0, -1))        # dims dim_0..dim_2: the first guessed
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"an unnamed DataArray of shape .*"
                      r"the first was taken for the bands: if they are last, name theirs: "
                      r"X.rename\(\{'dim_2': 'band'\}\)"):
        hsanomaly.Detector("rx").fit(last)
    masked = np.ma.masked_array(cube.copy(), np.zeros(cube.shape, bool))
    masked[:, :, :15] = -9999.0                 # a float product's nodata under the mask
    masked[:, :, :15] = np.ma.masked
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        warnings.simplefilter("error", RuntimeWarning)    # nor numpy's of an all-NaN line
        hsanomaly.Detector("rx").fit(cube)                              # bands first: quiet
        hsanomaly.Detector("rx").fit(masked)
        hsanomaly.Detector("rx").fit(synthetic_cube(bands=12)[0])
        hsanomaly.Detector("rx").fit(xr.DataArray(cube))                # bands first: quiet
        hsanomaly.Detector("rx").fit(xr.DataArray(np.moveaxis(cube, 0, -1),   # named: as said
                                                  dims=("y", "x", "band")))


def test_a_resampled_scene_is_judged_by_its_steps_between_pixels_that_differ(example_scene):
    """Pixels repeated along a spatial axis (nearest-neighbour resampling, as push-broom lines
    are made square) step by zero between copies: counted, they made that axis pass for the
    smoothest, hiding a real scene stored bands last and passing a bands-first one for it."""
    import warnings

    with rasterio.open(example_scene[0]) as ds:
        cube = ds.read().astype(np.float32)          # (bands, rows, cols)
    with pytest.warns(hsanomaly.HsanomalyWarning, match="its last axis varies far more smoothly"):
        hsanomaly.Detector("rx").fit(np.repeat(np.moveaxis(cube, 0, -1), 3, axis=1))
    coarse = cube[:30 * (len(cube) // 30)].reshape(30, -1, *cube.shape[1:]).mean(axis=1)
    with warnings.catch_warnings():              # 30 broad bands step far: bands first, quiet
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        for axis in (1, 2):
            hsanomaly.Detector("rx").fit(np.repeat(coarse, 3, axis=axis))


def test_constant_or_saturated_lines_leave_the_band_axis_check_as_it_was(example_scene):
    """A line without a step (a bad band filled with one value, pixels saturated along it)
    made the statistic NaN: numpy warned of an empty mean and the bands-last warning was lost."""
    import warnings

    with rasterio.open(example_scene[0]) as ds:
        cube = np.moveaxis(ds.read().astype(np.float32), 0, -1)       # bands last
    cube[:, :, 100] = 0.01                                           # a bad band
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        hsanomaly.Detector("rx").fit(cube)
    assert [type(w.message).__name__ for w in said
            if not isinstance(w.message, hsanomaly.HsanomalyWarning)] == []
    assert any("its last axis varies far more smoothly" in str(w.message) for w in said)


def test_bands_on_the_second_axis_and_files_with_bands_last_are_warned_about(tmp_path):
    """A GDAL raster whose cube was stored bands last (an HDF5 product: GDAL takes its rows
    for bands) and a .mat cube saved (bands, rows, cols) without a truth variable (read as
    (rows, cols, bands), by the rule) were scored on the wrong axes without a word."""
    import warnings

    import scipy.io

    cube, _ = synthetic_cube(bands=40, rows=40, cols=40)
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"the array of shape \(40, 40, 40\): its "
                      r"second axis varies far more smoothly than its first and last, as spectra "
                      r"do, so it may be \(rows, bands, cols\).* pass np.moveaxis\(X, 1, 0\)"):
        hsanomaly.Detector("rx").fit(np.moveaxis(cube, 0, 1))
    last = write_raster(tmp_path / "last.tif", np.moveaxis(cube, 0, -1))
    first = write_raster(tmp_path / "first.tif", cube)
    scipy.io.savemat(tmp_path / "first.mat", {"data": cube})          # no truth variable
    for path, where, advice in (
            (last, "last", "store the cube bands first: GDAL reads bands first"),
            (tmp_path / "first.mat", "second", r"save it \(rows, cols, bands\), or beside its truth")):
        with pytest.warns(hsanomaly.HsanomalyWarning, match=f"{path.name} read as \\(bands, "
                          f"rows, cols\\) .*: its {where} axis varies far more smoothly .* "
                          f"{advice}"):
            hsanomaly.detect(path, tmp_path / f"{path.stem}-heat.tif", score="rx")
    # quiet: bands first, and a multispectral image whose rows or columns are its smoothest
    # direction (a gradient, striping): its short spectra step far, and say nothing
    rows = np.linspace(0, 50, 120)[:, None] + np.random.default_rng(0).normal(0, 0.2, (120, 90))
    striped = np.stack([rows * (band + 1) + np.arange(90) % 7 for band in range(8)])
    multispectral = write_raster(tmp_path / "multi.tif", striped.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        hsanomaly.detect(first, tmp_path / "heat.tif", score="rx")
        hsanomaly.detect(multispectral, tmp_path / "multi-heat.tif", score="rx")
        with rasterio.open(first) as ds:
            hsanomaly.Detector("rx").fit(ds)


def test_a_netcdf_file_read_bands_last_is_refused_naming_the_netcdf_driver(tmp_path):
    """EMIT's reflectance through GDAL's HDF5 driver (bands last), which takes the first
    dimension for the bands: it was scored with its rows for bands after a warning (and its
    bad bands advised as a fill value to declare nodata, the sensor audit); it is refused in
    one line, with the netCDF driver's name for the variable, which reads it bands first."""
    import h5py

    cube, _ = synthetic_cube(bands=40, rows=40, cols=40)
    cube[30:] = -0.01                                           # the bad bands
    with h5py.File(tmp_path / "emit.nc", "w") as f:
        f["reflectance"] = np.moveaxis(cube, 0, -1).astype(np.float32)
    name = f'HDF5:"{tmp_path / "emit.nc"}"://reflectance'
    with pytest.raises(HsanomalyError, match="its last axis varies far more smoothly") as err:
        hsanomaly.detect(name, tmp_path / "heat.tif", score="rx")
    assert str(err.value).endswith("GDAL's netCDF driver may read this one bands first: "
                                   f'NETCDF:"{tmp_path / "emit.nc"}":reflectance')
    assert not (tmp_path / "heat.tif").exists()


@pytest.mark.parametrize("stored", ["rows, bands, cols", "bands, rows, cols"])
def test_an_hdf5_cube_whose_bands_gdal_cannot_know_is_refused_where_they_lie_elsewhere(
        tmp_path, stored):
    """PRISMA stores its cubes (rows, bands, cols), and GDAL's HDF5 driver takes the first
    dimension for the bands: the run warned, then wrote a heatmap of bands by columns and
    exited 0 (the products audit F01). Refused in one line before any work, with how to give
    the bands first; the same cube stored bands first is scored."""
    import h5py

    cube, truth = synthetic_cube(bands=60, rows=50, cols=60)
    stored_as = np.moveaxis(cube, 0, 1) if stored.startswith("rows") else cube
    with h5py.File(tmp_path / "prs.he5", "w") as f:
        f["HDFEOS/SWATHS/PRS_L2D_HCO/Data_Fields/VNIR_Cube"] = stored_as.astype(np.float32)
    name = f'HDF5:"{tmp_path / "prs.he5"}"://HDFEOS/SWATHS/PRS_L2D_HCO/Data_Fields/VNIR_Cube'
    if stored.startswith("rows"):
        with pytest.raises(HsanomalyError, match=r"read as \(bands, rows, cols\) \(50, 60, 60\): "
                           r"its second axis varies far more smoothly .* stored \(rows, bands, "
                           r"cols\) \(as PRISMA stores its cubes\), which GDAL's HDF5 driver "
                           r"reads as 50 bands of 60 x 60 pixels.* np\.moveaxis\(cube, 1, 0\)"):
            hsanomaly.detect(name, tmp_path / "heat.tif", score="rx")
        assert not (tmp_path / "heat.tif").exists()
        # the way past a wrong refusal it names: a GeoTIFF is scored as read, with a warning
        from rasterio.shutil import copy as copy_raster

        copy_raster(name, tmp_path / "copy.tif", driver="GTiff")
        with pytest.warns(HsanomalyWarning, match="its second axis varies far more smoothly"):
            hsanomaly.detect(tmp_path / "copy.tif", tmp_path / "heat.tif", score="rx")
    else:
        hsanomaly.detect(name, tmp_path / "heat.tif", score="rx")
        with rasterio.open(tmp_path / "heat.tif") as ds:
            assert ds.shape == truth.shape


def test_the_not_fitted_error_is_one_class_in_every_thread():
    """Made on first use, it was made once per thread that asked at the same moment, and an
    ``except`` naming one missed another's."""
    import threading

    from hsanomaly import errors

    errors.__dict__.pop("NotFittedError", None)
    seen, start = [], threading.Barrier(8)

    def ask():
        start.wait()
        seen.append(errors.NotFittedError)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and seen[0] is hsanomaly.NotFittedError


def test_score_none_is_the_default_score_as_in_detect():
    """``hsanomaly.detect(score=None)`` scores with the default; ``Detector(score=None)`` was
    refused as "unknown score None"."""
    from hsanomaly import defaults

    assert hsanomaly.Detector(score=None).get_params()["score"] == defaults.SCORE
    assert hsanomaly.Detector("rx").set_params(score=None).get_params()["score"] == defaults.SCORE


OVERLAP = """
import threading, numpy
from threadpoolctl import threadpool_info
from hsanomaly.runtime import one_blas_thread

def blas():
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

def overlap(main_first):
    seen, first_in, second_in, first_out = [], threading.Event(), threading.Event(), threading.Event()
    def first():                         # enters first, ends first
        with one_blas_thread():
            first_in.set(); second_in.wait(); seen.append(blas())
        first_out.set()
    def second():                        # enters while the first runs, ends last
        first_in.wait()
        with one_blas_thread():
            second_in.set(); first_out.wait(); seen.append(blas())
    mine, other = (first, second) if main_first else (second, first)
    thread = threading.Thread(target=other); thread.start(); mine(); thread.join()
    return seen

import sys
start = blas()
print(start, *overlap(sys.argv[1] == "main"), blas())
"""


def test_overlapping_calls_leave_the_process_blas_threads_as_they_were():
    """A call in the main thread and one in another, overlapping, left the process on one BLAS
    thread for good: each call restored what it saw on entry, or (a first fix) the last to end
    restored it from a thread that OpenBLAS does not let raise a count the main thread set."""
    import subprocess
    import sys

    for first in ("main", "worker"):        # a fresh process each: see one_blas_thread
        out = subprocess.run([sys.executable, "-c", OVERLAP, first], capture_output=True,
                             text=True, check=True, timeout=120).stdout.split()
        if out[0] == "1":
            pytest.skip("BLAS runs one thread here: nothing to restore")
        # one thread while both run; the first call's limit goes with it, in its own thread
        assert out[1:] == ["1", out[0], out[0]], (first, out)


SILENT_JOBS = """
import sys, threading, hsanomaly
src, work = sys.argv[1], sys.argv[2]
hsanomaly.detect(src, work + "/h.tif", score="rx")
hsanomaly.detect_many([src], work + "/many", score="rx")
print(sorted(t.name for t in threading.enumerate()))
"""


def test_a_silent_library_call_leaves_no_thread_behind(synthetic_raster, tmp_path):
    """A progress bar that is not shown is not made: a disabled tqdm bar still started its
    monitor thread, which lived on in the caller's process."""
    import subprocess
    import sys

    path, _, _ = synthetic_raster
    out = subprocess.run([sys.executable, "-c", SILENT_JOBS, str(path), str(tmp_path)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "['MainThread']"


def test_a_failed_refit_keeps_the_fitted_quick_model(monkeypatch):
    """A refit interrupted while its quick model trained had already removed the fitted one's
    folder: the detector still counted as fitted, and pickling it raised FileNotFoundError."""
    import pickle

    import hsanomaly.training

    short_quick_models(monkeypatch)
    cube, _ = synthetic_cube(rows=40, cols=40)
    detector = hsanomaly.Detector("resrx").fit(cube)
    expected, folder = detector.score(cube), detector.model_

    def interrupted(*args, **options):
        raise KeyboardInterrupt
    monkeypatch.setattr(hsanomaly.training, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        detector.fit(cube)
    assert detector.model_ == folder and os.path.isdir(folder)
    again = pickle.loads(pickle.dumps(detector))
    assert np.array_equal(again.score(cube), expected, equal_nan=True)


def test_a_quick_models_warnings_name_the_input_and_its_folder_goes_quietly(monkeypatch):
    """Training's warnings named the temporary copy of X the user never made
    (/tmp/hsanomaly-model-.../scene.tif), and a fitted detector's folder was left to tempfile's
    finaliser, which raised a ResourceWarning when the detector was collected."""
    import gc
    import warnings

    short_quick_models(monkeypatch)
    cube, _ = synthetic_cube(rows=40, cols=40)
    cube[3] = 1.0                       # a constant band: the model leaves it out, and says so
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        detector = hsanomaly.Detector("resrx").fit(cube)
        folder = detector.model_
        del detector
        gc.collect()
    texts = [str(w.message) for w in said]
    assert not [t for t in texts if "hsanomaly-model" in t or "scene.tif" in t], texts
    assert [t for t in texts if t.startswith("<array>") and "constant" in t], texts
    assert not [w for w in said if issubclass(w.category, ResourceWarning)], texts
    assert not os.path.exists(folder)


def test_a_killed_detectors_quick_model_folder_goes_with_the_next_one(tmp_path, monkeypatch):
    """A Detector killed while its quick model trained left the float32 copy of its scene and
    a checkpoint in TMPDIR, which nothing ever removed."""
    import subprocess
    import sys
    import tempfile
    import time

    from hsanomaly.io import atomic
    from hsanomaly.quickmodel import QuickModelFolder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    holds = atomic._host() + atomic.HOLDS
    killed = tmp_path / f".hsanomaly-model.{dead}-{holds}.abc{atomic.TMP_SUFFIX}"
    killed.mkdir()
    (killed / "scene.tif").write_bytes(b"a float32 copy of a scene")
    hour_ago = time.time() - 3600
    os.utime(killed, (hour_ago, hour_ago))
    folder = QuickModelFolder()
    assert not killed.exists() and os.path.isdir(folder.name)
    assert os.path.dirname(folder.name) == str(tmp_path)
    folder.cleanup()
    assert not os.listdir(tmp_path)


def test_a_quick_model_that_cannot_be_written_names_it_and_tmpdir(monkeypatch):
    """A write failure in the quick model's private folder of TMPDIR named a path under TMPDIR
    that does not exist (an output's name is given without its private folder), and said
    "nothing was replaced" of a Detector, which replaces nothing."""
    import tempfile

    import hsanomaly.training
    from hsanomaly.io.atomic import destination_of

    def full(inputs, out, **options):
        raise HsanomalyError(f"{destination_of(out)}.checkpoint/state.npz: cannot write (no "
                             "space left on the device); nothing was replaced")
    monkeypatch.setattr(hsanomaly.training, "train", full)
    cube, _ = synthetic_cube(rows=40, cols=40)
    with pytest.raises(HsanomalyError) as refused:
        hsanomaly.Detector("resrx").fit(cube)
    assert str(refused.value) == (
        f"<array>'s quick model could not be written in {tempfile.gettempdir()} (TMPDIR sets "
        "where): model.checkpoint/state.npz: cannot write (no space left on the device)")


def test_fit_score_says_each_warning_once_and_a_score_in_capitals_is_suggested():
    """fit_score said each data warning twice (fit and score each a job); Detector("RX") got
    no "did you mean 'rx'?"; progress= was refused as "writes nothing"."""
    import warnings

    cube, _ = synthetic_cube(rows=20, cols=20)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        cube[2, :5, :5] = np.nan                  # one band's dropout: said, once per call
        hsanomaly.Detector("rx").fit_score(cube)
    said = [str(w.message) for w in said if issubclass(w.category, hsanomaly.HsanomalyWarning)]
    assert len(said) == len(set(said)) >= 1, said
    with pytest.raises(HsanomalyError, match="unknown score 'RX'; did you mean 'rx'?"):
        hsanomaly.Detector("RX")
    with pytest.raises(HsanomalyError, match="'progress': a Detector draws no progress bar"):
        hsanomaly.Detector("rx", progress=True)


def test_the_model_package_is_there_after_import_hsanomaly():
    """The README names hsanomaly.model.Bundle as what train returns; after a plain
    ``import hsanomaly`` it was an AttributeError."""
    import subprocess
    import sys

    code = "import hsanomaly; print(hsanomaly.model.Bundle.__name__, hsanomaly.model.load_bundle.__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["Bundle", "load_bundle"]


def test_train_shows_its_options_and_hides_the_librarys_own():
    """``help(hsanomaly.train)`` showed ``(inputs, out, **options)``: none of its options."""
    import inspect

    shown = inspect.signature(hsanomaly.train).parameters
    assert {"iterations", "window", "bands", "seed", "mask", "whiten", "resume"} <= set(shown)
    assert not {"quick_model_of", "name", "data_checked"} & set(shown)
    assert shown["iterations"].default == hsanomaly.defaults.ITERATIONS


def test_a_training_option_given_to_a_model_score_says_where_it_belongs():
    """``Detector(iterations=30)`` was refused as an option the score does not take, with
    nothing said of how to train the quick model otherwise."""
    with pytest.raises(HsanomalyError, match="^'iterations': an option of training, not of "
                                             "score 'dualcontext'; train a model with it and "
                                             "pass that as 'model'$"):
        hsanomaly.Detector(iterations=30)
    with pytest.raises(HsanomalyError, match="'iterations': score 'rx' does not take"):
        hsanomaly.Detector("rx", iterations=30)            # a baseline trains nothing


def test_a_quick_model_that_cannot_train_names_the_input_not_its_copy():
    """The message named the Detector's temporary copy of X (/tmp/hsanomaly-model-.../scene.tif)."""
    pytest.importorskip("torch")
    with pytest.raises(HsanomalyError) as refused:
        hsanomaly.Detector("recon").fit(np.full((12, 30, 30), np.nan, np.float32))
    assert "hsanomaly-model" not in str(refused.value) and "scene.tif" not in str(refused.value)
    assert str(refused.value).startswith("<array>"), str(refused.value)


@pytest.mark.parametrize("short_of", ["memory", "disk"])
def test_a_quick_models_copy_of_x_is_checked_before_it_is_made(monkeypatch, tmp_path, short_of):
    """The Detector copies X to float32 in memory and in a temporary GeoTIFF for training: a
    huge raster raised a bare MemoryError, a full temporary disk named the hidden copy."""
    import collections
    import shutil

    import hsanomaly.io.checks

    pytest.importorskip("torch")
    cube, _ = synthetic_cube(rows=60, cols=60)          # 12 x 60 x 60 float32: 169 KiB
    if short_of == "memory":
        monkeypatch.setattr(hsanomaly.io.checks, "available_memory", lambda: 100_000)
        said = r"<array>: copying the 12x60x60 cube for its quick model needs about 168.8 KiB of memory"
    else:
        usage = collections.namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 100_000))
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))     # as TMPDIR sets it
        said = (f"{tmp_path}: the copy of <array> its quick model trains on .TMPDIR sets where. "
                "needs about 168.8 KiB of disk, only 97.7 KiB is free")
    with pytest.raises(HsanomalyError, match=said):
        hsanomaly.Detector("resrx").fit(cube)


def test_a_heatmap_of_one_value_is_said_through_every_door():
    """A constant scene was warned about by detect but not by the Detector; a scene of two
    equally common spectra gave rx one score everywhere, without a word."""
    constant = np.full((8, 30, 30), 0.3, np.float32)
    with pytest.warns(hsanomaly.HsanomalyWarning, match="every band is constant"):
        hsanomaly.Detector("rx").fit_score(constant)
    two = np.zeros((8, 30, 30), np.float32)
    two[:, ::2] = np.linspace(0.1, 0.9, 8)[:, None, None]
    two[:, 1::2] = np.linspace(0.9, 0.1, 8)[:, None, None]
    with pytest.warns(hsanomaly.HsanomalyWarning, match="every pixel has the same rx score"):
        heat = hsanomaly.Detector("rx").fit_score(two)
    assert np.unique(heat).size == 1


def test_a_scene_far_from_zero_is_not_called_constant_and_one_pixel_is_said_as_such():
    """Data on an offset (2000 + a 0.015 spread) varies by a small share of its value: it was
    called constant, "the scores carry no information", though its heatmap ranked the targets
    first. Constant now means within float32's last digits. One valid pixel was called
    constant too."""
    import warnings

    cube, truth = synthetic_cube()
    offset = (2000 + 0.015 * cube).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        heat = hsanomaly.Detector("rx").fit_score(offset)
    assert np.corrcoef(heat.ravel(), hsanomaly.Detector("rx").fit_score(cube).ravel())[0, 1] > 0.99
    with pytest.warns(hsanomaly.HsanomalyWarning, match="one valid pixel: its score ranks it "
                                                        "against nothing"):
        hsanomaly.Detector("rx").fit(cube).score(cube[:, :1, :1])


def test_a_constant_scene_left_unscored_is_still_refused():
    """The constant-scene warning came first and ended the checks: a scene no ring could score
    gave an all-NaN heatmap without the refusal that says so."""
    cube = np.ma.masked_array(np.ones((5, 30, 30), np.float32), np.ones((5, 30, 30), bool))
    cube.mask[:, ::5, ::5] = False                # one valid pixel in 25: no ring holds enough
    with pytest.raises(HsanomalyError, match="left every valid pixel without a value"):
        hsanomaly.Detector("lrx", outer=7, guard=3).fit_score(cube)


def darkest(cube, size=20):
    """The darkest window of ``size`` pixels of ``cube``: water, shadow, dark roofs."""
    means = [(cube[:, r:r + size, c:c + size].mean(), r, c)
             for r in range(0, cube.shape[1] - size + 1, size // 2)
             for c in range(0, cube.shape[2] - size + 1, size // 2)]
    _, r, c = min(means)
    return cube[:, r:r + size, c:c + size]


def test_a_scene_in_other_units_than_the_one_fitted_on_is_warned_about(example_scene):
    """Detector(...).fit(A).score(B) scores B with A's statistics: B, A's reflectance stored
    with a scale of 1e-4, ranked worse than chance with RX and the mixture, without a word
    (a model's training range was checked; a fitted scene's was not)."""
    import warnings

    with rasterio.open(example_scene[0]) as ds:
        cube = ds.read().astype(np.float64)
    for score in ("rx", "gmm"):
        detector = hsanomaly.Detector(score).fit(cube)
        with warnings.catch_warnings():
            warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
            detector.score(cube)                                  # its own units: quiet
            detector.score(cube[:, 50:, :] * 1.5)                  # a brighter part: quiet
            detector.score(darkest(cube))                          # its darkest part: quiet
        with pytest.warns(hsanomaly.HsanomalyWarning, match=r"<array>: its values are about "
                          r"0.1 times those of the scene .* in every band alike"):
            detector.score(cube * 0.1)
        with pytest.warns(hsanomaly.HsanomalyWarning, match=r"<array>: its values vary far "
                          rf"less than those of the scene Detector\(score='{score}'.* was fitted "
                          r"on .* fit it on this one"):
            detector.score(cube * 1e-4)
        with pytest.warns(hsanomaly.HsanomalyWarning, match="its values lie far outside those "
                                                            "of the scene"):
            detector.score(cube * 1e4)
    lake = cube.copy()                       # the probe's centre window: water, not the scene
    lake[:, 10:90, 10:90] *= 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        hsanomaly.Detector("rx").fit(lake).score(lake[:, :10, :])      # land: quiet
    refit = hsanomaly.Detector("rx").fit(cube)
    refit.set_params(score="gmm")                         # unfitted: nothing left to compare
    assert not hasattr(refit, "_fitted_scene")


def test_every_pixel_left_unscored_after_a_purge_names_the_purge_too():
    """Fitted on one scene, a purged score scoring it times 10,000 found every pixel above the
    purge threshold, and blamed nodata or the image's edge."""
    from types import SimpleNamespace

    from hsanomaly.engine.checks import check_scored

    scorer = SimpleNamespace(name="dualcontext", purge=0.05, unscored_cause="rings too small")
    with pytest.raises(HsanomalyError, match="rings too small; or, fitted on another scene, "
                                             "every pixel here lies above the purge threshold"):
        check_scored("x.tif", scorer, 100, 100)
    scorer.purge = 0
    with pytest.raises(HsanomalyError, match="without a value: rings too small$"):
        check_scored("x.tif", scorer, 100, 100)


def two_scenes_and_a_quick_model(tmp_path, monkeypatch, trained_on):
    """(a.tif, b.tif, out.tif, out.model, its model.json): out.tif scored with a quick model
    of scene ``trained_on``."""
    short_quick_models(monkeypatch)
    cube = synthetic_cube(rows=40, cols=50)[0]
    a = write_raster(tmp_path / "a.tif", cube)
    b = write_raster(tmp_path / "b.tif", cube[:, ::-1].copy())
    heat, model = tmp_path / "out.tif", tmp_path / "out.model"
    hsanomaly.detect(a if trained_on == "a" else b, heat, score="resrx")
    return a, b, heat, model, (model / "model.json").read_bytes()


def test_a_quick_model_of_another_input_is_not_replaced_without_overwrite(tmp_path, monkeypatch):
    """detect A out.tif, then out.tif kept elsewhere, then detect B out.tif: out.model, A's
    quick model, was trained again on B without a word (out.tif in place was refused)."""
    import json

    a, b, heat, model, before = two_scenes_and_a_quick_model(tmp_path, monkeypatch, "a")
    heat.rename(tmp_path / "a-result.tif")
    with pytest.raises(HsanomalyError, match=r"out.model: the quick model holds the result of "
                                             r"another input \(a.tif\), which this run of b.tif "
                                             "would replace"):
        hsanomaly.detect(b, heat, score="resrx")
    assert (model / "model.json").read_bytes() == before
    hsanomaly.detect(a, heat, score="resrx")                      # its own input: replaced
    hsanomaly.detect(b, heat, score="resrx", overwrite=True)
    assert json.loads((model / "model.json").read_text())["training"]["quick_model_input"][
        "name"] == "b.tif"


def test_resume_without_a_model_never_adopts_a_model_the_interrupted_run_was_given(
        tmp_path, monkeypatch):
    """A run given out.model (another scene's quick model) was interrupted; resumed without a
    model, it scored on with that model and said it was trained on this scene."""
    a, b, heat, model, before = two_scenes_and_a_quick_model(tmp_path, monkeypatch, "b")

    def interrupt(fraction, message):
        if message.startswith("tile 2/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        hsanomaly.detect(a, heat, score="resrx", model=model, overwrite=True, tile=16,
                         callback=interrupt)
    with pytest.raises(HsanomalyError, match=r"the interrupted run here scored with the model "
                                             r".*out.model \('model'\); resume with it"):
        hsanomaly.detect(a, heat, score="resrx", resume=True, overwrite=True, tile=16)
    assert (model / "model.json").read_bytes() == before


def test_a_folder_where_the_quick_model_goes_is_refused_with_what_to_do(tmp_path):
    """The refusal advised to "name a new or empty directory", a folder nobody named: detect
    names it after the heatmap."""
    path = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=40, cols=50)[0])
    (tmp_path / "out.model").mkdir()
    (tmp_path / "out.model" / "notes.txt").write_text("mine")
    with pytest.raises(HsanomalyError, match=r"out.model: the quick model directory is a "
                       r"directory that is not a model bundle; refusing to replace it \(move it "
                       r"away, or choose another output name\)"):
        hsanomaly.detect(path, tmp_path / "out.tif")
    assert (tmp_path / "out.model" / "notes.txt").read_text() == "mine"


def test_detect_many_retrains_a_damaged_quick_model_without_talk_of_resuming(tmp_path,
                                                                            monkeypatch):
    """A finished raster whose quick model was damaged was scored again, rightly, under a
    warning that there was no interrupted run to resume, which nobody had asked for."""
    import warnings

    short_quick_models(monkeypatch)
    path = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=40, cols=50)[0])
    first = hsanomaly.detect_many([path], tmp_path / "out", score="resrx")
    model = tmp_path / "out" / "scene_resrx.model"
    with open(model / "generator.onnx", "ab") as f:
        f.write(b"\0")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        again = hsanomaly.detect_many([path], tmp_path / "out", score="resrx")
    assert [item.status for item in first + again] == ["scored", "scored"]
    assert not [w for w in said if "resume" in str(w.message)]


def test_a_second_run_on_an_output_in_use_is_refused_before_its_quick_model_trains(
        tmp_path, monkeypatch):
    """It trained its whole quick model (half a minute) before the engine found the output's
    tile store held by the first run."""
    from hsanomaly.engine.store import store_path
    from hsanomaly.io.lock import lock_folder

    def never(*args, **kwargs):
        raise AssertionError("trained a quick model for an output another run holds")
    monkeypatch.setattr(hsanomaly.training, "train", never)
    path = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=40, cols=50)[0])
    store_path(tmp_path / "out.tif").mkdir()
    held = lock_folder(store_path(tmp_path / "out.tif"))            # the first run's lock
    try:
        with pytest.raises(HsanomalyError, match="another hsanomaly run is writing this output"):
            hsanomaly.detect(path, tmp_path / "out.tif", score="resrx")
    finally:
        os.close(held)


def test_detects_job_keywords_given_to_a_detector_say_how_a_detector_does_it():
    """mask=, workers= and the writers' keywords were refused as options the score does not
    take ("it takes no options"), with no word that a masked array is a Detector's mask."""
    for keyword, says in (("mask", "pass a masked array"), ("workers", "Dask goes with detect"),
                          ("scheduler", "Dask goes with detect"),
                          ("polygons", "returns the scores in memory")):
        with pytest.raises(HsanomalyError, match=rf"Detector: no option '{keyword}': .*{says}.* "
                                                 rf"\(detect takes {keyword}= for one raster"):
            hsanomaly.Detector("rx", **{keyword: 1})
    detector = hsanomaly.Detector("lrx")
    with pytest.raises(HsanomalyError, match="Detector: no option 'mask'"):
        detector.set_params(mask="clouds.tif")
    assert detector.get_params()["score"] == "lrx" and "mask" not in detector.get_params()


def test_a_mixture_no_component_of_which_fills_a_covariance_is_refused():
    """With more components than the pixels can fill, the largest alone was kept, and EM had
    often given it to a compact target: the targets scored as the most normal pixels (AUC 0)."""
    cube, _ = synthetic_cube(bands=30, rows=16, cols=16, targets=((5, 5),))
    with pytest.raises(HsanomalyError, match=r"no component of the mixture holds the 26 pixels "
                                             r"a covariance on 25 principal components needs "
                                             r"\(the largest: \d+ of 256\); give fewer "
                                             r"'components'"):
        hsanomaly.Detector("gmm", components=40).fit(cube)
    assert np.isfinite(hsanomaly.Detector("gmm", components=2, pca=5).fit_score(cube)).all()


def test_a_mixture_on_fewer_spectra_than_components_says_so_in_its_own_words():
    """A constant cube let numpy's "invalid value encountered in divide" and scikit-learn's
    ConvergenceWarning ("Number of distinct clusters (1) found smaller than n_clusters")
    through at fit (the edge audit's F8)."""
    import warnings

    cube = np.full((8, 20, 20), 5.0, np.float32)
    cube[:, :10] = np.arange(8, dtype=np.float32)[:, None, None] + 7    # two spectra
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = hsanomaly.Detector("gmm").fit(cube)
    assert [str(w.message) for w in caught] == [
        "<array>: the sampled pixels hold 2 distinct spectra, fewer than the mixture's 5 "
        "components; it is fitted with 2"]
    with pytest.warns(HsanomalyWarning, match="every pixel has the same gmm score"):
        assert len(np.unique(detector.score(cube))) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hsanomaly.Detector("gmm").fit(np.full((8, 20, 20), 5.0, np.float32))
    assert [type(w.message) for w in caught] == [HsanomalyWarning]


def test_degenerate_scenes_are_told_what_they_lack():
    """A sparse scene failed the default score with "found no pixel to fit its purge on",
    no cause given; a 2-pixel-wide scene was told a smaller --outer would fit, though 3 is
    the smallest; an all-NaN heatmap with a threshold gave no target, silently."""
    cube, _ = synthetic_cube(rows=40, cols=40)
    sparse = np.ma.masked_array(cube, np.ones(cube.shape, bool))
    sparse.mask[:, ::14, ::14] = False
    with pytest.raises(HsanomalyError, match=r"found no pixel to fit its purge on: every local "
                                             r"RX ring around the valid pixels holds too few"):
        hsanomaly.Detector("mlrx", purge=0.03, rings="7/3;11/5").fit(sparse)
    with pytest.raises(HsanomalyError, match=r"the 15x15 window of score 'lrx' is larger than the "
                                             r"2x40 image; no ring fits an image under 3 pixels"):
        hsanomaly.Detector("lrx").fit(cube[:, :2])
    with pytest.raises(HsanomalyError, match=r"the 15x15 window .* 10x40 image; a smaller 'outer' "
                                             r"would fit it"):
        hsanomaly.Detector("lrx").fit(cube[:, :10])
    with pytest.raises(HsanomalyError, match="the heatmap array: the heatmap has no score"):
        hsanomaly.find_targets(np.full((10, 10), np.nan, np.float32), threshold=1.0)


def test_no_usable_temporary_folder_for_a_quick_model_is_one_line(monkeypatch):
    """tempfile found no writable folder (a read-only container): FileNotFoundError from
    deep inside fit, where every other failure of a quick model is one line naming TMPDIR."""
    import tempfile

    from hsanomaly.quickmodel import QuickModelFolder

    def none_usable():
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp']")
    monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    with pytest.raises(HsanomalyError, match="no usable temporary folder .*set TMPDIR"):
        QuickModelFolder()
