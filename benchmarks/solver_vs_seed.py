"""The default latent search against the thesis's 16 x 100 search: same generator, same pixels.

Takes a scene with truth (a .mat with its ground truth, or a raster with --truth; a raster
``NAME.tif`` finds ``NAME-truth.tif`` beside it), trains a small model on it with
hsanomaly.training.train unless --model is given, then solves the same pixels (all valid pixels,
or --pixels of them drawn with every target pixel kept) with both solvers in this process, on
the same onnxruntime session. The fast solver's one-off codebook (built once per model and
process) is timed separately and left out of its pixel rate; it is printed, with the speedup
it would leave at this pixel count. Generator evaluations per pixel are printed too: the
seed solver's gradients come from forward differences (latent_dim + 1 evaluations a step),
where the thesis's TensorFlow took a forward and a backward pass (about 3 evaluations' work),
so the line "autodiff-equivalent speedup" rescales the speedup to that reference.

    python benchmarks/solver_vs_seed.py examples/abu-airport-2.tif [--model DIR] [--threads 2]
        [--codebook-scale S]

Last line: speedup=<x> cost_ratio=<mean fast / mean seed> auc_fast=<a> auc_seed=<b>
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hsanomaly import defaults
from hsanomaly.evaluation import roc_curve
from hsanomaly.io.scene import read_scene
from hsanomaly.latent import GeneratorFunction, make_solver
from hsanomaly.model import load_bundle
from hsanomaly.runtime import open_session

AUTODIFF_STEP_COST = 3.0   # a forward and a backward pass, in generator evaluations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--truth", help="truth raster (default: NAME-truth.tif beside a raster)")
    parser.add_argument("--model", help="model bundle; default: train one on the scene")
    parser.add_argument("--bands", type=int, default=20, help="bands for the trained model (seed: 20)")
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations")
    parser.add_argument("--pixels", type=int, default=10_000, help="pixels to solve (>= 8000)")
    parser.add_argument("--restarts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for both")
    parser.add_argument("--codebook-scale", type=float, default=defaults.CODEBOOK_SCALE,
                        help="the fast solver's codebook spread (default: the product's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scene = read_scene(args.scene, truth=_truth_path(args.scene, args.truth))
    if scene.truth is None:
        parser.error(f"{args.scene}: no truth found; pass --truth")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _train(args, Path(tmp) / "model")
        bundle = load_bundle(model)
        rows, cols = _pick_pixels(scene, args.pixels, args.seed)
        x = bundle.preprocessor.transform(scene.cube[:, rows, cols].T)
        truth = scene.truth[rows, cols] != 0
        generator = GeneratorFunction(open_session(bundle.generator_path, threads=args.threads),
                                      bundle.latent_dim)
        print(f"{Path(args.scene).name}: {len(x)} pixels ({truth.sum()} target), {bundle.bands} bands, "
              f"latent {bundle.latent_dim}, {args.threads} threads, load {os.getloadavg()[0]:.1f}")

        fast = make_solver("fast", codebook_scale=args.codebook_scale, seed=args.seed)
        start = time.perf_counter()
        fast.codebook(generator)
        build = time.perf_counter() - start
        fast_seconds, fast_result, fast_forwards = _timed(fast, generator, x, repeats=3)
        seed = make_solver("thesis", restarts=args.restarts, steps=args.steps, seed=args.seed)
        seed_seconds, seed_result, seed_forwards = _timed(seed, generator, x, repeats=1)

    n = len(x)
    speedup = seed_seconds / fast_seconds
    ratio = float(np.mean(fast_result.cost, dtype=np.float64) / np.mean(seed_result.cost, dtype=np.float64))
    per_pixel = fast_result.cost / seed_result.cost
    auc_fast = roc_curve(fast_result.cost[truth], fast_result.cost[~truth]).auc
    auc_seed = roc_curve(seed_result.cost[truth], seed_result.cost[~truth]).auc
    print(f"seed {args.restarts}x{args.steps}: {n / seed_seconds:.1f} px/s, "
          f"{seed_forwards / n:.0f} generator evaluations/px, mean cost {seed_result.cost.mean():.6f}")
    print(f"fast: {n / fast_seconds:.0f} px/s, {fast_forwards / n:.1f} generator evaluations/px, "
          f"mean cost {fast_result.cost.mean():.6f}; codebook of {len(fast.codebook(generator))} "
          f"built once in {build:.1f} s (speedup with it included at {n} px: "
          f"{seed_seconds / (fast_seconds + build):.0f})")
    print(f"autodiff-equivalent speedup: {speedup * AUTODIFF_STEP_COST / (bundle.latent_dim + 1):.0f}")
    print(f"per-pixel fast/seed cost: median {np.median(per_pixel):.3f}, 90% {np.percentile(per_pixel, 90):.3f}, "
          f"max {per_pixel.max():.2f}, worse by >1% on {np.mean(per_pixel > 1.01):.1%}")
    print(f"speedup={speedup:.0f} cost_ratio={ratio:.4f} auc_fast={auc_fast:.4f} auc_seed={auc_seed:.4f}")


def _truth_path(scene, truth):
    if truth is not None or str(scene).lower().endswith(".mat"):
        return truth
    beside = Path(scene).with_name(Path(scene).stem + "-truth.tif")
    return str(beside) if beside.exists() else None


def _train(args, out):
    from hsanomaly.training import train

    print(f"training a {args.bands}-band model on {args.scene} ({args.iterations} iterations)")
    train([args.scene], out, bands=args.bands, iterations=args.iterations, seed=args.seed,
          progress=False)
    return out


def _pick_pixels(scene, n, seed):
    """Every valid pixel if there are at most ``n``; else every target pixel plus random background."""
    rows, cols = np.nonzero(scene.valid)
    if len(rows) <= n:
        return rows, cols
    target = scene.truth[rows, cols] != 0
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(target)
    keep = np.concatenate([keep, rng.choice(np.flatnonzero(~target), n - len(keep), replace=False)])
    return rows[np.sort(keep)], cols[np.sort(keep)]


def _timed(solver, generator, x, repeats):
    """(best wall time of ``repeats`` solves, the result, generator evaluations of one solve)."""
    best = np.inf
    for _ in range(repeats):
        generator.forwards = 0
        start = time.perf_counter()
        result = solver.solve(generator, x)
        best = min(best, time.perf_counter() - start)
    return best, result, generator.forwards


if __name__ == "__main__":
    main()
