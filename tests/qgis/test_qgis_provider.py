"""The plugin as QGIS loads it: provider, algorithms, dependency notices."""

import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path
from types import SimpleNamespace

import pytest


def test_provider_registers_its_algorithms(plugin):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("hsanomaly")
    assert provider is not None
    assert {a.id() for a in provider.algorithms()} == {"hsanomaly:detect", "hsanomaly:train",
                                                       "hsanomaly:evaluate"}


def test_zip_installs_a_processing_plugin(plugin, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "qgis_plugin"))
    from build_zip import build_zip

    with zipfile.ZipFile(build_zip(tmp_path)) as archive:
        names = archive.namelist()
        metadata = ConfigParser()
        metadata.read_string(archive.read("hsanomaly_qgis/metadata.txt").decode())
    assert all(name.startswith("hsanomaly_qgis/") for name in names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert metadata["general"]["hasProcessingProvider"] == "yes"


def test_score_choices_match_the_library(plugin):
    from hsanomaly.scorers import MODEL_SCORES, SCORES

    detect = sys.modules["hsanomaly_qgis.algorithms.detect"]
    assert detect.SCORES == SCORES and detect.MODEL_SCORES == MODEL_SCORES


def test_load_warns_about_missing_packages_with_the_pip_command(plugin, monkeypatch):
    from qgis.core import QgsApplication

    notices = []
    bar = SimpleNamespace(pushMessage=lambda *args: notices.append(args))
    monkeypatch.setattr(plugin, "iface", SimpleNamespace(messageBar=lambda: bar))
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.plugin"], "missing",
                        lambda *modules: ["onnxruntime"])
    plugin.unload()
    plugin.initGui()
    assert QgsApplication.processingRegistry().providerById("hsanomaly") is not None
    assert len(notices) == 1
    assert 'python3 -m pip install "onnxruntime"' in notices[0][1]


def test_algorithm_refuses_to_run_without_its_packages(plugin, scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setattr(sys.modules["hsanomaly_qgis.algorithms.base"], "missing",
                        lambda *modules: [m for m in modules if m == "onnxruntime"])
    params = {"INPUT": str(scene[0]), "SCORE": "recon", "MODEL": str(tmp_path),
              "OUTPUT": str(tmp_path / "heat.tif")}
    with pytest.raises(QgsProcessingException, match='pip install "onnxruntime"'):
        processing.run("hsanomaly:detect", params)
    assert not (tmp_path / "heat.tif").exists()
