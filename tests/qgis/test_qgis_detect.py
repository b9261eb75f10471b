"""Detect anomalies through processing.run: the library's heatmap, georeferenced, cancellable."""

from pathlib import Path

import numpy as np
import pytest


def run_detect(**params):
    import processing

    return processing.run("hsanomaly:detect", {k: str(v) if hasattr(v, "__fspath__") else v
                                               for k, v in params.items()})


def read_band(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def assert_raster_layer_like_input(path, rows=40, cols=50):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(path), "heatmap")
    assert layer.isValid()
    assert layer.crs().authid() == "EPSG:32633"
    assert (layer.height(), layer.width(), layer.bandCount()) == (rows, cols, 1)


@pytest.mark.parametrize("score", ["rx", "lrx", "gmm"])
def test_baseline_heatmap_is_the_library_heatmap(scene, tmp_path, score):
    from hsanomaly.api import detect

    raster, _ = scene
    result = run_detect(INPUT=raster, SCORE=score, TILE=16, OUTPUT=tmp_path / "qgis.tif")
    assert result["OUTPUT"] == str(tmp_path / "qgis.tif")
    assert_raster_layer_like_input(result["OUTPUT"])
    detect(str(raster), tmp_path / "library.tif", score=score, tile=16, progress=False)
    np.testing.assert_allclose(read_band(result["OUTPUT"]), read_band(tmp_path / "library.tif"),
                               rtol=1e-6, equal_nan=True)


def test_purge_reaches_the_library_and_a_score_without_rings_refuses_it(plugin, tmp_path):
    from hsanomaly.api import detect
    from qgis.core import QgsProcessingException
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(rows=60, cols=70, targets=((15, 15), (44, 52)))
    raster = write_raster(tmp_path / "wide.tif", cube)          # wider than the largest ring
    purged = run_detect(INPUT=raster, SCORE="mlrx", PURGE=0.1, TILE=16, OUTPUT=tmp_path / "p.tif")
    plain = run_detect(INPUT=raster, SCORE="mlrx", TILE=16, OUTPUT=tmp_path / "plain.tif")
    detect(str(raster), tmp_path / "library.tif", score="mlrx", purge=0.1, tile=16,
           progress=False)
    np.testing.assert_allclose(read_band(purged["OUTPUT"]), read_band(tmp_path / "library.tif"),
                               rtol=1e-6, equal_nan=True)
    assert not np.allclose(read_band(purged["OUTPUT"]), read_band(plain["OUTPUT"]),
                           equal_nan=True)
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=raster, SCORE="rx", PURGE=0.1, OUTPUT=tmp_path / "rx.tif")
    assert str(err.value).startswith("'Purge': score 'rx' does not take this option")
    with pytest.raises(QgsProcessingException, match=r"'Purge' must lie in \[0, 0.5\)"):
        run_detect(INPUT=raster, SCORE="mlrx", PURGE=0.7, OUTPUT=tmp_path / "big.tif")
    assert not list(tmp_path.glob("rx*")) and not list(tmp_path.glob("big*"))


@pytest.mark.parametrize("parameter, value, option, flag, bad", [
    ("TOP_RINGS", 1, {"top_rings": 1}, "'Top rings'", None),
    ("NEIGHBOUR_WEIGHT", 0.5, {"neighbour_weight": 0.5}, "'Neighbour weight'", -1.0),
    ("RINGS", "5/3;9/5", {"rings": "5/3;9/5"}, "'Rings'", "5/3;abc")])
def test_ring_parameters_reach_the_library(plugin, tmp_path, parameter, value, option, flag, bad):
    """*Top rings*, *Neighbour weight* and *Rings* are the library's options: the same heatmap; a score without
    rings refuses them, and so does the library a ring text it cannot read, writing nothing."""
    from hsanomaly.api import detect
    from qgis.core import QgsProcessingException
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(rows=50, cols=60, targets=((15, 15), (34, 42)))
    raster = write_raster(tmp_path / "wide.tif", cube)
    given = run_detect(INPUT=raster, SCORE="mlrx", TILE=16, OUTPUT=tmp_path / "given.tif",
                       **{parameter: value})
    plain = run_detect(INPUT=raster, SCORE="mlrx", TILE=16, OUTPUT=tmp_path / "plain.tif")
    detect(str(raster), tmp_path / "library.tif", score="mlrx", tile=16, progress=False,
           **option)
    np.testing.assert_allclose(read_band(given["OUTPUT"]), read_band(tmp_path / "library.tif"),
                               rtol=1e-6, equal_nan=True)
    assert not np.allclose(read_band(given["OUTPUT"]), read_band(plain["OUTPUT"]),
                           equal_nan=True)
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=raster, SCORE="rx", OUTPUT=tmp_path / "rx.tif", **{parameter: value})
    assert str(err.value).startswith(f"{flag}: score 'rx' does not take this option")
    if bad is not None:
        with pytest.raises(QgsProcessingException, match=flag):
            run_detect(INPUT=raster, SCORE="mlrx", OUTPUT=tmp_path / "bad.tif",
                       **{parameter: bad})
    assert not list(tmp_path.glob("rx*")) and not list(tmp_path.glob("bad*"))


