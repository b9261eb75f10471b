"""The benchmark harness on a tiny synthetic scene set (hsanomaly.experiments, cli/benchmark.py)."""

import csv
import importlib.util
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsanomaly.experiments.benchmark import (QUICK_ITERATIONS, BenchmarkResult, parse_method,
                                             run_benchmark, runs_for)
from hsanomaly.experiments.cache import ModelCache
from hsanomaly.experiments.scenes import find_scenes, select_scenes
from hsanomaly.experiments.selection import select_held_out
from hsanomaly.experiments.tables import (MEAN, RUN_COLUMNS, SUMMARY_COLUMNS, TIME_KEYS,
                                         format_markdown, summarise, tables, write_results)
from hsanomaly.cli.benchmark import benchmark
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.io import read_scene
from hsanomaly.training import checkpoint_dir

from synthetic import SHARED_DATA, synthetic_cube, write_mat, write_raster

REFERENCE = Path(__file__).parents[1] / "benchmarks" / "reference-shared-data.csv"


@pytest.fixture
def scene_dir(tmp_path):
    """Two scenes: a .mat (cube as rows x cols x bands, truth 'map') and a GeoTIFF with a
    truth raster beside it; plus a GeoTIFF without truth, which is not a scene."""
    root = tmp_path / "data"
    (root / "mat").mkdir(parents=True)
    (root / "tif").mkdir()
    cube, truth = synthetic_cube(rows=30, cols=30, targets=((5, 5), (20, 22)), seed=1)
    write_mat(root / "mat" / "alpha.mat", cube, truth)
    cube, truth = synthetic_cube(rows=24, cols=36, targets=((4, 30), (18, 8)), seed=2)
    write_raster(root / "tif" / "beta.tif", cube)
    write_raster(root / "tif" / "beta-truth.tif", truth[None].astype(np.float32))
    write_raster(root / "tif" / "gamma.tif", cube)
    return root


def test_finds_mat_and_geotiff_scenes(scene_dir):
    scenes = find_scenes(scene_dir)
    assert [s.name for s in scenes] == ["mat/alpha", "tif/beta"]
    assert scenes[0].truth is None
    assert scenes[1].truth == scene_dir / "tif" / "beta-truth.tif"


def test_a_scene_whose_name_is_not_utf8_is_left_out_and_said(scene_dir):
    """Its results could not be written: a traceback after every run, nothing in --out."""
    import os

    latin = os.fsencode(str(scene_dir / "tif")) + b"/b\xe8ta.tif"
    os.link(scene_dir / "tif" / "beta.tif", latin)
    os.link(scene_dir / "tif" / "beta-truth.tif", latin[:-4] + b"-truth.tif")
    with pytest.warns(HsanomalyWarning, match=r"b\\xe8ta.tif: the name of a scene is not valid "
                                              r"UTF-8.*; it is left out of the benchmark"):
        assert [s.name for s in find_scenes(scene_dir)] == ["mat/alpha", "tif/beta"]


def test_underscore_truth_names_are_found_too(tmp_path):
    cube, truth = synthetic_cube(rows=20, cols=20, targets=((5, 5),))
    write_raster(tmp_path / "delta.tiff", cube)
    write_raster(tmp_path / "delta_truth.tiff", truth[None].astype(np.float32))
    assert [(s.name, s.truth.name) for s in find_scenes(tmp_path)] == [("delta", "delta_truth.tiff")]


def test_no_scene_or_no_folder_is_refused(tmp_path):
    with pytest.raises(HsanomalyError, match="no scene with ground truth"):
        find_scenes(tmp_path)
    with pytest.raises(HsanomalyError, match="not a directory"):
        find_scenes(tmp_path / "missing")


def test_a_truth_of_targets_only_is_skipped_and_a_misplaced_one_refused_first(scene_dir,
                                                                          monkeypatch):
    """A truth all target ended the run with a traceback (no background to rank against); a
    truth off its scene's grid was found only at its scene's turn, the others' work lost."""
    from affine import Affine

    cube, truth = synthetic_cube(rows=24, cols=36, targets=((4, 30),), seed=3)
    write_raster(scene_dir / "tif" / "zeta.tif", cube)
    write_raster(scene_dir / "tif" / "zeta-truth.tif", np.ones((1, 24, 36), np.float32))
    result = run_benchmark(scene_dir, ["rx"], [0])
    assert [r["scene"] for r in result.runs] == ["mat/alpha", "tif/beta"]
    assert result.skipped == ["tif/zeta: no background pixel in the ground truth"]
    cube[:, :3, :3] = np.nan                            # targets only where there is no data
    write_raster(scene_dir / "tif" / "zeta.tif", cube)
    only_nodata = np.zeros((1, 24, 36), np.float32)
    only_nodata[0, :2, :2] = 1
    write_raster(scene_dir / "tif" / "zeta-truth.tif", only_nodata)
    assert run_benchmark(scene_dir, ["rx"], [0]).skipped == [
        "tif/zeta: no target pixel in the ground truth where the scene has data"]
    write_raster(scene_dir / "tif" / "zeta-truth.tif", truth[None].astype(np.float32),
                 transform=Affine(2, 0, 500_010, 0, -2, 6_700_000))     # 5 pixels off
    loaded = []
    monkeypatch.setattr("hsanomaly.experiments.scenes.BenchmarkScene.load",
                        lambda scene: loaded.append(scene) or read_scene(scene.path, scene.truth))
    with pytest.raises(HsanomalyError, match="zeta-truth.tif: .*grid"):
        run_benchmark(scene_dir, ["rx"], [0])
    assert loaded == []


def test_seeds_multiply_only_seeded_methods():
    assert runs_for(["rx", "gmm", "lrx", "recon"], [0, 1]) == [
        ("rx", None), ("lrx", None), ("gmm", 0), ("recon", 0), ("gmm", 1), ("recon", 1)]


def test_seeds_are_checked_up_front_and_counted_once(scene_dir):
    """A negative seed failed only once a model was being trained; 0,0 ran every run twice
    and reported seeds=2 with a spread of 0."""
    with pytest.raises(HsanomalyError, match="'seeds': -1 is not a whole number from 0"):
        run_benchmark(scene_dir, ["rx", "gmm"], [-1])
    result = run_benchmark(scene_dir, ["gmm"], [0, 0])
    assert result.seeds == [0] and len(result.runs) == len({r["scene"] for r in result.runs})


def test_unknown_scores_are_refused_up_front(scene_dir):
    with pytest.raises(HsanomalyError, match="unknown score"):
        run_benchmark(scene_dir, ["rx", "bogus"], [0])


