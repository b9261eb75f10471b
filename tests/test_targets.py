"""Thresholds from false-alarm rates and target polygons (hsanomaly.thresholds, hsanomaly.polygons)."""

import contextlib
import math
import pickle
import warnings

import geopandas as gpd
import numpy as np
import shapely.affinity
import pyogrio
import pytest
import rasterio
from scipy import ndimage

import hsanomaly
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.polygons import write_polygons
from hsanomaly.io.scores import score_chunks
from hsanomaly.thresholds import key_scores, order_keys, threshold_from_far

from synthetic import CRS, TRANSFORM, synthetic_cube, write_raster


def write_heatmap(path, scores, crs=CRS, transform=TRANSFORM):
    """A tiled float32 GeoTIFF like the engine writes (NaN nodata, 16-pixel blocks)."""
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": scores.shape[0],
               "width": scores.shape[1], "nodata": float("nan"), "tiled": True,
               "blockxsize": 16, "blockysize": 16}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scores.astype(np.float32)[None])
    return path


def read_layer(path):
    return gpd.read_file(path, layer="targets", engine="pyogrio")


# --- thresholds ---------------------------------------------------------------------------------

def test_order_keys_sort_like_scores_and_invert():
    values = np.array([-np.inf, -3.5, -1e-30, -0.0, 1e-30, 2.0, 7e30, np.inf, np.nan], np.float32)
    keys = order_keys(values)
    assert len(keys) == 8                                   # NaN dropped, +-inf kept
    assert np.all(np.diff(keys.astype(np.int64)) > 0)
    assert np.array_equal(key_scores(keys), values[:8])


@pytest.mark.parametrize("far", [0.5, 0.1, 1e-3, 1e-5])
def test_threshold_is_the_exact_order_statistic(far):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 417)).astype(np.float32)
    scores[5:9, 5:50] = np.nan
    finite = np.sort(scores[np.isfinite(scores)])
    threshold = threshold_from_far(scores, far, chunk=64)   # 5 x 7 windows, ragged edges
    assert threshold == finite[len(finite) - 1 - math.floor(far * len(finite))]
    assert (finite > threshold).sum() == math.floor(far * len(finite))


def test_threshold_from_a_geotiff_matches_the_array(tmp_path):
    scores = np.random.default_rng(1).gamma(2.0, size=(70, 90)).astype(np.float32)
    scores[:3, :3] = np.nan
    path = write_heatmap(tmp_path / "heat.tif", scores)
    assert threshold_from_far(str(path), 0.01, chunk=32) == threshold_from_far(scores, 0.01)


def test_passes_run_through_a_given_reduce():
    """A distributed runner maps the (picklable) per-window piece itself and sums the parts."""
    scores = np.random.default_rng(2).normal(size=(100, 100)).astype(np.float32)
    blocks = [scores[:, :30], scores[:, 30:]]
    calls = []

    def cluster_reduce(fn):
        fn = pickle.loads(pickle.dumps(fn))
        calls.append(fn)
        return sum(fn(block) for block in blocks)

    assert threshold_from_far(scores, 0.02, reduce=cluster_reduce) == threshold_from_far(scores, 0.02)
    assert threshold_from_far(scores, "auto", reduce=cluster_reduce) == threshold_from_far(scores, "auto")
    assert len(calls) == 4                                   # two passes each


@pytest.mark.parametrize("background", ["normal", "chi2", "student", "log_chi2"])
def test_auto_gives_about_one_false_alarm_pixel_on_pure_background(background):
    """log_chi2: the log distances the default scores average, whose tail the fit reads less
    well (docs/ablations.md: about ten false-alarm pixels on average, more in some rasters)."""
    rng = np.random.default_rng(3)
    draw = {"normal": lambda n: rng.normal(size=n), "chi2": lambda n: rng.chisquare(20, n),
            "student": lambda n: rng.standard_t(5, n),
            "log_chi2": lambda n: np.log(rng.chisquare(10, n))}[background]
    false_alarms = [(s > threshold_from_far(s, "auto")).sum()
                    for s in (draw(250_000).astype(np.float32).reshape(500, 500) for _ in range(4))]
    assert np.mean(false_alarms) <= (25 if background == "log_chi2" else 10)


