"""Checks every job runs before any work: options, then every path of the job.

``hsanomaly.api`` calls these first, so the CLI, QGIS and Dask users all get one line naming
the option or path at fault, before a model is trained or a tile is scored.
"""

import os
from pathlib import Path

from .errors import HsanomalyError
from .io.atomic import note_checked
from .io.paths import (DIRECTORY, FILE, GEOTIFF_SUFFIXES, Item, check_name_fits, checkpoint_dir,
                       check_output_folder, check_output_paths, check_path_kind, check_paths,
                       check_raster_path, check_replaceable_dir, check_replaceable_file,
                       check_suffix, expand_pattern, holds_numbers, input_files, is_model_bundle,
                       is_path, is_quick_model, quick_model_input, refuse_foreign_side_files,
                       side_files)
from .options import check_batch_keywords, check_callbacks, check_flags, check_near_misses
from .spelling import kind_of, spell


def model_path(model, check=True):
    """``model`` as a bundle's folder: None, a path, or the ``Bundle`` that ``train`` returns
    (its folder; with ``check``, refused where the folder holds another model by now, since
    the folder is what scoring loads); anything else is refused in one line."""
    if is_path(model) and not os.fspath(model):
        raise HsanomalyError(f"{spell('model')}: an empty name")
    if model is None or is_path(model):
        return None if model is None else os.fspath(model)      # a handle: by its path
    from .model import Bundle

    if isinstance(model, Bundle):
        if check and not model.in_its_folder():
            raise HsanomalyError(f"{model.path}: the folder no longer holds the Bundle given as "
                                 f"{spell('model')} (trained into again, moved or removed?); pass "
                                 "the folder, or load it again with hsanomaly.model.load_bundle")
        return model.path
    raise HsanomalyError(f"{spell('model')}: expected a model bundle's folder (a str or path-like) or the "
                         f"Bundle hsanomaly.train returns, got {kind_of(model)}")


def check_extras_kind(extras):
    """Refuse extras that are not a mapping of output names to paths, in one line."""
    from collections.abc import Mapping

    if extras is None:
        return
    if not isinstance(extras, Mapping):
        raise HsanomalyError(f"{spell('extras')}: expected a mapping of output names to paths, "
                             f"e.g. {{'recon': 'recon.tif'}}, got {kind_of(extras)}")
    from .scorers import extra_label

    for name, path in extras.items():
        check_path_kind(path, extra_label(name))


def batch_inputs(inputs, use=None):
    """``detect_many``'s and ``train``'s inputs as a list of names: one path, or those in a
    list, a pandas Series or a numpy array; anything else (a cube, a dataset) is one input,
    refused in one line rather than taken apart (``use``: what to do instead)."""
    one = (is_path(inputs) or isinstance(inputs, (bytes, bytearray))
           or not hasattr(inputs, "__iter__") or hasattr(inputs, "columns")
           or getattr(inputs, "ndim", 1) == 0 or holds_numbers(inputs))
    inputs = [inputs] if one else list(inputs)     # a generator is read once
    inputs = [match for src in inputs for match in expand_pattern(src)]
    for src in inputs:
        check_raster_path(src, spell("inputs"), use)
    return [str(os.fspath(src)) for src in inputs]