def test_gan_scores_without_torch_are_refused_up_front(scene_dir, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch" else find_spec(name, *args))
    with pytest.raises(HsanomalyError, match="training needs torch"):
        run_benchmark(scene_dir, ["rx", "recon"], [0])


def test_scenes_are_chosen_by_name_or_stem(scene_dir):
    scenes = find_scenes(scene_dir)
    assert [s.name for s in select_scenes(scenes, ["beta"])] == ["tif/beta"]
    both = select_scenes(scenes, ["tif/beta", "alpha"])
    assert [s.name for s in both] == ["mat/alpha", "tif/beta"]
    assert select_scenes(scenes, []) == scenes
    with pytest.raises(HsanomalyError, match="no scene named omega"):
        select_scenes(scenes, ["omega"])


def test_summary_means_over_scenes_and_spread_over_seeds():
    def run(scene, method, seed, auc):
        return {"scene": scene, "method": method, "seed": seed, "auc": auc, "log_auc": auc / 2,
                "pd": auc / 4, "lg_far": -1.0, "seconds": 1.0, "cpu_seconds": 2.0, "train_seconds": 0.0,
                "train_cpu_seconds": 0.0, "peak_mib": auc * 10}

    runs = [run("A", "gmm", 0, 0.8), run("A", "gmm", 1, 0.9), run("B", "gmm", 0, 0.6),
            run("B", "gmm", 1, 0.7), run("A", "rx", None, 0.9), run("B", "rx", None, 0.5)]
    rows = {(r["scene"], r["method"]): r for r in summarise(runs, ["rx", "gmm"])}
    assert rows["A", "gmm"]["auc"] == pytest.approx(0.85)
    assert rows["A", "gmm"]["auc_std"] == pytest.approx(statistics.stdev([0.8, 0.9]))
    mean = rows[MEAN, "gmm"]          # per-seed means over scenes: 0.7 and 0.8
    assert (mean["seeds"], mean["auc"]) == (2, pytest.approx(0.75))
    assert mean["auc_std"] == pytest.approx(statistics.stdev([0.7, 0.8]))
    assert mean["log_auc"] == pytest.approx(0.375)
    assert mean["peak_mib"] == pytest.approx(9.0)
    assert (rows[MEAN, "rx"]["auc"], rows[MEAN, "rx"]["auc_std"]) == (pytest.approx(0.7), 0.0)
    assert list(rows) == [("A", "rx"), ("A", "gmm"), ("B", "rx"), ("B", "gmm"),
                          (MEAN, "rx"), (MEAN, "gmm")]


def test_benchmark_runs_every_scene_and_writes_consistent_files(scene_dir, tmp_path):
    result = run_benchmark(scene_dir, ["rx", "gmm"], [0, 1])
    assert [(r["scene"], r["method"], r["seed"]) for r in result.runs] == [
        (scene, method, seed) for scene in ("mat/alpha", "tif/beta")
        for method, seed in (("rx", None), ("gmm", 0), ("gmm", 1))]
    for r in result.runs:
        assert r["seconds"] > 0 and r["target_pixels"] == 8
        # the peak in an untimed pass of the first seed (tracing slows methods unevenly)
        assert (r["peak_mib"] > 0) if r["seed"] in (None, 0) else r["peak_mib"] is None
        if r["method"] == "rx":
            assert r["auc"] == 1.0                # planted foreign spectra

    paths = write_results(result, tmp_path / "out")
    with open(paths["results.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == RUN_COLUMNS and len(rows) == 6
    with open(paths["summary.csv"]) as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == SUMMARY_COLUMNS
    mean_rx = next(r for r in summary if r["scene"] == MEAN and r["method"] == "rx")
    rx_aucs = [float(r["auc"]) for r in rows if r["method"] == "rx"]
    assert float(mean_rx["auc"]) == pytest.approx(np.mean(rx_aucs))
    document = json.loads(paths["results.json"].read_text())
    assert document["runs"] == json.loads(json.dumps(result.runs))
    markdown = paths["results.md"].read_text()
    assert "| scene | rx | gmm |" in markdown and "| mean |" in markdown

    # the result set is replaced whole: a failure in the last file (a file-size limit, say)
    # left the tables of this run beside the JSON and Markdown of the earlier one
    import errno

    import hsanomaly.experiments.tables as tables_module

    before = {name: path.read_bytes() for name, path in paths.items()}
    fewer = run_benchmark(scene_dir, ["rx"], [0])

    def too_large(result):
        raise OSError(errno.EFBIG, "File too large")

    real = tables_module.format_markdown
    tables_module.format_markdown = too_large
    try:
        with pytest.raises(HsanomalyError, match="results.md: cannot write .file too large"):
            write_results(fewer, tmp_path / "out")
    finally:
        tables_module.format_markdown = real
    assert {name: path.read_bytes() for name, path in paths.items()} == before


def test_cli_prints_the_table_and_writes_the_files(scene_dir, tmp_path):
    out = tmp_path / "results"
    outcome = CliRunner().invoke(benchmark, [str(scene_dir), "--scores", "rx,gmm", "--seeds",
                                             "3,4", "--quick", "--out", str(out), "-q"])
    assert outcome.exit_code == 0, outcome.output
    assert "ROC AUC" in outcome.output and "tif/beta" in outcome.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["method"], r["seed"]) for r in runs if r["scene"] == "tif/beta"] == [
        ("rx", None), ("gmm", 3)]                # --quick keeps the first seed
    assert {p.name for p in out.iterdir()} == {"results.csv", "summary.csv", "results.json",
                                               "results.md"}


def test_a_scene_is_named_in_either_unicode_form_and_a_bar_keeps_its_column(tmp_path):
    """macOS writes "é" decomposed (NFD): a name typed composed (NFC) looks the same and never
    matched ("no scene named ville é; found ville é"), nor did a reference's. A "|" in a name
    ended its cell in results.md, and the AUC moved under another column."""
    import unicodedata

    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    cube, truth = synthetic_cube(rows=20, cols=20, targets=((5, 5),))
    nfd = unicodedata.normalize("NFD", "ville é | b")
    write_raster(data / f"{nfd}.tif", cube)
    write_raster(data / f"{nfd}-truth.tif", truth[None].astype(np.float32))
    reference = tmp_path / "reference.csv"
    reference.write_text("scene,method,auc\nville é | b,rx,0.9\n")
    outcome = CliRunner().invoke(benchmark, [str(data), "--scores", "rx", "--scenes",
                                             "ville é | b", "--reference", str(reference),
                                             "--out", str(out), "-q"])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((out / "results.json").read_text())
    assert result["reference"] == {"ville é | b": {"rx": 0.9}}
    import re

    lines, cells, rows = (out / "results.md").read_text().splitlines(), None, 0
    for line, after in zip(lines, lines[1:] + [""]):
        bars = len(re.findall(r"(?<!\\)\|", line))     # the unescaped ones end cells
        if after.startswith("|---"):
            cells = bars                                  # a table's header
        elif line.startswith("| ville"):
            assert line.startswith("| ville é \\| b | ") and bars == cells, line
            rows += 1
    assert rows


def test_a_methods_options_are_named_as_its_spec_names_them(scene_dir, tmp_path):
    """The benchmark has no --pca: a score's warning named it so while the scenes were scored
    in the command's process, and pca=50 in worker processes."""
    from hsanomaly.cli import main

    outcome = CliRunner().invoke(main, ["benchmark", str(scene_dir), "--scores", "gmm:pca=500",
                                        "--seeds", "0", "--quick", "--out",
                                        str(tmp_path / "results"), "-q"])
    assert outcome.exit_code == 0, outcome.output
    assert "pca=500 is more than the bands" in outcome.output and "--pca" not in outcome.output


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="training needs torch")
def test_gan_scores_share_one_model_per_scene_seed_and_declared_training(scene_dir, tmp_path):
    """critic and resrx share the plain model; recon gets the model its class declares
    (``model_training``: whitened), trained once and reused like the other."""
    models = tmp_path / "models"
    result = run_benchmark(scene_dir, ["rx", "critic", "resrx", "recon"], [0], scenes=["alpha"],
                           iterations=3, models_dir=models)
    assert [(r["method"], r["seed"]) for r in result.runs] == [
        ("rx", None), ("critic", 0), ("resrx", 0), ("recon", 0)]
    assert sorted(p.name for p in (models / "mat__alpha").iterdir() if p.is_dir()) == [
        "seed0-it3", "seed0-it3-whitenTrue"]
    rx, critic, resrx, recon = result.runs
    assert rx["train_seconds"] == rx["train_cpu_seconds"] == 0.0
    assert critic["train_seconds"] == resrx["train_seconds"] > 0
    assert critic["train_cpu_seconds"] == resrx["train_cpu_seconds"] > 0
    assert recon["train_seconds"] > 0 and recon["train_seconds"] != critic["train_seconds"]
    assert 0.0 <= recon["auc"] <= 1.0 and recon["cpu_seconds"] > 0
    assert result.setup["gan_iterations"] == 3

    cache = ModelCache(models, iterations=3)
    scene = find_scenes(scene_dir)[0]
    assert cache.get(scene, 0).seconds == critic["train_seconds"]      # reused, not retrained
    whitened = cache.get(scene, 0, whiten=True)
    assert whitened.seconds == recon["train_seconds"]
    from hsanomaly.model import load_bundle

    assert load_bundle(whitened.path).preprocessor.whiten
    assert not load_bundle(cache.get(scene, 0).path).preprocessor.whiten
    assert result.setup["models_trained"] == 2 and result.setup["models_reused"] == 0
    assert not any(r["model_reused"] for r in result.runs)

    again = run_benchmark(scene_dir, ["rx", "critic", "resrx", "recon"], [0], scenes=["alpha"],
                          iterations=3, models_dir=models)
    assert again.setup["models_trained"] == 0 and again.setup["models_reused"] == 2
    assert [r["model_reused"] for r in again.runs] == [None, True, True, True]
    assert ("2 models of 2 came from the model cache: their training is not in these totals"
            in format_markdown(again))
    assert "model cache" not in format_markdown(result)