def test_rx_finds_the_targets(scene, tmp_path):
    raster, truth_path = scene
    result = run_detect(INPUT=raster, SCORE="rx", OUTPUT=tmp_path / "heat.tif")
    scores, truth = read_band(result["OUTPUT"]), read_band(truth_path).astype(bool)
    assert np.isnan(scores[:5, :7]).all()              # the nodata corner
    assert np.nanmin(scores[truth]) > np.nanpercentile(scores[~truth], 99)


def test_progress_and_throttled_log_reach_the_feedback(scene, tmp_path):
    from qgis.core import QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    progress, log = [], []
    feedback.progressChanged.connect(progress.append)
    feedback.pushInfo = log.append
    import processing

    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx", "TILE": 16,
                                        "OUTPUT": str(tmp_path / "heat.tif")}, feedback=feedback)
    assert progress[-1] == 100 and len(progress) >= 12   # 3 x 4 tiles: the bar moves every tile
    tiles = [line for line in log if line.startswith("tile ")]
    assert tiles[0] == "tile 1/12" and tiles[-1] == "tile 12/12"
    assert len(tiles) < 12                               # the log only every 10 % (or 2 s)
    done = next(line for line in log if ": rx heatmap, " in line)   # the command line's line
    assert done.startswith(f"{tmp_path / 'heat.tif'}: rx heatmap, 12 tiles in ") and \
        done.endswith("; 1,965 pixels scored, 35 nodata"), done     # its 5 x 7 nodata corner


def test_the_quick_model_is_said_with_how_to_reuse_it(scene, tmp_path):
    """Detect without a model trained one and kept it beside the heatmap without a word: a
    cancel then named a folder the user never chose (the QGIS audit's F4)."""
    pytest.importorskip("torch", reason="a quick model needs the [train] extra (torch)")
    import processing
    from qgis.core import QgsApplication, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    log = []
    feedback.pushInfo = log.append
    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "recon",
                                        "OUTPUT": str(tmp_path / "heat.tif")}, feedback=feedback)
    assert (tmp_path / "heat.model" / "model.json").is_file()
    assert f"{tmp_path / 'heat.model'}: model trained on {scene[0]}; reuse it in the Model " \
           "bundle folder field" in log, log
    algorithm = QgsApplication.processingRegistry().algorithmById("hsanomaly:detect")
    assert "heat.model for heat.tif" in algorithm.shortHelpString()
    log.clear()             # resumed once finished: kept, and the model named as the earlier
    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "recon", "RESUME": True,
                                        "OUTPUT": str(tmp_path / "heat.tif")}, feedback=feedback)
    assert any("finished earlier with this input and these settings" in line for line in log)
    assert f"{tmp_path / 'heat.model'}: model trained earlier on {scene[0]}; reuse it in the " \
           "Model bundle folder field" in log, log
    # beside a temporary heatmap, in the folder QGIS removes when it closes: said so
    feedback = warning_log(QgsProcessingFeedback)
    result = processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "recon",
                                                 "OUTPUT": "TEMPORARY_OUTPUT"}, feedback=feedback)
    model = Path(result["OUTPUT"]).with_suffix(".model")
    assert feedback.warnings == [
        f"{model}: the quick model lies beside a temporary heatmap, in QGIS's temporary folder, "
        "which QGIS removes when it closes: to keep it, save the heatmap to a file (its model "
        "is kept beside it) or copy the folder"]
    assert (model / "model.json").is_file()


def test_cancel_between_tiles_leaves_no_output(scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    out = tmp_path / "out"
    out.mkdir()
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    feedback.progressChanged.connect(lambda percent: percent > 0 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx", "TILE": 16,
                                            "OUTPUT": str(out / "heat.tif"),
                                            "POLYGONS": str(out / "targets.gpkg"),
                                            "FAR": "0.01"}, feedback=feedback)
    assert 0 < max(progress) < 100
    assert list(out.iterdir()) == []


