"""Tiled detection: read a window (plus halo), score it, keep the tile, assemble a GeoTIFF.

Memory is bounded by the tile size: a few tiles are in flight at once (``scored_tiles``:
reads, scoring and storing overlap), each written to the tile store as soon as it is scored.
The output GeoTIFFs are assembled from the store through the one write path
(``hsanomaly.io.atomic``): private temporary files, read back and checked, then renamed, so a
failed or cancelled run never leaves a half-written output and never
touches an earlier one, and an interrupted run can ``resume`` from the tiles it finished.
"""

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from ..cancel import cancellable
from ..defaults import TILE
from ..errors import Cancelled, HsanomalyError, caller_callback, ignoring
from ..io.atomic import (TMP_SUFFIX, check_writable, native_quiet, read_back, stage_raster,
                         staged_into)
from ..io.checks import absolute, path_text, warn
from ..io.fingerprint import input_fingerprint, without_served
from ..io.gdal import gdal_env, open_raster, warn_unusable_proj
from ..io.heatmap import (band_descriptions, describe_bands, finish_heatmap, heatmap_profile,
                          heatmap_tags, is_cog, to_cog)
from ..io.lock import check_unlocked
from ..io.ownership import TAG_PREFIX
from ..io.source import open_source
from ..logs import progress_bar, stage as stage_log
from ..scorers import check_extras
from ..spelling import counted, spell
from .checks import (SUMMARIES, check_outcome, check_scorable, check_space, check_tile,
                     runtime_error, warn_lined_up)
from .store import (MANIFEST, TileStore, check_resumable, read_manifest, remove_finished,
                    removed, run_fingerprint, store_path, tiles_kept)
from .tiles import LocalExecutor, fit_scorer

RUN_TAG = TAG_PREFIX + "RUN_FINGERPRINT"      # what detect-many compares to know a result is current
CANCEL_INTERVAL = 0.1   # seconds between two cancel checks in a fit (``cancel_check``)


@dataclass
class DetectResult:
    """What ``hsanomaly.detect`` did: the rasters written (``outputs``: the heatmap and any extra
    outputs), the tiles scored (and of them resumed), the seconds taken, the score, the model
    used, the polygons' count (``polygons``, if asked for), and the pixels scored and left
    out as nodata or by the exclusion ``mask`` (valid
    pixels the score could not score are neither: a warning counts them). ``text()`` is the
    line the command line prints.
    Plain values only: a batch keeps one per raster (a scorer here kept its model)."""
    path: str
    outputs: Dict[str, str]       # output name -> path written
    tiles: int
    tiles_resumed: int
    seconds: float
    score: str                    # the score's name
    model: Optional[str] = None       # the model bundle used, if any
    polygons: Optional[int] = None    # number of target polygons written, if asked for
    pixels_scored: Optional[int] = None   # (None: tiles of an earlier version, or a run kept)
    pixels_nodata: Optional[int] = None   # left out as nodata, in every band or in some
    mask: Optional[str] = None            # the exclusion mask, whose pixels count as nodata
    bands_left_out: Optional[str] = None  # which of the raster's bands reading left out, if any
    earlier: bool = False         # the outputs are a finished earlier run's, kept (a resume)
    training_seconds: Optional[float] = None    # of ``seconds``, a quick model's training

    def __setstate__(self, state):
        """A result pickled when it kept its scorer (before 0.2.0) takes the score's name; the
        fields added since take their defaults."""
        if "score" not in state and "scorer" in state:
            state["score"] = getattr(state.pop("scorer"), "name", None)
        self.__dict__.update(state)

    def text(self) -> str:
        """The one line the command line and QGIS print: tiles, time, pixels scored and left
        out."""
        if self.earlier:
            return (f"{self.path}: {self.score} heatmap finished earlier with this input and "
                    "these settings: kept, nothing scored again")
        line = (f"{self.path}: {self.score} heatmap, {counted(self.tiles, 'tile')} in "
                f"{self.seconds:.1f} s")
        if self.training_seconds is not None:
            line += f" ({self.training_seconds:.1f} s of it training the quick model)"
        if self.tiles_resumed:
            line += f" ({self.tiles_resumed} resumed)"
        if self.pixels_scored is not None:
            line += (f"; {counted(self.pixels_scored, 'pixel')} scored, {self.pixels_nodata:,} "
                     f"nodata{' or masked' if self.mask else ''}")
        if self.bands_left_out:
            line += f"; {self.bands_left_out}"
        return line

    def model_text(self, src, reuse):
        """The line naming the quick model this result's run trained on ``src``, the earlier
        run where it was kept; ``reuse``: how the door in use takes a model."""
        trained = "trained earlier on" if self.earlier else "trained on"
        return f"{self.model}: model {trained} {src}; {reuse}"


