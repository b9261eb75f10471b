"""Evaluation: metrics against sklearn and hand-computed cases, masks, per-target results,
plots and the ``evaluate`` command."""

import json
import re

import numpy as np
import rasterio
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from hsanomaly.cli.evaluate import evaluate as evaluate_command
from hsanomaly.errors import HsanomalyDeprecationWarning, HsanomalyError, HsanomalyWarning
from hsanomaly.evaluation import evaluate, label_targets, read_heatmap, roc_curve
from hsanomaly.evaluation.plots import _pixel_outline, write_plots

from synthetic import write_raster

LOG6 = np.log10(6)   # |log10(0.5 / 3)|: the logAUC range for three background pixels


def scene(rows=60, cols=80, seed=0):
    """Gaussian background scores with three brighter targets of different shapes."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0, 1, (rows, cols))
    truth = np.zeros((rows, cols), np.uint8)
    truth[10:13, 50:54] = 1                      # T1: first pixel (10, 50)
    truth[20, 5] = truth[21, 6] = truth[22, 7] = 1   # T2: a diagonal line, one 8-connected target
    truth[40:45, 30:32] = 1                      # T3
    scores[truth == 1] += rng.uniform(0.5, 3, int(truth.sum()))
    return scores, truth


# --- ROC curve, AUC, logAUC, lgFAR -------------------------------------------------------

@pytest.mark.parametrize("decimals", [None, 1])
def test_auc_equals_sklearn_with_and_without_ties(decimals):
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 200), rng.normal(0, 1, 3000)
    if decimals is not None:
        pos, neg = np.round(pos, decimals), np.round(neg, decimals)
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    expected = roc_auc_score(labels, np.r_[pos, neg])
    assert roc_curve(pos, neg).auc == pytest.approx(expected, abs=1e-12)


def test_evaluate_auc_equals_sklearn_on_flattened_maps():
    scores, truth = scene()
    report = evaluate(scores, truth)
    assert report["auc"] == pytest.approx(roc_auc_score(truth.ravel(), scores.ravel()), abs=1e-12)
    assert report["n_target_pixels"] == truth.sum()
    assert report["n_background_pixels"] == truth.size - truth.sum()


def test_log_auc_single_target_between_background_scores():
    # one background score above the target: TPR is 0 up to FPR 1/3, then 1
    assert roc_curve([3], [1, 2, 4]).log_auc == pytest.approx(np.log10(3) / LOG6)


def test_log_auc_counts_zero_false_positives_as_half():
    # the top target beats every background pixel: TPR 1/2 from FPR 0.5/3, 1 from FPR 1/3
    curve = roc_curve([5, 3], [1, 2, 4])
    assert curve.log_auc == pytest.approx((0.5 * np.log10(2) + np.log10(3)) / LOG6)
    assert curve.lg_far == pytest.approx(np.log10(0.5 / 3))


def test_log_auc_perfect_worst_and_tied_detectors():
    assert roc_curve([5, 6], [1, 2, 4]).log_auc == pytest.approx(1.0)
    assert roc_curve([0], [1, 2, 4]).log_auc == pytest.approx(0.0)
    assert roc_curve([2], [2]).log_auc == pytest.approx(0.5)   # the tie broken either way


def test_log_auc_of_tied_scores_is_the_mean_over_random_tie_breaks():
    """A constant map scored 0.5 (a straight line in log FPR across its one tie), above real
    detectors; it is the chance level now, and every tie counts as breaking it at random."""
    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 3, 5).astype(float), rng.integers(0, 3, 30).astype(float)
    broken = [roc_curve(pos + rng.random(5) * 1e-6, neg + rng.random(30) * 1e-6).log_auc
              for _ in range(20000)]
    assert roc_curve(pos, neg).log_auc == pytest.approx(np.mean(broken), abs=4 * np.std(broken)
                                                         / np.sqrt(len(broken)))
    constant = roc_curve(np.full(50, 5.0), np.full(10000, 5.0)).log_auc
    noise = roc_curve(rng.random(50), rng.random(10000)).log_auc
    assert constant == pytest.approx(noise, abs=0.02) and constant < 0.15


def test_the_semi_log_plot_draws_the_curve_log_auc_integrates():
    """The semi-log ROC drew a tie as a straight line in log FPR, the curve log_auc rejects: a
    constant map's plot enclosed 0.50 under a title of 0.10, a quantised map's 0.372 under
    0.350. The drawn curve's area is the title's now, to its few drawn steps' rounding."""
    rng = np.random.default_rng(4)

    def drawn_area(curve):
        fpr, tpr = curve.expected_log_curve()
        x = np.log10(fpr)
        return np.sum(np.diff(x) * (tpr[1:] + tpr[:-1]) / 2) / -x[0]

    quantised = np.round(np.r_[rng.normal(2, 1, 60), rng.normal(0, 1, 20000)] * 2)
    for curve in (roc_curve(np.full(50, 5.0), np.full(10000, 5.0)),
                  roc_curve(quantised[:60], quantised[60:]),
                  roc_curve(rng.normal(1, 1, 40), rng.normal(0, 1, 3000))):      # no ties
        assert drawn_area(curve) == pytest.approx(curve.log_auc, abs=0.01)
    fpr, tpr = roc_curve(np.full(50, 5.0), np.full(10000, 5.0)).expected_log_curve()
    assert fpr[0] == 0.5 / 10000 and tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_log_auc_equals_trapezoid_over_full_sklearn_curve():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 150), rng.normal(0, 1, 4000)        # no ties
    fpr, tpr, _ = sklearn_roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)],
                                    np.r_[pos, neg], drop_intermediate=False)
    log_fpr = np.log10(np.maximum(fpr * neg.size, 0.5) / neg.size)
    expected = np.sum(np.diff(log_fpr) * (tpr[1:] + tpr[:-1]) / 2) / -np.log10(0.5 / neg.size)
    assert roc_curve(pos, neg).log_auc == pytest.approx(expected, abs=1e-12)


def test_lg_far_counts_background_at_or_above_the_top_target():
    assert roc_curve([3, 1], [4, 5, 0, 0]).lg_far == pytest.approx(np.log10(2 / 4))
    assert roc_curve([3], [3, 0, 0, 0]).lg_far == pytest.approx(np.log10(1 / 4))   # tie = alarm


def test_pd_is_the_share_of_targets_above_the_lowest_threshold_within_the_false_alarms():
    neg = np.arange(1000) / 100                       # 0 .. 9.99
    curve = roc_curve([10, 5, 1], neg)
    assert curve.pd_at() == pytest.approx(1 / 3)      # only 10 beats all but 0.1 % of it
    assert curve.pd_at(0.5) == pytest.approx(2 / 3)   # >= 5: 500 false alarms, allowed


@pytest.mark.parametrize("far", [0.001, 0.01, 0.2])
def test_pd_equals_a_scan_of_every_threshold_with_ties(far):
    rng = np.random.default_rng(3)
    pos, neg = np.round(rng.normal(2, 1, 120), 1), np.round(rng.normal(0, 1, 5000), 1)
    best = 0
    for t in np.r_[np.unique(np.r_[pos, neg]), np.inf]:
        if (neg >= t).sum() <= far * neg.size:
            best = max(best, (pos >= t).sum())
    assert roc_curve(pos, neg).pd_at(far) == pytest.approx(best / pos.size, abs=1e-12)


def test_false_alarm_regions_are_the_blobs_above_the_pd_threshold_without_a_target():
    """About 2,000 background pixels at 0 allow 19 false alarms at a rate of 0.01, so the
    threshold is 0 when fewer background pixels score above it. Above it: a 3-pixel blob (one
    region, 8-connected by a corner), a lone pixel, a pair, a blob touching a target (a hit,
    not a false alarm) and a blob of ambiguous outer-mask pixels only (no false alarm)."""
    scores = np.zeros((40, 50))
    truth, outer = np.zeros((40, 50), np.uint8), np.zeros((40, 50), np.uint8)
    scores[2, 2] = scores[3, 3] = scores[3, 4] = 5          # a blob, corner-connected
    scores[10, 10] = 5                                      # a lone pixel
    scores[39, 48], scores[39, 49] = 2, 1                   # a pair
    truth[15, 20] = 1
    scores[15, 20:23] = 5                                   # a target and the blob beside it
    outer[0, 40:42] = 1
    scores[0, 40:42] = 5                                    # ambiguous pixels only
    report = evaluate(scores, truth, outer_mask=outer, pd_far=0.01, pixel_area=4.0)
    assert (report["n_targets_found"], report["n_false_alarm_regions"]) == (1, 3)
    background = report["n_background_pixels"]
    assert report["false_alarm_regions_per_km2"] == pytest.approx(3 / (background * 4e-6))
    # at 0.0001 no false alarm is allowed: the threshold is the highest background score, 5,
    # which the target does not beat...
    report = evaluate(scores, truth, outer_mask=outer, pd_far=0.0001, pixel_area=4.0)
    assert (report["n_targets_found"], report["n_false_alarm_regions"], report["pd"]) == (0, 0, 0)
    assert report["false_alarm_regions_per_km2"] == 0.0
    scores[15, 20] = 6                                      # ...until it does
    assert evaluate(scores, truth, outer_mask=outer, pd_far=0.0001)["n_targets_found"] == 1
    assert evaluate(scores, truth)["false_alarm_regions_per_km2"] is None


