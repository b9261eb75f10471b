"""The "hsanomaly" Processing provider."""

from qgis.core import QgsProcessingProvider

from .algorithms import ALGORITHMS


class HsanomalyProvider(QgsProcessingProvider):
    def id(self):
        return "hsanomaly"

    def name(self):
        return "hsanomaly"

    def longName(self):
        return "hsanomaly: hyperspectral anomaly detection"

    def loadAlgorithms(self):
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self):
        return ["gpkg"]