def detect_paths(src, dst, *, model=None, extras=None, png=None, polygons=None, quick_model=None,
                 overwrite=False, mask=None):
    """Refuse colliding, unwritable or unreplaceable outputs of one detect run; without
    ``overwrite``, also others' files and results (``refuse_foreign_outputs``)."""
    from .engine.store import is_tile_store, store_path
    from .io.source import check_opens
    from .quicklook import SIDECAR_KINDS, sidecars
    from .scorers import extra_label

    check_output_paths(png=png, polygons=polygons)
    inputs = [(spell(label), file) for label, path in (("src", src), ("mask", mask))
              if is_path(path) for file in input_files(path)]
    inputs += [(spell("model"), model, DIRECTORY)] if is_path(model) else []
    store = store_path(dst)
    rasters = [(spell("dst"), dst)] + [(extra_label(k), v) for k, v in (extras or {}).items()]
    outputs = list(rasters) + side_files(rasters)
    outputs += [(spell("png"), png)] + ([(f"{spell('png')}'s {kind}", side) for kind, side
                                         in zip(SIDECAR_KINDS, sidecars(png))]
                                        if png is not None else [])
    outputs += [(spell("polygons"), polygons), ("the tile store", store, DIRECTORY),
                ("the quick model", quick_model, DIRECTORY), ("the quick model's checkpoint "
                 "folder", quick_model and checkpoint_dir(quick_model), DIRECTORY)]
    check_paths(inputs, outputs)
    for label, path in rasters:      # after check_paths: a collision is the clearer message
        check_suffix(path, label, GEOTIFF_SUFFIXES, "a GeoTIFF")
    if png is not None:
        check_suffix(png, spell("png"), (".png",), "a PNG")
    if is_path(polygons):
        from .polygons import check_not_in_use, check_sqlite_path

        check_sqlite_path(polygons)
        check_not_in_use(polygons)
    if store.is_symlink() or (store.exists() and not is_tile_store(store)):
        raise HsanomalyError(f"{store}: the tile store's name is taken by something that is not "
                             "an hsanomaly tile store; remove it or choose another output")
    if quick_model is not None:
        # never with --overwrite either: it confirms the outputs named (QGIS always passes
        # it), and nobody named the quick model's folder
        if is_model_bundle(quick_model) and not is_quick_model(quick_model, dst):
            raise HsanomalyError(f"{quick_model}: a model bundle that detect did not train for "
                                 f"{Path(dst).name} (or hsanomaly 0.1 did) is where it keeps its "
                                 f"quick model; pass it as {spell('model')}, or move it away to "
                                 "train a new quick model")
        check_replaceable_dir(quick_model, "the quick model directory", is_model_bundle,
                              "a model bundle", "move it away, or choose another output name")
    if not overwrite:          # a missing input is said as such, not as its output's owner
        check_opens(src)
        refuse_foreign_outputs(src, rasters, png, polygons, quick_model)


def refuse_foreign_outputs(src, rasters, png=None, polygons=None, quick_model=None):
    """Refuse existing outputs hsanomaly did not write (``check_replaceable_file``), and
    rasters or a quick model it made from another input than ``src`` (a slip in an output's
    name, or a result renamed away from its model, would destroy another scene's result)."""
    from .io.ownership import is_own_detect_output, is_own_png, other_input, recorded_input
    from .polygons import check_replaceable_targets

    records = []
    for label, path in (pair for pair in rasters if is_path(pair[1])):
        check_replaceable_file(path, label, is_own_detect_output, "a heatmap")
        records.append((path, label, recorded_input(path)))
    if is_path(quick_model):
        records.append((quick_model, "the quick model", quick_model_input(quick_model)))
    for path, label, recorded in records:
        other = other_input(recorded, src)
        if other is not None:
            raise HsanomalyError(f"{path}: {label} holds the result of another input ({other}), "
                                 f"which this run of {Path(str(src)).name} would replace; choose "
                                 f"another name, or pass {spell('overwrite', True)}")
    refuse_foreign_side_files(rasters, is_own_detect_output)
    if is_path(png):
        from .quicklook import SIDECAR_KINDS, sidecars

        check_replaceable_file(png, spell("png"), is_own_png, "a quick-look PNG")
        for kind, side in zip(SIDECAR_KINDS, sidecars(png)):    # ours where the picture is
            check_replaceable_file(side, f"{spell('png')}'s {kind}", lambda _: is_own_png(png),
                                   f"the {kind} of a quick look")
    if is_path(polygons):
        check_replaceable_targets(polygons)


