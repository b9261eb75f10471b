"""Tiled detection on a Dask cluster: the local engine's tiles become tasks.

Nothing but small metadata crosses the scheduler. The source and the fitted scorer are
shipped once per run as shared task results, so each worker unpickles them once, opens
the raster (and a GAN scorer its ONNX session) once, and reads only the windows of its
tiles. Workers write their tiles into the run's ``TileStore`` (``<dst>.partial/``, which
must be on storage the workers share with the driver); the driver assembles the outputs
with the engine's atomic writes. Tile files are renamed into place whole, so a task
re-run after its worker died simply replaces a tile with identical content: tiles are
neither lost nor duplicated, and ``resume`` works as in the local engine.

The scorers' global statistics (``source.reduce``, ``source.sample``) run on the workers
through ``DistributedSource`` and give exactly the local results: per-tile parts are
computed in parallel and folded in tile order, and samples draw the same pixels.
"""

import contextlib
import os
import logging
import re
import socket

from .defaults import TILE
from .engine import score_tile
from .engine.store import resume_hint
from .errors import HsanomalyError
from .options import check_whole
from .spelling import current, spell, spelled
from .io.source import add

logger = logging.getLogger(__name__)

# Per-tile parts folded by one task; the fold itself is sequential, in tile order.
FOLD_CHUNK = 32

# Seconds to wait for a scheduler to answer before giving up with one line.
CONNECT_TIMEOUT = 10

_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)"
# the port is required: Dask refuses an address without one only after a half-built Client
# has started, whose clean-up prints a traceback 20 s later
_ADDRESS = re.compile(rf"^((tcp|tls|ucx|ws|wss)://)?{_HOST}:[0-9]{{1,5}}/?$|^inproc://\S+$")


def check_address(address):
    """Refuse, before anything connects, a scheduler address Dask could not parse."""
    if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
        raise HsanomalyError(f"{spell('scheduler', address)}: not a Dask scheduler address "
                             "(expected host:port, e.g. tcp://host:8786 or host:8786)")
    port = re.search(r":([0-9]{1,5})/?$", address.strip())
    if port and not 0 < int(port.group(1)) < 65536:
        raise HsanomalyError(f"{spell('scheduler', address)}: port {port.group(1)} is out of range")


def check_execution(workers, scheduler):
    """workers and scheduler: a positive count, a well-formed address, not both."""
    check_whole("workers", workers, 1, optional=True)
    if workers and scheduler:
        raise HsanomalyError(f"{scheduler}: give either {spell('scheduler')} or {spell('workers')}, "
                             "not both")
    if scheduler is not None and isinstance(scheduler, (str, os.PathLike)):
        check_address(str(scheduler))


_quiet = False


def quiet_dask():
    """Keep Dask's own logging (its tracebacks of a lost scheduler, a worker's heartbeat) off
    stderr from the next cluster on: the command line says what went wrong in one line. Dask
    sets its loggers' levels when first imported, so they are lowered after that import."""
    global _quiet
    _quiet = True


def _distributed():
    try:
        import distributed
    except ImportError:
        raise HsanomalyError(f"{spell('workers')}/{spell('scheduler')} need Dask: pip install "
                             "'hsanomaly[dask]'") from None
    if _quiet:
        for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    return distributed


@contextlib.contextmanager
def optional_client(workers=None, scheduler=None):
    """``dask_client`` for ``workers`` / ``scheduler``, or None (work in this process) without
    either."""
    if not (workers or scheduler):
        yield None
        return
    with dask_client(workers, scheduler) as client:
        yield client


