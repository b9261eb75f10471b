"""What every hsanomaly algorithm shares: dependency checks, progress, error translation."""

import contextlib
import contextvars
import logging
import math
import re
import threading
import time
import warnings
from pathlib import Path

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

from ..dependencies import install_hint, missing, unmet

LOG_INTERVAL = 2.0   # seconds between progress lines in the log, at most
LOG_STEP = 0.1       # or this much progress
RASTER_TYPES = ("raster", "multilayer")
MASK_TYPES = ("layer",)        # a raster or vector mask (``mask_parameter``)


ICON = Path(__file__).resolve().parents[1] / "icon.png"
# what the toolbox's search finds every algorithm by (its display name aside)
TAGS = ["hyperspectral", "anomaly", "anomaly detection", "target detection", "hsanomaly"]


class HsanomalyAlgorithm(QgsProcessingAlgorithm):
    """Base class; subclasses name the modules they need in ``required_modules``, and what
    else the toolbox's search finds them by in ``TAGS``."""

    # the library's argument names (src, out) that are not a parameter's name here -> the
    # parameter that stands for each
    ARGUMENTS = {}
    TAGS: list = []

    def icon(self):        # the plugin's, not QGIS's generic gear (the Model Designer draws
        from qgis.PyQt.QtGui import QIcon    # svgIconPath, an SVG: left QGIS's)

        return QIcon(str(ICON))

    def tags(self):
        return TAGS + self.TAGS

    def helpUrl(self):          # the plugin's homepage, as metadata.txt gives it
        metadata = (ICON.parent / "metadata.txt").read_text(encoding="utf-8")
        found = re.search(r"^homepage=(.+)$", metadata, re.M)
        return found.group(1).strip() if found else ""

    def required_modules(self, parameters, context):
        return ("hsanomaly",)

    def createInstance(self):
        return type(self)()

    def checkParameterValues(self, parameters, context):
        """QGIS's own check of each value, with one line naming the value and what is wrong
        where QGIS would say only "Incorrect parameter value for TILE"; rasters given as GDAL
        dataset names pass to the library as they are: QGIS 3.22 loads a layer from a string
        only where it names an existing file, so subdatasets and /vsi paths go to the library,
        which says what is wrong with them."""
        hint = unmet(*self.required_modules(parameters, context))
        if hint:
            return False, hint
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            found = source_definition(value, context) if definition.type() in MASK_TYPES \
                else None
            if found is not None:          # the layer and the features QGIS chose of it
                if found[1]:
                    return False, f"{found[1]} ({label(definition)})"
                continue
            if definition.type() in RASTER_TYPES + MASK_TYPES and gdal_names(value):
                rest = [v for v in value if v not in gdal_names(value)] \
                    if isinstance(value, (list, tuple)) else []
                if not rest or definition.checkValueIsAcceptable(rest, context):
                    continue
                value = rest
            elif definition.checkValueIsAcceptable(value, context) and \
                    not _fraction_for_whole(definition, value) and \
                    not _unreadable_number(definition, value):
                continue
            return False, parameter_problem(definition, value, context)
        return True, ""

    def prepareAlgorithm(self, parameters, context, feedback):
        """``checkParameterValues`` again: a model's step and a script's ``alg.run`` skip it,
        and an enum value the algorithm does not offer then read as its default (a mistyped
        score ran dualcontext, a GAN, where the user meant rx)."""
        ok, message = self.checkParameterValues(parameters, context)
        if not ok:
            raise QgsProcessingException(message)
        return True

    def library_errors(self, feedback=None):
        """``library_errors`` for this algorithm: the library's messages name its arguments
        by this dialog's fields ("'Tile size'" for ``tile``)."""
        labels = {d.name().lower(): label(d) for d in self.parameterDefinitions()}
        labels.update({argument: label(self.parameterDefinition(name))
                       for argument, name in self.ARGUMENTS.items()})
        return library_errors(feedback, labels={**self.other_fields(), **labels})

    def other_fields(self):
        """Arguments a message may name that are another algorithm's fields -> their names."""
        return {}

    def refuse_temporary_resume(self, parameters, resume, output, context):
        """Refuse to resume into a temporary output: a new file on every run, it never holds
        an interrupted run's work."""
        value = parameters.get(output)
        if hasattr(value, "sink"):        # QgsProcessingOutputLayerDefinition: a path or an
            value = value.sink.valueAsString(context.expressionContext())[0]   # expression
        if self.parameterAsBool(parameters, resume, context) and \
                str(value or "") in ("", "TEMPORARY_OUTPUT"):
            raise QgsProcessingException(
                f"{label(self.parameterDefinition(resume))}: the output is temporary, a new "
                "one on every run, so nothing is there to resume; choose the output the "
                "interrupted one wrote to")