def test_pixels_of_unknown_truth_neither_count_nor_split_a_false_alarm_region(tmp_path):
    """A truth file's nodata is unknown: in neither class, but a blob above the threshold that
    crosses it is still one blob to look at."""
    scores = np.zeros((40, 50))
    truth = np.zeros((40, 50), np.float32)
    truth[15, 20] = 1
    scores[15, 20] = 6                                      # a target found
    scores[5, 5:10] = 5                                     # one blob...
    truth[5, 7] = np.nan                                    # ...across a pixel of unknown truth
    truth[30:32, 30:32] = np.nan
    scores[30:32, 30:32] = 5                                # unknown pixels only: no region
    import hsanomaly

    unknown = np.isnan(truth)
    stored = np.where(unknown, 255, truth).astype(np.float32)[None]
    truth_file = write_raster(tmp_path / "truth.tif", stored, nodata=255)
    heat = write_raster(tmp_path / "heat.tif", scores[None].astype(np.float32))
    for report in (evaluate(scores, truth, pd_far=0.01),                  # the metrics alone
                   hsanomaly.evaluate(scores, truth, pd_far=0.01),        # and every door
                   hsanomaly.evaluate(scores, np.ma.masked_array(np.nan_to_num(truth), unknown),
                                      pd_far=0.01),
                   hsanomaly.evaluate(heat, truth_file, pd_far=0.01)):
        assert (report["n_targets_found"], report["n_false_alarm_regions"]) == (1, 1)
        assert report["n_background_pixels"] == 40 * 50 - 1 - 5
        assert report["n_excluded_pixels"] == 5


@pytest.mark.parametrize("far", [0.001, 0.01, 0.2])
def test_the_false_alarm_threshold_is_pds(far):
    """Detected background pixels at the regions' threshold stay within the rate, and the
    target pixels above it are Pd's share (scores with ties)."""
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(0, 1, (80, 80)), 1)
    truth = np.zeros((80, 80), np.uint8)
    truth[::9, ::7] = 1
    scores[truth == 1] += 2
    neg = scores[truth == 0]
    allowed = int(far * neg.size)
    threshold = np.sort(neg)[neg.size - allowed - 1]
    assert (neg > threshold).sum() <= allowed
    assert evaluate(scores, truth, pd_far=far)["pd"] == pytest.approx(
        (scores[truth == 1] > threshold).mean())
    from scipy import ndimage

    above = (scores > threshold) & (truth == 0)
    labels, n = ndimage.label(scores > threshold, structure=np.ones((3, 3), bool))
    expected = len(set(labels[above]) - set(labels[truth == 1]) - {0})
    assert evaluate(scores, truth, pd_far=far)["n_false_alarm_regions"] == expected


LOCAL = ('LOCAL_CS["Arbitrary",LOCAL_DATUM["x",0],UNIT[{}],AXIS["X",EAST],'
         'AXIS["Y",NORTH]]')      # ENVI's pixel grid: GDAL gives it a metre of its own


@pytest.mark.parametrize("crs, size, area", [("EPSG:32633", 2.0, 4.0),
                                             ("EPSG:2227", 10.0, (10 * 1200 / 3937) ** 2),
                                             ("EPSG:4326", 0.001, (0.001 * 111_000) ** 2),
                                             (None, 2.0, None),
                                             (LOCAL.format('"metre",1'), 2.0, None)])
def test_pixel_area_in_square_metres(tmp_path, crs, size, area):
    """Feet converted; degrees near the equator: about 111 km each way; a local CRS has none
    (GDAL names a metre for ENVI's "Arbitrary" grid of pixel coordinates). The report places
    each target on the map (its mean pixel centre) where the heatmap has a geotransform."""
    from rasterio.crs import CRS as RasterCRS
    from rasterio.transform import from_origin

    from hsanomaly.evaluation.files import evaluate_files, mean_pixel_area

    transform = from_origin(10, 1, size, size)
    given = None if crs is None else RasterCRS.from_user_input(crs)
    assert mean_pixel_area(transform, given, (3, 3)) == \
        (None if area is None else pytest.approx(area, rel=0.02))
    scores, truth = scene()
    heat = write_raster(tmp_path / "h.tif", scores[None], crs=crs, transform=transform)
    truth_path = write_raster(tmp_path / "t.tif", truth[None].astype(np.float32), crs=crs,
                              transform=transform)
    report = evaluate_files(heat, truth_path)[0]
    first = report["targets"][0]                     # rows 10-12, cols 50-53: centre (11.5, 52)
    assert (first["centroid_x"], first["centroid_y"]) == pytest.approx(
        (10 + 52 * size, 1 - 11.5 * size))
    with rasterio.open(heat) as ds:            # a GeoTIFF renames a local CRS's axes
        assert report["crs"] == (None if crs is None else ds.crs.to_string())
        assert mean_pixel_area(ds.transform, ds.crs, ds.shape) == \
            (None if area is None else pytest.approx(area, rel=0.02))
    assert (report["false_alarm_regions_per_km2"] is None) == (area is None)


def test_pd_far_outside_zero_one_is_refused_before_anything_is_written(heat_and_truth, tmp_path):
    heat, truth_path, _, _ = heat_and_truth
    for bad in ("0", "1", "-0.1", "nan", "inf"):
        message = run_failing([heat, truth_path, "--pd-far", bad, "--json", tmp_path / "r.json"])
        assert message == f"--pd-far must be a false-alarm rate in (0, 1), got {float(bad)}"
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(HsanomalyError, match="'pd_far' must be"):    # the library's name
        evaluate(np.zeros((2, 2)), np.eye(2), pd_far="often")


def test_pd_at_another_false_alarm_rate_through_the_cli_and_library(heat_and_truth, tmp_path):
    heat, truth_path, scores, truth = heat_and_truth
    result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--pd-far", "0.05",
                                                   "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    expected = roc_curve(scores[truth > 0], scores[truth == 0]).pd_at(0.05)
    assert report["pd_far"] == 0.05 and report["pd"] == pytest.approx(expected)
    assert report["pd"] != evaluate(scores, truth)["pd"]       # the default rate gives another
    assert f"Pd {expected:.4f} at a false-alarm rate of 0.05" in result.output


def test_roc_curve_runs_from_origin_to_one_one():
    curve = roc_curve([0.2, 0.9, 0.9], [0.1, 0.5, 0.95])
    assert (curve.fpr[0], curve.tpr[0]) == (0, 0)
    assert (curve.fpr[-1], curve.tpr[-1]) == (1, 1)
    assert np.all(np.diff(curve.fp) >= 0) and np.all(np.diff(curve.tp) >= 0)


def test_roc_curve_needs_both_classes():
    with pytest.raises(ValueError):
        roc_curve([], [1.0])
    with pytest.raises(ValueError):
        roc_curve([1.0], [])


def test_a_heatmap_without_a_score_on_the_targets_is_blamed_not_the_truth():
    """An all-NaN heatmap was reported as 'the truth mask is empty or all NaN'."""
    from hsanomaly.evaluation.metrics import score_targets

    truth = np.zeros((10, 10))
    truth[4:6, 4:6] = 1
    with pytest.raises(ValueError, match="the heatmap is NaN on every target pixel"):
        score_targets(np.where(truth > 0, np.nan, 1.0), truth)
    with pytest.raises(ValueError, match="the truth mask is empty"):
        score_targets(np.ones((10, 10)), np.zeros((10, 10)))


# --- masks and per-target results ---------------------------------------------------------

def test_outer_mask_pixels_are_excluded_from_background():
    scores, truth = scene()
    outer = truth.copy()
    outer[9:14, 49:55] = 1           # a one-pixel ring around T1: 30 - 12 = 18 ambiguous pixels
    report = evaluate(scores, truth, outer_mask=outer)
    plain = evaluate(scores, truth)
    assert report["n_target_pixels"] == plain["n_target_pixels"]
    assert report["n_background_pixels"] == plain["n_background_pixels"] - 18
    assert report["n_excluded_pixels"] == 18
    keep = (outer == 0) | (truth == 1)
    assert report["auc"] == pytest.approx(roc_auc_score(truth[keep], scores[keep]), abs=1e-12)


def test_nan_scores_and_invalid_pixels_are_excluded_and_unscored_targets_said():
    """A target pixel the heatmap gives no score (the input's nodata, a saturated pixel say)
    is left out of the rates, as the benchmark leaves out nodata; but not silently: a
    warning names the targets, and the report counts them (a whole target without a score
    moved the AUC from 0.36 to 0.89 with no word)."""
    from hsanomaly.errors import HsanomalyWarning

    scores, truth = scene()
    scores[0, :10] = np.nan                      # 10 background pixels without a score
    scores[10, 50] = np.nan                      # one T1 pixel without a score
    valid = np.ones(truth.shape, bool)
    valid[59, :5] = False                        # 5 invalid background pixels
    valid[44, 30:32] = False                     # and 2 of T3's (an outer mask's nodata there)
    with pytest.warns(HsanomalyWarning) as said:
        report = evaluate(scores, truth, valid=valid)
    messages = [str(w.message) for w in said]
    # the pixels an outer mask's nodata took out of T3 were left out without a word, and the
    # target's pixel count and centroid counted different pixels, unsaid
    assert messages == [
        "the heatmap: 1 target pixel has no score (NaN, the heatmap's nodata) and is left out "
        "of the rates and of the targets' pixel counts, which measure the rest (their centroids "
        "place the whole targets): T1 (1 pixel)",
        "the heatmap: 2 target pixels have no known class (the outer mask's nodata) and are "
        "left out of the rates and of the targets' pixel counts, which measure the rest (their "
        "centroids place the whole targets): T3 (2 pixels)"]
    keep = ~np.isnan(scores) & valid
    assert report["n_target_pixels"] == truth.sum() - 3
    assert report["n_unscored_target_pixels"] == 1
    assert report["n_unevaluated_target_pixels"] == 2
    assert report["n_background_pixels"] == truth.size - truth.sum() - 15
    assert report["n_excluded_pixels"] == 18
    third = report["targets"][2]
    assert third["pixels"] == 8 and (third["centroid_row"], third["centroid_col"]) == (42, 30.5)
    assert report["auc"] == pytest.approx(roc_auc_score(truth[keep], scores[keep]), abs=1e-12)
    assert report["targets"][0]["pixels"] == 11
    valid[40:45, 30:32] = False                  # all of T3 unknown: neither found nor missed
    with pytest.warns(HsanomalyWarning, match=r"10 target pixels have no known class .*: T3"):
        report = evaluate(scores, truth, valid=valid)
    assert report["n_targets"] == 2 and [t["id"] for t in report["targets"]] == ["T1", "T2"]


