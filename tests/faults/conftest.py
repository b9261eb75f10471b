"""Fault and bad-input cases, each run through the real CLI in a subprocess.

Every case follows one pattern: ``tree = Tree(tmp_path)`` records the sha256 of every file
under the case's folder (inputs and earlier outputs); the command runs in a child process
(``hsanomaly_cli``), optionally under a file-size limit; ``assert_one_error`` checks the exit
status, exactly one ``Error:`` line on stderr and no traceback; ``tree.assert_unchanged()``
checks that every file is as it was and that nothing new is left (no temporary file, no
half-written output, no tile store unless the case expects one).
"""

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthetic import synthetic_cube, write_raster

CLI = [sys.executable, "-m", "hsanomaly.cli"]


def run_cli(*args, cwd=None, fsize=None, timeout=120):
    """Run ``hsanomaly ARGS`` in a child process; ``fsize``: RLIMIT_FSIZE in bytes for it."""
    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit)


def start_cli(*args, cwd=None):
    """``hsanomaly ARGS`` started in the background (to be killed mid-run)."""
    return subprocess.Popen(CLI + [str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_one_error(result, *fragments, status=1):
    """Exit ``status``, exactly one line on stderr, starting "Error:", no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Tree:
    """The files (sha256) and symbolic links under ``root``, to compare after a command."""

    def __init__(self, root):
        self.root = Path(root)
        self.before = self.snapshot()

    def snapshot(self):
        found = {}
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(folder) / name
                rel = str(path.relative_to(self.root))
                if path.is_symlink():
                    found[rel] = "link:" + os.readlink(path)
                elif path.is_file():
                    found[rel] = sha256(path)
                else:
                    found[rel] = "dir"
        return found

    def assert_unchanged(self, new=()):
        """Every earlier file as it was; nothing new but the relative paths in ``new``
        (a trailing "/" allows a directory and all it holds)."""
        after = self.snapshot()
        for rel, digest in self.before.items():
            assert after.get(rel) == digest, f"{rel} changed or vanished"
        extra = [rel for rel in after if rel not in self.before and not any(
            rel == allowed.rstrip("/") or (allowed.endswith("/") and rel.startswith(allowed))
            for allowed in new)]
        assert not extra, f"left behind: {extra}"
        return after


def make_scene(path, seed=0, rows=40, cols=50, bands=12):
    cube, _ = synthetic_cube(bands=bands, rows=rows, cols=cols, seed=seed)
    return write_raster(path, cube)


@pytest.fixture
def scene(tmp_path):
    """A 12-band 40x50 GeoTIFF."""
    return make_scene(tmp_path / "scene.tif")


@pytest.fixture
def earlier(tmp_path, scene):
    """heat.tif: a good heatmap from an earlier run on other pixels of the scene (so that a
    run that replaced it would show; the same input updated in its place, as a result of
    another input is not replaced), made with the library in this process."""
    import hsanomaly

    make_scene(scene, seed=5)                      # the input as it was then
    hsanomaly.detect(scene, tmp_path / "heat.tif", score="rx", tile=16)
    make_scene(scene)                              # and as it is now
    return tmp_path / "heat.tif"


def interrupted(scene, dst, **options):
    """The tile store of a run stopped after its last tile, before assembly (this process)."""
    import hsanomaly

    def stop(fraction, message):
        if fraction >= 1.0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hsanomaly.detect(scene, dst, callback=stop, **{"score": "rx", "tile": 16, **options})
    return Path(str(dst) + ".partial")


def reference(scene, path, **options):
    """The heatmap an uninterrupted run writes (the library in this process)."""
    import hsanomaly

    hsanomaly.detect(scene, path, **{"score": "rx", "tile": 16, **options})
    return Path(path).read_bytes()


@pytest.fixture
def truth(tmp_path):
    _, mask = synthetic_cube()
    return write_raster(tmp_path / "truth.tif", mask[None].astype(np.float32))


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.communicate()
