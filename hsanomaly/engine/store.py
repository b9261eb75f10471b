"""Finished tiles on disk, one file each: what makes --resume and distributed workers safe.

A run's tiles live in ``<output>.partial/`` next to the output. Each tile is written to a
temporary name and renamed, so a tile file is either whole or absent; a tile written twice
(a retried task) is simply replaced by identical content. ``manifest.json`` records the
run's configuration, and a resume with another configuration is refused.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import HsanomalyError


def store_path(dst):
    """Where the tiles of the run writing ``dst`` are kept: ``<dst>.partial/``."""
    return Path(os.path.abspath(str(dst) + ".partial"))


class TileStore:
    def __init__(self, path, manifest, resume=False):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        manifest = json.loads(json.dumps(manifest))  # normalise to plain JSON
        if self.path.exists() and resume and manifest_path.exists():
            previous = json.loads(manifest_path.read_text())
            if previous != manifest:
                raise HsanomalyError(
                    f"{self.path}: an interrupted run with other settings is here; "
                    "rerun without --resume to start over")
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)
            manifest_path.write_text(json.dumps(manifest, indent=1))

    def _file(self, index):
        return self.path / f"tile_{index:07d}.npz"

    def done(self):
        return {int(p.stem[5:]) for p in self.path.glob("tile_*.npz")}

    def put(self, index, outputs):
        tmp = self.path / f".tile_{index:07d}.{os.getpid()}.npz"
        with open(tmp, "wb") as f:
            np.savez(f, **outputs)
        os.replace(tmp, self._file(index))

    def get(self, index):
        with np.load(self._file(index), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)
