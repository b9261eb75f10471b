"""``info``: what a model bundle, a heatmap or a drawing of one is, from its own record. A
bundle's: its shape, its training (inputs, settings, seed, losses, the generator's health),
the fingerprint of the data it saw, the versions that trained it, and the digest a heatmap
names its model by; a heatmap's: the score, settings, model and input it was made with (its
HSANOMALY_ tags); a quick look's or target polygons': the heatmap they were drawn from, and
whether the one beside them still is. Someone handed any of them can tell what it is, and
which bundle scored which heatmap."""

import contextlib
import json
import os
import shlex
from pathlib import Path
from typing import Any, Dict

from .errors import HsanomalyError
from .hints import PathArg
from .io.checks import path_text


def info(path: PathArg) -> Dict[str, Any]:
    """{"kind": "model", ...} for a model bundle's folder (loaded, so checked whole),
    {"kind": "heatmap", ...} for a raster hsanomaly wrote, {"kind": "quick look" or "targets",
    ...} for a PNG or GeoPackage it drew from one, {"kind": "picture", ...} for another PNG
    it drew (an evaluation's plot), {"kind": "scene", ...} for any other raster (what
    ``detect`` would read of it); anything else is refused."""
    from .io.ownership import TAG_PREFIX, geotiff_tags

    name = path_text(path)
    if os.path.isdir(name):
        return _model(name)
    from .io.gdal import is_gdal_name

    if not os.path.exists(name) and not is_gdal_name(name):  # a subdataset, /vsi: a scene's
        raise HsanomalyError(f"{name}: not found")
    drawing = _drawing(name)
    if drawing is not None:
        return drawing
    tags = geotiff_tags(name) or {}
    own = {key[len(TAG_PREFIX):].lower(): value for key, value in tags.items()   # a Detector's
           if key.upper().startswith(TAG_PREFIX)}         # DataArray saved: hsanomaly_score
    own.update({key: _value(key, own[key]) for key in ("parameters", "options", "versions",
                                                       "tile") if key in own})
    if "score" not in own:
        return _scene(name)
    found = {"kind": "heatmap", "path": name, **own}
    copy = copy_of_record(name)
    if copy:
        found["copy"] = copy
    command = _command(found)
    if command:
        found["command"] = command
    return found


def _command(found):
    """The ``hsanomaly detect`` command that makes heatmap ``found`` again, run where its
    input, model and mask lie (with the versions it records), from the options it records as
    asked; None for a heatmap written before they were recorded, or of no input file (a
    Detector's DataArray)."""
    from .defaults import TILE
    from .io.heatmap import is_cog
    from .spelling import command_line, spell, spelled

    options = found.get("options")
    if not isinstance(options, dict) or "input" not in found:
        return None
    asked = {"score": found["score"], "model": found.get("model_path"),
             "mask": found.get("mask"), "tile": None if found.get("tile") == TILE else
             found.get("tile"), **options, "cog": is_cog(found["path"])}
    with spelled(command_line({})):
        flags = [spell(key, _typed(value)) for key, value in asked.items()
                 if value is not None and value is not False]
    names = (found["input"], Path(found["path"]).name)      # "-x.tif" is no flag as ./-x.tif
    return " ".join(["hsanomaly detect", *(shlex.quote("./" * name.startswith("-") + name)
                                           for name in names), *flags])


def _typed(value):
    """An option's recorded value as the command line takes it (rings as 7/3;15/5)."""
    if isinstance(value, list):
        return ";".join(f"{outer}/{guard}" for outer, guard in value)
    return value


def _drawing(name):
    """{"kind": "quick look" or "targets", ...} of a PNG or targets GeoPackage hsanomaly drew
    from a heatmap: what it records of it, and whether the heatmap beside it is still the one
    it was drawn from (``drawn_from``); None for any other file."""
    from .io.ownership import TAG_PREFIX, drawn_from, is_own_png

    if name.lower().endswith(".png") and is_own_png(name):
        from PIL import Image

        from .quicklook import STRETCH_TEXT

        with Image.open(name) as image:
            record = dict(image.text)
        found = {"kind": "quick look" if TAG_PREFIX + "HEATMAP" in record else "picture",
                 "path": name}
        if STRETCH_TEXT in record:
            found["stretch"] = [float(v) for v in record.pop(STRETCH_TEXT).split()]
    elif name.lower().endswith(".gpkg"):
        import pyogrio

        from .polygons import LAYER, drawn_threshold, holds_targets

        if not holds_targets(name):
            return None
        meta = pyogrio.read_info(name, layer=LAYER)
        record = meta.get("layer_metadata") or {}
        found = {"kind": "targets", "path": name, "targets": meta["features"],
                 "threshold": drawn_threshold(name)}
    else:
        return None
    found.update({key[len(TAG_PREFIX):].lower(): value for key, value in record.items()
                  if key.startswith(TAG_PREFIX) and key != TAG_PREFIX + "HEATMAP_PIXELS"})
    found["drawn"] = (drawn_from(record, name) if TAG_PREFIX + "HEATMAP" in record else
                      "it records no heatmap: " + ("an evaluation's plot, or " if
                                                   found["kind"] == "picture" else "")
                      + "drawn before hsanomaly recorded one")
    return found