@pytest.mark.parametrize("far", [0.29, 0.57, 0.58])
def test_a_rate_that_allows_a_whole_number_of_false_alarms_allows_that_many(far, tmp_path):
    """0.29 x 100 is 28.999... in floats: Pd at 0.29 ignored the threshold with 29 of 100
    false alarms, and the --far threshold let 28 of 100 pixels above it instead of 29 (in
    memory, and from a heatmap file, as detect --polygons reads it)."""
    from hsanomaly.thresholds import threshold_from_far

    allowed = round(far * 100)
    background = np.arange(100.0)                     # the top `allowed` lie above the targets
    targets = np.full(5, 100 - allowed - 0.5)
    curve = roc_curve(targets, background)
    assert curve.pd_at(far) == 1.0
    heat = write_raster(tmp_path / "heat.tif", background.reshape(1, 10, 10).astype(np.float32))
    for heatmap in (background.reshape(10, 10), str(heat)):
        assert (background > threshold_from_far(heatmap, far)).sum() == allowed


def test_targets_are_8_connected_and_numbered_in_row_major_order():
    truth = np.zeros((6, 6), np.uint8)
    truth[0, 4] = 1                  # T1, first in row-major order although right of T2
    truth[1, 0] = truth[2, 1] = 1    # T2, joined diagonally
    truth[4:6, 3] = 1                # T3
    labels, n = label_targets(truth)
    assert n == 3
    assert labels[0, 4] == 1 and labels[1, 0] == labels[2, 1] == 2 and labels[5, 3] == 3


def test_per_target_metrics_compare_each_target_with_all_background():
    scores, truth = scene()
    report = evaluate(scores, truth)
    labels, _ = label_targets(truth)
    assert [t["id"] for t in report["targets"]] == ["T1", "T2", "T3"]
    assert report["n_targets"] == 3
    background = truth == 0
    for k, target in enumerate(report["targets"], start=1):
        mine = labels == k
        keep = mine | background
        assert target["pixels"] == mine.sum()
        assert target["auc"] == pytest.approx(roc_auc_score(mine[keep], scores[keep]), abs=1e-12)
        assert target["log_auc"] == pytest.approx(
            roc_curve(scores[mine], scores[background]).log_auc)
        assert target["max_score"] == pytest.approx(scores[mine].max())
        rows, cols = np.nonzero(mine)
        assert (target["centroid_row"], target["centroid_col"]) == (rows.mean(), cols.mean())
    assert report["targets"][1]["pixels"] == 3        # the diagonal line is one target
    assert report["lg_far"] == pytest.approx(min(t["lg_far"] for t in report["targets"]))
    assert report["pd_far"] == 0.001
    assert report["pd"] == pytest.approx(roc_curve(scores[truth > 0], scores[background]).pd_at())
    assert report["targets"][0]["pd"] == pytest.approx(
        roc_curve(scores[labels == 1], scores[background]).pd_at())


def test_target_without_scored_pixels_has_no_metrics():
    scores, truth = scene()
    scores[40:45, 30:32] = np.nan    # all of T3
    with pytest.warns(match=r"10 target pixels have no score .*: T3 \(10 pixels\)"):
        report = evaluate(scores, truth)
    assert report["n_unscored_target_pixels"] == 10
    t3 = report["targets"][2]
    assert t3["pixels"] == 0
    assert t3["auc"] is t3["log_auc"] is t3["lg_far"] is t3["pd"] is t3["max_score"] is None
    assert t3["centroid_row"] == 42.0


def test_evaluate_needs_scored_targets_and_background():
    scores, truth = scene()
    with pytest.raises(ValueError, match="target"):
        evaluate(scores, np.zeros_like(truth))
    with pytest.raises(ValueError, match="background"):
        evaluate(np.where(truth == 1, scores, np.nan), truth)


# --- plots --------------------------------------------------------------------------------

def test_write_plots_writes_four_non_empty_pngs(tmp_path):
    scores, truth = scene()
    scores[:3, :3] = np.nan
    paths = write_plots(evaluate(scores, truth), scores, truth, tmp_path / "plots", "scene")
    assert sorted(paths) == ["heatmap", "histograms", "log_roc", "roc"]
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        p.name for p in paths.values())      # no temporary files left behind


def test_plots_of_infinite_scores_and_unscored_targets(tmp_path):
    """A histogram's bins come from the finite scores; an infinite one was a traceback, and
    the staged JSON report went with it. Its legend counts what no bin holds."""
    scores, truth = scene()
    scores[0, 0], scores[0, 1], scores[10, 50] = np.inf, -np.inf, np.nan
    with pytest.warns(match="has no score"):
        report = evaluate(scores, truth)
    paths = write_plots(report, scores, truth, tmp_path / "plots", "scene")
    assert all(path.stat().st_size > 5000 for path in paths.values())


def test_the_heatmap_plot_draws_an_infinite_score_in_the_top_colour_not_as_nodata(tmp_path):
    """matplotlib masks infinite values as it masks NaN: a block of infinite scores (above
    every threshold) was drawn in the nodata grey."""
    import matplotlib
    import matplotlib.colors as mc
    from PIL import Image

    from hsanomaly.evaluation.plots import NODATA_COLOUR, plot_heatmap
    from hsanomaly.quicklook import COLORMAP

    scores = np.zeros((40, 40))
    scores[:, 20:] = 1.0
    scores[5:15, 5:15] = np.inf
    plot_heatmap(scores, np.zeros((40, 40), bool), tmp_path / "heat.png")
    image = np.asarray(Image.open(tmp_path / "heat.png").convert("RGB")).astype(int)

    def count(colour):
        return int((np.abs(image - (np.array(mc.to_rgb(colour)) * 255).round()).sum(-1) <= 3)
                   .sum())

    assert count(NODATA_COLOUR) < 100 < count(matplotlib.colormaps[COLORMAP](1.0))


def test_target_outline_follows_pixel_edges():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True              # a 1x2 target: 6 unit edges around it
    segments = _pixel_outline(mask)
    assert len(segments) == 6
    assert {tuple(map(tuple, s)) for s in segments} == {
        ((0.5, 0.5), (1.5, 0.5)), ((1.5, 0.5), (2.5, 0.5)),     # top
        ((0.5, 1.5), (1.5, 1.5)), ((1.5, 1.5), (2.5, 1.5)),     # bottom
        ((0.5, 0.5), (0.5, 1.5)), ((2.5, 0.5), (2.5, 1.5))}     # left, right


# --- files and the command ----------------------------------------------------------------

NODATA = -9999.0


@pytest.fixture
def heat_and_truth(tmp_path):
    """A heatmap GeoTIFF with 6 nodata pixels, its truth raster, and the arrays behind them."""
    scores, truth = scene()
    scores[0, :6] = NODATA
    heat = write_raster(tmp_path / "heat.tif", scores[None], nodata=NODATA)
    truth_path = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    return heat, truth_path, np.where(scores == NODATA, np.nan, scores.astype(np.float32)), truth


def test_read_heatmap_turns_nodata_into_nan(heat_and_truth):
    heat, _, scores, _ = heat_and_truth
    np.testing.assert_array_equal(read_heatmap(heat), scores)


