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

    library = sys.modules["hsanomaly_qgis.library"].load()
    assert library.scores == SCORES and library.model_scores == MODEL_SCORES


def test_zip_metadata_has_the_library_version(plugin, tmp_path):
    import hsanomaly

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "qgis_plugin"))
    from build_zip import build_zip

    path = build_zip(tmp_path)
    assert path.name == f"hsanomaly_qgis-{hsanomaly.__version__}.zip"
    with zipfile.ZipFile(path) as archive:
        metadata = ConfigParser(interpolation=None)
        metadata.read_string(archive.read("hsanomaly_qgis/metadata.txt").decode())
    assert metadata["general"]["version"] == hsanomaly.__version__


def test_load_warns_about_missing_packages_with_the_pip_command(plugin, monkeypatch):
    from qgis.core import QgsApplication

    notices = []
    bar = SimpleNamespace(pushMessage=lambda *args: notices.append(args))
    monkeypatch.setattr(plugin, "iface", SimpleNamespace(messageBar=lambda: bar))
    checked = []
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.dependencies"], "missing",
                        lambda *modules: checked.append(modules) or ["onnxruntime"])
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.plugin"], "conflicting_runtimes",
                        lambda: None)
    plugin.unload()
    plugin.initGui()
    assert QgsApplication.processingRegistry().providerById("hsanomaly") is not None
    assert checked[-1] == ("hsanomaly", "onnxruntime")   # the model scores' runtime too
    assert len(notices) == 1
    assert '-m pip install "onnxruntime"' in notices[0][1]
    # both runtimes installed: said on the message bar at start-up
    notices.clear()
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.dependencies"], "missing",
                        lambda *modules: [])
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.plugin"], "conflicting_runtimes",
                        lambda: "both onnxruntime and onnxruntime-gpu")
    plugin.unload()
    plugin.initGui()
    assert [notice[1] for notice in notices] == ["both onnxruntime and onnxruntime-gpu"]


def test_install_hint_keeps_qgis_numpy_and_takes_torch_from_the_cpu_index(plugin):
    import re

    import numpy

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    script = (Path(__file__).resolve().parents[2] / "scripts" / "qgis-tests.sh").read_text()
    hint = dependencies.install_hint(["hsanomaly"])
    assert f'"numpy=={numpy.__version__}"' in hint and '"attrs>=23.2"' in hint
    assert '"hsanomaly[cpu]~=0.2.0"' in hint            # the plugin's release line
    assert "attrs>=23.2" in script                      # the constraints the test setup needs
    hint = dependencies.install_hint(["hsanomaly", "torch", "onnx"])
    torch_pin = re.search(r"^TORCH=(\S+)", script, re.M).group(1)
    assert f'"{torch_pin}"' in hint and "--index-url https://download.pytorch.org/whl/cpu" in hint
    assert '"hsanomaly[cpu,train]~=0.2.0"' in hint
    assert hint.index("torch==") < hint.index("hsanomaly[cpu,train]")   # torch first


def test_a_library_of_another_release_is_said_with_the_command_that_matches_it(plugin, scene,
                                                                                tmp_path,
                                                                                monkeypatch):
    """QGIS's Plugin Manager updates the plugin alone: under a 0.2 plugin, a 0.1 library was
    said to be "cannot be imported", with a pip command that changed nothing (it was
    "already satisfied"), while the dialogs ran on the plugin's own copy of the defaults."""
    import hsanomaly
    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    library = sys.modules["hsanomaly_qgis.library"]
    assert dependencies.unmet("hsanomaly") is None and library.load().available
    plugin_version = dependencies.plugin_version()
    assert dependencies.release(plugin_version) == dependencies.release(hsanomaly.__version__)
    monkeypatch.setattr(hsanomaly, "__version__", "0.1.0")
    hint = dependencies.unmet("hsanomaly", "onnxruntime")
    assert hint.startswith(f"hsanomaly plugin {plugin_version}: QGIS's Python holds the "
                           "hsanomaly library 0.1.0, which this plugin cannot use (it needs "
                           f"{dependencies.release(plugin_version)}.x")
    assert f'"hsanomaly[cpu]~={dependencies.release(plugin_version)}.0"' in hint
    assert not library.load().available            # the dialogs say so, and nothing runs
    detect = QgsApplication.processingRegistry().createAlgorithmById("hsanomaly:detect")
    assert detect.shortHelpString().startswith(hint)
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx",
                                            "OUTPUT": str(tmp_path / "heat.tif")})
    assert hint in str(err.value) and not (tmp_path / "heat.tif").exists()
    notices = []
    bar = SimpleNamespace(pushMessage=lambda *args: notices.append(args))
    monkeypatch.setattr(plugin, "iface", SimpleNamespace(messageBar=lambda: bar))
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.plugin"], "conflicting_runtimes",
                        lambda: None)
    plugin.unload()
    plugin.initGui()
    assert [notice[1] for notice in notices] == [hint]


