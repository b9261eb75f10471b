"""What marks a file as written by hsanomaly, so that a run replaces its own earlier outputs
and refuses to replace anything else (``paths.check_replaceable_file``): GeoTIFFs and PNGs
carry ``SOFTWARE`` (a TIFF tag, a PNG text chunk), JSON reports their own keys, Markdown and
CSV tables their first line, and target GeoPackages their tables
(``hsanomaly.polygons.is_targets_file``)."""

import hashlib
import json
import os
import re
from pathlib import Path

from .._version import __version__
from ..errors import HsanomalyError

SOFTWARE = f"hsanomaly {__version__}"
TAG_PREFIX = "HSANOMALY_"          # the namespace of the tags a heatmap describes itself with


def _ours(text):
    """``hsanomaly`` or ``hsanomaly <version>``: not another program whose name begins so."""
    text = str(text or "")
    return text == "hsanomaly" or text.startswith("hsanomaly ")


GRID_TAG = TAG_PREFIX + "GRID"      # the heatmap's own size and geotransform
PIXELS_TAG = TAG_PREFIX + "PIXELS"  # a digest of its pixels as written (``heatmap.pixels_digest``)


def grid_tag(width, height, transform):
    """A raster's grid as a heatmap records it: a copy that GDAL cut, resampled or warped
    keeps the heatmap's tags, but not this."""
    place = (1, 0, 0, 0, 1, 0) if transform is None else tuple(transform)[:6]   # GDAL's default
    # + 0.0: a negative zero (GDAL's ENVI geotransforms hold them) as the GeoTIFF reads back
    return f"{width}x{height} " + ",".join(f"{float(v) + 0.0:.12g}" for v in place)


def same_grid(recorded, grid):
    """Whether grid tag ``recorded`` describes ``grid`` (both ``grid_tag``s), compared as
    numbers: a tag written before negative zeros were written as zeros says "-0"."""
    try:
        numbers = [[float(v) for v in re.split("[x ,]", tag)] for tag in (recorded, grid)]
    except ValueError:
        return False
    return numbers[0] == numbers[1]


def drawing_record(heatmap, name=None):
    """What a quick look or target polygons record of the heatmap they are drawn from: its
    file's name (``name``: the output a staged temporary becomes), score and the digest of
    its pixels (``PIXELS_TAG``), by which ``drawn_from`` tells it rescored since."""
    tags = geotiff_tags(str(heatmap)) or {}
    return {TAG_PREFIX + "HEATMAP": Path(str(name or heatmap)).name,
            TAG_PREFIX + "HEATMAP_PIXELS": tags.get(PIXELS_TAG, ""),
            TAG_PREFIX + "SCORE": tags.get(TAG_PREFIX + "SCORE", ""),
            TAG_PREFIX + "VERSION": __version__}


def drawn_from(record, path):
    """Whether the heatmap a drawing at ``path`` records (``drawing_record``), looked for
    beside it, is the one it was drawn from, in words."""
    heatmap = Path(path).parent / record.get(TAG_PREFIX + "HEATMAP", "")
    if not record.get(TAG_PREFIX + "HEATMAP") or not heatmap.is_file():
        return "its heatmap is not beside it"
    now = (geotiff_tags(str(heatmap)) or {}).get(PIXELS_TAG)
    if not now or not record.get(TAG_PREFIX + "HEATMAP_PIXELS"):
        return f"{heatmap.name} beside it records no pixels to compare"
    return (f"drawn from {heatmap.name} as it is" if now == record[TAG_PREFIX + "HEATMAP_PIXELS"]
            else f"drawn from another state of {heatmap.name}, scored again since")


def geotiff_tags(path, grid=False):
    """A raster's dataset tags (with ``grid``: and its ``grid_tag``), or None."""
    from .atomic import native_quiet
    from .gdal import open_raster

    if os.path.exists(path) and not os.path.isfile(path):   # a pipe would block the read
        return None
    try:
        with native_quiet(), open_raster(path, check=False) as ds:     # its tags
            tags = ds.tags()
            return (tags, grid_tag(ds.width, ds.height, ds.transform)) if grid else tags
    except HsanomalyError:
        return None


def is_own_geotiff(path):
    """A raster hsanomaly wrote: heatmaps, extras, converted scenes (what ``convert`` replaces)."""
    tags = geotiff_tags(path)
    return tags is not None and (_ours(tags.get("TIFFTAG_SOFTWARE"))
                                 or any(k.startswith(TAG_PREFIX) for k in tags))


def is_own_detect_output(path):
    """A heatmap or extra raster of ``detect``: it describes itself with HSANOMALY_ tags. A
    scene ``convert`` wrote names hsanomaly too (and its .mat), but it is someone's input,
    not a result a detect run may replace."""
    found = geotiff_tags(path, grid=True)
    if found is None:
        return False
    tags, grid = found
    return (any(k.startswith(TAG_PREFIX) and k != CONVERTED_TAG for k in tags)
            and same_grid(tags.get(GRID_TAG, grid), grid))   # before this tag: by the tags