def test_multi_band_inputs_are_not_read_as_their_first_band_without_a_word(heat_and_truth, tmp_path):
    """A 2-band truth with its targets in band 2 gave "no target pixel"; a scene passed as the
    heatmap gave an AUC from its first band, silently."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    heat, truth_path, scores, truth = heat_and_truth
    two = write_raster(tmp_path / "two.tif", np.stack([np.zeros_like(truth), truth]).astype(np.float32))
    with pytest.raises(HsanomalyError, match="two.tif: a mask must have one band, this raster has 2; "
                                             r"pick the one meant \(gdal_translate -b N\)"):
        hsanomaly.evaluate(heat, two)
    stacked = write_raster(tmp_path / "stack.tif", np.stack([np.nan_to_num(scores)] * 3))
    with pytest.warns(HsanomalyWarning, match="stack.tif: has 3 bands; the first is read as the "
                                              "scores"):
        read_heatmap(stacked)


def test_cli_prints_summary_and_writes_report_and_plots(heat_and_truth, tmp_path):
    heat, truth_path, scores, truth = heat_and_truth
    outer = truth.copy()
    outer[9:14, 49:55] = 1
    outer_path = write_raster(tmp_path / "outer.tif", outer[None].astype(np.float32))
    result = CliRunner().invoke(evaluate_command, [
        str(heat), str(truth_path), "--outer-mask", str(outer_path),
        "--plots", str(tmp_path / "plots"), "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    expected = evaluate(scores, truth, outer_mask=outer)
    assert report["auc"] == pytest.approx(expected["auc"])
    assert report["n_excluded_pixels"] == 6 + 18
    assert f"AUC {expected['auc']:.4f}" in result.output
    assert f"Pd {expected['pd']:.4f} at a false-alarm rate of 0.001" in result.output
    assert report["pd"] == pytest.approx(expected["pd"])
    assert all(f"T{k} " in result.output for k in (1, 2, 3))
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4


def test_cli_replaces_its_own_report_and_plots_and_nothing_else(heat_and_truth, tmp_path):
    heat, truth_path, _, _ = heat_and_truth
    args = [str(heat), str(truth_path), "--plots", str(tmp_path / "plots"),
            "--json", str(tmp_path / "report.json")]
    for _ in range(2):                                     # a rerun replaces the first run's files
        result = CliRunner().invoke(evaluate_command, args)
        assert result.exit_code == 0, result.output
    (tmp_path / "notes.json").write_text('{"mine": true}')
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "roc.png").write_bytes(b"a user's picture")
    for extra, fragment in ((["--json", str(tmp_path / "notes.json")],
                             "notes.json: --json exists and is not an evaluation report"),
                            (["--plots", str(tmp_path / "mine")],
                             "roc.png: --plots (roc.png) exists and is not a plot")):
        result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), *extra])
        assert result.exit_code != 0
        assert fragment in str(result.exception) and "--overwrite" in str(result.exception)
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["roc.png"]
    result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--json",
                                                   str(tmp_path / "notes.json"), "--overwrite"])
    assert result.exit_code == 0 and "auc" in json.loads((tmp_path / "notes.json").read_text())


def test_json_dash_writes_the_report_to_stdout_and_the_summary_to_stderr(heat_and_truth,
                                                                          tmp_path,
                                                                          monkeypatch):
    """``--json -`` wrote a file named "-"; a pipe to jq needs the JSON alone on stdout.
    ``--json /dev/stdout`` (a link) was refused as an output, written whole and renamed."""
    import os

    heat, truth_path, _, _ = heat_and_truth
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--json", "r.json"])
    for name in ("-", "/dev/stdout"):
        result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--json", name])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads((tmp_path / "r.json").read_text())
        assert result.stderr.startswith("AUC ") and not (tmp_path / "-").exists()
    assert os.path.islink("/dev/stdout")


def run_failing(args):
    result = CliRunner().invoke(evaluate_command, [str(a) for a in args])
    assert result.exit_code != 0
    assert isinstance(result.exception, HsanomalyError), result.output
    return str(result.exception)


def test_cli_missing_file(heat_and_truth, tmp_path):
    heat, truth_path, _, _ = heat_and_truth
    assert run_failing([tmp_path / "nope.tif", truth_path]) == f"{tmp_path / 'nope.tif'}: file not found"
    assert "nope.tif: file not found" in run_failing([heat, tmp_path / "nope.tif"])


def test_cli_not_a_raster(heat_and_truth, tmp_path):
    _, truth_path, _, _ = heat_and_truth
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    assert run_failing([text, truth_path]).startswith(f"{text}: not a raster")


@pytest.mark.parametrize("option", [None, "--outer-mask"])
def test_cli_shape_mismatch_names_the_mask(heat_and_truth, tmp_path, option):
    heat, truth_path, _, truth = heat_and_truth
    small = write_raster(tmp_path / "small.tif", truth[None, :30, :30].astype(np.float32))
    args = [heat, small] if option is None else [heat, truth_path, option, small]
    message = run_failing(args)
    assert message.startswith(str(small)) and "30x30" in message and "60x80" in message


@pytest.mark.parametrize("option", [None, "--outer-mask"])
def test_cli_refuses_a_mask_on_another_grid(heat_and_truth, tmp_path, option):
    """Same size, another place: a mask cut for a neighbouring window (shifted 10 pixels),
    resampled to another pixel size, or in another CRS would score the wrong pixels."""
    from affine import Affine
    from rasterio.crs import CRS

    from synthetic import TRANSFORM

    heat, truth_path, _, truth = heat_and_truth
    cases = [(dict(transform=TRANSFORM * Affine.translation(10, 0)), "not on the grid"),
             (dict(transform=TRANSFORM * Affine.scale(2)), "not on the grid"),
             (dict(crs=CRS.from_epsg(4326)), "EPSG:4326")]
    for i, (where, fragment) in enumerate(cases):
        other = write_raster(tmp_path / f"other{i}.tif", truth[None].astype(np.float32), **where)
        args = [heat, other] if option is None else [heat, truth_path, option, other]
        message = run_failing(args)
        assert message.startswith(str(other)) and fragment in message and str(heat) in message
    # a mask without georeferencing (a .mat's, a plain image) is taken as on the grid, and
    # said to be (it was silently)
    plain = write_raster(tmp_path / "plain.tif", truth[None].astype(np.float32), crs=None,
                         transform=Affine.identity())
    with pytest.warns(HsanomalyWarning, match=f"{plain}: the mask has no georeferencing, so "
                      f"nothing checks that the mask lies on the grid of {heat}"):
        result = CliRunner().invoke(evaluate_command, [str(heat), str(plain)])
    assert result.exit_code == 0, result.output


def test_cli_leaves_out_the_pixels_where_the_truth_is_nodata(heat_and_truth, tmp_path):
    """A truth known only inside an area (nodata 255 outside) is not read as targets there."""
    heat, _, scores, truth = heat_and_truth
    partial = truth.astype(np.float32)
    partial[:, 60:] = 255                                   # unknown: no target, no background
    path = write_raster(tmp_path / "partial.tif", partial[None], nodata=255)
    result = CliRunner().invoke(evaluate_command, [str(heat), str(path), "--json",
                                                   str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    kept = scores.copy()
    kept[:, 60:] = np.nan
    expected = evaluate(kept, truth)
    assert report["auc"] == pytest.approx(expected["auc"])
    assert report["n_excluded_pixels"] == 6 + 60 * 20
    assert report["n_excluded_pixels"] == expected["n_excluded_pixels"]
    # nodata 0 is what a mask already reads as background: nothing is left out
    zero = write_raster(tmp_path / "zero.tif", truth[None].astype(np.float32), nodata=0)
    result = CliRunner().invoke(evaluate_command, [str(heat), str(zero), "--json",
                                                   str(tmp_path / "z.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "z.json").read_text())["n_excluded_pixels"] == 6


def test_cli_truth_without_targets_or_background(heat_and_truth, tmp_path):
    heat, _, _, truth = heat_and_truth
    empty = write_raster(tmp_path / "empty.tif", np.zeros((1, *truth.shape), np.float32))
    assert run_failing([heat, empty]) == f"{empty}: the truth mask has no target pixel (all zero)"
    # 0/255 whose nodata is 255: its targets are "all zero" only in that they are nodata
    masked = write_raster(tmp_path / "masked.tif", truth[None].astype(np.float32) * 255, nodata=255)
    assert run_failing([heat, masked]) == (f"{masked}: the truth mask has no target pixel (all "
                                           f"zero, or the mask's nodata value in "
                                           f"{int(truth.sum())} pixels)")
    full = write_raster(tmp_path / "full.tif", np.ones((1, *truth.shape), np.float32))
    assert run_failing([heat, full]) == f"{full}: the truth mask has no background (no zero pixel)"
    truth_path = heat_and_truth[1]       # the two given the wrong way round: said, as likely
    assert run_failing([truth_path, heat]) == (
        f"{heat}: the truth mask has no background (no zero pixel); the heatmap holds two "
        "values at most, as a mask does: are the heatmap and the truth given the wrong way "
        "round?")


def test_cli_plots_dir_not_creatable_and_json_dir_missing(heat_and_truth, tmp_path):
    heat, truth_path, _, _ = heat_and_truth
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_failing([heat, truth_path, "--plots", blocker / "plots"]) == (
        f"{blocker / 'plots'}: cannot create --plots ({blocker} is not a writable directory)")
    missing = tmp_path / "missing" / "report.json"
    assert "does not exist" in run_failing([heat, truth_path, "--json", missing])
    assert not missing.parent.exists()
    # the report at the plots' folder, or the folder in the report: refused before the work
    for report, plots in (("r.json", "r.json"), ("out", "out/plots")):
        assert run_failing([heat, truth_path, "--json", tmp_path / report, "--plots",
                            tmp_path / plots]) == \
            f"{tmp_path / report}: --json collides with --plots ({tmp_path / plots}); give " \
            "each output its own name"
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()


def test_outer_is_a_deprecated_name_for_outer_mask_as_in_the_library(heat_and_truth, tmp_path):
    """``--outer`` was a silent alias of ``--outer-mask``, where detect's ``--outer`` is a
    ring's window and the library's ``outer=`` was deprecated for ``outer_mask=``."""
    heat, truth_path, _, _ = heat_and_truth
    with pytest.warns(HsanomalyDeprecationWarning,
                      match="--outer: evaluate calls it --outer-mask now; its former name goes"):
        result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--outer",
                                                       str(truth_path)])
    assert result.exit_code == 0, result.output
    for extra, told in ((["--outer-mask", str(truth_path)], "give one of them"),
                        ([], "a file; detect's --outer is a ring's window")):
        result = CliRunner().invoke(evaluate_command, [str(heat), str(truth_path), "--outer",
                                                       str(truth_path) if extra else "15", *extra])
        assert result.exit_code == 2 and told in result.output, result.output
    assert "--outer " not in CliRunner().invoke(evaluate_command, ["--help"]).output


def test_plots_dash_is_refused_not_made_a_folder(heat_and_truth, tmp_path, monkeypatch):
    """``--plots -`` made a folder named '-' and drew into it."""
    heat, truth_path, _, _ = heat_and_truth
    monkeypatch.chdir(tmp_path)
    assert run_failing([heat, truth_path, "--plots", "-"]).startswith(
        "-: --plots is a folder; '-' (standard output) cannot hold its files")
    assert not (tmp_path / "-").exists()


def test_a_mask_of_another_size_than_the_heatmap_is_refused(heat_and_truth, tmp_path):
    import hsanomaly

    heat, _, scores, truth = heat_and_truth
    small = write_raster(tmp_path / "small.tif", truth[None, :-1].astype(np.float32))
    rows, cols = scores.shape
    with pytest.raises(HsanomalyError, match=f"small.tif: the mask is {rows - 1}x{cols} pixels, "
                                             f"the heatmap is {rows}x{cols}"):
        hsanomaly.evaluate(heat, small)


def test_nan_in_an_array_truth_is_unknown_not_a_target():
    """NaN != 0: the array evaluate counted NaN truth pixels as targets (51 for 1), where a
    truth file's nodata is left out."""
    scores = np.arange(100, dtype=np.float64).reshape(10, 10)
    truth = np.zeros((10, 10))
    truth[9, 9] = 1
    truth[:5] = np.nan
    report = evaluate(scores, truth)
    assert report["n_target_pixels"] == 1 and report["auc"] == 1.0
    cropped = evaluate(scores[5:], truth[5:])
    assert report["n_excluded_pixels"] == 50
    # detect's rate is a share of every scored pixel: the unknown ones count there
    assert report["pd_detect_far"] == cropped["pd_detect_far"] / 2
    left = ("targets", "n_excluded_pixels", "pd_detect_far")
    assert {k: v for k, v in report.items() if k not in left} == \
        {k: v for k, v in cropped.items() if k not in left}


