"""Data loss: ``train --out`` on a directory that is not an hsanomaly bundle (or is in use).

All are refused before torch is asked to do anything, so these cases are quick.
"""

import json
import os

from .conftest import Tree, assert_one_error, run_cli


def test_directory_with_a_foreign_model_json(tmp_path, scene):
    out = tmp_path / "work"
    (out / "sub").mkdir(parents=True)
    (out / "model.json").write_text('{"my": "own model"}')
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "data.csv").write_text("1,2,3")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", scene, "--out", out, "-q"), "--out", "not a model bundle")
    tree.assert_unchanged()


def test_bundle_marker_with_the_users_files_beside_it(tmp_path, scene):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.json").write_text(json.dumps({"format": "hsanomaly-model", "files": {}}))
    (out / "thesis-draft.docx").write_text("keep me")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", scene, "--out", out, "-q"), "--out holds a model bundle "
                     "and thesis-draft.docx, which is not part of one")
    tree.assert_unchanged()


def test_current_directory(tmp_path, scene):
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", scene, "-o", ".", "-q", cwd=tmp_path), "current directory")
    tree.assert_unchanged()


def test_parent_of_the_current_directory(tmp_path, scene):
    (tmp_path / "empty").mkdir()
    tree = Tree(tmp_path)
    result = run_cli("train", scene, "-o", "..", "-q", cwd=tmp_path / "empty")
    assert_one_error(result, "current directory")
    tree.assert_unchanged()


def test_out_is_a_symbolic_link(tmp_path, scene):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "model")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("train", scene, "--out", tmp_path / "model", "-q"), "symbolic link")
    tree.assert_unchanged()


def test_checkpoint_name_taken_by_the_users_directory(tmp_path, scene):
    taken = tmp_path / "model.checkpoint"
    taken.mkdir()
    (taken / "results.csv").write_text("keep me")
    tree = Tree(tmp_path)
    result = run_cli("train", scene, "--out", tmp_path / "model", "-q")
    assert_one_error(result, "checkpoint directory")
    tree.assert_unchanged()