def test_the_training_codes_digest_follows_the_code_a_model_is_made_by(tmp_path):
    """What the model cache keys a model's code on: an edit to the training, the reading or
    the preprocessing changes it; one to the scores, which the model does not depend on,
    does not (each would retrain every cached model)."""
    from hsanomaly.experiments.cache import TRAINING_CODE, training_code

    for part in (*TRAINING_CODE, "scorers"):
        where = tmp_path / part if part.endswith(".py") else tmp_path / part / "m.py"
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text("x = 1\n")
    first = training_code(tmp_path)
    (tmp_path / "scorers" / "m.py").write_text("x = 2\n")
    assert training_code.__wrapped__(tmp_path) == first
    for part in TRAINING_CODE:
        where = tmp_path / part if part.endswith(".py") else tmp_path / part / "m.py"
        where.write_text(where.read_text() + "# edited\n")
        now = training_code.__wrapped__(tmp_path)
        assert now != first, part
        first = now


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="training needs torch")
def test_a_cached_model_made_by_other_training_code_is_trained_again(scene_dir, tmp_path):
    """The cache was keyed on the scene and the settings alone: after a change to the training
    code, a benchmark scored the old models and published them as the new training's."""
    cache = ModelCache(tmp_path / "models", iterations=2)
    scene = find_scenes(scene_dir)[0]
    first = cache.get(scene, 0)
    assert not cache.get(scene, 0).reused           # this cache trained it
    assert ModelCache(tmp_path / "models", iterations=2).get(scene, 0).reused
    timing = first.path.with_name(first.path.name + ".timing.json")
    record = json.loads(timing.read_text())
    timing.write_text(json.dumps({**record, "code": "0" * 64}))   # made by other code
    lines = []
    again = ModelCache(tmp_path / "models", iterations=2, log=lines.append).get(scene, 0)
    assert not again.reused
    assert any(line.endswith("the training code changed since it was trained; training again")
               for line in lines)


@pytest.mark.train
def test_a_cached_model_trained_with_a_truth_raster_as_mask_follows_its_edits(scene_dir,
                                                                                tmp_path):
    """The thesis's background-only model (the truth raster its mask) was reused after the
    truth raster was edited: the cache fingerprinted the scene file alone."""
    pytest.importorskip("torch")
    import rasterio

    scene = next(s for s in find_scenes(scene_dir) if s.truth is not None)
    cache = ModelCache(tmp_path / "models", iterations=2)
    first = cache.get(scene, 0, mask=scene.truth, background_only=True)
    assert cache.get(scene, 0, mask=scene.truth, background_only=True).seconds == first.seconds
    with rasterio.open(scene.truth, "r+") as ds:
        truth = ds.read(1)
        truth[10:14, 10:14] = 1
        ds.write(truth, 1)
    again = cache.get(scene, 0, mask=scene.truth, background_only=True)
    assert again.seconds != first.seconds                      # trained again


def test_scenes_in_worker_processes_give_the_same_runs(scene_dir):
    alone = run_benchmark(scene_dir, ["rx", "lrx"], [0])
    parallel = run_benchmark(scene_dir, ["rx", "lrx"], [0], jobs=2)
    assert [(r["scene"], r["method"], r["auc"]) for r in parallel.runs] == [
        (r["scene"], r["method"], r["auc"]) for r in alone.runs]
    assert parallel.setup["jobs"] == 2 and parallel.setup["total_cpu_seconds"] > 0


def test_quick_keeps_the_first_scenes_seed_and_few_iterations(scene_dir):
    result = run_benchmark(scene_dir, ["rx"], [5, 6], quick=True)
    assert result.seeds == [5] and result.setup["gan_iterations"] is None
    assert QUICK_ITERATIONS < ModelCache(scene_dir).iterations


def test_quick_takes_one_scene_of_each_image(scene_dir):
    """Two datasets' copies of one image (the shared data's HYDICE twice) among the first
    scenes made --quick score one image twice and leave a third out."""
    import shutil

    (scene_dir / "copy").mkdir()
    shutil.copy(scene_dir / "mat" / "alpha.mat", scene_dir / "copy" / "alpha.mat")
    result = run_benchmark(scene_dir, ["rx"], [0], quick=True)
    assert sorted({r["scene"] for r in result.runs}) == ["copy/alpha", "tif/beta"]


def test_published_aucs_are_tabulated_beside_ours(scene_dir, tmp_path):
    reference = tmp_path / "reference.csv"
    reference.write_text("scene,method,auc\nalpha,rx,0.9\nalpha,gmm,0.95\ntif/beta,rx,0.8\n"
                         "elsewhere,rx,0.5\n")
    result = run_benchmark(scene_dir, ["rx", "lrx"], [0], reference=reference)
    assert result.reference == {"mat/alpha": {"rx": 0.9, "gmm": 0.95}, "tif/beta": {"rx": 0.8}}
    markdown = write_results(result, tmp_path / "out")["results.md"].read_text()
    table = markdown.split("## Against the published reference AUCs")[1]
    best = max(["rx", "lrx"], key=lambda m: next(r["auc"] for r in result.summary
                                                 if r["scene"] == MEAN and r["method"] == m))
    assert (f"| scene | gmm reference | rx reference | rx here | better reference | {best} here "
            "| margin |") in table
    assert "| mat/alpha | 0.9500 | 0.9000 | 1.0000 | 0.9500 | 1.0000 | +0.0500 |" in table
    assert "| tif/beta | - | 0.8000 | 1.0000 | 0.8000 | 1.0000 | +0.2000 |" in table
    assert "| mean | - | 0.8500 | 1.0000 | 0.8750 | 1.0000 | +0.1250 |" in table


def test_a_reference_that_is_no_table_or_names_no_scene_here_is_said(scene_dir, tmp_path):
    """A text file or an empty one was taken as no reference at all, and a table of other
    scenes was dropped, all without a word."""
    for text in ("hello\n", ""):
        (tmp_path / "r.csv").write_text(text)
        with pytest.raises(HsanomalyError, match="r.csv: not a CSV with columns scene, method, "
                                                 "auc"):
            run_benchmark(scene_dir, ["rx"], [0], reference=tmp_path / "r.csv")
    (tmp_path / "r.csv").write_text("scene,method,auc\nelsewhere,rx,0.5\n")
    with pytest.warns(HsanomalyWarning, match="'reference': none of its scenes .elsewhere"):
        result = run_benchmark(scene_dir, ["rx"], [0], reference=tmp_path / "r.csv")
    assert result.reference == {}


def test_the_published_figures_face_the_configuration_chosen_without_the_scene():
    """With the held-out protocol run, the reference table's "ours" is each scene's held-out
    AUC, never the in-sample best; a method published for only some scenes gets a mean row of
    its own over those scenes."""
    aucs = {"A/a1": {"m1": 0.9, "m2": 0.8}, "A/a2": {"m1": 0.9, "m2": 0.8},
            "B/b1": {"m1": 0.5, "m2": 1.0}}
    runs = [{"scene": s, "method": m, "seed": 0, "auc": a, "log_auc": a / 2, "pd": a / 4,
             "lg_far": 1.0,
             "peak_mib": 1.0, **dict.fromkeys(TIME_KEYS, 0.0)}
            for s, by_method in aucs.items() for m, a in by_method.items()]
    selection = select_held_out(runs, ["m1", "m2"], {"A/a1": "A", "A/a2": "A", "B/b1": "B"})
    reference = {"A/a1": {"pub": 0.95, "deep": 0.99}, "A/a2": {"pub": 0.75, "deep": 0.8 + 1e-9},
                 "B/b1": {"pub": 0.6}}
    result = BenchmarkResult(runs, summarise(runs, ["m1", "m2"]), ["m1", "m2"], [0], [],
                             reference=reference, selection=selection)
    title, header, rows = tables(result)[-1]
    assert header == ["scene", "deep reference", "pub reference", "better reference",
                      "held out (leave-one-scene-out) here", "margin"]
    # m2 in sample (0.8667), but a1 and a2 are scored by m2 and b1 by m1 (chosen without it)
    assert rows[2] == ["B/b1", "-", "0.6000", "0.6000", "0.5000", "-0.1000"]
    assert rows[1][-1] == "+0.0000"                   # 0.8 - 0.8 never prints as -0.0000
    assert rows[3] == ["mean", "-", "0.7667", "0.7967", "0.7000", "-0.0967"]
    assert rows[4] == ["mean, the 2 scenes with a deep figure", "0.8950", "0.8500", "0.8950",
                       "0.8000", "-0.0950"]