def plan_outputs(source, scorer, dst, extras=None, tile=TILE, own_model=False):
    """Output name -> (path, bands), after checking the tile size, the source (``own_model``
    as ``check_scorable`` takes it) and the paths."""
    check_tile(tile)
    check_scorable(source, scorer, own_model)
    outputs = {"score": (path_text(dst), 1)}
    check_extras(type(scorer), extras)
    for name, path in (extras or {}).items():
        outputs[name] = (path_text(path), scorer.extra_bands[name])
    for path, _ in outputs.values():
        check_writable(path, directory=False)
    return outputs


def config(source, scorer, outputs, tile, model=True):
    """The configuration a run's tiles depend on, as plain JSON (the model digest among the
    scorer's parameters; ``model=False``: the scorer's settings only, known before its model
    is read)."""
    job = {"shape": [source.count, source.height, source.width],
           "scorer": scorer.params() if model else scorer.settings(),
           "outputs": {k: v[1] for k, v in outputs.items()}, "tile": int(tile)}
    if source.exclusion is not None:        # the pixels left out change every tile's scores
        job["excluded"] = source.exclusion.digest
    return job


def manifest(src, source, scorer, outputs, tile, given_model=None, model=True, fingerprint=None):
    """What a run's tile store records: the input's fingerprint (``fingerprint``, or taken
    now) and the configuration (which make the run's fingerprint), the exclusion mask's name,
    for messages, and the model the caller gave (``given_model``), so that a resume without
    it is refused before training. ``model``: the configuration names the model's digest
    (``config``)."""
    job = {"input": fingerprint or input_fingerprint(src, source),
           "config": config(source, scorer, outputs, tile, model=model)}
    if source.exclusion is not None:
        job["mask"] = source.exclusion.path
    if given_model is not None:
        job["model"] = absolute(given_model)     # the run's message names it anywhere
    return job


def expected_fingerprint(src, scorer, tile=TILE, outputs=None, source=None):
    """The run fingerprint a heatmap of ``src`` scored now by ``scorer`` (into ``outputs``,
    {name: (path, bands)}; the heatmap alone by default) would carry; ``source``: ``src``
    opened, where the caller has it (a path's fingerprint is its file's, as the run takes it:
    a .mat scene's is not its cube's)."""
    opened = source is None and not hasattr(src, "read")
    if source is None:
        source = open_source(src) if opened else src
    try:
        job = manifest(src, source, scorer, outputs or {"score": (None, 1)}, tile)
    finally:
        if opened:
            source.close()
    return run_fingerprint(job["input"], job["config"])


def why_not_kept(src, source, scorer, outputs, fingerprint, cog=False, expected=None):
    """None where every file of ``outputs`` ({name: (path, bands)}) is what a run of ``src``
    (``source``: its pixels as the run reads them, or ``src`` itself) by ``scorer`` with run
    ``fingerprint`` wrote there, so it is kept as finished: that fingerprint, the input's
    recorded name, a grid no other tool cut or warped since, the role and bands of that output
    (the heatmap is not a recon raster given in its place), the Cloud-Optimized layout where
    ``cog`` asks for it (the fingerprint names none of these), pixels that read back whole.
    Otherwise why not, for a message: empty where no heatmap of a run is there, or where it
    was said (damaged pixels)."""
    from ..io.ownership import is_own_detect_output, other_input, recorded_input

    for name, (path, _) in outputs.items():
        recorded = read_fingerprint(path) if os.path.isfile(path) else None
        if recorded is None:
            return "" if name == "score" else f"{path} is not its {name} output"
        if recorded != fingerprint:
            changed = None if expected is None or name != "score" else \
                tags_changed(path, expected)
            return (f"it was scored otherwise ({changed})" if changed else
                    "it is of another input, model, settings or outputs, or of a version of "
                    "hsanomaly that scored otherwise")
        if not is_own_detect_output(path):
            return f"{path}: its grid was changed since (cut, resampled or warped)"
        other = other_input(recorded_input(path), src)
        if other is not None:
            return f"it is of another input ({other})"
    opened = not hasattr(source, "read")
    source = open_source(source) if opened else source
    try:
        bands = source.bands
    finally:
        if opened:
            source.close()
    for name, (path, count) in outputs.items():
        with open_raster(path, check=False) as ds:     # its pixels: _reads_back
            if list(ds.descriptions) != band_descriptions(scorer, name, count, bands):
                return f"{path} holds another output than its {name}"
        if cog and not is_cog(path):
            return f"{path} is not a Cloud-Optimized GeoTIFF"
    return None if all(_reads_back(path) for path, _ in outputs.values()) else ""