def _fraction_for_whole(definition, value):
    """Whether ``value`` has a fraction where ``definition`` is a whole number: QGIS takes
    1.5 for an integer field and rounds it, so a window of 1.5 became 2 (an even window)."""
    from qgis.core import QgsProcessingParameterNumber

    if definition.type() != "number" or \
            definition.dataType() != QgsProcessingParameterNumber.Integer:
        return False
    try:
        return not float(value).is_integer()
    except (TypeError, ValueError):
        return False


def _number(value):
    """A number in words: 2147483647, not 2.14748e+09."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def label(definition):
    """A parameter's short name as its dialog shows it: "Tile size (pixels)" -> "Tile size"."""
    return definition.description().split(":")[0].split(" (")[0].strip()


def field_in(algorithm, name):
    """Another algorithm's field as a message names it: "Whiten bands (in Train model)"."""
    other = algorithm()
    other.initAlgorithm()
    return f"{label(other.parameterDefinition(name))} (in {other.displayName()})"


def parameter_problem(definition, value, context=None):
    """One line for a value QGIS does not accept: the value first, then what is wrong."""
    name = label(definition)
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)):          # name the item refused, not the first one
        values = [v for v in values if not definition.checkValueIsAcceptable([v])] or values
    kind = definition.type()
    if kind in RASTER_TYPES + MASK_TYPES or kind in ("file", "vector", "source"):
        for item in values:
            layer = context.getMapLayer(item) if context is not None and isinstance(item, str) \
                and item else None
            if layer is not None and kind in RASTER_TYPES:     # a project layer's id or name
                return layer_problem(layer, name) or f"{item}: not a value {name} takes"
            if isinstance(item, str) and item:
                if not Path(item).exists():
                    return f"{item}: no such file or folder ({name})"
                if kind in RASTER_TYPES:
                    return f"{item}: not a raster QGIS can open ({name})"
                if kind in MASK_TYPES:
                    return f"{item}: not a raster or vector file QGIS can open ({name})"
                return f"{item}: not one QGIS can take as {name}"
    if kind in RASTER_TYPES + MASK_TYPES or kind in ("file", "vector", "source", "sink") or \
            kind.endswith("Destination"):
        if not definition.flags() & definition.FlagOptional and not any(values):
            return f"{name}: required"
    if kind == "enum":
        return f"{value!r}: not one of {', '.join(definition.options())} ({name})"
    if kind == "number":
        try:
            if isinstance(value, str) and not PLAIN_NUMBER.fullmatch(value):
                raise ValueError(value)
            number = float(value)
        except (TypeError, ValueError):
            comma = "; write its decimals after a point" if "," in str(value) else ""
            return f"{value!r}: not a number ({name}){comma}"
        if number < definition.minimum():
            return f"{value}: {name} must be at least {_number(definition.minimum())}"
        if number > definition.maximum():
            return f"{value}: {name} must be at most {_number(definition.maximum())}"
        if _fraction_for_whole(definition, value):
            return f"{value}: {name} must be a whole number"
    return f"{value!r}: not a value {name} takes"