def test_a_bad_reference_file_is_refused_in_one_line(scene_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("scene;method;auc\nalpha;rx;0.9\n")
    with pytest.raises(HsanomalyError, match="bad.csv: not a CSV with columns scene, method, auc"):
        run_benchmark(scene_dir, ["rx"], [0], reference=bad)
    with pytest.raises(HsanomalyError, match="missing.csv: cannot read"):
        run_benchmark(scene_dir, ["rx"], [0], reference=tmp_path / "missing.csv")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not available")
def test_rx_reproduces_the_reference_aucs(tmp_path):
    """README of ../shared/data: global RX AUC 0.8221 (airport-1, MATLAB v5) and 0.9932
    (HYDICE1, MATLAB v7.3)."""
    for relative in ("OT-AD/abu-airport-1.mat", "Auto-AD/HYDICE1.mat"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).symlink_to(SHARED_DATA / relative)
    result = run_benchmark(tmp_path, ["rx"], [0], reference=REFERENCE)
    assert {r["scene"]: round(r["auc"], 4) for r in result.runs} == {
        "Auto-AD/HYDICE1": 0.9932, "OT-AD/abu-airport-1": 0.8221}
    assert result.reference == {"Auto-AD/HYDICE1": {"rx": 0.9932, "gmm": 0.9919},
                                "OT-AD/abu-airport-1": {"rx": 0.8221, "gmm": 0.9162,
                                                        "Super-AD (tuned per scene)": 0.9418}}


def test_methods_carry_their_options_and_seeds_follow_the_registry():
    assert parse_method("lrx:outer=21:guard=7") == ("lrx", {"outer": 21, "guard": 7})
    assert parse_method("rx") == ("rx", {})
    with pytest.raises(HsanomalyError, match="name:key=value"):
        parse_method("lrx:outer")
    assert runs_for(["lrx:outer=9:guard=3", "gmm:components=2"], [0]) == [
        ("lrx:outer=9:guard=3", None), ("gmm:components=2", 0)]


def test_a_method_with_options_runs_like_the_score_with_them(scene_dir):
    result = run_benchmark(scene_dir, ["lrx", "lrx:outer=9:guard=3"], [0], scenes=["alpha"])
    assert [r["method"] for r in result.runs] == ["lrx", "lrx:outer=9:guard=3"]
    with pytest.raises(HsanomalyError, match=r"score 'lrx:bogus=1': 'bogus': score 'lrx' does "
                                             r"not take this option \(it takes 'outer', 'guard', 'pca'"):
        run_benchmark(scene_dir, ["lrx:bogus=1"], [0])        # the spec's terms, not flags
    with pytest.raises(HsanomalyError, match="score 'lrx:outer=21:outer=7': outer given twice"):
        run_benchmark(scene_dir, ["lrx:outer=21:outer=7"], [0])
    with pytest.raises(HsanomalyError, match="not among the scores run"):
        run_benchmark(scene_dir, ["rx"], [0], select=["lrx"])


def test_a_bad_option_value_is_refused_before_any_model_is_trained(scene_dir, tmp_path):
    for method, message in (("recon:codebook_scale=abc", "'codebook_scale' must be a finite"),
                            ("mlrx:purge=0.9", ": 'purge' must lie in"),
                            ("recon:c2=abc", ": 'c2' must be a finite number, got 'abc'"),
                            ("dualcontext:top_rings=two", "'top_rings' must be a whole number"),
                            ("resrx:refine=1.5", ": 'refine' must be a whole number"),
                            ("gmm:seed=-1", ": 'seed' must be a whole number from 0")):
        with pytest.raises(HsanomalyError, match=message):
            run_benchmark(scene_dir, ["rx", method], [0], models_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_held_out_selection_never_sees_the_scene_it_scores():
    aucs = {("A/a1", "m1"): 0.9, ("A/a1", "m2"): 0.8, ("A/a2", "m1"): 0.9, ("A/a2", "m2"): 0.8,
            ("B/b1", "m1"): 0.5, ("B/b1", "m2"): 1.0, ("A/a1", "base"): 0.7,
            ("A/a2", "base"): 0.7, ("B/b1", "base"): 0.7}
    # logAUC ranks m1 and m2 the other way round (1 - AUC); Pd is half the logAUC
    log_aucs = {key: 0.3 if key[1] == "base" else 1 - a for key, a in aucs.items()}
    runs = [{"scene": s, "method": m, "seed": seed, "auc": a + 0.01 * seed,
             "log_auc": log_aucs[s, m] + 0.01 * seed, "pd": (log_aucs[s, m] + 0.01 * seed) / 2}
            for (s, m), a in aucs.items() for seed in (0, 1)]
    datasets = {"A/a1": "A", "A/a2": "A", "B/b1": "B"}
    selection = select_held_out(runs, ["m1", "m2"], datasets, ablation=["base"])
    # in sample m2 (0.8667 + 0.005) beats m1 (0.7667 + 0.005)
    assert selection.selected == "m2"
    scene_out, dataset_out = selection.protocols
    # leaving a1 out: m1 0.7 vs m2 0.9 on a2, b1 -> m2; leaving b1 out: m1 wins on a1, a2
    assert scene_out.chosen == {"A/a1": "m2", "A/a2": "m2", "B/b1": "m1"}
    assert scene_out.mean == pytest.approx((0.805 + 0.805 + 0.505) / 3)
    # leaving A out chooses on b1 only (m2), leaving B out on A (m1)
    assert dataset_out.chosen == {"A": "m2", "B": "m1"}
    # scenes in the data folder itself are a dataset too: named, not an empty cell
    top = select_held_out(runs, ["m1", "m2"], {"A/a1": "A", "A/a2": "A", "B/b1": ""})
    title, header, rows = top.tables()[0]
    assert rows[1][-1] == "m2: A; m1: (top level)", rows
    assert dataset_out.per_seed == pytest.approx([0.7, 0.71])
    titles = [title for title, _, _ in selection.tables()]
    assert titles[0].startswith("Held-out selection") and titles[3].startswith("Ablation")
    per_scene = selection.tables()[1][2]
    assert per_scene[2] == ["B/b1", "m1", "0.5050", "base", "0.7050", "-0.2000"]
    gain = selection.tables()[3][2]
    assert gain[0][:4] == ["leave-one-scene-out", "0.7050", "0.7050", "+0.0000"]
    # on logAUC the protocol chooses anew: m1 without a1 (a2, b1) and without a2, m2 without b1
    assert gain[0][4:] == ["0.0717", "0.3050", "-0.2333", "0.0358", "0.1525", "-0.1167"]
    assert gain[2] == ["in-sample", "0.8717 (m2)", "0.7050 (base)", "+0.1667",
                       "0.2383 (m1)", "0.3050 (base)", "-0.0667",
                       "0.1192 (m1)", "0.1525 (base)", "-0.0333"]
    assert selection.tables()[3][1][4:] == ["logAUC: GAN", "without a GAN", "GAN gain",
                                            "Pd: GAN", "without a GAN", "GAN gain"]
    logauc = selection.to_dict()["ablations"][1]
    assert logauc["metric"] == "logAUC" and logauc["gan"][0]["chosen"] == {
        "A/a1": "m1", "A/a2": "m1", "B/b1": "m2"}
    del runs[0]["log_auc"]                        # one run without it: no logAUC columns
    assert select_held_out(runs, ["m1", "m2"], datasets, ["base"]).tables()[3][1][4] == "Pd: GAN"
    for r in runs:
        r.pop("pd")
    assert len(select_held_out(runs, ["m1", "m2"], datasets, ["base"]).tables()[3][1]) == 4


def test_the_model_cache_reuses_a_bundle_only_while_it_is_what_training_would_give(
        tmp_path, monkeypatch):
    """Reused while it loads and its scene file and training settings (defaults included) are
    unchanged; trained again when it no longer loads, the scene file changed or a default of
    ``train`` did; one lock file per bundle."""
    import hsanomaly.experiments.cache as cache
    import hsanomaly.training

    trained, messages = [], []

    def fake_train(inputs, out, dim=8, **options):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "model.json").write_text("{}")
        trained.append(out)

    monkeypatch.setattr(hsanomaly.training, "train", fake_train)
    loads = {"ok": True}

    def fake_load(path):
        if not loads["ok"]:
            raise HsanomalyError(f"{path}: an older bundle format")

    monkeypatch.setattr("hsanomaly.model.load_bundle", fake_load)
    from hsanomaly.experiments.scenes import BenchmarkScene

    (tmp_path / "one.mat").write_bytes(b"scene v1")
    scene = BenchmarkScene("set/one", tmp_path / "one.mat", None)
    models = cache.ModelCache(tmp_path / "models", iterations=5, log=messages.append)
    first = models.get(scene, 0)
    assert models.get(scene, 0).path == first.path and len(trained) == 1
    assert (tmp_path / "models" / "set__one" / "seed0-it5.lock").exists()
    loads["ok"] = False
    models.get(scene, 0)
    assert len(trained) == 2 and "no longer loads" in messages[-2]
    loads["ok"] = True
    (tmp_path / "one.mat").write_bytes(b"scene v2")
    models.get(scene, 0)
    assert len(trained) == 3 and "the scene file changed" in messages[-2]
    models.get(scene, 0)
    assert len(trained) == 3                                    # current again: reused

    def wider_train(inputs, out, dim=16, **options):
        fake_train(inputs, out, **options)

    monkeypatch.setattr(hsanomaly.training, "train", wider_train)
    models.get(scene, 0)
    assert len(trained) == 4 and "the training settings changed" in messages[-2]
    assert scene.dataset == "set"

    def named_train(inputs, out, dim=16, name=None, quick_model_of=None, threads=1, **options):
        fake_train(inputs, out, **options)

    monkeypatch.setattr(hsanomaly.training, "train", named_train)   # new switches of the run,
    models.get(scene, 0)                                            # not of the model: reused
    assert len(trained) == 4
    # a file GDAL reads beside a raster scene changes the pixels training reads: its
    # .aux.xml declaring a nodata value trained a model on the old pixels' behalf
    raster = write_raster(tmp_path / "two.tif", synthetic_cube(rows=10, cols=10)[0])
    tif = BenchmarkScene("set/two", raster, None)
    models.get(tif, 0)
    models.get(tif, 0)
    assert len(trained) == 5
    Path(str(raster) + ".aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><NoDataValue>0</NoDataValue></PAMRasterBand>'
        "</PAMDataset>")
    models.get(tif, 0)
    assert len(trained) == 6 and "the scene file changed" in messages[-2]


def test_the_model_cache_refuses_a_folder_of_the_users_at_a_bundles_path(scene_dir, tmp_path):
    """The cache trains into ``<models>/<scene>/seed<k>-it<n>``; a folder there that is not a
    bundle is the user's, refused in one line before any training, and left as it was."""
    scene = find_scenes(scene_dir)[0]
    cache = ModelCache(tmp_path / "models", iterations=3)
    taken = cache.path(scene, 0, 3, {})
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("keep me")
    with pytest.raises(HsanomalyError, match="not a model bundle"):
        cache.get(scene, 0)
    messages = []
    with pytest.raises(HsanomalyError, match="cached model's path is a directory that is not"):
        run_benchmark(scene_dir, ["rx", "resrx"], [0], iterations=3,
                      models_dir=tmp_path / "models", log=messages.append)
    assert messages == []                       # refused before the first scene
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert (taken / "notes.txt").read_text() == "keep me"


def test_the_model_cache_trains_past_an_interrupted_trainings_checkpoint(scene_dir, tmp_path):
    """A training stopped short leaves its checkpoint beside the model's path; that is train's
    own, so the benchmark trains there again. A folder of the user's at the checkpoint's path is
    refused in one line before any work, and left as it was."""
    scene = find_scenes(scene_dir)[0]
    cache = ModelCache(tmp_path / "models", iterations=3)
    out = cache.path(scene, 0, 3, {"whiten": True})
    checkpoint = checkpoint_dir(out)
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.npz").write_bytes(b"stopped short")
    run_benchmark(scene_dir, ["recon"], [0], iterations=3, models_dir=tmp_path / "models",
                  log=lambda message: None, scenes=[scene.name])
    assert (out / "model.json").exists() and not checkpoint.exists()

    user = checkpoint_dir(cache.path(scene, 1, 3, {}))
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    messages = []
    with pytest.raises(HsanomalyError, match="checkpoint directory is a directory that is not"):
        run_benchmark(scene_dir, ["rx", "resrx"], [1], iterations=3,
                      models_dir=tmp_path / "models", log=messages.append)
    assert messages == [] and [p.name for p in user.iterdir()] == ["notes.txt"]


def test_nothing_in_the_product_imports_the_research_harness():
    root = Path(__file__).parents[1] / "hsanomaly"
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).parts
        if relative[0] in ("experiments", "cli"):
            continue
        assert "experiments" not in path.read_text(), path


