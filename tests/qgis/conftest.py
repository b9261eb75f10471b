"""Tests inside real QGIS (headless). Run them with scripts/qgis-tests.sh, which sets up
Debian's python3-qgis and a venv that sees it; elsewhere they are skipped.

The plugin is tested as users install it: built into a zip, extracted into a plugins
folder and started by qgis.utils like QGIS does.
"""

import gc
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")   # without a display QGIS aborts

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "hsanomaly_qgis"


@pytest.fixture(scope="session", autouse=True)
def needs_qgis():
    """Skips every test here where QGIS's Python bindings are missing."""
    pytest.importorskip("qgis.core", reason="QGIS Python bindings not importable (Debian's "
                        "python3-qgis; scripts/qgis-tests.sh sets everything up and runs these)")


@pytest.fixture(scope="session")
def qgis_app(needs_qgis):
    """A QgsApplication with Processing initialised."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    gc.collect()   # contexts left by processing.run close their layers while GDAL still runs
    app.exitQgis()


@pytest.fixture(scope="session")
def plugin(qgis_app, tmp_path_factory):
    """The plugin, installed from the zip that build_zip.py makes and started by qgis.utils."""
    import qgis.utils

    sys.path.insert(0, str(ROOT / "qgis_plugin"))
    from build_zip import build_zip

    plugins_dir = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(build_zip(tmp_path_factory.mktemp("dist"))) as archive:
        archive.extractall(plugins_dir)
    sys.path.insert(0, str(plugins_dir))
    assert qgis.utils.loadPlugin(PLUGIN) and qgis.utils.startProcessingPlugin(PLUGIN)
    assert Path(sys.modules[PLUGIN].__file__).parent == plugins_dir / PLUGIN
    yield qgis.utils.plugins[PLUGIN]
    qgis.utils.unloadPlugin(PLUGIN)


@pytest.fixture
def scene(plugin, synthetic_raster, tmp_path):
    """(raster, truth raster): the 12-band 40x50 EPSG:32633 scene and its target mask."""
    import rasterio

    raster, truth, _ = synthetic_raster
    with rasterio.open(raster) as src:
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": None}
    truth_path = tmp_path / "truth.tif"
    with rasterio.open(truth_path, "w", **profile) as dst:
        dst.write(truth[None].astype(np.uint8))
    return raster, truth_path
