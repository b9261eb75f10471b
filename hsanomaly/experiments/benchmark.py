"""Benchmark: every score on every scene with ground truth under a folder, through the same
path as ``detect`` (the tiled engine writing a heatmap GeoTIFF), evaluated with
``hsanomaly.evaluation``.

Scenes are .mat files with a cube and a truth variable, and rasters (.tif/.tiff) with a truth
raster beside them named ``<stem>-truth.tif`` or ``<stem>_truth.tif``. Seeds multiply only
the seeded scores (gmm and the model scores); deterministic scores run once. The model scores
(critic, recon, anogan, and resrx, context from hsanomaly.scorers.context) score with one GAN
trained per scene and seed (fully unsupervised, ``hsanomaly.training.train`` defaults), which
they share through a ``ModelCache``.

Per run it records AUC, logAUC, lgFAR, wall and CPU seconds of fit + score (``detect``), wall
and CPU seconds of training the run's model (0 for the baselines, which fit inside
``detect``; a model shared by several GAN scores is counted in each of their rows), and the
peak of memory traced by ``tracemalloc`` (Python and numpy allocations; not BLAS, torch or
onnxruntime internals) during scoring. CPU seconds are the process's, summed over its threads:
on a loaded machine they measure the work better than wall time.
"""

import csv
import importlib.util
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..engine import score_array
from ..errors import HsanomalyError
from ..evaluation import evaluate
from ..io import ArraySource, atomic_path, read_scene
from ..io.atomic import check_writable
from ..scorers import BASELINES, MODEL_SCORES, SCORES, make_scorer, scorer_class

SEEDED = frozenset({"gmm", *MODEL_SCORES})
TRUTH_SUFFIXES = ("-truth", "_truth")
RASTER_SUFFIXES = (".tif", ".tiff")
RUN_COLUMNS = ["scene", "method", "seed", "auc", "log_auc", "lg_far", "seconds", "cpu_seconds",
               "train_seconds", "train_cpu_seconds", "peak_mib", "pixels", "bands",
               "target_pixels"]
SUMMARY_COLUMNS = ["scene", "method", "seeds", "auc", "auc_std", "log_auc", "log_auc_std",
                   "lg_far", "seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds",
                   "peak_mib"]
MEAN = "mean"                 # the scene name of the rows averaged over scenes
QUICK_SCENES = 3              # --quick: the first scenes only
QUICK_ITERATIONS = 200        # --quick: generator iterations per GAN model


@dataclass(frozen=True)
class BenchmarkScene:
    name: str                 # path relative to the data folder, without suffix
    path: Path
    truth: Optional[Path]     # truth raster; None for .mat scenes (truth inside)

    def load(self):
        """The whole scene in memory (hsanomaly.io.Scene); truth is None when the .mat has none."""
        return read_scene(self.path, truth=self.truth)


def find_scenes(data_dir):
    """Every benchmark scene under ``data_dir`` (recursively), sorted by name."""
    root = Path(data_dir)
    if not root.is_dir():
        raise HsanomalyError(f"{data_dir}: not a directory")
    scenes = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        name = path.relative_to(root).with_suffix("").as_posix()
        if suffix == ".mat":
            scenes.append(BenchmarkScene(name, path, None))
        elif suffix in RASTER_SUFFIXES and not path.stem.lower().endswith(TRUTH_SUFFIXES):
            truths = [path.with_name(path.stem + mark + path.suffix) for mark in TRUTH_SUFFIXES]
            truth = next((t for t in truths if t.exists()), None)
            if truth is not None:
                scenes.append(BenchmarkScene(name, path, truth))
    if not scenes:
        raise HsanomalyError(f"{data_dir}: no scene with ground truth found (.mat with a truth "
                             "variable, or a GeoTIFF with <stem>-truth.tif beside it)")
    return scenes


def select_scenes(scenes, names):
    """The scenes whose name or file stem is in ``names`` (all when ``names`` is empty)."""
    if not names:
        return scenes
    known = {s.name: s for s in scenes} | {s.path.stem: s for s in scenes}
    missing = [n for n in names if n not in known]
    if missing:
        raise HsanomalyError(f"no scene named {', '.join(missing)}; found "
                             f"{', '.join(s.name for s in scenes)}")
    chosen = {known[n].name for n in names}
    return [s for s in scenes if s.name in chosen]


