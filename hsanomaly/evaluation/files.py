"""Evaluating a heatmap against its truth, from files on disk or arrays in memory: read them,
check they line up, report and summarise."""

import json
import math
from pathlib import Path

import numpy as np
from affine import Affine

from .. import defaults
from ..errors import HsanomalyError
from ..io import read_truth
from ..io.atomic import staged_into
from ..io.checks import path_text, warn_once
from ..io.gdal import open_raster
from ..io.paths import is_path
from ..io.scene import grid_text, mask_values
from ..io.scores import read_heatmap_whole
from ..io.inputs import (INDEX_COORDS, as_band, is_data_array, map_axes, pixel_centres,
                         placement)
from ..io.values import warn_mask_values
from ..options import renamed_keywords
from ..spelling import counted, spell
from .metrics import evaluate

INVERTED = 0.5    # share of a truth's labelled pixels that are targets above which it is doubted

# Bytes per pixel an evaluation holds at its peak: the float64 scores, their sort order and
# sorted copy, the masks and the ROC arrays (measured on the example scene, rounded up).
EVALUATE_BYTES_PER_PIXEL = 64


def read_heatmap(path):
    """Band 1 of a score raster as float, with nodata and masked pixels as NaN, refused
    before it is read where an evaluation of it would not fit in memory
    (``io.scores.read_heatmap_whole``)."""
    return read_heatmap_whole(path, EVALUATE_BYTES_PER_PIXEL, "evaluating")


def mean_pixel_area(transform, crs, shape):
    """A raster's pixel area in square metres: exact in a projected CRS
    (``targets.projected_pixel_area``), the mean over the raster's geodesic footprint in a
    geographic one; None without a CRS or a geotransform, or in a local one."""
    from ..targets import geodesic_areas, projected_pixel_area

    if crs is None or transform.is_identity or not crs.is_geographic:
        return None if crs is None else projected_pixel_area(transform, crs)
    from ..io.vector import footprint

    return geodesic_areas([footprint(transform, shape)], crs)[0] / (shape[0] * shape[1])


def place_targets(report, transform, crs, in_memory):
    """Add each target's map coordinates (``centroid_x``, ``centroid_y``: its mean pixel
    centre) to ``report`` where the heatmap is on a map (``targets.pixel_coordinates``; its
    rows and columns say where it lies otherwise)."""
    from ..io.vector import map_coordinates
    from ..targets import pixel_coordinates

    if pixel_coordinates(transform, crs, in_memory) is not None:
        return
    for target in report["targets"]:
        target["centroid_x"], target["centroid_y"] = (float(v) for v in map_coordinates(
            transform, target["centroid_row"] + 0.5, target["centroid_col"] + 0.5))


def read_mask(mask, shape, heatmap=None, name="the mask array"):
    """(mask, known): a binary mask (non-zero = 1) from a raster or .mat truth, which must have
    ``shape`` and lie on the grid of raster ``heatmap`` (io.read_truth), or from an array of
    ``shape`` (masked or NaN = unknown), called ``name`` in messages."""
    if is_path(mask):
        return read_truth(mask, shape=shape, grid_of=heatmap, what="heatmap")
    values = as_band(mask, name)
    if values.shape != tuple(shape):
        raise HsanomalyError(f"{name} is {_pixels(values.shape)}, the heatmap {_pixels(shape)}")
    truth, unknown = mask_values(values, None)
    warn_mask_values(name, np.ma.getdata(values), unknown, lambda value: "mask them "
                       f"(numpy.ma.masked_equal(mask, {value:g})) or set them to NaN")
    if unknown.all():
        raise HsanomalyError(f"{name}: every pixel is masked or NaN")
    return truth, (~unknown if unknown.any() else None)


@renamed_keywords(outer="outer_mask")
def evaluate_files(heatmap_path, truth, outer_mask=None, pd_far=defaults.PD_FAR):
    """Read the inputs and evaluate; returns (report, scores, truth, outer, valid). The masks
    are files or arrays (``read_mask``), a DataArray placed as the heatmap is where both say
    where they lie (``_check_same_place``). Pixels where the truth is unknown (its nodata) are
    in neither class, as the outer mask's ambiguous pixels are (``outer`` holds both); where
    the outer mask is nodata, left out (``valid`` is False there), as are the heatmap's own
    NaN pixels (``metrics.class_masks``; ``evaluate`` counts the target pixels among them)."""
    scores = read_heatmap(heatmap_path)
    with open_raster(heatmap_path) as ds:
        crs, transform = ds.crs, ds.transform
    placed = transform if crs is not None or not transform.is_identity else None
    for label, mask in (("truth", truth), ("outer_mask", outer_mask)):
        if not is_path(mask):              # a DataArray lies where its coordinates say
            if placed is not None and _counts_pixels(mask):
                warn_once(f"{spell(label)}: its coordinates count pixels from 0, so nothing "
                          "places it on the heatmap's map; it is taken pixel for pixel")
                continue
            _check_same_place(mask, _grid_centres(placed, scores.shape), placed, spell(label))
    return _evaluate(scores, path_text(heatmap_path), crs, transform, truth, outer_mask, pd_far,
                     heatmap_path)


