"""How the algorithms' outputs look when QGIS loads them: a styled heatmap, outlined targets.

Processing loads an algorithm's outputs after it finishes and then hands each layer to the
post-processor set on it (``QgsProcessingContext.LayerDetails.setPostProcessor``).
"""

import hashlib
import math
from collections import deque

from qgis.core import (QgsColorRampShader, QgsDataProvider, QgsGradientColorRamp, QgsMapLayer,
                       QgsProcessingLayerPostProcessorInterface, QgsRasterBandStats,
                       QgsRasterLayer, QgsRasterShader, QgsReadWriteContext,
                       QgsSingleBandPseudoColorRenderer, QgsStyle, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

# the styles follow the library's pictures (a heatmap only the library wrote is styled here)


def heatmap_ramp():
    """The colour ramp of the library's pictures (``quicklook.COLORMAP``: inferno), from
    QGIS's default style (a two-colour gradient of its ends where the style lacks it)."""
    from hsanomaly.quicklook import COLORMAP

    ramp = QgsStyle.defaultStyle().colorRamp(COLORMAP.capitalize())
    return ramp if ramp is not None else QgsGradientColorRamp(QColor(0, 0, 4),
                                                              QColor(252, 255, 164))


def style_heatmap(layer):
    """Single-band pseudocolour on band 1, the ramp stretched between the percentiles the
    library's pictures use (``quicklook.STRETCH_PERCENTILES``; NaN nodata excluded): a few
    extreme scores no longer leave every other pixel at the ramp's dark end. High scores,
    the anomalies, come out bright."""
    from hsanomaly.quicklook import STRETCH_PERCENTILES

    provider = layer.dataProvider()
    low_share, high_share = (percent / 100 for percent in STRETCH_PERCENTILES)
    low, high = provider.cumulativeCut(1, low_share, high_share, layer.extent(), 0)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        stats = provider.bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max,
                                        layer.extent(), 0)
        low, high = stats.minimumValue, stats.maximumValue
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        low, high = (low, low + 1) if math.isfinite(low) else (0.0, 1.0)
    function = QgsColorRampShader(low, high, heatmap_ramp(), QgsColorRampShader.Interpolated,
                                  QgsColorRampShader.Continuous)
    function.classifyColorRamp()
    shader = QgsRasterShader(low, high)
    shader.setRasterShaderFunction(function)
    renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_targets(layer):
    """Target polygons styled as the library's GeoPackage styles them (``io.styles``)."""
    from hsanomaly.io.styles import TARGETS_QML

    document = QDomDocument()
    document.setContent(TARGETS_QML)
    layer.importNamedStyle(document)
    layer.triggerRepaint()


STYLE_MARK = "hsanomaly/style"     # a layer property: ``style_digest`` of the style it was given


def style_digest(layer):
    """A digest of what the user sees of ``layer`` (its symbology, rendering and labels, as
    QGIS saves a style), which tells a layer still in the style given from one restyled."""
    document = QDomDocument()
    layer.exportNamedStyle(document, QgsReadWriteContext(), QgsMapLayer.StyleCategories(
        QgsMapLayer.Symbology | QgsMapLayer.Rendering | QgsMapLayer.Labeling))
    return hashlib.sha256(document.toString().encode()).hexdigest()


class LayerStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles a layer after Processing loads it. ``create`` keeps the Python object alive
    until QGIS has used it (QGIS owns it on the C++ side only)."""

    _alive = deque(maxlen=64)

    def __init__(self, style, kind):
        super().__init__()
        self.style, self.kind = style, kind

    def postProcessLayer(self, layer, context, feedback):
        if not isinstance(layer, self.kind) or not layer.isValid():
            return
        try:
            # a rerun to the same file gets the project's layer of the last run: one the user
            # styled since keeps that style; one still in ours is styled for the new data
            mark = layer.customProperty(STYLE_MARK)
            restyled = mark is not None and mark != style_digest(layer)
            # the layer still shows the last run's features, or its pixels' statistics (the
            # provider caches them past a reload): opened again, it shows the file as it is
            layer.setDataSource(layer.source(), layer.name(), layer.providerType(),
                                QgsDataProvider.ProviderOptions())
            if not restyled:
                self.style(layer)
                layer.setCustomProperty(STYLE_MARK, style_digest(layer))
        except Exception as err:   # noqa: BLE001 - a failed style must not fail the run
            if feedback is not None:
                feedback.reportError(f"{layer.source()}: could not style the layer ({err})")

    @classmethod
    def create(cls, style, kind):
        styler = cls(style, kind)
        cls._alive.append(styler)
        return styler


def style_on_load(context, path, style, kind):
    """Style output ``path`` with ``style`` when Processing loads it into the project."""
    if path and context.willLoadLayerOnCompletion(path):
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(
            LayerStyler.create(style, kind))


def load_as(context, destination, path):
    """Have Processing load output ``destination`` (the name QGIS gave, a GeoPackage's
    "ogr:dbname=..." or "f.gpkg|layername=x") as ``path``, which hsanomaly wrote: QGIS found
    no layer by the name it gave, said the output was "not correctly generated", and loaded
    nothing."""
    layers = context.layersToLoadOnCompletion()
    if destination != path and destination in layers:
        layers[path] = layers.pop(destination)
        context.setLayersToLoadOnCompletion(layers)


def style_heatmap_on_load(context, path):
    style_on_load(context, path, style_heatmap, QgsRasterLayer)


def style_targets_on_load(context, path):
    style_on_load(context, path, style_targets, QgsVectorLayer)