def test_an_interrupted_run_is_resumed_from_the_dialog(scene, tmp_path):
    """A failed or interrupted run keeps its finished tiles and said "resume=True (from
    Python)": the dialog had no way to use them (the QGIS audit's F5)."""
    import processing
    from hsanomaly.api import detect
    from hsanomaly.engine.store import resume_hint
    from hsanomaly.spelling import fields, spelled
    from qgis.core import QgsApplication, QgsProcessingFeedback

    def interrupt(fraction, message):
        if fraction > 0.5:
            raise KeyboardInterrupt

    raster, heatmap = scene[0], tmp_path / "heat.tif"
    with pytest.raises(KeyboardInterrupt):        # a QGIS killed mid-run leaves the same
        detect(str(raster), heatmap, score="rx", tile=16, callback=interrupt)
    kept = len(list(tmp_path.glob("heat.tif.partial/tile_*.npz")))
    assert 0 < kept < 12 and not heatmap.exists()
    feedback, log = QgsProcessingFeedback(), []
    feedback.pushInfo = log.append
    processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx", "TILE": 16,
                                        "RESUME": True, "OUTPUT": str(heatmap)},
                   feedback=feedback)
    assert any(f"{kept} resumed" in line for line in log), log
    detect(str(raster), tmp_path / "whole.tif", score="rx", tile=16)
    np.testing.assert_array_equal(read_band(heatmap), read_band(tmp_path / "whole.tif"))

    algorithm = QgsApplication.processingRegistry().algorithmById("hsanomaly:detect")
    labels = {d.name().lower(): d.description() for d in algorithm.parameterDefinitions()}
    with spelled(fields({"resume": labels["resume"].split(" (")[0]})):
        assert resume_hint() == "rerun with 'Resume an interrupted run'"
    # the training advice names Train model's field, not "'whiten' (from Python)"
    assert algorithm.other_fields() == {"whiten": "Whiten the bands (in Train model)"}
    # a temporary output never holds an interrupted run: said, not "no interrupted run here"
    # at a path the user never chose (the review's F8)
    from qgis.core import QgsProcessingException

    from qgis.core import QgsProcessingOutputLayerDefinition

    for temporary in ("TEMPORARY_OUTPUT", QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT")):
        with pytest.raises(QgsProcessingException, match="^Resume an interrupted run: the "
                                                         "output is temporary"):
            processing.run("hsanomaly:detect", {"INPUT": str(raster), "SCORE": "rx",
                                                "RESUME": True, "OUTPUT": temporary})


def test_polygons_are_a_layer_in_the_input_crs(scene, tmp_path):
    from qgis.core import QgsVectorLayer

    result = run_detect(INPUT=scene[0], SCORE="rx", OUTPUT=tmp_path / "heat.tif", FAR="0.005",
                        POLYGONS=tmp_path / "targets.gpkg")
    layer = QgsVectorLayer(result["POLYGONS"], "targets", "ogr")
    assert layer.isValid()
    assert layer.crs().authid() == "EPSG:32633"
    assert layer.featureCount() >= 2                    # the two planted targets


def test_polygons_of_a_raster_without_georeferencing_lie_on_it_in_qgis(plugin, tmp_path):
    """QGIS shows a raster without georeferencing at y from minus its height to 0; the
    polygons were at y the row, so they were drawn mirrored off the heatmap."""
    import rasterio
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from synthetic import synthetic_cube

    cube, truth = synthetic_cube(rows=40, cols=50, targets=((30, 10),), seed=3)
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=50, height=40, count=len(cube),
                       dtype="float32") as ds:
        ds.write(cube)
    result = run_detect(INPUT=scene, SCORE="rx", OUTPUT=tmp_path / "heat.tif",
                        POLYGONS=tmp_path / "targets.gpkg", THRESHOLD=100.0)
    heat = QgsRasterLayer(result["OUTPUT"], "heatmap")
    targets = QgsVectorLayer(result["POLYGONS"], "targets", "ogr")
    assert heat.extent().yMinimum() == -40 and heat.extent().yMaximum() == 0
    box = next(targets.getFeatures()).geometry().boundingBox()      # the strongest target
    rows, cols = np.nonzero(truth)
    assert (box.xMinimum(), box.yMaximum()) == (cols.min(), -rows.min())
    assert heat.extent().contains(targets.extent())


