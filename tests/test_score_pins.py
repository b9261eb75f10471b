"""Every score's results on a fixed scene, pinned to the tile store's ``FORMAT_VERSION``.

A finished heatmap is kept, and an interrupted run resumed, by a fingerprint that holds
``FORMAT_VERSION`` but not the code: a change to a score's results that leaves it as it was
makes a later build keep an earlier build's heatmap, or finish its tiles with other ones (two
commits did so unseen). Here such a change fails until ``FORMAT_VERSION`` is raised and the pins
recorded anew: ``python tests/test_score_pins.py``.

The model scores use the session's tiny model, trained anew: their pins hold where torch, its
CPU kernels and the machine are those they were recorded with, and are skipped elsewhere (and
where torch is not installed); the baselines' pins hold everywhere.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

import hsanomaly
from hsanomaly.engine.store import FORMAT_VERSION
from hsanomaly.scorers import MODEL_SCORES, SCORES

from synthetic import synthetic_cube, write_raster

PINS = Path(__file__).with_name("score_pins.json")
# each score with its defaults, and the options whose paths the defaults leave out
RUNS = {**{score: {} for score in SCORES},
        "mlrx purge": {"score": "mlrx", "purge": 0.03},
        "context purge": {"score": "context", "purge": 0.03},
        "recon thesis": {"score": "recon", "solver": "thesis", "restarts": 2, "steps": 5},
        "resrx refine": {"score": "resrx", "refine": 2},
        # samples smaller than the scene: the draws' seeds and shares are pinned too
        "gmm sample": {"score": "gmm", "sample": 3000},
        "resrx sample": {"score": "resrx", "sample": 3000},
        "dualcontext sample": {"score": "dualcontext", "sample": 3000}}
TILE = 32                    # several tiles, the purge's fit windows among them
EVERY = 13                   # the pixels pinned: every 13th
# at most this share of a model score's pinned pixels may move by more than the tolerance:
# another CPU's rounding can tip a near tie in a latent search's nearest candidates
MOVED = 0.01
RTOL, ATOL = 1e-3, 1e-6


def _platform():
    """What the model scores' pins hold for; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return {"torch": torch.__version__, "machine": platform.machine(),
            "kernels": torch.backends.cpu.get_cpu_capability()}


def _scores(folder, bundle):
    """{run: its pinned pixels}: every run, or the baselines' alone where ``bundle`` is None."""
    cube, _ = synthetic_cube(rows=48, cols=300)     # wider than a tile: the purge fits in parts
    raster = write_raster(folder / "pinned.tif", cube)
    found = {}
    for run, options in RUNS.items():
        options = {"score": run, **options}
        if bundle is None and options["score"] in MODEL_SCORES:
            continue
        model = {"model": bundle.path, "threads": 1} if options["score"] in MODEL_SCORES else {}
        heat = folder / f"{run.replace(' ', '-')}.tif"
        hsanomaly.detect(raster, heat, tile=TILE, **model, **options)
        with rasterio.open(heat) as ds:
            found[run] = ds.read(1).ravel()[::EVERY].astype(np.float64)
    return found


def test_a_change_in_a_scores_results_raises_the_format_version(tmp_path_factory):
    from test_latent import tiny_bundle

    pinned = json.loads(PINS.read_text())
    same_platform = pinned["platform"] == _platform()
    bundle = tiny_bundle(tmp_path_factory.getbasetemp()) if same_platform else None
    found = _scores(tmp_path_factory.mktemp("pins"), bundle)
    moved = {}
    for run, values in found.items():
        before = np.array(pinned["scores"][run], np.float64)
        off = ~np.isclose(values, before, rtol=RTOL, atol=ATOL, equal_nan=True)
        if off.mean() > (MOVED if RUNS[run].get("score", run) in MODEL_SCORES else 0):
            moved[run] = f"{off.sum()} of {off.size} pixels"
    if pinned["format_version"] == FORMAT_VERSION:
        assert not moved, (f"scores changed ({moved}) with FORMAT_VERSION {FORMAT_VERSION}: "
                           "raise it (hsanomaly/engine/store.py), then record the pins anew "
                           "(python tests/test_score_pins.py)")
    else:
        pytest.fail(f"FORMAT_VERSION is {FORMAT_VERSION}, the pins' "
                    f"{pinned['format_version']}: record them anew (python tests/test_score_pins.py)")
    if not same_platform:
        pytest.skip(f"baselines pinned; the model scores were recorded with "
                    f"{pinned['platform']}, not {_platform()}")


def _record():
    """Write the pins with this build's scores (after raising FORMAT_VERSION)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from test_latent import tiny_bundle

    with tempfile.TemporaryDirectory() as folder:
        bundle = tiny_bundle(Path(folder))
        found = _scores(Path(folder), bundle)
    PINS.write_text(json.dumps({
        "format_version": FORMAT_VERSION, "platform": _platform(),
        "scores": {run: [None if np.isnan(v) else float(f"{v:.7g}") for v in values]
                   for run, values in found.items()}}, indent=0) + "\n")
    print(f"{PINS}: {len(found)} runs pinned, FORMAT_VERSION {FORMAT_VERSION}")


if __name__ == "__main__":
    _record()
