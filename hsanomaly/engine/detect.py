"""Tiled detection: read a window (plus halo), score it, keep the tile, assemble a GeoTIFF.

Memory is bounded by the tile size: a tile is read, scored and written to the tile store
before the next one is read. The output GeoTIFF is assembled from the store into a
temporary file and renamed only when complete, so a failed or cancelled run never leaves
a half-written output, and an interrupted run can ``resume`` from the tiles it finished.
"""

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HsanomalyError
from ..io.atomic import atomic_path, check_writable
from ..defaults import TILE
from ..io.source import gdal_env, open_source
from .store import TileStore, store_path

OUTPUT_BLOCK = 256


@dataclass
class DetectResult:
    path: str
    outputs: dict                 # output name -> path written
    tiles: int
    tiles_resumed: int
    seconds: float
    scorer: object = field(repr=False)
    model: str = None             # the model bundle used, if any
    polygons: int = None          # number of target polygons written, if asked for


def plan(source, scorer, dst, extras=None, tile=TILE):
    """Windows to score and output name -> (path, bands); refuses impossible jobs up front."""
    scorer.check(source)
    size = 2 * scorer.halo + 1
    if size > min(source.height, source.width):
        raise HsanomalyError(f"{source.name}: the {size}x{size} window of score {scorer.name!r} is "
                             f"larger than the {source.height}x{source.width} image")
    outputs = {"score": (str(dst), 1)}
    for name, path in (extras or {}).items():
        if name not in scorer.extras:
            raise HsanomalyError(f"score {scorer.name!r} has no {name!r} output "
                                 f"(it offers: {', '.join(scorer.extras) or 'none'})")
        outputs[name] = (str(path), scorer.extras[name])
    for path, _ in outputs.values():
        check_writable(path)
    return source.windows(tile), outputs


def score_tile(source, scorer, window):
    """All outputs of one tile as float32 arrays (bands, rows, cols), NaN where input is invalid."""
    block, valid = source.read(window, scorer.halo)
    h = scorer.halo
    inner_valid = valid[h:valid.shape[0] - h, h:valid.shape[1] - h]
    result = {}
    for name, value in scorer.score_block(block, valid).items():
        value = np.asarray(value, dtype=np.float32)
        value[:, ~inner_valid] = np.nan
        result[name] = value
    return result


def manifest(source, scorer, outputs, tile):
    return {"input": source.name, "shape": [source.count, source.height, source.width],
            "scorer": scorer.params(), "outputs": {k: v[1] for k, v in outputs.items()},
            "tile": tile}


def _profile(source, bands):
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands,
               "width": source.width, "height": source.height, "nodata": float("nan"),
               "tiled": True, "blockxsize": OUTPUT_BLOCK, "blockysize": OUTPUT_BLOCK,
               "compress": "deflate", "predictor": 3, "BIGTIFF": "IF_SAFER"}
    if source.profile.get("crs") is not None:
        profile["crs"] = source.profile["crs"]
    if source.profile.get("transform") is not None:
        profile["transform"] = source.profile["transform"]
    return profile


def assemble(store, source, windows, outputs, band_names=None):
    """Write every output GeoTIFF from the stored tiles, each atomically."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    for name, (path, bands) in outputs.items():
        with atomic_path(path) as tmp, warnings.catch_warnings(), gdal_env():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **_profile(source, bands)) as dst:
                for index, window in enumerate(windows):
                    dst.write(store.get(index)[name], window=window)
                names = (band_names or {}).get(name)
                for b in range(bands):
                    dst.set_band_description(b + 1, names[b] if names else
                                             (name if bands == 1 else f"{name} {b + 1}"))


class LocalExecutor:
    """Tiles scored one after another in this process."""

    def fit_source(self, source):
        return source

    def run(self, source, scorer, store, windows, todo):
        """Score and store the tiles ``todo``; yield each index once it is stored."""
        for index in todo:
            store.put(index, score_tile(source, scorer, windows[index]))
            yield index


def detect(src, dst, scorer, *, extras=None, tile=TILE, resume=False, fit=None, executor=None,
           progress=False, callback=None):
    """Score raster ``src`` into GeoTIFF ``dst`` with ``scorer``: plan, fit, store, assemble.

    extras: optional {output name: path} for the scorer's extra outputs (e.g. "recon").
    fit: fit the scorer on ``src`` first; default: what the scorer declares (``fits_on_scene``).
    executor: where tiles are scored; this process by default, or
    ``hsanomaly.distributed.DaskExecutor(client)`` for a Dask cluster. The output is the same.
    callback(fraction, message) -> True cancels: nothing is written, the tile store is removed.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    executor = executor or LocalExecutor()
    source = src if hasattr(src, "read") else open_source(src)
    try:
        windows, outputs = plan(source, scorer, dst, extras, tile)
        if scorer.fits_on_scene if fit is None else fit:
            if callback and callback(0.0, f"fitting {scorer.name} on {source.name}"):
                raise HsanomalyError(f"{dst}: cancelled")
            scorer.fit(executor.fit_source(source))
        store = TileStore(store_path(dst), manifest(source, scorer, outputs, tile), resume)
        done = store.done()
        todo = [i for i in range(len(windows)) if i not in done]
        with tqdm(total=len(windows), initial=len(done), desc=f"{scorer.name} {Path(str(dst)).name}",
                  unit="tile", disable=not progress) as bar:
            tiles = executor.run(source, scorer, store, windows, todo)
            for count, _ in enumerate(tiles, start=len(done) + 1):
                bar.update()
                if callback and callback(count / len(windows), f"tile {count}/{len(windows)}"):
                    tiles.close()
                    store.remove()
                    raise HsanomalyError(f"{dst}: cancelled")
        missing = set(range(len(windows))) - store.done()
        if missing:
            raise HsanomalyError(f"{store.path}: {len(missing)} tiles written by workers are not "
                                 "visible here; the output must be on storage the workers share")
        assemble(store, source, windows, outputs, getattr(scorer, "band_names", None))
        store.remove()
        return DetectResult(outputs["score"][0], {k: v[0] for k, v in outputs.items()},
                            len(windows), len(done), time.perf_counter() - start, scorer)
    finally:
        source.close()


def score_array(source, scorer, tile=TILE):
    """Every output of a fitted ``scorer`` over an in-memory-sized ``source``, as whole arrays.

    The same tiles as ``detect`` (so the same numbers), without a tile store or a GeoTIFF:
    the path for small scenes, the ``Detector`` and the research harness.
    """
    scorer.check(source)
    windows = source.windows(tile)
    arrays = {}
    for window in windows:
        for name, value in score_tile(source, scorer, window).items():
            if name not in arrays:
                arrays[name] = np.full((value.shape[0], source.height, source.width), np.nan,
                                       np.float32)
            rows, cols = window.toslices()
            arrays[name][:, rows, cols] = value
    return arrays
