"""Evaluate through processing.run: the library's metrics, a per-target table, plots."""

import numpy as np
import pytest


def test_evaluate_reports_metrics_table_and_plots(scene, tmp_path):
    import processing
    from hsanomaly.evaluation.files import evaluate_files
    from qgis.core import QgsVectorLayer

    raster, truth = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    from hsanomaly.evaluation.files import HERE, format_summary
    from qgis.core import QgsProcessingFeedback

    log, said = QgsProcessingFeedback(), []
    log.pushInfo = said.append
    result = processing.run("hsanomaly:evaluate", {
        "HEATMAP": heatmap, "TRUTH": str(truth), "PLOTS": str(tmp_path / "plots"),
        "TARGETS": str(tmp_path / "targets.csv")}, feedback=log)
    report = evaluate_files(heatmap, str(truth))[0]
    logged = next(text for text in said if text.startswith("AUC "))   # overall and per target
    head, tail = format_summary(report).split("(detect's far=")
    assert logged.startswith(head) and logged.endswith(tail.split(HERE)[1])
    # the rate that draws what Pd counts, by Detect's field
    assert f"(detect's 'Polygon false-alarm rate (in Detect anomalies)' " \
           f"({report['pd_detect_far']:.12g}) draws the same pixels {HERE}" in logged, logged
    assert (result["AUC"], result["LOG_AUC"], result["LG_FAR"], result["PD"],
            result["N_TARGETS"]) == (report["auc"], report["log_auc"], report["lg_far"],
                                     report["pd"], 2)
    assert (result["TARGETS_FOUND"], result["FALSE_ALARM_REGIONS"],
            result["FALSE_ALARM_REGIONS_PER_KM2"]) == (
        report["n_targets_found"], report["n_false_alarm_regions"],
        report["false_alarm_regions_per_km2"])
    assert report["false_alarm_regions_per_km2"] is not None      # EPSG:32633, metres
    # what a model chains into Detect's Threshold or FAR (it was text in the log alone)
    assert (result["PD_THRESHOLD"], result["PD_DETECT_FAR"]) == (report["pd_threshold"],
                                                                 report["pd_detect_far"])
    table = QgsVectorLayer(result["TARGETS"], "targets", "ogr")
    assert table.isValid() and not table.isSpatial()    # a CSV: attributes only
    rows = [f.attributes() for f in table.getFeatures()]
    assert [(r[0], int(r[1])) for r in rows] == [(t["id"], t["pixels"]) for t in report["targets"]]
    placed_pixels = QgsVectorLayer(processing.run("hsanomaly:evaluate", {
        "HEATMAP": heatmap, "TRUTH": str(truth),
        "TARGETS": str(tmp_path / "counted.gpkg")})["TARGETS"], "counted", "ogr")
    from qgis.PyQt.QtCore import QVariant

    assert placed_pixels.fields().field("pixels").type() in (QVariant.Int, QVariant.LongLong)
    names = table.fields().names()
    assert [float(r[names.index("pd")]) for r in rows] == pytest.approx(
        [t["pd"] for t in report["targets"]])
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == \
        ["heatmap.png", "histograms.png", "log_roc.png", "roc.png"]
    assert result["PLOTS"] == str(tmp_path / "plots")     # a model's next step takes it
    placed = QgsVectorLayer(processing.run("hsanomaly:evaluate", {
        "HEATMAP": heatmap, "TRUTH": str(truth),
        "TARGETS": str(tmp_path / "targets.gpkg")})["TARGETS"], "placed", "ogr")
    assert placed.isSpatial() and placed.crs().authid() == "EPSG:32633"
    points = {f["id"]: f.geometry().asPoint() for f in placed.getFeatures()}
    for target in report["targets"]:
        assert (points[target["id"]].x(), points[target["id"]].y()) == pytest.approx(
            (target["centroid_x"], target["centroid_y"]))
    wider = processing.run("hsanomaly:evaluate", {
        "HEATMAP": heatmap, "TRUTH": str(truth), "PD_FAR": 0.2,
        "TARGETS": str(tmp_path / "wider.csv")})
    assert wider["PD"] == evaluate_files(heatmap, str(truth), pd_far=0.2)[0]["pd"]


def test_targets_of_a_raster_without_georeferencing_lie_where_qgis_shows_it(plugin, tmp_path):
    """On the example scene (no CRS, no geotransform) the "points at the targets" had no
    geometry, though QGIS shows the raster, and Detect's polygons of it, in its pixel
    coordinates (x the column, y minus the row)."""
    import shutil

    import processing
    from qgis.core import QgsVectorLayer, QgsWkbTypes
    from synthetic import EXAMPLE, EXAMPLE_TRUTH

    scene, truth = (shutil.copy(path, tmp_path) for path in (EXAMPLE, EXAMPLE_TRUTH))
    heatmap = processing.run("hsanomaly:detect", {"INPUT": scene, "SCORE": "rx",   # QGIS writes
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    result = processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": truth,  # .aux.xml
                                                   "TARGETS": str(tmp_path / "targets.gpkg")})
    table = QgsVectorLayer(result["TARGETS"], "targets", "ogr")
    assert table.wkbType() == QgsWkbTypes.Point and not table.crs().authid()   # no CRS
    for feature in table.getFeatures():
        point = feature.geometry().asPoint()
        assert (point.x(), point.y()) == pytest.approx(
            (feature["centroid_col"] + 0.5, -(feature["centroid_row"] + 0.5)))
    assert result["N_TARGETS"] == table.featureCount() == 2


