"""Detect anomalies: a raster layer in, a heatmap raster (and target polygons) out."""

from qgis.core import (QgsProcessing, QgsProcessingParameterBoolean,
                       QgsProcessingParameterDefinition, QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from .. import library
from ..dependencies import unmet
from ..styles import load_as, style_heatmap_on_load, style_targets_on_load
from .base import (HsanomalyAlgorithm, field_in, geopackage_file, in_own_thread,
                   in_temporary_folder, is_empty, mask_parameter, mask_source,
                   progress_callback, raster_source, set_in_qgis)
from .train import SEED_MAX, TrainModel


class DetectAnomalies(HsanomalyAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    MASK = "MASK"
    SCORE = "SCORE"
    SOLVER = "SOLVER"
    PURGE = "PURGE"
    TOP_RINGS = "TOP_RINGS"
    NEIGHBOUR_WEIGHT = "NEIGHBOUR_WEIGHT"
    RINGS = "RINGS"
    IGNORE_WAVELENGTHS = "IGNORE_WAVELENGTHS"
    OUTER = "OUTER"
    GUARD = "GUARD"
    PCA = "PCA"
    COMPONENTS = "COMPONENTS"
    SEED = "SEED"
    # optional whole-number fields passed to the library as these options when filled in
    WHOLE_OPTIONS = {OUTER: "outer", GUARD: "guard", PCA: "pca", COMPONENTS: "components"}
    THRESHOLD = "THRESHOLD"
    FAR = "FAR"
    TILE = "TILE"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    ARGUMENTS = {"src": INPUT, "dst": OUTPUT}
    POLYGONS = "POLYGONS"

    TAGS = ["RX", "local RX", "Gaussian mixture", "GAN", "WGAN", "heatmap", "polygons"]

    def name(self):
        return "detect"

    def displayName(self):
        return "Detect anomalies"

    def shortHelpString(self):
        lib = library.load()
        baselines = [score for score in lib.scores if score not in lib.model_scores]
        hint = unmet("hsanomaly")
        note = hint + "\n\n" if hint else ""
        return note + (
            "Scores every pixel of a hyperspectral raster: high score = anomalous. The baselines "
            f"{', '.join(baselines)} are fitted on the input and take no model. The GAN scores "
            f"{', '.join(lib.model_scores)} use a model bundle from 'Train model' (without one, "
            "the library trains a quick model on the input if torch is installed, and keeps "
            "it beside the heatmap, heat.model for heat.tif, for the Model bundle folder). Target "
            "polygons need a score threshold or a false-alarm rate (the share of scored "
            "pixels left above it, targets among them). An exclusion mask (a "
            "raster on the input's grid, or a vector layer: clouds, water, known structures) "
            "leaves its pixels out of fitting, training and scoring. The defaults are the "
            f"library's: score {lib.score}, latent search {lib.solver}, tiles of {lib.tile} "
            "pixels. A failed or interrupted run keeps its finished tiles beside the heatmap "
            "file: run again to the same file with 'Resume an interrupted run' to continue it "
            "(a cancel keeps nothing). The input may also be a GDAL subdataset (NETCDF:..., "
            "HDF5:..., GTIFF_DIR:...) or a /vsizip/... path, passed to the library unchanged.")

    def initAlgorithm(self, config=None):
        # read from the library here, not at import: where hsanomaly is not installed yet
        # the plugin still loads, the dialog opens and its help says how to install it
        lib = library.load()
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Hyperspectral raster"))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model bundle folder (from Train model)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.SCORE, "Score", options=list(lib.scores), defaultValue=lib.score,
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.SOLVER, "Latent search (GAN scores)", options=list(lib.solvers),
            defaultValue=lib.solver, usesStaticStrings=True))
        def own(default):       # the default score's value, where it takes the option
            return "" if default is None else f", {lib.score} {default:g}"

        purge = QgsProcessingParameterNumber(
            self.PURGE, f"Purge: share of pixels left out of the rings' background (scores "
            f"with rings; empty: the score's own{own(lib.purge)})",
            QgsProcessingParameterNumber.Double, optional=True)    # the library checks it
        top_rings = QgsProcessingParameterNumber(
            self.TOP_RINGS, f"Top rings: each pixel averages its this many largest ring "
            f"distances (scores with several rings; 0: every ring; empty: the score's "
            f"own{own(lib.top_rings)})",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=0)
        neighbour_weight = QgsProcessingParameterNumber(
            self.NEIGHBOUR_WEIGHT, f"Neighbour weight: adds this times the highest score of "
            f"each pixel's 3x3 neighbourhood (scores with rings or a GAN residual; 0: none; "
            f"empty: the score's own{own(lib.neighbour_weight)})",
            QgsProcessingParameterNumber.Double, optional=True)    # the library checks it
        rings = QgsProcessingParameterString(
            self.RINGS, f"Rings: outer/guard windows (scores with several rings; wider ones reach "
            f"wider targets; empty: {lib.rings})", optional=True)
        ignore = QgsProcessingParameterBoolean(
            self.IGNORE_WAVELENGTHS, "Ignore wavelengths: score with a model even where the "
            "raster's band centres differ from those it was trained on (GAN scores)",
            defaultValue=False)
        def taking(option):     # the scores that take it, as the library's registry says
            return ", ".join(lib.taking.get(option, ()))

        whole = [QgsProcessingParameterNumber(
            field, text.format(taking(option)), QgsProcessingParameterNumber.Integer,
            optional=True, minValue=1) for field, option, text in (
            (self.OUTER, "outer", "Outer window: the local RX ring's outer size in pixels "
                                  "({}; empty: the score's own)"),
            (self.GUARD, "guard", "Guard window: the local RX ring's inner size left out "
                                  "({}; empty: the score's own)"),
            (self.PCA, "pca", "Principal components kept ({}; empty: the score's own)"),
            (self.COMPONENTS, "components", "Mixture components ({}; empty: the score's own)"))]
        seed = QgsProcessingParameterNumber(
            self.SEED, f"Random seed of the pixels sampled and the latent search's codebook "
            f"({taking('seed')}; empty: {lib.seed}; a model trained with another seed stores "
            f"its codebook for that one, used when given here)",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=0, maxValue=SEED_MAX)
        for advanced in (purge, top_rings, neighbour_weight, rings, ignore, *whole, seed):
            advanced.setFlags(advanced.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(advanced)
        self.addParameter(QgsProcessingParameterNumber(
            self.THRESHOLD, "Polygon score threshold", QgsProcessingParameterNumber.Double,
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.FAR, "Polygon false-alarm rate (e.g. 0.001, or auto)", optional=True))
        self.addParameter(mask_parameter(
            self.MASK, "Exclusion mask (non-zero or covered by a feature = leave out)",
            optional=True))
        tile = QgsProcessingParameterNumber(self.TILE, "Tile size (pixels)",
                                            QgsProcessingParameterNumber.Integer,
                                            defaultValue=lib.tile, minValue=lib.min_tile)
        resume = QgsProcessingParameterBoolean(
            self.RESUME, "Resume an interrupted run (from the finished tiles a failed run to "
            "the same heatmap file kept beside it; a finished run is kept)", defaultValue=False)
        for advanced in (tile, resume):
            advanced.setFlags(advanced.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(advanced)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Anomaly heatmap"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.POLYGONS, "Target polygons", QgsProcessing.TypeVectorPolygon,
            optional=True, createByDefault=False))

    def other_fields(self):
        """The GAN scores' advice on how their model was trained names Train model's field."""
        return {"whiten": field_in(TrainModel, TrainModel.WHITEN)}

    def required_modules(self, parameters, context):
        if self.parameterAsEnumString(parameters, self.SCORE, context) in \
                library.load().model_scores:
            return ("hsanomaly", "onnxruntime")
        return ("hsanomaly",)

    def _far(self, parameters, context):
        """The rate's text, which the library reads (a number or "auto"), or None."""
        return self.parameterAsString(parameters, self.FAR, context).strip() or None

    def processAlgorithm(self, parameters, context, feedback):
        self.refuse_temporary_resume(parameters, self.RESUME, self.OUTPUT, context)
        source = raster_source(self, parameters, self.INPUT, context)
        for note in set_in_qgis(self, parameters, self.INPUT, context):
            feedback.pushWarning(note)
        model = None if is_empty(parameters, self.MODEL) else \
            self.parameterAsFile(parameters, self.MODEL, context)
        mask = None if is_empty(parameters, self.MASK) else \
            mask_source(self, parameters, self.MASK, context, feedback)
        heatmap = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        destination = self.parameterAsOutputLayer(parameters, self.POLYGONS, context)
        polygons, layer = geopackage_file(destination)
        threshold = None if is_empty(parameters, self.THRESHOLD) else \
            self.parameterAsDouble(parameters, self.THRESHOLD, context)
        far = self._far(parameters, context)
        score = self.parameterAsEnumString(parameters, self.SCORE, context)
        options, unused = {}, []     # a dialog keeps its fields: said, not refused, when unused
        solver = self.parameterAsEnumString(parameters, self.SOLVER, context)
        if library.takes_solver(score):
            options["solver"] = solver
        elif solver != library.load().solver:
            unused.append((f"Latent search {solver!r}", "which searches no latent space"))
        if not is_empty(parameters, self.PURGE):     # a score without rings refuses it
            options["purge"] = self.parameterAsDouble(parameters, self.PURGE, context)
        if not is_empty(parameters, self.TOP_RINGS):
            options["top_rings"] = self.parameterAsInt(parameters, self.TOP_RINGS, context)
        if not is_empty(parameters, self.NEIGHBOUR_WEIGHT):
            options["neighbour_weight"] = self.parameterAsDouble(parameters, self.NEIGHBOUR_WEIGHT,
                                                                 context)
        for field, option in {**self.WHOLE_OPTIONS, self.SEED: "seed"}.items():
            if not is_empty(parameters, field):      # a score without it refuses it
                options[option] = self.parameterAsInt(parameters, field, context)
        rings = self.parameterAsString(parameters, self.RINGS, context).strip()
        if rings:
            options["rings"] = rings
        if self.parameterAsBool(parameters, self.IGNORE_WAVELENGTHS, context):
            if score in library.load().model_scores:
                options["ignore_wavelengths"] = True
            else:                                        # a baseline has no model to ignore
                unused.append(("Ignore wavelengths", "which takes no model"))
        for what, why in unused:
            feedback.pushWarning(f"{what}: not used by score {score!r}, {why}")
        with self.library_errors(feedback):
            from hsanomaly.api import detect
            from hsanomaly.polygons import LAYER, check_no_other_layers
            from hsanomaly.scorers import refuse_former_option
            from hsanomaly.spelling import counted

            refuse_former_option(score, options)     # another score's field, not a former name

            if layer not in (None, LAYER):
                feedback.pushWarning(f"Target polygons: written as layer {LAYER!r} of "
                                     f"{polygons}, not {layer!r}: hsanomaly writes a GeoPackage "
                                     "of its own")
            if polygons:      # replaced without asking: never with a user's layers in it
                check_no_other_layers(polygons)
            tile = self.parameterAsInt(parameters, self.TILE, context)
            resume = self.parameterAsBool(parameters, self.RESUME, context)
            result = in_own_thread(lambda: detect(
                source, heatmap, score=score, model=model, polygons=polygons,
                threshold=threshold, far=far, mask=mask, tile=tile, resume=resume,
                overwrite=True,   # QGIS replaces an algorithm's output files (its dialog asks)
                progress=False, callback=progress_callback(feedback), **options))
        feedback.pushInfo(result.text())
        if result.model and not model:     # the quick model: a folder the user did not choose
            feedback.pushInfo(result.model_text(source, "reuse it in the Model bundle folder "
                                                "field"))
            if in_temporary_folder(result.model):
                feedback.pushWarning(f"{result.model}: the quick model lies beside a temporary "
                                     "heatmap, in QGIS's temporary folder, which QGIS removes "
                                     "when it closes: to keep it, save the heatmap to a file "
                                     "(its model is kept beside it) or copy the folder")
        style_heatmap_on_load(context, heatmap)
        outputs = {self.OUTPUT: heatmap}
        if polygons:
            feedback.pushInfo(f"{polygons}: {counted(result.polygons, 'target polygon')}")
            written = f"{polygons}|layername={LAYER}"     # what QGIS loads, whatever it named
            load_as(context, destination, written)
            style_targets_on_load(context, written)
            outputs[self.POLYGONS] = polygons
        return outputs
