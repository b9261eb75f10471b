"""Checks every job runs before any work: its options and inputs (its outputs:
``hsanomaly.outputs``).

``hsanomaly.api`` calls these first, so the CLI, QGIS and Dask users all get one line naming
the option or path at fault, before a model is trained or a tile is scored.
"""

import os

from .errors import HsanomalyError
from .io.checks import warn
from .io.paths import check_path_kind, check_raster_path, expand_pattern, holds_numbers, is_path
from .options import check_batch_keywords, check_callbacks, check_flags, check_near_misses
from .spelling import kind_of, some_of, spell


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


def batch_inputs(inputs, use=None, needed=False):
    """``detect_many``'s and ``train``'s inputs as a list of names: one path, or those in a
    list, a pandas Series or a numpy array; anything else (a cube, a dataset) is one input,
    refused in one line rather than taken apart (``use``: what to do instead). ``needed``:
    refuse inputs that were all hsanomaly's own outputs (a batch of none scores none)."""
    one = (is_path(inputs) or isinstance(inputs, (bytes, bytearray))
           or not hasattr(inputs, "__iter__") or hasattr(inputs, "columns")
           or getattr(inputs, "ndim", 1) == 0 or holds_numbers(inputs))
    inputs = [inputs] if one else list(inputs)     # a generator is read once
    inputs = [match for src in inputs for match in expand_pattern(src)]
    for src in inputs:
        check_raster_path(src, spell("inputs"), use)
    kept = without_own_outputs([str(os.fspath(src)) for src in inputs])
    if needed and inputs and not kept:
        raise HsanomalyError(f"{spell('inputs')}: every raster given is hsanomaly's own output, "
                             "left out: no scene to work on")
    return kept


def without_own_outputs(sources):
    """``sources`` less what detect wrote (heatmaps, extra rasters, quick models, tile stores,
    quick looks, target polygons), said: a pattern (``dir/*``) with the outputs in ``dir``
    matched a batch's first run's on every rerun, and a training's a ``--recon-out`` raster of
    the bands it takes."""
    from .engine.store import is_tile_store
    from .io.ownership import is_own_detect_output, is_own_png
    from .io.paths import is_quick_model
    from .polygons import holds_targets

    def drawn(src):       # targets a reviewer edited too: no raster to score either way
        name = str(src).lower()
        return ((name.endswith(".png") and is_own_png(src))
                or (name.endswith(".gpkg") and holds_targets(src)))
    own = [src for src in sources if is_own_detect_output(src) or is_quick_model(src)
           or (str(src).endswith(".partial") and is_tile_store(src)) or drawn(src)]
    if own:
        warn(f"{some_of(own, 3)}: left out of the inputs, being hsanomaly's own "
             "outputs (heatmaps, quick models, tile stores, quick looks, target polygons)")
    return [src for src in sources if src not in own]


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
    if flags.get("cog"):
        from .io.gdal import check_driver

        check_driver("COG", spell("cog"))
    check_callbacks(callback=callback, settled=settled)
    check_extras(cls, extras)
    check_execution(workers, scheduler)
    return cls
