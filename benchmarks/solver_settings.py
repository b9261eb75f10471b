"""How hard the fast latent search should try: recon's AUC per codebook scale and refinement.

For every scene under DATA_DIR (the benchmark's layout, e.g. ../shared/data) and its seed-0
model in the benchmark's model cache, solves every valid pixel with the fast solver at each
(codebook scale, Gauss-Newton refinement steps) setting and prints recon's ROC AUC per scene
and the mean: the table in docs/ablations.md ("How hard the latent search should try").

    python benchmarks/solver_settings.py ../shared/data [--models .models] [--seed 0]

Last line: mean AUC per setting, in the order of SETTINGS.
"""

import argparse
from pathlib import Path

import numpy as np

from hsanomaly.evaluation import roc_curve
from hsanomaly.experiments.cache import ModelCache
from hsanomaly.experiments.scenes import find_scenes
from hsanomaly.latent import GeneratorFunction
from hsanomaly.latent.fast import FastSolver
from hsanomaly.model import load_bundle
from hsanomaly.runtime import open_session

SETTINGS = ((2.0, 2), (2.0, 0), (1.0, 2), (1.0, 0), (0.5, 0))    # (scale, refine)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--models", default=".models", help="the benchmark's model cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cache = ModelCache(Path(args.models))
    table = {setting: [] for setting in SETTINGS}
    for scene in find_scenes(args.data_dir):
        data = scene.load()
        bundle = load_bundle(cache.get(scene, args.seed).path)
        rows, cols = np.nonzero(data.valid)
        x = bundle.preprocessor.transform(data.cube[:, rows, cols].T)
        truth = data.truth[rows, cols] != 0
        generator = GeneratorFunction(open_session(bundle.generator_path, threads=1),
                                      bundle.latent_dim)
        aucs = []
        for scale, refine in SETTINGS:
            cost = FastSolver(codebook_scale=scale, refine=refine, seed=args.seed).solve(generator, x).cost
            aucs.append(roc_curve(cost[truth], cost[~truth]).auc)
            table[(scale, refine)].append(aucs[-1])
        print(scene.name, " ".join(f"{a:.4f}" for a in aucs), flush=True)
    print("settings (scale, refine):", " ".join(f"{s:g}/{r}" for s, r in SETTINGS))
    print("mean", " ".join(f"{np.mean(v):.4f}" for v in table.values()))


if __name__ == "__main__":
    main()