@contextlib.contextmanager
def dask_client(workers=None, scheduler=None):
    """A Client for ``scheduler`` (an address, or a Client used as is) or a local cluster of
    ``workers`` single-threaded processes, closed on exit unless it was passed in."""
    check_execution(workers, scheduler)
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
    elif scheduler:
        try:
            client = distributed.Client(scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HsanomalyError(f"{scheduler}: no Dask scheduler answers within "
                                 f"{CONNECT_TIMEOUT} s ({detail})") from None
        with client:
            if not client.scheduler_info().get("workers"):   # tasks would wait without a word
                logger.warning("%s: the Dask scheduler has no worker yet; the run waits until "
                               "one joins (dask worker %s)", scheduler, scheduler)
            yield client
    else:
        if not workers:
            raise HsanomalyError(f"a Dask cluster needs {spell('workers', placeholder='N')} or "
                                 f"{spell('scheduler', placeholder='ADDRESS')}")
        # under the command line the workers' own logs stay quiet too (``quiet_dask``)
        quiet = logging.CRITICAL if _quiet else logging.WARN
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", silence_logs=quiet) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client


def _share(client, obj):
    """A future holding ``obj`` on the cluster, each worker deserialising it once.

    A task result rather than ``scatter``: if the worker holding it dies, the scheduler
    recomputes it from the task instead of losing it.
    """
    import warnings

    with warnings.catch_warnings():    # a model's networks are large on purpose: sent once
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        return client.submit(_identity, obj, pure=False)


def _identity(obj):
    return obj


def _reduce_tile(source, window, fn):
    return source.reduce_tile(window, fn)


def _fold(combine, total, *parts):
    for part in parts:
        total = part if total is None else combine(total, part)
    return total


class DistributedSource:
    """A source whose ``reduce`` and ``sample`` run on the cluster; all else is the wrapped source.

    Scorers fit on it unchanged (``scorer.fit(DistributedSource(source, client))``) and get
    the statistics they would get locally.
    """

    def __init__(self, source, client):
        self.source, self.client = source, client
        self.shared = _share(client, source)

    def __getattr__(self, name):
        return getattr(self.source, name)

    def reduce(self, fn, tile=TILE, combine=None):
        """``combine`` of ``fn(valid pixels (n, bands))`` over all tiles, computed on the workers.

        Tiles are mapped in parallel and their parts folded in tile order, so the result is
        bit for bit the one of ``source.reduce``. ``combine`` may be any associative function
        (e.g. ``np.maximum`` for a range before a histogram); the default sums.
        """
        windows = self.source.windows(tile)
        parts = self.client.map(_reduce_tile, [self.shared] * len(windows), windows,
                                [fn] * len(windows), pure=False)
        total = None
        for start in range(0, len(parts), FOLD_CHUNK):
            total = self.client.submit(_fold, combine or add, total, *parts[start:start + FOLD_CHUNK],
                                       pure=False)
        return None if total is None else total.result()

    def sample(self, n, seed=0, tile=TILE):
        """The pixels ``source.sample(n, seed, tile)`` draws: same per-tile keys, same order."""
        def run(jobs):
            parts = self.client.map(_sample_tile, [self.shared] * len(jobs), *zip(*jobs),
                                    pure=False)
            return self.client.gather(parts)

        return self.source.draw_sample(n, seed, tile, run)


def _sample_tile(source, window, key, fraction):
    return source.sample_tile(window, key, fraction)


def _score_into_store(source, job, index, window):
    """Score one tile on a worker and write it to the shared store; only the index goes back."""
    scorer, store, spelling = job
    if not store.path.is_dir():
        raise HsanomalyError(f"{store.path}: not found on worker host {socket.gethostname()}; "
                             "the output must be on storage the workers share")
    with spelled(spelling):      # the worker's messages name options as the caller's door does
        store.put(index, score_tile(source, scorer, window))
    return index


class DaskExecutor:
    """The engine's tiles as Dask tasks on ``client``: ``engine.detect(..., executor=DaskExecutor(c))``.

    Fitting statistics run on the workers through ``DistributedSource``; workers write their
    tiles into the run's store, which must be on storage they share with the driver.
    """

    distributed = True           # its tiles are written by the workers

    def __init__(self, client):
        self.client = client
        self._shared = None

    def fit_source(self, source):
        cluster_source = DistributedSource(source, self.client)
        self._shared = cluster_source.shared
        return cluster_source

    def run(self, source, scorer, store, windows, todo):
        distributed = _distributed()
        shared = self._shared if self._shared is not None else _share(self.client, source)
        job = _share(self.client, (scorer, store, current()))
        futures = self.client.map(_score_into_store, [shared] * len(todo), [job] * len(todo), todo,
                                  [windows[i] for i in todo], pure=False)
        try:
            for future in distributed.as_completed(futures, loop=self.client.loop):
                yield future.result()
        except distributed.KilledWorker as err:
            raise HsanomalyError(f"{store.path}: the workers scoring one tile died "
                                 f"{err.allowed_failures + 1} times (out of memory? try a smaller "
                                 f"{spell('tile')}); {resume_hint()}: the finished tiles are kept") from None
        finally:
            self.client.cancel(futures)
