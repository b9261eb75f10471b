"""The thesis reproduction on a tiny configuration (hsanomaly.experiments.thesis, cli/thesis.py)."""

import importlib.util
import json
import warnings
from dataclasses import asdict

import pytest
from click.testing import CliRunner

from hsanomaly.experiments.thesis import (THESIS_FINDINGS, SceneResult, ThesisConfig,
                                         check_findings, generate_thesis)

from hsanomaly.errors import HsanomalyError
from synthetic import synthetic_cube, write_mat

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the thesis reproduction trains models: needs torch")


def _result(name, **aucs):
    """A SceneResult whose every variant has the given AUC per experiment."""
    def variants(names, auc):
        return {n: {"auc": a, "log_auc": a / 2} for n, a in zip(names, auc)}

    return SceneResult(name, rows={
        "critic_vs_recon": variants(["RX", "GMM", "critic", "recon"], aucs["cvr"]),
        "background_only": variants(["unsupervised", "background only"], aucs["bg"]),
        "c2": variants(["C2=0", "C2=0.1", "C2=1"], aucs["c2"]),
        "early_critic": variants(["latent 4, 8 it", "latent 4, 4 it", "latent 64, 4 it"],
                                 aucs["early"]),
        "solver": variants(["thesis 4x50", "thesis 16x100", "fast"], aucs["solver"]),
        "window": variants(["1x1 critic", "1x1 recon", "5x5 critic", "5x5 recon"],
                           aucs["window"])})


def test_findings_are_checked_against_the_measured_means():
    config = ThesisConfig(iterations=8, c2_values=(0.1, 1.0))
    agreeing = _result("a", cvr=[0.9, 0.9, 0.5, 0.9], bg=[0.9, 0.905], c2=[0.9, 0.8, 0.7],
                       early=[0.5, 0.6, 0.7], solver=[0.8, 0.95, 0.9],
                       window=[0.6, 0.9, 0.5, 0.85])
    checks = check_findings([agreeing], config)
    assert set(checks) == set(THESIS_FINDINGS)
    assert all(agrees for agrees, _ in checks.values())
    assert checks["c2"][1] == "C2=0 0.9000, C2=0.1 0.8000, C2=1 0.7000"

    differing = _result("b", cvr=[0.9, 0.9, 0.95, 0.9], bg=[0.9, 0.8], c2=[0.8, 0.9, 0.7],
                        early=[0.7, 0.6, 0.5], solver=[0.9, 0.9, 0.9],
                        window=[0.6, 0.8, 0.5, 0.95])
    assert not any(agrees for agrees, _ in check_findings([differing], config).values())
    means = check_findings([agreeing, differing], config)      # means over the scenes
    assert means["critic_vs_recon"] == (True, "recon 0.9000, critic 0.7250")
    del agreeing.rows["window"]
    assert "window" not in check_findings([agreeing], ThesisConfig(large_window=0,
                                                                   c2_values=(0.1, 1.0)))


@needs_torch
def test_thesis_runs_every_experiment_and_writes_markdown_with_figures(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cube, truth = synthetic_cube(rows=24, cols=24, targets=((5, 5), (15, 17)), seed=3)
    write_mat(data / "tiny.mat", cube, truth)
    out = tmp_path / "docs"
    config = ThesisConfig(scenes=("tiny",), iterations=2, solver_pixels=20, c2_values=(1.0,),
                          window_iterations=2, codebook=1024)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        path = generate_thesis(data, out, config, models_dir=tmp_path / "models")
    text = path.read_text()
    # recon on models trained as the thesis trained them is the point: no advice to retrain
    assert not [w for w in said if "ranks best on a model trained" in str(w.message)]
    assert path == out / "report.md"
    assert "2 generator iterations" in text and "plus 20 background pixels" in text
    assert "window experiment 5x5 at 2 iterations" in text
    for claim in THESIS_FINDINGS.values():
        assert claim in text
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figures) == 10 and all(f"(figures/{name})" in text for name in figures)
    document = json.loads((out / "figures" / "report.json").read_text())
    rows = document["scenes"][0]["rows"]
    assert rows["solver"]["fast"]["pixels"] == 20 + int(truth.sum())
    assert set(rows["window"]) == {"1x1 critic", "1x1 recon", "5x5 critic", "5x5 recon"}
    assert set(rows["c2"]) == {"C2=0", "C2=1"}
    assert all(0.0 <= v["auc"] <= 1.0 for experiment in rows.values() for v in experiment.values())
    # every file is marked as ours, so a rerun replaces them without --overwrite
    from hsanomaly.experiments.scenes import find_scenes
    from hsanomaly.experiments.thesis import _outputs

    outputs = _outputs(out, out / "figures", find_scenes(data))
    assert len(outputs) == 2 + len(figures) and all(is_own(p) for p, is_own, _ in outputs)

    # the figures are replaced with the document that describes them, or not at all: each
    # figure was replaced as its scene finished, beside the earlier run's document
    import errno

    import hsanomaly.experiments.thesis as thesis

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def too_large(*args):
        raise OSError(errno.EFBIG, "File too large")

    real, thesis.format_thesis = thesis.format_thesis, too_large
    try:
        with pytest.raises(HsanomalyError, match="report.md: cannot write .file too large"):
            generate_thesis(data, out, ThesisConfig(**{**asdict(config), "seed": 1}),
                            models_dir=tmp_path / "models")
    finally:
        thesis.format_thesis = real
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_cli_passes_its_configuration(tmp_path, monkeypatch):
    import hsanomaly.experiments.thesis
    from hsanomaly.cli.thesis import thesis

    calls = []
    monkeypatch.setattr(hsanomaly.experiments.thesis, "generate_thesis",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or "docs/report.md")
    outcome = CliRunner().invoke(thesis, [str(tmp_path), "--scenes", "a, b", "--iterations", "10",
                                          "--solver-pixels", "5", "--window-iterations", "7",
                                          "--codebook", "512",
                                          "--jobs", "2", "-q"])
    assert outcome.exit_code == 0, outcome.output
    (data, out, config), kwargs = calls[0]
    assert (str(data), out, config.scenes, config.iterations, config.solver_pixels,
            config.window_iterations, config.codebook) == (
        str(tmp_path), "docs", ("a", "b"), 10, 5, 7, 512)
    assert kwargs["jobs"] == 2 and "docs/report.md" in outcome.output
    CliRunner().invoke(thesis, [str(tmp_path), "-q"])
    assert calls[1][0][2].scenes == ThesisConfig().scenes