# the tags a heatmap records what it was scored with by, and their names in a message
SCORED_WITH = (("SCORE", "score"), ("PARAMETERS", "settings"), ("TILE", "tile"),
               ("MASK", "mask"), ("MODEL_DIGEST", "model"), ("INPUT_FINGERPRINT", "input"),
               ("VERSION", "hsanomaly version"))


def tags_changed(path, expected):
    """What heatmap ``path`` was scored with that differs from the tags ``expected``
    (``heatmap_tags`` of the run asking), as "tile: 37 -> 64; ...", the settings by name;
    None where none of them differ (its outputs did)."""
    import json

    with open_raster(path, check=False) as ds:
        tags = ds.tags()
    said = []
    for key, label in SCORED_WITH:
        before, now = tags.get(TAG_PREFIX + key), expected.get(TAG_PREFIX + key)
        if before == now:
            continue
        if key == "PARAMETERS" and before and now:
            old, new = json.loads(before), json.loads(now)
            said += [f"{k}: {old.get(k, 'none')} -> {new.get(k, 'none')}"
                     for k in sorted((old.keys() | new.keys()) - {"name"})   # the score's
                     if old.get(k) != new.get(k)]
        elif key in ("INPUT_FINGERPRINT", "MODEL_DIGEST"):
            said.append(f"{label}: another")          # digests say nothing to a reader
        else:
            said.append(f"{label}: {before or 'none'} -> {now or 'none'}")
    return "; ".join(said) or None


def _reads_back(path):
    """Whether a finished output still reads whole: one whose pixels were damaged since (a
    disk's error, bytes overwritten) is scored again, not kept as done; said, since it
    replaces the damaged file. (One cut short loses its tags, written last, first: it is no
    longer told for ours, and is refused as any file at an output's name is.)"""
    try:
        read_back(path)
    except HsanomalyError as err:
        warn(f"{err}; scored again")
        return False
    return True


def resumed_run(src, dst, scorer, extras=None, tile=TILE, cog=False, scene=None, stage=None):
    """(the result of a finished run to keep, or None; whether an interrupted run is there to
    resume) for ``resume`` of ``src`` (``scene``: its pixels as the run reads them, where a mask
    leaves some out) by ``scorer`` into ``dst`` and ``extras``. A finished run with these
    settings whose outputs are as it wrote them (``why_not_kept``) is kept, nothing scored
    again; the store a kill left between its commit and the store's removal goes. With
    ``stage``, the outputs staged there are drawn from the kept heatmap: its commit is refused
    if another run replaced it meanwhile. With neither run there, the run scores from the
    start, saying so and why a finished run there is not kept. Where the fingerprint cannot be
    taken (an unreadable input or model) the run that follows says what."""
    start, store = time.perf_counter(), store_path(dst)
    scene = src if scene is None else scene
    try:
        source = scene if hasattr(scene, "read") else open_source(scene)
    except HsanomalyError:
        return None, True
    try:
        check_unlocked(store, dst)       # another run's: it says so
        outputs = plan_outputs(source, scorer, dst, extras, tile)
        job = manifest(scene, source, scorer, outputs, tile)
        fingerprint = run_fingerprint(job["input"], job["config"])
        reason = why_not_kept(src, source, scorer, outputs, fingerprint, cog,
                              heatmap_tags(scorer, source, job["input"], tile))
        tiles = len(source.windows(tile))
        mask = None if source.exclusion is None else source.exclusion.path
    except HsanomalyError:
        return None, True
    finally:
        if source is not scene:
            source.close()
    if reason is None:
        remove_finished(store, fingerprint)
        if stage is not None:
            stage.drawn_from(dst)
        return DetectResult(path_text(dst), {k: v[0] for k, v in outputs.items()}, tiles, tiles,
                            time.perf_counter() - start, scorer.name, mask=mask,
                            earlier=True), True
    if (store / MANIFEST).is_file():
        return None, True       # an interrupted run: the engine resumes it, or says why not
    kept = f", and the finished run there is not kept: {reason}" if reason else ""
    warn(f"{dst}: no interrupted run here to resume{kept}; scoring from the start")
    return None, False


