"""Benchmark: every score on every scene with ground truth under a folder, through the same
path as ``detect`` (the tiled engine writing a heatmap GeoTIFF), evaluated with
``hsanomaly.evaluate``.

Scenes are .mat files with a cube and a truth variable, and rasters (.tif/.tiff) with a truth
raster beside them named ``<stem>-truth.tif`` or ``<stem>_truth.tif``. Seeds multiply only
the seeded scores (gmm, and the GAN scores once they are benchmarked); deterministic scores
run once. Per run it records AUC, logAUC, lgFAR, seconds of fit + score (``detect``'s wall
time), seconds of training (0 for the baselines, which fit inside ``detect``), and the peak
of memory traced by ``tracemalloc`` (Python and numpy allocations; not BLAS or onnxruntime
internals) during the run.
"""

import csv
import json
import statistics
import tempfile
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .engine import detect
from .errors import HsanomalyError
from .evaluate import evaluate, read_heatmap
from .io import ArraySource, atomic_path, read_scene
from .io.atomic import check_writable
from .scorers import BASELINES, GAN_SCORES, SCORES, make_scorer

SEEDED = frozenset({"gmm", *GAN_SCORES})
TRUTH_SUFFIXES = ("-truth", "_truth")
RASTER_SUFFIXES = (".tif", ".tiff")
RUN_COLUMNS = ["scene", "method", "seed", "auc", "log_auc", "lg_far", "seconds",
               "train_seconds", "peak_mib", "pixels", "bands", "target_pixels"]
SUMMARY_COLUMNS = ["scene", "method", "seeds", "auc", "auc_std", "log_auc", "log_auc_std",
                   "lg_far", "seconds", "train_seconds", "peak_mib"]
MEAN = "mean"                 # the scene name of the rows averaged over scenes


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


def check_methods(methods):
    """Refuse unknown scores, and GAN scores until the benchmark can train their models."""
    for method in methods:
        if method not in SCORES:
            raise HsanomalyError(f"unknown score {method!r}; choose among {', '.join(SCORES)}")
        if method not in BASELINES:
            raise HsanomalyError(f"score {method!r}: the benchmark runs {', '.join(BASELINES)} "
                                 "so far; GAN scores need a model trained per scene and seed")


def runs_for(methods, seeds):
    """(method, seed) pairs: seeded methods once per seed, the others once with seed None."""
    return [(m, s) for m in methods for s in (seeds if m in SEEDED else [None])]


def method_scorer(method, scene, seed, workdir):
    """The scorer for ``method`` on ``scene`` with ``seed``, and the seconds spent training it.

    This is where a per-scene, per-seed model is made before detection: the GAN scores
    will train a bundle here (into ``workdir``) and return its scorer with the training
    time. Baselines fit inside ``detect``, so they train for 0 s.
    """
    options = {"seed": seed} if method in SEEDED else {}
    return make_scorer(method, **options), 0.0


def run_one(scene, data, method, seed, workdir):
    """Score one loaded scene with one method and seed; returns the run's record."""
    scorer, train_seconds = method_scorer(method, scene, seed, workdir)
    source = ArraySource(data.cube, valid=data.valid, profile=data.profile, name=scene.name)
    heatmap = Path(workdir) / "heatmap.tif"
    tracemalloc.start()
    try:
        result = detect(source, heatmap, scorer, fit=True, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # .mat heatmaps carry no georeferencing
        scores = read_heatmap(heatmap)
    report = evaluate(scores, data.truth, valid=data.valid)
    return {"scene": scene.name, "method": method, "seed": seed, "auc": report["auc"],
            "log_auc": report["log_auc"], "lg_far": report["lg_far"],
            "seconds": result.seconds, "train_seconds": train_seconds,
            "peak_mib": peak / 2**20, "pixels": int(data.valid.sum()),
            "bands": int(data.cube.shape[0]), "target_pixels": report["n_target_pixels"]}


@dataclass
class BenchmarkResult:
    runs: list                # one record per scene x method x seed (RUN_COLUMNS)
    summary: list             # per scene x method, then MEAN rows per method (SUMMARY_COLUMNS)
    methods: list
    seeds: list
    skipped: list             # "<scene>: <why>" for scenes found but not benchmarked


def run_benchmark(data_dir, methods, seeds=(0, 1, 2), *, quick=False, log=None):
    """Run ``methods`` on every scene under ``data_dir``; ``quick`` keeps the first seed only.

    log(message): called before each scene and after each run (e.g. click.echo).
    """
    methods, seeds = list(methods), list(seeds)
    if not methods:
        raise HsanomalyError("benchmark: no score given")
    if not seeds:
        raise HsanomalyError("benchmark: no seed given")
    check_methods(methods)
    if quick:
        seeds = seeds[:1]
    log = log or (lambda message: None)
    runs, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="hsanomaly-benchmark-") as workdir:
        for scene in find_scenes(data_dir):
            data = scene.load()
            if data.truth is None or not data.truth.any():
                skipped.append(f"{scene.name}: no target pixel in the ground truth")
                log(f"{scene.name}: skipped, no target pixel in the ground truth")
                continue
            log(f"{scene.name}: {data.cube.shape[0]} bands, "
                f"{data.cube.shape[1]} x {data.cube.shape[2]} pixels")
            for method, seed in runs_for(methods, seeds):
                record = run_one(scene, data, method, seed, workdir)
                runs.append(record)
                log(f"  {method:<5} seed {'-' if seed is None else seed}: AUC {record['auc']:.4f} "
                    f"logAUC {record['log_auc']:.4f} {record['seconds']:.2f} s "
                    f"{record['peak_mib']:.1f} MiB")
    if not runs:
        raise HsanomalyError(f"{data_dir}: no scene with target pixels to benchmark")
    return BenchmarkResult(runs, summarise(runs, methods), methods, seeds, skipped)


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


def _summary_row(scene, method, group, per_seed):
    """``per_seed``: the runs of each seed; a seed's value is the mean over its runs."""
    def seed_values(key):
        return [_mean([r[key] for r in runs]) for runs in per_seed]

    auc, log_auc = seed_values("auc"), seed_values("log_auc")
    return {"scene": scene, "method": method, "seeds": len(per_seed),
            "auc": _mean(auc), "auc_std": _std(auc),
            "log_auc": _mean(log_auc), "log_auc_std": _std(log_auc),
            "lg_far": _mean([r["lg_far"] for r in group]),
            "seconds": _mean([r["seconds"] for r in group]),
            "train_seconds": _mean([r["train_seconds"] for r in group]),
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
    cost = [[m, f"{by_key[MEAN, m]['seconds']:.2f}", f"{by_key[MEAN, m]['train_seconds']:.2f}",
             f"{by_key[MEAN, m]['peak_mib']:.1f}"] for m in result.methods]
    tables.append(("Cost per run (mean over scenes; peak = tracemalloc maximum)",
                   ["method", "fit+score s", "train s", "peak MiB"], cost))
    return tables


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
                "memory": "tracemalloc peak (Python and numpy allocations), MiB",
                "runs": result.runs, "summary": result.summary}
    with atomic_path(paths["results.json"]) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1) + "\n")
    with atomic_path(paths["results.md"]) as tmp:
        Path(tmp).write_text(format_markdown(result))
    return paths
