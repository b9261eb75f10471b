"""Build the plugin zip for QGIS "Plugins > Install from ZIP": dist/hsanomaly_qgis-<version>.zip.

Usage: python qgis_plugin/build_zip.py [OUTPUT_DIR]
"""

import configparser
import sys
import zipfile
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent / "hsanomaly_qgis"
SKIP = {"__pycache__"}


def plugin_version():
    metadata = configparser.ConfigParser()
    metadata.read(PLUGIN / "metadata.txt")
    return metadata["general"]["version"]


def build_zip(outdir):
    """Zip the plugin folder (top-level folder hsanomaly_qgis/) into ``outdir``; returns the path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{PLUGIN.name}-{plugin_version()}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(PLUGIN.rglob("*")):
            relative = file.relative_to(PLUGIN.parent)
            if file.is_file() and not SKIP & set(relative.parts) and file.suffix != ".pyc":
                archive.write(file, relative)
    return path


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "dist"
    print(build_zip(sys.argv[1] if len(sys.argv) > 1 else default))
