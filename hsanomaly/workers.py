"""The Dask workers a run depends on: that they run the run's own hsanomaly (its version
and sources: ``check_workers`` before any work, ``same_code`` in every task), and that some
are there and not all paused while the run waits on its tasks (``Watch``)."""

import concurrent.futures
import functools
import logging
import queue
import socket
import time

from . import cluster
from .errors import HsanomalyError, NoWorkers, describe
from .io.checks import say_relayed
from .spelling import spell

logger = logging.getLogger(__name__)

# Seconds between two looks at the cluster's worker count while a run waits on its tasks.
WORKER_POLL = 2
# Seconds without progress before a run looks whether every worker is paused (a longer look).
PAUSED_LOOK = 10
# Seconds without a worker (or with every one paused) before it is said: a nanny restarting
# its workers after one died leaves none for a moment, which needs no word
ALONE_SAY = 10


class Watch:
    """Waits on a run's tasks, watching that its cluster keeps a worker, and one not paused.

    Dask keeps a task whose workers all left (a result lost with them included) waiting, for
    good, for another to join, and one whose workers are all paused at their memory limit
    (``all_paused``) for one to go on: either is said once it lasts (``ALONE_SAY``), and once
    it has lasted ``cluster.worker_wait()`` seconds since the run last moved, the run stops
    with one line naming ``where`` (``kept`` says what the run keeps). A result is fetched
    once, on a thread of the watch's own, and waited for in steps: a fetch cut short by a
    timeout starts again from nothing, and a large result on a slow link would never arrive.
    """

    def __init__(self, client, where, kept=""):
        self.client, self.where, self.kept = client, where, kept
        self.alone_since = None
        self.moved = time.monotonic()       # when the run last moved
        self.paused = False                 # whether its workers are all paused, not gone
        self.said = False                   # whether their absence was said
        self.wait = cluster.worker_wait()
        self.fetcher = concurrent.futures.ThreadPoolExecutor(1, "hsanomaly-fetch")

    def finished(self, futures):
        """(position in ``futures``, result) of each future, in the order they finish."""
        ready = queue.SimpleQueue()
        position = {future: i for i, future in enumerate(futures)}
        for future in futures:
            future.add_done_callback(ready.put)     # called at once for a finished one
        for _ in range(len(futures)):
            future = self._waited(lambda: ready.get(timeout=WORKER_POLL), queue.Empty, futures)
            yield position[future], self.result(future)

    def result(self, future):
        """The task's result; its error raised here with the warnings it said (``relayed``)."""
        fetch = self.fetcher.submit(future.result)
        try:
            return self._waited(lambda: fetch.result(timeout=WORKER_POLL),
                                concurrent.futures.TimeoutError, [future], done=fetch.done)
        except Exception as err:
            say_relayed(err)
            raise
        finally:
            if not fetch.done():        # stopped: the fetch ends with the future cancelled
                self.client.cancel([future])

    def close(self):
        self.fetcher.shutdown(wait=False)

    def _waited(self, wait, timeout, futures, done=lambda: False):
        """``wait()`` (which raises ``timeout`` after ``WORKER_POLL`` s with nothing), looking
        at the workers between tries; the run moved when it returns."""
        while True:
            try:
                value = wait()
            except timeout:
                if done():              # the task's own error, a TimeoutError: raised again
                    return wait()
                self._check(futures)
                continue
            self.alone_since, self.moved = None, time.monotonic()
            return value

    def _check(self, futures):
        workers = cluster.worker_count(self.client)
        if workers is None:
            return
        paused = bool(workers) and time.monotonic() - self.moved >= PAUSED_LOOK and \
            all_paused(self.client)
        if workers and not paused:
            self.alone_since = None
            return
        if self.alone_since is None or paused != self.paused:
            self.alone_since, self.paused, self.said = time.monotonic(), paused, False
        alone = time.monotonic() - self.alone_since
        if not self.said and alone >= min(ALONE_SAY, self.wait / 2):
            self.said = True
            if paused:
                logger.warning("%s: every Dask worker is paused at its memory limit (Dask pauses "
                               "one at 80 %% of it); the run waits up to %g s for one to go on",
                               self.where, self.wait)
            else:
                logger.warning("%s: the Dask cluster has no worker; the run waits up to %g s "
                               "for one to join (dask worker %s)", self.where, self.wait,
                               self.client.scheduler.address)
        if alone >= self.wait:
            self.client.cancel(futures)
            if paused:
                raise NoWorkers(f"{self.where}: every Dask worker has been paused at its memory "
                                f"limit for {self.wait:g} s (give them more memory, or score in "
                                f"a smaller {spell('tile')}){self.kept}")
            raise NoWorkers(f"{self.where}: the Dask cluster has had no worker for "
                            f"{self.wait:g} s{self.kept}")


def all_paused(client):
    """Whether every worker of ``client``'s cluster is paused and idle (Dask pauses a worker
    at 80 % of its memory limit and gives it no new task until it falls back; one finishes
    the task it runs, which may take long): a run on them waits for good. Lists every
    worker: asked only of a run that has not moved for a while."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except Exception:       # a lost scheduler: its runs' futures say so themselves
        return False
    return bool(workers) and all(
        w.get("status") == "paused"
        and not (w.get("metrics") or {}).get("task_counts", {}).get("executing")
        for w in workers.values())


@functools.lru_cache(maxsize=None)
def code():
    """This process's hsanomaly: (its version, a digest of its sources). A worker of other
    code scores other tiles into the run, which no check after tells from the others'."""
    from importlib.resources import files

    from ._version import __version__
    from .io.digest import sources_sha256

    return __version__, sources_sha256(files(__package__))


def other_code(worker, found, expected):
    """The line for a worker running hsanomaly ``found`` where the run's is ``expected``."""
    same = found[0] == expected[0]
    return (f"the Dask worker {worker} runs hsanomaly {found[0]}"
            f"{' from other sources' if same else ''}, not this run's {expected[0]}: its "
            "results would differ from the others'; install the same hsanomaly on every "
            "worker (docs/distributed.md)")


def same_code(expected):
    """Refuse, on a worker, to work for a run of other hsanomaly code than its own."""
    found = code()
    if found != tuple(expected):
        raise HsanomalyError(other_code(f"on {socket.gethostname()}", found, expected))


def check_workers(client):
    """Refuse, before any work, a cluster whose workers cannot run hsanomaly's code or run
    other code than this process. A worker that leaves while asked (an adaptive cluster
    retiring it) is no refusal; one that joins later is refused by its tasks."""
    for worker, theirs in client.run(code, on_error="return").items():
        if isinstance(theirs, OSError):          # its connection closed: it left
            continue
        if isinstance(theirs, BaseException):   # unpickling ``code`` without hsanomaly, say
            raise HsanomalyError(f"the Dask worker {worker} cannot run hsanomaly "
                                 f"({describe(theirs)}); install the same hsanomaly on every "
                                 "worker (docs/distributed.md)")
        if tuple(theirs) != code():
            raise HsanomalyError(other_code(worker, tuple(theirs), code()))
