"""One call per job: ``train``, ``detect``, ``detect_many``, ``evaluate``.

The CLI, the QGIS provider and the Dask runner call exactly these; their defaults come
from ``hsanomaly.defaults``. Every check that can fail runs before the work starts.
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import defaults
from .errors import HsanomalyError
from .io.atomic import describe
from .io.checks import one_job
from .options import check_keywords, plain_values, public_signature, renamed_keywords
from .polygons import check_threshold
from .quickmodel import check_quick_model, resumable_quick_model, scene_model_path, train_on_scene
from .scorers import extra_label, make_scorer, scorer_class
from .spelling import spell
from .training import LIBRARY_ONLY, train as train_bundle
from .validate import (batch_inputs, batch_paths, check_raster_path, check_request, detect_paths,
                       evaluate_paths, model_path)


@one_job()
def train(inputs, out, **options):
    """Train a WGAN-GP on ``inputs`` (raster or .mat paths) into the model bundle ``out``, with
    ``hsanomaly.training.train``'s options (another is refused). Needs torch (``[train]``).
    Returns the Bundle Detector/detect take."""
    check_keywords("train", train_bundle, options, LIBRARY_ONLY)
    return train_bundle(batch_inputs(inputs), out, **plain_values(options))


train.__signature__ = public_signature(train_bundle, LIBRARY_ONLY)   # help() shows the options


@one_job()
def detect(src, dst, *, score=None, model=None, extras=None, polygons=None, threshold=None,
           far=None, png=None, tile=defaults.TILE, resume=False, cog=False, overwrite=False,
           workers=None, scheduler=None, progress=False, callback=None, **options):
    """Score raster ``src`` into the heatmap GeoTIFF ``dst``; optionally a PNG and polygons.

    score: a name from ``hsanomaly.scorers.SCORES`` (default ``defaults.SCORE``). Scores that
    need a model use ``model`` (a bundle directory); without one, a quick model is trained on
    ``src`` (needs torch) and kept beside ``dst``. ``options`` are the score's own (see
    ``Detector``); one it does not take is refused. extras: {"recon"|"latent"|"convergence":
    path}. polygons: a GeoPackage of the regions above ``threshold`` or above the threshold
    of false-alarm rate ``far`` (a number or "auto"). workers/scheduler: score the tiles on a
    Dask cluster (a local one of N processes, or an address or Client). callback(fraction,
    message) -> True cancels. Every option and path is checked before any work; the heatmap,
    extras, PNG and polygons are replaced together, only once all are written and checked.
    An existing output file hsanomaly did not write is refused unless ``overwrite``.
    Returns an ``engine.DetectResult``.
    """
    from .distributed import DaskExecutor
    from .engine import detect as run_engine
    from .engine.detect import check_resumed_input
    from .io.atomic import staged
    from .io.source import open_source

    check_raster_path(src)
    src = os.fspath(src)
    model = model_path(model)
    score = defaults.SCORE if score is None else score
    cls = check_request(score, model, options, extras, tile, workers, scheduler, resume=resume,
                        cog=cog, overwrite=overwrite, progress=progress)
    quick = scene_model_path(dst) if cls.needs_model and model is None else None
    detect_paths(src, dst, model=model, extras=extras, png=png, polygons=polygons,
                 quick_model=quick, overwrite=overwrite)
    check_threshold(polygons, threshold, far)
    # built (and its options checked) before any training; the bundle loads on first use
    scorer = make_scorer(score, **options, **({"model": model or quick} if cls.needs_model else {}))
    if "convergence" in (extras or {}) and "convergence" in scorer.unmeasured_outputs():
        raise HsanomalyError(f"{extra_label('convergence')}: the fast solver with "
                             f"{spell('refine', 0)} (the default) takes no step, so the band "
                             f"would be all zeros; pass {spell('refine', placeholder='N')} or "
                             f"{spell('solver', 'thesis')}")
    with staged() as stage:
        if quick is not None:
            if resume and resumable_quick_model(dst, quick):
                model = quick
            else:     # staged: replaced with the heatmap, so a failed run keeps the earlier pair
                if resume:
                    check_resumed_input(src, dst)
                with contextlib.closing(open_source(src)) as source:
                    check_quick_model(source, scorer)
                trained = train_on_scene(src, dst, cls.model_training, callback, progress,
                                         stage.directory(quick))
                scorer, model = make_scorer(score, **options, model=trained), quick
        with _client(workers, scheduler) as client:
            executor = None if client is None else DaskExecutor(client)
            result = run_engine(src, dst, scorer, extras=extras, tile=tile, resume=resume,
                                executor=executor, progress=progress, callback=callback,
                                stage=stage, cog=cog)
        if png is not None:
            from .quicklook import write_png

            write_png(stage.temporary(dst), png, stage=stage)
        if polygons is not None:
            from .polygons import write_polygons

            result.polygons = write_polygons(stage.temporary(dst), polygons, threshold=threshold,
                                             far=far, stage=stage, name=dst)
    result.model = None if model is None else str(model)
    return result


@dataclass
class BatchItem:
    """One raster of ``detect_many``: its input, its heatmap and what became of it."""
    src: str
    dst: str
    status: str                   # "scored", "skipped" (finished before) or "failed"
    result: object = None         # DetectResult when scored
    error: str = None             # one-line message when failed


def batch_output(src, out_dir, score):
    """Where ``detect_many`` writes the heatmap of ``src``: ``out_dir/<stem>_<score>.tif``."""
    return Path(out_dir) / f"{Path(str(src)).stem}_{score}.tif"


@one_job()
def detect_many(inputs, out_dir, *, score=None, model=None, tile=defaults.TILE, overwrite=False,
                workers=None, scheduler=None, progress=False, **options):
    """Score every raster of ``inputs`` (a path, a wildcard pattern or a list of them) into
    ``out_dir/<stem>_<score>.tif``, on one cluster; returns a ``BatchItem`` per raster, in order.
    A model score without ``model`` trains a quick model per raster, as ``detect`` does.

    A raster whose heatmap carries the fingerprint of its input and these settings is skipped,
    an interrupted one resumed, so a batch can simply be rerun; a changed input or setting is
    scored again. ``overwrite`` scores all anew and replaces files hsanomaly did not write
    (refused otherwise, before any work). A failed raster's ``BatchItem`` says why in one line.
    """
    from tqdm.auto import tqdm

    from .engine.store import batch_resumes

    model = model_path(model)
    score = defaults.SCORE if score is None else score
    cls = check_request(score, model, options, None, tile, workers, scheduler,
                        overwrite=overwrite, progress=progress, batch=(detect, detect_many))
    inputs = batch_inputs(inputs)
    out_dir = Path(out_dir)
    targets = [(src, batch_output(src, out_dir, score)) for src in inputs]
    batch_paths(targets, out_dir, scene_model_path if cls.needs_model and model is None else None,
                overwrite)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HsanomalyError(f"{out_dir}: cannot create {spell('out_dir')} ({err.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise HsanomalyError(f"{out_dir}: {spell('out_dir')} is not writable")

    states = [("score" if overwrite else _batch_state(src, dst, score, model, tile, options))
              for src, dst in targets]
    items = [BatchItem(src, str(dst), "skipped") if state == "skip" else None
             for (src, dst), state in zip(targets, states)]
    pending = [i for i, item in enumerate(items) if item is None]
    with (_client(workers, scheduler) if pending else contextlib.nullcontext()) as client, \
            tqdm(pending, unit="raster", disable=not progress) as bar, batch_resumes():
        for i in bar:
            src, dst = targets[i]
            try:
                result = detect(src, dst, score=score, model=model, tile=tile,
                                resume=states[i] == "resume", overwrite=overwrite,
                                scheduler=client, **options)
                items[i] = BatchItem(src, str(dst), "scored", result=result)
            except Exception as err:       # one raster's failure never stops the batch
                items[i] = BatchItem(src, str(dst), "failed", error=_one_line(src, err))
    return items


def _batch_state(src, dst, score, model, tile, options):
    """What ``detect_many`` does with ``dst``: "skip" it (finished, with the fingerprint of
    ``src`` scored now), "resume" its interrupted run of that fingerprint, or "score" it from
    the start (another run's tiles could never be used; resuming them would fail every time)."""
    from .engine.detect import expected_fingerprint, read_fingerprint
    from .engine.store import read_manifest, remove_finished, store_path

    store = store_path(dst)
    if not (store.exists() or dst.exists()):
        return "score"           # nothing earlier: no fingerprint to compute before detect does
    needs_model = scorer_class(score).needs_model
    model = scene_model_path(dst) if needs_model and model is None else model
    try:
        scorer = make_scorer(score, **options, **({"model": model} if needs_model else {}))
        expected = expected_fingerprint(src, scorer, tile=tile)
    except Exception:            # anything wrong with the input or model: detect will say what
        return "resume"
    if dst.exists() and read_fingerprint(dst) == expected:
        remove_finished(store, expected)     # left by a commit that a later write finished
        return "skip"
    return "resume" if store.exists() and read_manifest(store).get("fingerprint") == expected \
        else "score"


def _one_line(src, err):
    if isinstance(err, HsanomalyError):
        return str(err)
    return f"{src}: {type(err).__name__}: {describe(err)}"


@contextlib.contextmanager
def _client(workers, scheduler):
    """A Dask client for ``workers`` / ``scheduler`` (an address or a Client), or None to work
    in this process."""
    if not (workers or scheduler):
        yield None
        return
    from .distributed import dask_client

    with dask_client(workers, scheduler) as client:
        yield client


@one_job()
@renamed_keywords(outer="outer_mask")         # outer: a ring's window size, as Detector takes it
def evaluate(heatmap, truth, *, outer_mask=None, plots=None, json=None, title=None,
             overwrite=False, pd_far=defaults.PD_FAR):
    """Score a heatmap raster against a truth mask: AUC, logAUC, lgFAR and Pd (the share of
    target pixels found at a false-alarm rate of ``pd_far``) overall and per target.

    outer_mask: an outer target mask, whose pixels outside the truth are ambiguous and left
    out. plots: a directory for
    ROC, semi-log ROC, histogram and heatmap PNGs. json: write the report there. Returns
    the report (a dict: "auc", "log_auc", "lg_far", "pd", "pd_far", the pixel counts "n_*",
    "targets" (the same per target) and "inputs"); with ``plots`` its "plots" key lists the
    files written. Paths are
    checked before anything is read (an existing file hsanomaly did not write is refused
    unless ``overwrite``); the JSON and plots are replaced together at the end.
    """
    from .evaluation.files import evaluate_files, write_json
    from .evaluation.metrics import check_pd_far
    from .io.atomic import staged

    pd_far = check_pd_far(pd_far)
    evaluate_paths(heatmap, truth, outer_mask, plots, json, overwrite)
    report, scores, truth_mask, outer, valid = evaluate_files(heatmap, truth, outer_mask, pd_far)
    with staged() as stage:
        if plots is not None:
            from .evaluation.plots import write_plots

            paths = write_plots(report, scores, truth_mask, plots, title=title or Path(heatmap).stem,
                                outer=outer, valid=valid, stage=stage)
            report["plots"] = {name: str(path) for name, path in paths.items()}
        if json is not None:
            write_json(report, json, stage=stage)
    return report
