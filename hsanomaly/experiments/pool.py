"""The process pool: scenes in spawned worker processes, one torch thread each."""

import importlib.util
import sys
import time

from ..spelling import PYTHON, spelled


def map_scenes(fn, tasks, jobs, log):
    """``fn(*task, log=log)`` for every task: here, or in up to ``jobs`` spawned worker processes
    (one torch thread each, logging to stderr) when ``jobs > 1``. Results keep the task order.
    Messages name options as the methods' specs do (``gmm:pca=50``: 'pca'), as a worker's do."""
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)),
                                                         initializer=_interrupts_to_the_parent)
        try:
            results = pool.map(_run_in_worker, [(fn, task) for task in tasks], chunksize=1)
        except BaseException:
            # an interrupt, a SIGTERM or a scene's failure: stop the scenes running, start no
            # other (a pool of futures waited for every queued scene, and its workers caught
            # the terminal's Ctrl-C and went on to the next one)
            pool.terminate()
            raise
        pool.close()
        pool.join()
        return results
    with spelled(PYTHON):
        return [fn(*task, log=log) for task in tasks]


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
    """CPU seconds of this process and of its finished worker processes."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
