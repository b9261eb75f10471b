"""Masks as vector layers: Evaluate and Train take target features (a file, a project layer,
a scratch or filtered layer) as they take a raster mask."""

import pytest

from synthetic import TRANSFORM


def square(row, col, size=2):
    """WKT of the square of pixels [row, row + size) x [col, col + size), by their edges."""
    x0, y0 = TRANSFORM.c + TRANSFORM.a * col, TRANSFORM.f + TRANSFORM.e * row
    x1, y1 = x0 + TRANSFORM.a * size, y0 + TRANSFORM.e * size
    return f"POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def scratch_layer(squares, name="drawn targets"):
    """A memory layer, as QGIS's "New Temporary Scratch Layer" makes, with one polygon each."""
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=kind:string", name, "memory")
    features = []
    for kind, corner, *size in squares:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(square(*corner, *size)))
        feature.setAttributes([kind])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def square_raster(like, path, row, col, size):
    """A mask raster on raster ``like``'s grid: 1 in the square of pixels at (row, col)."""
    import numpy as np
    import rasterio

    out = np.zeros((1, 40, 50), np.uint8)
    out[0, row:row + size, col:col + size] = 1
    with rasterio.open(like) as src:
        profile = src.profile
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
    return path


def save_layer(layer, path, **options):
    """Write ``layer`` to ``path`` (QgsVectorFileWriter's options by name)."""
    from qgis.core import QgsProject, QgsVectorFileWriter

    saving = QgsVectorFileWriter.SaveVectorOptions()
    for name, value in options.items():
        setattr(saving, name, value)
    assert QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsProject.instance().transformContext(), saving)[0] == 0


@pytest.fixture
def heatmap(scene, tmp_path):
    import processing

    raster, truth = scene
    return processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                               "OUTPUT": str(tmp_path / "heat.tif")})["OUTPUT"]


def run_evaluate(heatmap, truth, feedback=None, **more):
    import processing

    return processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": truth,
                                                 "TARGETS": "TEMPORARY_OUTPUT", **more},
                          feedback=feedback)


METRICS = ("AUC", "LOG_AUC", "LG_FAR", "PD", "N_TARGETS")


def test_target_features_evaluate_as_the_truth_raster(scene, heatmap, tmp_path):
    """The synthetic scene's targets are the 2x2 squares at (10, 10) and (30, 40)."""
    from qgis.core import QgsProject, QgsVectorFileWriter, QgsVectorLayer

    raster, truth = scene
    expected = [run_evaluate(heatmap, str(truth))[k] for k in METRICS]
    drawn = scratch_layer([("target", (10, 10)), ("target", (30, 40)), ("shadow", (0, 20))])
    drawn.setSubsetString("\"kind\" = 'target'")          # the shadow is no target
    assert drawn.featureCount() == 2
    QgsProject.instance().addMapLayer(drawn)
    try:
        for value in (drawn, drawn.id()):                  # a layer object, a project layer id
            assert [run_evaluate(heatmap, value)[k] for k in METRICS] == expected
        # a file on disk, one layer of two, given by QGIS's layer source and by path
        drawn.setSubsetString("")
        path = tmp_path / "truth.gpkg"
        for name, kind in (("all", ""), ("targets", "\"kind\" = 'target'")):
            drawn.setSubsetString(kind)
            more = {"actionOnExistingFile": QgsVectorFileWriter.CreateOrOverwriteLayer} \
                if path.exists() else {}
            save_layer(drawn, path, layerName=name, **more)
        saved = QgsVectorLayer(f"{path}|layername=targets", "saved targets", "ogr")
        assert saved.isValid()
        assert [run_evaluate(heatmap, saved)[k] for k in METRICS] == expected
        assert [run_evaluate(heatmap, f"{path}|layername=targets")[k] for k in METRICS] == expected
        # an outer mask drawn around the first target leaves its 32 ring pixels out (beside
        # the nodata corner's 35), as
        # the same mask as a raster does
        from hsanomaly.evaluation.files import evaluate_files

        ring = square_raster(truth, tmp_path / "outer.tif", 8, 8, 6)
        report = evaluate_files(heatmap, str(truth), str(ring))[0]
        assert report["n_excluded_pixels"] == 35 + 32 and report["lg_far"] != expected[2]
        drawn_ring = run_evaluate(heatmap, saved,
                                  OUTER_MASK=scratch_layer([("ring", (8, 8), 6)]))
        assert [drawn_ring[k] for k in METRICS] == [report[k.lower()] for k in METRICS[:4]] + [2]
    finally:
        QgsProject.instance().removeMapLayer(drawn.id())