def test_auto_says_when_scores_pass_the_end_of_a_bounded_tail_fit():
    """A tail that fits bounded (uniform scores) with 130 pixels past its end, between the
    top t/8 and t/4: targets or a misread background (abu-beach-2's mixture heatmap had 147
    background pixels there), which no rule without labels tells apart. The threshold keeps
    them above it (targets under t/4 do not move it) and a warning says what it assumed."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 10_000)
    scores[:130] = rng.uniform(1.2, 1.4, 130)
    scores = scores.reshape(100, 100).astype(np.float32)
    with pytest.warns(HsanomalyWarning, match=r"<array>: the tail fit behind the automatic "
                                              r"threshold .* ends at .*, and the top 1.25% of "
                                              r"the scores lie beyond that end: the pixels above "
                                              "the threshold are taken for targets"):
        threshold = threshold_from_far(scores, "auto")
    assert (scores > threshold).sum() == 130
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # a bounded tail not passed
        threshold_from_far(rng.uniform(0, 1, (100, 100)).astype(np.float32), "auto")


@pytest.mark.parametrize("stored", ["array", "uint8 GeoTIFF"])
def test_auto_says_when_the_scores_are_rounded_to_steps(tmp_path, stored):
    """A background heatmap rounded to steps (an 8-bit export: 40 values) read as a bounded
    tail: the automatic threshold left 227 pixels above it, 221 false targets, unsaid."""
    raw = np.random.default_rng(1).exponential(1, (200, 200))
    rounded = np.round(raw * 4).astype(np.uint8)
    heat = rounded.astype(np.float32)
    if stored != "array":
        heat = tmp_path / "heat8.tif"
        with rasterio.open(heat, "w", driver="GTiff", width=200, height=200, count=1,
                           dtype="uint8") as ds:
            ds.write(rounded, 1)
    with pytest.warns(HsanomalyWarning, match=r"the top 5% of the scores hold few distinct "
                                              r"values \(\d+ at 33 ranks probed\): a heatmap "
                                              r"rounded to steps"):
        threshold_from_far(heat, "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # continuous scores: nothing said
        threshold_from_far(raw.astype(np.float32), "auto")


def test_auto_finds_planted_targets_with_few_false_alarms():
    rng = np.random.default_rng(4)
    scores = rng.chisquare(20, (200, 200)).astype(np.float32)      # RX-like background
    truth = np.zeros(scores.shape, bool)
    for r, c, level in ((20, 30, 90.0), (100, 150, 70.0), (170, 60, 60.0)):
        truth[r:r + 3, c:c + 3] = True
        scores[r:r + 3, c:c + 3] = level + rng.normal(0, 1, (3, 3))
    threshold = threshold_from_far(scores, "auto", chunk=64)
    assert (scores[truth] > threshold).all()
    assert (scores[~truth] > threshold).sum() <= 5
    # up to about t/10 of the pixels (t: 5 % here), as its docstring says: 123 target pixels
    more = np.zeros(scores.shape, bool)
    for r, c in [(40 + 12 * k, 10 + 12 * j) for k in range(4) for j in range(2)]:
        more[r:r + 3, c:c + 4] = True             # 8 more 3 x 4 targets
        scores[r:r + 3, c:c + 4] = 80.0 + rng.normal(0, 1, (3, 4))
    threshold = threshold_from_far(scores, "auto", chunk=64)
    assert (truth | more).sum() == 123 and (scores[more] > threshold).all()


def test_auto_above_every_score_says_so_instead_of_only_finding_nothing(tmp_path):
    """A heavy-looking tail that stops short (as the default score's does on a 100 x 100
    scene): the fit extrapolates past the highest score. No polygon is written, and the
    warning names the heatmap, both numbers and what to pass instead; a rate finds targets."""
    u = np.random.default_rng(5).uniform(size=(100, 100))
    path = write_heatmap(tmp_path / "heat.tif", np.minimum(1 / u, 200.0))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert write_polygons(path, tmp_path / "auto.gpkg", far="auto") == 0
    threshold = threshold_from_far(str(path), "auto")
    assert threshold > 200
    [message] = [str(w.message) for w in said if issubclass(w.category, HsanomalyWarning)]
    assert str(path) in message and f"{threshold:.6g}" in message and "highest is 200" in message
    assert "'far'" in message
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert write_polygons(path, tmp_path / "rate.gpkg", far=1e-2) >= 1
    assert not [w for w in said if issubclass(w.category, HsanomalyWarning)]


@pytest.mark.parametrize("far", [0, 1, -0.1, "often"])
def test_bad_far_is_refused(far):
    with pytest.raises(HsanomalyError, match="far"):
        threshold_from_far(np.ones((4, 4)), far)


def test_all_nan_heatmap_is_refused():
    for dtype in (np.float32, np.float64):
        with pytest.raises(HsanomalyError, match="the heatmap has no score"):
            threshold_from_far(np.full((4, 4), np.nan, dtype), 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_scores_count_among_those_above(dtype):
    """+inf (a float64 score overflowing float32) was dropped from n, so more than floor(far n)
    scores lay above the threshold; -inf is a score below every other."""
    scores = np.random.default_rng(0).normal(size=(40, 50)).astype(dtype)
    scores[10, 10] = scores[20, 30] = scores[30, 40] = np.inf
    scores[0, 0] = -np.inf
    for far in (0.001, 0.002, 0.01):
        threshold = threshold_from_far(scores, far)
        assert (scores > threshold).sum() <= math.floor(far * scores.size)
        assert threshold == np.sort(scores.ravel())[scores.size - 1 - math.floor(far * scores.size)]
    with pytest.raises(HsanomalyError, match="infinite scores reach into the top 10%"):
        threshold_from_far(np.full((40, 50), np.inf, dtype), "auto")


def test_a_float64_array_is_selected_in_its_own_precision():
    scores = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8.00000001, 8.00000002]])
    assert threshold_from_far(scores, 0.1) == 8.00000001         # float32 made it 8.0: 2 above
    assert threshold_from_far(scores[None], 0.1) == 8.00000001   # one band of (1, rows, cols)
    for dtype in (np.float32, np.float64):                       # and still a heatmap's shape
        with pytest.raises(HsanomalyError, match="a heatmap is 2-D, got shape"):
            threshold_from_far(np.zeros((2, 3, 4), dtype), 0.1)


def test_polygons_take_the_pixels_strictly_above_the_threshold_as_given(tmp_path):
    """The float32 scores were compared with the threshold rounded to float32: a pixel stored
    as 0.30000001 was not above --threshold 0.3."""
    scores = np.zeros((20, 20), np.float32)
    scores[5, 5], scores[15, 15] = np.float32(0.1), np.float32(0.3)
    heat = write_raster(tmp_path / "heat.tif", scores[None])
    for threshold, found in ((0.1, 2), (0.3, 1), (0.1000000010, 2), (0.30000002, 0)):
        assert write_polygons(heat, tmp_path / "t.gpkg", threshold=threshold) == found, threshold


def test_a_targets_geopackage_holding_a_qgis_project_is_no_longer_only_ours(tmp_path):
    """QGIS saves a project into a GeoPackage as a table it does not list among the layers:
    the check of other layers missed it, and the QGIS provider's polygons removed the project."""
    import sqlite3

    from hsanomaly.polygons import check_no_other_layers, is_targets_file

    scores = np.zeros((20, 20), np.float32)
    scores[5, 5] = 1
    gpkg = tmp_path / "t.gpkg"
    write_polygons(write_raster(tmp_path / "heat.tif", scores[None]), gpkg, threshold=0.5)
    assert is_targets_file(gpkg)
    check_no_other_layers(gpkg)
    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("CREATE TABLE qgis_projects (name TEXT PRIMARY KEY, metadata BLOB, content BLOB)")
    assert not is_targets_file(gpkg)
    with pytest.raises(HsanomalyError, match=r"holding other tables \(qgis_projects\)"):
        check_no_other_layers(gpkg)
    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("DROP TABLE qgis_projects")
    roads = gpd.GeoDataFrame({"name": ["a"]}, geometry=gpd.points_from_xy([0], [0]), crs=CRS)
    roads.to_file(gpkg, layer="rtree_roads", engine="pyogrio")   # a layer, named as an index
    assert not is_targets_file(gpkg)
    with pytest.raises(HsanomalyError, match=r"holding other tables \(rtree_roads\)"):
        check_no_other_layers(gpkg)


def test_a_targets_geopackage_written_by_0_1_is_still_ours(tmp_path):
    """0.1.0 wrote no score and threshold columns: its GeoPackages are still files of ours
    (replaced without --overwrite); one lacking a column 0.1.0 wrote is not."""
    import sqlite3

    from hsanomaly.polygons import LAYER, is_targets_file

    scores = np.zeros((20, 20), np.float32)
    scores[5, 5] = 1
    heat = write_raster(tmp_path / "heat.tif", scores[None])
    for dropped, ours in ((("score", "threshold"), True), (("score", "threshold", "area"), False)):
        gpkg = tmp_path / f"{len(dropped)}.gpkg"
        write_polygons(heat, gpkg, threshold=0.5)
        with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
            for column in dropped:
                db.execute(f"ALTER TABLE {LAYER} DROP COLUMN {column}")
        assert is_targets_file(gpkg) == ours


# --- polygons -----------------------------------------------------------------------------------

def planted_heatmap():
    """60 x 50 background of 0 with two targets; with 16-pixel windows, target A (an L
    shape) straddles the corner of four windows and its arm only touches the corner
    window diagonally; target B sits inside one window."""
    scores = np.zeros((60, 50), np.float32)
    scores[14:18, 13:19] = 5.0              # A: rows 14-17, cols 13-18, across row 16 and col 16
    scores[18, 19] = 9.0                    # A: diagonal neighbour of (17, 18), across no border
    scores[15, 15] = 8.0
    scores[40:43, 35:37] = 3.0              # B: 6 pixels inside window (32-47, 32-47)
    scores[0:2, 45:50] = np.nan             # nodata is never a target
    return scores


def test_polygons_merge_targets_across_window_borders(tmp_path):
    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap())
    n = write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    layer = read_layer(tmp_path / "targets.gpkg")
    assert n == 2 and len(layer) == 2
    assert layer.crs == CRS
    a, b = layer.iloc[0], layer.iloc[1]                       # strongest target first
    assert list(layer["id"]) == [1, 2]
    assert (a.pixels, a.max_score) == (25, 9.0)
    assert a.mean_score == pytest.approx((23 * 5.0 + 9.0 + 8.0) / 25)
    assert (b.pixels, b.max_score, b.mean_score) == (6, 3.0, 3.0)
    assert a.area == pytest.approx(25 * 4.0) and b.area == pytest.approx(6 * 4.0)   # 2 m pixels
    assert a.geometry.area == pytest.approx(a.area) and b.geometry.area == pytest.approx(b.area)
    assert len(b.geometry.geoms) == 1
    # B's pixel centres: rows 40.5-42.5 -> mean 41.5, cols 35.5-36.5 -> mean 36
    x, y = TRANSFORM.c + 2.0 * 36.0, TRANSFORM.f - 2.0 * 41.5
    assert (b.centroid_x, b.centroid_y) == pytest.approx((x, y))
    assert b.geometry.centroid.x == pytest.approx(b.centroid_x)