# a number as QGIS reads text: ASCII digits, a point, an exponent (Python's float() takes more:
# "1_000", other scripts' digits, which QGIS reads as 0)
PLAIN_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", re.ASCII)


def _unreadable_number(definition, value):
    """Text given to a number field that reads as no number: QGIS accepts it for an optional
    field, and ``parameterAsDouble`` then gives 0 (a threshold "1092,5", with a decimal comma,
    drew polygons at 0)."""
    return definition.type() == "number" and isinstance(value, str) and bool(value.strip()) \
        and not PLAIN_NUMBER.fullmatch(value)


def layer_problem(layer, name):
    """Why a project layer cannot be read as a raster file by the library, or None: a vector
    layer, or a raster served by another provider than GDAL (WMS, XYZ tiles, a database)."""
    from qgis.core import QgsMapLayerType

    if layer.type() != QgsMapLayerType.RasterLayer:
        return f"{layer.name()}: a vector layer, not a raster ({name})"
    if layer.providerType() != "gdal":
        return (f"{layer.name()}: a {layer.providerType()} layer, not a raster file; save it as "
                f"a GeoTIFF first ({name})")
    return None


def gdal_names(value):
    """The GDAL dataset names (not existing files) in a parameter value: a string or a list
    (as the library tells them; none where it cannot load)."""
    try:
        from hsanomaly.io.gdal import is_gdal_name
    except ImportError:          # a library that cannot load: the run says how to install it
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, str) and is_gdal_name(v) and not Path(v).exists()]


def progress_callback(feedback, interval=LOG_INTERVAL, step=LOG_STEP, clock=time.monotonic):
    """The library's ``callback(fraction, message)``: report to ``feedback``; True cancels.
    The progress bar moves on every call; the log gets the lines the library's ``Throttle``
    picks (a new stage, the last line, and otherwise every ``interval`` s or ``step``)."""
    from hsanomaly.logs import Throttle

    throttle = Throttle(interval, step, clock)

    def callback(fraction, message):
        feedback.setProgress(100 * fraction)
        if throttle(fraction, message):
            feedback.pushInfo(message)
        return feedback.isCanceled()
    return callback


class FeedbackWarnings(logging.Handler):
    """The library's warnings (logger "hsanomaly"), shown in the algorithm's log as warnings."""

    def __init__(self, feedback):
        super().__init__(logging.WARNING)
        self.feedback = feedback

    def emit(self, record):
        self.feedback.pushWarning(shown_names(record.getMessage()))


@contextlib.contextmanager
def library_errors(feedback=None, labels=None):
    """Raise library failures as QgsProcessingException with their one-line message, and a
    missing package as the pip command that installs it; with ``feedback``, the library's
    warnings (its log's and its ``HsanomalyWarning``s) go to its log meanwhile (a dialog shows
    no terminal); with ``labels`` ({"tile": "Tile size"}), the arguments a message names
    are the dialog's fields."""
    try:
        from hsanomaly.errors import HsanomalyError
        from hsanomaly.spelling import fields, spelled
    except ImportError:
        raise QgsProcessingException(unmet("hsanomaly") or install_hint(["hsanomaly"])) from None
    logger, handler = logging.getLogger("hsanomaly"), None
    if feedback is not None:
        handler = FeedbackWarnings(feedback)
        logger.addHandler(handler)
    try:
        with warnings_to(feedback) if feedback is not None else contextlib.nullcontext(), \
                spelled(fields(labels or {})):
            yield
    except HsanomalyError as err:
        raise QgsProcessingException(shown_names(str(err))) from None
    except ImportError as err:
        absent = missing(err.name.split(".")[0]) if err.name else []
        if not absent:
            raise
        raise QgsProcessingException(install_hint(absent)) from None
    finally:
        if handler is not None:
            logger.removeHandler(handler)


# QGIS runs algorithms in worker threads, several at once: one ``showwarning`` for the process
# sends each library warning to the log of the algorithm running in the warning's thread (or,
# from a thread of the library's own, to the one algorithm running), and is put back when none is
_ROUTES, _ROUTES_LOCK, _SHOWN = {}, threading.Lock(), []