def test_a_vector_truth_off_the_raster_gives_the_librarys_line(scene, heatmap, tmp_path):
    from qgis.core import QgsProcessingException

    far = scratch_layer([("target", (4000, 4000))], name="elsewhere")
    with pytest.raises(QgsProcessingException) as err:
        run_evaluate(heatmap, far)
    # named by the layer, not by the temporary file of its features (the QGIS audit's F6)
    assert str(err.value).startswith("layer 'elsewhere': its only feature does not fall on")
    with pytest.raises(QgsProcessingException) as err:
        run_evaluate(heatmap, str(tmp_path / "missing.gpkg"))
    assert str(err.value).endswith(f"{tmp_path / 'missing.gpkg'}: no such file or folder "
                                   "(Truth mask)")


def test_a_layer_saved_without_a_crs_is_taken_in_the_rasters(scene, heatmap, tmp_path):
    """QGIS saves a layer without a CRS into a GeoPackage as "Undefined geographic SRS", which
    was refused as a CRS the raster's could not be matched with ("x inf to inf")."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsVectorLayer

    raster, truth = scene
    expected = [run_evaluate(heatmap, str(truth))[k] for k in METRICS]
    drawn = scratch_layer([("target", (10, 10)), ("target", (30, 40))])
    drawn.setCrs(QgsCoordinateReferenceSystem())        # drawn without a CRS
    save_layer(drawn, tmp_path / "drawn.gpkg", driverName="GPKG")
    saved = QgsVectorLayer(str(tmp_path / "drawn.gpkg"), "drawn", "ogr")
    assert saved.isValid() and saved.crs().description() == "Undefined geographic SRS"
    assert [run_evaluate(heatmap, saved)[k] for k in METRICS] == expected
    # (a layer whose file is moved while it is loaded is "file not found" now; QGIS 3.22 itself
    # crashes as it exits after a run on such a layer, so that is checked outside the suite)


def test_training_takes_a_drawn_exclusion_mask(scene, tmp_path):
    pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
    import processing
    from hsanomaly.model import load_bundle

    raster, _ = scene
    model = processing.run("hsanomaly:train", {
        "INPUTS": [str(raster)], "MASK": scratch_layer([("target", (10, 10))]),
        "ITERATIONS": 2, "OUTPUT": str(tmp_path / "model")})["OUTPUT"]
    recorded = load_bundle(model).meta["training"]["settings"]["mask"]   # the layer saved
    assert len(recorded) == 1 and recorded[0].endswith(".gpkg")           # for training


def test_detect_leaves_out_a_drawn_exclusion_mask(scene, tmp_path):
    """The library's heatmap with the same mask as a raster: the pixels are nodata there."""
    import numpy as np
    import processing
    import rasterio
    from hsanomaly.api import detect

    raster, truth = scene
    result = processing.run("hsanomaly:detect", {
        "INPUT": str(raster), "SCORE": "rx", "MASK": scratch_layer([("cloud", (20, 20), 6)]),
        "OUTPUT": str(tmp_path / "qgis.tif")})
    cloud = square_raster(truth, tmp_path / "cloud.tif", 20, 20, 6)
    detect(str(raster), tmp_path / "library.tif", score="rx", mask=cloud)
    with rasterio.open(result["OUTPUT"]) as a, rasterio.open(tmp_path / "library.tif") as b:
        qgis, library = a.read(1, masked=True), b.read(1, masked=True)
    assert qgis.mask[20:26, 20:26].all()
    np.testing.assert_array_equal(qgis.filled(np.nan), library.filled(np.nan))


