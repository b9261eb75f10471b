"""What a QGIS user sees: the heatmap styled with a colour ramp, outlined targets, an icon and
complete plugin metadata carrying the library's version."""

import configparser
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def project():
    from qgis.core import QgsProject

    project = QgsProject.instance()
    yield project
    project.removeAllMapLayers()


def loaded_layer(project, path):
    """The project layer loaded from ``path``."""
    layers = [layer for layer in project.mapLayers().values()
              if layer.source().split("|")[0] == str(path)]
    assert len(layers) == 1, [layer.source() for layer in project.mapLayers().values()]
    return layers[0]


def test_heatmap_and_targets_load_styled(scene, tmp_path, project):
    import processing
    import rasterio
    from qgis.core import QgsProcessingFeedback, QgsStyle
    from qgis.PyQt.QtCore import Qt

    errors = []
    feedback = QgsProcessingFeedback()
    feedback.reportError = lambda message, fatal=False: errors.append(message)
    heatmap, targets = tmp_path / "heat.tif", tmp_path / "targets.gpkg"
    processing.runAndLoadResults("hsanomaly:detect", {
        "INPUT": str(scene[0]), "SCORE": "rx", "FAR": "0.005", "OUTPUT": str(heatmap),
        "POLYGONS": str(targets)}, feedback=feedback)
    assert errors == []

    layer = loaded_layer(project, heatmap)
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.band() == 1
    with rasterio.open(heatmap) as ds:
        scores = ds.read(1)
    # stretched as the quick look is (1-99 %): min to max left 99 % of an rx heatmap's pixels
    # in the ramp's dark quarter (QGIS's cut reads a histogram: within a bin of the range)
    step = (np.nanmax(scores) - np.nanmin(scores)) / 500
    assert abs(renderer.classificationMin() - np.nanpercentile(scores, 1)) < step
    assert abs(renderer.classificationMax() - np.nanpercentile(scores, 99)) < step
    function = renderer.shader().rasterShaderFunction()
    items = function.colorRampItemList()
    inferno = QgsStyle.defaultStyle().colorRamp("Inferno")     # the pictures' colour map
    assert len(items) > 2
    assert items[0].color.name() == inferno.color(0).name()      # dark: the background
    assert items[-1].color.name() == inferno.color(1).name()     # bright: the anomalies
    assert items[0].value == pytest.approx(renderer.classificationMin())
    assert items[-1].value == pytest.approx(renderer.classificationMax())

    polygons = loaded_layer(project, targets)
    assert polygons.featureCount() >= 2
    assert polygons.renderer().type() == "singleSymbol"
    # the library's style (a GeoPackage written outside QGIS opens so too): cyan on a black
    # halo, seen over the ramp's brightest colours (cyan alone was 1.2:1 against them)
    halo, outline = (polygons.renderer().symbol().symbolLayer(i) for i in (0, 1))
    assert {halo.layerType(), outline.layerType()} == {"SimpleLine"}  # the heatmap shows through
    assert (halo.color().name(), outline.color().name()) == ("#000000", "#00e5ff")
    from qgis.core import QgsUnitTypes

    assert (outline.width(), outline.widthUnit()) == \
        (0.6, QgsUnitTypes.RenderMillimeters)                 # seen at any zoom
    assert halo.width() > outline.width()


def test_targets_written_outside_qgis_open_with_their_default_style(scene, tmp_path):
    """The command line's GeoPackage named its style's geometry column "geometry", the
    layer's is "geom": QGIS did not match the style, and the targets opened as random solid
    fills over the heatmap."""
    from qgis.core import QgsVectorLayer
    from qgis.PyQt.QtCore import Qt

    import hsanomaly

    targets = tmp_path / "targets.gpkg"
    hsanomaly.detect(scene[0], tmp_path / "heat.tif", score="rx", far=0.005, polygons=targets)
    layer = QgsVectorLayer(f"{targets}|layername=targets", "targets", "ogr")
    assert layer.isValid() and layer.featureCount() >= 2
    outline = layer.renderer().symbol().symbolLayer(1)
    assert outline.layerType() == "SimpleLine"
    assert outline.color().name() == "#00e5ff" and outline.penStyle() == Qt.SolidLine


def test_a_rerun_to_loaded_outputs_shows_the_new_results(scene, tmp_path, project):
    """QGIS hands a rerun the project's layers of the last run, which kept showing its pixels,
    its ramp and its targets while the files held the new ones (the QGIS audit's F1)."""
    import processing
    import rasterio
    from qgis.core import QgsVectorLayer

    heatmap, targets = tmp_path / "heat.tif", tmp_path / "targets.gpkg"
    parameters = {"INPUT": str(scene[0]), "SCORE": "rx", "THRESHOLD": 5,
                  "OUTPUT": str(heatmap), "POLYGONS": str(targets)}
    processing.runAndLoadResults("hsanomaly:detect", parameters)
    first = loaded_layer(project, heatmap).renderer().classificationMax()
    assert loaded_layer(project, targets).featureCount() > 0
    processing.runAndLoadResults("hsanomaly:detect", {**parameters, "SCORE": "gmm",
                                                      "THRESHOLD": 1e9})
    layer = loaded_layer(project, heatmap)
    with rasterio.open(heatmap) as ds:
        scores = ds.read(1)
    step = (np.nanmax(scores) - np.nanmin(scores)) / 500        # the cut's histogram bin
    assert abs(layer.renderer().classificationMax() - np.nanpercentile(scores, 99)) < step
    assert layer.renderer().classificationMax() != pytest.approx(first, rel=1e-3)
    shown = layer.dataProvider().block(1, layer.extent(), layer.width(), layer.height())
    assert shown.value(0, 0) == pytest.approx(float(scores[0, 0]), rel=1e-6, nan_ok=True)
    assert QgsVectorLayer(str(targets)).featureCount() == 0
    assert loaded_layer(project, targets).featureCount() == 0