def _show(message, category, filename, lineno, file=None, line=None):
    from hsanomaly.errors import HsanomalyWarning

    with _ROUTES_LOCK:
        feedback = _ROUTES.get(threading.get_ident())
        if feedback is None and len(_ROUTES) == 1:
            feedback = next(iter(_ROUTES.values()))
        shown = _SHOWN[0]          # set before _show is ever put in place
    if feedback is not None and issubclass(category, HsanomalyWarning):
        feedback.pushWarning(shown_names(" ".join(str(message).split())))
    else:
        shown(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def warnings_to(feedback):
    """The library's ``HsanomalyWarning``s raised meanwhile, one line each in ``feedback``."""
    with _ROUTES_LOCK:
        if not _ROUTES:
            _SHOWN[:] = [warnings.showwarning]
            warnings.showwarning = _show
        _ROUTES[threading.get_ident()] = feedback
    try:
        yield
    finally:
        with _ROUTES_LOCK:
            _ROUTES.pop(threading.get_ident(), None)
            if not _ROUTES and warnings.showwarning is _show:
                warnings.showwarning = _SHOWN[0]


def in_own_thread(job):
    """``job()``, a library call; off the main thread, run in a Python thread of its own and
    waited for.

    The dialog runs an algorithm on a thread of QGIS's pool, where Python's thread state is
    made for the task and dropped after it. pyproj (3.7.2 among them) keeps its PROJ context
    in the OS thread's storage but frees it with the thread state, so the next run on that
    thread crashed QGIS in the first CRS it made (pyproj issues 1509, 1622): the second
    Evaluate from the dialog, or a Detect with a mask. A thread of our own starts clean. The
    job runs in the caller's context (the dialog's field names in messages) and its warnings
    go to the caller's log. On the main thread (``processing.run`` from the console or a
    script), whose thread state lives as long as QGIS, the job runs as called: its progress
    signals reach the caller's feedback as they are sent, and BLAS sums as it does for the
    library called there."""
    if threading.current_thread() is threading.main_thread():
        return job()
    context, outcome, caller = contextvars.copy_context(), {}, threading.get_ident()

    def run():
        with _ROUTES_LOCK:
            if caller in _ROUTES:
                _ROUTES[threading.get_ident()] = _ROUTES[caller]
        try:
            outcome["value"] = context.run(job)
        except BaseException as err:        # raised again in the caller's thread
            outcome["error"] = err
        finally:
            with _ROUTES_LOCK:
                _ROUTES.pop(threading.get_ident(), None)

    worker = threading.Thread(target=run, name="hsanomaly-job")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def project_layer(value, context):
    """The project layer a string parameter value names by its id or name, or None (a file or
    a GDAL name, which the library reads as it is)."""
    layer = context.getMapLayer(value) if value else None
    return layer if layer is not None and value in (layer.id(), layer.name()) else None


def named_source(value, context, name="raster"):
    """The dataset name for a parameter value given as a string: the source of the project
    layer whose id or name it is, or else the string itself, unchanged (a file, a GDAL
    subdataset such as NETCDF:"f.nc":var, HDF5:..., GTIFF_DIR:2:f.tif, or a /vsizip/... path;
    never QGIS's rewriting of it). ``name``: the parameter, for a layer that is no file."""
    layer = project_layer(value, context)
    if layer is None:
        layer = layer_from_string(value, context)
    return value if layer is None else raster_file(layer, name)


def layer_from_string(value, context):
    """The layer a QGIS layer string names, as QGIS's History writes one ("f.gpkg|layername=
    x|subset=...", "f.tif|option:NUM_THREADS=4"), or None: a file or a GDAL name, which the
    library reads itself."""
    from qgis.core import QgsProcessingUtils

    if "|" not in value or Path(value).exists():
        return None
    layer = QgsProcessingUtils.mapLayerFromString(value, context)
    return layer if layer is not None and layer.isValid() else None


def raster_source(algorithm, parameters, name, context):
    """The dataset name to give the library for raster parameter ``name``: a string passes
    through ``named_source``; a layer object gives its source."""
    value, shown = parameters.get(name), label(algorithm.parameterDefinition(name))
    if isinstance(value, str) and value:
        return named_source(value, context, shown)
    layer = algorithm.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise QgsProcessingException(f"{value}: not a raster layer QGIS can open")
    return raster_file(layer, shown)


# GDAL open options that change how a raster is read, not what is read
HARMLESS_OPEN_OPTIONS = ("NUM_THREADS",)


def raster_file(layer, name):
    """The dataset name the library reads for raster project layer ``layer`` (of parameter
    ``name``): its source, less the GDAL open options that change only how it is read
    ("|option:NUM_THREADS=4"). A layer that is no GDAL raster (``layer_problem``), or one
    opened with options that change what is read (an overview level, say), is refused: the
    library would read the file otherwise than QGIS shows it."""
    from qgis.core import QgsProviderRegistry

    problem = layer_problem(layer, name)
    if problem:
        raise QgsProcessingException(problem)
    source = layer.source()
    options = QgsProviderRegistry.instance().decodeUri("gdal", source).get("openOptions") or []
    kept = [option for option in options
            if option.split("=")[0].strip().upper() not in HARMLESS_OPEN_OPTIONS]
    if kept:
        raise QgsProcessingException(
            f"{layer.name()}: opened in QGIS with GDAL open options ({', '.join(kept)}), which "
            f"hsanomaly does not pass on, so it would read the file otherwise than QGIS shows "
            f"it; add the layer from its file without them ({name})")
    return source.split("|option:")[0] if options else source


def in_temporary_folder(path):
    """Whether ``path`` lies in QGIS's Processing temporary folder (where a temporary output
    goes), which QGIS removes when it closes."""
    from qgis.core import QgsProcessingUtils

    return Path(QgsProcessingUtils.tempFolder()).resolve() in Path(path).resolve().parents


def given_layers(algorithm, parameters, name, context):
    """The project layers raster parameter ``name`` (one raster, or several) names or holds;
    None for a file or a GDAL name, which the library reads as QGIS would."""
    value = parameters.get(name)
    values = value if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(each, str) for each in values):
        return [project_layer(each, context) for each in values]
    if isinstance(value, (list, tuple)):
        return algorithm.parameterAsLayerList(parameters, name, context)
    return [algorithm.parameterAsRasterLayer(parameters, name, context)]


