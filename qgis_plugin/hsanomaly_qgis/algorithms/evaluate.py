"""Evaluate a heatmap against a truth mask: AUC, logAUC, lgFAR, Pd, a per-target table, plots."""

from pathlib import Path

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsField,
                       QgsFields, QgsGeometry, QgsPointXY, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingOutputNumber,
                       QgsProcessingParameterDefinition, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from .. import library
from .base import (HsanomalyAlgorithm, field_in, geopackage_file, in_own_thread,
                   is_empty, mask_parameter, mask_source, raster_source, set_in_qgis)

# per-target report key -> table field type
TARGET_FIELDS = {"id": QVariant.String, "pixels": QVariant.Int, "auc": QVariant.Double,
                 "log_auc": QVariant.Double, "lg_far": QVariant.Double, "pd": QVariant.Double,
                 "max_score": QVariant.Double, "centroid_row": QVariant.Double,
                 "centroid_col": QVariant.Double}
# output -> (report key, description as the Results Viewer and the model designer show it)
METRICS = {"AUC": ("auc", "AUC (area under the ROC curve)"),
           "LOG_AUC": ("log_auc", "logAUC (the ROC curve over log false-alarm rates)"),
           "LG_FAR": ("lg_far", "lgFAR (log10 false-alarm rate at the first target pixel)"),
           "PD": ("pd", "Pd (share of target pixels found at the false-alarm rate of Pd)")}
# at the false-alarm rate of Pd: output -> (report key, description)
COUNTS = {"TARGETS_FOUND": ("n_targets_found", "targets found at the false-alarm rate of Pd"),
          "FALSE_ALARM_REGIONS": ("n_false_alarm_regions",
                                  "false-alarm regions at the false-alarm rate of Pd"),
          "FALSE_ALARM_REGIONS_PER_KM2": ("false_alarm_regions_per_km2",
                                          "false-alarm regions per km² of background (none "
                                          "without a CRS; over the geodesic footprint in a "
                                          "geographic one)"),
          # what a model feeds to Detect to draw the pixels Pd counts (its Threshold or FAR)
          "PD_THRESHOLD": ("pd_threshold", "the score above which Pd counts pixels (Detect's "
                                           "Threshold draws the same pixels)"),
          "PD_DETECT_FAR": ("pd_detect_far", "Detect's false-alarm rate that draws the pixels "
                                             "Pd counts (a share of all valid pixels)")}