def test_library_errors_become_one_line_processing_errors(scene, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=scene[0], SCORE="rx", OUTPUT=tmp_path / "heat.tif",
                   POLYGONS=tmp_path / "t.gpkg")
    assert str(err.value) == (f"{tmp_path / 't.gpkg'}: polygons need 'Polygon score threshold' "
                              "or 'Polygon false-alarm rate'")
    # the value is wrong, not the polygons' file: the message was led by its name
    with pytest.raises(QgsProcessingException, match=r"^'Polygon false-alarm rate' must be a "
                                                     r"false-alarm rate in \(0, 1\) or auto, "
                                                     r"got 'often'"):
        run_detect(INPUT=scene[0], SCORE="rx", OUTPUT=tmp_path / "heat.tif", FAR="often",
                   POLYGONS=tmp_path / "t.gpkg")
    assert list(tmp_path.glob("heat*")) == []
    # the command line's names become the dialog's: --threshold or --far, SRC and DST
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=scene[0], SCORE="rx", OUTPUT=tmp_path / "heat.tif", FAR="0.01")
    assert str(err.value).startswith("'Polygon score threshold' or 'Polygon false-alarm rate':")
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=scene[0], SCORE="rx", OUTPUT=scene[0])
    assert "'Anomaly heatmap' is the same file as the input 'Hyperspectral raster'" in \
        str(err.value)


def test_missing_model_gives_the_library_message(scene, tmp_path):
    from hsanomaly.api import detect
    from hsanomaly.errors import HsanomalyError
    from qgis.core import QgsProcessingException

    missing = tmp_path / "no-such-bundle"
    with pytest.raises(HsanomalyError) as library:
        detect(str(scene[0]), tmp_path / "library.tif", score="recon", model=str(missing),
                         progress=False)
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=scene[0], SCORE="recon", MODEL=missing, OUTPUT=tmp_path / "heat.tif")
    assert str(err.value) == str(library.value)


def warning_log(feedback_class):
    """A QGIS feedback that keeps the warnings pushed to it (``.warnings``)."""
    class Log(feedback_class):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, text):
            self.warnings.append(text)

    return Log()


def test_library_warnings_reach_the_algorithm_log(plugin, tmp_path):
    """A warning of the library (here --far auto above every score, from write_polygons) is
    pushed to the algorithm's feedback while the library runs, and only then."""
    import logging

    import rasterio
    from hsanomaly.polygons import write_polygons
    from hsanomaly_qgis.algorithms.base import library_errors
    from qgis.core import QgsProcessingFeedback

    scores = np.minimum(1 / np.random.default_rng(5).uniform(size=(100, 100)), 200.0)
    heat = tmp_path / "heat.tif"
    with rasterio.open(heat, "w", driver="GTiff", dtype="float32", count=1, height=100,
                       width=100) as dst:
        dst.write(scores.astype(np.float32)[None])
    log = warning_log(QgsProcessingFeedback)
    with library_errors(log):
        assert write_polygons(heat, tmp_path / "auto.gpkg", far="auto") == 0
    logging.getLogger("hsanomaly").warning("after the algorithm")
    assert len(log.warnings) == 1
    assert str(heat) in log.warnings[0] and "lies above every score" in log.warnings[0]


def test_ignore_wavelengths_reaches_a_model_score_and_leaves_baselines_alone(scene, tmp_path,
                                                                             monkeypatch):
    """The wavelength refusal told QGIS users to pass --ignore-wavelengths, which the dialog
    did not have; it is *Ignore wavelengths*. A dialog remembers it ticked, so a baseline
    run after a model run must not fail for it."""
    from hsanomaly.api import detect
    from qgis.core import QgsProcessingException

    raster, _ = scene
    ticked = run_detect(INPUT=raster, SCORE="rx", IGNORE_WAVELENGTHS=True, TILE=16,
                        OUTPUT=tmp_path / "rx.tif")
    detect(str(raster), tmp_path / "library.tif", score="rx", tile=16, progress=False)
    np.testing.assert_array_equal(read_band(ticked["OUTPUT"]), read_band(tmp_path / "library.tif"))
    import hsanomaly.api
    from hsanomaly.errors import HsanomalyError

    given = {}

    def recorded(*args, **options):                # what the library is asked
        given.update(options)
        raise HsanomalyError("recorded")
    monkeypatch.setattr(hsanomaly.api, "detect", recorded)
    with pytest.raises(QgsProcessingException, match="recorded"):
        run_detect(INPUT=raster, SCORE="recon", IGNORE_WAVELENGTHS=True,
                   OUTPUT=tmp_path / "recon.tif")
    assert given["score"] == "recon" and given["ignore_wavelengths"] is True


def test_the_librarys_warnings_about_the_data_reach_the_algorithms_log(plugin):
    """Data warnings are Python warnings (``HsanomalyWarning``): a dialog showed none of them,
    only the logged ones."""
    import warnings

    from hsanomaly.io.checks import warn
    from hsanomaly_qgis.algorithms.base import library_errors
    from qgis.core import QgsProcessingFeedback

    log = warning_log(QgsProcessingFeedback)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with library_errors(log):
            warn("scene.tif: band 3's values lie 1e12 times\n   their spread")
        warn("after the algorithm")
    assert log.warnings == ["scene.tif: band 3's values lie 1e12 times their spread"]


