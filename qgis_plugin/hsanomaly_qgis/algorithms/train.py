"""Train model: hyperspectral raster(s) in, a model bundle folder out (for Detect anomalies)."""

from qgis.core import (QgsProcessing, QgsProcessingParameterBoolean,
                       QgsProcessingParameterDefinition, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber)

from .. import library
from ..dependencies import unmet
from .base import (HsanomalyAlgorithm, in_own_thread, is_empty, mask_parameter, mask_source,
                   progress_callback, raster_sources, set_in_qgis)


# QGIS reads a whole-number field as a 32-bit int (parameterAsInt): a larger seed, which the
# library takes, would wrap to another one; such seeds go through the library's own doors
SEED_MAX = 2**31 - 1

class TrainModel(HsanomalyAlgorithm):
    INPUTS = "INPUTS"
    MASK = "MASK"
    WINDOW = "WINDOW"
    BANDS = "BANDS"
    WHITEN = "WHITEN"
    ITERATIONS = "ITERATIONS"
    SEED = "SEED"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    ARGUMENTS = {"out": OUTPUT}

    TAGS = ["GAN", "WGAN", "training", "model"]

    def name(self):
        return "train"

    def displayName(self):
        return "Train model"

    def shortHelpString(self):
        hint = unmet(*self.required_modules({}, None))
        note = hint + "\n\n" if hint else ""
        return note + (
            "Trains a Wasserstein GAN on pixel windows of the input rasters and writes a model "
            "bundle folder for 'Detect anomalies' (GAN scores). Pixels where the exclusion mask "
            "is non-zero (e.g. known targets) are left out. A cancelled or failed training "
            "keeps a checkpoint beside the bundle folder: run again to the same folder with "
            "'Resume an interrupted training' to continue it. Needs torch and onnx (the [train] "
            "extra). Inputs may also be GDAL subdatasets or /vsizip/... paths.")

    def initAlgorithm(self, config=None):
        lib = library.load()   # the library's defaults, read when QGIS builds the algorithm
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, "Hyperspectral rasters", QgsProcessing.TypeRaster))
        self.addParameter(mask_parameter(
            self.MASK, "Exclusion mask (non-zero or covered by a feature = leave out)",
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.WINDOW, "Window size (odd, pixels)", defaultValue=lib.train_window, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BANDS, f"Bin to this many bands (default: at most {lib.train_bands})", optional=True,
            minValue=1))
        self.addParameter(QgsProcessingParameterBoolean(
            self.WHITEN, "Whiten the bands (the model the recon and anogan scores want)",
            defaultValue=False))
        self.addParameter(QgsProcessingParameterNumber(
            self.ITERATIONS, "Generator iterations", defaultValue=lib.iterations, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       defaultValue=lib.train_seed, minValue=0,
                                                       maxValue=SEED_MAX))
        resume = QgsProcessingParameterBoolean(
            self.RESUME, "Resume an interrupted training (from the checkpoint a cancelled or "
            "failed run to the same Model bundle folder kept beside it)", defaultValue=False)
        resume.setFlags(resume.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(resume)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Model bundle"))

    def required_modules(self, parameters, context):
        return ("hsanomaly", "torch", "onnx", "onnxruntime")

    def processAlgorithm(self, parameters, context, feedback):
        self.refuse_temporary_resume(parameters, self.RESUME, self.OUTPUT, context)
        inputs = raster_sources(self, parameters, self.INPUTS, context)
        for note in set_in_qgis(self, parameters, self.INPUTS, context, pixels="are trained on"):
            feedback.pushWarning(note)
        mask = None if is_empty(parameters, self.MASK) else \
            mask_source(self, parameters, self.MASK, context, feedback)
        bands = None if is_empty(parameters, self.BANDS) else \
            self.parameterAsInt(parameters, self.BANDS, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        with self.library_errors(feedback):
            from hsanomaly.api import train

            settings = dict(
                mask=mask, bands=bands,
                whiten=self.parameterAsBool(parameters, self.WHITEN, context),
                window=self.parameterAsInt(parameters, self.WINDOW, context),
                iterations=self.parameterAsInt(parameters, self.ITERATIONS, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                resume=self.parameterAsBool(parameters, self.RESUME, context))
            bundle = in_own_thread(lambda: train(inputs, out, progress=False,
                                                 callback=progress_callback(feedback), **settings))
        feedback.pushInfo(bundle.text())
        return {self.OUTPUT: out}