@renamed_keywords(outer="outer_mask")
def evaluate_arrays(scores, truth, outer_mask=None, pd_far=defaults.PD_FAR):
    """``evaluate_files`` for a heatmap in memory: a (rows, cols) array (numpy, masked: masked
    = nodata, or an xarray DataArray), with truth and outer mask arrays of its shape. Only a
    DataArray that carries its placement (``io.inputs.placement``) has a map: otherwise the
    report has no CRS, pixel area or map coordinates."""
    for label, mask in (("truth", truth), ("outer_mask", outer_mask)):
        if is_path(mask):
            raise HsanomalyError(f"{spell(label)}: a file ({mask}), but the heatmap is an array, "
                                 "so nothing places the file's pixels on it; pass an array of "
                                 "the heatmap's shape, or the heatmap as a raster file")
    transform, crs = placement(scores)
    for label, mask in (("truth", truth), ("outer_mask", outer_mask)):
        _check_same_place(mask, scores, transform, spell(label))
    if is_data_array(scores) and map_axes(scores) not in (None, tuple(scores.dims[-2:])):
        truth, outer_mask = (_in_rows_of_y(mask, scores.shape, spell(label)) for label, mask
                             in (("truth", truth), ("outer_mask", outer_mask)))
    scores = as_band(scores, "the heatmap array")
    if scores.dtype.kind not in "uif":
        raise HsanomalyError(f"the heatmap array holds {scores.dtype} values, not scores")
    scores = scores.astype(np.float64).filled(np.nan)
    return _evaluate(scores, f"<array {_pixels(scores.shape)}>", crs,
                     Affine.identity() if transform is None else transform, truth, outer_mask,
                     pd_far)


def _in_rows_of_y(mask, shape, label):
    """A plain mask array beside an (x, y) heatmap DataArray of ``shape`` (x, y), which is
    turned to rows of y: in rows of y too, whichever way it is given where its shape tells
    (a truth read from a file has rows of y; one the caller made may have the heatmap's
    order); refused on a square grid, where nothing tells (either was compared transposed)."""
    if mask is None or is_data_array(mask) or np.ndim(mask) != 2:
        return mask
    if shape[0] == shape[1]:
        raise HsanomalyError(f"{label}: a plain array beside a heatmap DataArray in (x, y) order "
                             "on a square grid, so nothing tells whether its rows are x or y; "
                             "give it as a DataArray with its dims, or the heatmap transposed "
                             "to (y, x)")
    return np.ma.asanyarray(mask).T if np.shape(mask) == tuple(shape) else mask


def _counts_pixels(mask):
    """Whether a DataArray's x and y coordinates count its pixels from 0 (0, 1, 2, ... or the
    centres 0.5, 1.5, ...), as an array's or an unplaced raster's do: no place on a map."""
    found = pixel_centres(mask)
    return bool(found) and all(centres[0] in (0, 0.5) and np.allclose(
        centres, np.arange(len(centres)) + centres[0]) for centres, _ in found.values())


def _grid_centres(transform, shape):
    """A heatmap file's pixel centres as ``pixel_centres`` gives a DataArray's, where its grid
    is north-up (None elsewhere, or where it has no placement)."""
    if transform is None or transform.b or transform.d:
        return None
    rows, cols = shape
    return {"x": (transform.c + transform.a * (np.arange(cols) + 0.5), 0.0),
            "y": (transform.f + transform.e * (np.arange(rows) + 0.5), 0.0)}