def _benchmark_script(name):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="trains models")
def test_fusion_ablations_second_pass_is_the_benchmarks_default_score(tmp_path, capsys):
    """benchmarks/fusion_ablations.py takes the default score apart on the benchmark's cached
    models; its 2-pass row and its default fusion are the benchmark's AUC for that score."""
    from hsanomaly import defaults

    data = tmp_path / "data"
    data.mkdir()
    cube, truth = synthetic_cube(rows=50, cols=50, targets=((10, 10), (30, 36)), seed=3)
    truth.flat[np.random.default_rng(0).choice(truth.size, 60, replace=False)] = 1
    write_mat(data / "alpha.mat", cube, truth)     # background labelled target: AUC < 1
    models = tmp_path / "models"
    result = run_benchmark(data, [defaults.SCORE], [0], iterations=3, models_dir=models)
    _benchmark_script("fusion_ablations").main(
        [str(data), "--models", str(models), "--seeds", "0", "--iterations", "3",
         "--passes", "3"])
    rows = {line.split("|")[1].strip(): float(line.split("|")[2])
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ")
            and line.split("|")[2].strip()[:1].isdigit()}
    assert rows["2 passes"] == rows["fusion: default"] == pytest.approx(result.runs[0]["auc"],
                                                                        abs=1e-4)
    assert {"1 pass", "3 passes", "fusion: equal weights"} <= rows.keys()
    assert rows["1 pass"] != rows["2 passes"] and rows["2 passes"] < 0.99