def test_an_even_window_is_refused_before_any_work():
    """--window 2 ran the other experiments and trained for minutes before failing."""
    from hsanomaly.errors import HsanomalyError

    for window in (2, 1):          # 1: the 1x1 model it is compared with, trained again
        with pytest.raises(HsanomalyError, match="'large_window' must be odd and at least 3 "
                                                 rf"\(or 0 to skip .*\), got {window}"):
            ThesisConfig(large_window=window)
    assert ThesisConfig(large_window=0).large_window == 0


def test_without_training_installed_nothing_is_started(tmp_path, monkeypatch):
    """It scored, then failed at its first model, leaving an empty figures/ folder."""
    import importlib.util

    from hsanomaly.errors import HsanomalyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(HsanomalyError, match=r"training needs torch: pip install torch .* && pip install "
                                                  r"'hsanomaly\[cpu,train\]'"):
        generate_thesis(tmp_path, tmp_path / "docs", ThesisConfig(scenes=("tiny",)))
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize("case, message", [
    ("no truth variable", "b.mat: no ground-truth variable in the .mat file"),
    ("every pixel a target", "b.mat: no background pixel in the ground truth"),
    ("no target", "b.mat: no target pixel in the ground truth"),
    ("truth of another size", "b.mat: the ground truth 'map' is 12 x 10 pixels")])
def test_a_scene_the_experiments_cannot_use_is_refused_before_any_work(tmp_path, monkeypatch,
                                                                        case, message):
    """The scenes before it ran every experiment first (hours at the defaults), then the run
    failed with nothing written; a truth of targets only ended in a traceback."""
    import numpy as np
    import scipy.io

    import hsanomaly.experiments.thesis as thesis

    monkeypatch.setattr(thesis, "map_scenes", lambda *a, **k: pytest.fail("work started"))
    data = tmp_path / "data"
    data.mkdir()
    cube, truth = synthetic_cube(rows=10, cols=12, targets=((3, 3),))
    write_mat(data / "a.mat", cube, truth)
    layout = {"no truth variable": {},
              "every pixel a target": {"map": np.ones((10, 12))},
              "no target": {"map": np.zeros((10, 12))},
              "truth of another size": {"map": np.zeros((12, 10)) + np.eye(12, 10)}}[case]
    scipy.io.savemat(data / "b.mat", {"data": np.moveaxis(cube, 0, -1), **layout})
    with pytest.raises(HsanomalyError, match=message):
        generate_thesis(data, tmp_path / "docs", ThesisConfig(scenes=("a", "b")))
    assert not (tmp_path / "docs").exists()


def test_a_failed_reproduction_leaves_no_folder_it_made(tmp_path, monkeypatch):
    """Its --out folder and the parents it had made were left empty (only figures/ went)."""
    import hsanomaly.experiments.thesis as thesis

    def failing(*args, **kwargs):
        raise HsanomalyError("a scene failed")

    monkeypatch.setattr(thesis, "map_scenes", failing)
    data = tmp_path / "data"
    data.mkdir()
    cube, truth = synthetic_cube(rows=10, cols=12, targets=((3, 3),))
    write_mat(data / "a.mat", cube, truth)
    (tmp_path / "kept").mkdir()
    with pytest.raises(HsanomalyError, match="a scene failed"):
        generate_thesis(data, tmp_path / "kept" / "new" / "docs", ThesisConfig(scenes=("a",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kept"]
    assert not any((tmp_path / "kept").iterdir())
