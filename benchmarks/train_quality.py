"""Training cost against held-out detection quality: cheaper training settings (issue 14) and
background purification by retraining (issue 15), scored with the default ``dualcontext``.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/train_quality.py \\
        [--candidates it200-b256,it300-b128] [--seeds 0,1,2] [--scenes abu-airport-2,...] \\
        [--time-one abu-airport-2] [--purify 1,3] [--purify-base it800-b64] [--mlrx]

For every candidate training setting (``CANDIDATES``), one model per scene and seed is trained
with ``hsanomaly.train`` (torch on one thread, ``defaults.TRAIN_THREADS``) and kept under
``--root/<candidate>/<scene>/seed<k>`` (default /tmp/models-study, out of git), the CPU seconds
of the training call are taken in this process (``time.process_time``, all threads, as
``experiments/cache.py`` does), and ``dualcontext`` (seeded with the training seed, as
``hsanomaly benchmark`` does; ``--dual-options``, default the study's ``refine=2,purge=0.0``,
the default score before commit 9955ee8) is fitted and scored through
``hsanomaly.engine.fit_and_score`` with one
thread. AUC: sklearn ``roc_auc_score`` on the scene's ground truth over pixels with a finite
score. Results are cached beside each model (``seed<k>.json``), so a rerun only trains and scores
what is missing. The first row is the reference: the benchmark's cached default models
(``--reference``, default ``.models``: 800 iterations, batch 64, 5 critic steps) with the CPU
seconds of their ``.timing.json``, scored here again, never retrained.

``--time-one SCENE`` trains one model of each candidate on that scene (seed 0) and prints its
CPU seconds only, to check a candidate's cost before running every scene.

``--purify 1,3``: background purification without labels. For each scene and seed, the
``--purify-base`` candidate's model (the reference models for ``reference``) scores the scene
with ``--purify-score`` (default ``resrx``), the top p % of valid pixels become an exclusion
mask (a GeoTIFF passed as ``train(mask=...)``, which drops training windows centred on a masked
pixel), a model is trained from scratch with the base settings on the rest, and ``dualcontext``
with that model is scored on the full scene. Rows ``purify-p<p>-<score>-<base>``.

``--mlrx`` adds the no-GAN ablation row ``mlrx`` (the same rings without a model).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.metrics import roc_auc_score  # noqa: E402

from hsanomaly.engine import fit_and_score  # noqa: E402
from hsanomaly.experiments.scenes import find_scenes, select_scenes  # noqa: E402
from hsanomaly.io import ArraySource  # noqa: E402
from hsanomaly.scorers import make_scorer  # noqa: E402

# name -> hsanomaly.train keywords, all explicit (the former defaults were 800 iterations, batch
# 64, 5 critic steps; d53e0dd made 250 iterations with 2 critic steps the default)
CANDIDATES = {
    "it800-b64": dict(iterations=800, batch=64, critic_steps=5),   # the former defaults
    "it200-b256": dict(iterations=200, batch=256, critic_steps=5),
    "it300-b128": dict(iterations=300, batch=128, critic_steps=5),
    "it800-b64-c2": dict(iterations=800, critic_steps=2, batch=64),
    "it400-b64": dict(iterations=400, batch=64, critic_steps=5),
    "it200-b64": dict(iterations=200, batch=64, critic_steps=5),
    "it250-b64": dict(iterations=250, batch=64, critic_steps=5),
    "it250-b64-c3": dict(iterations=250, critic_steps=3, batch=64),
    "it400-b64-c2": dict(iterations=400, critic_steps=2, batch=64),
    "it300-b64-c3": dict(iterations=300, critic_steps=3, batch=64),
    "it200-b128": dict(iterations=200, batch=128, critic_steps=5),
    "it150-b256": dict(iterations=150, batch=256, critic_steps=5),
    "it150-b64": dict(iterations=150, batch=64, critic_steps=5),
    "it250-b64-c2": dict(iterations=250, critic_steps=2, batch=64),
    "it100-b64": dict(iterations=100, batch=64, critic_steps=5),
    "it400-b32": dict(iterations=400, batch=32, critic_steps=5),
    "it300-b64-c2": dict(iterations=300, critic_steps=2, batch=64),
    "it150-b64-lr2e-3": dict(iterations=150, lr=2e-3, batch=64, critic_steps=5),
}
REFERENCE = "reference"
# dualcontext as scored in the study (docs/training/quality.md): the default score until 9955ee8
# (fast-solver refine 2, no purge). Results are cached per candidate, not per score options:
# use another --root when changing --dual-options.
DUAL_OPTIONS = "refine=2,purge=0.0"
DUAL = {}                     # the parsed --dual-options


def slug(scene):
    return scene.name.replace("/", "__")


def auc_of(scores, truth):
    ok = np.isfinite(scores)
    return float(roc_auc_score(truth[ok].ravel().astype(int), scores[ok].ravel()))


def score(data, scene, name, model=None, seed=None):
    options = {"threads": 1} if model is not None else {}
    if model is not None:
        options.update(model=str(model), seed=seed)
    if name == "dualcontext":
        options.update(DUAL)
    scorer = make_scorer(name, **options)
    source = ArraySource(data.cube, valid=data.valid, profile=data.profile, name=scene.name)
    cpu = time.process_time()
    scores = fit_and_score(source, scorer, threads=1)["score"][0]
    return scores, time.process_time() - cpu


def train_timed(scene, out, seed, options, mask=None):
    from hsanomaly import train

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    wall, cpu = time.perf_counter(), time.process_time()
    train([scene.path], out, iterations=options.get("iterations", 800), seed=seed,
          progress=False, mask=mask, **{k: v for k, v in options.items() if k != "iterations"})
    return {"train_seconds": time.perf_counter() - wall,
            "train_cpu_seconds": time.process_time() - cpu}


def cached(path):
    return json.loads(path.read_text()) if path.exists() else None


def save(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def run_reference(scene, data, seed, root, reference):
    result = root / REFERENCE / slug(scene) / f"seed{seed}.json"
    record = cached(result)
    if record is None:
        model = reference / slug(scene) / f"seed{seed}-it800"
        timing = json.loads(model.with_name(model.name + ".timing.json").read_text())
        scores, cpu = score(data, scene, "dualcontext", model, seed)
        record = {"train_cpu_seconds": timing["cpu_seconds"], "train_seconds": timing["seconds"],
                  "auc": auc_of(scores, data.truth), "score_cpu_seconds": cpu}
        save(result, record)
    return record


def run_candidate(scene, data, seed, root, name):
    result = root / name / slug(scene) / f"seed{seed}.json"
    record = cached(result)
    if record is None:
        out = root / name / slug(scene) / f"seed{seed}"
        record = train_timed(scene, out, seed, CANDIDATES[name])
        scores, cpu = score(data, scene, "dualcontext", out, seed)
        record.update(auc=auc_of(scores, data.truth), score_cpu_seconds=cpu)
        save(result, record)
    return record


def base_model(scene, seed, root, reference, base):
    if base == REFERENCE:
        return reference / slug(scene) / f"seed{seed}-it800", CANDIDATES["it800-b64"]
    return root / base / slug(scene) / f"seed{seed}", CANDIDATES[base]


def run_purified(scene, data, seed, root, reference, base, percent, first_score):
    name = f"purify-p{percent:g}-{first_score}-{base}"
    result = root / name / slug(scene) / f"seed{seed}.json"
    record = cached(result)
    if record is None:
        import rasterio

        model, options = base_model(scene, seed, root, reference, base)
        if not (model / "model.json").exists():
            run_candidate(scene, data, seed, root, base)
        first, first_cpu = score(data, scene, first_score, model, seed)
        finite = np.isfinite(first) & data.valid
        cut = np.percentile(first[finite], 100 - percent)
        exclude = (finite & (first >= cut)).astype(np.uint8)
        mask = root / name / slug(scene) / f"seed{seed}-mask.tif"
        mask.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(mask, "w", driver="GTiff", width=exclude.shape[1],
                           height=exclude.shape[0], count=1, dtype="uint8") as ds:
            ds.write(exclude, 1)
        out = root / name / slug(scene) / f"seed{seed}"
        record = train_timed(scene, out, seed, options, mask=str(mask))
        scores, cpu = score(data, scene, "dualcontext", out, seed)
        truth = data.truth.astype(bool)
        record.update(auc=auc_of(scores, data.truth), score_cpu_seconds=cpu,
                      first_score_cpu_seconds=first_cpu, excluded=int(exclude.sum()),
                      excluded_targets=int((exclude.astype(bool) & truth).sum()),
                      targets=int(truth.sum()))
        save(result, record)
    return name, record


def run_mlrx(scene, data, root):
    result = root / "mlrx" / slug(scene) / "seed-.json"
    record = cached(result)
    if record is None:
        scores, cpu = score(data, scene, "mlrx")
        record = {"train_cpu_seconds": 0.0, "auc": auc_of(scores, data.truth),
                  "score_cpu_seconds": cpu}
        save(result, record)
    return record


def table(rows, scenes):
    """rows: name -> {(scene, seed): record}; markdown to stdout."""
    short = [s.path.stem for s in scenes]
    print("| candidate | train CPU-s (mean) | dualcontext AUC (mean over scenes and seeds) "
          "| per-seed means | seeds x scenes | " + " | ".join(short) + " |")
    print("|---" * (5 + len(short)) + "|")
    for name, runs in rows.items():
        seeds = sorted({seed for (_, seed) in runs}, key=str)
        complete = [s for s in seeds if all((sc.name, s) in runs for sc in scenes)]
        per_seed = {s: np.mean([runs[(sc.name, s)]["auc"] for sc in scenes]) for s in complete}
        mean = np.mean(list(per_seed.values())) if per_seed else float("nan")
        spread = np.std(list(per_seed.values())) if len(per_seed) > 1 else 0.0
        cpu = np.mean([r["train_cpu_seconds"] for r in runs.values()])
        cells = []
        for sc in scenes:
            values = [runs[(sc.name, s)]["auc"] for s in seeds if (sc.name, s) in runs]
            cells.append(f"{np.mean(values):.4f}" if values else "")
        seed_text = " ".join(f"s{s}:{v:.4f}" for s, v in per_seed.items())
        print(f"| {name} | {cpu:.1f} | {mean:.4f} ± {spread:.4f} | {seed_text} | "
              f"{len(complete)} x {len(scenes)} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--root", default="/tmp/models-study")
    parser.add_argument("--reference", default=str(ROOT / ".models"))
    parser.add_argument("--candidates", default="")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--scenes", default="")
    parser.add_argument("--time-one", default="")
    parser.add_argument("--purify", default="")
    parser.add_argument("--purify-base", default=REFERENCE)
    parser.add_argument("--purify-score", default="resrx")
    parser.add_argument("--mlrx", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--dual-options", default=DUAL_OPTIONS,
                        help="dualcontext options, key=value,... (default: the study's)")
    args = parser.parse_args()
    DUAL.clear()
    for pair in filter(None, args.dual_options.split(",")):
        key, _, value = pair.partition("=")
        DUAL[key] = float(value) if "." in value else int(value)

    root, reference = Path(args.root), Path(args.reference)
    candidates = [c for c in args.candidates.split(",") if c]
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    scenes = select_scenes(find_scenes(args.data), [s for s in args.scenes.split(",") if s])

    if args.time_one:
        scene = select_scenes(scenes, [args.time_one])[0]
        for name in candidates:
            out = root / "time-one" / name / slug(scene) / "seed0"
            spent = train_timed(scene, out, 0, CANDIDATES[name])
            print(f"{name} {scene.name}: {spent['train_cpu_seconds']:.1f} CPU-s "
                  f"({spent['train_seconds']:.1f} s wall, load {os.getloadavg()[0]:.1f})",
                  flush=True)
        return

    rows = {}
    for scene in scenes:
        data = scene.load()
        for seed in seeds:
            if not args.no_reference:
                rows.setdefault(REFERENCE, {})[(scene.name, seed)] = run_reference(
                    scene, data, seed, root, reference)
            for name in candidates:
                record = run_candidate(scene, data, seed, root, name)
                rows.setdefault(name, {})[(scene.name, seed)] = record
                print(f"{scene.name} seed {seed} {name}: AUC {record['auc']:.4f}, "
                      f"train {record['train_cpu_seconds']:.1f} CPU-s", file=sys.stderr,
                      flush=True)
            for percent in [float(p) for p in args.purify.split(",") if p]:
                name, record = run_purified(scene, data, seed, root, reference,
                                            args.purify_base, percent, args.purify_score)
                rows.setdefault(name, {})[(scene.name, seed)] = record
                print(f"{scene.name} seed {seed} {name}: AUC {record['auc']:.4f}, "
                      f"excluded {record['excluded']} ({record['excluded_targets']} of "
                      f"{record['targets']} targets)", file=sys.stderr, flush=True)
        if args.mlrx:
            rows.setdefault("mlrx", {})[(scene.name, "-")] = run_mlrx(scene, data, root)
    table(rows, scenes)


if __name__ == "__main__":
    main()