def test_implanted_targets_replace_the_scenes_own_and_mix_a_real_material(tmp_path):
    """benchmarks/implant_targets.py: the scene's own targets become invalid, the implants are
    squares apart from each other in valid background, shifted towards one real pixel's spectrum."""
    module = _benchmark_script("implant_targets")
    cube, truth = synthetic_cube(rows=60, cols=60, targets=((10, 10), (40, 45)), seed=4)
    valid = np.ones(truth.shape, bool)
    out, kept, implanted, corners, shift = module.implant(
        cube, valid, truth, 5, 3, 0.99, 0.5, 2, np.random.default_rng(0))
    assert len(corners) == 3 and implanted.sum() == 3 * 25
    assert not kept[truth == 1].any() and np.isnan(out[:, ~kept]).all()
    assert kept[implanted == 1].all() and not (implanted & truth).any()
    for i, (r, c) in enumerate(corners):
        assert implanted[r:r + 5, c:c + 5].all()
        for r2, c2 in corners[i + 1:]:
            assert max(abs(r - r2), abs(c - c2)) >= 10        # a square apart at least
    changed = implanted == 1
    np.testing.assert_array_equal(out[:, ~changed & kept], cube[:, ~changed & kept])
    background = cube[:, kept].T.astype(np.float64)
    material = shift + background.mean(axis=0)
    assert np.abs(background - material).sum(axis=1).min() < 1e-3     # a real pixel's spectrum
    # every implanted pixel is its own spectrum (noise and all) moved by >= half the shift
    moved = (out[:, changed] - cube[:, changed]).T.astype(np.float64)
    share = moved @ shift / (shift @ shift)
    np.testing.assert_allclose(moved, share[:, None] * shift, atol=1e-4)
    assert share.min() >= 0.5 - 1e-4 and share.max() <= 1 + 1e-4 and share.std() > 0.05


def test_gpu_check_mosaic_tiles_the_scene_with_its_band_metadata(tmp_path):
    """benchmarks/gpu_check.py's larger raster is the scene tiled, bands and their metadata kept,
    so the scene's model scores it."""
    import rasterio

    module = _benchmark_script("gpu_check")
    cube, _ = synthetic_cube(rows=7, cols=5, targets=((2, 2),), seed=5)
    src = tmp_path / "scene.tif"
    write_raster(src, cube)
    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(2, "second")
        ds.update_tags(2, wavelength="512.5")
    assert module.write_mosaic(src, tmp_path / "mosaic.tif", 3) == 21 * 15
    with rasterio.open(tmp_path / "mosaic.tif") as ds:
        np.testing.assert_array_equal(ds.read(), np.tile(cube, (1, 3, 3)))
        assert ds.descriptions[1] == "second" and ds.tags(2)["wavelength"] == "512.5"


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                    reason="this machine has a CUDA runtime: the check would measure it")
def test_gpu_check_without_a_gpu_measures_nothing_and_says_so():
    """Without CUDA the prepared GPU check says why in one line, and its last line, the one a
    device run reports, holds no figure."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" /
                                               "gpu_check.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("gpu_check: no GPU to measure:")
    assert lines[-1].startswith("gpu_check=skipped") and lines[-1].endswith("=nan")


def _runs(aucs, seeds=(0,)):
    """Benchmark records of {(scene, method): auc}; seed None for methods named 'u*'."""
    return [{"scene": s, "method": m, "seed": None if m.startswith("u") else seed, "auc": a,
             "log_auc": a / 2, "pd": a / 4, "lg_far": 1.0}
            for (s, m), a in aucs.items() for seed in ((None,) if m.startswith("u") else seeds)]


def test_a_protocol_with_one_unit_is_not_possible_rather_than_in_sample():
    """With every scene in one dataset, leave-one-dataset-out chose on every scene, the one it
    scored included, and printed that in-sample mean as the held-out one."""
    aucs = {("A/a1", "m1"): 0.9, ("A/a1", "m2"): 0.5, ("A/a2", "m1"): 0.6, ("A/a2", "m2"): 1.0}
    selection = select_held_out(_runs(aucs), ["m1", "m2"], {"A/a1": "A", "A/a2": "A"})
    scene_out, dataset_out = selection.protocols
    assert scene_out.possible and scene_out.chosen == {"A/a1": "m2", "A/a2": "m1"}
    assert not dataset_out.possible and dataset_out.mean is None
    row = selection.tables()[0][2][1]
    assert row[:3] == ["leave-one-dataset-out", "n/a", ""] and "not possible" in row[4]
    assert selection.to_dict()["protocols"][1]["mean"] is None
    with pytest.raises(HsanomalyError, match="needs two scenes or more"):
        select_held_out(_runs({("A/a1", "m1"): 0.9, ("A/a1", "m2"): 0.5}), ["m1", "m2"], {})
    with pytest.raises(HsanomalyError, match="m2: no result on scene A/a2"):
        select_held_out(_runs({k: v for k, v in aucs.items() if k != ("A/a2", "m2")}),
                        ["m1", "m2"], {})


def test_the_spread_over_seeds_counts_an_unseeded_choice_once_per_seed():
    """An unseeded pick (seed None) was a "seed" of its own: 4 values for 3 seeds, and a
    std of 0.0047 where the 3 seeds' held-out means give 0.0057."""
    runs = _runs({("A/a", "u"): 0.9, ("A/a", "s"): 0.1, ("B/b", "u"): 0.8, ("B/b", "s"): 0.5,
                  ("C/c", "u"): 0.1, ("C/c", "s"): 0.5}, seeds=(0, 1, 2))
    for r in runs:
        if r["method"] == "s":
            r["auc"] += 0.03 * r["seed"]
    protocol = select_held_out(runs, ["u", "s"], {}).protocols[0]
    # a is chosen for on b, c (s: 0.53 against u: 0.45); b and c on the others (u)
    assert protocol.chosen == {"A/a": "s", "B/b": "u", "C/c": "u"}
    assert protocol.per_seed == pytest.approx([(0.1 + 0.03 * k + 0.8 + 0.1) / 3 for k in range(3)])


def test_scene_names_the_tables_cannot_tell_apart_are_refused(scene_dir, tmp_path):
    """A scene called "mean" hid among the mean rows; two scenes of one stem: --scenes took
    one of them, and --reference set one published figure beside both."""
    other = scene_dir / "more"
    other.mkdir()
    cube, truth = synthetic_cube(rows=20, cols=20, targets=((5, 5),), seed=3)
    write_mat(other / "alpha.mat", cube, truth)
    scenes = find_scenes(scene_dir)
    with pytest.raises(HsanomalyError, match=r"alpha: names 2 scenes \(mat/alpha, more/alpha\); "
                                             "name the one meant by its folder too"):
        select_scenes(scenes, ["alpha"])
    assert [s.name for s in select_scenes(scenes, ["more/alpha"])] == ["more/alpha"]
    reference = tmp_path / "reference.csv"
    reference.write_text("scene,method,auc\nalpha,rx,0.9\n")
    with pytest.raises(HsanomalyError, match="'reference': alpha: names 2 scenes"):
        run_benchmark(scene_dir, ["rx"], [0], reference=reference)
    write_mat(scene_dir / f"{MEAN}.mat", cube, truth)
    with pytest.raises(HsanomalyError, match="a scene may not be called 'mean'"):
        find_scenes(scene_dir)
    (scene_dir / f"{MEAN}.mat").unlink()
    # a .mat and the GeoTIFF made of it, one name: one table row, the mean counting it twice
    write_raster(other / "alpha.tif", cube)
    write_raster(other / "alpha-truth.tif", truth[None].astype(np.uint8), dtype="uint8")
    with pytest.raises(HsanomalyError, match=r"more/alpha: 2 scenes of one name \(alpha.mat, "
                                             r"alpha.tif\); keep one, or move the others"):
        find_scenes(scene_dir)


def test_a_seed_in_a_seeded_scores_spec_is_refused(scene_dir):
    """gmm:seed=5 ran seed 5 under every --seeds label: three identical runs, '± 0.0000'."""
    with pytest.raises(HsanomalyError, match=r"score 'gmm:seed=5': its seed comes from 'seeds'"):
        run_benchmark(scene_dir, ["gmm:seed=5"], [0, 1])


def test_a_target_a_method_cannot_score_counts_as_missed(tmp_path):
    """Methods were compared on different pixels: a target pixel lrx could not score was left
    out of lrx's AUC (1.0 on 3 targets) while rx was judged on all 4 (0.92)."""
    from hsanomaly.experiments.benchmark import run_one
    from hsanomaly.experiments.scenes import BenchmarkScene

    cube, truth = synthetic_cube(bands=8, rows=30, cols=30, targets=((5, 5), (20, 20)), seed=4)
    write_raster(tmp_path / "s.tif", cube)
    write_raster(tmp_path / "s-truth.tif", truth[None].astype(np.float32))
    scene = BenchmarkScene("s", tmp_path / "s.tif", tmp_path / "s-truth.tif")
    data = scene.load()
    data.valid[:12, :12] = False           # an island of nodata around the first target ...
    data.valid[5, 5] = data.valid[5, 6] = True   # ... whose pixels lrx's rings cannot reach
    data.evaluated[:] = data.valid
    record = run_one(scene, data, "lrx:outer=9:guard=3", None, None)
    assert record["target_pixels"] == int(truth[data.evaluated].sum())


