"""Build the plugin zip for QGIS "Plugins > Install from ZIP": dist/hsanomaly_qgis-<version>.zip.

The version is the library's, read from hsanomaly/_version.py (its one source) and written
into the zipped metadata.txt, so the plugin and the Python package always carry the same
version. The metadata.txt in the source tree says the same (tests/test_packaging.py checks).

Usage: python qgis_plugin/build_zip.py [OUTPUT_DIR]
"""

import ast
import configparser
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).resolve().parent / "hsanomaly_qgis"
VERSION_FILE = ROOT / "hsanomaly" / "_version.py"
SKIP = {"__pycache__"}


def package_version():
    """``__version__`` of hsanomaly/_version.py, read without importing the package."""
    for node in ast.parse(VERSION_FILE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{VERSION_FILE}: no __version__ = '...' line")


def plugin_version():
    """The version written in the source tree's metadata.txt."""
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(PLUGIN / "metadata.txt", encoding="utf-8")
    return metadata["general"]["version"]


def metadata_text(version):
    """metadata.txt with its ``version=`` line set to ``version`` (everything else as is)."""
    text = (PLUGIN / "metadata.txt").read_text(encoding="utf-8")
    text, count = re.subn(r"^version=.*$", f"version={version}", text, count=1, flags=re.M)
    if count != 1:
        raise SystemExit(f"{PLUGIN / 'metadata.txt'}: no version= line")
    return text


def build_zip(outdir):
    """Zip the plugin folder (top-level folder hsanomaly_qgis/) into ``outdir``; returns the path."""
    version = package_version()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{PLUGIN.name}-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(PLUGIN.rglob("*")):
            relative = file.relative_to(PLUGIN.parent)
            if not file.is_file() or SKIP & set(relative.parts) or file.suffix == ".pyc":
                continue
            if relative == Path(PLUGIN.name, "metadata.txt"):
                archive.writestr(relative.as_posix(), metadata_text(version))
            else:
                archive.write(file, relative.as_posix())
        if (ROOT / "LICENSE").is_file():
            archive.write(ROOT / "LICENSE", f"{PLUGIN.name}/LICENSE")
    return path


if __name__ == "__main__":
    if plugin_version() != package_version():
        print(f"note: {PLUGIN / 'metadata.txt'} says version {plugin_version()}; the zip gets "
              f"{package_version()} from {VERSION_FILE}", file=sys.stderr)
    print(build_zip(sys.argv[1] if len(sys.argv) > 1 else ROOT / "dist"))