def check_resumed_run(src, dst, scorer, extras=None, tile=TILE):
    """Refuse --resume up front, before a quick model is trained for it, where the run would
    refuse it once trained: the interrupted run of ``dst`` scored another input, or with other
    settings (the model's own aside: trained again, the quick model is the same)."""
    store = store_path(dst)
    if not (store / MANIFEST).is_file():
        return                   # nothing to resume: the engine says so and scores anew
    outputs = {"score": (path_text(dst), None), **{name: (path_text(path), None)
                                             for name, path in (extras or {}).items()}}
    source = src if hasattr(src, "read") else open_source(src)
    try:
        job = manifest(src, source, scorer, outputs, tile, model=False)
    finally:
        if source is not src:
            source.close()
    previous = read_manifest(store)
    check_resumable(store, job, previous, model=False)   # a torn one: refused
    if previous.get("model"):
        raise HsanomalyError(f"{store}: the interrupted run here scored with the model "
                             f"{previous['model']} ({spell('model')}); resume with it, or rerun "
                             f"without {spell('resume', True)} to start over")


def read_fingerprint(path):
    """The run fingerprint recorded in heatmap ``path``, or None."""
    import rasterio

    try:
        with open_raster(path, check=False) as ds:     # its tags
            return ds.tags().get(RUN_TAG)
    except (HsanomalyError, rasterio.errors.RasterioError):
        return None


