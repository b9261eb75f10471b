"""The release a stranger installs: licence, one version, extras that do not fight, the QGIS
plugin carrying the package's version. (scripts/wheel-check.sh builds and installs it for real.)"""

import configparser
import itertools
import re
import sys
import zipfile
from pathlib import Path

import pytest

import hsanomaly

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = {"onnxruntime", "onnxruntime-gpu"}   # both install the module onnxruntime


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirement_name(requirement):
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def runtimes(requirements, project, seen=()):
    """The ONNX runtime distributions ``requirements`` install, following hsanomaly[extra]."""
    found = set()
    for requirement in requirements:
        name = requirement_name(requirement)
        if name in RUNTIMES:
            found.add(name)
        elif name == project["name"]:
            extras = re.search(r"\[(.*?)\]", requirement)
            for extra in (extras.group(1).split(",") if extras else []):
                extra = extra.strip()
                if extra not in seen:
                    found |= runtimes(project["optional-dependencies"][extra], project,
                                      seen + (extra,))
    return found


def test_license_file_is_mit_and_declared(project):
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 hsanomaly contributors" in text
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    # PEP 639: a licence expression and a License :: classifier may not both be given
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_project_has_urls_classifiers_keywords(project):
    assert set(project["urls"]) >= {"Homepage", "Repository", "Issues", "Changelog"}
    assert all(url.startswith("https://github.com/hsanomaly/hsanomaly")
               for url in project["urls"].values())
    assert "Topic :: Scientific/Engineering :: GIS" in project["classifiers"]
    assert "hyperspectral" in project["keywords"]


def test_version_has_one_source(project):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == \
        {"attr": "hsanomaly._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", hsanomaly.__version__)
    writers = [path.relative_to(ROOT).as_posix() for path in (ROOT / "hsanomaly").rglob("*.py")
               if re.search(r"^__version__\s*=", path.read_text(), re.M)]
    assert writers == ["hsanomaly/_version.py"]


def test_changelog_has_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text
    assert re.search(rf"^## \[(Unreleased\] - |){re.escape(hsanomaly.__version__)}", text, re.M)


def test_base_requirements_install_no_onnx_runtime(project):
    assert runtimes(project["dependencies"], project) == set()


def test_cpu_and_gpu_extras_each_install_one_runtime(project):
    extras = project["optional-dependencies"]
    assert runtimes(extras["cpu"], project) == {"onnxruntime"}
    assert runtimes(extras["gpu"], project) == {"onnxruntime-gpu"}


def test_no_combination_of_extras_but_cpu_with_gpu_installs_both_runtimes(project):
    extras = project["optional-dependencies"]
    for one, two in itertools.combinations_with_replacement(sorted(extras), 2):
        if {one, two} == {"cpu", "gpu"}:
            continue
        installed = runtimes(project["dependencies"] + extras[one] + extras[two], project)
        assert len(installed) <= 1, f"[{one},{two}] installs {sorted(installed)}"


def test_readme_says_how_to_choose_the_runtime_and_the_cpu_torch():
    readme = (ROOT / "README.md").read_text()
    installing = readme.split("## Installing", 1)[1].split("\n## ", 1)[0]
    assert "hsanomaly[cpu]" in installing and "hsanomaly[gpu]" in installing
    assert "pip uninstall -y onnxruntime" in installing
    assert "--index-url https://download.pytorch.org/whl/cpu" in installing


def plugin_metadata(text):
    metadata = configparser.ConfigParser(interpolation=None)   # QGIS reads it like this
    metadata.read_string(text)
    return metadata["general"]


def test_plugin_metadata_is_complete_and_has_the_package_version():
    plugin = ROOT / "qgis_plugin" / "hsanomaly_qgis"
    metadata = plugin_metadata((plugin / "metadata.txt").read_text())
    assert metadata["version"] == hsanomaly.__version__
    for key in ("homepage", "repository", "tracker"):
        assert metadata[key].startswith("https://github.com/hsanomaly/hsanomaly")
    assert (plugin / metadata["icon"]).is_file()
    assert hsanomaly.__version__ in metadata["changelog"]


def test_plugin_zip_carries_the_package_version(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "qgis_plugin"))
    sys.modules.pop("build_zip", None)
    from build_zip import build_zip

    path = build_zip(tmp_path)
    assert path.name == f"hsanomaly_qgis-{hsanomaly.__version__}.zip"
    with zipfile.ZipFile(path) as archive:
        metadata = plugin_metadata(archive.read("hsanomaly_qgis/metadata.txt").decode())
        names = archive.namelist()
    assert metadata["version"] == hsanomaly.__version__
    assert "hsanomaly_qgis/LICENSE" in names and "hsanomaly_qgis/icon.png" in names


def test_the_torch_pin_is_one_version_everywhere_it_is_written():
    """The CPU build's pin is written where each set-up installs it (make, the QGIS tests'
    set-up, the plugin's install hint) and in the README; one left behind installs another
    torch than the one the others were tested with."""
    files = ["Makefile", "scripts/qgis-tests.sh", "qgis_plugin/hsanomaly_qgis/dependencies.py",
             "README.md"]
    pins = {name: set(re.findall(r"torch==([0-9][\w.]*)", (ROOT / name).read_text()))
            for name in files}
    assert all(pins.values()), pins
    assert len(set().union(*pins.values())) == 1, pins
