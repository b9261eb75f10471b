"""Training a WGAN-GP on hyperspectral windows and exporting it as an ONNX model bundle.

Needs the ``[train]`` extra (torch, onnx) to train; importing it needs neither (torch and onnx
load inside ``train``), so the front door (``hsanomaly.train``) imports it, while scoring
(scorers, engine, latent, model) never does: it reads bundles with hsanomaly.model.
Default hyperparameters and how they compare with the thesis code's are in ``settings``.
"""

import contextlib
import logging
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

from .. import defaults
from ..devices import parse_device
from ..errors import Cancelled, HsanomalyError, caller_callback
from ..io.atomic import check_writable
from ..io.checks import absolute
from ..io.checks import warn
from ..io.lock import lock_folder
from ..io.paths import Item, checkpoint_dir
from ..options import TRAINING_KINDS, check_values
from ..runtime import check_threads, training_unavailable
from ..spelling import spell
from .data import load_training_data
from .health import generator_health, warn_unhealthy
from .settings import MAX_DIM, MAX_LATENT_DIM, Settings

logger = logging.getLogger(__name__)
LOG_ROWS = 50          # rows of training.csv; each one runs both networks over the held-out
                       # windows, which cost as much as the training steps at every iteration
CHECKPOINTS = 10
VAL_EVAL_WINDOWS = 4096
STATE_FILE = "state.npz"           # the checkpoint itself, in that folder
# train's keywords for the library's own calls (the quick models')
LIBRARY_ONLY = ("quick_model_of", "name", "data_checked", "keep_checkpoints",
                "validation_windows")


def train(inputs, out, *, mask=None, window=defaults.TRAIN_WINDOW, bands=None, sqrt=False,
          whiten=False, iterations=defaults.ITERATIONS, seed=defaults.TRAIN_SEED, device=defaults.DEVICE,
          dim=defaults.TRAIN_DIM, latent_dim=defaults.TRAIN_LATENT_DIM,
          critic_steps=defaults.CRITIC_STEPS, batch=defaults.TRAIN_BATCH,
          lr=defaults.TRAIN_LR, background_only=False, boost_rare=False, resume=False, threads=None,
          progress=False, callback=None, quick_model_of=None, name=None, data_checked=False,
          codebook_jacobians=True, keep_checkpoints=True, validation_windows=VAL_EVAL_WINDOWS):
    """Train on windows from ``inputs`` (rasters or .mat scenes) and write the bundle ``out``.

    mask: exclusion raster(s) (non-zero = leave out) or vector features (their pixels left
    out, ``io.vector``); one path for all inputs or one per input.
    window: the training patches' odd size in pixels; above 1 the networks convolve
    spatially, a model for critic, recon and anogan (the default score needs 1).
    iterations: generator iterations; seed: of the networks' first weights and of the windows
    drawn; device: where torch trains ("cpu", "cuda" or "cuda:N").
    bands: bin to this many bands (default min(defaults.TRAIN_BANDS, usable bands)); sqrt: square-root transform.
    whiten: decorrelate the binned bands (principal components scaled to unit variance), so the
    reconstruction cost's Euclidean distance becomes a Mahalanobis distance: what ``recon``
    asks of its quick model (``Scorer.model_training``).
    background_only: with a mask, drop windows touching a masked pixel, not only centred on one.
    boost_rare: draw rare (not singular) spectra more often, see data.rare_spectra_weights.
    dim, latent_dim: the networks' width (their layers have 1 to 16 times ``dim`` channels) and
    the generator's latent dimension; critic_steps: critic updates per generator iteration
    (WGAN-GP's n_critic); batch, lr: windows per step and Adam's learning rate. Their defaults
    are the one configuration every scene is trained with (``defaults``, ``Settings``).
    resume: continue from ``<out>.checkpoint/`` when it exists and matches these settings.
    threads: torch CPU threads for this run (default: ``defaults.TRAIN_THREADS``, one thread: the
    networks' matrix products are too small for a second thread to pay, and on a busy machine
    extra threads spin against the other processes).
    progress: draw a progress bar on stderr. callback(fraction, message): called as the
    training goes; returning True cancels (``hsanomaly.Cancelled``, nothing
    written, a checkpoint kept for ``resume``). quick_model_of: the heatmap this bundle is
    ``detect``'s quick model for, recorded so that detect replaces its own quick models only.
    name: what messages call the model (default ``out``; detect trains its quick model in a
    temporary folder and names it by the place it will have). data_checked: the inputs'
    data were checked and warned of already (a quick model's raster, which detect checks
    as it scores it); otherwise training warns as detect does (``check_data``).
    codebook_jacobians: store the latent codebook's Jacobians, which only the fast search's
    refinement steps (``refine``) read (the larger part of the bundle, and of its export); a
    run that takes steps on a bundle without them builds them. A quick model stores none:
    the scores it is trained for take no step by default. keep_checkpoints: keep one for
    ``resume`` now and then; a quick model, trained in a private folder that goes with its
    run, keeps none. validation_windows: the held-out windows both networks run over at each
    row of the training log, which only the log reads (a quick model's, fewer: they cost as
    much as the training steps).
    Returns the loaded hsanomaly.model.Bundle.
    """
    check_values({k: v for k, v in locals().items() if k in TRAINING_KINDS}, TRAINING_KINDS)
    check_threads(threads)                 # its range (check_values checks its kind)
    out = Path(out)
    name = name or out
    try:
        settings = Settings(iterations=iterations, critic_steps=critic_steps, batch=batch, lr=lr,
                            seed=seed)
    except ValueError as err:
        raise HsanomalyError(f"{name}: {err}") from None
    for option, value, most in (("dim", dim, MAX_DIM), ("latent_dim", latent_dim, MAX_LATENT_DIM)):
        if not 1 <= value <= most:
            raise HsanomalyError(f"{name}: {spell(option)} must be from 1 to {most}, got {value}")
    if background_only and mask is None:
        raise HsanomalyError(f"{spell('background_only')}: it drops the windows that touch a "
                             f"{spell('mask')} pixel, and no {spell('mask')} was given")
    check_out(out, inputs, mask)
    files = [Item("an input", p).real for p in inputs]     # one file however it is spelt
    times = Counter(files)
    repeated = next((i for i, file in enumerate(files) if times[file] > 1), None)
    if repeated is not None:
        warn(f"{inputs[repeated]}: given {times[files[repeated]]} times; its windows count that "
             "many times, and some held-out windows are training windows")
    kind, index = parse_device(device)        # named as detect names it, before torch loads
    torch = _import_torch()
    _check_cuda(torch, device, kind, index)
    report = caller_callback(callback) or (lambda fraction, message: False)
    with _held_checkpoints(out):
        logger.info("%s: reading training windows", name)
        if report(0.0, "reading training windows"):
            raise Cancelled(f"{name}: training cancelled")
        data = load_training_data(inputs, mask=mask, window=window, bands=bands, sqrt=sqrt,
                                  whiten=whiten, background_only=background_only,
                                  boost_rare=boost_rare, seed=seed,
                                  check_data=not data_checked)
        with _torch_threads(torch, int(defaults.TRAIN_THREADS if threads is None else threads)):
            options = {"window": window, "bands": data.bands, "sqrt": sqrt, "whiten": whiten,
                       "dim": dim, "latent_dim": latent_dim, "background_only": background_only,
                       "boost_rare": boost_rare, "mask": _masks_record(mask)}
            return _train(torch, data, inputs, out, settings, options, device, resume, progress,
                          report, quick_model_of, name, codebook_jacobians, keep_checkpoints,
                          validation_windows)