def check_methods(methods):
    """Refuse unknown scores, and model scores when torch (needed to train models) is missing."""
    for method in methods:
        if method not in SCORES:
            raise HsanomalyError(f"unknown score {method!r}; choose among {', '.join(SCORES)}")
        if method not in BASELINES and importlib.util.find_spec("torch") is None:
            raise HsanomalyError(f"score {method!r} needs a model trained per scene and seed, "
                                 "and training needs torch: pip install 'hsanomaly[train]'")


def runs_for(methods, seeds):
    """(method, seed) pairs: the unseeded methods once with seed None, then per seed every seeded
    method, so that the model scores of one seed run together and share its model and codebook."""
    return ([(m, None) for m in methods if m not in SEEDED]
            + [(m, s) for s in seeds for m in methods if m in SEEDED])


@dataclass(frozen=True)
class TrainedModel:
    path: Path                # the model bundle
    seconds: float            # wall time of its training
    cpu_seconds: float        # CPU time of its training (all threads)


class ModelCache:
    """GAN model bundles trained per scene, seed and training options, kept under ``root``.

    A bundle already in ``root`` (with its ``.timing.json``) is reused, so the GAN scores of
    one scene and seed share a model, and a later benchmark or report with the same
    ``root`` trains nothing again. Concurrent runs may share ``root``: a ``.lock`` file
    beside a bundle in training makes the others wait for it instead of training it twice.
    Training options are ``hsanomaly.training.train`` keywords.
    """

    def __init__(self, root, iterations=None, log=None):
        from ..training.settings import Settings

        self.root = Path(root)
        self.iterations = Settings.iterations if iterations is None else int(iterations)
        self.log = log or (lambda message: None)

    def path(self, scene, seed, iterations, options):
        extra = "".join(f"-{k}{_option_text(v)}" for k, v in sorted(options.items()))
        return self.root / scene.name.replace("/", "__") / f"seed{seed}-it{iterations}{extra}"

    def get(self, scene, seed, iterations=None, **options):
        """The TrainedModel for ``scene`` and ``seed`` (``iterations``: default the cache's),
        trained now unless already cached."""
        iterations = self.iterations if iterations is None else int(iterations)
        out = self.path(scene, seed, iterations, options)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(out.with_name(out.name + ".lock")):
            cached = self._cached(out)
            if cached is not None:
                return cached
            from ..training import train

            self.log(f"  training {out.relative_to(self.root)}")
            wall, cpu = time.perf_counter(), time.process_time()
            train([scene.path], out, iterations=iterations, seed=seed, progress=False, **options)
            spent = {"seconds": time.perf_counter() - wall,
                     "cpu_seconds": time.process_time() - cpu}
            with atomic_path(self._timing(out)) as tmp:
                Path(tmp).write_text(json.dumps(spent))
        return TrainedModel(out, **spent)

    @staticmethod
    def _timing(out):
        return out.with_name(out.name + ".timing.json")

    def _cached(self, out):
        timing = self._timing(out)
        if (out / "model.json").exists() and timing.exists():
            return TrainedModel(out, **json.loads(timing.read_text()))
        return None


LOCK_POLL_SECONDS = 2.0


class _exclusive:
    """Hold ``path`` as a lock file (our pid inside); wait while a live process holds it."""

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not _holder_alive(self.path):
                    self.path.unlink(missing_ok=True)
                    continue
                time.sleep(LOCK_POLL_SECONDS)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _holder_alive(lock):
    try:
        pid = int(lock.read_text() or 0)
    except (OSError, ValueError):
        return True            # being written right now
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _option_text(value):
    return Path(value).stem if isinstance(value, (str, Path)) else str(value)


def method_scorer(method, scene, seed, models):
    """The scorer for ``method`` on ``scene`` with ``seed``, and the TrainedModel it scores
    with (None for scores without a model). ``models``: a ModelCache."""
    cls = scorer_class(method)
    options = {"seed": seed} if "seed" in cls.options else {}
    if not cls.needs_model:
        return make_scorer(method, **options), None
    model = models.get(scene, seed)
    return make_scorer(method, model=model.path, **options), model