def test_polygons_match_whole_raster_labelling_for_any_window(tmp_path):
    """Random blobs cut by 7-pixel windows: same regions as labelling the whole raster."""
    rng = np.random.default_rng(5)
    scores = ndimage.gaussian_filter(rng.normal(size=(80, 90)), 1.5).astype(np.float32)
    path = write_heatmap(tmp_path / "heat.tif", scores)
    threshold = float(np.quantile(scores, 0.9))
    labels, count = ndimage.label(scores > threshold, structure=np.ones((3, 3)))
    sizes = np.sort(np.bincount(labels.ravel())[1:])
    for window in (7, 16, 1024):
        out = tmp_path / f"targets{window}.gpkg"
        assert write_polygons(path, out, threshold=threshold, chunk=window) == count
        layer = read_layer(out)
        assert np.array_equal(np.sort(layer["pixels"]), sizes)
        assert np.allclose(layer.geometry.area, layer["area"])


def test_diagonal_neighbours_across_window_corners_and_borders_are_one_target(tmp_path):
    scores = np.zeros((12, 12), np.float32)
    for pixel in ((3, 3), (4, 4), (3, 8), (4, 7), (9, 3), (10, 4)):   # 4-pixel windows
        scores[pixel] = 1.0
    path = write_heatmap(tmp_path / "heat.tif", scores)
    assert write_polygons(path, tmp_path / "targets.gpkg", threshold=0.5, chunk=4) == 3
    assert list(read_layer(tmp_path / "targets.gpkg")["pixels"]) == [2, 2, 2]


@pytest.mark.parametrize("chunk", [16, 1024])
def test_pixels_touching_at_corners_make_a_valid_multipolygon(tmp_path, chunk):
    """A diagonal streak is one 8-connected target; traced whole, its ring touched itself
    ("Ring Self-intersection"), and QGIS's tools stop on such a feature."""
    scores = np.zeros((40, 40), np.float32)
    for i in range(6):
        scores[3 + i, 10 + i] = 5.0                      # inside one 16-pixel window
        scores[20 + i, 30 - i] = 5.0                     # an anti-diagonal across row 24
    scores[30:32, 3:5], scores[32, 5] = 5.0, 5.0         # a block and a corner neighbour
    path = write_heatmap(tmp_path / "heat.tif", scores)
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=chunk)
    layer = read_layer(tmp_path / "targets.gpkg")
    assert sorted(layer["pixels"]) == [5, 6, 6]
    assert layer.geometry.is_valid.all()
    assert (layer.geometry.geom_type == "MultiPolygon").all()
    np.testing.assert_allclose(layer.geometry.area, layer["pixels"] * 4.0)    # 2 m pixels


def test_a_rate_that_ties_leave_without_a_target_says_so(tmp_path):
    """10 pixels share the top score and the rate allows 4 above the threshold: the
    threshold is that score, nothing lies above it, and the empty layer was all one saw."""
    scores = np.zeros((20, 20), np.float32)
    scores[5, 5:15] = 7.0
    path = write_heatmap(tmp_path / "heat.tif", scores)
    with pytest.warns(HsanomalyWarning) as said:
        assert write_polygons(path, tmp_path / "t.gpkg", far=0.01, name="heat.tif") == 0
    assert "heat.tif: no target found at false-alarm rate 0.01: the rate allows 4 of 400 " \
           "pixels above it, and more share the highest score" in str(said[0].message)
    with pytest.warns(HsanomalyWarning, match=r"the rate allows no pixel of these 400 \(it "
                      r"needs at least 1/400\)"):
        assert write_polygons(path, tmp_path / "t.gpkg", far=0.001, name="heat.tif") == 0


def test_no_target_writes_a_valid_empty_layer(tmp_path):
    """... and says why, as a rate that finds nothing does (a threshold above every score
    wrote the empty layer without a word)."""
    path = write_heatmap(tmp_path / "heat.tif", np.zeros((20, 20), np.float32))
    with pytest.warns(HsanomalyWarning, match="the threshold 1 lies at or above every score "
                                              r"\(the highest is 0\)"):
        assert write_polygons(path, tmp_path / "empty.gpkg", threshold=1.0) == 0
    layer = read_layer(tmp_path / "empty.gpkg")
    assert len(layer) == 0
    assert {"id", "pixels", "area", "max_score", "mean_score", "centroid_x",
            "centroid_y"} <= set(layer.columns)
    assert pyogrio.read_info(tmp_path / "empty.gpkg", layer="targets")["geometry_type"] == "MultiPolygon"


def test_without_georeferencing_area_is_null_and_coordinates_are_pixels(tmp_path):
    """Pixel coordinates where QGIS shows such a raster, x the column and y minus the row:
    at y the row (GDAL's own default grid) QGIS drew the polygons mirrored off the raster."""
    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap(), crs=None)
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    layer = read_layer(tmp_path / "targets.gpkg")
    assert layer.crs is None
    assert layer["area"].isna().all()
    assert (layer.iloc[1].centroid_x, layer.iloc[1].centroid_y) == pytest.approx((36.0, -41.5))
    assert layer.iloc[1].geometry.bounds == (35.0, -43.0, 37.0, -40.0)  # rows 40-42, cols 35-36
    info = pyogrio.read_info(tmp_path / "targets.gpkg", layer="targets")
    assert "not georeferenced: coordinates are pixel coordinates, x the column and y minus " \
           "the row (where QGIS shows the raster)" in info["layer_metadata"]["DESCRIPTION"]


def test_a_cut_of_a_heatmap_without_georeferencing_keeps_its_pixel_coordinates():
    """A cut of such a DataArray (placed by an identity transform attribute, or as rioxarray
    reads such a raster) is placed by pixel-centre coordinates, a translation of the
    identity: it was taken for a map grid, its targets mirrored (y the row) and given areas."""
    xr = pytest.importorskip("xarray")
    cube, _ = synthetic_cube(rows=40, cols=50, targets=((30, 10),), seed=3)
    pixels = {"x": np.arange(50) + 0.5, "y": np.arange(40) + 0.5}
    for da in (xr.DataArray(cube, dims=("band", "y", "x"), attrs={"transform": (1, 0, 0, 0, 1, 0)}),
               xr.DataArray(cube, dims=("band", "y", "x"), coords={**pixels, "spatial_ref": (
                   (), 0, {"GeoTransform": "0.0 1.0 0.0 0.0 0.0 1.0"})})):
        heat = hsanomaly.Detector("rx").fit_score(da)
        threshold = float(np.nanmax(heat)) / 2
        for part in (heat, heat[20:, 5:]):
            found = hsanomaly.find_targets(part, threshold=threshold)
            assert found[["centroid_x", "centroid_y"]].values.tolist() == [[11.0, -31.0]]
            assert found["area"].isna().all() and found.crs is None
            truth = np.zeros(part.shape, np.uint8)
            truth[np.asarray(part) > threshold] = 1
            report = hsanomaly.evaluate(part, truth)          # rows and columns, no map
            assert report["targets"][0].get("centroid_y") is None


def test_a_file_with_a_geotransform_in_pixel_units_is_placed_by_it(tmp_path):
    """QGIS draws a file with a geotransform where it says, even one in pixel units without
    a CRS (rioxarray writes a cut so); only a file without one is in pixel coordinates."""
    from affine import Affine

    scores = np.zeros((30, 40), np.float32)
    scores[5, 7] = 10
    path = tmp_path / "offset.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=1, height=30, width=40,
                       transform=Affine(1, 0, 100, 0, 1, 20)) as ds:
        ds.write(scores[None])
    found = hsanomaly.find_targets(path, threshold=5)
    assert found[["centroid_x", "centroid_y"]].values.tolist() == [[107.5, 25.5]]
    assert found["area"].tolist() == [1.0]


