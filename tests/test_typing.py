"""The public API's type hints, as a type checker reads them (the package ships ``py.typed``).

mypy checks the package itself, then a user's script written against the front door: a
correct one passes, and one with mistakes a hint should catch is refused at those lines.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
    from pathlib import Path
    from typing import Optional

    import numpy as np
    import xarray
    from distributed import Client
    import hsanomaly

    result = hsanomaly.detect("in.tif", Path("out.tif"), score="rx", tile=np.int64(128),
                              far="auto", extras={"recon": Path("recon.tif")},
                              threshold=np.float32(2.5))
    tiles: int = result.tiles
    line: str = result.text()
    scored = result.pixels_scored
    if scored is not None:
        share: float = scored / (scored + (result.pixels_nodata or 0))
    typed: hsanomaly.DetectResult = result
    cube = np.zeros((3, 8, 8), np.float32)
    heat: np.ndarray = hsanomaly.Detector("rx", outer=9).fit(cube).score(cube)
    masked: np.ndarray = hsanomaly.Detector().fit_score(np.ma.masked_invalid(cube))
    labelled: xarray.DataArray = hsanomaly.Detector().fit_score(xarray.DataArray(cube))
    items = hsanomaly.detect_many((p for p in ["a.tif", "b.tif"]), "out", workers=2)
    first: hsanomaly.BatchItem = items[0]
    hsanomaly.detect_many("inputs/*.tif", "out", scheduler=Client("tcp://host:8786"))
    report = hsanomaly.evaluate("heat.tif", "truth.tif", pd_far=1e-3)
    auc: float = report["auc"]
    bundle = hsanomaly.train(["a.tif"], "model", iterations=50)
    hsanomaly.detect("a.tif", "b.tif", model=bundle,
                     callback=lambda fraction, message: fraction > 0.5)
    hsanomaly.detect("a.tif", "b.tif", polygons="t.gpkg", far=np.float32(1e-3),
                     workers=np.int64(2))
    tile: int = hsanomaly.defaults.TILE
    waits: float = hsanomaly.cluster.worker_wait()
    fitted = hsanomaly.Detector("rx").fit(cube)
    bands: int = fitted.n_features_in_
    used: Optional[str] = fitted.model_
    try:
        hsanomaly.Detector().score(cube)
    except hsanomaly.NotFittedError as err:
        said: str = str(err)
"""

BAD = """
    import numpy as np
    import hsanomaly

    result = hsanomaly.detect("in.tif", "out.tif", tile=256.0)
    result.tilez
    cube = np.zeros((3, 8, 8), np.float32)
    hsanomaly.Detector("rx").fit(cube).score(cube).no_such_thing
    hsanomaly.detect_many("a.tif", "out")[0].results
    hsanomaly.evaluate("heat.tif", "truth.tif", pd_far="high")
    count: int = result.pixels_scored
    hsanomaly.Detector().fit("scene.tif")
    hsanomaly.detect("a.tif", "b.tif", far="often")
    hsanomaly.detect("a.tif", "b.tif", threshold="high")
    hsanomaly.detect("a.tif", "b.tif", scheduler=8786)
    hsanomaly.detekt("a.tif", "b.tif")
    hsanomaly.NotFitedError
    hsanomaly.Detector("rx").fitt(cube)
    hsanomaly.Detector("lrx").outter
"""


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """mypy with this project's settings, its cache shared by the module's checks."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    env = {**os.environ, "MYPYPATH": str(ROOT)}      # the editable install hides it from mypy

    def run(*args, cwd=ROOT):
        return subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                               str(ROOT / "pyproject.toml"), "--cache-dir", str(cache), *args],
                              capture_output=True, text=True, cwd=cwd, env=env)
    return run


def test_the_package_type_checks(mypy):
    run = mypy("-p", "hsanomaly")
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_users_script_is_checked_against_the_hints(mypy, tmp_path):
    assert (ROOT / "hsanomaly" / "py.typed").exists()
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent(GOOD))
    run = mypy(str(good), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent(BAD))
    run = mypy(str(bad), cwd=tmp_path)
    lines = {int(m.group(1)) for m in re.finditer(r"bad\.py:(\d+): error", run.stdout)}
    assert lines == {5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, run.stdout


def test_the_hints_name_no_optional_library():
    """A class of an optional library (xarray's, Dask's) named in a hint is Any to a checker
    where it is not installed: Detector.score's result was Any, and a scheduler of 8786 or a
    path given to fit passed. The hints describe them (``hints.LabelledArray``, ...)."""
    for module in ("hints.py", "detector.py", "api.py", "batch.py", "parameters.py"):
        text = (ROOT / "hsanomaly" / module).read_text()
        assert not re.search(r"^\s*(from (xarray|distributed|dask)\b|import (xarray|distributed|dask)\b)",
                             text, re.MULTILINE), module