def test_a_layer_is_read_as_qgis_shows_it_not_as_its_file_holds_it(scene, heatmap, tmp_path):
    """Unsaved edits (digitising in progress) and a CRS set in QGIS count; the file does not."""
    import processing
    from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry,
                           QgsProcessingFeedback, QgsVectorLayer)

    raster, truth = scene
    expected = [run_evaluate(heatmap, str(truth))[k] for k in METRICS]
    one = scratch_layer([("target", (10, 10))])
    path = tmp_path / "one.gpkg"
    save_layer(one, path, layerName="one")
    layer = QgsVectorLayer(f"{path}|layername=one", "digitised", "ogr")
    assert layer.isValid() and layer.startEditing()
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromWkt(square(30, 40)))
    assert layer.addFeature(feature)                       # the second target, not saved yet
    assert [run_evaluate(heatmap, layer)[k] for k in METRICS] == expected
    layer.rollBack()
    # a shapefile without a .prj, its CRS set in QGIS
    bare = tmp_path / "bare.shp"
    save_layer(scratch_layer([("target", (10, 10)), ("target", (30, 40))]), bare,
               driverName="ESRI Shapefile")
    bare.with_suffix(".prj").unlink()
    shown = QgsVectorLayer(str(bare), "bare", "ogr")
    shown.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    feedback_lines = []

    class Recorded(QgsProcessingFeedback):
        def pushWarning(self, text):
            feedback_lines.append(text)

    result = processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": shown,
                                                   "TARGETS": "TEMPORARY_OUTPUT"},
                            feedback=Recorded())
    assert [result[k] for k in METRICS] == expected
    assert not any("no CRS" in line for line in feedback_lines)
    # without a CRS anywhere, filtered (so saved for the library): it was saved "undefined
    # geographic" and every feature fell at infinity (the QGIS audit's F2); it is taken in
    # the raster's CRS, as the file itself is
    save_layer(scratch_layer([("target", (10, 10)), ("target", (30, 40)), ("shadow", (0, 20))]),
               bare, driverName="ESRI Shapefile")
    bare.with_suffix(".prj").unlink()
    unknown = QgsVectorLayer(str(bare), "unknown", "ogr")
    assert not unknown.crs().isValid()
    unknown.setSubsetString("\"kind\" = 'target'")
    result = processing.run("hsanomaly:evaluate", {"HEATMAP": heatmap, "TRUTH": unknown,
                                                   "TARGETS": "TEMPORARY_OUTPUT"},
                            feedback=Recorded())
    assert [result[k] for k in METRICS] == expected
    assert any(line.startswith("layer 'unknown': the features have no CRS; taken to be ")
               for line in feedback_lines), feedback_lines
    # the same of mixed geometry types (polygons and a point, as GeoJSON or FlatGeobuf hold):
    # its temporary file took one type and OGR refused the others (stop 38's re-review R1)
    import geopandas as gpd
    from shapely import wkt

    point = TRANSFORM @ (40.5, 30.5)
    kinds, shapes = ["target", "target", "shadow"], [wkt.loads(square(10, 10)),
                                                     wkt.loads(f"POINT({point[0]} {point[1]})"),
                                                     wkt.loads(square(0, 20))]
    gpd.GeoDataFrame({"kind": kinds}, geometry=shapes).to_file(tmp_path / "mixed.fgb")
    gpd.GeoDataFrame({"kind": kinds[:2]}, geometry=shapes[:2]).to_file(tmp_path / "kept.fgb")
    mixed = QgsVectorLayer(str(tmp_path / "mixed.fgb"), "mixed", "ogr")
    assert not mixed.crs().isValid() and mixed.featureCount() == 3
    mixed.setSubsetString("\"kind\" = 'target'")
    assert [run_evaluate(heatmap, mixed)[k] for k in METRICS] == \
        [run_evaluate(heatmap, str(tmp_path / "kept.fgb"))[k] for k in METRICS]
    # an empty shape and a 3D one among 2D ones, drawn without a CRS: a traceback from
    # pyogrio each, where QGIS's writer had skipped the empty one (the review's F2, F3)
    from qgis.core import QgsFeature, QgsGeometry

    drawn = QgsVectorLayer("MultiPolygonZ?field=kind:string", "drawn", "memory")
    drawn.setCrs(QgsCoordinateReferenceSystem())             # a memory layer's is WGS 84
    features = []
    for wkt_text in (square(10, 10), "POLYGON EMPTY",
                     square(30, 40).replace("POLYGON((", "POLYGONZ((").replace(",", " 5,")
                     .replace("))", " 5))")):
        feature = QgsFeature(drawn.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt_text))
        features.append(feature)
    assert drawn.dataProvider().addFeatures(features)[0] and not drawn.crs().isValid()
    assert [run_evaluate(heatmap, drawn)[k] for k in METRICS] == expected


def test_a_filtered_layer_as_the_history_writes_it_is_read_as_qgis_reads_it(scene, heatmap,
                                                                            tmp_path):
    """QGIS's History logs a filtered layer as "f.gpkg|layername=x|subset=..."; rerun from
    there, the string went to the library, which refused it: QGIS's own algorithms load it."""
    from qgis.core import QgsVectorLayer

    raster, truth = scene
    path = tmp_path / "both.gpkg"
    save_layer(scratch_layer([("target", (10, 10)), ("target", (30, 40)), ("shadow", (0, 20))]),
               path, layerName="both")
    shown = QgsVectorLayer(f"{path}|layername=both", "both", "ogr")
    assert shown.setSubsetString("\"kind\" = 'target'")
    logged = shown.source()
    assert "|subset=" in logged
    expected = [run_evaluate(heatmap, str(truth))[k] for k in METRICS]
    assert [run_evaluate(heatmap, logged)[k] for k in METRICS] == expected
    assert [run_evaluate(heatmap, shown)[k] for k in METRICS] == expected


