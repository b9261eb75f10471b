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
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .api import DEFAULT_SCORE
from .engine import TileStore, finish, plan, score_tile, store_path
from .engine.detect import manifest
from .errors import HsanomalyError
from .io.source import DEFAULT_TILE, add, open_source

# Per-tile parts folded by one task; the fold itself is sequential, in tile order.
FOLD_CHUNK = 32


def _distributed():
    try:
        import distributed
    except ImportError:
        raise HsanomalyError("--workers/--scheduler need Dask: pip install 'hsanomaly[dask]'") from None
    return distributed


@contextlib.contextmanager
def dask_client(workers=None, scheduler=None):
    """A Client for ``scheduler`` (an address, or a Client used as is) or a local cluster of
    ``workers`` single-threaded processes, closed on exit unless it was passed in."""
    distributed = _distributed()
    if workers and scheduler:
        raise HsanomalyError(f"{scheduler}: give either a scheduler address or a number of workers")
    if isinstance(scheduler, distributed.Client):
        yield scheduler
    elif scheduler:
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except OSError as err:
            raise HsanomalyError(f"{scheduler}: no Dask scheduler answers ({err})") from None
        with client:
            yield client
    else:
        if not workers or workers < 1:
            raise HsanomalyError(f"--workers {workers}: need at least one worker")
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client


def _share(client, obj):
    """A future holding ``obj`` on the cluster, each worker deserialising it once.

    A task result rather than ``scatter``: if the worker holding it dies, the scheduler
    recomputes it from the task instead of losing it.
    """
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

    def reduce(self, fn, tile=DEFAULT_TILE, combine=None):
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

    def sample(self, n, seed=0, tile=DEFAULT_TILE):
        """The pixels ``source.sample(n, seed, tile)`` draws: same per-tile keys, same order."""
        jobs = self.source.sample_plan(n, seed, tile)
        parts = self.client.map(_sample_tile, [self.shared] * len(jobs), *zip(*jobs), pure=False)
        return self.source.join_samples(self.client.gather(parts))


def _sample_tile(source, window, key, fraction):
    return source.sample_tile(window, key, fraction)


def _score_into_store(source, job, index, window):
    """Score one tile on a worker and write it to the shared store; only the index goes back."""
    scorer, store = job
    if not store.path.is_dir():
        raise HsanomalyError(f"{store.path}: not found on worker host {socket.gethostname()}; "
                             "the output must be on storage the workers share")
    store.put(index, score_tile(source, scorer, window))
    return index


def detect_distributed(src, dst, scorer, *, extras=None, tile=DEFAULT_TILE, resume=False, fit=True,
                       workers=None, scheduler=None, progress=True):
    """``engine.detect`` with fitting and tiles run on a Dask cluster; same outputs, same result.

    scheduler: a scheduler address or a connected ``distributed.Client``; otherwise a local
    cluster of ``workers`` processes is started for this run.
    """
    from tqdm.auto import tqdm

    distributed = _distributed()
    start = time.perf_counter()
    with dask_client(workers, scheduler) as client:
        source = src if hasattr(src, "read") else open_source(src)
        try:
            windows, outputs = plan(source, scorer, dst, extras, tile)
            cluster_source = DistributedSource(source, client)
            if fit:
                scorer.fit(cluster_source)
            store = TileStore(store_path(dst),
                              manifest(source, scorer, outputs, tile), resume)
            done = store.done()
            todo = [i for i in range(len(windows)) if i not in done]
            job = _share(client, (scorer, store))
            futures = client.map(_score_into_store, [cluster_source.shared] * len(todo),
                                 [job] * len(todo), todo, [windows[i] for i in todo], pure=False)
            try:
                with tqdm(total=len(windows), initial=len(done), unit="tile", disable=not progress,
                          desc=f"{scorer.name} {Path(str(dst)).name}") as bar:
                    for future in distributed.as_completed(futures, loop=client.loop):
                        future.result()
                        bar.update()
            except distributed.KilledWorker as err:
                raise HsanomalyError(f"{dst}: the workers scoring one tile died {err.allowed_failures + 1} "
                                     "times (out of memory? try a smaller --tile); rerun with --resume "
                                     "to keep the finished tiles") from None
            finally:
                client.cancel(futures)
            missing = set(range(len(windows))) - store.done()
            if missing:
                raise HsanomalyError(f"{store.path}: {len(missing)} tiles written by workers are not "
                                     "visible here; the output must be on storage the workers share")
            return finish(store, source, scorer, windows, outputs, len(done), start)
        finally:
            source.close()


@dataclass
class BatchItem:
    src: str
    dst: str
    status: str                   # "scored", "skipped" (finished before) or "failed"
    result: object = None         # DetectResult when scored
    error: str = None             # one-line message when failed


def output_path(src, out_dir, score):
    return Path(out_dir) / f"{Path(str(src)).stem}_{score}.tif"


def detect_many(inputs, out_dir, *, score=None, model=None, options=None, tile=DEFAULT_TILE,
                overwrite=False, workers=None, scheduler=None, progress=True):
    """Score every raster of ``inputs`` into ``out_dir/<stem>_<score>.tif`` on one cluster.

    Rasters whose output is finished are skipped and interrupted ones resumed, so a batch
    can simply be rerun; ``overwrite`` scores everything from scratch. A raster that fails
    is reported and the batch goes on. Without ``workers`` or ``scheduler`` the rasters are
    scored in this process.
    """
    from tqdm.auto import tqdm

    from .api import detect_anomalies

    score = score or DEFAULT_SCORE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [(str(src), output_path(src, out_dir, score)) for src in inputs]
    seen = {}
    for src, dst in targets:
        if dst in seen:
            raise HsanomalyError(f"{src}: its output {dst} would overwrite that of {seen[dst]}")
        seen[dst] = src

    def finished(dst):
        return not overwrite and dst.exists() and not Path(str(dst) + ".partial").exists()

    items = [BatchItem(src, str(dst), "skipped") if finished(dst) else None for src, dst in targets]
    pending = [i for i, item in enumerate(items) if item is None]
    use_cluster = (workers or scheduler) and pending
    with dask_client(workers, scheduler) if use_cluster else contextlib.nullcontext() as client, \
            tqdm(pending, unit="raster", disable=not progress) as bar:
        for i in bar:
            src, dst = targets[i]
            try:
                result = detect_anomalies(src, dst, score=score, model=model, options=options,
                                          tile=tile, resume=not overwrite, scheduler=client,
                                          progress=False)
                items[i] = BatchItem(src, str(dst), "scored", result=result)
            except HsanomalyError as err:
                items[i] = BatchItem(src, str(dst), "failed", error=str(err))
    return items