def set_in_qgis(algorithm, parameters, name, context, effect="the outputs carry the file's",
                remedy="to carry it", pixels="are scored, and count in the scene's statistics"):
    """What to say of the raster layers of parameter ``name`` for what was set on them in
    QGIS, not in their files, which the library reads: a CRS (the outputs carry the file's,
    or none, and would not lie where the layer shows; ``effect`` and ``remedy`` say what that
    means for the algorithm) and no-data values (``pixels``: what becomes of the pixels QGIS
    shows as no data). Vector masks are saved with what QGIS shows instead (``vector_file``)."""
    shown = label(algorithm.parameterDefinition(name))
    return [note for layer in given_layers(algorithm, parameters, name, context)
            if layer is not None for note in _set_in_qgis(layer, shown, effect, remedy, pixels)]


def _set_in_qgis(layer, shown, effect, remedy, pixels):
    notes = []
    crs = layer.dataProvider().crs()
    if layer.crs().isValid() and layer.crs() != crs:
        held = (crs.authid() or crs.toProj() or "a CRS without a code") if crs.isValid() else "none"
        notes.append(f"{layer.name()}: its CRS ({layer.crs().authid()}) is set in QGIS, not in "
                     f"its file, which hsanomaly reads: {effect} ({held}); assign the CRS to "
                     f"the file (Raster > Projections > Assign Projection) {remedy} ({shown})")
    added, dropped = nodata_set_in_qgis(layer)
    if added:
        notes.append(f"{layer.name()}: its no-data {_values(added)} set in QGIS (Layer "
                     f"Properties > Transparency), not in its file, which hsanomaly reads: its "
                     f"pixels {pixels}; assign the no-data value to the file (Raster > "
                     f"Conversion > Translate) to leave them out ({shown})")
    if dropped:
        notes.append(f"{layer.name()}: its file's no-data {_values(dropped)} turned off in "
                     f"QGIS (Layer Properties > Transparency), not in the file, which hsanomaly "
                     f"reads: its pixels are still left out; remove the no-data value from the "
                     f"file (gdal_edit.py -unsetnodata) to use them ({shown})")
    return notes