class Evaluate(HsanomalyAlgorithm):
    HEATMAP = "HEATMAP"
    TRUTH = "TRUTH"
    OUTER_MASK = "OUTER_MASK"
    FORMER_OUTER_MASK = "OUTER"   # until 0.2, where Detect's OUTER is its ring's outer window
    TARGETS = "TARGETS"
    PLOTS = "PLOTS"
    PD_FAR = "PD_FAR"
    N_TARGETS = "N_TARGETS"
    ARGUMENTS = {"outer_mask": OUTER_MASK}

    TAGS = ["ROC", "AUC", "Pd", "false-alarm rate", "evaluation", "accuracy"]

    def flags(self):
        """No Cancel: the library's evaluation is one call that cannot stop part-way (the
        dialog's Cancel did nothing once it had started)."""
        return super().flags() & ~QgsProcessingAlgorithm.FlagCanCancel

    def name(self):
        return "evaluate"

    def displayName(self):
        return "Evaluate heatmap"

    def shortHelpString(self):
        return ("Scores band 1 of an anomaly heatmap against a truth mask (a raster on its "
                "grid, non-zero = target, or a vector layer of target polygons, points or "
                "lines, reprojected and burnt onto its pixels): "
                "AUC, logAUC, lgFAR and Pd (the share of target pixels found at a chosen "
                "false-alarm rate) overall and per target (connected components T1..Tn), and "
                "at that rate the targets found and the false-alarm regions (blobs above the "
                "threshold that hold no target pixel). "
                "Pixels inside the optional outer mask but outside the truth are excluded. "
                "Optionally writes ROC, semi-log ROC, histogram and heatmap PNGs.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.HEATMAP, "Anomaly heatmap"))
        self.addParameter(mask_parameter(self.TRUTH, "Truth mask (raster, or target features)"))
        self.addParameter(mask_parameter(
            self.OUTER_MASK, "Outer target mask (ambiguous pixels)", optional=True))
        former = mask_parameter(self.FORMER_OUTER_MASK, "Outer target mask (former name)",
                                optional=True)
        former.setFlags(former.flags() | QgsProcessingParameterDefinition.FlagHidden)
        self.addParameter(former)     # a script's processing.run still names it
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.TARGETS, "Per-target metrics (points at the targets)", QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.PLOTS, "Plots folder", optional=True, createByDefault=False))
        pd_far = QgsProcessingParameterNumber(
            self.PD_FAR, "False-alarm rate at which Pd is reported (a share of the truth's "
            "background pixels)",
            QgsProcessingParameterNumber.Double, defaultValue=library.load().pd_far)
        pd_far.setFlags(pd_far.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(pd_far)     # the library refuses a rate outside (0, 1)
        for output, (_, description) in METRICS.items():
            self.addOutput(QgsProcessingOutputNumber(output, description))
        self.addOutput(QgsProcessingOutputNumber(self.N_TARGETS, "number of targets"))
        for output, (_, description) in COUNTS.items():
            self.addOutput(QgsProcessingOutputNumber(output, description))

    def other_fields(self):
        """The summary names the rate Detect takes to draw what Pd counts by Detect's field."""
        from .detect import DetectAnomalies

        return {"far": field_in(DetectAnomalies, DetectAnomalies.FAR)}

    def _outer_mask_name(self, parameters, feedback):
        """The parameter the outer mask was given by: OUTER_MASK, or its former name OUTER
        (said), or None. The former name is kept: QGIS drops a name it does not know without
        a word, and the evaluation would have counted the ambiguous pixels as background."""
        given = [name for name in (self.OUTER_MASK, self.FORMER_OUTER_MASK)
                 if not is_empty(parameters, name)]
        if len(given) == 2:
            raise QgsProcessingException(f"{self.OUTER_MASK} and {self.FORMER_OUTER_MASK}: give "
                                         f"the outer mask once, as {self.OUTER_MASK}")
        if given == [self.FORMER_OUTER_MASK]:
            feedback.pushWarning(f"{self.FORMER_OUTER_MASK} is now {self.OUTER_MASK} (Detect's "
                                 f"{self.FORMER_OUTER_MASK} is its ring's outer window); the "
                                 "former name still works")
        return given[0] if given else None

    def processAlgorithm(self, parameters, context, feedback):
        heatmap = raster_source(self, parameters, self.HEATMAP, context)
        for note in set_in_qgis(self, parameters, self.HEATMAP, context,
                                "vector truths and the per-target points go by the file's",
                                "to use it", "are evaluated"):
            feedback.pushWarning(note)
        truth = mask_source(self, parameters, self.TRUTH, context, feedback)
        outer_name = self._outer_mask_name(parameters, feedback)
        outer = None if outer_name is None else \
            mask_source(self, parameters, outer_name, context, feedback)
        plots = None if is_empty(parameters, self.PLOTS) else \
            self.parameterAsFileOutput(parameters, self.PLOTS, context)
        # the table is written last: a folder it cannot go in is refused before the plots are
        table = self.parameterAsOutputLayer(parameters, self.TARGETS, context)
        file = geopackage_file(table)[0]       # a file's name (relative ones too), not a URI
        if file and Path(file).suffix and not file.startswith("memory:") and "://" not in file \
                and not Path(file).parent.is_dir():
            raise QgsProcessingException(f"{file}: the folder of the per-target table does "
                                         "not exist")
        if feedback.isCanceled():
            raise QgsProcessingException(f"{heatmap}: evaluation cancelled")
        with self.library_errors(feedback):
            from hsanomaly.api import evaluate
            from hsanomaly.evaluation.files import format_summary
            from hsanomaly.io.paths import check_paths
            from hsanomaly.io.gdal import is_gdal_name
            from hsanomaly.io.styles import gpkg_tables
            from hsanomaly.io.vector import vector_files
            from hsanomaly.spelling import spell

            # QGIS writes the table, after the library's checks: never over an input's file
            # (a new layer of the truth's GeoPackage is no harm; a database table is no file)
            inputs = [(spell(name.lower()), file)
                      for name, path in ((self.HEATMAP, heatmap), (self.TRUTH, truth),
                                         (self.OUTER_MASK, outer)) if path
                      for file in vector_files(path)]
            written, layer = geopackage_file(table)
            if written and not is_gdal_name(written) and (layer is None
                                                          or layer in gpkg_tables(written)):
                check_paths(inputs, [(spell(self.TARGETS.lower()), written)], writable=False)
            # a folder's dialog asks about the folder, never the plots in it: the library
            # replaces its own plots there and refuses anyone else's files
            pd_far = self.parameterAsDouble(parameters, self.PD_FAR, context)
            report = in_own_thread(lambda: evaluate(
                heatmap, truth, outer_mask=outer, plots=plots, title=Path(heatmap).stem,
                overwrite=False, pd_far=pd_far))
            feedback.setProgress(100)
            feedback.pushInfo(format_summary(report))
            if plots:
                feedback.pushInfo(f"{plots}: plots")

        # each target at its centre on the map, where the heatmap has a geotransform; on one
        # without georeferencing, at its centre in the pixel coordinates QGIS shows it in (x the
        # column, y minus the row), where Detect's polygons of it lie
        from hsanomaly.io.vector import PIXEL_GRID, map_coordinates

        for target in report["targets"]:
            if "centroid_x" not in target and not report.get("crs"):
                target["centroid_x"], target["centroid_y"] = map_coordinates(
                    PIXEL_GRID, target["centroid_row"] + 0.5, target["centroid_col"] + 0.5)
        placed = all("centroid_x" in target for target in report["targets"])
        crs = QgsCoordinateReferenceSystem()
        if placed and report.get("crs"):
            crs.createFromUserInput(report["crs"])
        fields = QgsFields()
        for key, kind in TARGET_FIELDS.items():
            fields.append(QgsField(key, kind))
        sink, table = self.parameterAsSink(
            parameters, self.TARGETS, context, fields,
            QgsWkbTypes.Point if placed else QgsWkbTypes.NoGeometry, crs)
        for target in report["targets"]:
            feature = QgsFeature(fields)
            feature.setAttributes([target[key] for key in TARGET_FIELDS])
            if placed:
                feature.setGeometry(QgsGeometry.fromPointXY(
                    QgsPointXY(target["centroid_x"], target["centroid_y"])))
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        del sink   # closes the file now, not whenever Python frees this frame

        outputs = {output: report[key] for output, (key, _) in METRICS.items()}
        outputs.update({output: report[key] for output, (key, _) in COUNTS.items()})
        outputs.update({self.N_TARGETS: report["n_targets"], self.TARGETS: table})
        if plots:
            outputs[self.PLOTS] = plots
        return outputs
