"""Train model through processing.run, then detect with the bundle; cancelling writes no bundle,
and the dialog resumes what it kept."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the [train] extra (torch)")
ITERATIONS = 4


def test_trained_bundle_detects_like_the_library(scene, tmp_path):
    import processing
    import rasterio
    from hsanomaly.api import detect
    from hsanomaly.model import load_bundle
    from qgis.core import QgsRasterLayer

    raster, truth = scene
    model = processing.run("hsanomaly:train", {
        "INPUTS": [str(raster)], "MASK": str(truth), "WINDOW": 3, "ITERATIONS": ITERATIONS,
        "SEED": 1, "OUTPUT": str(tmp_path / "model")})["OUTPUT"]
    meta = load_bundle(model).meta
    assert meta["window"] == 3 and meta["training"]["iterations"] == ITERATIONS
    assert meta["training"]["settings"]["mask"] == [truth.name]

    # critic: the window-3 bundle end to end without the fast solver's one-off codebook build,
    # which takes minutes for 3x3 windows on a small CI machine
    result = processing.run("hsanomaly:detect", {"INPUT": str(raster), "MODEL": model,
                                                 "SCORE": "critic", "TILE": 16,
                                                 "OUTPUT": str(tmp_path / "qgis.tif")})
    layer = QgsRasterLayer(result["OUTPUT"], "critic")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    detect(str(raster), tmp_path / "library.tif", score="critic", model=model,
                     tile=16, progress=False)
    with rasterio.open(result["OUTPUT"]) as a, rasterio.open(tmp_path / "library.tif") as b:
        np.testing.assert_allclose(a.read(1), b.read(1), rtol=1e-5, equal_nan=True)


def test_cancelled_training_writes_no_bundle(plugin, synthetic_raster, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: percent > 0 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="training cancelled"):
        processing.run("hsanomaly:train", {"INPUTS": [str(synthetic_raster[0])],
                                           "ITERATIONS": 200, "OUTPUT": str(tmp_path / "model")},
                       feedback=feedback)
    assert not (tmp_path / "model" / "model.json").exists()


def test_a_cancelled_training_is_resumed_from_the_dialog(plugin, synthetic_raster, tmp_path):
    """A cancel kept the training's checkpoint and said "resume=True (from Python)": the
    dialog had no way to continue it (the QGIS audit's F5)."""
    import json

    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    params = {"INPUTS": [str(synthetic_raster[0])], "ITERATIONS": 8, "SEED": 3}
    whole = processing.run("hsanomaly:train", {**params, "OUTPUT": str(tmp_path / "whole")})
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: percent >= 50 and feedback.cancel())
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:train", {**params, "OUTPUT": str(tmp_path / "model")},
                       feedback=feedback)
    assert "training cancelled; its state is kept in" in str(err.value) and \
        "('Resume an interrupted training' continues it;" in str(err.value), str(err.value)
    resumed = processing.run("hsanomaly:train", {**params, "RESUME": True,
                                                 "OUTPUT": str(tmp_path / "model")})

    def files(result):
        return json.loads((tmp_path / result["OUTPUT"] / "model.json").read_text())["files"]
    assert files(resumed) == files(whole)


def test_resuming_a_training_into_a_temporary_folder_is_refused(plugin, synthetic_raster):
    """A temporary output is a new folder on every run: a resume there would silently train
    from the start."""
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="^Resume an interrupted training: the "
                                                     "output is temporary"):
        processing.run("hsanomaly:train", {"INPUTS": [str(synthetic_raster[0])],
                                           "RESUME": True, "OUTPUT": "TEMPORARY_OUTPUT"})
