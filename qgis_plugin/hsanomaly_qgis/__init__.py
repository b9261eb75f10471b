"""QGIS plugin: the hsanomaly Processing provider."""


def classFactory(iface):
    """QGIS plugin entry point."""
    from .plugin import HsanomalyPlugin

    return HsanomalyPlugin(iface)