def test_overlapping_algorithms_each_log_their_own_warnings(plugin):
    """QGIS runs algorithms in threads, several at once: each swapped the process's
    showwarning and put back what it found, so the first to end left the second's in place
    (its warnings went to a finished algorithm's log, or raised on a deleted one)."""
    import threading
    import warnings

    from hsanomaly.io.checks import warn
    from hsanomaly_qgis.algorithms.base import library_errors
    from qgis.core import QgsProcessingFeedback

    original = warnings.showwarning
    logs = [warning_log(QgsProcessingFeedback) for _ in range(2)]
    inside, leave = threading.Barrier(2), [threading.Event(), threading.Event()]

    def algorithm(i):
        with library_errors(logs[i]):
            inside.wait()
            warn(f"from algorithm {i}")
            leave[i].wait()

    threads = [threading.Thread(target=algorithm, args=(i,)) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = original          # catch_warnings restores it; keep the real one
        for thread in threads:
            thread.start()
        leave[0].set()
        threads[0].join()
        leave[1].set()
        threads[1].join()
        assert warnings.showwarning is original
    assert [log.warnings for log in logs] == [["from algorithm 0"], ["from algorithm 1"]]


def test_fields_a_baseline_does_not_use_are_said_not_dropped(scene, tmp_path):
    """A non-default latent search or a ticked *Ignore wavelengths* was dropped for a baseline
    without a word (the command line refuses them; a dialog keeps its fields, so it says so)."""
    import processing
    from qgis.core import QgsProcessingFeedback

    log = warning_log(QgsProcessingFeedback)
    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx", "SOLVER": "thesis",
                                        "IGNORE_WAVELENGTHS": True, "TILE": 16,
                                        "OUTPUT": str(tmp_path / "rx.tif")}, feedback=log)
    assert log.warnings == [
        "Latent search 'thesis': not used by score 'rx', which searches no latent space",
        "Ignore wavelengths: not used by score 'rx', which takes no model"]
    log = warning_log(QgsProcessingFeedback)
    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx", "TILE": 16,
                                        "OUTPUT": str(tmp_path / "rx2.tif")}, feedback=log)
    assert log.warnings == []                      # the defaults: nothing to say


@pytest.mark.parametrize("form", ["ogr:dbname='{path}' table=\"polygons\" (geom)",
                                  "{path}|layername=targets", "{path}"])
def test_the_dialogs_geopackage_destinations_are_taken(scene, tmp_path, form):
    """*Save to GeoPackage...* gives ``ogr:dbname='...' table="polygons" (geom)`` (quotes in
    the path escaped), and a layer can be named ``path|layername=...``: both were refused."""
    import processing
    from qgis.core import (QgsProcessingContext, QgsProcessingFeedback,
                           QgsProcessingOutputLayerDefinition, QgsProject, QgsVectorLayer)

    folder = tmp_path / "o'brien"
    folder.mkdir()
    path = folder / "t.gpkg"
    escaped = str(path).replace("'", "\\'") if form.startswith("ogr:") else str(path)
    log = warning_log(QgsProcessingFeedback)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    destination = QgsProcessingOutputLayerDefinition(form.format(path=escaped),
                                                     QgsProject.instance())
    result = processing.run("hsanomaly:detect", {
        "INPUT": str(scene[0]), "SCORE": "rx", "OUTPUT": str(tmp_path / "heat.tif"),
        "FAR": "0.005", "POLYGONS": destination}, feedback=log, context=context)
    assert result["POLYGONS"] == str(path)
    # loaded as what was written (QGIS looked for the layer it named: "not correctly
    # generated", and nothing was loaded), and styled
    loads = context.layersToLoadOnCompletion()
    assert f"{path}|layername=targets" in loads and not any("ogr:" in key for key in loads)
    assert loads[f"{path}|layername=targets"].postProcessor() is not None
    assert QgsVectorLayer(f"{path}|layername=targets", "t", "ogr").featureCount() >= 2
    assert log.warnings == ([f"Target polygons: written as layer 'targets' of {path}, not "
                             "'polygons': hsanomaly writes a GeoPackage of its own"]
                            if "polygons" in form else [])



