"""A run killed between the renames that put its outputs in place (heatmap first, polygons
after): the next hsanomaly write in that folder finishes them, so the heatmap and the
polygons come from one run, never a new heatmap beside an earlier run's polygons."""

import subprocess
import sys

from .conftest import assert_ok, make_scene, run_cli, sha256

KILL_AFTER_HEATMAP = """
import os, runpy, sys
from pathlib import Path

from hsanomaly.io import atomic

real_replace, real_rename2 = os.replace, atomic._rename2

def rename_then_die(rename, src, dst, *flag):
    done = rename(src, dst, *flag)
    if Path(dst).name == "heat.tif" and Path(src).parent.name.endswith(".hsanomaly-tmp") and \
            done is not False:
        os._exit(9)
    return done

os.replace = lambda src, dst: rename_then_die(real_replace, src, dst)
atomic._rename2 = lambda src, dst, flag: rename_then_die(real_rename2, src, dst, flag)
sys.argv = ["hsanomaly"] + sys.argv[1:]
runpy.run_module("hsanomaly.cli", run_name="__main__")
"""


def test_polygons_of_a_killed_run_are_put_beside_its_heatmap(tmp_path):
    scene = make_scene(tmp_path / "scene.tif")
    heat, gpkg = tmp_path / "heat.tif", tmp_path / "targets.gpkg"
    outputs = [heat, "--polygons", gpkg, "--tile", "16", "--far", "0.01", "-q"]
    assert_ok(run_cli("detect", scene, *outputs, "--score", "rx"))
    earlier_polygons = sha256(gpkg)

    died = subprocess.run([sys.executable, "-c", KILL_AFTER_HEATMAP, "detect", str(scene),
                           *map(str, outputs), "--score", "lrx"], capture_output=True, text=True)
    assert died.returncode == 9, died.stderr
    staged = [p for p in tmp_path.glob(".targets.gpkg.*.hsanomaly-tmp/targets.gpkg")]
    assert len(staged) == 1 and sha256(gpkg) == earlier_polygons    # the mixed state
    new_polygons = sha256(staged[0])

    result = assert_ok(run_cli("detect", scene, tmp_path / "other.tif", "--score", "rx", "-q"))
    assert "Warning:" in result.stderr and "targets.gpkg: completed" in result.stderr
    assert sha256(gpkg) == new_polygons
    assert_ok(run_cli("detect", scene, tmp_path / "ref.tif", "--score", "lrx", "--tile", "16",
                      "-q"))
    assert heat.read_bytes() == (tmp_path / "ref.tif").read_bytes()
    assert not list(tmp_path.glob(".*hsanomaly-tmp"))
