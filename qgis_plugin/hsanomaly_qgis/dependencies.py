"""The Python packages the algorithms need, and how to tell the user to install them.

The pip command is written for the Python that QGIS runs, with the constraints that
``scripts/qgis-tests.sh`` needs for the same job: QGIS's own numpy stays exactly as it is
(its Python stack is built against it), attrs is new enough for rasterio's affine, and torch
comes from PyTorch's CPU index (never a multi-GB CUDA build). Where that Python is
"externally managed" (PEP 668: Debian, Ubuntu), the packages go to the user's site-packages.
"""

import importlib.metadata
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

# importable module -> what to pip install to get it
PIP_NAMES = {"hsanomaly": "hsanomaly[cpu]", "onnxruntime": "onnxruntime",
             "torch": "hsanomaly[train]", "onnx": "hsanomaly[train]"}
TORCH = "torch==2.13.0"                                 # the Makefile's and qgis-tests.sh's pin
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"    # PyTorch's CPU-only wheels
ATTRS = "attrs>=23.2"                                   # Debian's attrs 22.2 breaks affine
RUNTIMES = ("onnxruntime", "onnxruntime-gpu")           # both install the module onnxruntime


def missing(*modules):
    """The top-level ``modules`` that QGIS's Python cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def python_command():
    """How to call QGIS's Python from a terminal (QGIS itself may be ``sys.executable``)."""
    executable = sys.executable
    if not Path(executable).name.lower().startswith("python") and sys.platform == "darwin":
        # QGIS.app's executable is QGIS; its Python lies beside it (bin/python3 or python)
        bundled = [Path(executable).parent / "bin" / "python3",
                   Path(executable).parent / "python", Path(sys.prefix) / "bin" / "python3"]
        executable = next((str(p) for p in bundled if p.is_file()), executable)
    if Path(executable).name.lower().startswith("python"):
        return f'"{executable}"' if " " in executable else executable
    return "python" if os.name == "nt" else "python3"


def externally_managed():
    """True where pip refuses to install into this Python without --user (PEP 668)."""
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):   # a virtual environment
        return False
    return (Path(sysconfig.get_paths()["stdlib"]) / "EXTERNALLY-MANAGED").exists()


def numpy_pin():
    """QGIS's numpy, exactly (empty where numpy is missing): pip must not replace it."""
    try:
        return [f"numpy=={importlib.metadata.version('numpy')}"]
    except importlib.metadata.PackageNotFoundError:
        return []


def constraints():
    """Requirements that keep QGIS's Python working: its numpy exactly, a recent attrs."""
    return numpy_pin() + [ATTRS]


def pip_install(*requirements, options=()):
    """One ``pip install`` command line for QGIS's Python."""
    flags = ["--user", "--break-system-packages"] if externally_managed() else []
    return " ".join([python_command(), "-m", "pip", "install", *flags,
                     *(f'"{r}"' for r in requirements), *options])


def install_commands(modules):
    """The command lines that install the missing ``modules`` (torch first, from the CPU index)."""
    packages = sorted({PIP_NAMES.get(name, name) for name in modules})
    commands = []
    if "hsanomaly[train]" in packages:
        commands.append(pip_install(TORCH, *numpy_pin(), options=("--index-url", TORCH_INDEX)))
        if "hsanomaly[cpu]" in packages:    # hsanomaly missing too: one requirement for both
            packages = ["hsanomaly[cpu,train]" if p == "hsanomaly[train]" else p
                        for p in packages if p != "hsanomaly[cpu]"]
    commands.append(pip_install(*packages, *constraints()))
    return commands


def install_hint(modules):
    """A message naming the missing ``modules`` with the pip command(s) that install them."""
    return (f"hsanomaly plugin: the Python package(s) {', '.join(modules)} cannot be imported by "
            "the Python that QGIS runs. Install them from a terminal (on Windows: the OSGeo4W "
            "Shell) and restart QGIS:  " + "  &&  ".join(install_commands(modules)))


def conflicting_runtimes():
    """The hint to give when onnxruntime and onnxruntime-gpu are both installed, else None:
    they install the same module and overwrite each other's files."""
    installed = []
    for name in RUNTIMES:
        try:
            importlib.metadata.version(name)
            installed.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(installed) < 2:
        return None
    uninstall = f"{python_command()} -m pip uninstall -y onnxruntime onnxruntime-gpu"
    return ("hsanomaly plugin: onnxruntime and onnxruntime-gpu are both installed; they provide "
            "the same module and overwrite each other. Keep one: " + uninstall + "  &&  "
            + pip_install("onnxruntime-gpu") + "  (or onnxruntime for the CPU only)")