def test_unscored_targets_are_said_of_the_heatmap_file(tmp_path):
    """The warning named neither file: '1 target pixels have no score ...: T1 1'."""
    import hsanomaly

    scores, truth = scene()
    scores[10, 50] = NODATA                      # one T1 pixel without a score
    heat = write_raster(tmp_path / "heat.tif", scores[None], nodata=NODATA)
    truth_path = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    with pytest.warns(HsanomalyWarning, match=rf"^{re.escape(str(heat))}: 1 target pixel has no "
                                              r"score .*: T1 \(1 pixel\)$"):
        hsanomaly.evaluate(heat, truth_path)


def test_the_outer_mask_has_a_name_of_its_own(heat_and_truth, tmp_path):
    """``outer`` was a ring's window size to Detector and an outer target mask to evaluate;
    the mask is ``outer_mask`` now, and its former name works for a release, with a warning."""
    import inspect

    import hsanomaly
    from hsanomaly.errors import HsanomalyDeprecationWarning

    heat, truth_path, _, truth = heat_and_truth
    outer = write_raster(tmp_path / "outer.tif", truth[None].astype(np.float32))
    report = hsanomaly.evaluate(heat, truth_path, outer_mask=outer)
    assert report["inputs"]["outer_mask"] == str(outer)
    with pytest.warns(HsanomalyDeprecationWarning, match="'outer': evaluate calls it "
                                                         "'outer_mask' now"):
        assert hsanomaly.evaluate(heat, truth_path, outer=outer)["auc"] == report["auc"]
    with pytest.raises(HsanomalyError, match="both were given"):
        hsanomaly.evaluate(heat, truth_path, outer=outer, outer_mask=outer)
    assert "outer_mask" in inspect.signature(hsanomaly.evaluate).parameters


def test_a_renamed_keyword_beside_its_argument_given_by_position_is_both_given():
    """``class_masks(scores, truth, mask, outer=mask)`` raised a TypeError naming only
    ``outer_mask``, which the caller had not written."""
    from hsanomaly.evaluation.metrics import class_masks

    scores, truth = scene()
    outer = np.zeros_like(truth)
    with pytest.raises(HsanomalyError, match=r"^'outer': class_masks calls it 'outer_mask' now, "
                                             r"and both were given; give 'outer_mask' only$"):
        class_masks(scores, truth, outer, outer=outer)
    with pytest.raises(TypeError, match="multiple values for argument 'outer_mask'"):
        class_masks(scores, truth, None, outer_mask=outer)     # not dropped: refused, as before
    with pytest.warns(HsanomalyDeprecationWarning):
        by_keyword = class_masks(scores, truth, outer=outer)
    assert all(np.array_equal(a, b) for a, b in zip(by_keyword, class_masks(scores, truth, outer)))


# --- the heatmap in memory: hsanomaly.evaluate on arrays ------------------------------------

def test_evaluate_takes_the_arrays_detector_gives_with_the_files_numbers(heat_and_truth, tmp_path):
    """A Detector's scores need not be written to a GeoTIFF to be evaluated: the same report
    as the files give (but the map: an array has none), outputs written alike."""
    import hsanomaly

    xr = pytest.importorskip("xarray")
    heat, truth_path, scores, truth = heat_and_truth
    outer = np.zeros_like(truth)
    outer[9:14, 49:55] = 1
    outer_path = write_raster(tmp_path / "outer.tif", outer[None].astype(np.float32))
    from_files = hsanomaly.evaluate(heat, truth_path, outer_mask=outer_path)
    nodata = np.isnan(scores)
    for heatmap in (scores, np.ma.masked_array(np.nan_to_num(scores), nodata),
                    xr.DataArray(scores, dims=("y", "x"))):
        report = hsanomaly.evaluate(heatmap, truth, outer_mask=outer,
                                    json=tmp_path / "r.json", plots=tmp_path / "plots",
                                    overwrite=True)
        assert report["inputs"] == {"heatmap": "<array 60x80 pixels>", "truth": "<array>",
                                    "outer_mask": "<array>"}
        assert report["crs"] is None and report["false_alarm_regions_per_km2"] is None
        for key in ("auc", "log_auc", "lg_far", "pd", "n_targets_found", "n_false_alarm_regions",
                    "n_target_pixels", "n_background_pixels", "n_excluded_pixels"):
            assert report[key] == from_files[key], key
        assert [t["auc"] for t in report["targets"]] == [t["auc"] for t in from_files["targets"]]
        assert json.loads((tmp_path / "r.json").read_text())["auc"] == report["auc"]
        assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == \
            ["heatmap.png", "histograms.png", "log_roc.png", "roc.png"]
    # a heatmap file with an array truth: the array is taken on the file's grid
    assert hsanomaly.evaluate(heat, truth)["auc"] == hsanomaly.evaluate(heat, truth_path)["auc"]
    # a DataArray that carries its placement is on the map as the file is
    from synthetic import CRS, TRANSFORM

    placed = hsanomaly.evaluate(xr.DataArray(scores, dims=("y", "x"), attrs={
        "transform": TRANSFORM, "crs": CRS}), truth, outer_mask=outer)
    assert placed["crs"] == from_files["crs"] == CRS
    assert placed["false_alarm_regions_per_km2"] == from_files["false_alarm_regions_per_km2"]
    assert [(t["centroid_x"], t["centroid_y"]) for t in placed["targets"]] == \
        [(t["centroid_x"], t["centroid_y"]) for t in from_files["targets"]]


def test_a_data_array_is_placed_by_its_coordinates_however_cut_sorted_or_ordered(
        heat_and_truth):
    """The coordinates say where each pixel lies: a heatmap sorted south-up, cut with a step
    or stored (x, y) was placed by its attributes' pixel size and first coordinate, mirroring,
    squeezing or transposing its targets; a truth cut elsewhere than the heatmap was compared
    pixel for pixel with it (a file on another grid is refused)."""
    import hsanomaly
    from affine import Affine
    from synthetic import CRS, TRANSFORM

    xr = pytest.importorskip("xarray")
    heat, truth_path, scores, truth = heat_and_truth
    rows, cols = scores.shape

    def placed(values, **kwargs):
        return xr.DataArray(values, dims=("y", "x"), attrs={"transform": TRANSFORM, "crs": CRS},
                            coords={"x": TRANSFORM.c + TRANSFORM.a * (np.arange(cols) + 0.5),
                                    "y": TRANSFORM.f + TRANSFORM.e * (np.arange(rows) + 0.5)},
                            **kwargs)

    def centres(report):
        return sorted((round(t["centroid_x"], 6), round(t["centroid_y"], 6))
                      for t in report["targets"])
    from_file = centres(hsanomaly.evaluate(heat, truth_path))
    heatmap, mask = placed(scores), placed(truth)
    for label, (h, t) in {"sorted south-up": (heatmap.sortby("y"), mask.sortby("y")),
                          "(x, y)": (heatmap.T, mask.T),
                          "heatmap (x, y) only": (heatmap.T, mask)}.items():
        assert centres(hsanomaly.evaluate(h, t)) == from_file, label
    found = hsanomaly.find_targets(heatmap.sortby("y").T, threshold=float(np.nanmax(scores)) / 2)
    expected = hsanomaly.find_targets(heat, threshold=float(np.nanmax(scores)) / 2)
    assert found.geometry.geom_equals(expected.geometry).all()
    step = hsanomaly.find_targets(heatmap.isel(x=slice(None, None, 2)),
                                  threshold=float(np.nanmax(scores)) / 2)
    assert (step["area"] / step["pixels"]).round(6).unique().tolist() == \
        [round(2 * abs(TRANSFORM.a * TRANSFORM.e), 6)]            # pixels twice as wide
    stripped = mask.copy()
    stripped.attrs = {}                                   # coordinates alone place it too
    for other in (mask, stripped):
        with pytest.raises(HsanomalyError, match="'truth': its y coordinates are not the "
                                                 "heatmap's .* cut and order both alike"):
            hsanomaly.evaluate(heatmap.isel(y=slice(0, 40)), other.isel(y=slice(5, 45)))
    with pytest.raises(HsanomalyError, match="'outer_mask': its placement is not the heatmap's"):
        hsanomaly.evaluate(xr.DataArray(scores, dims=("y", "x"), attrs=heatmap.attrs), truth,
                           outer_mask=xr.DataArray(truth * 0, dims=("y", "x"), attrs={
                               "transform": TRANSFORM * Affine.translation(0, 3)}))
    degrees = xr.DataArray(scores, dims=("y", "x"), attrs={"crs": "EPSG:4326", "transform": (
        2e-6, 0, -117.3456, 0, -2e-6, 33.9876)}, coords={   # ~0.2 m pixels, float32 degrees
        "x": (-117.3456 + 2e-6 * (np.arange(cols) + 0.5)).astype(np.float32),
        "y": (33.9876 - 2e-6 * (np.arange(rows) + 0.5)).astype(np.float32)})
    assert len(hsanomaly.find_targets(degrees, threshold=float(np.nanmax(scores)) / 2))
    assert hsanomaly.evaluate(degrees, degrees.copy(data=truth))["auc"] == \
        hsanomaly.evaluate(heat, truth_path)["auc"]
    utm = xr.DataArray(scores, dims=("y", "x"), coords={    # 0.5 m pixels, float32 metres
        "x": (4.5e6 + 0.5 * (np.arange(cols) + 0.5)).astype(np.float32),
        "y": (5e6 - 0.5 * (np.arange(rows) + 0.5)).astype(np.float32)})
    with pytest.raises(HsanomalyError, match="its x coordinates are not the heatmap's"):
        hsanomaly.evaluate(utm.isel(x=slice(0, cols - 1)),        # a pixel apart, rounded
                           utm.copy(data=truth).isel(x=slice(1, cols)))
    with pytest.raises(HsanomalyError, match="its y coordinates are not evenly spaced"):
        hsanomaly.find_targets(heatmap.isel(y=[*range(20), *range(21, 60)]), far=0.01)