def _check_same_place(mask, heatmap, transform, label):
    """Refuse a mask array placed elsewhere than the heatmap (cut or sorted otherwise: its
    pixels would be compared with other pixels' scores): by their x/y coordinates where both
    have them (``heatmap``: a DataArray, or its pixel centres), else by their placements
    (``transform``: the heatmap's), within a thousandth of a pixel; arrays with neither pass
    on their shapes."""
    ours = heatmap if isinstance(heatmap, dict) else pixel_centres(heatmap)
    theirs = pixel_centres(mask)
    if ours and theirs:
        for dim in ("x", "y"):
            (a, a_rounding), (b, b_rounding) = ours[dim], theirs[dim]
            if a.shape != b.shape:
                return                                   # read_mask: the shapes differ
            pixel = abs(a[-1] - a[0]) / (len(a) - 1) if len(a) > 1 else 0.0
            rounding = max(a_rounding, b_rounding)        # float32's, never half a pixel
            if np.abs(a - b).max() > max(1e-3 * (pixel or max(1.0, abs(a[0]))),
                                         min(rounding, 0.5 * pixel)):
                raise HsanomalyError(f"{label}: its {dim} coordinates are not the heatmap's "
                                     f"({b[0]:.10g} ... {b[-1]:.10g} against {a[0]:.10g} ... "
                                     f"{a[-1]:.10g}); cut and order both alike")
        return
    placed = placement(mask)[0]
    if placed is None or transform is None:
        return
    pixel = min(abs(transform.a), abs(transform.e)) or 1.0
    if not placed.almost_equals(transform, precision=1e-3 * pixel):
        carried = pixel_centres(mask) is not None or INDEX_COORDS[0] in mask.coords
        raise HsanomalyError(f"{label}: its placement is not the heatmap's ({grid_text(placed)} "
                             f"against {grid_text(transform)}); " + (
                                 "cut and order both alike" if carried else
                                 "its transform attribute places the whole grid and no "
                                 "coordinates say where a cut of it lies: pass it uncut" +
                                 ("" if placed.b or placed.d else   # a rotated grid: uncut only
                                  ", or with its map coordinates (x/y, lat/lon)")))


def _evaluate(scores, name, crs, transform, truth_input, outer_input, pd_far, heatmap_path=None):
    truth_name = _name(truth_input, "the truth array")
    mask_has = "the truth mask has" if is_path(truth_input) else "it has"
    truth, known = read_mask(truth_input, scores.shape, heatmap_path, truth_name)
    valid = None
    if not truth[known if known is not None else ...].any():
        nodata = 0 if known is None else int((~known).sum())
        unknown = "the mask's nodata value" if is_path(truth_input) else "masked or NaN"
        raise HsanomalyError(f"{truth_name}: {mask_has} no target pixel (all zero"
                             + (f", or {unknown} in {nodata} pixels)" if nodata else ")"))
    if truth[known if known is not None else ...].all():
        two = np.unique(np.asarray(scores)[np.isfinite(scores)]).size <= 2    # a mask's values
        raise HsanomalyError(f"{truth_name}: {mask_has} no background (no zero pixel)"
                             + ("; the heatmap holds two values at most, as a mask does: are "
                                "the heatmap and the truth given the wrong way round?" if two
                                else ""))
    targets = truth[known if known is not None else ...].mean()
    if targets > INVERTED:          # anomalies are rare: most of a scene is its background
        warn_once(f"{truth_name}: {targets:.0%} of its labelled pixels are targets; is it "
                  "inverted (targets 0, background non-zero)?")
    outer = None
    if outer_input is not None:
        outer, valid = read_mask(outer_input, scores.shape, heatmap_path,
                                 _name(outer_input, "the outer mask array"))
    if known is not None:      # unknown truth: in neither class, as the outer mask's pixels,
        outer = ~known if outer is None else (outer != 0) | ~known   # and linking regions
    pixel_area = mean_pixel_area(transform, crs, scores.shape)
    if pixel_area is not None and not crs.is_geographic:
        from ..io.vector import map_coordinates
        from ..targets import warn_map_areas

        warn_map_areas(name, crs, map_coordinates(transform, scores.shape[0] / 2,
                                                  scores.shape[1] / 2),
                       "the false-alarm regions per km2")
    try:
        report = evaluate(scores, truth, outer_mask=outer, valid=valid, pd_far=pd_far,
                          name=name, pixel_area=pixel_area)
    except ValueError as err:
        raise HsanomalyError(f"{name}: {err}") from None
    place_targets(report, transform, crs, in_memory=heatmap_path is None)
    report["crs"] = None if crs is None else crs.to_string()
    report["inputs"] = {"heatmap": name, "truth": _name(truth_input, "<array>"),
                        "outer_mask": None if outer_input is None else
                        _name(outer_input, "<array>")}
    report["provenance"] = _provenance(heatmap_path, truth_input, outer_input)
    return report, scores, truth, outer, valid