def test_evaluate_empty_truth_gives_the_library_message(scene, tmp_path):
    import processing
    import rasterio
    from qgis.core import QgsProcessingException

    raster, truth = scene
    with rasterio.open(truth) as src:
        profile = src.profile
    empty = tmp_path / "empty.tif"
    with rasterio.open(empty, "w", **profile) as dst:
        dst.write(np.zeros((1, 40, 50), np.uint8))
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(empty),
                                              "TARGETS": "TEMPORARY_OUTPUT"})
    assert str(err.value) == f"{empty}: the truth mask has no target pixel (all zero)"
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),
                                              "PD_FAR": 1.5, "TARGETS": "TEMPORARY_OUTPUT"})
    assert str(err.value) == ("'False-alarm rate at which Pd is reported' must be a false-alarm "
                              "rate in (0, 1), got 1.5")
    with pytest.raises(QgsProcessingException) as err:    # was "None: not a value ... takes"
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth)})
    assert str(err.value).endswith("Per-target metrics: required")


def test_evaluate_refuses_a_table_folder_that_does_not_exist_and_a_cancel_before_writing(
        scene, tmp_path, monkeypatch):
    """The table was checked only after the plots were written; a cancelled evaluation ran to
    the end and wrote them."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    raster, truth = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    with pytest.raises(QgsProcessingException, match="the folder of the per-target table"):
        processing.run("hsanomaly:evaluate", {
            "HEATMAP": heatmap, "TRUTH": str(truth), "PLOTS": str(tmp_path / "plots"),
            "TARGETS": str(tmp_path / "missing" / "t.gpkg")})
    monkeypatch.chdir(tmp_path)      # a relative one (a script's, a model's) went unchecked
    with pytest.raises(QgsProcessingException, match="^missing/t.gpkg: the folder of the "
                                                     "per-target table"):
        processing.run("hsanomaly:evaluate", {
            "HEATMAP": heatmap, "TRUTH": str(truth), "PLOTS": str(tmp_path / "plots"),
            "TARGETS": "missing/t.gpkg"})
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="evaluation cancelled"):
        processing.run("hsanomaly:evaluate", {
            "HEATMAP": heatmap, "TRUTH": str(truth), "PLOTS": str(tmp_path / "plots"),
            "TARGETS": str(tmp_path / "t.gpkg")}, feedback=feedback)
    assert not (tmp_path / "plots").exists()


def test_the_table_and_plots_never_replace_an_input_or_a_users_file(scene, tmp_path):
    """QGIS writes the per-target table itself, so the library never saw it: set to the truth
    GeoPackage it replaced the truth; the plots folder's dialog asks about the folder only,
    and a user's own roc.png in it was replaced."""
    import geopandas as gpd
    import processing
    import rasterio
    from qgis.core import QgsProcessingException
    from shapely.geometry import box

    raster, _ = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    truth = tmp_path / "truth.gpkg"
    with rasterio.open(heatmap) as ds:
        left, top = ds.transform @ (10, 10)
        right, bottom = ds.transform @ (14, 14)
        crs = ds.crs
    gpd.GeoDataFrame(geometry=[box(left, bottom, right, top)], crs=crs).to_file(truth,
                                                                                layer="truth")
    before = truth.read_bytes()
    with pytest.raises(QgsProcessingException, match=r"truth.gpkg: 'Per-target metrics' is the "
                                                     r"same file as the input 'Truth mask'"):
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),
                                              "TARGETS": str(truth)})
    assert truth.read_bytes() == before
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "roc.png").write_bytes(b"the user's own figure")
    with pytest.raises(QgsProcessingException, match="roc.png") as err:
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),
                                              "PLOTS": str(plots),
                                              "TARGETS": str(tmp_path / "t.csv")})
    # what the dialog can do, not "pass overwrite=True (from Python)" (the QGIS audit's F5)
    assert str(err.value).endswith("refusing to replace it (delete it or choose another "
                                   "name)"), str(err.value)
    assert (plots / "roc.png").read_bytes() == b"the user's own figure"
    processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),
                                          "PLOTS": str(tmp_path / "own"),
                                          "TARGETS": str(tmp_path / "t.csv")})
    processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),   # its own
                                          "PLOTS": str(tmp_path / "own"),             # replaced
                                          "TARGETS": str(tmp_path / "t2.csv")})
    added = processing.run("hsanomaly:evaluate", {     # a new layer of its GeoPackage: no harm
        "HEATMAP": heatmap, "TRUTH": f"{truth}|layername=truth",
        "TARGETS": f"ogr:dbname='{truth}' table=\"metrics\" (geom)"})
    assert added["N_TARGETS"] == 1
    assert sorted(gpd.list_layers(truth)["name"]) == ["metrics", "truth"]
    assert len(gpd.read_file(truth, layer="truth")) == 1


