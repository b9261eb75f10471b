"""The Python packages the algorithms need, and how to tell the user to install them.

The pip command is written for the Python that QGIS runs, with the constraints that
``scripts/qgis-tests.sh`` needs for the same job: QGIS's own numpy stays exactly as it is
(its Python stack is built against it), attrs is new enough for rasterio's affine, and torch
comes from PyTorch's CPU index (never a multi-GB CUDA build). Where that Python is
"externally managed" (PEP 668: Debian, Ubuntu), the packages go to the user's site-packages.
"""

import configparser
import importlib
import importlib.metadata
import importlib.util
import os
import re
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
MODULES = {"scikit-learn": "sklearn"}     # the library's requirements not imported by their name


def missing(*modules):
    """The top-level ``modules`` that QGIS's Python cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def plugin_version():
    """This plugin's version, as its metadata.txt gives it (the library's it was built with)."""
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(Path(__file__).with_name("metadata.txt"), encoding="utf-8")
    return metadata.get("general", "version", fallback="")


def release(version):
    """A version's release line, major.minor ("0.2" of "0.2.1"): the names and defaults the
    plugin reads from the library hold within one."""
    return ".".join(map(str, _numbers(version)[:2]))


def _numbers(version):
    """A version's numbers, up to major.minor.patch: (0, 2, 1) of "0.2.1"."""
    return tuple(int(n) for n in re.findall(r"\d+", str(version))[:3])


def in_a_terminal(modules):
    """How to install ``modules`` (``install_commands``): from a terminal, then a restart."""
    return ("from a terminal (on Windows: the OSGeo4W Shell) and restart QGIS:  "
            + "  &&  ".join(install_commands(modules)))


def unmet(*modules):
    """What keeps the algorithms from running where they need ``modules``: the install hint
    for those QGIS's Python lacks, or, for the hsanomaly library, why the one it holds cannot
    serve (another release line than the plugin's, or a package it needs missing); None where
    nothing does."""
    absent = missing(*modules)
    if absent:
        return install_hint(absent)
    return library_problem() if "hsanomaly" in modules else None


def library_problem():
    """Why the installed hsanomaly library cannot serve this plugin, with the command that
    fixes it; None where it can. QGIS's Plugin Manager updates the plugin alone, so an older
    library under a newer plugin is the mismatch users meet."""
    try:
        wanted = importlib.metadata.requires("hsanomaly") or []
    except importlib.metadata.PackageNotFoundError:      # on sys.path without its metadata
        wanted = []
    needed = [re.match(r"[A-Za-z0-9._-]+", requirement).group(0) for requirement in wanted
              if ";" not in requirement]           # an extra's, or under a marker
    absent = []
    for name in needed:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:    # or installed without its metadata
            module = MODULES.get(name.lower(), name.lower().replace("-", "_"))
            if importlib.util.find_spec(module) is None:
                absent.append(name)
    if absent:
        return (f"hsanomaly plugin: the hsanomaly library is installed, but not the "
                f"package(s) {', '.join(absent)} it needs. Install them "
                + in_a_terminal(["hsanomaly"]))
    try:
        installed = importlib.import_module("hsanomaly").__version__
    except Exception as err:           # QGIS's start-up must go on, whatever it raised
        return (f"hsanomaly plugin: the hsanomaly library cannot be imported ({err}). Install "
                "it again " + in_a_terminal(["hsanomaly"]))
    plugin = plugin_version()
    if release(installed) == release(plugin):
        return None
    newer = _numbers(installed) > _numbers(plugin)
    return (f"hsanomaly plugin {plugin}: QGIS's Python holds the hsanomaly library "
            f"{installed}, which this plugin cannot use (it needs {release(plugin)}.x: "
            "update the two together). "
            + (f"Update the plugin to the library's release ({installed}: Plugins > Manage and "
               "Install Plugins, or its zip), or install" if newer else "Install")
            + " the matching library " + in_a_terminal(["hsanomaly"]))


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
    if "onnxruntime-gpu" in installed_runtimes():    # [cpu] would put onnxruntime beside it
        packages = [p.replace("[cpu", "[gpu") for p in packages]
    version = plugin_version().split("+")[0]       # a local build's "+g1a2b" is no release
    # the plugin's release line, never another's; a pre-release plugin's (0.3.0rc1) from
    # itself on: named in the specifier, pip takes pre-releases of hsanomaly alone
    major, minor = (_numbers(version) + (0, 0))[:2]
    line = (f">={version},<{major}.{minor + 1}" if re.search(r"\d(a|b|rc|\.?dev)\d*$", version)
            else f"~={release(version)}.0")
    pinned = [f"{p}{line}" if p.startswith("hsanomaly[") else p for p in packages]
    commands.append(pip_install(*pinned, *constraints()))
    return commands


def install_hint(modules):
    """A message naming the missing ``modules`` with the pip command(s) that install them."""
    return (f"hsanomaly plugin: the Python package(s) {', '.join(modules)} cannot be imported by "
            "the Python that QGIS runs. Install them " + in_a_terminal(modules))


def installed_runtimes():
    """Which of onnxruntime and onnxruntime-gpu are installed (their distributions)."""
    installed = []
    for name in RUNTIMES:
        try:
            importlib.metadata.version(name)
            installed.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return installed


def conflicting_runtimes():
    """The hint to give when onnxruntime and onnxruntime-gpu are both installed, else None:
    they install the same module and overwrite each other's files."""
    if len(installed_runtimes()) < 2:
        return None
    uninstall = f"{python_command()} -m pip uninstall -y onnxruntime onnxruntime-gpu"
    return ("hsanomaly plugin: onnxruntime and onnxruntime-gpu are both installed; they provide "
            "the same module and overwrite each other. Keep one: " + uninstall + "  &&  "
            + pip_install("onnxruntime-gpu") + "  (or onnxruntime for the CPU only)")
