"""Scene discovery: every scene with ground truth under a data folder.

Scenes are .mat files with a cube and a truth variable, and rasters (.tif/.tiff) with a truth
raster beside them named ``<stem>-truth.tif`` or ``<stem>_truth.tif``. A scene's dataset is
the top-level folder it lies in (``OT-AD/abu-airport-1`` belongs to ``OT-AD``), the unit the
leave-one-dataset-out protocol holds out. Two scenes may show one image (HYDICE Urban is in two
public sets, as two band sets): ``same_images`` tells them by their pixels, and the held-out
protocols hold them out together.
"""

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import HsanomalyError
from ..io import read_scene
from ..io.checks import warn
from ..io.paths import check_path_kind
from .tables import MEAN

# two scenes on one grid whose brightness maps rank-correlate above this show one image: one
# image's band sets and scalings far above it, different images far below
SAME_IMAGE = 0.5
TRUTH_SUFFIXES = ("-truth", "_truth")
RASTER_SUFFIXES = (".tif", ".tiff")
NO_TRUTH_VARIABLE = "no ground-truth variable in the .mat file"


@dataclass(frozen=True)
class BenchmarkScene:
    name: str                 # path relative to the data folder, without suffix
    path: Path
    truth: Optional[Path]     # truth raster; None for .mat scenes (truth inside)

    @property
    def dataset(self):
        """The top-level folder of the scene under the data folder ("" for a scene at the top)."""
        return self.name.split("/")[0] if "/" in self.name else ""

    def load(self):
        """The whole scene in memory (hsanomaly.io.Scene); truth is None when the .mat has none."""
        return read_scene(self.path, truth=self.truth)

    def check_truth(self, classes=False):
        """Refuse a scene its truth does not fit (a truth raster's size, grid, bands; a .mat
        file's layout, ``io.mat.mat_layout``), from the headers alone: said before any scene
        is scored, not after hours of them. ``classes``: refuse too a truth without a target
        pixel or without a background pixel (the truth alone is read): the thesis's
        experiments need both in every scene."""
        if self.truth is None:
            from ..io.mat import UNKNOWN, mat_layout, read_mat_truth

            if mat_layout(self.path)[1] is None:
                if classes:
                    raise HsanomalyError(f"{self.path}: {NO_TRUTH_VARIABLE}")
                return
            if classes:
                truth = read_mat_truth(self.path)
                _check_classes(self.path, truth[truth != UNKNOWN])
            return
        from ..io.gdal import open_raster
        from ..io.scene import open_mask_raster, read_truth

        with open_raster(self.path) as ds:
            shape = ds.shape
        with open_mask_raster(self.truth, shape, grid_of=self.path):
            pass
        if classes:
            truth, known = read_truth(self.truth, shape, grid_of=self.path)
            _check_classes(self.truth, truth if known is None else truth[known])


def _check_classes(path, truth):
    """Refuse a truth (its known pixels) without a target or without a background pixel."""
    if not truth.any():
        raise HsanomalyError(f"{path}: no target pixel in the ground truth")
    if truth.all():
        raise HsanomalyError(f"{path}: no background pixel in the ground truth (every "
                             "pixel a target)")


def find_scenes(data_dir):
    """Every benchmark scene under ``data_dir`` (recursively), sorted by name."""
    root = Path(data_dir)
    if not root.is_dir():
        raise HsanomalyError(f"{data_dir}: not a directory")
    scenes = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            check_path_kind(str(path), "a scene")
        except HsanomalyError as err:       # its results could not be written, after the runs
            warn(f"{err}; it is left out of the benchmark")
            continue
        suffix = path.suffix.lower()
        name = nfc(path.relative_to(root).with_suffix("").as_posix())
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
    if any(s.name == MEAN for s in scenes):         # the tables' rows averaged over scenes
        raise HsanomalyError(f"{root / MEAN}: a scene may not be called {MEAN!r}, the name of "
                             "the tables' mean rows; rename it or put it in a folder")
    # one name, one scene: a .mat and the GeoTIFF convert made of it were one table row
    # (the mean counting it twice) and shared one model folder
    files = {}
    for scene in scenes:
        files.setdefault(scene.name, []).append(scene.path.name)
    for name, found in files.items():
        if len(found) > 1:
            raise HsanomalyError(f"{root / name}: {len(found)} scenes of one name "
                                 f"({', '.join(found)}); keep one, or move the others into "
                                 "another folder")
    return scenes


def scenes_by_stem(scenes):
    """{file stem: the scenes of that stem}: two folders may hold scenes of one stem."""
    found = {}
    for scene in scenes:
        found.setdefault(nfc(scene.path.stem), []).append(scene)
    return found


def nfc(name):
    """``name`` in Unicode's composed form: macOS writes "é" as "e" and an accent (NFD), and
    a name typed with "é" (NFC) looks the same but never matched it."""
    return unicodedata.normalize("NFC", name)


def ambiguous(stem, scenes):
    """The error for a stem that names several scenes, where a name is needed."""
    return HsanomalyError(f"{stem}: names {len(scenes)} scenes ({', '.join(s.name for s in scenes)}); "
                          "name the one meant by its folder too")


def select_scenes(scenes, names):
    """The scenes whose name or file stem is in ``names`` (all when ``names`` is empty)."""
    if not names:
        return scenes
    names = [nfc(name) for name in names]
    stems = scenes_by_stem(scenes)
    for name in names:
        if name not in {s.name for s in scenes} and len(stems.get(name, [])) > 1:
            raise ambiguous(name, stems[name])
    known = {nfc(s.path.stem): s for s in scenes} | {s.name: s for s in scenes}
    missing = [n for n in names if n not in known]
    if missing:
        raise HsanomalyError(f"no scene named {', '.join(missing)}; found "
                             f"{', '.join(s.name for s in scenes)}")
    chosen = {known[n].name for n in names}
    return [s for s in scenes if s.name in chosen]


def brightness(scene):
    """A scene's image as one map (``hsanomaly.io.Scene``): each band standardised over the
    valid pixels, then averaged, so band sets and scalings of one image give alike maps; NaN
    where invalid."""
    cube = scene.cube[:, scene.valid].astype(np.float64)
    cube -= cube.mean(axis=1, keepdims=True)
    cube /= np.maximum(cube.std(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    out = np.full(scene.valid.shape, np.nan)
    out[scene.valid] = cube.mean(axis=0)
    return out


def same_images(maps):
    """{scene: the image it shows, the first scene of it in ``maps``' order} from {scene:
    ``brightness`` map}: two scenes on one grid show one image where their maps
    rank-correlate above ``SAME_IMAGE`` over the pixels valid in both, and so do the scenes
    linked to them in turn. Ranks: one shared bright streak does not make two images one.
    A cut of an image is not found: among a larger image's many windows, some match an
    unrelated cut as well as a true one."""
    from scipy.stats import spearmanr

    from .selection import linked

    def alike(a, b):
        if maps[a].shape != maps[b].shape:
            return False
        both = np.isfinite(maps[a]) & np.isfinite(maps[b])
        if both.sum() < 3 or np.ptp(maps[a][both]) == 0 or np.ptp(maps[b][both]) == 0:
            return False                       # too few pixels, or a flat map: no image
        return spearmanr(maps[a][both], maps[b][both])[0] > SAME_IMAGE

    names = list(maps)
    return linked(names, [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                          if alike(a, b)])