def test_a_selection_that_cannot_run_is_refused_before_any_scoring(scene_dir, monkeypatch):
    """--select on one scene failed only after every run; --ablation without --select was
    ignored without a word."""
    import hsanomaly.experiments.benchmark as bench

    monkeypatch.setattr(bench, "map_scenes", lambda *a, **k: pytest.fail("scored"))
    with pytest.raises(HsanomalyError, match="'select': a held-out selection needs two scenes"):
        run_benchmark(scene_dir, ["rx", "gmm"], [0], scenes=["alpha"], select=["rx", "gmm"])
    with pytest.raises(HsanomalyError, match="'ablation': .* give 'select' too"):
        run_benchmark(scene_dir, ["rx", "gmm"], [0], ablation=["rx"])
    # a method on both sides was left out of the ablation: its baseline weaker than asked
    with pytest.raises(HsanomalyError, match="'ablation': gmm also among the 'select' "
                                             "candidates; a method is on one side"):
        run_benchmark(scene_dir, ["rx", "gmm", "lrx"], [0], select=["lrx", "gmm"],
                      ablation=["rx", "gmm"])


def test_a_selection_that_fails_after_scoring_keeps_the_runs(scene_dir, monkeypatch):
    """A scene skipped as it ran (no target pixel) left one scene to select on: the error came
    after every run, and none was written."""
    import hsanomaly.experiments.benchmark as bench
    from hsanomaly.errors import HsanomalyWarning

    real = bench.benchmark_scene

    def skip_beta(scene, *args, **kwargs):
        return ([], "no target pixel", None) if "beta" in scene.name else \
            real(scene, *args, **kwargs)

    monkeypatch.setattr(bench, "benchmark_scene", skip_beta)
    with pytest.warns(HsanomalyWarning, match="no held-out selection: 'select': a held-out "
                                              "selection needs two scenes or more"):
        result = run_benchmark(scene_dir, ["rx", "gmm"], [0], select=["rx", "gmm"])
    assert result.selection is None and {r["method"] for r in result.runs} == {"rx", "gmm"}


def test_scenes_of_one_image_are_told_by_their_pixels():
    """HYDICE Urban is in two public sets, as two band sets (one scaled band by band): the
    same image, which a held-out protocol must not choose on while scoring the other."""
    from hsanomaly.experiments.scenes import brightness, same_images
    from hsanomaly.io.scene import Scene

    def scene(cube):
        return Scene(cube.astype(np.float32), np.isfinite(cube).all(axis=0))

    cube, _ = synthetic_cube(rows=30, cols=40, seed=1)
    other, _ = synthetic_cube(rows=30, cols=40, seed=2)
    low, high = cube.min(axis=(1, 2), keepdims=True), cube.max(axis=(1, 2), keepdims=True)
    rescaled = ((cube - low) / (high - low))[::2]          # every second band, min-max scaled
    rescaled[:, 0, :3] = np.nan                            # a few pixels of no data
    maps = {"A/a": brightness(scene(cube)), "B/b": brightness(scene(other)),
            "C/a": brightness(scene(rescaled)), "D/d": brightness(scene(cube[:, :20]))}
    assert same_images(maps) == {"A/a": "A/a", "B/b": "B/b", "C/a": "A/a", "D/d": "D/d"}

    # a bright streak two images share does not make them one (it lifted Pearson's r between
    # two unrelated images to 0.999: the review's F5); a flat map is no image
    big, _ = synthetic_cube(rows=60, cols=70, seed=3)
    unrelated, _ = synthetic_cube(rows=60, cols=70, seed=4)
    big[:, :, 5], unrelated[:, :, 5] = 50.0, 50.0
    maps = {"big": brightness(scene(big)), "unrelated": brightness(scene(unrelated)),
            "flat": brightness(scene(np.ones_like(big))),
            "flat too": brightness(scene(np.ones_like(big)))}
    assert same_images(maps) == {"big": "big", "unrelated": "unrelated", "flat": "flat",
                                 "flat too": "flat too"}


def test_scenes_of_one_image_are_held_out_together_with_their_datasets():
    """With a1's twin b1 among the scenes chosen on, a1's pick saw a1 (m1, 0.9); held out with
    its twin, the pick is made on a2 and c1 alone (m2, 0.5 on both twins); the datasets A
    and B, which share the image, are held out together."""
    aucs = {("A/a1", "m1"): 0.9, ("A/a1", "m2"): 0.5, ("B/b1", "m1"): 0.9, ("B/b1", "m2"): 0.5,
            ("A/a2", "m1"): 0.5, ("A/a2", "m2"): 0.6, ("C/c1", "m1"): 0.5, ("C/c1", "m2"): 0.7}
    datasets = {"A/a1": "A", "A/a2": "A", "B/b1": "B", "C/c1": "C"}
    blind = select_held_out(_runs(aucs), ["m1", "m2"], datasets).protocols[0]
    assert blind.held_out["A/a1"] == 0.9                 # chosen on its twin
    selection = select_held_out(_runs(aucs), ["m1", "m2"], datasets,
                                images={"B/b1": "A/a1"})
    scene_out, dataset_out = selection.protocols
    assert scene_out.chosen == {"A/a1 + B/b1": "m2", "A/a2": "m1", "C/c1": "m1"}
    assert scene_out.held_out == {"A/a1": 0.5, "B/b1": 0.5, "A/a2": 0.5, "C/c1": 0.5}
    assert dataset_out.chosen == {"A + B": "m2", "C": "m1"}     # A and B share an image
    assert dataset_out.held_out["C/c1"] == 0.5
    assert selection.twins == ["A/a1 + B/b1"]
    held_out_rows = selection.tables()[0][2]
    assert held_out_rows[0][4] == "m2: a1 + b1; m1: a2, c1"
    assert held_out_rows[1][4] == "m2: A + B; m1: C"
    assert [row[:2] for row in selection.tables()[1][2]] == [
        ["A/a1", "m2"], ["A/a2", "m1"], ["B/b1", "m2"], ["C/c1", "m1"]]
    assert "held out together (A/a1 + B/b1)" in selection.explanation()
    assert selection.to_dict()["twins"] == ["A/a1 + B/b1"]


def test_the_benchmark_holds_out_a_scene_with_its_twin_in_another_folder(scene_dir):
    """One image in two folders: the benchmark finds it by its pixels, not by its name."""
    cube, truth = synthetic_cube(rows=30, cols=30, targets=((5, 5), (20, 22)), seed=1)
    (scene_dir / "copy").mkdir()
    write_mat(scene_dir / "copy" / "alpha-bands.mat", cube[1::2] * 3.0 + 7.0, truth)
    result = run_benchmark(scene_dir, ["rx", "gmm"], [0], select=["rx", "gmm"])
    assert result.selection.twins == ["copy/alpha-bands + mat/alpha"]
    assert set(result.selection.protocols[1].chosen) == {"copy + mat", "tif"}