def assemble(store, source, windows, outputs, descriptions=None, tags=None, stage=None,
             cog=False):
    """Write every output GeoTIFF from the stored tiles through one staged write: each into a
    private temporary file, with ``descriptions`` ({output: band descriptions}), dataset
    ``tags``, overviews and statistics (a Cloud-Optimized GeoTIFF with ``cog``), read back and
    checked, then all renamed into place (by ``stage``'s owner when one is given)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with staged_into(stage) as stage:
        files = {}        # output name -> (staged path, path GDAL writes first)
        for name, (path, bands) in outputs.items():
            tmp = stage_raster(stage, path, source.width, source.height, bands)
            files[name] = (tmp, _cog_source(tmp) if cog else tmp)
        with ignoring(NotGeoreferencedWarning), gdal_env(), native_quiet():
            with contextlib.ExitStack() as datasets:
                open_outputs = {
                    name: datasets.enter_context(rasterio.open(
                        files[name][1], "w", **heatmap_profile(source, bands)))
                    for name, (_, bands) in outputs.items()}
                expected = tile_shapes(windows, outputs)
                for index, window in enumerate(windows):    # each tile read once for all outputs
                    tile = store.get(index, expected(index))
                    for name, dst in open_outputs.items():
                        dst.write(tile[name], window=window)
                for name, dst in open_outputs.items():
                    bands = outputs[name][1]
                    describe_bands(dst, source, (descriptions or {}).get(name) or
                                   [name if bands == 1 else f"{name} {b + 1}" for b in range(bands)],
                                   outputs[name][0])
                    if tags:
                        dst.update_tags(**tags)
            for tmp, written in files.values():
                finish_heatmap(written)
                if cog:
                    to_cog(written, tmp)
                    written.unlink()


def _cog_source(tmp):
    """Where the tiled GeoTIFF that GDAL's COG driver copies into ``tmp`` is written: a
    private folder beside it, under the output's own name, which its messages then give
    (``destination_of``), not a file the user never sees."""
    folder = tmp.parent / f"cog{TMP_SUFFIX}"
    folder.mkdir()
    return folder / tmp.name


def _changed(source):
    return HsanomalyError(f"{source.name}: the input changed while it was scored, so the "
                          "heatmap would mix both; nothing was replaced: rerun")


def detect(src, dst, scorer, *, extras=None, tile=TILE, resume=False, executor=None,
           progress=False, callback=None, stage=None, cog=False, trained_on=None,
           given_model=None):
    """Score raster ``src`` into GeoTIFF ``dst`` with ``scorer``: plan, fit, store, assemble.

    extras: optional {output name: path} for the scorer's extra outputs (e.g. "recon").
    executor: where tiles are scored; this process by default, or
    ``hsanomaly.distributed.DaskExecutor(client)`` for a Dask cluster. The output is the same.
    callback(fraction, message) -> True cancels (``Cancelled``): nothing is written, the tile
    store is removed (a resumed run's is kept, with the tiles an earlier run finished).
    cog: write Cloud-Optimized GeoTIFFs (GDAL's COG driver) instead of tiled GeoTIFFs.
    stage: an ``hsanomaly.io.atomic.Staging`` to assemble into; its owner commits it (and the
    tile store is removed then), so more outputs can be written and replaced together.
    trained_on: the input's fingerprint when the scorer's quick model was trained on it: the
    input must not have changed since. given_model: the model's path as the caller gave it
    (not a quick model's), recorded for a resume's messages.
    On an error the outputs keep their previous content and finished tiles are kept for
    ``resume``; errors are one line (``HsanomalyError``). The run fits ``scorer`` in place
    (a copy of it where it leaves out extras the run does not write, ``Scorer.planned``), so
    runs at once in threads need a scorer each (``hsanomaly.detect`` builds its own).
    """
    start = time.perf_counter()
    executor = executor or LocalExecutor()
    callback = caller_callback(callback)
    # fingerprinted before anything reads it: every pixel read is of the file fingerprinted
    # or of a later one, which the fingerprint at the end tells
    fingerprint = None if hasattr(src, "read") else input_fingerprint(src)
    source = src if hasattr(src, "read") else open_source(src)
    store, handed = None, False
    try:
        outputs = plan_outputs(source, scorer, dst, extras, tile, trained_on is not None)
        scorer = scorer.planned(outputs)        # the extras not written are not gathered
        if source.profile.get("crs") is not None:
            warn_unusable_proj()
        if cog and source.profile.get("geolocation"):
            warn(f"{dst}: GDAL's COG driver does not keep the input's geolocation arrays, so "
                 f"the heatmap will not be placed on the map; leave out {spell('cog', True)} to "
                 "keep them")
        windows = source.windows(tile)
        check_space(store_path(dst), outputs, source, resume, cog, len(windows))
        check_unlocked(store_path(dst), dst)
        job = manifest(src, source, scorer, outputs, tile, given_model, fingerprint=fingerprint)
        if source.changed():      # since it was opened: its pixels and this fingerprint differ
            raise _changed(source)
        if trained_on is not None and job["input"] != trained_on:
            raise HsanomalyError(f"{source.name}: the input changed while the quick model was "
                                 "trained on it, so the model and the heatmap would see two "
                                 "rasters; nothing was replaced: rerun")
        # a kill between a run's commit and its store's removal left that finished run's
        # store: removed as such, not as an interrupted run's work discarded
        finished = read_fingerprint(dst) if not resume and os.path.isfile(dst) else None
        if finished is not None:
            remove_finished(store_path(dst), finished)
        # made (and locked) before the fit: another run on this output is refused at once,
        # not after fitting and scoring everything
        store = TileStore(store_path(dst), job, resume, output=dst)
        if scorer.fits_on_scene:
            fitting = f"fitting {scorer.name} on {source.name}"
            check = cancel_check(callback, fitting, dst)
            check()
            with stage_log(fitting), cancellable(check):
                fit_scorer(scorer, executor.fit_source(source),
                           then_scored=not executor.distributed)
        done = _score(executor, source, scorer, store, windows, outputs, dst, progress, callback)
        if source.moved_away() and not executor.distributed:   # read through the file it opened
            raise HsanomalyError(f"{source.name}: moved or removed while it was scored; nothing "
                                 f"was replaced, and the tiles scored are kept for "
                                 f"{spell('resume', True)} once it is back")
        # another file at its path is a change, unless it holds the same bytes, hashed whole
        # (a sync, a copy put back): a fingerprint of samples could not tell
        whole = "sha256" in job["input"] and source.loaded is None
        if without_served(input_fingerprint(src, source)) != without_served(job["input"]) or (
                source.changed() and not whole):
            store.remove()          # tiles of two inputs: none is worth resuming
            raise _changed(source)
        summaries = [store.members(i, SUMMARIES) for i in range(len(windows))]
        try:
            totals = check_outcome(source.name, scorer, summaries)
        except HsanomalyError:
            store.remove()          # a rerun would score the same: nothing to resume
            raise
        tags = {**heatmap_tags(scorer, source, job["input"], tile), RUN_TAG: store.fingerprint}
        descriptions = {name: band_descriptions(scorer, name, bands, source.bands)
                        for name, (_, bands) in outputs.items()}
        with staged_into(stage) as stage, stage_log("assembling " + str(dst)):
            assemble(store, source, windows, outputs, descriptions, tags, stage, cog)
            stage.on_commit(store.remove)
            # once in place: a warning made an error (-W error) loses no heatmap
            stage.on_commit(lambda: warn_lined_up(outputs["score"][0], outputs["score"][0]))
            stage.on_end(store.release)     # the stage's owner ends it: the lock lasts till then
            handed = True
        result = DetectResult(outputs["score"][0], {k: v[0] for k, v in outputs.items()},
                              len(windows), len(done), time.perf_counter() - start, scorer.name,
                              mask=None if source.exclusion is None else source.exclusion.path,
                              bands_left_out=source.left_out or None)
        if totals is not None:
            valid, unscored = totals
            result.pixels_scored = valid - unscored
            result.pixels_nodata = source.height * source.width - valid
        return result
    except BaseException as err:    # failed, or interrupted (a signal, Ctrl-C)
        kept = (store.resumed or bool(store.done())) if store is not None else \
            resume and os.path.isdir(store_path(dst))     # an earlier run's tiles stay there
        if store is not None and not kept:
            store.remove()      # nothing finished: nothing to resume
        one_line = runtime_error(err, dst, kept) if isinstance(err, Exception) else None
        if kept and isinstance(err, KeyboardInterrupt) and hasattr(err, "add_note"):
            # said where the interrupt is shown (a notebook): a plain rerun would start over
            err.add_note(f"{dst}: {tiles_kept(store=store_path(dst))}; a run without it starts "
                         "over")
        if one_line is None:
            raise
        raise one_line from None
    finally:
        if store is not None and not handed:
            store.release()     # failed, cancelled or interrupted: another run may go on
        source.close()


def cancel_check(callback, message, dst):
    """``check()`` for a step run ``cancellable``: ``callback(0.0, message)``, at most once
    every ``CANCEL_INTERVAL`` seconds (the first time always), so that a cancel asked for
    during a long fit stops it within about that; raises ``Cancelled`` where the callback
    says so."""
    last = None

    def check():
        nonlocal last
        now = time.monotonic()
        if callback is None or (last is not None and now - last < CANCEL_INTERVAL):
            return
        last = now
        if callback(0.0, message):
            raise Cancelled(f"{dst}: cancelled")
    return check


def tile_shapes(windows, outputs):
    """``expected(index)``: {output: (bands, rows, cols)} of tile ``index`` for ``outputs``
    ({output: (path, bands)}); None for an index the plan has no window for (a stray)."""
    def expected(index):
        if not 0 <= index < len(windows):
            return None
        window = windows[index]
        return {name: (bands, int(window.height), int(window.width))
                for name, (_, bands) in outputs.items()}

    return expected


def _score(executor, source, scorer, store, windows, outputs, dst, progress, callback):
    """Score the tiles the store lacks (a damaged or misshapen stored tile counts as lacking);
    returns the indices that were already done."""
    expected = tile_shapes(windows, outputs)
    done = store.discard_bad(store.done(), expected) if store.resumed else set()
    todo = [i for i in range(len(windows)) if i not in done]
    with progress_bar(progress, total=len(windows), initial=len(done), unit="tile",
                      desc=f"{scorer.name} {Path(str(dst)).name}") as bar:
        # closed on every way out (an interrupt too): tile threads still reading the source
        # end before it is closed, which would pull the dataset from under them (a crash)
        with contextlib.closing(executor.run(source, scorer, store, windows, todo)) as tiles:
            for count, _ in enumerate(tiles, start=len(done) + 1):
                bar.update()
                if callback and callback(count / len(windows), f"tile {count}/{len(windows)}"):
                    tiles.close()
                    if store.resumed:     # an earlier run's tiles too: not this run's to drop
                        raise Cancelled(f"{dst}: cancelled; {tiles_kept(store=store.path)}")
                    store.remove()
                    raise Cancelled(f"{dst}: cancelled")
    missing = set(range(len(windows))) - store.done()
    if missing and not store.path.is_dir():
        raise removed(store.path)
    if missing:
        raise HsanomalyError(f"{store.path}: {len(missing)} tiles written by workers are not "
                             "visible here; the output must be on storage the workers share"
                             if executor.distributed else
                             f"{store.path}: {counted(len(missing), 'finished tile')} went "
                             "missing from the tile store during the run (removed by another "
                             "process?); rerun")
    return done
