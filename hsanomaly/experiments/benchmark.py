"""Benchmark: every score on every scene with ground truth under a folder, scored in memory
through the product's own path (``hsanomaly.engine.score_array``, the tiles ``detect``
writes), evaluated with ``hsanomaly.evaluation``.

A method is a score name from the registry, optionally with options:
``lrx:outer=21:guard=7`` (see ``parse_method``). Seeds multiply only the seeded methods (those
taking a seed or a model); deterministic ones run once. The model scores share one GAN trained
per scene and seed (fully unsupervised, ``hsanomaly.training.train`` defaults) through a
``ModelCache``. With ``select``, the held-out selection protocol (``selection.py``) runs over
the methods and its tables come first.

Per run it records AUC, logAUC, lgFAR, Pd (``evaluation.metrics``), wall and CPU seconds of
fit + score, wall and CPU seconds of training the run's model (0 for the baselines; a model
shared by several GAN scores is counted in each of their rows), and, for the first seed, the
peak of memory traced by ``tracemalloc`` (Python and numpy allocations; not BLAS, torch or
onnxruntime internals) during scoring, in a second pass: tracing slows the methods unevenly,
so the timed pass runs without it.
"""

import csv
import itertools
import os
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import fit_and_score
from ..errors import HsanomalyError, describe
from ..evaluation import evaluate
from ..io import ArraySource
from ..io.atomic import private_temporary
from ..io.checks import warn
from ..options import KINDS
from ..scorers import check_scorer, make_scorer, scorer_class
from ..runtime import training_unavailable
from ..spelling import PYTHON, spell, spelled
from .cache import ModelCache
from .pool import cpu_seconds, map_scenes
from .scenes import (NO_TRUTH_VARIABLE, ambiguous, brightness, find_scenes, nfc, scenes_by_stem,
                     select_scenes)
from .tables import summarise

SEEDS = (0, 1, 2)             # training seeds of the seeded scores
QUICK_SCENES = 3              # --quick: the first scenes of distinct images only
QUICK_ITERATIONS = 200        # --quick: generator iterations per GAN model


def parse_method(method):
    """``"name:key=value:..."`` -> (score name, options); values become int, float or text."""
    name, *pairs = method.split(":")
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HsanomalyError(f"score {method!r}: options are written name:key=value")
        if key.replace("-", "_") in options:          # the last one won, under both in the label
            raise HsanomalyError(f"score {method!r}: {key} given twice")
        options[key.replace("-", "_")] = _value(value)
    return name, options


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def is_seeded(method):
    cls = scorer_class(parse_method(method)[0])
    return cls.needs_model or "seed" in cls.options


def check_methods(methods):
    """Refuse unknown scores, options and option values (each scorer is built once, without
    its model, which loads only when it scores), and model scores when torch (needed to train
    models) is missing: all before any model is trained."""
    unavailable = training_unavailable()
    for method in methods:
        name, options = parse_method(method)
        try:
            with spelled(PYTHON):         # options named as the spec names them
                cls = check_scorer(name, options)
        except HsanomalyError as err:
            raise HsanomalyError(f"score {method!r}: {err}") from None
        if cls.needs_model and unavailable:
            raise HsanomalyError(f"score {name!r} needs a model trained per scene and seed, "
                                 f"and {unavailable}")
        if "seed" in options and is_seeded(method):   # it would stand in for every seed run
            raise HsanomalyError(f"score {method!r}: its seed comes from {spell('seeds')} (each seed is "
                                 "one run); leave seed out of the spec")


def runs_for(methods, seeds):
    """(method, seed) pairs: the unseeded methods once with seed None, then per seed every seeded
    method, so that the model scores of one seed run together and share its model."""
    return ([(m, None) for m in methods if not is_seeded(m)]
            + [(m, s) for s in seeds for m in methods if is_seeded(m)])