def test_a_rerun_keeps_the_style_a_user_gave_the_loaded_outputs(scene, tmp_path, project):
    """A user who fixed the heatmap's range (to compare runs), its opacity and the targets'
    fill lost all three to the plugin's style on the next run to the same files: a layer
    restyled since keeps its style, and shows the new data (one left in the plugin's style is
    styled for the new data: ``test_a_rerun_to_loaded_outputs_shows_the_new_results``)."""
    import processing
    from qgis.core import QgsFillSymbol, QgsSingleSymbolRenderer

    heatmap, targets = tmp_path / "heat.tif", tmp_path / "targets.gpkg"
    parameters = {"INPUT": str(scene[0]), "SCORE": "rx", "THRESHOLD": 5,
                  "OUTPUT": str(heatmap), "POLYGONS": str(targets)}
    processing.runAndLoadResults("hsanomaly:detect", parameters)
    heat, found = loaded_layer(project, heatmap), loaded_layer(project, targets)
    heat.renderer().setClassificationMin(0)
    heat.renderer().setClassificationMax(600)
    heat.setOpacity(0.5)
    found.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple({"color": "255,0,0"})))
    processing.runAndLoadResults("hsanomaly:detect", {**parameters, "THRESHOLD": 1e9})
    heat, found = loaded_layer(project, heatmap), loaded_layer(project, targets)
    assert (heat.renderer().classificationMin(), heat.renderer().classificationMax(),
            heat.opacity()) == (0, 600, 0.5)
    assert found.renderer().symbol().color().name() == "#ff0000"
    assert found.featureCount() == 0                   # the new run's targets: none


def test_processing_run_without_loading_styles_nothing(scene, tmp_path, project):
    import processing

    processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx",
                                        "OUTPUT": str(tmp_path / "heat.tif")})
    assert project.mapLayers() == {}


def test_a_constant_heatmap_still_gets_a_ramp(plugin, tmp_path):
    import rasterio
    from hsanomaly_qgis.styles import style_heatmap
    from qgis.core import QgsRasterLayer

    path = tmp_path / "flat.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=3, count=1,
                       dtype="float32") as ds:
        ds.write(np.full((1, 3, 4), 7.0, np.float32))
    layer = QgsRasterLayer(str(path), "flat")
    style_heatmap(layer)
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor"
    assert renderer.classificationMax() > renderer.classificationMin() == 7.0


def installed_metadata():
    plugin_dir = Path(sys.modules["hsanomaly_qgis"].__file__).parent
    metadata = configparser.ConfigParser(interpolation=None)   # as QGIS's plugin manager reads it
    metadata.read(plugin_dir / "metadata.txt", encoding="utf-8")
    return plugin_dir, metadata["general"]


def test_installed_plugin_metadata_is_complete(plugin):
    import hsanomaly

    plugin_dir, metadata = installed_metadata()
    assert metadata["version"] == hsanomaly.__version__
    for key in ("homepage", "repository", "tracker"):
        assert metadata[key].startswith("https://github.com/hsanomaly/hsanomaly"), key
    assert metadata["changelog"].strip().startswith(hsanomaly.__version__)
    assert metadata["hasProcessingProvider"] == "yes"
    assert (plugin_dir / metadata["icon"]).is_file()


def test_provider_and_algorithms_show_the_icon(plugin):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtGui import QIcon

    plugin_dir, metadata = installed_metadata()
    assert not QIcon(str(plugin_dir / metadata["icon"])).isNull()
    provider = QgsApplication.processingRegistry().providerById("hsanomaly")
    assert not provider.icon().isNull()
    assert Path(provider.svgIconPath()) == plugin_dir / metadata["icon"]
    plugin_icon = QIcon(str(plugin_dir / metadata["icon"])).pixmap(16, 16).toImage()
    for algorithm in provider.algorithms():      # the plugin's, not QGIS's generic gear
        assert algorithm.icon().pixmap(16, 16).toImage() == plugin_icon
        assert algorithm.svgIconPath().endswith(".svg")      # QGIS's: the modeler draws SVGs
        assert {"hyperspectral", "anomaly"} <= set(algorithm.tags())       # found by search
        assert algorithm.helpUrl() == metadata["homepage"]


def test_an_output_that_cannot_be_styled_is_said_in_the_log(plugin, tmp_path):
    """Styling runs after the algorithm, as QGIS loads its outputs: a failure there must be
    said (the layer still loads, unstyled), not pass in silence."""
    import rasterio
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

    from hsanomaly_qgis.styles import LayerStyler

    with rasterio.open(tmp_path / "h.tif", "w", driver="GTiff", width=4, height=3, count=1,
                       dtype="float32") as ds:
        ds.write(np.arange(12, dtype=np.float32).reshape(1, 3, 4))
    errors, feedback = [], QgsProcessingFeedback()
    feedback.reportError = lambda message, fatal=False: errors.append(message)

    def broken(layer):
        raise RuntimeError("no colour ramp")

    LayerStyler.create(broken, QgsRasterLayer).postProcessLayer(
        QgsRasterLayer(str(tmp_path / "h.tif"), "heat"), QgsProcessingContext(), feedback)
    assert len(errors) == 1 and "could not style the layer (no colour ramp)" in errors[0]