def nodata_set_in_qgis(layer):
    """(no-data values or ranges added to raster ``layer`` in QGIS, those of its file turned
    off there), as text, in every band together."""
    provider = layer.dataProvider()
    added, dropped = {}, {}
    for band in range(1, layer.bandCount() + 1):
        source = provider.sourceHasNoDataValue(band)
        used = source and provider.useSourceNoDataValue(band)
        if source and not used and not math.isnan(provider.sourceNoDataValue(band)):
            dropped[_number(provider.sourceNoDataValue(band))] = None   # (NaN: never scored)
        for found in provider.userNoDataValues(band):
            low, high = found.min(), found.max()
            if math.isnan(low) or math.isnan(high) or (
                    used and low == high == provider.sourceNoDataValue(band)):
                continue            # NaN, which the library never scores; the file's own
            added[_number(low) if low == high else f"{_number(low)} to {_number(high)}"] = None
    return list(added), list(dropped)


def _values(values):
    return (f"value {values[0]} is" if len(values) == 1 else
            f"values {', '.join(values)} are")


def mask_parameter(name, description, optional=False):
    """A mask's parameter: a raster layer, or a vector layer of targets (polygons, points or
    lines), which the library burns onto the raster's grid."""
    from qgis.core import QgsProcessing, QgsProcessingParameterMapLayer

    return QgsProcessingParameterMapLayer(
        name, description, optional=optional,
        types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorAnyGeometry])


def mask_source(algorithm, parameters, name, context, feedback):
    """The dataset name to give the library for mask parameter ``name``: a raster as
    ``raster_source`` gives it; a vector layer as its file (and layer), or, where the layer is
    no plain file (a scratch layer, a filtered one, a database's), its features as QGIS shows
    them saved to a temporary GeoPackage named after the layer. Every feature counts, as in
    QGIS's own algorithms without "Selected features only": a selection is said. A feature
    source definition (from Python or a model) counts the features it chooses."""
    from qgis.core import QgsMapLayerType

    value = parameters.get(name)
    chosen = chosen_features(value, context)
    if chosen:
        return saved_features(chosen, context)
    named = isinstance(value, str) and bool(value)
    layer = project_layer(value, context) if named else \
        algorithm.parameterAsLayer(parameters, name, context)
    if layer is None and named:
        layer = layer_from_string(value, context)
    if layer is None and not named:
        raise QgsProcessingException(f"{value}: not a layer QGIS can open "
                                     f"({label(algorithm.parameterDefinition(name))})")
    if layer is not None and layer.type() == QgsMapLayerType.VectorLayer:
        if layer.selectedFeatureCount():
            feedback.pushWarning(
                f"{layer.name()}: {layer.selectedFeatureCount()} of its "
                f"{layer.featureCount()} features are selected; all are used "
                f"({label(algorithm.parameterDefinition(name))}): to use the selection alone, "
                "save it as a layer of its own (Export > Save Selected Features As)")
        return vector_file(layer, context)
    return raster_source(algorithm, parameters, name, context)


