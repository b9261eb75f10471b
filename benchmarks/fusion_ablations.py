"""The default score's fusion, taken apart: more purge passes, other weightings of its terms.

On every scene under DATA_DIR with the models a benchmark cached under MODELS (``hsanomaly
benchmark --models MODELS``; seeds given by --seeds, iterations by --iterations), each scene is
scored whole, as one block read with the halo of --passes purge passes, through the default
score's ``terms`` (``hsanomaly.scorers.context``): the log distance of the GAN residual
(``resrx``), the rings on the residuals and the rings on the pixels.

passes: pass p leaves out of the rings the pixels that pass p - 1 ranks above its own
``1 - purge`` quantile over the scene (the shipped score is pass 2, with the quantile fitted on
a few windows: on a scene of one window they agree to 1e-6); each row is lifted by the score's
``neighbour_weight`` as the shipped score is, the ranking for the next pass is not;
fusions: the second pass's terms added with other weights than the default's (0.5, 1, 1):
each divided by its spread over the scene, and the default or resrx, whichever stands out more.

    .venv/bin/python benchmarks/fusion_ablations.py ../shared/data --models .models
    .venv/bin/python benchmarks/fusion_ablations.py /tmp/implanted/size13 --models /tmp/implanted/models13

(the implanted scenes: benchmarks/implant_targets.py). Prints one row per scene and the mean,
then the mean over scenes of each seed's AUC with its spread over seeds (docs/ablations.md).
"""

import argparse
from pathlib import Path

import numpy as np

from hsanomaly import defaults
from hsanomaly.engine import fit_scorer
from hsanomaly.evaluation import evaluate
from hsanomaly.experiments.cache import ModelCache
from hsanomaly.experiments.scenes import find_scenes
from hsanomaly.io.source import ArraySource
from hsanomaly.runtime import one_blas_thread
from hsanomaly.scorers import make_scorer
from hsanomaly.scorers.purge import lift_neighbours


def spread(x, valid):
    """(median, median absolute deviation) of x over its valid, finite pixels."""
    values = x[valid & np.isfinite(x)]
    median = np.median(values)
    return median, np.median(np.abs(values - median))


def robust_z(x, valid):
    median, deviation = spread(x, valid)
    return (x - median) / deviation


def fusions(terms, weight, valid):
    """Other fusions of one pass's terms {name: map}, by name."""
    resrx, residual, pixel = terms["resrx"], terms["residual rings"], terms["pixel rings"]
    default = weight * resrx + residual + pixel
    scaled = {name: t / spread(t, valid)[1] for name, t in terms.items()}
    return {"default": default,
            "equal weights": resrx + residual + pixel,
            "each / its spread": sum(scaled.values()),
            "weight x resrx, each / its spread": weight * scaled["resrx"]
            + scaled["residual rings"] + scaled["pixel rings"],
            "max(default, resrx), robust z": np.fmax(robust_z(default, valid),
                                                     robust_z(resrx, valid)),
            "logsumexp(default, resrx), robust z": np.logaddexp(robust_z(default, valid),
                                                                robust_z(resrx, valid))}


def lifted(score, weight):
    """The shipped score's last step on a whole scene: outside it there are no pixels."""
    if not weight:
        return score
    return lift_neighbours(np.pad(score, 1, constant_values=np.nan), weight)


def scene_rows(scorer, data, passes):
    """{row name: AUC} for one fitted scorer on one loaded scene."""
    h, lift = scorer.ring_halo, scorer.neighbour_weight
    source = ArraySource(data.cube, valid=data.valid)
    window = source.windows(max(data.valid.shape))[0]
    block, valid = source.read(window, passes * h)
    terms = scorer.terms(block, valid)[0]
    rows, exclude = {}, None
    for p in range(1, passes + 1):
        region = terms(exclude, p * h)             # this pass's region: the next one's reach
        score = scorer.weight * region["resrx"] + region["residual rings"] \
            + region["pixel rings"]
        edge = (passes - p) * h                    # cut to the scene
        inner = score[edge:score.shape[0] - edge, edge:score.shape[1] - edge]
        rows[f"{p} pass{'es' if p > 1 else ''}"] = evaluate(lifted(inner, lift), data.truth,
                                                           valid=data.valid)["auc"]
        if p == 2:
            parts = {name: t[edge:t.shape[0] - edge, edge:t.shape[1] - edge]
                     for name, t in region.items()}
            for name, fused in fusions(parts, scorer.weight, data.valid).items():
                rows[f"fusion: {name}"] = evaluate(lifted(fused, lift), data.truth,
                                                   valid=data.valid)["auc"]
        threshold = np.nanquantile(inner[data.valid], 1 - scorer.purge)
        exclude = np.zeros(valid.shape, bool)
        with np.errstate(invalid="ignore"):
            exclude[p * h:valid.shape[0] - p * h, p * h:valid.shape[1] - p * h] = \
                score > threshold
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--models", required=True, help="the benchmark's --models folder")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=None,
                        help="the cached models' iterations [training's default]")
    parser.add_argument("--passes", type=int, default=4)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = ModelCache(Path(args.models), args.iterations, log=print)
    table = {}                                     # row -> scene -> [AUC per seed]
    with one_blas_thread():
        for scene in find_scenes(args.data_dir):
            data = scene.load()
            for seed in seeds:
                scorer = make_scorer(defaults.SCORE, model=models.get(scene, seed).path,
                                     seed=seed)
                fit_scorer(scorer, ArraySource(data.cube, valid=data.valid, name=scene.name))
                for row, auc in scene_rows(scorer, data, args.passes).items():
                    table.setdefault(row, {}).setdefault(scene.name, []).append(auc)
            print(f"{scene.name}: done", flush=True)
    scenes = list(next(iter(table.values())))
    print("| row | mean | seeds' spread | " + " | ".join(scenes) + " |")
    print("|---|---|---|" + "---|" * len(scenes))
    for row, per_scene in table.items():
        per_seed = np.mean([per_scene[s] for s in scenes], axis=0)
        print(f"| {row} | {per_seed.mean():.4f} | {per_seed.std():.4f} | "
              + " | ".join(f"{np.mean(per_scene[s]):.4f}" for s in scenes) + " |")


if __name__ == "__main__":
    main()