@pytest.mark.parametrize("form", ["ogr:dbname='{path}' table=\"targets\" (geom)", "{path}"])
def test_polygons_are_never_written_over_a_geopackage_of_other_layers(scene, tmp_path, form):
    """QGIS replaces an algorithm's outputs without asking, and the polygons replace the whole
    file: a "Save to GeoPackage" into a project's GeoPackage removed its other layers."""
    import geopandas as gpd
    import processing
    from qgis.core import QgsProcessingException
    from shapely.geometry import Point

    project = tmp_path / "project.gpkg"
    gpd.GeoDataFrame({"note": ["well"]}, geometry=[Point(0, 0)], crs="EPSG:32633").to_file(
        project, layer="field_survey")
    before = project.read_bytes()
    with pytest.raises(QgsProcessingException, match=r"project.gpkg: 'Target polygons' is a "
                                                     r"GeoPackage holding other tables \(field_survey\)"):
        processing.run("hsanomaly:detect", {
            "INPUT": str(scene[0]), "SCORE": "rx", "OUTPUT": str(tmp_path / "heat.tif"),
            "FAR": "0.005", "POLYGONS": form.format(path=project)})
    assert project.read_bytes() == before and not (tmp_path / "heat.tif").exists()


def test_a_raster_crs_set_only_in_qgis_is_said(scene, tmp_path):
    """The library reads the file, so a CRS the user set on the layer in QGIS never reached
    the heatmap: it came out without one, not a word said."""
    import processing
    import rasterio
    from qgis.core import (QgsCoordinateReferenceSystem, QgsProcessingFeedback, QgsProject,
                           QgsRasterLayer)

    with rasterio.open(scene[0]) as src:
        profile, data = src.profile, src.read()
    profile.update(crs=None)
    plain = tmp_path / "nocrs.tif"
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(data)
    layer = QgsRasterLayer(str(plain), "scene")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    QgsProject.instance().addMapLayer(layer)
    try:
        for given, said in ((layer.id(), True), (layer, True), (str(plain), False)):
            log = warning_log(QgsProcessingFeedback)
            processing.run("hsanomaly:detect", {"INPUT": given, "SCORE": "rx", "TILE": 16,
                                                "OUTPUT": str(tmp_path / "heat.tif")},
                           feedback=log)
            assert log.warnings == ([
                "scene: its CRS (EPSG:32633) is set in QGIS, not in its file, which hsanomaly "
                "reads: the outputs carry the file's (none); assign the CRS to the file "
                "(Raster > Projections > Assign Projection) to carry it (Hyperspectral raster)"]
                if said else [])
        profile.update(crs="+proj=tmerc +lon_0=12 +k=0.9996 +x_0=500000 +ellps=WGS84 +units=m")
        custom = tmp_path / "custom.tif"          # a CRS the file holds, without a code
        with rasterio.open(custom, "w", **profile) as dst:
            dst.write(data)
        other = QgsRasterLayer(str(custom), "custom")
        other.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
        QgsProject.instance().addMapLayer(other)
        log = warning_log(QgsProcessingFeedback)
        processing.run("hsanomaly:detect", {"INPUT": other.id(), "SCORE": "rx", "TILE": 16,
                                            "OUTPUT": str(tmp_path / "heat2.tif")}, feedback=log)
        assert len(log.warnings) == 1 and "the file's (none)" not in log.warnings[0]
        QgsProject.instance().removeMapLayer(other.id())
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_nodata_added_or_turned_off_only_in_qgis_is_said(scene, tmp_path):
    """The library reads the file's no-data: a value the user added in QGIS (Layer Properties >
    Transparency) was scored and taken into the scene's statistics, and one of the file's
    turned off there was still left out, not a word said of either."""
    import processing
    from qgis.core import QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsRasterRange
    from synthetic import NODATA

    added, turned_off = (QgsRasterLayer(str(scene[0]), name) for name in ("added", "off"))
    for band in range(1, added.bandCount() + 1):
        added.dataProvider().setUserNoDataValue(band, [QgsRasterRange(0, 0),
                                                       QgsRasterRange(-5, -1),
                                                       # NaN: never scored, so no note
                                                       QgsRasterRange(float("nan"),
                                                                      float("nan"))])
        turned_off.dataProvider().setUseSourceNoDataValue(band, False)
    QgsProject.instance().addMapLayers([added, turned_off])
    try:
        said = {}
        for layer in (added, turned_off):
            log = warning_log(QgsProcessingFeedback)
            processing.run("hsanomaly:detect", {"INPUT": layer.id(), "SCORE": "rx", "TILE": 16,
                                                "OUTPUT": str(tmp_path / "heat.tif")},
                           feedback=log)
            said[layer.name()] = log.warnings
        assert said == {
            "added": ["added: its no-data values 0, -5 to -1 are set in QGIS (Layer Properties "
                      "> Transparency), not in its file, which hsanomaly reads: its pixels are "
                      "scored, and count in the scene's statistics; assign the no-data value "
                      "to the file (Raster > Conversion > Translate) to leave them out "
                      "(Hyperspectral raster)"],
            "off": [f"off: its file's no-data value {NODATA:g} is turned off in QGIS (Layer "
                    "Properties > Transparency), not in the file, which hsanomaly reads: its "
                    "pixels are still left out; remove the no-data value from the file "
                    "(gdal_edit.py -unsetnodata) to use them (Hyperspectral raster)"]}
        log = warning_log(QgsProcessingFeedback)
        processing.run("hsanomaly:train", {"INPUTS": [added.id()], "ITERATIONS": 1,
                                           "OUTPUT": str(tmp_path / "model")}, feedback=log)
        said = [line for line in log.warnings if "no-data" in line]   # (and one iteration's
        assert len(said) == 1 and "its pixels are trained on;" in said[0]   # generator, said)
    finally:
        QgsProject.instance().removeMapLayers([added.id(), turned_off.id()])


