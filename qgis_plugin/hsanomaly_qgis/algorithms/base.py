"""What every hsanomaly algorithm shares: dependency checks, progress, error translation."""

import contextlib

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

from ..dependencies import install_hint, missing


class HsanomalyAlgorithm(QgsProcessingAlgorithm):
    """Base class; subclasses name the modules they need in ``required_modules``."""

    def required_modules(self, parameters, context):
        return ("hsanomaly",)

    def createInstance(self):
        return type(self)()

    def checkParameterValues(self, parameters, context):
        absent = missing(*self.required_modules(parameters, context))
        if absent:
            return False, install_hint(absent)
        return super().checkParameterValues(parameters, context)


def progress_callback(feedback):
    """The library's ``callback(fraction, message)``: report to ``feedback``; True cancels."""
    def callback(fraction, message):
        feedback.setProgress(100 * fraction)
        feedback.pushInfo(message)
        return feedback.isCanceled()
    return callback


@contextlib.contextmanager
def library_errors():
    """Raise library failures as QgsProcessingException with their one-line message, and a
    missing package as the pip command that installs it."""
    try:
        from hsanomaly.errors import HsanomalyError
    except ImportError:
        raise QgsProcessingException(install_hint(["hsanomaly"])) from None
    try:
        yield
    except HsanomalyError as err:
        raise QgsProcessingException(str(err)) from None
    except ImportError as err:
        absent = missing(err.name.split(".")[0]) if err.name else []
        if not absent:
            raise
        raise QgsProcessingException(install_hint(absent)) from None


def is_empty(parameters, name):
    """True when an optional parameter was left empty."""
    return parameters.get(name) in (None, "")