def test_a_truth_array_masked_or_nan_is_unknown_there(heat_and_truth):
    """And a DataArray's fill value, as an unmasked rioxarray read carries a file's nodata
    (its 255s were targets)."""
    import hsanomaly

    xr = pytest.importorskip("xarray")
    _, _, scores, truth = heat_and_truth
    unknown = np.zeros(truth.shape, bool)
    unknown[30:, :] = True                    # T3 (rows 40-44) unknown: two targets left
    as_nan = np.where(unknown, np.nan, truth.astype(np.float32))
    filled = xr.DataArray(np.where(unknown, 255, truth).astype(np.uint8), dims=("y", "x"),
                          attrs={"_FillValue": 255})
    for given in (as_nan, np.ma.masked_array(truth, unknown), filled):
        report = hsanomaly.evaluate(scores, given)
        assert report["n_targets"] == 2
        assert report["n_excluded_pixels"] == unknown.sum() + np.isnan(scores[~unknown]).sum()


def test_arrays_that_cannot_be_evaluated_are_refused_in_one_line(heat_and_truth):
    import hsanomaly

    heat, truth_path, scores, truth = heat_and_truth
    cases = [((scores, truth_path), r"'truth': a file \(.*truth.tif\), but the heatmap is an "
                                    "array, so nothing places the file's pixels on it"),
             ((scores[:5], truth), "the truth array is 60x80 pixels, the heatmap 5x80 pixels"),
             ((heat, truth[:5]), "the truth array is 5x80 pixels, the heatmap 60x80 pixels"),
             ((scores, np.zeros_like(truth)), "the truth array: it has no target pixel"),
             ((scores, np.full(truth.shape, np.nan)), "the truth array: every pixel is masked"),
             ((np.stack([scores] * 3), truth), r"the heatmap array: expected a \(rows, cols\) "
                                               r"array of numbers, got float32 of shape \(3, 60"),
             ((scores.astype(complex), truth), "the heatmap array: expected a .* got complex128"),
             (({}, truth), "'heatmap': expected a raster's path .* got a dict; or an array")]
    for args, message in cases:
        with pytest.raises(HsanomalyError, match=message):
            hsanomaly.evaluate(*args)
    # lists are arrays, as numpy reads them
    assert hsanomaly.evaluate(scores, truth.tolist())["auc"] == \
        hsanomaly.evaluate(scores, truth)["auc"]


def test_the_summary_counts_read_right():
    """"1 target pixels in 1 targets" after the changelog said counts read right."""
    from hsanomaly import evaluate as hsanomaly_evaluate
    from hsanomaly.evaluation.files import format_summary

    scores = np.arange(100, dtype=np.float32).reshape(10, 10)
    truth = np.zeros((10, 10), np.uint8)
    truth[9, 9] = 1
    lines = format_summary(hsanomaly_evaluate(scores, truth)).splitlines()
    assert lines[1] == "1 target pixel in 1 target, 99 background pixels, 0 excluded"
    truth[0, :2] = 1
    lines = format_summary(hsanomaly_evaluate(scores, truth)).splitlines()
    assert lines[1] == "3 target pixels in 2 targets, 97 background pixels, 0 excluded"


def test_a_title_reaches_every_plot_and_the_package_lists_its_lazy_names(tmp_path, monkeypatch):
    """``evaluate(title=)`` and ``dir(hsanomaly)`` had no test."""
    import hsanomaly
    import hsanomaly.evaluation.plots as plots

    titles = []
    for name, at in (("plot_roc", 2), ("plot_log_roc", 2), ("plot_histograms", 3)):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *args, real=real, at=at, **kw: titles.append(
            args[at]) or real(*args, **kw))
    scores = np.arange(100, dtype=np.float32).reshape(10, 10)
    truth = np.zeros((10, 10), np.uint8)
    truth[9, 9] = 1
    hsanomaly.evaluate(scores, truth, plots=tmp_path / "plots", title="flight 7")
    assert titles and all(title.startswith("flight 7") for title in titles), titles
    assert {"DetectResult", "NotFittedError", "detect", "Detector"} <= set(dir(hsanomaly))
    assert not {"TYPE_CHECKING", "importlib", "_WHERE"} & set(dir(hsanomaly))