def _masks_record(mask):
    """The exclusion masks a training left out by, by name as its inputs are recorded (one a
    raster, or the one for all): what the data fingerprint cannot tell a reader. None: none."""
    if mask is None:
        return None
    return [Path(str(m)).name for m in (mask if isinstance(mask, (list, tuple)) else [mask])]


_TORCH_LOCK, _torch_users = threading.Lock(), {"count": 0, "before": None}


@contextlib.contextmanager
def _torch_threads(torch, threads):
    """torch's intra-op threads for a training. The count is the process's and, through
    OpenMP, the calling thread's: of trainings that overlap in a caller's threads, each puts
    back in its thread what that thread had, and the last the count the first found (each
    restoring only what it saw on entry left new threads on one thread for good)."""
    with _TORCH_LOCK:
        seen = torch.get_num_threads()
        if not _torch_users["count"]:
            _torch_users["before"] = seen
        _torch_users["count"] += 1
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _TORCH_LOCK:
            _torch_users["count"] -= 1
            torch.set_num_threads(seen if _torch_users["count"] else _torch_users["before"])


@contextlib.contextmanager
def _held_checkpoints(out):
    """The run's checkpoint folder, locked while it trains (``io.lock``): a second training
    into the same ``out`` is refused up front, where it used to remove the first one's
    checkpoints, or have its own removed, when one of them finished. Left empty, it goes."""
    checkpoints = checkpoint_dir(out)
    checkpoints.mkdir(exist_ok=True)
    held = lock_folder(checkpoints, out)
    try:
        yield checkpoints
    finally:
        if held is not None:
            os.close(held)
        with contextlib.suppress(OSError):
            if checkpoints.is_dir() and not any(checkpoints.iterdir()):
                checkpoints.rmdir()


