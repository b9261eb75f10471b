"""QGIS offers what the command line offers: every default and choice read from the library,
and algorithms that still load (and say how to install it) where the library is missing."""

import sys

import pytest


def algorithm(name):
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(f"hsanomaly:{name}")


def default(name, parameter):
    return algorithm(name).parameterDefinition(parameter).defaultValue()


def test_every_qgis_default_is_the_librarys(plugin):
    from hsanomaly import defaults

    assert default("detect", "SCORE") == defaults.SCORE
    assert default("detect", "SOLVER") == defaults.SOLVER
    assert default("detect", "TILE") == defaults.TILE
    assert default("train", "ITERATIONS") == defaults.ITERATIONS
    assert default("train", "WINDOW") == defaults.TRAIN_WINDOW
    assert default("train", "SEED") == defaults.TRAIN_SEED
    assert default("evaluate", "PD_FAR") == defaults.PD_FAR


def test_choices_are_the_librarys(plugin):
    from hsanomaly.latent import SOLVERS
    from hsanomaly.scorers import SCORES

    detect = algorithm("detect")
    assert detect.parameterDefinition("SCORE").options() == list(SCORES)
    assert detect.parameterDefinition("SOLVER").options() == list(SOLVERS)


def test_fallback_matches_the_library(plugin):
    """The values shown where hsanomaly is not installed are the library's too."""
    library = sys.modules["hsanomaly_qgis.library"]
    loaded = dict(vars(library.load()))
    fallback = dict(vars(library.FALLBACK))
    assert loaded.pop("available") and not fallback.pop("available")
    assert loaded.pop("version") and fallback.pop("version") is None
    assert fallback == loaded


@pytest.fixture
def without_hsanomaly(plugin, monkeypatch):
    """hsanomaly as the plugin sees it where it is not installed."""
    import importlib

    library = sys.modules["hsanomaly_qgis.library"]
    real = importlib.import_module

    def import_module(name, *args):
        if name.split(".")[0] == "hsanomaly":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(library.importlib, "import_module", import_module)
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.dependencies"], "missing",
                        lambda *modules: [m for m in modules if m == "hsanomaly"])
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.algorithms.base"], "missing",
                        lambda *modules: [m for m in modules if m == "hsanomaly"])
    return library


def test_algorithms_load_without_the_library_and_say_how_to_install_it(without_hsanomaly,
                                                                        scene, tmp_path):
    import processing
    from hsanomaly_qgis.algorithms import ALGORITHMS
    from qgis.core import QgsProcessingException

    for cls in ALGORITHMS:
        instance = cls()
        instance.initAlgorithm()
        assert instance.parameterDefinitions()
    detect = ALGORITHMS[0]()
    detect.initAlgorithm()
    assert detect.parameterDefinition("SCORE").defaultValue() == without_hsanomaly.FALLBACK.score
    assert 'pip install' in detect.shortHelpString()
    assert '"hsanomaly[cpu]~=0.2.0"' in detect.shortHelpString()      # the plugin's release
    with pytest.raises(QgsProcessingException, match=r'pip install .*"hsanomaly\[cpu\]~='):
        processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx",
                                            "OUTPUT": str(tmp_path / "heat.tif")})
    assert not (tmp_path / "heat.tif").exists()