def test_a_truth_with_negative_values_is_warned_about(heat_and_truth, tmp_path):
    """-1 (a common "unknown" code) counts as a target under "non-zero = target": 200 such
    pixels took the AUC from 0.86 to 0.51 without a word. It is said, with the nodata to
    declare; declared, the pixels are left out and nothing is said."""
    import warnings

    import hsanomaly

    heat, _, _, truth = heat_and_truth
    labelled = truth.astype(np.int16)
    labelled[40:50, 0:20] = -1
    path = write_raster(tmp_path / "truth.tif", labelled[None], dtype="int16")
    with pytest.warns(HsanomalyWarning, match=r"truth.tif: 200 pixels of the mask hold negative "
                                              r"values \(-1 the commonest\), which count as "
                                              r"non-zero \(1\); if -1 means unknown, declare it "
                                              r"nodata \(gdal_edit.py -a_nodata -1\)"):
        hsanomaly.evaluate(heat, path)
    declared = write_raster(tmp_path / "declared.tif", labelled[None], dtype="int16", nodata=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.evaluate(heat, declared)
        # an exclusion mask leaves -1 out as it would nodata: nothing to say
        from hsanomaly.io.scene import read_exclusion

        assert read_exclusion(path, labelled.shape, None)[40:50, 0:20].all()


def test_negative_values_of_a_truth_array_or_mat_file_are_warned_about(heat_and_truth, tmp_path):
    """As a raster's (above): -1 in a truth array or a .mat truth counted as a target without
    a word; each is told how its kind of input marks a pixel unknown, and once it is marked
    so, nothing is said."""
    import warnings

    import scipy.io

    import hsanomaly

    heat, _, _, truth = heat_and_truth
    labelled = truth.astype(np.int16)
    labelled[40:50, 0:20] = -1
    with pytest.warns(HsanomalyWarning, match=r"the truth array: 200 pixels of the mask hold "
                                              r"negative values \(-1 the commonest\).*if -1 "
                                              r"means unknown, mask them \(numpy.ma.masked_equal"):
        hsanomaly.evaluate(heat, labelled)
    mat = tmp_path / "truth.mat"
    scipy.io.savemat(mat, {"map": labelled.astype(np.float64)})
    with pytest.warns(HsanomalyWarning, match=r"truth.mat: 200 pixels of the mask hold negative "
                                              r"values.*set those pixels to NaN in the file"):
        hsanomaly.io.read_truth(mat)
    unknown = labelled.astype(np.float64)
    unknown[unknown < 0] = np.nan
    scipy.io.savemat(mat, {"map": unknown})
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.evaluate(heat, np.ma.masked_equal(labelled, -1))
        gt, known = hsanomaly.io.read_truth(mat)
    assert not known[40:50, 0:20].any() and known.sum() == labelled.size - 200


def test_a_truth_cut_like_a_rotated_heatmap_but_placed_by_its_attribute_is_told_why():
    """Cut alike, a heatmap (its row/col numbers follow the cut) and a truth placed by a
    transform attribute alone (the whole grid's) disagree: the refusal said "cut and order both
    alike", which the user had done, and left out the grids' rotation."""
    xr = pytest.importorskip("xarray")
    from affine import Affine

    import hsanomaly

    transform = Affine.translation(5e5, 4e6) @ Affine.rotation(30) @ Affine.scale(2, -2)
    cube = np.random.default_rng(0).random((5, 30, 40))
    heat = hsanomaly.Detector("rx").fit_score(xr.DataArray(
        cube, dims=("band", "y", "x"), attrs={"transform": transform}))
    truth = xr.DataArray(np.zeros((30, 40), np.uint8), dims=("y", "x"),
                         attrs={"transform": transform})
    truth[12, 20] = 1
    with pytest.raises(HsanomalyError, match=r"'truth': its placement is not the heatmap's "
                                             r"\(pixel \S+ x -\S+ at 500000, 4000000, rotated by .* "
                                             r"against .*\); its transform attribute places the "
                                             r"whole grid and no coordinates say where a cut of "
                                             r"it lies: pass it uncut$"):    # x/y cannot
        hsanomaly.evaluate(heat.isel(y=slice(5, None)), truth.isel(y=slice(5, None)))
    assert hsanomaly.evaluate(heat, truth)["auc"] > 0


def test_pd_at_a_rate_the_background_cannot_resolve_is_said():
    """With 397 background pixels a rate of 0.001 allows no false alarm: "Pd at 0.001" was Pd
    at none, unsaid (0.0 there, 1.0 at 0.003)."""
    import hsanomaly

    scores = np.arange(400, dtype=np.float32).reshape(20, 20)
    truth = np.zeros((20, 20), np.uint8)
    truth.flat[[396, 397, 398]] = 1                 # below the highest background pixel
    with pytest.warns(HsanomalyWarning, match=r"<array 20x20 pixels>: 397 background pixels allow "
                                              r"no false alarm at a rate of 0.001 \(the finest "
                                              r"they resolve is 0.0025\), so Pd and the targets "
                                              r"found are those at no false alarm"):
        report = hsanomaly.evaluate(scores, truth)
    assert report["pd"] == 0.0 and hsanomaly.evaluate(scores, truth, pd_far=0.003)["pd"] == 1.0


def test_a_large_heatmaps_picture_is_drawn_from_block_maxima(tmp_path, monkeypatch):
    """The heatmap plot drew every pixel of the map (a float64 copy, a masked copy and
    matplotlib's buffers of it: `evaluate --plots` took half as much memory again as the
    check before it allowed); the picture is about a thousand pixels wide."""
    from hsanomaly.evaluation import plots

    scores = np.zeros((40, 100), np.float32)
    scores[:8] = np.nan                      # nodata blocks stay nodata
    scores[21, 57] = 9.0                     # a one-pixel target is not sampled away
    shown = plots.block_maxima(scores, 25)      # the quick look's: one picture for both
    assert shown.shape == (10, 25) and np.isnan(shown[:2]).all() and not np.isnan(shown[2:]).any()
    assert shown[5, 14] == 9.0 and np.count_nonzero(shown == 9.0) == 1
    assert plots.block_maxima(scores, 100) is scores
    drawn = []
    monkeypatch.setattr(plots, "MAX_SIZE", 25)
    monkeypatch.setattr(plots, "save_png", lambda fig, path, stage=None: drawn.append(fig))
    truth = np.zeros((40, 100), np.uint8)
    truth[21, 57] = 1
    plots.plot_heatmap(scores, truth, tmp_path / "heatmap.png")
    image = drawn[0].axes[0].images[0]
    assert image.get_array().shape == (10, 25)
    assert image.get_extent() == [-0.5, 99.5, 39.5, -0.5]   # outlines stay on pixel edges


def test_a_report_says_which_heatmap_and_masks_it_measured(tmp_path, example_scene):
    """Two reports of different heatmaps at one path were told apart by nothing: the report
    recorded the paths as typed. It records the heatmap's own tags, the masks' fingerprints
    and the version that evaluated."""
    import os

    import hsanomaly

    scene, truth = example_scene
    heat = tmp_path / "heat.tif"
    reports = []
    for score in ("rx", "gmm"):
        hsanomaly.detect(scene, heat, score=score, overwrite=True)
        reports.append(hsanomaly.evaluate(heat, truth))
    first, second = (report["provenance"] for report in reports)
    assert first["heatmap_tags"]["HSANOMALY_SCORE"] == "rx"
    assert second["heatmap_tags"]["HSANOMALY_SCORE"] == "gmm"
    assert first["truth_fingerprint"] == second["truth_fingerprint"]
    assert first["truth_fingerprint"]["size"] == os.path.getsize(truth)
    assert first["heatmap_fingerprint"] != second["heatmap_fingerprint"]
    assert first["hsanomaly_version"] == hsanomaly.__version__


def test_the_json_report_of_an_infinite_score_is_strict_json(tmp_path):
    """A target scoring +inf (detect keeps such scores, with a warning) was written as the
    token Infinity: strict parsers refuse it and jq 1.6 reads the largest float."""
    import json

    import hsanomaly

    scores = np.random.default_rng(0).normal(size=(30, 30)).astype(np.float32)
    scores[5, 5] = np.inf
    truth = np.zeros((30, 30), np.uint8)
    truth[5, 5] = truth[20, 20] = 1
    report = hsanomaly.evaluate(scores, truth, json=tmp_path / "r.json")

    def refuse(constant):
        raise ValueError(constant)

    written = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert report["targets"][0]["max_score"] == np.inf          # the report itself keeps it
    assert [t["max_score"] for t in written["targets"]][:1] == ["inf"]
    assert written["auc"] == report["auc"]


def test_plots_of_many_targets_and_long_names_keep_their_figures_in_sight():
    """A ROC legend of 58 targets (abu-beach-2) covered half the plot, and from about 60 ran
    off the figure; a long heatmap name pushed the title's AUC out of it."""
    from hsanomaly.evaluation import plots

    rng = np.random.default_rng(5)
    overall = roc_curve(rng.random(60) + 0.5, rng.random(500))
    for count, named in ((plots.LEGEND_TARGETS, True), (60, False)):
        curves = {f"T{i}": roc_curve(rng.random(3) + 0.5, rng.random(500)) for i in range(count)}
        ax = plots.new_figure().subplots()
        plots._draw_curves(ax, overall, curves, log_x=False)
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert len(labels) == (count + 1 if named else 1)
        assert labels[-1] == f"all AUC {overall.auc:.3f}" + ("" if named else " (thin: 60 targets)")
    name = "flight_20260514_line07_radiance_orthorectified_heatmap"
    assert plots.shortened(name) == "flight_20260514_lin…thorectified_heatmap"
    assert len(plots.shortened(name)) == plots.TITLE_NAME and plots.shortened("heat") == "heat"


def test_the_report_gives_the_detect_rate_that_draws_the_pixels_pd_counts():
    """detect's --far is a share of every scored pixel, targets among them; evaluate's Pd
    rate, one of the background's. The same 0.001 drew about half the target pixels Pd
    counted (the naming audit): the report now gives the threshold and detect's rate for it."""
    from hsanomaly.evaluation.files import format_summary
    from hsanomaly.evaluation.metrics import evaluate as metrics_evaluate
    from hsanomaly.thresholds import threshold_from_far

    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(size=(150, 140)), 2).astype(np.float32)    # ties
    truth = np.zeros(scores.shape, np.uint8)
    truth[20:26, 30:36] = truth[90:95, 100:104] = 1
    scores[truth == 1] += 2.5
    scores[:10, :10] = np.nan                                     # nodata
    outer = np.zeros(scores.shape, bool)
    known = np.ones(scores.shape, bool)
    known[100:, :] = False                      # the outer mask's nodata: scored, not evaluated
    scores[100:, :] += 1.0
    for pd_far, valid in ((0.001, None), (0.01, None), (0.05, None), (0.01, known)):
        report = metrics_evaluate(scores, truth, outer_mask=outer, valid=valid, pd_far=pd_far)
        threshold = report["pd_threshold"]
        printed = float(f"{report['pd_detect_far']:.12g}")
        drawn = scores > threshold_from_far(scores, printed)
        assert threshold_from_far(scores, report["pd_detect_far"]) == threshold
        assert drawn.sum() == (scores > threshold).sum()
        assert (drawn & (truth == 1)).sum() == round(report["pd"] * report["n_target_pixels"])
        assert (drawn & (truth == 0) & (valid if valid is not None else True)).sum() <= \
            pd_far * report["n_background_pixels"]
        summary = format_summary(report)
        assert f" (detect's far={printed:.12g} draws the same pixels here; on another raster, " \
            "a rate carries over where a threshold does not)" in summary
        # the threshold as printed, typed back, draws the same pixels: it is a background
        # pixel's score, which six digits rounded below (the targets audit's F01)
        typed = float(summary.split("; above ")[1].split(" ")[0])
        assert ((scores > typed) == (scores > threshold)).all()


def test_plots_look_alike_whatever_the_callers_matplotlib_settings(heat_and_truth, tmp_path):
    """A notebook's rcParams reached the plots: text.usetex without LaTeX failed them after
    the evaluation, a dark style changed them. The caller's settings are left as they were."""
    import matplotlib

    import hsanomaly

    heat, truth_path, _, _ = heat_and_truth
    hsanomaly.evaluate(heat, truth_path, plots=tmp_path / "plain")
    with matplotlib.rc_context({"text.usetex": True, "axes.facecolor": "black",
                                "lines.linewidth": 7}):
        hsanomaly.evaluate(heat, truth_path, plots=tmp_path / "styled")
        assert matplotlib.rcParams["text.usetex"] and matplotlib.rcParams["lines.linewidth"] == 7
    for picture in sorted(p.name for p in (tmp_path / "plain").iterdir()):
        assert (tmp_path / "plain" / picture).read_bytes() == \
            (tmp_path / "styled" / picture).read_bytes(), picture


def test_per_target_curves_differ_by_more_than_colour():
    """T1 and T11 were one blue, and colours alone part few curves for a colour-blind reader:
    each curve has a colour and a line style, no two of the first twenty the same pair."""
    from matplotlib.figure import Figure

    from hsanomaly.evaluation.metrics import roc_curve
    from hsanomaly.evaluation.plots import _draw_curves

    rng = np.random.default_rng(0)
    curves = {f"T{k}": roc_curve(rng.random(3) + 0.5, rng.random(200)) for k in range(1, 21)}
    ax = Figure().subplots()
    _draw_curves(ax, curves["T1"], curves, log_x=False)
    drawn = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()[:20]]
    assert len(set(drawn)) == 20 and len({style for _, style in drawn}) > 1
    # a figure comparing methods names its thick curve (the thesis's were all called "all")
    ax = Figure().subplots()
    _draw_curves(ax, curves["T1"], {"critic": curves["T2"]}, log_x=False, name="recon")
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1].startswith("recon AUC ")


@pytest.mark.parametrize("scale", [0.5, -0.5])
def test_a_heatmap_stored_as_scaled_integers_reads_as_its_scores(tmp_path, scale):
    """A heatmap quantised to uint16 with a band scale and offset was read as its stored
    counts: a negative scale reversed the ranking (AUC 0.82 read as 0.18), and thresholds,
    targets and quick looks were in counts."""
    import hsanomaly

    rng = np.random.default_rng(0)
    scores = rng.normal(100, 5, (40, 50))
    truth = np.zeros((40, 50), np.uint8)
    truth[10:13, 20:23] = 1
    scores[truth == 1] += 30
    counts = np.round((scores - 20) / scale) if scale > 0 else np.round((scores - 200) / scale)
    offset = 20 if scale > 0 else 200
    plain = write_raster(tmp_path / "plain.tif", (counts * scale + offset)[None])
    stored = write_raster(tmp_path / "stored.tif", counts[None], dtype="uint16")
    with rasterio.open(stored, "r+") as ds:
        ds.scales, ds.offsets = (scale,), (offset,)
    mask = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    assert np.array_equal(read_heatmap(stored), read_heatmap(plain))
    assert hsanomaly.evaluate(stored, mask)["auc"] == hsanomaly.evaluate(plain, mask)["auc"] > 0.99
    found = hsanomaly.find_targets(stored, threshold=120)
    assert len(found) == 1 and found["threshold"].iloc[0] == 120
    assert found["max_score"].iloc[0] == hsanomaly.find_targets(plain, threshold=120)[
        "max_score"].iloc[0]
    assert np.array_equal(hsanomaly.find_targets(stored, far=0.01)["pixels"],
                          hsanomaly.find_targets(plain, far=0.01)["pixels"])


