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

import socket

from .cluster import import_distributed
from .defaults import TILE
from .engine import score_tile
from .engine.store import resume_hint
from .errors import HsanomalyError, ignoring
from .runtime import malloc_as_alone
from .spelling import current, spell, spelled
from .io.checks import relayed, say_relayed
from .io.source import NOTHING, fold_in_order
from .workers import Watch, check_workers, code, same_code


# Per-tile parts folded by one task; the fold itself is sequential, in tile order.
FOLD_CHUNK = 32


def _share(client, obj):
    """A future holding ``obj`` on the cluster, each worker deserialising it once.

    A task result rather than ``scatter``: if the worker holding it dies, the scheduler
    recomputes it from the task instead of losing it.
    """
    # a model's networks are large on purpose: sent once
    with ignoring(UserWarning, "Sending large graph"):
        return client.submit(_identity, obj, pure=False)


def _identity(obj):
    return obj


def dask_setup(worker):
    """Dask's preload hook (``cluster.dask_client``), run in each worker of a local cluster as
    it starts, restarted ones too: they ignore Ctrl-C, which the terminal sends to every
    process of the command and which the command answers by ending them. A worker the nanny
    restarts is started by the command's own process, whose Ctrl-C handler it took: it
    printed its traceback around the command's one line. Its memory is handled as in a
    process alone (``runtime.malloc_as_alone``)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():   # where Dask runs it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    malloc_as_alone()       # a worker of ours: a caller's own cluster keeps its settings


def _reduce_tile(source, window, fn, expected):
    same_code(expected)
    with relayed() as said:
        return source.reduce_tile(window, fn), said


def _fold(combine, total, *parts):
    """(the parts' values folded onto ``total``'s, the warnings of both, each once)."""
    value, said = (None, []) if total is None else total
    said = list(dict.fromkeys(said + [w for _, part_said in parts for w in part_said]))
    return fold_in_order([part for part, _ in parts], combine, value), said


class DistributedSource:
    """A source whose ``reduce`` and ``sample`` run on the cluster; all else is the wrapped source.

    Scorers fit on it unchanged (``scorer.fit(DistributedSource(source, client))``) and get
    the statistics they would get locally.
    """

    def __init__(self, source, client):
        self.source, self.client = source, client
        self.shared = _share(client, source)
        self.watch = Watch(client, source.name, " while fitting the score; nothing was written")

    def __getattr__(self, name):
        return getattr(self.source, name)

    def reduce(self, fn, tile=TILE, combine=None):
        """``combine`` of ``fn(valid pixels (n, bands))`` over all tiles, computed on the workers.

        Tiles are mapped in parallel and their parts folded in tile order, so the result is
        bit for bit the one of ``source.reduce``. ``combine`` may be any associative function
        (e.g. ``np.maximum`` for a range before a histogram); the default sums.
        """
        found = self.source.take_fold(fn, tile, combine)      # a sample's (``folding``)
        if found is not NOTHING:
            return found
        windows = self.source.windows(tile)
        parts = self.client.map(_reduce_tile, [self.shared] * len(windows), windows,
                                [fn] * len(windows), [code()] * len(windows), pure=False)
        total = None
        for start in range(0, len(parts), FOLD_CHUNK):
            total = self.client.submit(_fold, combine, total, *parts[start:start + FOLD_CHUNK],
                                       pure=False)
        if total is None:
            return None
        try:
            value, said = self.watch.result(total)
        except Exception:
            # the warnings of the tiles finished before one failed, which travel with the
            # fold that never ends (the failed tile's own travel with its error)
            for part in parts:
                if part.status == "finished":
                    say_relayed(part.result()[1])
            raise
        say_relayed(said)
        return value

    def sample(self, n, seed=0, tile=TILE):
        """The pixels ``source.sample(n, seed, tile)`` draws: same per-tile keys, same order
        (and within ``folding``, the same fold)."""
        def run(jobs):            # in the jobs' order, each as soon as those before it are
            parts = self.client.map(_sample_tile, [self.shared] * len(jobs), *zip(*jobs),
                                    [code()] * len(jobs), pure=False)
            waiting, first = {}, 0
            for i, (result, said) in self.watch.finished(parts):
                say_relayed(said)
                waiting[i] = result
                while first in waiting:
                    yield waiting.pop(first)
                    first += 1

        return self.source.draw_sample(n, seed, tile, run)


def _sample_tile(source, window, key, fraction, fn, expected):
    same_code(expected)
    with relayed() as said:
        return source.sample_tile(window, key, fraction, fn), said


def _score_into_store(source, job, index, window):
    """Score one tile on a worker and write it to the shared store; only the index and the
    warnings go back."""
    scorer, store, spelling, expected = job
    same_code(expected)
    if not store.path.is_dir():
        raise HsanomalyError(f"{store.path}: not found on worker host {socket.gethostname()}; "
                             "the output must be on storage the workers share")
    # the worker's messages name options as the caller's door does
    with spelled(spelling), relayed() as said:
        store.put(index, score_tile(source, scorer, window))
    return index, said


class DaskExecutor:
    """The engine's tiles as Dask tasks on ``client``: ``engine.detect(..., executor=DaskExecutor(c))``.

    Fitting statistics run on the workers through ``DistributedSource``; workers write their
    tiles into the run's store, which must be on storage they share with the driver.
    """

    distributed = True           # its tiles are written by the workers

    def __init__(self, client):
        check_workers(client)
        self.client = client
        self._shared = None

    def fit_source(self, source):
        cluster_source = DistributedSource(source, self.client)
        self._shared = cluster_source.shared
        return cluster_source

    def run(self, source, scorer, store, windows, todo):
        distributed = import_distributed()
        shared = self._shared if self._shared is not None else _share(self.client, source)
        job = _share(self.client, (scorer, store, current(), code()))
        futures = self.client.map(_score_into_store, [shared] * len(todo), [job] * len(todo), todo,
                                  [windows[i] for i in todo], pure=False)
        watch = Watch(self.client, store.path, f"; {resume_hint()}: the finished tiles are kept")
        try:
            for _, (index, said) in watch.finished(futures):
                say_relayed(said)
                yield index
        except distributed.KilledWorker as err:
            # a smaller tile starts over: the kept tiles resume at their own size only
            raise HsanomalyError(f"{store.path}: the workers scoring one tile died "
                                 f"{err.allowed_failures + 1} times (out of memory?); the "
                                 f"finished tiles are kept: {resume_hint()} on workers of more "
                                 f"memory, or run again with a smaller {spell('tile')}, which "
                                 "starts over") from None
        finally:
            watch.close()
            self.client.cancel(futures)
