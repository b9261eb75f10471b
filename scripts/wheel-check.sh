#!/usr/bin/env bash
# The release as a stranger gets it: build the sdist and the wheel (`python -m build`, the
# wheel built from the sdist), install the wheel into a clean virtual environment (no system
# site-packages, nothing from this checkout; pip fetches the dependencies), run
# `hsanomaly --version` and one real detection there, and build the QGIS plugin zip and check
# that it carries the package's version. Exits non-zero on the first failure.
#
# Usage: scripts/wheel-check.sh            (PYTHON=python3.X to build and install with another
#        KEEP=1 scripts/wheel-check.sh     Python; KEEP=1 keeps the work folder)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
STARTED=$SECONDS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hsanomaly-wheel-check.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "wheel-check: work folder $WORK (kept)"
else
    trap 'rm -rf "$WORK"' EXIT
fi
step() { echo "wheel-check: $* ($((SECONDS - STARTED)) s)"; }
fail() { echo "wheel-check: FAILED: $*" >&2; exit 1; }

VERSION=$("$PYTHON" -c 'import ast, sys
tree = ast.parse(open("hsanomaly/_version.py").read())
print(next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
           and any(getattr(t, "id", "") == "__version__" for t in n.targets)))')
step "hsanomaly $VERSION from hsanomaly/_version.py"

# 1. sdist + wheel, with `build` in a throwaway venv (the build itself runs isolated).
step "building the sdist and the wheel"
"$PYTHON" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/pip" install -q build
"$WORK/build-venv/bin/python" -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; fail "python -m build"; }
SDIST="$WORK/dist/hsanomaly-$VERSION.tar.gz"
WHEEL="$WORK/dist/hsanomaly-$VERSION-py3-none-any.whl"
[ -f "$SDIST" ] || fail "no sdist $(basename "$SDIST") in: $(ls "$WORK/dist")"
[ -f "$WHEEL" ] || fail "no wheel $(basename "$WHEEL") in: $(ls "$WORK/dist")"

# What a package index would show: licence, URLs, extras, and no ONNX runtime in the base
# requirements (onnxruntime and onnxruntime-gpu overwrite each other; an extra picks one).
"$WORK/build-venv/bin/python" - "$SDIST" "$WHEEL" <<'EOF' || fail "sdist/wheel contents"
import sys, tarfile, zipfile
from email.parser import Parser

sdist, wheel = sys.argv[1:]
names = tarfile.open(sdist).getnames()
for needed in ("LICENSE", "pyproject.toml", "README.md", "hsanomaly/_version.py"):
    assert any(n.endswith("/" + needed) for n in names), f"sdist lacks {needed}"
with zipfile.ZipFile(wheel) as archive:
    files = archive.namelist()
    info = next(n for n in files if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(archive.read(info).decode())
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in files), "wheel lacks LICENSE"
assert not any(n.startswith(("tests/", "qgis_plugin/", "examples/")) for n in files), files
assert "hsanomaly/py.typed" in files, "wheel lacks hsanomaly/py.typed (the hints' marker)"
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
urls = {u.split(",")[0] for u in meta.get_all("Project-URL")}
assert {"Homepage", "Repository", "Issues", "Changelog"} <= urls, urls
assert {"cpu", "gpu", "train"} <= set(meta.get_all("Provides-Extra")), meta.get_all("Provides-Extra")
base = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
assert not [r for r in base if r.startswith("onnxruntime")], base
print(f"wheel-check: metadata ok: {meta['Name']} {meta['Version']}, License-Expression "
      f"{meta['License-Expression']}, extras {', '.join(meta.get_all('Provides-Extra'))}")
EOF

# 2. The wheel in a clean venv, run from outside this checkout so nothing here is imported.
step "installing the wheel into a clean venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "$WHEEL" > "$WORK/install.log" 2>&1 \
    || { tail -30 "$WORK/install.log"; fail "pip install $(basename "$WHEEL")"; }
cd "$WORK"
OUT=$("$WORK/venv/bin/hsanomaly" --version) || fail "hsanomaly --version"
echo "wheel-check: hsanomaly --version: $OUT"
[[ "$OUT" == *"$VERSION"* ]] || fail "hsanomaly --version says '$OUT', not $VERSION"
"$WORK/venv/bin/python" -c 'import hsanomaly, sys; assert hsanomaly.__file__.startswith(sys.argv[1])' \
    "$WORK/venv/" || fail "hsanomaly imported from outside the clean venv"

# The baselines need no ONNX runtime: a bare install detects.
step "hsanomaly detect examples/abu-airport-2.tif --score rx (no ONNX runtime installed)"
"$WORK/venv/bin/hsanomaly" detect "$ROOT/examples/abu-airport-2.tif" "$WORK/x.tif" --score rx \
    || fail "hsanomaly detect --score rx"
"$WORK/venv/bin/python" - "$ROOT/examples/abu-airport-2.tif" "$WORK/x.tif" <<'EOF' || fail "heatmap"
import sys
import numpy as np
import rasterio

with rasterio.open(sys.argv[1]) as src, rasterio.open(sys.argv[2]) as heat:
    assert (heat.width, heat.height, heat.count) == (src.width, src.height, 1)
    assert heat.crs == src.crs and heat.transform == src.transform
    scores = heat.read(1)
    assert np.isfinite(scores).any() and np.nanmax(scores) > np.nanmin(scores)
    print(f"wheel-check: heatmap ok: {heat.width}x{heat.height}, scores "
          f"{np.nanmin(scores):.3g}..{np.nanmax(scores):.3g}")
EOF

# [cpu] adds the CPU runtime and nothing that fights it.
step "installing the [cpu] extra"
"$WORK/venv/bin/pip" install -q "$WHEEL[cpu]" >> "$WORK/install.log" 2>&1 \
    || { tail -30 "$WORK/install.log"; fail "pip install $(basename "$WHEEL")[cpu]"; }
"$WORK/venv/bin/python" -c 'import onnxruntime; print("wheel-check: onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())' \
    || fail "import onnxruntime after [cpu]"
! "$WORK/venv/bin/pip" show -q onnxruntime-gpu 2>/dev/null || fail "[cpu] installed onnxruntime-gpu"
"$WORK/venv/bin/pip" check || fail "pip check"
cd "$ROOT"

# 3. The QGIS plugin zip carries the package's version.
step "building the QGIS plugin zip"
ZIP=$("$PYTHON" qgis_plugin/build_zip.py "$WORK/plugin")
PLUGIN_VERSION=$("$PYTHON" -c 'import configparser, sys, zipfile
metadata = configparser.ConfigParser(interpolation=None)
metadata.read_string(zipfile.ZipFile(sys.argv[1]).read("hsanomaly_qgis/metadata.txt").decode())
print(metadata["general"]["version"])' "$ZIP")
INSTALLED=$("$WORK/venv/bin/python" -c 'import hsanomaly; print(hsanomaly.__version__)')
[ "$PLUGIN_VERSION" = "$INSTALLED" ] && [ "$(basename "$ZIP")" = "hsanomaly_qgis-$INSTALLED.zip" ] \
    || fail "plugin zip $(basename "$ZIP") says $PLUGIN_VERSION, the installed wheel $INSTALLED"
echo "wheel-check: plugin zip $(basename "$ZIP") version $PLUGIN_VERSION = wheel $INSTALLED"

step "passed"
