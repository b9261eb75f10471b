"""Data loss and late failure in the research commands: `benchmark` and `thesis` refuse, before
any work, an output folder they cannot write and a file there that they did not write."""

import os

import numpy as np
import pytest

from synthetic import synthetic_cube, write_mat, write_raster

from .conftest import Tree, assert_ok, assert_one_error, make_scene, run_cli

MINE = "my own notes\n"


@pytest.fixture
def data(tmp_path):
    """A folder with one small .mat scene with ground truth."""
    root = tmp_path / "data"
    root.mkdir()
    cube, truth = synthetic_cube(rows=20, cols=20, targets=((5, 5), (14, 12)), seed=1)
    write_mat(root / "alpha.mat", cube, truth)
    return root


def benchmark(data, out, *args):
    return run_cli("benchmark", data, "--scores", "rx", "--quick", "--out", out, "-q", *args)


@pytest.mark.parametrize("name", ["results.csv", "summary.csv", "results.json", "results.md"])
def test_benchmark_refuses_to_replace_a_file_it_did_not_write(tmp_path, data, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(MINE)
    tree = Tree(tmp_path)
    assert_one_error(benchmark(data, out), str(out / name), "--out", "--overwrite")
    tree.assert_unchanged()


def test_benchmark_refuses_a_markdown_it_did_not_write(tmp_path, data):
    notes = tmp_path / "notes.md"
    notes.write_text(MINE)
    tree = Tree(tmp_path)
    assert_one_error(benchmark(data, tmp_path / "out", "--markdown", notes), "notes.md",
                     "--markdown", "--overwrite")
    tree.assert_unchanged()


def test_benchmark_refuses_an_out_that_is_a_file(tmp_path, data):
    (tmp_path / "out").write_text(MINE)
    tree = Tree(tmp_path)
    assert_one_error(benchmark(data, tmp_path / "out"), "out", "is a file", status=2)
    tree.assert_unchanged()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_benchmark_refuses_an_out_it_cannot_write_into(tmp_path, data):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        tree = Tree(tmp_path)
        assert_one_error(benchmark(data, locked), "--out", "not writable")
        tree.assert_unchanged()
    finally:
        locked.chmod(0o755)


def test_benchmark_replaces_its_own_files_and_others_only_with_overwrite(tmp_path, data):
    out, markdown = tmp_path / "out", tmp_path / "benchmark.md"
    assert_ok(benchmark(data, out, "--markdown", markdown))
    assert {p.name for p in out.iterdir()} == {"results.csv", "summary.csv", "results.json",
                                               "results.md"}
    assert_ok(benchmark(data, out, "--markdown", markdown))      # a rerun over its own files
    (out / "results.csv").write_text(MINE)
    markdown.write_text(MINE)
    assert_ok(benchmark(data, out, "--markdown", markdown, "--overwrite"))
    assert (out / "results.csv").read_text().startswith("scene,method,seed,auc")
    assert markdown.read_text().startswith("# hsanomaly benchmark")


@pytest.mark.parametrize("planted", ["report.md", "figures/report.json",
                                     "figures/alpha-fig12-log-roc.png"])
def test_thesis_refuses_to_replace_a_file_it_did_not_write(tmp_path, data, planted):
    out = tmp_path / "docs"
    (out / "figures").mkdir(parents=True)
    (out / planted).write_text(MINE)
    (out / "figures" / "beta-fig12-log-roc.png").write_text(MINE)   # another scene's: not at stake
    tree = Tree(tmp_path)
    result = run_cli("thesis", data, "--out", out, "--scenes", "alpha", "-q")
    assert_one_error(result, str(out / planted), "--out", "--overwrite")
    tree.assert_unchanged()


@pytest.mark.parametrize("command", ["benchmark", "thesis"])
def test_a_users_folder_at_a_cached_models_path_is_refused_before_any_work(tmp_path, data,
                                                                         command):
    """``--models`` keeps bundles at ``<scene>/seed<k>-it<n>[-options]``; a folder of the user's
    there (here where the thesis's half-length critics, or the whitened recon model, go) would
    be refused only when its model came to be trained, after hours; it is refused first."""
    folder = "seed0-it10-whitenTrue" if command == "benchmark" else "seed0-it5-latent_dim4"
    taken = tmp_path / "models" / "alpha" / folder
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text(MINE)
    tree = Tree(tmp_path)
    if command == "benchmark":
        result = run_cli("benchmark", data, "--scores", "rx,recon", "--seeds", "0",
                         "--iterations", "10", "--models", tmp_path / "models",
                         "--out", tmp_path / "results", "-q")
    else:
        result = run_cli("thesis", data, "--out", tmp_path / "docs", "--scenes", "alpha",
                         "--iterations", "10",
                         "--models", tmp_path / "models", "-q")
    assert_one_error(result, str(taken), "not a model bundle")
    tree.assert_unchanged()


def test_a_reader_that_stops_early_is_not_an_error(tmp_path, earlier, truth):
    """`hsanomaly evaluate ... | head -1` printed "Error: hsanomaly: broken pipe". It ends as a
    tool killed by SIGPIPE does: nothing on stderr, status 141."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)                                # the reader is gone before the first line
    try:
        result = subprocess.run([sys.executable, "-m", "hsanomaly.cli", "evaluate", str(earlier),
                                 str(truth)], stdout=write, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 141 and result.stderr == "", result.stderr


def _folder_command(command, tmp_path, data, folder):
    """The command line of ``command`` writing its folder output into ``folder``."""
    if command == "benchmark":
        return benchmark(data, folder)
    if command == "detect-many":
        scene = make_scene(tmp_path / "scene.tif", rows=20, cols=20)
        return run_cli("detect-many", scene, "--out-dir", folder, "--score", "rx", "-q")
    cube, truth = synthetic_cube(rows=20, cols=20, targets=((5, 5),), seed=1)
    heatmap = write_raster(tmp_path / "heat.tif", cube[:1])
    truth_path = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    return run_cli("evaluate", heatmap, truth_path, "--plots", folder)


@pytest.mark.parametrize("command", ["benchmark", "evaluate", "detect-many"])
def test_an_output_folder_is_made_with_its_parents_or_refused_in_one_line(tmp_path, data,
                                                                          command):
    """One check for every output folder: the evaluate plots' made missing parents, the
    benchmark's refused them ("output directory does not exist") and detect-many found a
    file in the way only when it made the folder."""
    blocker = tmp_path / "blocker"
    blocker.write_text(MINE)
    result = _folder_command(command, tmp_path, data, blocker / "out")
    assert_one_error(result, f"{blocker / 'out'}: cannot create", f"({blocker} is not a "
                                                                  "writable directory)")
    nested = tmp_path / "new" / "nested"
    assert_ok(_folder_command(command, tmp_path, data, nested))
    assert any(nested.iterdir())