def batch_paths(targets, out_dir, quick_model=None, overwrite=False, mask=None, model=None):
    """detect-many: distinct outputs (by case too), none of them an input (the exclusion
    ``mask`` and the ``model`` bundle among them), in a directory that is or can be made, and
    (without ``overwrite``) none a file hsanomaly did not write; ``targets``: [(src, dst)];
    ``quick_model(dst)``: where a quick model is trained (None: where none is)."""
    from .engine.store import store_path
    seen = {}
    for src, dst in targets:     # names apart only by case: one file on macOS and Windows
        other, taken = seen.setdefault(str(dst).casefold(), (src, dst))
        if taken is not dst:
            if Path(src) == Path(other):
                raise HsanomalyError(f"{src}: listed twice among the inputs")
            raise HsanomalyError(f"{src}: its output {dst} would overwrite that of {other}" + (
                "" if taken == dst else f" ({taken}: one file on macOS and Windows disks)"))
    check_output_folder(out_dir, spell("out_dir"))
    outputs = []
    for src, dst in targets:
        # named after the input, its longest name is the tile store's: the input to rename
        check_name_fits(store_path(dst), f"the tile store of {src}",
                        f"rename {src} (its outputs are named after it)")
        outputs += [(f"the output of {src}", dst),
                    (f"the tile store of {src}", store_path(dst), DIRECTORY),
                    *side_files([(f"the output of {src}", dst)])]
        if quick_model is not None:
            outputs.append((f"the quick model of {src}", quick_model(dst), DIRECTORY))
    masks = [(spell("mask"), path) for path in input_files(mask)] if is_path(mask) else []
    models = [(spell("model"), model, DIRECTORY)] if is_path(model) else []
    check_paths([(spell("inputs"), path) for src, _ in targets for path in input_files(src)]
                + masks + models, outputs, writable=False)
    if not overwrite:
        for src, dst in targets:
            refuse_foreign_outputs(src, [(f"the output of {src}", dst)],
                                   quick_model=quick_model and quick_model(dst))


def evaluate_paths(heatmap, truth, outer_mask, plots, json, overwrite=False):
    from .evaluation.plots import PLOT_FILES
    from .io.ownership import is_own_png, is_own_report

    check_flags(overwrite=overwrite)
    check_output_paths(plots=plots, json=json)
    if str(json) == "-":
        raise HsanomalyError(f"{spell('json')}: '-' is standard output on the command line "
                             "only; the library returns the report")
    inputs = [(spell("heatmap"), heatmap), (spell("truth"), truth),
              (spell("outer_mask"), outer_mask)]
    for label, path in inputs:
        if path is not None and not (hasattr(path, "__array__") or isinstance(path, (list, tuple))):
            check_raster_path(path, label, use="or an array")         # arrays are read as such
    # a shapefile mask is several files, none of which an output may replace
    inputs = [(label, file) for label, path in inputs if is_path(path)
              for file in input_files(path)]
    figures = []
    if plots is not None:
        check_output_folder(plots, spell("plots"))
        note_checked(plots, is_dir=True)      # made whole where it is new: kept from then on
        figures = [(f"{spell('plots')} ({name})", Path(plots) / name, FILE)
                   for name in PLOT_FILES.values()]
    check_paths(inputs, [(spell("json"), json)] + figures, writable=False)
    if plots is not None and is_path(json):
        report, folder = Item(spell("json"), json, DIRECTORY), Item(spell("plots"), plots)
        if report.same(folder) or report.holds(folder):    # the plots' folder at or in it
            raise HsanomalyError(f"{json}: {report.label} collides with {folder}; give each "
                                 "output its own name")
    check_paths([], [(spell("json"), json)])
    if not overwrite:
        if is_path(json):
            check_replaceable_file(json, spell("json"), is_own_report, "an evaluation report")
        for label, path, _ in figures:
            check_replaceable_file(path, label, is_own_png, "a plot")


def check_request(score, model, options, extras=None, tile=None, workers=None, scheduler=None,
                  callback=None, mask=None, door=None, settled=None, **flags):
    """The options of a detect run: names the score takes and values of their kinds and
    ranges, the extras, the executor, the callbacks, the exclusion mask's path, and
    its switches (``flags``: resume, overwrite, ...). ``door``: the function called (detect,
    detect_many), whose own keywords a misspelt option is told from. Returns the score's class."""
    from .cluster import check_execution
    from .engine.checks import check_tile
    from .scorers import check_extras, check_scorer

    if mask is not None:
        check_raster_path(mask, spell("mask"), use="save the mask to a file")
    # built once without its model: every option's kind and range, before any raster is read
    check_extras_kind(extras)
    batch = flags.pop("batch", None)          # (detect, detect_many): a batch's options
    if batch:
        check_batch_keywords(options, *batch)
    if door is not None:
        check_near_misses(door.__name__, door, options)
    cls = check_scorer(score, options, model)
    if tile is not None:
        check_tile(tile)
    check_flags(**flags)
    check_callbacks(callback=callback, settled=settled)
    check_extras(cls, extras)
    check_execution(workers, scheduler)
    return cls