def _check_finite(torch, trainer, out, checkpoints):
    """Refuse to export networks whose weights are no longer finite: a diverged training
    would be a bundle that loads and scores every pixel NaN. Its checkpoints hold the same
    weights, so they go too."""
    diverged = [name for name, net in (("generator", trainer.generator), ("critic", trainer.critic))
                if not all(bool(torch.isfinite(p).all()) for p in net.parameters())]
    if diverged:
        shutil.rmtree(checkpoints, ignore_errors=True)
        raise HsanomalyError(f"{out}: training diverged (the {' and the '.join(diverged)}'s "
                             "weights are not finite), so no model was written; lower the "
                             "learning rate or check the inputs for extreme values")


# torch draws a new network's weights from its one process-wide generator: two trainings in
# threads seeded and drew from it in turn, and each got weights of the other's seed
_SEEDING = threading.Lock()


def _train(torch, data, inputs, out, settings, options, device, resume, progress, report,
           quick_model_of=None, name=None, codebook_jacobians=True, keep_checkpoints=True,
           validation_windows=VAL_EVAL_WINDOWS):
    """Networks, the WGAN-GP loop with checkpoints, and the bundle export."""
    from ..model.bundle import LOG_PLOT, LOG_TABLE
    from .export import export_networks, staged_directory
    from .log import plot, write_csv
    from .networks import Critic, Generator
    from .wgan import WGANGP, TrainingCancelled, fit, load_checkpoint, save_checkpoint

    with _SEEDING, torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        generator = Generator(data.bands, data.window, options["dim"], options["latent_dim"])
        critic = Critic(data.bands, data.window, options["dim"])
    trainer = WGANGP(generator, critic, settings, device)
    # what model.json's training.run records: a resume with other threads or another device
    # would give a model neither makes, recorded as the last one's
    key = {**settings.to_dict(), **options, "fingerprint": data.fingerprint,
           "threads": torch.get_num_threads(), "device": str(trainer.device)}

    checkpoints = checkpoint_dir(out)
    state = checkpoints / STATE_FILE
    if state.exists() and not resume:
        warn(f"{checkpoints}: an interrupted training's checkpoint is there; this run starts "
             f"over and replaces it ({spell('resume', True)} continues it instead)")
    if resume and not state.exists():      # as detect says of a tile store
        warn(f"{checkpoints}: no interrupted training here to resume; training from the start")
    log = load_checkpoint(state, trainer, key) if resume and state.exists() else None
    log_every = max(1, settings.iterations // LOG_ROWS)
    checkpoint_every = log_every * max(1, settings.iterations // (CHECKPOINTS * log_every))
    train_tensor = torch.from_numpy(data.train).to(device)
    val_tensor = torch.from_numpy(data.val[:validation_windows]).to(device)
    weights = None if data.weights is None else torch.from_numpy(data.weights)
    try:
        log = fit(trainer, train_tensor, val_tensor, weights=weights, log=log,
                  log_every=log_every, progress=progress, callback=report,
                  on_checkpoint=None if not keep_checkpoints else
                  lambda rows: save_checkpoint(state, trainer, rows, key),
                  checkpoint_every=checkpoint_every)
    except TrainingCancelled:
        raise TrainingCancelled(_cancelled(name, checkpoints)) from None
    _check_finite(torch, trainer, name, checkpoints)
    health = generator_health(torch, trainer.generator, data.train, settings.seed + 2,
                              trainer.device)
    warn_unhealthy(health, name, {"iterations": trainer.iteration, "bands": data.bands,
                                  "whitened": data.preprocessor.whiten,
                                  "quick": quick_model_of is not None})

    logger.info("%s: exporting the model bundle", name)
    if report(1.0, "exporting the model bundle"):
        if keep_checkpoints:
            save_checkpoint(state, trainer, log, key)
        raise TrainingCancelled(_cancelled(name, checkpoints))
    meta = _metadata(data, trainer, options, inputs, log)
    meta["training"]["health"] = health
    if quick_model_of is not None:
        from ..io.ownership import input_record

        meta["training"]["quick_model_of"] = Path(str(quick_model_of)).name
        meta["training"]["quick_model_input"] = input_record(inputs[0])
    # the finished training's checkpoint goes with the commit, whatever interrupt comes
    with staged_directory(out, on_commit=lambda: shutil.rmtree(checkpoints,
                                                               ignore_errors=True)) as tmp:
        export_networks(trainer.generator, trainer.critic, meta, tmp,
                        codebook_seed=settings.seed,   # the codebook a same-seed run scores with
                        codebook_jacobians=codebook_jacobians)
        write_csv(tmp / LOG_TABLE, log)
        plot(tmp / LOG_PLOT, log, title=f"{', '.join(meta['training']['inputs'])}: "
                                               f"{data.bands} bands, window {data.window}")

    from ..model import load_bundle

    return load_bundle(out)


def _cancelled(out, checkpoints):
    """Where the cancelled run's state is, for whichever face resumes it (or removes it)."""
    if not (Path(checkpoints) / STATE_FILE).is_file():
        return f"{out}: training cancelled"
    return (f"{out}: training cancelled; its state is kept in {checkpoints} "
            f"({spell('resume', True)} continues it; delete the folder otherwise)")


def _metadata(data, trainer, options, inputs, log):
    """model.json without the file checksums (see hsanomaly.model.bundle for the format)."""
    import onnx
    import torch

    from .. import __version__
    from ..model.bundle import FORMAT, FORMAT_VERSION
    from .export import OPSET

    settings = trainer.settings
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "hsanomaly_version": __version__,
        "bands_in": data.bands_in, "bands": data.bands, "wavelengths": data.wavelengths,
        "window": data.window, "latent_dim": trainer.generator.latent_dim,
        "preprocess": data.preprocessor.to_dict(),
        "training": {"inputs": [Path(str(p)).name for p in inputs],
                     "settings": {**settings.to_dict(), **options},
                     "iterations": trainer.iteration, "seed": settings.seed,
                     # not settings, but a model repeats bit for bit only with the same ones
                     "run": {"threads": torch.get_num_threads(), "device": str(trainer.device)},
                     "windows": {"train": len(data.train), "val": len(data.val),
                                 "per_input": data.per_input},
                     "losses": _summary(log)},
        "fingerprint": data.fingerprint, "opset": OPSET,
        "versions": {"hsanomaly": __version__, "torch": torch.__version__,
                     "onnx": onnx.__version__},
    }


def check_out(out, inputs=(), mask=None, label=None):
    """Refuse, before any work, an ``out`` (called ``label`` in the message) that is an input,
    holds one, or is a directory that is not an hsanomaly model bundle (and not empty), or
    whose checkpoint directory holds anything but checkpoints: replacing it would lose the
    user's files."""
    from ..io.atomic import remove_stale
    from ..io.paths import (DIRECTORY, check_path_kind, check_paths, check_replaceable_dir,
                            input_files, is_model_bundle, is_path)

    label = label or spell("out")
    masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
    if mask is not None and (not masks or (isinstance(mask, (list, tuple))
                                           and len(masks) != len(inputs))):
        raise HsanomalyError(f"{spell('mask')}: expected one mask for all inputs, or one per input "
                             f"({len(inputs)}), got {len(masks)}")
    for each in masks if mask is not None else ():
        check_path_kind(each, spell("mask"), "a mask's path")
    check_replaceable_dir(out, label, is_model_bundle, "a model bundle")
    checkpoints = checkpoint_dir(Path(absolute(out)))
    remove_stale(checkpoints)       # a checkpoint write that a kill cut short
    check_paths([(spell("inputs"), file) for p in inputs if is_path(p)
                 for file in input_files(p)] +
                [(spell("mask"), file) for m in masks if m is not None for file in input_files(m)],
                [(label, out, DIRECTORY), ("the checkpoint directory", checkpoints, DIRECTORY)])
    check_replaceable_dir(checkpoints, "the checkpoint directory",
                          lambda path: all(p.name.startswith("state") and p.is_file() and
                                           not p.is_symlink() for p in path.iterdir()))
    check_writable(out, directory=True)
    if out.is_dir() and not os.access(out, os.W_OK):
        raise HsanomalyError(f"{out}: is not writable")


def _import_torch():
    unavailable = training_unavailable()
    if unavailable:
        raise HsanomalyError(unavailable)
    import torch

    return torch


def _check_cuda(torch, device, kind, index):
    """Refuse a GPU (``parse_device``'s kind and index) torch cannot train on here."""
    if kind == "cuda" and not torch.cuda.is_available():
        raise HsanomalyError(f"{spell('device', device)}: CUDA is not available to torch on this machine")
    if kind == "cuda" and index >= torch.cuda.device_count():
        raise HsanomalyError(f"{spell('device', device)}: torch sees {torch.cuda.device_count()} "
                             "CUDA device(s)")


def _summary(log, tail=0.1):
    """Mean losses over the last ``tail`` of the run, and the last held-out Wasserstein estimate."""
    from .wgan import LOG_COLUMNS

    rows = log[-max(1, int(len(log) * tail)):]
    summary = {c: round(sum(r[i] for r in rows) / len(rows), 6)
               for i, c in enumerate(LOG_COLUMNS) if c in
               ("critic_loss", "generator_loss", "wasserstein", "gradient_penalty")}
    summary["val_wasserstein"] = round(log[-1][LOG_COLUMNS.index("val_wasserstein")], 6)
    return summary