def run_one(scene, data, method, seed, workdir, models):
    """Score one loaded scene with one method and seed; returns the run's record."""
    scorer, model = method_scorer(method, scene, seed, models)
    source = ArraySource(data.cube, valid=data.valid, profile=data.profile, name=scene.name)
    wall, cpu = time.perf_counter(), time.process_time()
    tracemalloc.start()
    try:
        if scorer.fits_on_scene:
            scorer.fit(source)
        scores = score_array(source, scorer)["score"][0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = evaluate(scores, data.truth, valid=data.valid)
    return {"scene": scene.name, "method": method, "seed": seed, "auc": report["auc"],
            "log_auc": report["log_auc"], "lg_far": report["lg_far"],
            "seconds": wall, "cpu_seconds": cpu,
            "train_seconds": model.seconds if model else 0.0,
            "train_cpu_seconds": model.cpu_seconds if model else 0.0,
            "peak_mib": peak / 2**20, "pixels": int(data.valid.sum()),
            "bands": int(data.cube.shape[0]), "target_pixels": report["n_target_pixels"]}


@dataclass
class BenchmarkResult:
    runs: list                # one record per scene x method x seed (RUN_COLUMNS)
    summary: list             # per scene x method, then MEAN rows per method (SUMMARY_COLUMNS)
    methods: list
    seeds: list
    skipped: list             # "<scene>: <why>" for scenes found but not benchmarked
    setup: dict = field(default_factory=dict)   # iterations, CPUs, load, total wall/CPU time
    reference: dict = field(default_factory=dict)   # scene -> {method: published AUC}


def read_reference(path):
    """Published AUCs to set beside ours: a CSV with columns scene, method, auc, where scene is
    a scene name or file stem. Returns {scene: {method: auc}}."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        reference = {}
        for row in rows:
            reference.setdefault(row["scene"], {})[row["method"]] = float(row["auc"])
    except OSError as error:
        raise HsanomalyError(f"{path}: cannot read ({error.strerror})") from None
    except (KeyError, TypeError, ValueError):
        raise HsanomalyError(f"{path}: not a CSV with columns scene, method, auc") from None
    return reference


def _match_reference(reference, scenes):
    """``reference`` keyed by our scene names (a reference scene may be a name or file stem)."""
    matched = {}
    for scene in scenes:
        for key in (scene.name, scene.path.stem):
            if key in reference:
                matched[scene.name] = reference[key]
                break
    return matched


def run_benchmark(data_dir, methods, seeds=(0, 1, 2), *, scenes=None, iterations=None,
                  models_dir=None, jobs=1, quick=False, reference=None, log=None):
    """Run ``methods`` on the scenes under ``data_dir`` (``scenes``: names or stems, default all).

    iterations: generator iterations per GAN model (default hsanomaly.training's).
    models_dir: keep (and reuse) the trained GAN models there; default a temporary folder.
    jobs: benchmark this many scenes at a time in worker processes (one torch thread each).
    quick: the first seed only, the first QUICK_SCENES scenes unless ``scenes`` is given,
    and QUICK_ITERATIONS unless ``iterations`` is given.
    reference: a CSV of published AUCs (``read_reference``) to tabulate beside ours.
    log(message): called before each scene and after each run (e.g. click.echo); worker
    processes print their progress to stderr instead.
    """
    methods, seeds = list(methods), list(seeds)
    if not methods:
        raise HsanomalyError("benchmark: no score given")
    if not seeds:
        raise HsanomalyError("benchmark: no seed given")
    check_methods(methods)
    published = read_reference(reference) if reference else {}
    chosen = select_scenes(find_scenes(data_dir), scenes)
    if quick:
        seeds = seeds[:1]
        chosen = chosen if scenes else chosen[:QUICK_SCENES]
        iterations = QUICK_ITERATIONS if iterations is None else iterations
    log = log or (lambda message: None)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="hsanomaly-benchmark-") as workdir:
        root = Path(models_dir or Path(workdir) / "models")
        jobs_for = [(scene, methods, seeds, root, iterations) for scene in chosen]
        outcomes = map_scenes(benchmark_scene, jobs_for, jobs, log)
    runs = [record for records, _ in outcomes for record in records]
    skipped = [why for _, why in outcomes if why]
    if not runs:
        raise HsanomalyError(f"{data_dir}: no scene with target pixels to benchmark")
    setup = {"gan_iterations": ModelCache(root, iterations).iterations
             if set(MODEL_SCORES) & set(methods) else None,
             "jobs": jobs, "cpus": os.cpu_count(),
             "load_average_1min": round(os.getloadavg()[0], 1),
             "total_seconds": round(time.perf_counter() - wall, 1),
             "total_cpu_seconds": round(_cpu_seconds() - cpu, 1)}
    return BenchmarkResult(runs, summarise(runs, methods), methods, seeds, skipped, setup,
                           _match_reference(published, chosen))


def benchmark_scene(scene, methods, seeds, models_root, iterations, log=None):
    """(records of every method and seed on ``scene``, None), or ([], why it was skipped)."""
    log = log or (lambda message: None)
    data = scene.load()
    if data.truth is None or not data.truth.any():
        log(f"{scene.name}: skipped, no target pixel in the ground truth")
        return [], f"{scene.name}: no target pixel in the ground truth"
    log(f"{scene.name}: {data.cube.shape[0]} bands, {data.cube.shape[1]} x {data.cube.shape[2]} "
        "pixels")
    models = ModelCache(models_root, iterations, log)
    records = []
    with tempfile.TemporaryDirectory(prefix="hsanomaly-benchmark-") as workdir:
        for method, seed in runs_for(methods, seeds):
            record = run_one(scene, data, method, seed, workdir, models)
            records.append(record)
            log(f"  {scene.name} {method:<7} seed {'-' if seed is None else seed}: "
                f"AUC {record['auc']:.4f} logAUC {record['log_auc']:.4f} "
                f"{record['seconds']:.2f} s ({record['cpu_seconds']:.2f} s CPU) "
                f"{record['peak_mib']:.1f} MiB")
    return records, None


def map_scenes(fn, tasks, jobs, log):
    """``fn(*task, log=log)`` for every task: here, or in up to ``jobs`` spawned worker processes
    (one torch thread each, logging to stderr) when ``jobs > 1``."""
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
            return list(pool.map(_run_in_worker, [(fn, task) for task in tasks]))
    return [fn(*task, log=log) for task in tasks]


def _run_in_worker(fn_task):
    import sys

    fn, task = fn_task
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
    return fn(*task, log=lambda message: print(message, file=sys.stderr, flush=True))


def _cpu_seconds():
    """CPU seconds of this process and of its finished worker processes."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _mean(values):
    return statistics.fmean(values)


def _std(values):
    """Sample standard deviation; 0 for a single value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs, methods):
    """Per scene x method: mean and std over seeds. Then per method (scene MEAN): the mean over
    scenes, with the std over seeds of the per-seed means over scenes (the spread a rerun
    with another seed would show); seconds are means, peak memory the maximum."""
    scenes = list(dict.fromkeys(r["scene"] for r in runs))
    rows = []
    for scene in scenes:
        for method in methods:
            group = [r for r in runs if r["scene"] == scene and r["method"] == method]
            rows.append(_summary_row(scene, method, group, [[r] for r in group]))
    for method in methods:
        group = [r for r in runs if r["method"] == method]
        by_seed = {}
        for r in group:
            by_seed.setdefault(r["seed"], []).append(r)
        rows.append(_summary_row(MEAN, method, group, list(by_seed.values())))
    return rows


TIME_KEYS = ("seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds")


def _summary_row(scene, method, group, per_seed):
    """``per_seed``: the runs of each seed; a seed's value is the mean over its runs."""
    def seed_values(key):
        return [_mean([r[key] for r in runs]) for runs in per_seed]

    auc, log_auc = seed_values("auc"), seed_values("log_auc")
    return {"scene": scene, "method": method, "seeds": len(per_seed),
            "auc": _mean(auc), "auc_std": _std(auc),
            "log_auc": _mean(log_auc), "log_auc_std": _std(log_auc),
            "lg_far": _mean([r["lg_far"] for r in group]),
            **{key: _mean([r[key] for r in group]) for key in TIME_KEYS},
            "peak_mib": max(r["peak_mib"] for r in group)}


# --- tables and files --------------------------------------------------------------------------

def _cell(row, key):
    value = f"{row[key]:.4f}"
    return value + (f" ± {row[key + '_std']:.4f}" if row["seeds"] > 1 else "")


def _tables(result):
    """(title, header, rows) for the AUC, logAUC and cost tables."""
    by_key = {(r["scene"], r["method"]): r for r in result.summary}
    scenes = list(dict.fromkeys(r["scene"] for r in result.summary))
    tables = []
    for key, title in (("auc", "ROC AUC"), ("log_auc", "logAUC")):
        rows = [[scene] + [_cell(by_key[scene, m], key) for m in result.methods] for scene in scenes]
        tables.append((f"{title} (mean ± std over seeds)", ["scene"] + result.methods, rows))
    cost = [[m] + [f"{by_key[MEAN, m][key]:.2f}" for key in TIME_KEYS]
            + [f"{by_key[MEAN, m]['peak_mib']:.1f}"] for m in result.methods]
    tables.append(("Cost per run (mean over scenes; CPU = all threads; peak = tracemalloc maximum)",
                   ["method", "fit+score s", "fit+score CPU s", "train s", "train CPU s",
                    "peak MiB"], cost))
    if result.reference:
        tables.append(_reference_table(result, by_key, scenes))
    return tables


def _reference_table(result, by_key, scenes):
    """Per scene: each published AUC beside ours, the better published one, and our best method
    (by mean AUC over scenes) with its margin over that."""
    published = sorted({m for aucs in result.reference.values() for m in aucs})
    best = max(result.methods, key=lambda m: by_key[MEAN, m]["auc"])
    header = ["scene"]
    for m in published:
        header += [f"{m} reference"] + ([f"{m} here"] if m in result.methods else [])
    header += ["better reference", f"{best} here", "margin"]
    rows, bests, ours = [], [], []
    for scene in scenes:
        if scene == MEAN:
            continue
        ref = result.reference.get(scene, {})
        row = [scene]
        for m in published:
            row.append(f"{ref[m]:.4f}" if m in ref else "-")
            if m in result.methods:
                row.append(f"{by_key[scene, m]['auc']:.4f}")
        top = max(ref.values()) if ref else None
        mine = by_key[scene, best]["auc"]
        row += ["-" if top is None else f"{top:.4f}", f"{mine:.4f}",
                "-" if top is None else f"{mine - top:+.4f}"]
        rows.append(row)
        if top is not None:
            bests.append(top)
            ours.append(mine)
    if bests:
        mean_row = [MEAN]
        for m in published:
            values = [result.reference[s][m] for s in scenes if m in result.reference.get(s, {})]
            mean_row.append(f"{_mean(values):.4f}" if len(values) == len(bests) else "-")
            if m in result.methods:
                mean_row.append(f"{by_key[MEAN, m]['auc']:.4f}")
        mean_row += [f"{_mean(bests):.4f}", f"{_mean(ours):.4f}",
                     f"{_mean(ours) - _mean(bests):+.4f}"]
        rows.append(mean_row)
    return ("Against the published reference AUCs (ours: mean over seeds)", header, rows)


def format_table(result):
    """The result tables as aligned plain text."""
    blocks = []
    for title, header, rows in _tables(result):
        widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_markdown(result):
    """The result tables as Markdown, with what was run."""
    seeded = [m for m in result.methods if m in SEEDED]
    parts = ["# hsanomaly benchmark", "",
             f"Scores: {', '.join(result.methods)}. Seeds {', '.join(map(str, result.seeds))} "
             f"for the seeded scores ({', '.join(seeded) or 'none here'}); the others run once. "
             f"Rows named `{MEAN}` average over scenes; their spread is the std over seeds of "
             "the per-seed mean."]
    setup = result.setup
    if setup:
        if setup.get("gan_iterations"):
            parts += ["", f"GAN scores: one model per scene and seed, {setup['gan_iterations']} "
                          "generator iterations, fully unsupervised, shared by the GAN scores."]
        parts += ["", f"Ran in {setup['total_seconds']:.0f} s wall, "
                      f"{setup['total_cpu_seconds']:.0f} s CPU on {setup['cpus']} CPUs (1-minute load average "
                      f"{setup['load_average_1min']} at the end: wall times on a shared machine "
                      "overstate the cost; CPU times are the better measure)."]
    for title, header, rows in _tables(result):
        parts += ["", f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    if result.skipped:
        parts += ["", "Skipped: " + "; ".join(result.skipped)]
    return "\n".join(parts) + "\n"


def _write_csv(path, rows, columns):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_results(result, out_dir):
    """results.csv (one row per run), summary.csv, results.json and results.md in ``out_dir``
    (created if its parent exists), each written atomically; returns their paths."""
    out = Path(out_dir)
    check_writable(out)
    out.mkdir(exist_ok=True)
    paths = {name: out / name for name in ("results.csv", "summary.csv", "results.json",
                                           "results.md")}
    _write_csv(paths["results.csv"], result.runs, RUN_COLUMNS)
    _write_csv(paths["summary.csv"], result.summary, SUMMARY_COLUMNS)
    document = {"methods": result.methods, "seeds": result.seeds, "skipped": result.skipped,
                "setup": result.setup, "reference": result.reference,
                "memory": "tracemalloc peak (Python and numpy allocations), MiB",
                "runs": result.runs, "summary": result.summary}
    with atomic_path(paths["results.json"]) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1) + "\n")
    with atomic_path(paths["results.md"]) as tmp:
        Path(tmp).write_text(format_markdown(result))
    return paths
