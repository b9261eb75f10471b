"""The process pool: scenes in spawned worker processes, one torch thread each."""

import importlib.util
import sys
import time

from ..errors import HsanomalyError
from ..spelling import PYTHON, spell, spelled


def map_scenes(fn, tasks, jobs, log):
    """``fn(*task, log=log)`` for every task: here, or in up to ``jobs`` spawned worker processes
    (one torch thread each, logging to stderr) when ``jobs > 1``. Results keep the task order.
    Messages name options as the methods' specs do (``gmm:pca=50``: 'pca'), as a worker's do."""
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing
        from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        pool = ProcessPoolExecutor(min(jobs, len(tasks)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_interrupts_to_the_parent)
        futures = [pool.submit(_run_in_worker, (fn, task)) for task in tasks]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()
            results = [future.result() for future in futures]
        except BrokenProcessPool:
            _end(pool)
            raise HsanomalyError(f"a worker process ended without a result (killed for "
                                 f"memory?); rerun with a smaller {spell('jobs')}") from None
        except BaseException:
            # an interrupt, a SIGTERM or a scene's failure: stop the scenes running, start no
            # other (the pool waited for every queued scene, and its workers caught the
            # terminal's Ctrl-C and went on to the next one)
            _end(pool)
            raise
        pool.shutdown()
        return results
    with spelled(PYTHON):
        return [fn(*task, log=log) for task in tasks]


def _end(pool):
    """Stop ``pool``'s scenes now: the queued ones are dropped, the running ones' workers
    ended (the executor has no public call that ends its workers)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join()


def _interrupts_to_the_parent():
    """A worker leaves Ctrl-C (sent to the terminal's whole process group) to the parent,
    which ends the workers; a worker's own KeyboardInterrupt would end only its scene."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_in_worker(fn_task):
    fn, task = fn_task
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
    return fn(*task, log=lambda message: print(message, file=sys.stderr, flush=True))


def cpu_seconds():
    """CPU seconds of this process and of its finished worker processes (Windows, which has
    no ``resource``: of this process alone)."""
    try:
        import resource
    except ImportError:
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
