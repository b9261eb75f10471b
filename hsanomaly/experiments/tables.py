"""Statistics over runs and the benchmark's tables (plain text, Markdown, CSV/JSON files)."""

import csv
import json
import statistics
from functools import partial
from pathlib import Path

from .. import defaults
from ..io.atomic import check_writable, non_empty, staged
from ..io.ownership import has_json_keys, starts_with
from ..io.paths import (DIRECTORY, check_path_kind, check_paths, check_replaceable_file,
                        check_report_folder)
from ..spelling import counted, spell

TITLE = "# hsanomaly benchmark"   # the Markdown's first line, which also marks it as ours
MEAN = "mean"                 # the scene name of the rows averaged over scenes
RUN_COLUMNS = ["scene", "method", "seed", "auc", "log_auc", "lg_far", "pd", "seconds",
               "cpu_seconds",
               "train_seconds", "train_cpu_seconds", "model", "model_reused", "peak_mib",
               "pixels", "bands", "target_pixels"]
SUMMARY_COLUMNS = ["scene", "method", "seeds", "auc", "auc_std", "log_auc", "log_auc_std",
                   "pd", "pd_std", "lg_far", "seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds",
                   "peak_mib"]
TIME_KEYS = ("seconds", "cpu_seconds", "train_seconds", "train_cpu_seconds")


def mean(values):
    return statistics.fmean(values)


def signed(difference):
    """A difference to 4 decimals with its sign; one that rounds to nothing is +0.0000."""
    return f"{round(difference, 4) + 0.0:+.4f}"