CONVERTED_TAG = TAG_PREFIX + "CONVERTED_FROM"   # a converted scene's .mat: its input_record


def converted_from(path):
    """The ``input_record`` of the .mat the scene ``convert`` wrote at ``path`` was converted
    from, or None (not a converted scene, or one written before the tag)."""
    tags = geotiff_tags(path) if os.path.isfile(path) else None
    try:
        return json.loads(tags[CONVERTED_TAG])
    except (TypeError, KeyError, ValueError):
        return None


INPUT_TAG = TAG_PREFIX + "INPUT"                # the input's file name
INPUT_PLACE_TAG = TAG_PREFIX + "INPUT_PLACE"    # where it lies: ``input_place``
INPUT_FINGERPRINT_TAG = TAG_PREFIX + "INPUT_FINGERPRINT"   # what it held: a digest


def input_name(src):
    """The file name an input is recorded by: the same however it is spelled, a subdataset's
    variable or page after it (NETCDF:"scene.nc":radiance is scene.nc:radiance, GTIFF_DIR:1:
    scene.tif and GTIFF_DIR:1:/data/scene.tif are both scene.tif:1)."""
    from .gdal import spelled_absolute, subdataset

    spelled = spelled_absolute(src)
    parts = subdataset(spelled)
    return Path(spelled).name if parts is None else f"{Path(parts[0]).name}:{parts[1]}"


def _former_name(src):
    """The name results written before subdatasets had their own recorded them by."""
    from .gdal import spelled_absolute

    return Path(spelled_absolute(src)).name


def input_place(name):
    """A digest of where an input lies: its absolute path, the folder's links resolved but
    not the file's (a file git-annex or DVC replaces by a link to new content stays in its
    place; a GDAL name's file spelled so, ``spelled_absolute``), so that two files of one
    name in two folders are two inputs; a digest, so a heatmap passed on does not tell where
    its input was kept."""
    from .gdal import spelled_absolute

    return hashlib.sha256(spelled_absolute(name).encode()).hexdigest()[:16]


def input_record(src):
    """{"name", "place", "fingerprint"}: how a result records its input ``src`` (a heatmap
    in its tags, a quick model in its model.json), for ``other_input``."""
    from .fingerprint import digest, input_fingerprint

    return {"name": input_name(src), "place": input_place(src),
            "fingerprint": digest(input_fingerprint(src))}


def recorded_input(path):
    """The ``input_record`` an existing raster of ``detect`` at ``path`` keeps in its tags
    (place and fingerprint None in one written before them), or None (not one of detect's,
    or written before the tags)."""
    tags = geotiff_tags(path) if os.path.isfile(path) and not os.path.islink(path) else None
    if tags is None or INPUT_TAG not in tags:
        return None
    return {"name": tags[INPUT_TAG], "place": tags.get(INPUT_PLACE_TAG),
            "fingerprint": tags.get(INPUT_FINGERPRINT_TAG)}


def other_input(recorded, src):
    """The input a result records (``recorded``, an ``input_record``; None: none recorded)
    where that is another than ``src``, as messages name it; None where it is ``src``: its
    name, and its place, or elsewhere its contents (a moved project, a path through a link)."""
    from .fingerprint import digest, input_fingerprint

    if not isinstance(recorded, dict) or "name" not in recorded:
        return None
    name = recorded["name"]
    if name not in (input_name(src), _former_name(src)):
        return name
    if recorded.get("place") in (None, input_place(src)):
        return None
    if recorded.get("fingerprint") == digest(input_fingerprint(src)):
        return None
    return f"{name} in another folder"


def is_own_png(path):
    """A quick look or an evaluation plot: its Software text chunk names hsanomaly."""
    from PIL import Image, UnidentifiedImageError

    from .atomic import native_quiet

    try:
        with native_quiet(), Image.open(path) as image:     # libtiff talks about other files
            return _ours(getattr(image, "text", {}).get("Software"))
    except (OSError, UnidentifiedImageError):
        return False


def has_json_keys(path, keys):
    """A JSON object holding every one of ``keys``: how a report of ours is told apart."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and set(keys) <= report.keys()


def is_own_report(path):
    """An ``hsanomaly evaluate --json`` report."""
    return has_json_keys(path, ("auc", "log_auc", "lg_far"))


def starts_with(path, first_line):
    """A text file whose first line begins with ``first_line``: a Markdown document's title or
    a CSV table's leading columns, which is all such a file can carry to say it is ours."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n").startswith(first_line)
    except (OSError, UnicodeDecodeError):
        return False