def test_a_selection_on_a_truth_layer_is_said(scene, heatmap):
    """Two of three features selected: all three counted, without a word (the QGIS audit's
    F7); QGIS's own algorithms without "Selected features only" use them all too."""
    from qgis.core import QgsProcessingFeedback

    raster, truth = scene
    expected = [run_evaluate(heatmap, str(truth))[k] for k in METRICS]
    drawn = scratch_layer([("target", (10, 10)), ("target", (30, 40)), ("shadow", (0, 20))])
    drawn.selectByIds([f.id() for f in drawn.getFeatures() if f["kind"] == "target"])
    warnings = []

    class Log(QgsProcessingFeedback):
        def pushWarning(self, text):
            warnings.append(text)

    shadowed = run_evaluate(heatmap, drawn, feedback=Log())
    assert warnings == ["drawn targets: 2 of its 3 features are selected; all are used (Truth "
                        "mask): to use the selection alone, save it as a layer of its own "
                        "(Export > Save Selected Features As)"]
    assert shadowed["N_TARGETS"] == 3 and shadowed["PD"] != expected[3]
    # the selection alone, as QGIS's own algorithms take it from Python or a model: refused
    # with the definition's repr (the QGIS audit's F7)
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject

    QgsProject.instance().addMapLayer(drawn)
    warnings.clear()
    selected = run_evaluate(heatmap, QgsProcessingFeatureSourceDefinition(drawn.id(), True),
                            feedback=Log())
    assert [selected[k] for k in METRICS] == expected and warnings == []
    first = run_evaluate(heatmap, QgsProcessingFeatureSourceDefinition(drawn.id(), False, 1))
    assert first["N_TARGETS"] == 1
    # named as what is wrong, not as the definition's repr (the review's F6, F7)
    from qgis.core import QgsProcessingException, QgsProperty

    by_expression = QgsProcessingFeatureSourceDefinition(
        QgsProperty.fromExpression(f"'{drawn.id()}'"), True)
    assert [run_evaluate(heatmap, by_expression)[k] for k in METRICS] == expected
    drawn.removeSelection()
    for value, problem in (
            (QgsProcessingFeatureSourceDefinition(drawn.id(), True),
             "drawn targets: no features are selected (selected features only) (Truth mask)"),
            (QgsProcessingFeatureSourceDefinition("no_such_layer", True),
             "no_such_layer: no such layer or file (Truth mask)")):
        with pytest.raises(QgsProcessingException) as err:
            run_evaluate(heatmap, value)
        assert problem in str(err.value), str(err.value)
    QgsProject.instance().removeMapLayer(drawn.id())


def in_background(algorithm, parameters):
    """Run ``algorithm`` as the Processing dialog's Run button does, as a task on a thread of
    QGIS's pool; (succeeded, results)."""
    import time

    from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext,
                           QgsProcessingFeedback, QgsProject)

    context, feedback, done = QgsProcessingContext(), QgsProcessingFeedback(), []
    context.setProject(QgsProject.instance())
    task = QgsProcessingAlgRunnerTask(
        QgsApplication.processingRegistry().createAlgorithmById(algorithm), parameters, context,
        feedback)
    task.executed.connect(lambda ok, results: done.append((ok, results)))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 120
    while not done and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.01)
    return done[0] if done else (False, "still running after 120 s")


def test_runs_from_the_dialog_one_after_another_leave_qgis_running(scene, heatmap, tmp_path):
    """The dialog runs an algorithm on a thread of QGIS's pool. The second Evaluate there, or
    the second Detect with a drawn mask, crashed QGIS (a segmentation fault in pyproj, whose
    PROJ context outlived the pool thread's Python state): the library runs in a thread of
    its own."""
    from qgis.core import QgsProject

    raster, truth = scene
    clouds = scratch_layer([("cloud", (20, 20), 6)], name="clouds")
    QgsProject.instance().addMapLayer(clouds)
    try:
        for run in range(3):
            ok, results = in_background("hsanomaly:evaluate", {
                "HEATMAP": heatmap, "TRUTH": str(truth), "TARGETS": "TEMPORARY_OUTPUT"})
            assert ok and results["N_TARGETS"] > 0, results
            ok, results = in_background("hsanomaly:detect", {
                "INPUT": str(raster), "SCORE": "rx", "MASK": clouds.id(),
                "OUTPUT": str(tmp_path / f"heat{run}.tif")})
            assert ok and results["OUTPUT"] == str(tmp_path / f"heat{run}.tif"), results
    finally:
        QgsProject.instance().removeMapLayer(clouds.id())