def _provenance(heatmap_path, truth_input, outer_input):
    """What a report was made from beyond the paths as typed (two heatmaps at one path are
    told apart): the fingerprints of the heatmap's and the masks' files (a vector layer's,
    its file's), the heatmap's own record where hsanomaly wrote it (its HSANOMALY_ tags:
    score, parameters, model digest, input and run fingerprints; a copy GDAL cut or rescaled
    keeps them, and ``records.copy_of_record`` tells it), the version."""
    import os

    from .. import __version__
    from ..io.fingerprint import file_fingerprint
    from ..io.ownership import TAG_PREFIX, geotiff_tags
    from ..io.vector import split_layer

    tags = geotiff_tags(path_text(heatmap_path)) if heatmap_path is not None else None
    copy = None
    if tags and any(key.upper().startswith(TAG_PREFIX) for key in tags):
        from ..records import copy_of_record

        copy = copy_of_record(path_text(heatmap_path))
        if copy:
            warn_once(f"{path_text(heatmap_path)}: {copy}; the report's provenance says so")
    files = {label: split_layer(path_text(value))[0] if is_path(value) else None
             for label, value in (("heatmap", heatmap_path), ("truth", truth_input),
                                  ("outer_mask", outer_input))}
    return {"hsanomaly_version": __version__,
            "heatmap_tags": {k: v for k, v in (tags or {}).items()
                             if k.upper().startswith(TAG_PREFIX)},     # a saved DataArray's
            "heatmap_copy": copy,
            **{f"{label}_fingerprint": file_fingerprint(file) for label, file in files.items()
               if file is not None and os.path.isfile(file)}}


def _name(value, otherwise):
    return path_text(value) if is_path(value) else otherwise


def _pixels(shape):
    return f"{shape[0]}x{shape[1]} pixels"


def strict_json(report):
    """A report (``evaluate``'s, ``info``'s) as the indented JSON text ``--json`` writes:
    strict JSON (RFC 8259), so an infinite score (which ``detect`` keeps, with a warning) is
    the text "inf" or "-inf", not ``Infinity``, which strict parsers refuse and jq 1.6 reads
    as the largest float; and NaN is null."""
    return json.dumps(_strict(report), indent=2, allow_nan=False) + "\n"


def _strict(value):
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(report, path, stage=None):
    """Write the report as indented JSON, whole or not at all (read back and parsed before
    it replaces ``path``; with ``stage``, together with that stage's other outputs)."""
    text = strict_json(report)
    with staged_into(stage) as into:
        Path(into.path(path, check=_json_check)).write_text(text, encoding="utf-8")


def _json_check(path):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    try:
        json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)
    except ValueError as err:
        raise HsanomalyError(f"{path}: the written report does not parse ({err})") from None


def format_summary(report):
    """A short plain-text summary: overall metrics, then one line per target."""
    lines = [f"AUC {report['auc']:.4f}   logAUC {report['log_auc']:.4f}   "
             f"lgFAR {report['lg_far']:.2f}   Pd {report['pd']:.4f} at a false-alarm rate of "
             f"{report['pd_far']:g}",
             f"{counted(report['n_target_pixels'], 'target pixel')} in "
             f"{counted(report['n_targets'], 'target')}, "
             f"{counted(report['n_background_pixels'], 'background pixel')}, "
             f"{report['n_excluded_pixels']:,} excluded",
             f"at that rate {report['n_targets_found']} of {report['n_targets']} targets found, "
             f"{counted(report['n_false_alarm_regions'], 'false-alarm region')}"
             + ("" if report["false_alarm_regions_per_km2"] is None else
                f" ({_per_km2(report['false_alarm_regions_per_km2'])} per km² of background)")
             + _drawn(report)]
    if report["targets"]:
        lines.append(f"{'target':<7}{'pixels':>7}{'AUC':>8}{'logAUC':>8}{'lgFAR':>7}{'Pd':>7}"
                     f"{'max score':>12}{'row':>8}{'col':>8}")
    for t in report["targets"]:
        lines.append(f"{t['id']:<7}{t['pixels']:>7}{_num(t['auc'], '8.4f')}"
                     f"{_num(t['log_auc'], '8.4f')}{_num(t['lg_far'], '7.2f')}"
                     f"{_num(t['pd'], '7.3f')}"
                     f"{_num(t['max_score'], '12.4g')}{t['centroid_row']:>8.1f}"
                     f"{t['centroid_col']:>8.1f}")
    return "\n".join(lines)


DETECT_FAR_DIGITS = 12   # a rate that draws the same pixels on heatmaps of up to 1e11 of them
# a score is relative to the raster it was fitted on: a rate carries to another, a threshold not
HERE = "here; on another raster, a rate carries over where a threshold does not)"


def _drawn(report):
    """How ``detect`` draws what Pd counts: its ``--far`` is a share of every scored pixel,
    targets among them, where Pd's rate is one of the background's."""
    if report.get("pd_threshold") is None:           # a report of an earlier version
        return ""
    far = spell("far", float(f"{report['pd_detect_far']:.{DETECT_FAR_DIGITS}g}"))
    # exact: the threshold is a background pixel's score, which a rounded one would draw too
    return (f"; above {float(report['pd_threshold'])!r} (detect's {far} draws the same pixels "
            f"{HERE}")


def _per_km2(value):
    """A density as people write one: 3.2, 209, 4,410."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _num(value, spec):
    """Format ``value`` with ``spec``, or a dash of the same width for a target without scores."""
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)
