"""The outputs of a job, checked before any work: distinct, none of them an input, where
they can be written, and none a file of someone else's (or another input's result) replaced
without ``overwrite``."""

from pathlib import Path

from .errors import HsanomalyError
from .io.atomic import note_checked
from .io.paths import (DIRECTORY, FILE, GEOTIFF_SUFFIXES, Item, check_name_fits, checkpoint_dir,
                       check_output_folder, check_output_paths, check_paths, check_raster_path,
                       check_replaceable_dir, check_replaceable_file, check_suffix, input_files,
                       is_model_bundle, is_path, is_quick_model, quick_model_input,
                       refuse_foreign_side_files, side_files)
from .options import check_flags
from .spelling import spell


def detect_paths(src, dst, *, model=None, extras=None, png=None, polygons=None, quick_model=None,
                 overwrite=False, mask=None):
    """Refuse colliding, unwritable or unreplaceable outputs of one detect run; without
    ``overwrite``, also others' files and results (``refuse_foreign_outputs``)."""
    from .engine.store import is_tile_store, store_path
    from .io.source import check_opens
    from .scorers import extra_label

    check_output_paths(png=png, polygons=polygons)
    inputs = [(spell(label), file) for label, path in (("src", src), ("mask", mask))
              if is_path(path) for file in input_files(path)]
    inputs += [(spell("model"), model, DIRECTORY)] if is_path(model) else []
    store = store_path(dst)
    rasters = [(spell("dst"), dst)] + [(extra_label(k), v) for k, v in (extras or {}).items()]
    outputs = list(rasters) + side_files(rasters) + drawn_outputs(png, polygons)
    outputs += [("the tile store", store, DIRECTORY),
                ("the quick model", quick_model, DIRECTORY), ("the quick model's checkpoint "
                 "folder", quick_model and checkpoint_dir(quick_model), DIRECTORY)]
    check_paths(inputs, outputs)
    for label, path in rasters:      # after check_paths: a collision is the clearer message
        check_suffix(path, label, GEOTIFF_SUFFIXES, "a GeoTIFF")
    check_drawings(png, polygons)
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
    from .io.ownership import is_own_detect_output, other_input, recorded_input

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
    refuse_foreign_drawings(png, polygons)


def refuse_foreign_drawings(png, polygons, of=None):
    """Refuse a quick look or target polygons (``drawn_outputs``) there that hsanomaly did not
    draw, or that someone added to; ``of``: the input they are a batch's drawings of, whose
    names come from it, so only moving the file away lets them be drawn."""
    from .io.ownership import is_own_png
    from .polygons import check_replaceable_targets

    remedy = None if of is None else "move it away (or rename it) to have it drawn again"
    labels = {path: label for label, path in drawn_outputs(png, polygons, of)}
    if is_path(png):
        from .quicklook import SIDECAR_KINDS, sidecars

        check_replaceable_file(png, labels[png], is_own_png, "a quick-look PNG", remedy)
        for kind, side in zip(SIDECAR_KINDS, sidecars(png)):    # ours where the picture is
            check_replaceable_file(side, labels[side], lambda _: is_own_png(png),
                                   f"the {kind} of a quick look", remedy)
    if is_path(polygons):
        check_replaceable_targets(polygons, labels[polygons], remedy)


def drawn_outputs(png, polygons, of=None):
    """(label, path) of the outputs drawn from a heatmap: the PNG with its side files, the
    polygons; None where not asked for. ``of``: the input they are a batch's outputs of."""
    from .quicklook import SIDECAR_KINDS, sidecars

    png_label, polygons_label = ((spell("png"), spell("polygons")) if of is None else
                                 (f"the quick look of {of}", f"the target polygons of {of}"))
    outputs = [(png_label, png), (polygons_label, polygons)]
    return outputs + ([(f"{png_label}'s {kind}", side) for kind, side
                       in zip(SIDECAR_KINDS, sidecars(png))] if png is not None else [])


def check_drawings(png, polygons):
    """The drawn outputs' own checks, after the paths': a PNG's suffix, a GeoPackage SQLite
    can write where it lands and that no other program holds open."""
    if png is not None:
        check_suffix(png, spell("png"), (".png",), "a PNG")      # drawn by Pillow, not GDAL
    if is_path(polygons):
        from .io.gdal import check_driver
        from .polygons import check_not_in_use, check_sqlite_path

        check_driver("GPKG", spell("polygons"), vector=True)
        check_sqlite_path(polygons)
        check_not_in_use(polygons)


def batch_paths(targets, out_dir, quick_model=None, overwrite=False, mask=None, model=None,
                drawn=None):
    """detect-many: distinct outputs (by case too), none of them an input (the exclusion
    ``mask`` and the ``model`` bundle among them), in a directory that is or can be made, and
    (without ``overwrite``) none a file hsanomaly did not write; ``targets``: [(src, dst)];
    ``quick_model(dst)``: where a quick model is trained (None: where none is); ``drawn(dst)``:
    the (png, polygons) drawn from the heatmap ``dst`` (None: none are), checked as paths
    here and for their owner by the raster's own ``detect``."""
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
    drawings = {dst: drawn(dst) if drawn is not None else (None, None) for _, dst in targets}
    outputs = []
    for src, dst in targets:
        # named after the input, its longest name is the tile store's: the input to rename
        check_name_fits(store_path(dst), f"the tile store of {src}",
                        f"rename {src} (its outputs are named after it)")
        check_output_paths(**dict(zip(("png", "polygons"), drawings[dst])))
        outputs += [(f"the output of {src}", dst),
                    (f"the tile store of {src}", store_path(dst), DIRECTORY),
                    *side_files([(f"the output of {src}", dst)]),
                    *drawn_outputs(*drawings[dst], of=src)]
        if quick_model is not None:
            outputs.append((f"the quick model of {src}", quick_model(dst), DIRECTORY))
    masks = [(spell("mask"), path) for path in input_files(mask)] if is_path(mask) else []
    models = [(spell("model"), model, DIRECTORY)] if is_path(model) else []
    check_paths([(spell("inputs"), path) for src, _ in targets for path in input_files(src)]
                + masks + models, outputs, writable=False)
    for png, polygons in drawings.values():
        check_drawings(png, polygons)
    if not overwrite:      # drawings: by the raster's own detect, which fails it alone (a
        for src, dst in targets:        # finished raster's kept drawing is none of its work)
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
