"""Connecting to a Dask cluster: a scheduler's address checked before anything connects
(and that a scheduler answers there), or a local cluster of single-threaded processes; the
clients ``detect`` and ``detect_many`` score their tiles on (``distributed``)."""

import contextlib
import logging
import re
import signal
import sys
import threading

from .errors import HsanomalyError, OutOfResources, describe, limit_reached
from .options import check_whole
from .runtime import environment_kept
from .spelling import kind_of, spell


# Seconds to wait for a scheduler to answer before giving up with one line.
CONNECT_TIMEOUT = 10
# Seconds a run waits for a worker when its cluster has none (all left, or none joined yet)
# before it stops in one line, keeping its finished tiles: Dask itself would wait for good.
# Dask's config key ``hsanomaly.worker-wait`` sets another (``worker_wait``).
WORKER_WAIT = 600

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
    """workers, scheduler: a count, an address, not both, and Dask (before any output)."""
    check_whole("workers", workers, 1, optional=True)
    if workers or scheduler:
        import_distributed()
        worker_wait()            # Dask's setting, refused before a quick model trains
    if workers and scheduler:
        raise HsanomalyError(f"{scheduler}: give either {spell('scheduler')} or {spell('workers')}, "
                             "not both")
    if isinstance(scheduler, str):
        check_address(scheduler)
    elif scheduler is not None and not _is_client(scheduler):
        raise HsanomalyError(f"{spell('scheduler')}: expected a Dask scheduler's address (text, "
                             "such as tcp://host:8786) or a distributed.Client, got "
                             f"{kind_of(scheduler)}")


def _is_client(value):
    """Whether ``value`` is a ``distributed.Client`` (only where Dask is imported is one)."""
    return "distributed" in sys.modules and isinstance(value, sys.modules["distributed"].Client)


_quiet = None       # in ``quiet_dask``: {Dask's logger: its level before}


@contextlib.contextmanager
def quiet_dask():
    """In the block (a CLI command), Dask's own logging (a lost scheduler's tracebacks) stays off
    stderr: the command says what went wrong in one line (lowered after Dask's import)."""
    global _quiet
    _quiet = {}
    try:
        yield
    finally:
        lowered, _quiet = _quiet, None
        for name, level in lowered.items():
            logging.getLogger(name).setLevel(level)


def import_distributed():
    try:
        import distributed
    except ImportError:
        raise HsanomalyError(f"{spell('workers')}/{spell('scheduler')} need Dask: pip install "
                             "'hsanomaly[dask]'") from None
    if _quiet is not None:
        for name in {"distributed", *(n for n in logging.root.manager.loggerDict
                                       if n.split(".")[0] == "distributed")}:
            _quiet.setdefault(name, logging.getLogger(name).level)
            logging.getLogger(name).setLevel(logging.CRITICAL)
    return distributed


def optional_client(workers=None, scheduler=None):
    """``dask_client`` for ``workers`` / ``scheduler``, or None (this process) without either."""
    if not (workers or scheduler):
        return contextlib.nullcontext()
    return dask_client(workers, scheduler)


