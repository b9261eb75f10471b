"""The one place the version is written; pyproject.toml and the QGIS plugin read it."""

__version__ = "0.2.0"
