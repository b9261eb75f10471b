"""A message names an argument as the door in use spells it: Python callers read the keyword,
the command line its flag, QGIS its field (tests/qgis). They all read one message."""

import ast
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

import hsanomaly
from hsanomaly.cli import main
from hsanomaly.errors import HsanomalyError
from hsanomaly.spelling import (command_line, current, either, fields, spell, spelled, submit,
                                takes)

PACKAGE = Path(hsanomaly.__file__).parent


def test_each_door_spells_an_argument_its_own_way():
    assert spell("neighbour_weight") == "'neighbour_weight'"
    assert spell("refine", placeholder="N") == "refine=N" and spell("solver", "thesis") == "solver='thesis'"
    assert spell("device", "CUDA") == "device='CUDA'"                 # a value, not a placeholder
    assert spell("resume", True) == "resume=True"
    assert spell("recon_out", python="extras['recon']") == "extras['recon']"
    with spelled(command_line({"src": "SRC", "out": "--out"})):
        assert spell("src") == "SRC" and spell("out") == "--out"
        assert spell("neighbour_weight") == "--neighbour-weight"      # not in the table: a flag
        assert spell("refine", placeholder="N") == "--refine N" and spell("resume", True) == "--resume"
        assert spell("scheduler", "not a url") == "--scheduler 'not a url'"    # as typed
        assert spell("device", "") == "--device ''"
        assert spell("recon_out", python="extras['recon']") == "--recon-out"
    with spelled(fields({"tile": "Tile size", "model": "Model bundle folder"})):
        assert spell("tile") == "'Tile size'"
        assert spell("resume", True) == "resume=True (from Python)"     # no field: QGIS can't
        assert spell("model", placeholder="DIR") == "'Model bundle folder'"   # the field says it
        assert spell("tile", 7) == "'Tile size' (7)"
        assert takes("tile") and not takes("resume")      # a remedy it cannot follow: unsaid
    assert current() is None                                          # put back
    assert takes("resume")
    with spelled(command_line({})):
        assert takes("resume")



def test_a_remedy_the_door_cannot_follow_is_left_out():
    """QGIS's dialogs were told "pass overwrite=True (from Python)" and "a larger 'sample'
    (from Python)" (the QGIS audit's F5, the review's F8)."""
    remedies = ("delete it", "choose another name", (f"pass {spell('overwrite', True)}",
                                                      "overwrite"))
    assert either(*remedies) == "delete it, choose another name or pass overwrite=True"
    with spelled(fields({"tile": "Tile size"})):
        assert either(*remedies) == "delete it or choose another name"
        assert either(("a larger sample", "sample"), "fewer 'Tile size'") == "fewer 'Tile size'"
        assert either(("a larger sample", "sample")) == ""


def test_a_bad_value_is_named_as_each_door_takes_it(synthetic_raster, tmp_path):
    path = synthetic_raster[0]
    with pytest.raises(HsanomalyError, match=r"^'neighbour_weight' must be at least 0, got -1"):
        hsanomaly.detect(path, tmp_path / "h.tif", score="mlrx", neighbour_weight=-1)
    result = CliRunner().invoke(main, ["detect", str(path), str(tmp_path / "h.tif"), "--score",
                                       "mlrx", "--neighbour-weight", "-1"])
    assert result.exit_code == 1
    assert "Error: --neighbour-weight must be at least 0, got -1.0" in result.output
    assert current() is None                  # the command put the Python spelling back


def test_positional_arguments_are_named_as_the_command_line_shows_them(synthetic_raster):
    path = str(synthetic_raster[0])
    with pytest.raises(HsanomalyError, match="'dst' is the same file as the input 'src'"):
        hsanomaly.detect(path, path, score="rx")
    result = CliRunner().invoke(main, ["detect", path, path, "--score", "rx"])
    assert "DST is the same file as the input SRC" in result.output
    with pytest.raises(HsanomalyError, match="'truth': expected a raster's path"):
        hsanomaly.evaluate(path, {"a": "dict"})


def test_the_engines_threads_and_a_batch_name_arguments_as_their_caller():
    with spelled(command_line({})), ThreadPoolExecutor(2) as pool:
        assert submit(pool, spell, "tile").result() == "--tile"
    with ThreadPoolExecutor(1) as pool:
        assert submit(pool, spell, "tile").result() == "'tile'"


def test_a_dask_worker_names_arguments_as_the_caller(monkeypatch, tmp_path):
    """The worker's task carries the caller's spelling with the scorer and the store."""
    import hsanomaly.distributed as dist
    from hsanomaly.workers import code

    seen = []
    store = type("Store", (), {"path": tmp_path, "put": lambda self, i, t: seen.append(spell("tile"))})()
    monkeypatch.setattr(dist, "score_tile", lambda source, scorer, window: None)
    assert dist._score_into_store(None, (None, store, command_line({}), code()), 0, None) == (0, [])
    assert seen == ["--tile"]


FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _flags_written(tree):
    """Strings outside docstrings that spell a flag: ``"--tile"``, or ``f"--{name}"``, whose
    text before the name ends in "--"."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
             and isinstance(node.value, str) and id(node) not in docstrings
             and FLAG.search(node.value) and "pip install" not in node.value]   # pip's flags
    for text in (node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)):
        found += [part for part, after in zip(text.values, text.values[1:])
                  if isinstance(part, ast.Constant) and isinstance(after, ast.FormattedValue)
                  and re.search(r"(?<![\w-])--$", part.value)]
    return found


def test_no_message_outside_the_command_line_spells_a_flag():
    """A flag written into a library or QGIS message reads wrong to a Python caller and in
    QGIS: messages name arguments with ``spell``."""
    plugin = PACKAGE.parent / "qgis_plugin"
    files = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts
             and p.name != "spelling.py"] + [p for p in sorted(plugin.rglob("*.py"))
                                             if p.name != "dependencies.py"]   # pip's own flags
    written = [f"{path}:{node.lineno}: {node.value!r}" for path in files
               for node in _flags_written(ast.parse(path.read_text()))]
    assert not written, written
    assert _flags_written(ast.parse('x = f"--{name}: bad"'))      # the form the old code had
