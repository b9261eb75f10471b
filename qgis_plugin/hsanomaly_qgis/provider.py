"""The "hsanomaly" Processing provider."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .algorithms.base import ICON


class HsanomalyProvider(QgsProcessingProvider):
    def id(self):
        return "hsanomaly"

    def name(self):
        return "hsanomaly"

    def longName(self):
        return "hsanomaly: hyperspectral anomaly detection"

    def icon(self):
        return QIcon(str(ICON))

    def svgIconPath(self):
        return str(ICON)

    def loadAlgorithms(self):
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self):
        return ["gpkg"]
