"""The Python packages the algorithms need, and how to tell the user to install them."""

import importlib.util

# importable module -> what to pip install to get it
PIP_NAMES = {"hsanomaly": "hsanomaly", "onnxruntime": "onnxruntime",
             "torch": "hsanomaly[train]", "onnx": "hsanomaly[train]"}


def missing(*modules):
    """The top-level ``modules`` that QGIS's Python cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def install_hint(modules):
    """A message naming the missing ``modules`` with the pip command that installs them."""
    packages = sorted({PIP_NAMES.get(name, name) for name in modules})
    return (f"hsanomaly plugin: the Python package(s) {', '.join(modules)} cannot be imported by "
            "the Python that QGIS runs. Install them from a terminal (on Windows: the OSGeo4W "
            f"Shell, with python instead of python3) and restart QGIS:  python3 -m pip install "
            + " ".join(f'"{package}"' for package in packages))
