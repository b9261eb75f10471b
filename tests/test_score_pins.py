"""Every score's results on a fixed scene, pinned to the tile store's ``FORMAT_VERSION``.

A finished heatmap is kept, and an interrupted run resumed, by a fingerprint that holds
``FORMAT_VERSION`` but not the code: a change to a score's results that leaves it as it was
makes a later build keep an earlier build's heatmap, or finish its tiles with other ones (two
commits did so unseen). Here such a change fails until ``FORMAT_VERSION`` is raised and the pins
recorded anew: ``python tests/test_score_pins.py``.

The model scores use the session's tiny model, trained anew, which comes out otherwise on
another CPU (its kernels round otherwise, and training amplifies it: a machine whose torch and
CPU capability were those of the recording trained another model). Their pins are kept per
tiny model, by the digests of its files, and are checked where this machine trains one of
those (``python tests/test_score_pins.py --add`` adds this machine's); elsewhere, and where
torch is not installed, they are skipped. The baselines' pins hold everywhere.
"""

import hashlib
import importlib.util
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
    """Where a set of model pins was recorded: said, not compared (``_model_key`` is)."""
    import torch

    return {"torch": torch.__version__, "machine": platform.machine(),
            "kernels": torch.backends.cpu.get_cpu_capability()}


def _model_key(bundle):
    """The tiny model as trained here, by its files' digests: the model pins it has."""
    return hashlib.sha256(json.dumps(bundle.meta["files"], sort_keys=True).encode()).hexdigest()


def _tiny_model(base):
    """The session's tiny model, or None without torch."""
    if importlib.util.find_spec("torch") is None:
        return None
    from test_latent import tiny_bundle

    return tiny_bundle(base)


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
    pinned = json.loads(PINS.read_text())
    bundle = _tiny_model(tmp_path_factory.getbasetemp())
    key = None if bundle is None else _model_key(bundle)
    models = next((entry for entry in pinned["models"] if entry["model"] == key), None)
    found = _scores(tmp_path_factory.mktemp("pins"), bundle if models else None)
    moved = {}
    for run, values in found.items():
        before = np.array((pinned["scores"] if run in pinned["scores"] else models["scores"])[run],
                          np.float64)
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
    if models is None:
        pytest.skip("baselines pinned; " + ("torch is not installed" if bundle is None else
                    f"the tiny model trained here ({key[:12]}) is none the model pins were "
                    "recorded with: add them (python tests/test_score_pins.py --add)"))


def _record(add=False):
    """Write the pins with this build's scores (after raising FORMAT_VERSION); ``add``: this
    machine's model pins beside those recorded, the baselines' unchanged (they must hold)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as folder:
        bundle = _tiny_model(Path(folder))
        found = _scores(Path(folder), bundle)
    rounded = {run: [None if np.isnan(v) else float(f"{v:.7g}") for v in values]
               for run, values in found.items()}
    pins = json.loads(PINS.read_text()) if add else {"format_version": FORMAT_VERSION, "models": []}
    if add and (pins["format_version"] != FORMAT_VERSION or any(
            not np.allclose(np.array(rounded[run], np.float64), np.array(pins["scores"][run],
                            np.float64), rtol=RTOL, atol=ATOL, equal_nan=True)
            for run in pins["scores"])):
        sys.exit("the baselines' pins do not hold here: nothing added")
    key = _model_key(bundle)
    if not add:
        pins["scores"] = {run: v for run, v in rounded.items()
                          if RUNS[run].get("score", run) not in MODEL_SCORES}
    pins["models"] = [entry for entry in pins["models"] if entry["model"] != key] + [
        {"model": key, "platform": _platform(),
         "scores": {run: v for run, v in rounded.items() if run not in pins["scores"]}}]
    PINS.write_text(json.dumps(pins, indent=0) + "\n")
    print(f"{PINS}: {len(found)} runs pinned, FORMAT_VERSION {FORMAT_VERSION}, "
          f"{len(pins['models'])} tiny models")


if __name__ == "__main__":
    _record(add="--add" in sys.argv[1:])