def check_scheduler(address):
    """Refuse, within ``CONNECT_TIMEOUT``, an address where no Dask scheduler answers: a
    Client waits for good on a port that stays silent, and takes another service's bytes for
    a frame's length (a MemoryError). This process's own (inproc://, tests) is taken as is."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    if address.startswith("inproc://"):
        return
    import_distributed()
    from distributed.comm import connect
    from distributed.security import Security

    async def identity():
        comm = await connect(address, timeout=CONNECT_TIMEOUT,
                             **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    with ThreadPoolExecutor(1) as pool:     # an event loop of its own, whatever the caller runs
        try:
            info = pool.submit(asyncio.run, asyncio.wait_for(identity(), CONNECT_TIMEOUT)).result()
        except MemoryError:      # a service that speaks first: its bytes read as a frame size
            info = None
        except Exception as err:    # refused, silent, garbage, TLS unset: one line for them all
            raise _no_scheduler(address, err) from None
    if not (isinstance(info, dict) and info.get("type") == "Scheduler"):
        raise HsanomalyError(f"{address}: what answers there is no Dask scheduler")


def worker_wait() -> float:
    """Seconds a run waits for a worker (``WORKER_WAIT``), or Dask's config's
    ``hsanomaly.worker-wait`` (``DASK_HSANOMALY__WORKER_WAIT=2h``, ``dask.config.set``, a YAML
    file): a cluster whose workers come through a slow batch queue needs longer."""
    import dask
    from dask.utils import parse_timedelta

    given = dask.config.get("hsanomaly.worker-wait", default=None)
    if given is None:
        return WORKER_WAIT
    try:
        seconds = parse_timedelta(given, default="seconds")
    except (TypeError, ValueError, KeyError, IndexError):     # IndexError: an empty text
        seconds = None
    if not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        raise HsanomalyError(f"hsanomaly.worker-wait (Dask's config): {given!r} is no wait (a "
                             "positive number of seconds, or a duration such as 30m)")
    return seconds


def worker_count(client):
    """The workers ``client``'s cluster has now, or None where its scheduler does not answer."""
    try:
        try:
            info = client.scheduler_info(n_workers=0)    # the count alone: distributed 2025.4 on
        except TypeError:                                  # before: every worker listed
            info = client.scheduler_info()
    except Exception:       # a lost scheduler: its runs' futures say so themselves
        return None
    if getattr(client, "status", "running") != "running":   # the client's answer from before
        return None                                           # it lost its scheduler
    return info.get("n_workers", len(info.get("workers", {})))


def _no_scheduler(address, err):
    return HsanomalyError(f"{address}: no Dask scheduler answers within {CONNECT_TIMEOUT} s "
                          f"({describe(err)})")


@contextlib.contextmanager
def dask_client(workers=None, scheduler=None):
    """A Client for ``scheduler`` (an address, or a Client used as is) or a local cluster of
    ``workers`` single-threaded processes, closed on exit unless it was passed in. Dask's
    client and scheduler draw from Python's global ``random`` in this process; it is not put
    back (the draws of a caller's other threads meanwhile would come again)."""
    check_execution(workers, scheduler)
    distributed = import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
    elif scheduler:
        check_scheduler(scheduler)
        try:
            client = distributed.Client(scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as err:
            raise _no_scheduler(scheduler, err) from None
        with client:
            yield client
    else:
        if not workers:
            raise HsanomalyError(f"a Dask cluster needs {spell('workers', placeholder='N')} or "
                                 f"{spell('scheduler', placeholder='ADDRESS')}")
        quiet = logging.CRITICAL if _quiet is not None else logging.WARN   # workers too
        with environment_kept() as started:
            try:
                with _started_ignoring_interrupts():
                    cluster = distributed.LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0", silence_logs=quiet, **_preloads())
            except (RuntimeError, OSError, TimeoutError) as err:   # Dask's config, usually
                # "Nanny failed to start" hides a limit's error (ulimit -n) at its chain's end
                if (root := _root_cause(err)) is not err and limit_reached(root):
                    raise OutOfResources(f"a local Dask cluster of {workers} workers did not "
                                         f"start: {describe(root)}") from None
                raise HsanomalyError(f"a local Dask cluster of {workers} workers did not start "
                                     f"({describe(err)}); look at Dask's configuration (DASK_* "
                                     "variables, ~/.config/dask), and in a script run it under "
                                     "if __name__ == '__main__':") from None
            finally:
                started()
            with cluster, distributed.Client(cluster, set_as_default=False) as client:
                yield client


def _root_cause(err):
    """The innermost exception of ``err``'s chain (its causes and contexts)."""
    seen = set()
    while id(err) not in seen and (err.__cause__ or err.__context__) is not None:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return err


def _preloads():
    """The configured worker preloads (an explicit list replaces them) and ``dask_setup``."""
    import dask

    config = dask.config.get("distributed.worker")
    preload, argv = config.get("preload") or [], config.get("preload-argv") or []
    if argv and not isinstance(argv[0], str):       # one list of arguments per preload
        argv = [*argv, []]
    preload = [preload] if isinstance(preload, str) else preload
    return {"preload": [*preload, "hsanomaly.distributed"], "preload_argv": argv}


@contextlib.contextmanager
def _started_ignoring_interrupts():
    """Worker processes started in the block ignore Ctrl-C from their start, before
    ``distributed.dask_setup`` can (a Ctrl-C in the second or so it lasts is lost)."""
    before = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or before is None:
        yield                            # None: a handler set outside Python, left as it is
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