def source_definition(value, context):
    """For a feature source definition (QGIS's "Selected features only" or a feature limit,
    given from Python or a model): (its vector layer, None) or (None, why it has none);
    else None (a layer, its id, name or file, which every feature counts of)."""
    from qgis.core import (QgsMapLayerType, QgsProcessingFeatureSourceDefinition,
                           QgsProcessingUtils)

    if not isinstance(value, QgsProcessingFeatureSourceDefinition):
        return None
    source = value.source.valueAsString(context.expressionContext())[0]  # static or an expression
    layer = QgsProcessingUtils.mapLayerFromString(source, context) if source else None
    if layer is None:
        return None, f"{source or value.source.expressionString()}: no such layer or file"
    if layer.type() != QgsMapLayerType.VectorLayer:
        return None, (f"{layer.name()}: a raster layer; only a vector layer's features can be "
                      "chosen")
    if value.selectedFeaturesOnly and not layer.selectedFeatureCount():
        return None, f"{layer.name()}: no features are selected (selected features only)"
    return layer, None


def chosen_features(value, context):
    """A memory layer, named as its layer, of the features a feature source definition
    chooses (``source_definition``); None for any other value."""
    from qgis.core import QgsFeatureRequest

    found = source_definition(value, context)
    if found is None:
        return None
    layer, problem = found
    if problem:
        raise QgsProcessingException(problem)
    request = QgsFeatureRequest()
    if value.selectedFeaturesOnly:
        request.setFilterFids(layer.selectedFeatureIds())
    if value.featureLimit > 0:
        request.setLimit(value.featureLimit)
    chosen = layer.materialize(request)
    chosen.setName(layer.name())
    return chosen


# what makes a vector layer more than its file says: a filter, one geometry type of a mixed
# file, open options, a file inside an archive (decodeUri's keys)
LAYER_REFINEMENTS = ("subset", "geometryType", "openOptions", "vsiPrefix", "vsiSuffix")


def vector_file(layer, context):
    """A vector layer's file as the library names it ("f.gpkg|layername=t") where the file
    holds exactly what QGIS shows; else (a filter, one geometry type of several, an archive,
    unsaved edits, a CRS set in QGIS, a scratch or database layer) a temporary GeoPackage of
    the features as QGIS shows them."""
    from qgis.core import QgsProviderRegistry

    from hsanomaly.io.gdal import is_gdal_name

    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path, layer_name = parts.get("path"), parts.get("layerName")
    if layer.providerType() == "ogr" and path and not parts.get("vsiPrefix") \
            and not is_gdal_name(path) and not Path(path).exists():   # moved since it was loaded
        raise QgsProcessingException(f"{path}: file not found (layer {layer.name()!r})")
    plain = (layer.providerType() == "ogr" and path and Path(path).is_file()
             and not any(parts.get(key) for key in LAYER_REFINEMENTS)
             and (layer_name or parts.get("layerId") is None)
             and not layer.isModified() and layer.crs() == layer.dataProvider().crs())
    if plain:
        return f"{path}|layername={layer_name}" if layer_name else path
    return saved_features(layer, context)


def saved_features(layer, context):
    """The layer's features (its filter applied, in its CRS) in a temporary GeoPackage, or a
    FlatGeobuf file where the layer has no CRS; messages name the layer, not the file
    (``shown_names``)."""
    import uuid

    from qgis.core import QgsProcessingUtils, QgsVectorFileWriter

    stem = re.sub(r"[^\w.-]+", "_", layer.name()).strip("._") or "layer"
    folder = Path(QgsProcessingUtils.tempFolder()) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    if layer.crs().isValid():
        path = str(folder / f"{stem}.gpkg")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName = "GPKG", stem
        options.skipAttributeCreation = True  # geometries only: no fid of an edited layer clashes
        error, message, *_ = QgsVectorFileWriter.writeAsVectorFormatV3(
            layer, path, context.transformContext(), options)
        if error != QgsVectorFileWriter.NoError:
            raise not_saved(layer, message)
    else:
        path = str(folder / f"{stem}.fgb")
        unreferenced_features(layer, path)
    with _SAVED_LOCK:
        _SAVED[path] = layer.name()
        while len(_SAVED) > SAVED_NAMES:
            _SAVED.pop(next(iter(_SAVED)))
    return path