def test_a_crs_without_geotransform_gives_pixel_coordinates_in_no_crs(tmp_path):
    """The polygons were pixel coordinates in a layer that claimed the raster's CRS, so a GIS
    drew them next to the CRS's origin, mirrored; now the layer names no CRS and says so."""
    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap(), crs=None)
    with rasterio.open(path, "r+") as ds:
        ds.crs = CRS
    with pytest.warns(HsanomalyWarning, match="names a CRS but has no geotransform"):
        write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    layer = read_layer(tmp_path / "targets.gpkg")
    assert layer.crs is None and layer["area"].isna().all()
    assert (layer.iloc[1].centroid_x, layer.iloc[1].centroid_y) == pytest.approx((36.0, -41.5))
    description = pyogrio.read_info(tmp_path / "targets.gpkg", layer="targets")[
        "layer_metadata"]["DESCRIPTION"]
    assert "coordinates are pixel coordinates" in description


def test_a_geotransform_without_crs_gives_map_coordinates_and_areas(tmp_path):
    """Not "pixel coordinates": the polygons follow the geotransform, which gives areas too."""
    path = tmp_path / "heat.tif"
    scores = planted_heatmap()
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=1, height=scores.shape[0],
                       width=scores.shape[1], nodata=float("nan"), transform=TRANSFORM) as dst:
        dst.write(scores.astype(np.float32)[None])
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    layer = read_layer(tmp_path / "targets.gpkg")
    assert layer.crs is None
    np.testing.assert_allclose(layer["area"], layer["pixels"] * 4.0)     # 2 m pixels
    x, y = TRANSFORM * (36.0, 41.5)
    assert (layer.iloc[1].centroid_x, layer.iloc[1].centroid_y) == pytest.approx((x, y))
    description = pyogrio.read_info(tmp_path / "targets.gpkg", layer="targets")[
        "layer_metadata"]["DESCRIPTION"]
    assert "no CRS: map coordinates" in description and "pixel coordinates" not in description


def test_polygons_of_a_raster_placed_by_rpcs_say_they_are_in_pixel_coordinates(tmp_path):
    from rasterio.rpc import RPC

    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap(), crs=None)
    with rasterio.open(path, "r+") as ds:
        ds.rpcs = RPC(height_off=0, height_scale=1, lat_off=45, lat_scale=1, line_den_coeff=[1] + [0] * 19,
                      line_num_coeff=[0, 1] + [0] * 18, line_off=0, line_scale=1, long_off=10,
                      long_scale=1, samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 0, 1] + [0] * 17,
                      samp_off=0, samp_scale=1)
    with pytest.warns(HsanomalyWarning, match=r"rational polynomial coefficients \(RPCs\).*"
                      "pixel coordinates"):
        write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)


def test_detect_writes_polygons_of_the_planted_targets(synthetic_raster, tmp_path):
    """RX on 2,000 pixels with far="auto": both 2x2 targets come first, whole, and the few
    false alarms (about one pixel expected) are single pixels."""
    src, truth, _ = synthetic_raster
    gpkg = tmp_path / "targets.gpkg"
    result = hsanomaly.detect(src, tmp_path / "heat.tif", score="rx", polygons=gpkg, far="auto",
                              tile=16, progress=False)
    layer = read_layer(gpkg)
    assert result.polygons == len(layer)
    strongest, false_alarms = layer.iloc[:2], layer.iloc[2:]
    assert list(strongest["pixels"]) == [4, 4]
    rows = (TRANSFORM.f - strongest["centroid_y"]) / 2.0
    cols = (strongest["centroid_x"] - TRANSFORM.c) / 2.0
    labels, _ = ndimage.label(truth)
    assert sorted(labels[int(r), int(c)] for r, c in zip(rows, cols)) == [1, 2]
    assert false_alarms["pixels"].sum() <= 5


@pytest.mark.parametrize("kwargs, message", [
    ({}, "need 'threshold' or 'far'"),
    ({"threshold": 1.0, "far": 0.1}, "not both"),
    ({"threshold": float("nan")}, "finite"),
    ({"far": 2.0}, r"rate in \(0, 1\)"),
])
def test_bad_options_are_refused_with_one_line(tmp_path, kwargs, message):
    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap())
    with pytest.raises(HsanomalyError, match=message) as err:
        write_polygons(path, tmp_path / "out.gpkg", **kwargs)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [path]


def test_bad_inputs_are_refused(tmp_path):
    (tmp_path / "notes.tif").write_text("not a raster")
    with pytest.raises(HsanomalyError, match="file not found"):
        write_polygons(tmp_path / "missing.tif", tmp_path / "out.gpkg", threshold=1.0)
    with pytest.raises(HsanomalyError, match="not a raster"):
        write_polygons(tmp_path / "notes.tif", tmp_path / "out.gpkg", threshold=1.0)
    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap())
    with pytest.raises(HsanomalyError, match="does not exist"):
        write_polygons(path, tmp_path / "nowhere" / "out.gpkg", threshold=1.0)
    with pytest.raises(HsanomalyError, match="2-D"):
        list(score_chunks(np.zeros((2, 3, 3))))
    assert not (tmp_path / "out.gpkg").exists()


def test_layer_carries_score_threshold_and_a_default_qgis_style(tmp_path):
    import sqlite3

    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap())
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(HSANOMALY_SCORE="context")
    gpkg = tmp_path / "targets.gpkg"
    assert write_polygons(path, gpkg, threshold=1.0, chunk=16) > 0
    layer = read_layer(gpkg)
    assert set(layer["score"]) == {"context"} and set(layer["threshold"]) == {1.0}
    with sqlite3.connect(gpkg) as db:
        (name, column, qml, default), = db.execute(
            "SELECT f_table_name, f_geometry_column, styleQML, useAsDefault "
            "FROM layer_styles").fetchall()
        (geometry_column,), = db.execute("SELECT column_name FROM gpkg_geometry_columns "
                                         "WHERE table_name = 'targets'").fetchall()
    assert name == "targets" and default and 'class="SimpleLine"' in qml
    assert column == geometry_column        # QGIS applies a style only to its own column


def test_a_geopackage_open_with_changes_in_its_write_ahead_log_is_not_replaced(synthetic_raster,
                                                                               tmp_path):
    """Renamed over while another program (QGIS opens GeoPackages in WAL mode) held changes in
    its -wal, the new file got the old database's pages laid over it."""
    import sqlite3

    path, _, _ = synthetic_raster
    gpkg = tmp_path / "t.gpkg"
    hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    holder = sqlite3.connect(gpkg)
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("PRAGMA wal_autocheckpoint=0")
        holder.execute("CREATE TABLE notes (text TEXT)")
        holder.execute("INSERT INTO notes VALUES ('an edit in QGIS')")
        holder.commit()
        holder.execute("DROP TABLE notes")      # edited back: the file is ours, its log is not empty
        holder.commit()
        before = gpkg.read_bytes()
        with pytest.raises(HsanomalyError, match=r"t.gpkg: 'polygons' is open in another program "
                                                 r"with changes not yet written into it"):
            hsanomaly.detect(path, tmp_path / "h.tif", score="lrx", polygons=gpkg, far=1e-2)
        assert gpkg.read_bytes() == before
    finally:
        holder.close()                 # the changes go into the file, the log goes
    hsanomaly.detect(path, tmp_path / "h.tif", score="lrx", polygons=gpkg, far=1e-2)
    # held open in WAL mode with nothing in the log yet (QGIS editing a layer of it): the file
    # was replaced, and the holder's next write went into the log of the new file, which then
    # read "database disk image is malformed" for good
    holder = sqlite3.connect(gpkg)
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("SELECT count(*) FROM targets").fetchall()
        before = gpkg.read_bytes()
        with pytest.raises(HsanomalyError, match=r"t.gpkg: 'polygons' is open in another program "
                                                 r"in WAL mode \(t.gpkg-"):
            hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
        holder.execute("CREATE TABLE notes (text TEXT)")      # its next writes
        holder.execute("DROP TABLE notes")
        holder.commit()
        assert gpkg.read_bytes() == before
    finally:
        holder.close()
    with contextlib.closing(sqlite3.connect(gpkg)) as reader:
        assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    hsanomaly.detect(path, tmp_path / "h.tif", score="lrx", polygons=gpkg, far=1e-2)
    # a program that opens it while the run scores: refused at the commit, nothing replaced
    import hsanomaly.polygons as polygons

    real = polygons._gpkg_check

    def opened_meanwhile(count):
        def check(tmp):
            (tmp_path / "t.gpkg-wal").write_bytes(b"pages of an edit")
            return real(count)(tmp)
        return check

    before = gpkg.read_bytes()
    polygons._gpkg_check = opened_meanwhile
    try:
        with pytest.raises(HsanomalyError, match="changes not yet written into it .* run again "
                                                 r"with resume=True \(the scored tiles are kept\)"):
            hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    finally:
        polygons._gpkg_check = real
    assert gpkg.read_bytes() == before