def test_a_heatmap_crs_set_only_in_qgis_is_said(scene, tmp_path):
    """Evaluate failed with "... has no CRS" against a vector truth while QGIS showed the
    heatmap's CRS, and said nothing of why (Detect says it; the QGIS audit's F3)."""
    import processing
    import rasterio
    from qgis.core import (QgsCoordinateReferenceSystem, QgsProcessingFeedback, QgsProject,
                           QgsRasterLayer)

    raster, truth = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    with rasterio.open(heatmap) as src:
        profile, data = src.profile, src.read()
    profile.update(crs=None)
    with rasterio.open(tmp_path / "bare.tif", "w", **profile) as dst:
        dst.write(data)
    layer = QgsRasterLayer(str(tmp_path / "bare.tif"), "heatmap")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    QgsProject.instance().addMapLayer(layer)
    warnings = []

    class Log(QgsProcessingFeedback):
        def pushWarning(self, text):
            warnings.append(text)

    try:
        processing.run("hsanomaly:evaluate", {"HEATMAP": layer.id(), "TRUTH": str(truth),
                                              "TARGETS": "TEMPORARY_OUTPUT"}, feedback=Log())
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    assert warnings == [
        "heatmap: its CRS (EPSG:32633) is set in QGIS, not in its file, which hsanomaly reads: "
        "vector truths and the per-target points go by the file's (none); assign the CRS to "
        "the file (Raster > Projections > Assign Projection) to use it (Anomaly heatmap)"]


def test_the_outer_mask_keeps_its_former_name_said_and_never_given_twice(scene, tmp_path):
    """Evaluate's OUTER (the outer target mask) shared its name with Detect's OUTER (the ring's
    outer window); it is OUTER_MASK now. A script that still passes OUTER gets its mask used
    and a word, not the mask dropped without one (QGIS ignores a name it does not know)."""
    import processing
    from hsanomaly.evaluation.files import evaluate_files
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    raster, truth = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]
    outer = tmp_path / "outer.tif"
    outer.write_bytes(truth.read_bytes())            # the truth itself: every target ambiguous
    expected = evaluate_files(heatmap, str(truth), str(outer))[0]
    warnings = []

    class Log(QgsProcessingFeedback):
        def pushWarning(self, text):
            warnings.append(text)

    args = {"HEATMAP": heatmap, "TRUTH": str(truth), "TARGETS": "TEMPORARY_OUTPUT"}
    now = processing.run("hsanomaly:evaluate", {**args, "OUTER_MASK": str(outer)})
    former = processing.run("hsanomaly:evaluate", {**args, "OUTER": str(outer)}, feedback=Log())
    assert now["LG_FAR"] == former["LG_FAR"] == expected["lg_far"]
    assert warnings == ["OUTER is now OUTER_MASK (Detect's OUTER is its ring's outer window); "
                        "the former name still works"]
    with pytest.raises(QgsProcessingException, match="give the outer mask once, as OUTER_MASK"):
        processing.run("hsanomaly:evaluate", {**args, "OUTER": str(outer),
                                              "OUTER_MASK": str(outer)})


def test_the_metrics_outputs_say_what_they_are(plugin):
    """The Results Viewer and the model designer showed "auc", "log_auc", "lg_far", "pd"."""
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("hsanomaly:evaluate")
    shown = {output.name(): output.description() for output in algorithm.outputDefinitions()}
    assert shown["LG_FAR"] == "lgFAR (log10 false-alarm rate at the first target pixel)"
    assert all(description != name.lower() for name, description in shown.items())


def test_evaluate_plots_leave_no_layout_objects_behind(scene, tmp_path):
    """QGIS 3.22's matplotlib (Debian's 3.6.3) kept each constrained-layout figure's layout
    grids for good (matplotlib #25819): a QGIS session grew with every Evaluate with plots."""
    import gc

    import processing

    raster, truth = scene
    heatmap = processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                  "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]

    def layout_objects():
        gc.collect()
        modules = (getattr(type(o), "__module__", None) for o in gc.get_objects())
        return sum(isinstance(module, str) and module.startswith(("matplotlib._layoutgrid",
                                                                   "kiwisolver"))
                   for module in modules)

    counts = []
    for run in range(3):
        processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": str(truth),
                                              "PLOTS": str(tmp_path / f"plots{run}"),
                                              "TARGETS": str(tmp_path / f"t{run}.csv")})
        counts.append(layout_objects())
    assert counts[2] == counts[1], counts


def test_evaluate_offers_no_cancel_it_cannot_honour_and_ends_its_progress(plugin):
    """Evaluate kept Processing's Cancel, which did nothing once the evaluation had started,
    and its progress bar never moved."""
    from qgis.core import QgsApplication, QgsProcessingAlgorithm

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("hsanomaly:evaluate")
    assert not algorithm.flags() & QgsProcessingAlgorithm.FlagCanCancel
    detect = QgsApplication.processingRegistry().createAlgorithmById("hsanomaly:detect")
    assert detect.flags() & QgsProcessingAlgorithm.FlagCanCancel