def not_saved(layer, why):
    """The one line for a layer whose features could not be written for the library."""
    return QgsProcessingException(f"{layer.name()}: its features could not be saved for "
                                  f"hsanomaly ({why})")


def unreferenced_features(layer, path):
    """The features of ``layer``, which has no CRS, to FlatGeobuf ``path`` without one, so the
    library takes the raster's CRS for them and says so, as for the layer's own file (a
    GeoPackage marks them "undefined geographic"). Written here, not by QGIS's file writer,
    which gives the file the layer's one geometry type and refuses a point among polygons."""
    import pyogrio
    from geopandas import GeoDataFrame
    from hsanomaly.errors import ignoring
    from pyogrio.errors import DataSourceError, FeatureError
    from qgis.core import QgsGeometry, QgsWkbTypes
    from shapely import force_2d, from_wkb

    shapes = []
    for feature in layer.getFeatures():
        # as QGIS's writer: no empty shape (FlatGeobuf's index refuses it); in 2D, as the
        # library burns them (FlatGeobuf takes no mix of 2D and 3D)
        if feature.hasGeometry() and not feature.geometry().isEmpty():
            geometry = QgsGeometry(feature.geometry())
            if QgsWkbTypes.isCurvedType(geometry.wkbType()):
                geometry.convertToStraightSegment()
            shapes.append(force_2d(from_wkb(bytes(geometry.asWkb()))))
    try:
        with ignoring(UserWarning, "'crs' was not provided"):     # none: that is the point
            pyogrio.write_dataframe(GeoDataFrame(geometry=shapes, crs=None), path,
                                    driver="FlatGeobuf", geometry_type="Unknown")
    except (DataSourceError, FeatureError, OSError) as err:
        raise not_saved(layer, err) from None


# the temporary files of layers' features -> the layers' names, which messages name instead
_SAVED, _SAVED_LOCK, SAVED_NAMES = {}, threading.Lock(), 256


def shown_names(text):
    """``text`` naming the layers whose features were saved for the library by their names,
    not by their temporary files (which the user never chose)."""
    with _SAVED_LOCK:
        saved = dict(_SAVED)
    for path, name in saved.items():
        text = text.replace(path, f"layer '{name}'")
    return text


def raster_sources(algorithm, parameters, name, context):
    """``raster_source`` for each raster of a multiple-layers parameter, in order."""
    values, shown = parameters.get(name), label(algorithm.parameterDefinition(name))
    values = values if isinstance(values, (list, tuple)) else [values]
    if all(isinstance(value, str) and value for value in values):
        return [named_source(value, context, shown) for value in values]
    return [raster_file(layer, shown)
            for layer in algorithm.parameterAsLayerList(parameters, name, context)]


# QGIS's "Save to GeoPackage...": ogr:dbname='f.gpkg' table="name" (geom), quotes and
# backslashes in the path escaped with a backslash (QgsDataSourceUri::escape)
OGR_DESTINATION = re.compile(r"""^ogr:dbname='(?P<path>(?:\\.|[^'\\])*)'"""
                             r"""(?:\s+table="(?P<layer>[^"]*)")?""")


def geopackage_file(destination):
    """(file, layer name asked for or None) of a GeoPackage destination as the dialog gives
    it: a path, QGIS's ``ogr:dbname='f.gpkg' table="name" (geom)`` or ``f.gpkg|layername=name``;
    (None, None) when empty. The library writes its own file with one layer, "targets"."""
    if not destination:
        return None, None
    found = OGR_DESTINATION.match(destination)
    if found:
        return re.sub(r"\\(.)", r"\1", found["path"]), found["layer"] or None
    path, *parts = destination.split("|")
    return path, dict(p.split("=", 1) for p in parts if "=" in p).get("layername") or None


def is_empty(parameters, name):
    """True when an optional parameter was left empty."""
    return parameters.get(name) in (None, "")