@pytest.mark.parametrize("epsg, pixel, metres", [(32633, 2.0, 2.0), (2263, 2.0, 2.0 * 0.3048006096),
                                                 (4326, 1e-4, None), (4807, 1e-4, None)])
def test_target_areas_are_in_square_metres(tmp_path, epsg, pixel, metres):
    """The area column was in the CRS's units squared with no word of which: square degrees
    (8e-08 for a target of 700 square metres) or square US feet; and in a geographic CRS
    that counts grads, grads were taken for degrees."""
    from affine import Affine
    from pyproj import Geod

    scores = planted_heatmap()
    geographic = metres is None
    transform = Affine(pixel, 0, 10.0 if geographic else 5e5, 0, -pixel,
                       60.0 if geographic else 6.7e6)
    path = tmp_path / "heat.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=1, crs=f"EPSG:{epsg}",
                       height=scores.shape[0], width=scores.shape[1], transform=transform) as dst:
        dst.write(scores.astype(np.float32)[None])
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    layer = read_layer(tmp_path / "targets.gpkg")
    if metres is not None:
        np.testing.assert_allclose(layer["area"], layer["pixels"] * metres ** 2)
    else:           # on the ellipsoid: a pixel of 1e-4 degrees at 60 N is about 11 x 5.6 m
        # EPSG:4807 counts grads (0.9 degree): its areas were taken in degrees, 10 % or more off
        degrees = 0.9 if epsg == 4807 else 1.0
        geod = Geod(ellps="clrk80ign" if epsg == 4807 else "WGS84")
        expected = [abs(geod.geometry_area_perimeter(shapely.affinity.scale(
            g, degrees, degrees, origin=(0, 0)))[0]) for g in layer.geometry]
        np.testing.assert_allclose(layer["area"], expected)
        assert 50 < layer["area"].iloc[0] / layer["pixels"].iloc[0] < 70
    description = pyogrio.read_info(tmp_path / "targets.gpkg", layer="targets")[
        "layer_metadata"]["DESCRIPTION"]
    assert description.endswith("; area in square metres")