def test_scenes_all_of_one_image_leave_nothing_to_hold_out_and_the_results_are_written(
        tmp_path):
    """Two scenes of one image: no protocol can hold one out; the tables said so only after
    a crash that wrote nothing, at the end of the whole run (the review's F1)."""
    root = tmp_path / "data"
    for folder in ("a", "b"):
        (root / folder).mkdir(parents=True)
    cube, truth = synthetic_cube(rows=30, cols=30, targets=((5, 5), (20, 22)), seed=1)
    write_mat(root / "a" / "one.mat", cube, truth)
    write_mat(root / "b" / "same.mat", cube[::2] * 2.0, truth)
    result = run_benchmark(root, ["rx", "gmm"], [0], select=["rx", "gmm"])
    assert [p.possible for p in result.selection.protocols] == [False, False]
    paths = write_results(result, tmp_path / "out")
    markdown = paths["results.md"].read_text()
    assert "not possible: every scene is in one unit (one dataset, or one image)" in markdown
    assert "Leave-one-scene-out, per scene" not in markdown


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_the_scenes_of_every_worker(tmp_path, signal_name):
    """With --jobs, Ctrl-C (to the whole process group) let each worker catch it and go on to
    the next queued scene, and a SIGTERM to the parent waited for every queued scene: minutes
    of work after the signal, all thrown away."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "scenes.py").write_text(
        "import pathlib, time\n"
        "def scene(index, log):\n"
        "    pathlib.Path(f'started-{index}').touch()\n"
        "    time.sleep(4)\n"
        "    return index\n")
    (tmp_path / "run.py").write_text(            # SIGTERM taken as the command line takes it
        "import signal, scenes\n"
        "from hsanomaly.experiments.pool import map_scenes\n"
        "def terminated(number, frame):\n"
        "    raise KeyboardInterrupt\n"
        "if __name__ == '__main__':\n"
        "    signal.signal(signal.SIGTERM, terminated)\n"
        "    print(map_scenes(scenes.scene, [(i,) for i in range(6)], 2, print))\n")
    tree = str(Path(__file__).resolve().parents[1])      # the tree under test, not the installed
    process = subprocess.Popen([sys.executable, "run.py"], cwd=tmp_path, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": tree},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = time.monotonic()
    if signal_name == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)          # as a terminal's Ctrl-C
    else:
        process.send_signal(signal.SIGTERM)            # as kill, systemd or Slurm
    process.communicate(timeout=60)
    assert process.returncode != 0 and time.monotonic() - sent < 3
    time.sleep(1)
    assert sorted(p.name for p in tmp_path.glob("started-*")) == ["started-0", "started-1"]


def test_a_mat_scene_that_cannot_load_is_refused_before_any_scoring(scene_dir, monkeypatch):
    """The scenes sorted before it were scored (their models trained) first, then the run
    failed with no table written; a truth raster that did not fit was refused up front."""
    import scipy.io

    import hsanomaly.experiments.benchmark as bench

    cube, _ = synthetic_cube(rows=20, cols=30)
    scipy.io.savemat(scene_dir / "z.mat", {"data": np.moveaxis(cube, 0, -1),
                                           "map": np.eye(30, 20)})
    monkeypatch.setattr(bench, "map_scenes", lambda *a, **k: pytest.fail("scored"))
    with pytest.raises(HsanomalyError, match=r"z.mat: the ground truth 'map' is 30 x 20 pixels"):
        run_benchmark(scene_dir, ["rx"], [0])


def test_a_mat_scene_without_a_truth_is_skipped_as_such(scene_dir):
    """It was "no target pixel in the ground truth", as if the truth had been read."""
    import scipy.io

    cube, _ = synthetic_cube(rows=20, cols=30)
    scipy.io.savemat(scene_dir / "mat" / "plain.mat", {"data": np.moveaxis(cube, 0, -1)})
    result = run_benchmark(scene_dir, ["rx"], [0])
    assert "mat/plain: no ground-truth variable in the .mat file" in result.skipped


@pytest.mark.train
def test_a_cached_training_an_interrupt_stopped_goes_on_where_it_stopped(scene_dir, tmp_path):
    """The rerun started the training over, advising 'resume=True', which the benchmark and
    thesis commands do not have; a checkpoint of other settings is trained over, as before."""
    pytest.importorskip("torch")
    import warnings

    from hsanomaly.training import STATE_FILE, checkpoint_dir, train

    scene = find_scenes(scene_dir)[0]
    cache = ModelCache(tmp_path / "cache", iterations=4)
    out = cache.path(scene, 0, 4, {})
    out.parent.mkdir(parents=True)
    with pytest.raises(HsanomalyError, match="cancelled"):
        train([scene.path], out, iterations=4, seed=0, progress=False,
              callback=lambda fraction, message: fraction >= 0.5)
    assert (checkpoint_dir(out) / STATE_FILE).exists()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        resumed = cache.get(scene, 0)
    assert not [w for w in said if "starts over" in str(w.message)]
    straight = ModelCache(tmp_path / "straight", iterations=4).get(scene, 0)
    assert (resumed.path / "generator.onnx").read_bytes() == \
        (straight.path / "generator.onnx").read_bytes()
    # a checkpoint of other settings at the model's path: trained over, not an error
    other = cache.path(scene, 1, 4, {})
    with pytest.raises(HsanomalyError, match="cancelled"):
        train([scene.path], other, iterations=4, seed=5, progress=False,
              callback=lambda fraction, message: fraction >= 0.5)
    assert cache.get(scene, 1).path == other and (other / "model.json").exists()


@pytest.mark.parametrize("failure", ["raises", "killed"])
def test_a_scene_that_fails_in_a_worker_stops_the_run_at_once(tmp_path, failure):
    """A failing scene was said only after every queued scene had run (hours of them, thrown
    away); a worker killed for memory left the pool waiting for ever."""
    import os
    import subprocess
    import sys
    import time

    fail = {"raises": "raise ValueError('scene 0 failed')",
            "killed": "os.kill(os.getpid(), signal.SIGKILL)"}[failure]     # as the OOM killer
    (tmp_path / "scenes.py").write_text(
        "import os, pathlib, signal, time\n"
        "def scene(index, log):\n"
        "    pathlib.Path(f'started-{index}').touch()\n"
        "    if index == 0:\n"
        f"        {fail}\n"
        "    time.sleep(3)\n"
        "    return index\n")
    (tmp_path / "run.py").write_text(
        "import scenes\n"
        "from hsanomaly.experiments.pool import map_scenes\n"
        "if __name__ == '__main__':\n"
        "    map_scenes(scenes.scene, [(i,) for i in range(8)], 2, print)\n")
    tree = str(Path(__file__).resolve().parents[1])
    start = time.monotonic()
    result = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": tree})
    assert result.returncode != 0 and time.monotonic() - start < 12
    said = {"raises": "ValueError: scene 0 failed",
            "killed": "a worker process ended without a result (killed for memory?)"}[failure]
    assert said in result.stderr
    assert len(list(tmp_path.glob("started-*"))) <= 3        # no scene started after it


def test_a_benchmark_output_named_with_a_control_character_is_refused(tmp_path):
    """``--out`` and ``--markdown`` took a newline in their names: a folder "b\\no" was made,
    and every message naming it broke in two. The other doors refused it."""
    from hsanomaly.experiments.tables import check_results

    for args in ((tmp_path / "b\no",), (tmp_path / "out", tmp_path / "t\tables.md")):
        with pytest.raises(HsanomalyError, match="holds a control character"):
            check_results(*args)
    assert not list(tmp_path.iterdir())


def test_a_reference_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" begins with a byte-order mark: its first column read "\\ufeffscene",
    and the file was refused as having no column scene."""
    from hsanomaly.experiments.benchmark import read_reference

    path = tmp_path / "reference.csv"
    path.write_bytes("scene,method,auc\r\nZürich,rx,0.91\r\n".encode("utf-8-sig"))
    assert read_reference(path) == {"Zürich": {"rx": 0.91}}


def test_a_reference_csv_excel_saved_in_another_locale_is_told_how_to_save_it(tmp_path):
    """A German Excel's ';' and decimal commas, and a Windows code page, were refused as
    lacking the columns scene, method, auc, which they have."""
    from hsanomaly.experiments.benchmark import read_reference

    path = tmp_path / "reference.csv"
    path.write_bytes("scene;method;auc\r\nabu-airport-1;Super-AD;0,9418\r\n".encode("utf-8"))
    with pytest.raises(HsanomalyError, match=r"auc \(its columns are separated by ';', as Excel "
                                             r"writes them where decimals take a comma"):
        read_reference(path)
    path.write_bytes("scene,method,auc\r\nZürich,rx,0.91\r\n".encode("cp1252"))
    with pytest.raises(HsanomalyError, match=r"reference.csv: not UTF-8 text; save it as "
                                             r"\"CSV UTF-8\"$"):
        read_reference(path)
