"""Plugin object: registers the Processing provider and warns about missing packages."""

from qgis.core import Qgis, QgsApplication

from .dependencies import conflicting_runtimes, unmet
from .provider import HsanomalyProvider

STARTUP_CHECK = ("hsanomaly", "onnxruntime")


class HsanomalyPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        self.provider = HsanomalyProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()
        hint = unmet(*STARTUP_CHECK)
        if hint:
            self.iface.messageBar().pushMessage("hsanomaly", hint, Qgis.Warning, 0)
        conflict = conflicting_runtimes()
        if conflict:
            self.iface.messageBar().pushMessage("hsanomaly", conflict, Qgis.Warning, 0)

    def unload(self):
        QgsApplication.processingRegistry().removeProvider(self.provider)
