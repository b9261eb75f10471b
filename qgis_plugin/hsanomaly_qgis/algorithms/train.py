"""Train model: hyperspectral raster(s) in, a model bundle folder out (for Detect anomalies)."""

from qgis.core import (QgsProcessing, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer)

from .base import HsanomalyAlgorithm, is_empty, library_errors, progress_callback


class TrainModel(HsanomalyAlgorithm):
    INPUTS = "INPUTS"
    MASK = "MASK"
    WINDOW = "WINDOW"
    BANDS = "BANDS"
    ITERATIONS = "ITERATIONS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"

    def name(self):
        return "train"

    def displayName(self):
        return "Train model"

    def shortHelpString(self):
        return ("Trains a Wasserstein GAN on pixel windows of the input rasters and writes a "
                "model bundle folder for 'Detect anomalies' (GAN scores). Pixels where the "
                "exclusion mask is non-zero (e.g. known targets) are left out. Needs torch: "
                "pip install \"hsanomaly[train]\".")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, "Hyperspectral rasters", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.MASK, "Exclusion mask (non-zero = leave out)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.WINDOW, "Window size (odd, pixels)", defaultValue=1, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BANDS, "Bin to this many bands (default: at most 32)", optional=True,
            minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.ITERATIONS, "Generator iterations", defaultValue=1000, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Model bundle"))

    def required_modules(self, parameters, context):
        return ("hsanomaly", "torch", "onnx")

    def processAlgorithm(self, parameters, context, feedback):
        inputs = [layer.source() for layer in
                  self.parameterAsLayerList(parameters, self.INPUTS, context)]
        mask = None if is_empty(parameters, self.MASK) else \
            self.parameterAsRasterLayer(parameters, self.MASK, context).source()
        bands = None if is_empty(parameters, self.BANDS) else \
            self.parameterAsInt(parameters, self.BANDS, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        with library_errors():
            from hsanomaly.training import train

            bundle = train(inputs, out, mask=mask, bands=bands,
                           window=self.parameterAsInt(parameters, self.WINDOW, context),
                           iterations=self.parameterAsInt(parameters, self.ITERATIONS, context),
                           seed=self.parameterAsInt(parameters, self.SEED, context),
                           progress=False, callback=progress_callback(feedback))
        feedback.pushInfo(f"{bundle.path}: model bundle")
        return {self.OUTPUT: out}