def method_scorer(method, scene, seed, models):
    """The scorer for ``method`` on ``scene`` with ``seed``, and the TrainedModel it scores
    with (None for scores without a model). What a score takes comes from the registry."""
    name, options = parse_method(method)
    cls = scorer_class(name)
    if "seed" in cls.options and seed is not None:
        options = {"seed": seed, **options}
    if not cls.needs_model:
        return make_scorer(name, **options), None
    # a training option at its default (the residual scores' whiten=False) is the shared
    # plain model, not a model of its own
    model = models.get(scene, seed, **{k: v for k, v in cls.model_training.items() if v})
    return make_scorer(name, model=model.path, **options), model


def run_one(scene, data, method, seed, models, peak=True):
    """Score one loaded scene with one method and seed; returns the run's record (``peak``:
    with the peak memory of a second, untimed pass)."""
    scorer, model = method_scorer(method, scene, seed, models)
    source = ArraySource(data.cube, valid=data.valid, profile=data.profile, name=scene.name)
    wall, cpu = time.perf_counter(), time.process_time()
    scores = fit_and_score(source, scorer.planned(()))["score"][0]   # the score alone
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mib = None
    if peak:        # a scorer of its own: nothing kept from the timed pass (loaded networks)
        fresh, _ = method_scorer(method, scene, seed, models)
        tracemalloc.start()
        try:
            fit_and_score(source, fresh.planned(()))
            peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    # a pixel the method leaves without a score ranks below every scored one: every method
    # is compared on the same pixels, a target it cannot score counting as missed
    scores = np.where(data.evaluated & np.isnan(scores), -np.inf, scores)
    report = evaluate(scores, data.truth, valid=data.evaluated,
                      name=f"{scene.name} {method}" + ("" if seed is None else f" seed {seed}"))
    return {"scene": scene.name, "method": method, "seed": seed, "auc": report["auc"],
            "log_auc": report["log_auc"], "lg_far": report["lg_far"], "pd": report["pd"],
            "seconds": wall, "cpu_seconds": cpu,
            "train_seconds": model.seconds if model else 0.0,
            "train_cpu_seconds": model.cpu_seconds if model else 0.0,
            "model": model.path.name if model else None,
            "model_reused": model.reused if model else None,
            "peak_mib": peak_mib, "pixels": int(data.evaluated.sum()),
            "bands": int(data.cube.shape[0]), "target_pixels": report["n_target_pixels"]}


@dataclass
class BenchmarkResult:
    runs: list                # one record per scene x method x seed (tables.RUN_COLUMNS)
    summary: list             # per scene x method, then MEAN rows per method (SUMMARY_COLUMNS)
    methods: list
    seeds: list
    skipped: list             # "<scene>: <why>" for scenes found but not benchmarked
    setup: dict = field(default_factory=dict)   # iterations, CPUs, load, total wall/CPU time
    reference: dict = field(default_factory=dict)   # scene -> {method: published AUC}
    selection: object = None  # selection.Selection when the held-out protocol ran

    @property
    def seeded(self):
        return [m for m in self.methods if is_seeded(m)]


def read_reference(path):
    """Published AUCs to set beside ours: a CSV with columns scene, method, auc, where scene is
    a scene name or file stem. Returns {scene: {method: auc}}."""
    header = ""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:    # Excel's BOM
            header = f.readline()
            rows = list(csv.DictReader(itertools.chain([header], f)))
        reference = {}
        for row in rows:
            reference.setdefault(row["scene"], {})[row["method"]] = float(row["auc"])
    except OSError as error:
        raise HsanomalyError(f"{path}: cannot read ({describe(error)})") from None
    except UnicodeDecodeError:      # Excel's "CSV" in a Windows code page
        raise HsanomalyError(f"{path}: not UTF-8 text; save it as \"CSV UTF-8\"") from None
    except (KeyError, TypeError, ValueError):
        why = (" (its columns are separated by ';', as Excel writes them where decimals take a "
               "comma: save it with commas and decimal points)" if ";" in header else "")
        raise HsanomalyError(f"{path}: not a CSV with columns scene, method, auc{why}") from None
    if not reference:                 # a text file or an empty one read as no rows at all
        raise HsanomalyError(f"{path}: not a CSV with columns scene, method, auc (no rows)")
    return reference