def test_the_library_command_keeps_a_gpu_install_and_a_newer_library_names_the_plugin(
        plugin, monkeypatch):
    """Every command said hsanomaly[cpu], which puts onnxruntime beside onnxruntime-gpu; a
    library newer than the plugin was told to be taken back, never the plugin updated (review
    1's F05)."""
    import hsanomaly

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    line = dependencies.release(dependencies.plugin_version())
    monkeypatch.setattr(dependencies, "installed_runtimes", lambda: ["onnxruntime-gpu"])
    assert f'"hsanomaly[gpu]~={line}.0"' in dependencies.install_hint(["hsanomaly"])
    assert f'"hsanomaly[gpu,train]~={line}.0"' in \
        dependencies.install_hint(["hsanomaly", "torch"])
    monkeypatch.setattr(dependencies, "installed_runtimes", lambda: ["onnxruntime"])
    monkeypatch.setattr(hsanomaly, "__version__", "9.1.0")
    hint = dependencies.unmet("hsanomaly")
    assert "Update the plugin to the library's release (9.1.0: Plugins > Manage and Install " \
        "Plugins, or its zip), or install the matching library" in hint
    assert f'"hsanomaly[cpu]~={line}.0"' in hint
    monkeypatch.setattr(hsanomaly, "__version__", "0.0.1")
    assert "Update the plugin" not in dependencies.unmet("hsanomaly")
    # a pre-release plugin's own line, which "~=0.3.0" cannot install (review 1's F06)
    # pip's --pre would take every package's pre-releases (review 2's F03): it is named
    for version in ("0.3.0rc1", "0.3.0.dev0", "0.3.0a2"):
        monkeypatch.setattr(dependencies, "plugin_version", lambda: version)
        command = dependencies.install_commands(["hsanomaly"])[-1]
        assert f'"hsanomaly[cpu]>={version},<0.4"' in command and "--pre" not in command
    for version in ("0.3.1", "0.3.1+g1a2b"):                  # a local build is no pre-release
        monkeypatch.setattr(dependencies, "plugin_version", lambda: version)
        command = dependencies.install_commands(["hsanomaly", "yaml"])[-1]
        assert '"hsanomaly[cpu]~=0.3.0"' in command


def test_a_package_the_library_needs_missing_is_named_at_start_up(plugin, monkeypatch):
    """hsanomaly present but rasterio gone: the start-up notice named onnxruntime alone, the
    help said hsanomaly "cannot be imported", and only a run named rasterio. A package
    installed without its metadata (by a distribution's own packager) is no missing one."""
    import importlib.metadata
    import importlib.util

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    if not importlib.metadata.requires("hsanomaly"):
        pytest.skip("hsanomaly is on sys.path without its metadata")
    version = importlib.metadata.version

    def without_rasterio(name):
        if name == "rasterio":
            raise importlib.metadata.PackageNotFoundError(name)
        return version(name)
    monkeypatch.setattr(importlib.metadata, "version", without_rasterio)
    assert dependencies.unmet("hsanomaly") is None      # importable, its metadata aside
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "rasterio" else find_spec(name, *args))
    hint = dependencies.unmet("hsanomaly")
    assert hint.startswith("hsanomaly plugin: the hsanomaly library is installed, but not the "
                           "package(s) rasterio it needs.")
    assert '-m pip install' in hint and '"hsanomaly[cpu]~=' in hint


