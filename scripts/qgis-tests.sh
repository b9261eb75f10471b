#!/usr/bin/env bash
# Run tests/qgis inside real QGIS: Debian's python3-qgis (QGIS 3.22), headless.
#
# Sets up what is missing on a Debian machine (apt needs root), then runs pytest in
# .qgis-venv: a venv over /usr/bin/python3 that sees the system packages (QGIS's Python
# bindings) and holds hsanomaly installed in editable mode. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.qgis-venv
APT_PACKAGES=(python3-qgis python3-venv)
TORCH=torch==2.13.0   # the Makefile's pin: the CPU build, never a multi-GB CUDA one

if ! dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi

if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
    # QGIS's Python stack is built for Debian's numpy 1.x: keep exactly that numpy.
    /usr/bin/python3 -c 'import numpy; print(f"numpy=={numpy.__version__}")' > "$VENV/constraints.txt"
    # Debian's attrs (22.2) is too old for the affine that rasterio pulls in.
    "$VENV/bin/pip" install -q -c "$VENV/constraints.txt" "$TORCH" -e '.[cpu,train]' pytest 'attrs>=23.2'
    touch "$VENV/.installed"
fi

# Without a display QGIS aborts unless Qt renders offscreen.
QT_QPA_PLATFORM=offscreen exec "$VENV/bin/python" -m pytest tests/qgis -q "$@"
