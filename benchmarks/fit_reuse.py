"""The default score's fit serving its tiles: fit + score with and without it, in one run.

The purge's fit (``scorers.purge``) solves the latent search and runs the whole first pass over
a few windows of the scene before any tile; a scene of at most a tile is one window, its tile's
very block. ``engine.fit_scorer(..., then_scored=True)`` keeps that work for the tiles (the
residuals by position, ``scorers.halo``; that one block's first pass as it is), which is what
``detect``, ``fit_and_score`` and ``Detector.fit_score`` do; ``then_scored=False`` lets it go
as the fit ends (as a fit of its own does), so the tiles do it again. Both give the same
heatmap, bit for bit (checked here). Each case runs ``--repeats`` times, alternating, after one warm-up
(sessions, codebook); the minimum process CPU of each is kept.

    python benchmarks/fit_reuse.py examples/abu-airport-2.tif --model M [more scenes]

Each scene's model must match its bands. Per scene: pixels, latent-search pixels and CPU-s of
fit + score in both ways. Last line: cpu_ratio=<geometric mean of kept / let go>
"""

import argparse
import collections
import threading
import time

import numpy as np

from hsanomaly.engine import fit_scorer, score_array
from hsanomaly.io.source import open_source
from hsanomaly.latent import fast
from hsanomaly.scorers import make_scorer

_solved = collections.Counter()
_lock = threading.Lock()


def _counting_solve(solve):
    def counted(self, generator, x):
        with _lock:
            _solved["pixels"] += len(x)
        return solve(self, generator, x)
    return counted


def run(source, model, then_scored):
    """(heatmap, CPU-s, latent-search pixels) of a fit and a scoring of ``source``."""
    _solved.clear()
    scorer = make_scorer("dualcontext", model=model)
    start = time.process_time()
    fit_scorer(scorer, source, then_scored=then_scored)
    heat = score_array(source, scorer)["score"][0]
    return heat, time.process_time() - start, _solved["pixels"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="+", help="rasters (a model per scene: --model)")
    parser.add_argument("--model", action="append", required=True,
                        help="the model of each scene, in order (one for all if given once)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    models = args.model * len(args.scenes) if len(args.model) == 1 else args.model
    fast.FastSolver.solve = _counting_solve(fast.FastSolver.solve)
    ratios = []
    for scene, model in zip(args.scenes, models):
        source = open_source(scene)
        run(source, model, True)                                    # warm: sessions, codebook
        best = {}
        for _ in range(args.repeats):
            for kept in (True, False):
                heat, cpu, pixels = run(source, model, kept)
                if kept in best:
                    assert np.array_equal(heat, best[kept][0], equal_nan=True)
                best[kept] = (heat, min(cpu, best.get(kept, (None, np.inf))[1]), pixels)
        assert np.array_equal(best[True][0], best[False][0], equal_nan=True), scene
        ratio = best[True][1] / best[False][1]
        ratios.append(ratio)
        print(f"{scene}: {source.height} x {source.width} = {source.height * source.width} "
              f"pixels; latent-search pixels {best[True][2]} kept / {best[False][2]} let go; "
              f"CPU-s {best[True][1]:.2f} kept / {best[False][1]:.2f} let go ({ratio:.2f}x); "
              "heatmaps identical", flush=True)
    print(f"cpu_ratio={float(np.exp(np.mean(np.log(ratios)))):.3f}")


if __name__ == "__main__":
    main()