def test_both_onnx_runtimes_installed_is_reported(plugin, monkeypatch):
    import importlib.metadata

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.0")
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in dependencies.conflicting_runtimes()


def test_log_is_throttled_but_progress_is_not(plugin):
    base = sys.modules["hsanomaly_qgis.algorithms.base"]
    now = [0.0]
    progress, log = [], []
    feedback = SimpleNamespace(setProgress=progress.append, pushInfo=log.append,
                               isCanceled=lambda: False)
    callback = base.progress_callback(feedback, clock=lambda: now[0])
    callback(0.0, "fitting rx on scene")
    for tile in range(1, 1001):
        now[0] += 0.01                                   # 10 s for 1000 tiles
        callback(tile / 1000, f"tile {tile}/1000")
    assert len(progress) == 1001
    assert log[0] == "fitting rx on scene" and log[1] == "tile 1/1000"
    assert log[-1] == "tile 1000/1000"
    assert 5 <= len(log) <= 12                           # every 2 s or 10 %, not every tile


def test_algorithm_refuses_to_run_without_its_packages(plugin, scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setattr(sys.modules["hsanomaly_qgis.dependencies"], "missing",
                        lambda *modules: [m for m in modules if m == "onnxruntime"])
    params = {"INPUT": str(scene[0]), "SCORE": "recon", "MODEL": str(tmp_path),
              "OUTPUT": str(tmp_path / "heat.tif")}
    with pytest.raises(QgsProcessingException, match='pip install "onnxruntime"'):
        processing.run("hsanomaly:detect", params)
    assert not (tmp_path / "heat.tif").exists()


def test_every_mask_field_offers_rasters_and_vector_layers(plugin):
    """A mask or truth is a raster, or vector features burnt onto the grid: a picker that lost
    raster layers left an analyst's mask raster out of the dialog's choices."""
    from qgis.core import QgsApplication, QgsProcessing

    registry = QgsApplication.processingRegistry()
    fields = {("hsanomaly:detect", "MASK"), ("hsanomaly:train", "MASK"),
              ("hsanomaly:evaluate", "TRUTH"), ("hsanomaly:evaluate", "OUTER_MASK")}
    for algorithm, name in fields:
        parameter = registry.algorithmById(algorithm).parameterDefinition(name)
        assert set(parameter.dataTypes()) == {QgsProcessing.TypeRaster,
                                              QgsProcessing.TypeVectorAnyGeometry}, name


def test_the_install_hint_asks_for_a_user_install_where_pip_would_refuse(plugin, monkeypatch,
                                                                        tmp_path):
    """Debian's and Ubuntu's QGIS Python is externally managed (PEP 668): pip refuses a plain
    install there, so the hint must add --user --break-system-packages; a virtual
    environment, or a Python without the marker, takes a plain one."""
    import sysconfig

    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)          # not a virtual environment
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    assert "--user --break-system-packages" not in dependencies.install_hint(["hsanomaly"])
    (tmp_path / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    assert "--user --break-system-packages" in dependencies.install_hint(["hsanomaly"])
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "elsewhere"))   # a venv: plain
    assert "--user --break-system-packages" not in dependencies.install_hint(["hsanomaly"])


def test_the_install_hint_names_the_python_inside_qgis_app_on_macos(plugin, monkeypatch,
                                                                      tmp_path):
    """QGIS.app's executable is QGIS itself, so the hint said python3: the system's or
    Homebrew's Python, into which the install went, and the plugin still found nothing."""
    dependencies = sys.modules["hsanomaly_qgis.dependencies"]
    macos = tmp_path / "QGIS.app" / "Contents" / "MacOS"
    (macos / "bin").mkdir(parents=True)
    (macos / "bin" / "python3").write_text("")
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(sys, "executable", str(macos / "QGIS"))
    assert dependencies.python_command() == str(macos / "bin" / "python3")
    (macos / "bin" / "python3").unlink()               # none beside it: python3, as before
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "nowhere"))
    assert dependencies.python_command() == "python3"