def test_targets_are_written_as_geopackage_1_2(tmp_path):
    """GDAL 3.8+ writes GeoPackage 1.4 by default, which the GDAL of QGIS 3.22 (the plugin's
    long-term release) warns about three times on each load."""
    import sqlite3

    path = write_heatmap(tmp_path / "heat.tif", planted_heatmap())
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0)
    with contextlib.closing(sqlite3.connect(tmp_path / "targets.gpkg")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200


# --- the targets in memory: hsanomaly.find_targets -------------------------------------------

def test_find_targets_gives_the_geopackages_rows_from_a_file_or_an_array(tmp_path):
    """What `detect --polygons` writes, without a file: for a heatmap file, or for the scores
    in memory placed by a transform and CRS, given or carried by a DataArray."""
    xr = pytest.importorskip("xarray")
    from affine import Affine

    scores = planted_heatmap()
    path = write_heatmap(tmp_path / "heat.tif", scores)
    write_polygons(path, tmp_path / "targets.gpkg", threshold=1.0, chunk=16)
    written = read_layer(tmp_path / "targets.gpkg")
    gdal_order = " ".join(str(v) for v in Affine.to_gdal(TRANSFORM))
    for found in (hsanomaly.find_targets(path, threshold=1.0),
                  hsanomaly.find_targets(scores, threshold=1.0, transform=TRANSFORM, crs=CRS),
                  hsanomaly.find_targets(scores, threshold=1.0, transform=tuple(TRANSFORM)[:6],
                                         crs=CRS),
                  hsanomaly.find_targets(xr.DataArray(scores, dims=("y", "x"), attrs={
                      "transform": tuple(TRANSFORM)[:6], "crs": CRS}), threshold=1.0),
                  hsanomaly.find_targets(xr.DataArray(scores, dims=("y", "x"), coords={
                      "spatial_ref": ((), 0, {"GeoTransform": gdal_order,
                                              "crs_wkt": rasterio.crs.CRS.from_user_input(
                                                  CRS).to_wkt()})}), threshold=1.0)):
        assert found.crs == written.crs == CRS
        for column in ("id", "pixels", "area", "max_score", "mean_score", "centroid_x",
                       "centroid_y", "threshold"):
            np.testing.assert_allclose(found[column], written[column], err_msg=column)
        assert found.geometry.geom_equals(written.geometry).all()
    # a cut of a DataArray (an area of interest) lies where its x/y coordinates say, not at
    # the origin its attributes keep from the whole array
    whole = xr.DataArray(scores, dims=("y", "x"), attrs={"transform": tuple(TRANSFORM)[:6],
                                                         "crs": CRS},
                         coords={"x": TRANSFORM.c + TRANSFORM.a * (np.arange(50) + 0.5),
                                 "y": TRANSFORM.f + TRANSFORM.e * (np.arange(60) + 0.5)})
    cut = hsanomaly.find_targets(whole.isel(y=slice(30, 60), x=slice(20, 50)), threshold=1.0)
    assert cut.geometry.geom_equals(written.geometry.iloc[[1]].reset_index(drop=True)).all()
    plain = hsanomaly.find_targets(np.ma.masked_invalid(scores), threshold=1.0)   # no map
    assert plain.crs is None and plain["area"].isna().all()
    b = plain.iloc[1]                          # rows 40-42, cols 35-36: in pixel coordinates
    assert (b["centroid_x"], b["centroid_y"], b["pixels"]) == (36.0, -41.5, 6)
    rate = hsanomaly.find_targets(scores, far=0.01)               # 29 pixels allowed above
    assert rate["threshold"].iloc[0] == threshold_from_far(scores, 0.01)


def test_find_targets_refuses_what_it_cannot_do_in_one_line(tmp_path):
    scores = planted_heatmap()
    path = write_heatmap(tmp_path / "heat.tif", scores)
    cases = [({}, "the heatmap array: targets need 'threshold' or 'far'"),
             ({"threshold": 1, "far": 0.1}, "give 'threshold' or 'far', not both"),
             ({"far": 2}, "^'far' must be a false-alarm rate"),
             ({"far": "0,01"}, "got '0,01'; write its decimals after a point \\(0.01\\)$"),
             ({"threshold": float("nan")}, "^'threshold' must be a finite number"),
             ({"far": 0.1, "transform": "x"}, "'transform': expected an Affine or its six "
                                              "numbers, got 'x'"),
             ({"far": 0.1, "transform": TRANSFORM, "crs": "no such CRS"}, "'crs': not a CRS"),
             ({"far": 0.1, "crs": CRS}, "'crs': a CRS places a heatmap array only with its "
                                        "'transform'; give both")]
    for options, message in cases:
        with pytest.raises(HsanomalyError, match=message):
            hsanomaly.find_targets(scores, **options)
    with pytest.raises(HsanomalyError, match="a file is placed by its own georeferencing"):
        hsanomaly.find_targets(path, far=0.1, crs="EPSG:4326")
    with pytest.raises(HsanomalyError, match="the heatmap array: expected a \\(rows, cols\\)"):
        hsanomaly.find_targets(np.zeros((2, 3, 4)), far=0.1)


def test_find_targets_compares_an_array_in_its_own_precision():
    """float64 scores are not rounded to float32 first: one just below the threshold stays
    below it, and one beyond float32's range stays finite."""
    scores = np.zeros((20, 20))
    scores[2, 2] = 0.3 - 1e-12                    # 0.3 in float32 lies above 0.3
    scores[10, 10] = 1e300
    found = hsanomaly.find_targets(scores, threshold=0.3)
    assert len(found) == 1 and found["max_score"].iloc[0] == 1e300
    assert (found["centroid_x"].iloc[0], found["centroid_y"].iloc[0]) == (10.5, -10.5)


def test_find_targets_says_a_crs_attribute_without_a_transform_places_nothing():
    xr = pytest.importorskip("xarray")
    heat = xr.DataArray(planted_heatmap(), dims=("y", "x"), attrs={"crs": CRS})
    with pytest.warns(UserWarning, match="the heatmap array: it names a CRS but has no geotransform"):
        found = hsanomaly.find_targets(heat, threshold=1.0)
    assert found.crs is None and found["area"].isna().all()


def test_a_data_array_with_a_crs_is_placed_by_its_coordinates_as_rioxarray_places_it():
    """x/y coordinates and a CRS without a transform attribute (``rio.write_crs`` on an array
    built by hand, or a netCDF without a GeoTransform) gave pixel coordinates and the warning
    "has no geotransform", and evaluate's targets had no map centres."""
    xr = pytest.importorskip("xarray")
    scores = planted_heatmap()
    rows, cols = scores.shape
    placed = xr.DataArray(scores, dims=("y", "x"), attrs={"crs": CRS, "transform": TRANSFORM})
    by_coords = xr.DataArray(scores, dims=("y", "x"), attrs={"crs": CRS}, coords={
        "x": TRANSFORM.c + (np.arange(cols) + 0.5) * TRANSFORM.a,
        "y": TRANSFORM.f + (np.arange(rows) + 0.5) * TRANSFORM.e})
    want = hsanomaly.find_targets(placed, threshold=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        found = hsanomaly.find_targets(by_coords, threshold=1.0)
    assert found.crs == want.crs and found.crs is not None
    np.testing.assert_allclose(found[["centroid_x", "centroid_y", "area"]].values,
                               want[["centroid_x", "centroid_y", "area"]].values)
    truth = scores > 1.0
    report = hsanomaly.evaluate(by_coords, truth)
    assert report["targets"][0]["centroid_x"] == pytest.approx(
        hsanomaly.evaluate(placed, truth)["targets"][0]["centroid_x"])
    one_row = by_coords.isel(y=[3])           # one row: nothing tells a pixel's height
    with pytest.warns(HsanomalyWarning, match="names a CRS but has no geotransform"):
        hsanomaly.find_targets(one_row, threshold=1.0)


def test_find_targets_takes_what_a_data_array_carries_beside_what_is_given():
    """A transform given beside a DataArray's crs attribute dropped the CRS, and a crs given
    beside its transform attribute was refused as a CRS without a transform."""
    xr = pytest.importorskip("xarray")
    scores = planted_heatmap()
    with_crs = xr.DataArray(scores, dims=("y", "x"), attrs={"crs": CRS})
    with_transform = xr.DataArray(scores, dims=("y", "x"), attrs={"transform": TRANSFORM})
    for found in (hsanomaly.find_targets(with_crs, threshold=1.0, transform=TRANSFORM),
                  hsanomaly.find_targets(with_transform, threshold=1.0, crs=CRS)):
        assert found.crs == CRS and found["area"].notna().all()


def test_a_transform_given_with_one_unit_pixels_and_no_crs_is_taken_as_it_is(tmp_path):
    """A south-up transform of 1-unit pixels given beside an array was taken for pixel
    coordinates (the guess made for a cut of a DataArray without a map): the targets came out
    mirrored, at y -5005 instead of 5005. A given transform places them as a file with it does."""
    from affine import Affine

    scores = np.zeros((40, 50), np.float32)
    scores[3:5, 6:8] = 1.0
    south_up = Affine(1, 0, 1000, 0, 1, 5000)
    path = tmp_path / "heat.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=1, height=40, width=50,
                       transform=south_up) as dst:
        dst.write(scores[None])
    from_file = hsanomaly.find_targets(path, threshold=0.5)
    from_array = hsanomaly.find_targets(scores, threshold=0.5, transform=south_up)
    assert from_array.total_bounds.tolist() == from_file.total_bounds.tolist() == [
        1006, 5003, 1008, 5005]
    assert from_array[["centroid_x", "centroid_y"]].values.tolist() == [[1007, 5004]]


def test_a_geographic_crs_in_grads_gives_the_mean_pixel_area_in_square_metres():
    """Evaluate's false alarms per km2 divide by this area: in EPSG:4807 (grads) it was taken
    in degrees, 10 % and more off."""
    from affine import Affine
    from rasterio.crs import CRS as RasterioCRS

    from hsanomaly.evaluation.files import mean_pixel_area

    grads = Affine(1e-3, 0, 0.5, 0, -1e-3, 54.0)
    degrees = Affine(0.9e-3, 0, 0.45, 0, -0.9e-3, 48.6)
    on_ellipsoid = RasterioCRS.from_proj4("+proj=longlat +ellps=clrk80ign +no_defs")
    expected = mean_pixel_area(degrees, on_ellipsoid, (60, 60))
    assert mean_pixel_area(grads, RasterioCRS.from_epsg(4807), (60, 60)) == pytest.approx(
        expected, rel=1e-9)
    assert 5000 < expected < 12000


def test_auto_is_taken_in_any_case_as_a_text_field_gives_it():
    """QGIS's 'Polygon false-alarm rate' took "auto" but refused "Auto" and "AUTO"."""
    rng = np.random.default_rng(3)
    scores = rng.gamma(2.0, 1.0, (60, 60)).astype(np.float32)
    scores[10:12, 10:12] = 40.0
    want = hsanomaly.find_targets(scores, far="auto")
    for given in ("Auto", " AUTO "):
        found = hsanomaly.find_targets(scores, far=given)
        assert found["max_score"].tolist() == want["max_score"].tolist()


def test_a_geopackage_whose_lock_this_system_cannot_see_is_refused_with_both_remedies(
        tmp_path, monkeypatch, synthetic_raster):
    """Where /proc/locks cannot be read (macOS, Windows), a -shm a stopped program left was
    "open in another program; close it there", with no word of how to tidy it."""
    import hsanomaly.polygons as polygons

    gpkg = tmp_path / "t.gpkg"
    hsanomaly.detect(synthetic_raster[0], tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    (tmp_path / "t.gpkg-shm").write_bytes(b"\0" * 32768)
    monkeypatch.setattr(polygons, "held_open", lambda shm: None)
    with pytest.raises(HsanomalyError, match=r"t.gpkg: 'polygons' is open in another program in "
                                             r"WAL mode, or was left so by one that stopped "
                                             r"\(t.gpkg-shm; this system does not say which\); "
                                             r"close it there .* open it once \(QGIS, ogrinfo\) "
                                             r"to tidy it"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "h.tif", score="lrx", polygons=gpkg,
                         far=1e-2)
    monkeypatch.undo()                  # this system tells: nobody holds it
    hsanomaly.detect(synthetic_raster[0], tmp_path / "h.tif", score="lrx", polygons=gpkg, far=1e-2)


def test_the_same_polygons_run_writes_the_same_bytes(tmp_path, synthetic_raster):
    """GDAL stamped the GeoPackage's tables with the time of writing, and its layer description
    named the heatmap as typed: every identical run wrote another file, which pipelines that
    compare outputs (DVC, Make) took for a change."""
    import os

    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    written = []
    for name, heatmap in (("a", tmp_path / "h.tif"), ("b", os.path.relpath(tmp_path / "h.tif"))):
        hsanomaly.detect(synthetic_raster[0], heatmap, score="rx", tile=16,
                         polygons=tmp_path / f"{name}.gpkg", far=1e-2)
        written.append((tmp_path / f"{name}.gpkg").read_bytes())
    assert written[0] == written[1]
    description = pyogrio.read_info(tmp_path / "a.gpkg", layer="targets")["layer_metadata"]
    assert description["DESCRIPTION"].startswith("h.tif: pixels with score > ")
    assert pyogrio.get_gdal_config_option("OGR_CURRENT_DATE") == before


def test_a_geopackage_sqlite_cannot_finish_is_one_line_and_replaces_nothing(
        tmp_path, monkeypatch, synthetic_raster):
    """The GeoPackage's dates are pinned with SQLite after GDAL writes it: a full disk there
    (its fresh copy) ended in sqlite3's traceback."""
    import sqlite3

    import hsanomaly.polygons as polygons

    gpkg = tmp_path / "t.gpkg"
    hsanomaly.detect(synthetic_raster[0], tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    before = gpkg.read_bytes()

    def full(path):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(polygons, "pin_dates", full)
    with pytest.raises(HsanomalyError, match=r"t.gpkg: cannot write \(database or disk is full"
                                             r".*nothing was replaced"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "h.tif", score="lrx", polygons=gpkg,
                         far=1e-2)
    assert gpkg.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_find_targets_warns_nothing_where_warnings_are_errors():
    """rasterio's window transform multiplies with the operator affine 3 deprecates: a suite
    that makes warnings errors (and detect --polygons under PYTHONWARNINGS=error) failed."""
    from affine import Affine

    import hsanomaly

    scores = np.zeros((30, 40), np.float32)
    scores[5:7, 8:11] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        targets = hsanomaly.find_targets(scores, threshold=1.0,
                                         transform=Affine(2, 0, 100, 0, -2, 500))
    assert list(targets.geometry.total_bounds) == [116.0, 486.0, 122.0, 490.0]


@pytest.mark.parametrize("row_step", [-10, 10])
def test_every_target_polygon_winds_one_way(row_step):
    """Targets whose pixels touch only at a corner (split by make_valid) came out clockwise
    beside counter-clockwise ones, and on a south-up grid every one was clockwise: GeoJSON's
    right-hand rule and renderers that honour winding saw holes as fills."""
    from affine import Affine

    scores = np.zeros((40, 40), np.float32)
    scores[5, 5] = scores[10, 10] = scores[11, 11] = 9.0       # one pixel; two at a corner
    scores[20:25, 20:25] = 9.0
    scores[22, 22] = 0.0                                       # a ring around a hole
    targets = hsanomaly.find_targets(scores, threshold=1.0,
                                     transform=Affine(10, 0, 0, 0, row_step, 400))
    polygons = [p for g in targets.geometry for p in g.geoms]
    assert len(polygons) == 4 and all(p.exterior.is_ccw for p in polygons)
    holes = [ring for p in polygons for ring in p.interiors]
    assert len(holes) == 1 and not holes[0].is_ccw


def test_a_style_saved_into_the_targets_geopackage_is_not_dropped_unasked(synthetic_raster,
                                                                          tmp_path):
    """QGIS's "Save Style... In Database" adds a row to the file's layer_styles: the next
    --polygons run replaced the file and dropped it without a word (an added layer was
    refused)."""
    import sqlite3

    path, _, _ = synthetic_raster
    gpkg = tmp_path / "t.gpkg"
    hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute("INSERT INTO layer_styles (f_table_name, f_geometry_column, styleName, "
                   "styleQML, useAsDefault) SELECT f_table_name, f_geometry_column, "
                   "'my analyst style', styleQML, 0 FROM layer_styles")
    before = gpkg.read_bytes()
    with pytest.raises(HsanomalyError, match=r"t.gpkg: 'polygons' holds, beside hsanomaly's "
                                             r"targets, layer_styles: the style 'my analyst "
                                             r"style', which writing the targets would remove"):
        hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2)
    assert gpkg.read_bytes() == before
    hsanomaly.detect(path, tmp_path / "h.tif", score="rx", polygons=gpkg, far=1e-2,
                     overwrite=True)
    assert hsanomaly.polygons.is_targets_file(gpkg)


def test_areas_a_projection_draws_far_from_the_grounds_are_said(tmp_path):
    """A target's area in Web Mercator at 60 degrees north was 4 times its ground area, as
    square metres, without a word; in UTM (the others here) the two agree."""
    import warnings

    scores = planted_heatmap()
    mercator = write_heatmap(tmp_path / "mercator.tif", scores, crs="EPSG:3857",
                             transform=rasterio.transform.from_origin(1113194, 8399737, 30, 30))
    with pytest.warns(HsanomalyWarning, match=r"mercator.tif: the targets' areas are in the "
                      r"map's square metres, which this projection \(EPSG:3857\) draws 4 times "
                      r"as large as the ground's there"):
        found = hsanomaly.find_targets(mercator, threshold=1)
    assert found["area"].tolist() == (found["pixels"] * 900.0).tolist()      # the map's, said
    truth = write_heatmap(tmp_path / "truth.tif", (scores > 4).astype(np.float32), crs="EPSG:3857",
                          transform=rasterio.transform.from_origin(1113194, 8399737, 30, 30))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        hsanomaly.evaluate(mercator, truth)
    assert [str(w.message) for w in said if w.category is HsanomalyWarning and
            "the false-alarm regions per km2 are in the map's" in str(w.message)]
    assert not [w for w in said if "/hsanomaly/" in w.filename]      # affine's deprecated *
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.find_targets(write_heatmap(tmp_path / "utm.tif", scores), threshold=1)


def test_a_heatmap_stored_as_float64_is_thresholded_in_its_own_precision(tmp_path):
    """Another tool's float64 heatmap (1 - p, near 1) was read as float32, where its top
    scores are one value: a threshold between them drew 498 pixels for 17 above it, and a
    false-alarm rate none, while the same scores as an array were right."""
    rng = np.random.default_rng(0)
    scores = 1 - 10.0 ** -rng.uniform(8, 14, (40, 50))
    scores[0, :3] = np.nan
    path = tmp_path / "heat.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float64", count=1, height=40, width=50,
                       nodata=float("nan"), crs=CRS, transform=TRANSFORM) as ds:
        ds.write(scores[None])
    assert len(np.unique(scores[np.isfinite(scores)].astype(np.float32))) < 10
    threshold = float(np.nanquantile(scores, 0.99))
    found = hsanomaly.find_targets(path, threshold=threshold)
    assert found["pixels"].sum() == np.count_nonzero(scores > threshold) >= 19
    assert found["threshold"].iloc[0] == threshold
    for far in (0.001, 0.01):
        by_rate = hsanomaly.find_targets(path, far=far)
        drawn = by_rate["pixels"].sum()     # at most the rate's share (fewer where scores tie)
        assert 0 < drawn <= math.floor(far * np.count_nonzero(~np.isnan(scores)))
        assert drawn == hsanomaly.find_targets(scores, far=far)["pixels"].sum()


def test_a_data_array_placed_across_the_antimeridian_or_half_a_pixel_off(tmp_path):
    """Longitudes that wrap at 180 (179.6 ... 179.99, -179.99 ...) were refused as "x
    coordinates not evenly spaced"; coordinates of pixel corners beside a transform
    attribute moved the targets half a pixel, unsaid."""
    xr = pytest.importorskip("xarray")
    scores = planted_heatmap()
    rows, cols = scores.shape
    lon = 179.6 + 0.02 * (np.arange(cols) + 0.5)
    wrapped = xr.DataArray(scores, dims=("lat", "lon"), attrs={"crs": "EPSG:4326"}, coords={
        "lon": (lon + 180) % 360 - 180, "lat": 65.0 - 0.01 * (np.arange(rows) + 0.5)})
    assert wrapped.lon.values.min() < 0 < wrapped.lon.values.max()
    found = hsanomaly.find_targets(wrapped, threshold=1)
    unwrapped = hsanomaly.find_targets(wrapped.assign_coords(lon=lon), threshold=1)
    assert len(found) == 2 and found.geometry.geom_equals(unwrapped.geometry).all()
    metres = 500000.0 + 20.0 * np.arange(cols)                    # metres: a gap is a gap,
    metres[cols // 2:] += 360.0                                   # whatever its size
    with pytest.raises(HsanomalyError, match="its x coordinates are not evenly spaced"):
        hsanomaly.find_targets(xr.DataArray(scores, dims=("y", "x"), attrs={"crs": CRS}, coords={
            "x": metres, "y": 6.7e6 - 20.0 * np.arange(rows)}), threshold=1)
    coarse = xr.DataArray(scores, dims=("y", "x"), attrs={"transform": TRANSFORM, "crs": CRS},
                          coords={"x": TRANSFORM.c + TRANSFORM.a * (np.arange(cols) + 0.5),
                                  "y": TRANSFORM.f + TRANSFORM.e * (np.arange(rows) + 0.5)})
    with warnings.catch_warnings():             # a coarsened grid has centres of its own
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.find_targets(coarse.coarsen(x=2, y=2).max(keep_attrs=True), threshold=1)
    corners = xr.DataArray(scores, dims=("y", "x"), attrs={"transform": TRANSFORM, "crs": CRS},
                           coords={"x": TRANSFORM.c + TRANSFORM.a * np.arange(cols),
                                   "y": TRANSFORM.f + TRANSFORM.e * np.arange(rows)})
    with pytest.warns(HsanomalyWarning, match=r"its x coordinates lie 0.5 of a pixel off the "
                      r"grid of its transform attribute \(pixel corners, not centres\?\)"):
        hsanomaly.find_targets(corners, threshold=1)


def test_a_transform_the_caller_gives_places_the_targets_whatever_its_numbers():
    """An identity transform given to ``find_targets`` (a grid of 1-unit pixels from the map's
    origin) was taken for none: y flipped to minus the row, areas NaN and the CRS dropped (the
    targets audit's F02)."""
    from affine import Affine

    scores = np.zeros((6, 6))
    scores[1, 2] = 5
    for crs in (None, "EPSG:32633"):
        found = hsanomaly.find_targets(scores, threshold=1, transform=Affine.identity(), crs=crs)
        assert found.geometry.iloc[0].bounds == (2.0, 1.0, 3.0, 2.0)
        assert found["area"].iloc[0] == 1.0 and (found.crs is None) == (crs is None)
    # six numbers are Affine's; GDAL's order read as them put the targets kilometres away,
    # turned a quarter, unsaid (the API audit's F03)
    gdal_order = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)
    with pytest.raises(HsanomalyError, match=r"^'transform': \(500000.0, 30.0, 0.0, 4000000.0, "
                                             r"0.0, -30.0\) read in Affine's order .* GDAL's "
                                             r"GeoTransform order\? Give Affine.from_gdal"):
        hsanomaly.find_targets(scores, threshold=1, transform=gdal_order, crs="EPSG:32633")
    with pytest.raises(HsanomalyError, match=r"\(0.0, 1.0, 0.0, 0.0, 0.0, 1.0\) put every "
                                             r"pixel on one line, which places none: GDAL's "
                                             r"GeoTransform order\?"):
        hsanomaly.find_targets(scores, threshold=1, transform=(0, 1, 0, 0, 0, 1))   # review F03
    with pytest.raises(HsanomalyError, match=r"one line, which places none$"):     # NaN targets
        hsanomaly.find_targets(scores, threshold=1, transform=Affine(0, 1, 0, 0, 0, 1))
    turned = hsanomaly.find_targets(scores, threshold=1, transform=Affine.rotation(90))
    assert turned.geometry.iloc[0].bounds == (-2.0, 2.0, -1.0, 3.0)     # an Affine is one
    found = hsanomaly.find_targets(scores, threshold=1, transform=Affine.from_gdal(*gdal_order))
    assert found.geometry.iloc[0].bounds == (500060.0, 3999940.0, 500090.0, 3999970.0)
    assert found.geometry.iloc[0].bounds == hsanomaly.find_targets(
        scores, threshold=1, transform=tuple(Affine.from_gdal(*gdal_order))[:6]).geometry.iloc[
        0].bounds


def test_numbers_the_hints_allow_are_taken_as_the_floats_they_are():
    """``threshold``, ``far`` and ``pd_far`` are hinted ``SupportsFloat``: a Decimal or a 0-d
    array (what numpy's and torch's reductions hand back) was refused, with a message that 0.001
    is not in (0, 1) (the API audit's F01). Taken, each gives what its float gives."""
    from decimal import Decimal

    heat = np.random.default_rng(0).random((50, 50)).astype("float32")
    truth = np.zeros((50, 50))
    truth[10:12, 10:12] = 1
    for far in (np.array(1e-2), Decimal("0.01"), np.float32(0.01)):
        found = hsanomaly.find_targets(heat, far=far)
        assert found.equals(hsanomaly.find_targets(heat, far=0.01))
    from fractions import Fraction

    for threshold in (np.array(0.99), Decimal("0.99"), Fraction(99, 100)):
        found = hsanomaly.find_targets(heat, threshold=threshold)
        assert found.equals(hsanomaly.find_targets(heat, threshold=0.99))
    report = hsanomaly.evaluate(heat, truth, pd_far=np.array(0.01))
    assert report == hsanomaly.evaluate(heat, truth, pd_far=0.01)
    # what is no one number is still refused, and shown as it was given
    with pytest.raises(HsanomalyError, match=r"got array\(\[0.1, 0.2\]\)"):
        hsanomaly.find_targets(heat, far=np.array([0.1, 0.2]))
    with pytest.raises(HsanomalyError, match=r"'threshold' must be a finite number, got "
                                             r"Decimal\('NaN'\)"):
        hsanomaly.find_targets(heat, threshold=Decimal("NaN"))


def test_targets_of_a_raster_of_several_bands_say_which_band_is_read(tmp_path):
    """The scene itself given for its heatmap gave its band 1's "targets" without a word,
    where ``evaluate`` says it reads band 1 (the API audit's F02)."""
    cube, truth = synthetic_cube(rows=30, cols=30)
    scene = write_raster(tmp_path / "scene.tif", cube)
    for call in (lambda: hsanomaly.find_targets(scene, far=1e-2),
                 lambda: hsanomaly.evaluate(scene, truth)):
        with pytest.warns(HsanomalyWarning) as said:
            call()
        assert [str(w.message) for w in said if "bands" in str(w.message)] == [
            f"{scene}: has {cube.shape[0]} bands; the first is read as the scores (a heatmap "
            "of hsanomaly has one)"]