def std(values):
    """Sample standard deviation; 0 for a single value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs, methods):
    """Per scene x method: mean and std over seeds. Then per method (scene MEAN): the mean over
    scenes, with the std over seeds of the per-seed means over scenes (the spread a rerun
    with another seed would show); seconds are means, peak memory the maximum (of the runs
    that measured it)."""
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
        return [mean([r[key] for r in runs]) for runs in per_seed]

    auc, log_auc, pd = seed_values("auc"), seed_values("log_auc"), seed_values("pd")
    return {"scene": scene, "method": method, "seeds": len(per_seed),
            "auc": mean(auc), "auc_std": std(auc),
            "log_auc": mean(log_auc), "log_auc_std": std(log_auc),
            "pd": mean(pd), "pd_std": std(pd),
            "lg_far": mean([r["lg_far"] for r in group]),
            **{key: mean([r[key] for r in group]) for key in TIME_KEYS},
            "peak_mib": max((r["peak_mib"] for r in group if r["peak_mib"] is not None),
                            default=None)}


def _cell(row, key):
    value = f"{row[key]:.4f}"
    return value + (f" ± {row[key + '_std']:.4f}" if row["seeds"] > 1 else "")


def tables(result):
    """(title, header, rows) for the held-out protocol (when run), AUC, logAUC, cost and
    reference tables."""
    by_key = {(r["scene"], r["method"]): r for r in result.summary}
    scenes = list(dict.fromkeys(r["scene"] for r in result.summary))
    out = list(result.selection.tables()) if result.selection else []
    for key, title in (("auc", "ROC AUC"), ("log_auc", "logAUC"),
                       ("pd", f"Pd: the share of target pixels found at a false-alarm rate of "
                              f"{defaults.PD_FAR:g}")):
        rows = [[scene] + [_cell(by_key[scene, m], key) for m in result.methods] for scene in scenes]
        out.append((f"{title} (mean ± std over seeds)", ["scene"] + result.methods, rows))
    cost = [[m] + [f"{by_key[MEAN, m][key]:.2f}" for key in TIME_KEYS]
            + [_peak(by_key[MEAN, m]["peak_mib"])] for m in result.methods]
    out.append(("Cost per run (mean over scenes; CPU = all threads; peak = tracemalloc maximum, "
                "in an untimed pass of the first seed)",
                ["method", "fit+score s", "fit+score CPU s", "train s", "train CPU s",
                 "peak MiB"], cost))
    if result.reference:
        out.append(_reference_table(result, by_key, scenes))
    return out


def _peak(mib):
    return "-" if mib is None else f"{mib:.1f}"


def _ours(result, by_key, scenes):
    """Per scene, the AUC set beside the published ones, and its column's name: the
    configuration chosen without the scene (leave-one-scene-out) when the held-out protocol
    ran, else the method with the best mean AUC (chosen in sample)."""
    if result.selection and result.selection.protocols[0].possible:
        protocol = result.selection.protocols[0]
        return protocol.held_out, f"held out ({protocol.name}) here"
    best = max(result.methods, key=lambda m: by_key[MEAN, m]["auc"])
    return {s: by_key[s, best]["auc"] for s in scenes}, f"{best} here"


def _reference_table(result, by_key, scenes):
    """Per scene: each published AUC beside ours, the better published one, and ours (see
    ``_ours``) with its margin over that; then the means, over every scene with a published
    figure and over each smaller set of scenes that a published method covers."""
    reference = result.reference
    published = sorted({m for aucs in reference.values() for m in aucs})
    scenes = [s for s in scenes if s != MEAN]
    ours, label = _ours(result, by_key, scenes)
    header = ["scene"]
    for m in published:
        header += [f"{m} reference"] + ([f"{m} here"] if m in result.methods else [])
    header += ["better reference", label, "margin"]

    def row(name, members):
        """``members``: the scenes averaged (one scene: that scene's row)."""
        cells = [name]
        for m in published:
            covered = all(m in reference.get(s, {}) for s in members)
            cells.append(f"{mean([reference[s][m] for s in members]):.4f}" if covered else "-")
            if m in result.methods:
                cells.append(f"{mean([by_key[s, m]['auc'] for s in members]):.4f}")
        tops = [max(reference[s].values()) for s in members if reference.get(s)]
        mine = [ours[s] for s in members if s in ours]
        top = mean(tops) if len(tops) == len(members) else None
        mine = mean(mine) if len(mine) == len(members) else None
        cells += ["-" if top is None else f"{top:.4f}", "-" if mine is None else f"{mine:.4f}",
                  "-" if None in (top, mine) else signed(mine - top)]
        return cells

    rows = [row(s, [s]) for s in scenes]
    with_figures = [s for s in scenes if reference.get(s)]
    if with_figures:
        rows.append(row(MEAN, with_figures))
        coverage = {}
        for m in published:
            members = tuple(s for s in with_figures if m in reference.get(s, {}))
            if 1 < len(members) < len(with_figures):
                coverage.setdefault(members, []).append(m)
        for members, methods in sorted(coverage.items(), key=lambda c: -len(c[0])):
            rows.append(row(f"{MEAN}, the {len(members)} scenes with a {' / '.join(methods)} "
                            "figure", list(members)))
    return ("Against the published reference AUCs (ours: mean over seeds)", header, rows)


def format_table(result):
    """The result tables as aligned plain text."""
    blocks = []
    for title, header, rows in tables(result):
        widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_markdown(result):
    """The result tables as Markdown, with what was run."""
    seeded = [m for m in result.methods if m in result.seeded]
    parts = [TITLE, "",
             f"Scores: {', '.join(result.methods)}. Seeds {', '.join(map(str, result.seeds))} "
             f"for the seeded scores ({', '.join(seeded) or 'none here'}); the others run once. "
             f"Rows named `{MEAN}` average over scenes; their spread is the std over seeds of "
             "the per-seed mean."]
    setup = result.setup
    if setup:
        if setup.get("gan_iterations"):
            parts += ["", f"GAN scores: one model per scene and seed for each kind of model the "
                          f"scores ask for (plain for the residual and context scores, whitened "
                          f"for recon and anogan), {setup['gan_iterations']} generator "
                          "iterations, fully unsupervised, shared by the scores that ask for it."]
        parts += ["", f"Ran in {setup['total_seconds']:.0f} s wall, "
                      f"{setup['total_cpu_seconds']:.0f} s CPU on {setup['cpus']} CPUs (1-minute "
                      f"load average {setup['load_average_1min']} at the end: wall times on a "
                      "shared machine overstate the cost; CPU times are the better measure)."]
        if setup.get("models_reused"):
            parts[-1] += (f" {counted(setup['models_reused'], 'model')} of "
                          f"{setup['models_reused'] + setup['models_trained']} came from the "
                          "model cache: their training is not in these totals, and the training "
                          "columns give the times of the run that trained them.")
    if result.selection:
        parts += ["", result.selection.explanation()]
    for title, header, rows in tables(result):
        parts += ["", f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |"
                  for row in rows]       # a "|" in a scene's name is no column's end
    if result.skipped:
        parts += ["", "Skipped: " + "; ".join(result.skipped)]
    return "\n".join(parts) + "\n"


def _write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _result_files(out_dir):
    """{name: (path, is_own, kind)} of the files ``write_results`` writes."""
    out = Path(out_dir)
    table = partial(starts_with, first_line="scene,method,")
    return {"results.csv": (out / "results.csv", table, "a benchmark table"),
            "summary.csv": (out / "summary.csv", table, "a benchmark table"),
            "results.json": (out / "results.json",
                             partial(has_json_keys, keys=("methods", "runs", "summary")),
                             "a benchmark's results"),
            "results.md": (out / "results.md", partial(starts_with, first_line=TITLE),
                           "a benchmark's tables")}


def check_results(out_dir, markdown=None, reference=None, overwrite=False):
    """Before a benchmark runs: ``out_dir`` and ``markdown`` can be written without replacing
    ``reference`` or a file someone else wrote (unless ``overwrite``), so hours of work never
    end in a refusal, nor in a user's file replaced."""
    out = spell("out", python="out_dir")
    for label, path in ((out, out_dir), (spell("markdown"), markdown)):
        if path is not None:
            check_path_kind(path, label)
    check_paths([(spell("reference"), reference)],
                [(out, out_dir, DIRECTORY), (spell("markdown"), markdown)], writable=False)
    check_report_folder(out_dir, out, _result_files(out_dir).values(), overwrite)
    if markdown:
        check_writable(markdown, directory=False)
        if not overwrite:
            check_replaceable_file(markdown, spell("markdown"),
                                   partial(starts_with, first_line=TITLE), "a benchmark's tables")


def _same_file(a, b):
    return Path(a).resolve() == Path(b).resolve()


def write_results(result, out_dir, overwrite=False, markdown=None):
    """results.csv (one row per run), summary.csv, results.json and results.md in ``out_dir``
    (created with its parents), and the tables again at ``markdown`` if given, replaced
    together (a failure leaves every one as it was); returns their paths. A file there that
    an earlier benchmark did not write is refused unless ``overwrite``."""
    check_results(out_dir, markdown, overwrite=overwrite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: path for name, (path, _, _) in _result_files(out).items()}
    document = {"methods": result.methods, "seeds": result.seeds, "skipped": result.skipped,
                "setup": result.setup, "reference": result.reference,
                "memory": "tracemalloc peak (Python and numpy allocations), MiB",
                "selection": result.selection.to_dict() if result.selection else None,
                "runs": result.runs, "summary": result.summary}
    with staged() as stage:
        _write_csv(stage.path(paths["results.csv"], non_empty), result.runs, RUN_COLUMNS)
        _write_csv(stage.path(paths["summary.csv"], non_empty), result.summary, SUMMARY_COLUMNS)
        stage.path(paths["results.json"], non_empty).write_text(json.dumps(document, indent=1)
                                                                + "\n", encoding="utf-8")
        extra = [Path(markdown)] if markdown and not _same_file(markdown, paths["results.md"]) else []
        for path in [paths["results.md"]] + extra:
            stage.path(path, non_empty).write_text(format_markdown(result), encoding="utf-8")
    return paths