def test_a_truth_array_of_an_x_y_heatmaps_shape_is_taken_in_its_order():
    """An (x, y, band) DataArray gives an (x, y) heatmap; evaluate turned the heatmap to rows
    of y but took a plain truth array of its shape as it was: on a square scene the truth
    was compared transposed (AUC 0.51 for 0.80), without a word. A plain array in either
    order is taken where its shape tells, refused where it cannot (a square grid)."""
    import hsanomaly

    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1, (30, 40))
    truth = np.zeros((30, 40), np.uint8)
    truth[2:5, 20:24] = 1                       # rows 2-4, columns 20-23
    scores[truth == 1] += 4
    heat = xr.DataArray(scores.T, dims=("x", "y"))            # as the caller holds it
    expected = hsanomaly.evaluate(scores, truth)["auc"]
    assert expected > 0.99
    assert hsanomaly.evaluate(heat, truth.T)["auc"] == expected        # the heatmap's order
    assert hsanomaly.evaluate(heat, truth)["auc"] == expected          # a file's, rows of y
    assert hsanomaly.evaluate(heat, xr.DataArray(truth, dims=("y", "x")))["auc"] == expected
    assert hsanomaly.evaluate(heat, truth.T, outer_mask=np.zeros((40, 30)))["auc"] == expected
    square = xr.DataArray(scores[:, :30].T, dims=("x", "y"))
    with pytest.raises(HsanomalyError, match="'truth': a plain array beside a heatmap DataArray "
                                             "in \\(x, y\\) order on a square grid"):
        hsanomaly.evaluate(square, truth[:, :30])
    assert hsanomaly.evaluate(square, xr.DataArray(truth[:, :30], dims=("y", "x")))["auc"] > 0.99


def test_truth_values_that_may_not_mean_a_target_are_said(heat_and_truth, tmp_path):
    """Every non-zero truth pixel is a target: a 255 "ignore" code beside class labels took an
    AUC from 0.84 to 0.50, a soft, smoothly resampled or JPEG-saved mask widened its targets
    (0.84 to 0.65-0.72), and a truth inverted (targets 0) gave 0.16, each without a word (the
    truth audit's F01, F02, F04). Class labels 1..k, a 0/255 mask and a declared nodata are
    as they were: nothing is said."""
    import warnings

    import hsanomaly

    heat, _, scores, truth = heat_and_truth
    labels = truth.copy()
    labels[40:45, 30:32] = 2                                  # T3, another class
    ignored = labels.copy()
    ignored[50:60, 60:80] = 255
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(truth > 0, iterations=2) & (truth == 0)
    instances = np.zeros_like(truth)
    for k in range(1, 21):                                 # 20 targets, each its own id
        instances[50 + 4 * (k % 2), 3 * k:3 * k + 2] = k
    for name, values, nodata, message in [
            ("ignored.tif", ignored, None, r"ignored.tif: the mask holds 3 values above 0 \(255 "
             r"in 200 pixels, 1 in 15 pixels, 2 in 10 pixels\), each counting as a target "
             r"\(1\); if 255 means unlabelled, declare it nodata \(gdal_edit.py -a_nodata "
             r"255\)"),
            ("soft.tif", np.where(truth > 0, 1.0, np.where(np.roll(truth, 1, 0) > 0, 0.3, 0)),
             None, r"soft.tif: the mask holds 2 values above 0 .*a soft mask, or one resampled "
             r"smoothly or saved lossy \(JPEG\)\? Set its targets to 1 and the rest to 0, or "
             r"resample it by nearest neighbour \(gdalwarp -r near\)"),
            ("labels.tif", labels, None, None), ("mask255.tif", truth * 255, None, None),
            ("jpeg.tif", np.where(truth > 0, 255, np.where(ring, np.add.outer(
                np.arange(60), np.arange(80)) % 9 + 1, 0)), None,      # noise about the edges
             r"jpeg.tif: the mask holds 10 values above 0 \(from 1 to 255\), each .*saved "
             r"lossy \(JPEG\)\?.*"),          # many values by their range (the faces audit's F03)
            ("instances.tif", instances, None, None),         # one id a target (review 2's F04)
            ("ids255.tif", np.where((instances == 0) & (np.roll(instances, 1, 1) > 0), 255,
                                    instances), None,   # an ignore ring beside each id (F02 of
             r"ids255.tif: the mask holds 21 values above 0 \(from 1 to 255\), .*if 255 means "
             r"unlabelled, declare "
             r"it nodata \(gdal_edit.py -a_nodata 255\)"),                  # the 2nd review)
            ("declared.tif", ignored, 255, None),
            ("inverted.tif", 1 - truth, None, r"inverted.tif: 99% of its labelled pixels are "
             r"targets; is it inverted \(targets 0, background non-zero\)\?")]:
        path = write_raster(tmp_path / name, values[None].astype(
            np.float32 if values.dtype.kind == "f" else np.uint8), nodata=nodata,
            dtype="float32" if values.dtype.kind == "f" else "uint8")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = hsanomaly.evaluate(heat, path)
        told = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)
                and str(w.message).startswith(str(path))]        # not the heatmap's
        if message is None:
            assert told == [], (name, told)
        else:
            assert len(told) == 1 and re.search(f"^{tmp_path}/{message}$", told[0]), told
        known = np.ones(truth.shape, bool) if nodata is None else values != nodata
        known &= np.isfinite(scores)
        assert report["auc"] == pytest.approx(roc_auc_score(values[known] != 0, scores[known]))
    with pytest.warns(HsanomalyWarning, match=r"the truth array: the mask holds 2 values above "
                      r"0 \(255 in 200 pixels, 1 in 25 pixels\).*if 255 means unlabelled, mask "
                      r"them \(numpy.ma.masked_equal\(mask, 255\)\)"):
        hsanomaly.evaluate(heat, np.where(ignored == 255, 255, truth))


def test_a_truth_data_array_lies_where_its_coordinates_say_beside_a_heatmap_file(
        heat_and_truth):
    """A truth DataArray beside a heatmap file was taken on its shape: sorted south-up, as
    netCDF often holds it, it gave AUC 0.55 for 0.84; placed 30 pixels away, it was scored
    (the truth audit's F03). A heatmap DataArray already checked them."""
    xr = pytest.importorskip("xarray")
    import hsanomaly
    from synthetic import TRANSFORM

    heat, _, scores, truth = heat_and_truth
    rows, cols = truth.shape
    y = TRANSFORM.f + TRANSFORM.e * (np.arange(rows) + 0.5)
    x = TRANSFORM.c + TRANSFORM.a * (np.arange(cols) + 0.5)
    placed = xr.DataArray(truth, dims=("y", "x"), coords={"y": y, "x": x})
    assert hsanomaly.evaluate(heat, placed)["auc"] == hsanomaly.evaluate(heat, truth)["auc"]
    for moved, axis in [(placed.sortby("y"), "y"), (placed.assign_coords(x=x + 30 * 2.0), "x")]:
        with pytest.raises(HsanomalyError, match=rf"'truth': its {axis} coordinates are not "
                                                 "the heatmap's"):
            hsanomaly.evaluate(heat, moved)
        with pytest.raises(HsanomalyError, match=rf"'outer_mask': its {axis} coordinates"):
            hsanomaly.evaluate(heat, truth, outer_mask=moved)
    for start in (0, 0.5):     # an array's or an unplaced raster's: no place (review 2's F05)
        counted = xr.DataArray(truth, dims=("y", "x"), coords={
            "y": np.arange(rows) + start, "x": np.arange(cols) + start})
        with pytest.warns(HsanomalyWarning, match="'truth': its coordinates count pixels from "
                                                  "0, so nothing places it on the heatmap's map"):
            assert hsanomaly.evaluate(heat, counted)["auc"] == \
                hsanomaly.evaluate(heat, truth)["auc"]


def test_a_truth_on_another_grid_is_told_the_command_that_fits_it_keeping_its_labels(
        heat_and_truth, tmp_path):
    """"Resample it onto that raster's grid" named no resampler, and a smooth one widens the
    targets (the truth audit's F02); a truth at another pixel size was told only its size."""
    import hsanomaly
    from synthetic import TRANSFORM

    heat, _, _, truth = heat_and_truth
    rows, cols = truth.shape
    fine = write_raster(tmp_path / "fine.tif", np.kron(truth, np.ones((2, 2)))[None],
                        transform=TRANSFORM * TRANSFORM.scale(0.5))
    left, top = TRANSFORM.c, TRANSFORM.f
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.evaluate(heat, fine)
    assert str(err.value).startswith(f"{fine}: the mask is not on the grid of {heat}")
    assert str(err.value).endswith(
        "resample it onto that raster's grid, by nearest neighbour, which keeps its labels: "
        f"gdalwarp -r near -t_srs EPSG:32633 -te {left:.10g} {top - 2 * rows:.10g} "
        f"{left + 2 * cols:.10g} {top:.10g} -tr 2 2 {fine} fine_on_grid.tif")


def test_the_command_that_fits_a_mask_quotes_a_crs_without_a_code(tmp_path):
    """A CRS without an EPSG code is WKT with spaces and brackets: pasted unquoted, the
    command failed ("missing [", review 2's F02)."""
    import shlex

    from rasterio.crs import CRS as RasterioCRS

    from hsanomaly.io.scene import check_same_grid
    from synthetic import TRANSFORM

    crs = RasterioCRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15.5 +k=0.9996 +x_0=500000 "
                                 "+y_0=0 +datum=WGS84 +units=m +no_defs")
    grid = write_raster(tmp_path / "heat.tif", np.zeros((1, 8, 8)), crs=crs)
    mask = write_raster(tmp_path / "mask.tif", np.zeros((1, 16, 16)), crs=crs,
                        transform=TRANSFORM * TRANSFORM.scale(0.5))
    with pytest.raises(HsanomalyError) as err:
        check_same_grid(mask, grid)
    words = shlex.split(str(err.value).split("keeps its labels: ")[1])
    with rasterio.open(grid) as ds:                     # as the file holds it
        assert words[:4] == ["gdalwarp", "-r", "near", "-t_srs"]
        assert words[4] == ds.crs.to_string() and " " in words[4]
    assert words[-2:] == [str(mask), "mask_on_grid.tif"]