def test_a_layer_opened_with_gdal_options_is_read_from_its_file_or_refused(scene, tmp_path):
    """A raster layer opened with GDAL open options ("f.tif|option:NUM_THREADS=1", valid in
    QGIS) was "file not found": an option that changes only how the file is read is left
    out; one that changes what is read is refused, naming the layer and the option."""
    import processing
    import rasterio
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer

    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx", "TILE": 16,
                                        "OUTPUT": str(tmp_path / "file.tif")})
    threads = QgsRasterLayer(f"{scene[0]}|option:NUM_THREADS=1", "threads")
    georef = QgsRasterLayer(f"{scene[0]}|option:GEOREF_SOURCES=NONE", "georef")
    assert threads.isValid() and georef.isValid()
    QgsProject.instance().addMapLayers([threads, georef])
    try:
        for given in (threads.id(), threads, f"{scene[0]}|option:NUM_THREADS=1"):
            processing.run("hsanomaly:detect", {"INPUT": given, "SCORE": "rx", "TILE": 16,
                                                "OUTPUT": str(tmp_path / "layer.tif")})
            with rasterio.open(tmp_path / "file.tif") as a, \
                    rasterio.open(tmp_path / "layer.tif") as b:
                np.testing.assert_array_equal(a.read(), b.read())
        with pytest.raises(QgsProcessingException, match=(
                r"^georef: opened in QGIS with GDAL open options \(GEOREF_SOURCES=NONE\), which "
                r"hsanomaly does not pass on, .*; add the layer from its file without them "
                r"\(Hyperspectral raster\)$")):
            processing.run("hsanomaly:detect", {"INPUT": georef.id(), "SCORE": "rx",
                                                "OUTPUT": str(tmp_path / "o.tif")})
    finally:
        QgsProject.instance().removeMapLayers([threads.id(), georef.id()])


@pytest.mark.parametrize("score, fields, options", [
    ("lrx", {"OUTER": 9, "GUARD": 3, "PCA": 4}, {"outer": 9, "guard": 3, "pca": 4}),
    ("gmm", {"PCA": 6, "COMPONENTS": 2}, {"pca": 6, "components": 2}),
    ("gmm", {"SEED": 3}, {"seed": 3})])
def test_window_and_component_fields_reach_the_library(plugin, tmp_path, score, fields, options):
    """lrx ran at 15/5 with 10 components whatever the user wanted: the dialog had no field
    for its window or components, nor for gmm's mixture; nor for the seed, which a model
    trained with another one stores its codebook for."""
    from hsanomaly.api import detect
    from qgis.core import QgsProcessingException
    from synthetic import synthetic_cube, write_raster

    raster = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=40, cols=50)[0])
    given = run_detect(INPUT=raster, SCORE=score, TILE=16, OUTPUT=tmp_path / "given.tif", **fields)
    detect(str(raster), tmp_path / "library.tif", score=score, tile=16, progress=False, **options)
    np.testing.assert_array_equal(read_band(given["OUTPUT"]), read_band(tmp_path / "library.tif"))
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=raster, SCORE="rx", OUTPUT=tmp_path / "rx.tif", PCA=4)
    assert str(err.value).startswith("'Principal components kept': score 'rx' does not take")
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=raster, SCORE="rx", OUTPUT=tmp_path / "rx.tif", SEED=3)
    assert str(err.value).startswith("'Random seed of the pixels sampled")
    # gmm's field with a ring score: it was taken for the rings' former name of "pca" and
    # changed every pixel, with a warning about a renamed option the user never used
    with pytest.raises(QgsProcessingException) as err:
        run_detect(INPUT=raster, SCORE="lrx", OUTPUT=tmp_path / "lrx.tif", COMPONENTS=4)
    assert str(err.value).startswith("'Mixture components': score 'lrx' has no such option "
                                     "(its own is 'Principal components kept')"), str(err.value)
    assert not (tmp_path / "lrx.tif").exists()