def _match_reference(reference, scenes):
    """``reference`` keyed by our scene names (a reference scene may be a name or file stem)."""
    matched, stems = {}, scenes_by_stem(scenes)
    reference = {nfc(key): value for key, value in reference.items()}
    for scene in scenes:
        for key in (scene.name, nfc(scene.path.stem)):
            if key in reference:
                if key == nfc(scene.path.stem) != scene.name and len(stems[key]) > 1:
                    raise ambiguous(f"{spell('reference')}: {key}", stems[key])
                matched[scene.name] = reference[key]
                break
    if reference and scenes and not matched:
        warn(f"{spell('reference')}: none of its scenes ({', '.join(sorted(reference)[:5])}...) is a "
             "scene of this benchmark (a scene name or file stem), so no reference table")
    return matched


def _distinct_images(scenes, count):
    """The first ``count`` of ``scenes`` that show distinct images (``same_images``): two
    datasets' copies of one image (HYDICE) among the first made a quick run test fewer."""
    from .scenes import same_images

    maps, firsts = {}, []
    for scene in scenes:
        if len(firsts) == count:
            break
        maps[scene.name] = brightness(scene.load())
        images = same_images(maps)
        firsts = [s for s in scenes if images.get(s.name) == s.name]
    return firsts


def run_benchmark(data_dir, methods, seeds=SEEDS, *, scenes=None, iterations=None,
                  models_dir=None, jobs=1, quick=False, reference=None, select=None,
                  ablation=None, log=None):
    """Run ``methods`` on the scenes under ``data_dir`` (``scenes``: names or stems, default all).

    iterations: generator iterations per GAN model (default hsanomaly.training's).
    models_dir: keep (and reuse) the trained GAN models there; default a temporary folder.
    jobs: benchmark this many scenes at a time in worker processes (one torch thread each).
    quick: the first seed only, the first QUICK_SCENES scenes unless ``scenes`` is given,
    and QUICK_ITERATIONS unless ``iterations`` is given.
    reference: a CSV of published AUCs (``read_reference``) to tabulate beside ours.
    select: the candidate methods of the held-out selection protocol (a subset of ``methods``;
    default none, no protocol); ablation: the methods without a GAN whose best is set beside
    the selected one (selection.py).
    log(message): called before each scene and after each run (e.g. click.echo); worker
    processes print their progress to stderr instead.
    """
    methods, seeds = list(dict.fromkeys(methods)), list(dict.fromkeys(seeds))
    if not methods:
        raise HsanomalyError("benchmark: no score given")
    if not seeds:
        raise HsanomalyError("benchmark: no seed given")
    bad = [seed for seed in seeds if not KINDS["seed"][0](seed)]
    if bad:
        raise HsanomalyError(f"{spell('seeds')}: {bad[0]!r} is not {KINDS['seed'][1]}")
    check_methods(methods)
    outside = [m for m in list(select or []) + list(ablation or []) if m not in methods]
    if outside:
        raise HsanomalyError(f"{spell('select')}/{spell('ablation')}: {', '.join(outside)} not "
                             f"among the scores run")
    if ablation and not select:
        raise HsanomalyError(f"{spell('ablation')}: its methods are set beside the "
                             f"{spell('select')} candidates' choice; give {spell('select')} too")
    both = [m for m in ablation or () if m in (select or ())]
    if both:        # left out of the ablation without a word, its baseline was weaker
        raise HsanomalyError(f"{spell('ablation')}: {', '.join(both)} also among the "
                             f"{spell('select')} candidates; a method is on one side of the "
                             "ablation only")
    published = read_reference(reference) if reference else {}
    chosen = select_scenes(find_scenes(data_dir), scenes)
    if quick:
        seeds = seeds[:1]
        chosen = chosen if scenes else _distinct_images(chosen, QUICK_SCENES)
        iterations = QUICK_ITERATIONS if iterations is None else iterations
    for scene in chosen:
        scene.check_truth()
    if select:                          # said before any scoring, as select_held_out would
        from .selection import check_scene_count

        check_scene_count(len(chosen))
    if models_dir and any(scorer_class(parse_method(m)[0]).needs_model for m in methods):
        models = ModelCache(models_dir, iterations)
        for scene in chosen:
            for seed in seeds:
                models.check(scene, seed)
    log = log or (lambda message: None)
    wall, cpu = time.perf_counter(), cpu_seconds()
    with private_temporary("hsanomaly-benchmark") as workdir:
        root = Path(models_dir or Path(workdir) / "models")
        tasks = [(scene, methods, seeds, root, iterations) for scene in chosen]
        outcomes = map_scenes(benchmark_scene, tasks, jobs, log)
    runs = [record for records, _, _ in outcomes for record in records]
    skipped = [why for _, why, _ in outcomes if why]
    if not runs:
        raise HsanomalyError(f"{data_dir}: no scene with target pixels to benchmark")
    needs_model = any(scorer_class(parse_method(m)[0]).needs_model for m in methods)
    setup = {"gan_iterations": ModelCache(root, iterations).iterations if needs_model else None,
             "jobs": jobs, "cpus": os.cpu_count(),
             "load_average_1min": (round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg")
                                   else None),                      # not on Windows
             "total_seconds": round(time.perf_counter() - wall, 1),
             "total_cpu_seconds": round(cpu_seconds() - cpu, 1),
             **models_used(runs)}
    selection = None
    if select:
        from .scenes import same_images
        from .selection import select_held_out

        datasets = {s.name: s.dataset for s in chosen}
        images = same_images({scene.name: image for scene, (_, _, image) in zip(chosen, outcomes)
                              if image is not None})
        try:
            selection = select_held_out(runs, list(select), datasets, ablation=ablation,
                                        images=images)
        except HsanomalyError as err:   # scenes skipped as they ran: keep the runs all the same
            warn(f"no held-out selection: {err}")
    return BenchmarkResult(runs, summarise(runs, methods), methods, seeds, skipped, setup,
                           _match_reference(published, chosen), selection)