def copy_of_record(path):
    """How raster ``path``, whose HSANOMALY_ tags describe a heatmap, differs from the heatmap
    they were written for ("cut, resampled or warped"; "pixels changed since written": a copy
    rescaled, converted to integers or edited), or None where it is that heatmap as written,
    or holds no record of its grid or pixels (written before them)."""
    from .io.gdal import open_raster
    from .io.heatmap import pixels_digest
    from .io.ownership import GRID_TAG, PIXELS_TAG, grid_tag, same_grid

    with open_raster(path, check=False) as ds:
        tags = ds.tags()
        grid = grid_tag(ds.width, ds.height, ds.transform)
        if GRID_TAG in tags and not same_grid(tags[GRID_TAG], grid):
            return (f"cut, resampled or warped ({grid.split()[0]} pixels) from the heatmap its "
                    f"record describes ({tags[GRID_TAG].split()[0]})")
        if PIXELS_TAG in tags and pixels_digest(ds) != tags[PIXELS_TAG]:
            return ("its pixels changed since they were written (rescaled, converted to other "
                    "values or edited): its record describes the heatmap it was copied from")
    return None


def _scene(name):
    """{"kind": "scene", ...}: what ``detect`` reads of a raster it did not write (its grid,
    the bands it scores and those it leaves out, their type, centres and scaling, its nodata),
    after the checks it makes before the work, which warn or refuse as they would there."""
    from .io.gdal import open_raster
    from .io.source import RasterSource, open_source

    if not name.lower().endswith(".mat"):        # a benchmark scene, which detect reads too
        try:
            with open_raster(name, check=False):
                pass
        except HsanomalyError as err:
            raise HsanomalyError(f"{err}; info takes a model bundle (a folder), a raster, or a "
                                 "quick look or targets GeoPackage hsanomaly wrote") from None
    source = open_source(name)
    try:
        source.check_data()
        nodata, mask, crs, placed = [], None, None, None
        if isinstance(source, RasterSource):
            with open_raster(name, check=False) as ds:
                nodata, mask, crs, placed = _read_as(ds, source)
        return {"kind": "scene", "path": name, "rows": source.height, "cols": source.width,
                "bands": source.count, "left_out": source.left_out or None,
                "type": str(getattr(source, "dtype", None) or source.cube.dtype),
                "wavelengths_nm": None if source.wavelengths is None else
                [float(source.wavelengths[0]), float(source.wavelengths[-1])],
                "scaled": source.scaled, "nodata": nodata or None, "mask": mask, "crs": crs,
                "placed_by": placed}
    finally:
        source.close()


def _read_as(ds, source):
    """(nodata values, the mask that leaves pixels out besides them, CRS, what places it on
    the map) of open raster ``ds`` as ``source`` reads it: NaN once, as the text "nan" (each
    band's NaN is its own object, NaN != NaN, and JSON has none); a raster without a
    geotransform may be placed by ground control points, RPCs or geolocation arrays, which
    the heatmap keeps."""
    from rasterio.enums import MaskFlags

    from .io.gdal import placed_without_transform

    values = {"nan" if v != v else v for v in (ds.nodatavals[b - 1] for b in source.bands)
              if v is not None}
    nodata = sorted(values, key=lambda v: (isinstance(v, str), 0 if isinstance(v, str) else v))
    flags = {flag for b in source.bands for flag in ds.mask_flag_enums[b - 1]}
    mask = (f"alpha band {', '.join(map(str, source.alpha_bands))}" if source.alpha_bands else
            "the dataset's own (a .msk or an internal mask)" if MaskFlags.per_dataset in flags
            else None)
    crs = ds.crs or (ds.gcps[1] if ds.gcps[0] else None)
    placed = placed_without_transform(ds) or (None if ds.transform.is_identity else
                                              "its geotransform")   # with a CRS or not
    return nodata, mask, None if crs is None else crs.to_string(), placed


def _value(key, text):
    """Tag ``key``'s value as what it holds: the parameters' and versions' JSON objects, the
    tile's whole number (as written; another tool's text is kept as it is)."""
    with contextlib.suppress(ValueError):
        return int(text) if key == "tile" else json.loads(text)
    return text


def _model(name):
    from .model import load_bundle

    bundle = load_bundle(name)
    meta = bundle.meta
    training = meta.get("training", {})
    return {"kind": "model", "path": name, "summary": bundle.text(name),
            "digest": bundle.digest(), "bands_in": bundle.bands_in, "bands": bundle.bands,
            "window": bundle.window, "latent_dim": bundle.latent_dim,
            "wavelengths": None if not bundle.wavelengths else
            [bundle.wavelengths[0], bundle.wavelengths[-1]],
            "preprocessing": meta["preprocess"]["params"],
            "inputs": training.get("inputs"), "settings": training.get("settings"),
            "losses": training.get("losses"), "health": training.get("health"),
            "windows": training.get("windows"),
            "data_fingerprint": meta.get("fingerprint"),
            "codebook_seed": (meta.get("codebook") or {}).get("seed"),
            "versions": meta.get("versions"), "files": sorted(meta.get("files", {})),
            "folder": str(Path(name).resolve())}


def info_lines(found: Dict[str, Any]) -> str:
    """``info``'s record as the command line prints it: one "key: value" line each."""
    def text(value):
        if isinstance(value, dict):       # a part's own settings in brackets: whose is whose
            return ", ".join(f"{k} ({text(v)})" if isinstance(v, (dict, list, tuple)) and v
                             else f"{k} {text(v)}" for k, v in value.items())
        if isinstance(value, (list, tuple)):      # a list's own lists in brackets too
            return ", ".join(f"({text(v)})" if isinstance(v, (dict, list, tuple)) else text(v)
                             for v in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return "\n".join(f"{key}: {text(value)}" for key, value in found.items())