def test_every_detect_field_reaches_the_library_as_set(scene, tmp_path, monkeypatch):
    """Each field set away from its default, a fraction where it takes one, reaches
    hsanomaly.detect exactly: a field dropped or rounded on the way (the thesis search run as
    the fast one, a polygon threshold of 12.5 cut at 13) changed the result without a word."""
    import hsanomaly.api
    from hsanomaly.errors import HsanomalyError
    from qgis.core import QgsProcessingException

    given = {}

    def recorded(*args, **options):                # what the library is asked
        given.update(options, src=args[0], dst=args[1])
        raise HsanomalyError("recorded")

    monkeypatch.setattr(hsanomaly.api, "detect", recorded)
    raster, truth = scene
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(QgsProcessingException, match="recorded"):
        run_detect(INPUT=raster, SCORE="dualcontext", MODEL=model, SOLVER="thesis", PURGE=0.07,
                   TOP_RINGS=3, NEIGHBOUR_WEIGHT=0.35, RINGS="9/3;15/5", IGNORE_WAVELENGTHS=True,
                   MASK=truth, THRESHOLD=12.5, TILE=64, RESUME=True,
                   POLYGONS=tmp_path / "t.gpkg", OUTPUT=tmp_path / "heat.tif")
    assert {k: given[k] for k in ("score", "model", "solver", "purge", "top_rings",
                                  "neighbour_weight", "rings", "ignore_wavelengths", "mask",
                                  "threshold", "far", "tile", "resume", "polygons")} == {
        "score": "dualcontext", "model": str(model), "solver": "thesis", "purge": 0.07,
        "top_rings": 3, "neighbour_weight": 0.35, "rings": "9/3;15/5",
        "ignore_wavelengths": True, "mask": str(truth), "threshold": 12.5, "far": None,
        "tile": 64, "resume": True, "polygons": str(tmp_path / "t.gpkg")}
    assert given["dst"] == str(tmp_path / "heat.tif")


def test_detect_creates_no_polygons_by_default_and_loads_only_the_outputs_asked_for(
        scene, tmp_path):
    """A dialog run with its defaults: Target polygons created by default would fail every
    such run (polygons need a threshold); an output whose "Open output file after running"
    is unticked must not be queued for loading."""
    from qgis.core import (QgsApplication, QgsProcessingContext, QgsProcessingFeedback,
                           QgsProcessingOutputLayerDefinition)

    algorithm = QgsApplication.processingRegistry().algorithmById("hsanomaly:detect")
    assert not algorithm.parameterDefinition("POLYGONS").createByDefault()
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    unticked = QgsProcessingOutputLayerDefinition(str(tmp_path / "heat.tif"))   # no project
    results, ok = algorithm.run({"INPUT": str(scene[0]), "SCORE": "rx", "OUTPUT": unticked},
                                context, feedback)
    assert ok and results["OUTPUT"] == str(tmp_path / "heat.tif")
    assert context.layersToLoadOnCompletion() == {}


def test_detect_help_states_the_librarys_defaults():
    """The help names the default score, latent search and tile size: a stale one misleads."""
    from hsanomaly import defaults
    from qgis.core import QgsApplication

    text = QgsApplication.processingRegistry().algorithmById("hsanomaly:detect").shortHelpString()
    assert (f"score {defaults.SCORE}, latent search {defaults.SOLVER}, tiles of {defaults.TILE} "
            in text)


def test_a_score_not_offered_is_refused_where_qgis_skips_the_parameter_check(scene, tmp_path):
    """A model's step and a script's alg.run skip checkParameterValues: a score the dialog
    does not offer ("RX", "lrx ") read as the default, and a GAN was trained for it."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    class Heard(QgsProcessingFeedback):
        def reportError(self, error, fatalError=False):
            errors.append(error)

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("hsanomaly:detect")
    for score in ("RX", "lrx "):
        errors = []
        _, ok = algorithm.run({"INPUT": str(scene[0]), "SCORE": score,
                               "OUTPUT": str(tmp_path / "heat.tif")},
                              QgsProcessingContext(), Heard())
        assert not ok and any(f"'{score}': not one of rx, lrx" in e for e in errors), errors
    assert not (tmp_path / "heat.tif").exists()