def models_used(runs):
    """{"models_trained", "models_reused"}: how many of the models ``runs`` scored with were
    trained in this run, and how many were found in the cache (trained by an earlier run,
    whose training times the runs then carry)."""
    reused = {(r["scene"], r["model"]): r["model_reused"] for r in runs if r["model"]}
    return {"models_trained": sum(not r for r in reused.values()),
            "models_reused": sum(reused.values())}


def benchmark_scene(scene, methods, seeds, models_root, iterations, log=None):
    """(records of every method and seed on ``scene``, None, its ``brightness`` map, which
    tells scenes of one image), or ([], why it was skipped, None)."""
    log = log or (lambda message: None)
    data = scene.load()
    if data.truth is None or not data.truth[data.evaluated].any():
        where = "" if data.truth is None or not data.truth.any() else " where the scene has data"
        why = NO_TRUTH_VARIABLE if data.truth is None else \
            f"no target pixel in the ground truth{where}"
        log(f"{scene.name}: skipped, {why}")
        return [], f"{scene.name}: {why}", None
    if data.truth[data.evaluated].all():      # no background to rank the targets against
        log(f"{scene.name}: skipped, no background pixel in the ground truth")
        return [], f"{scene.name}: no background pixel in the ground truth", None
    log(f"{scene.name}: {data.cube.shape[0]} bands, {data.cube.shape[1]} x {data.cube.shape[2]} "
        "pixels")
    models = ModelCache(models_root, iterations, log)
    records = []
    for method, seed in runs_for(methods, seeds):
        record = run_one(scene, data, method, seed, models, peak=seed is None or seed == seeds[0])
        records.append(record)
        log(f"  {scene.name} {method:<7} seed {'-' if seed is None else seed}: "
            f"AUC {record['auc']:.4f} logAUC {record['log_auc']:.4f} Pd {record['pd']:.3f} "
            f"{record['seconds']:.2f} s ({record['cpu_seconds']:.2f} s CPU)"
            + ("" if record["peak_mib"] is None else f" {record['peak_mib']:.1f} MiB"))
    return records, None, brightness(data)
