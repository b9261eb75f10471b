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
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
            return list(pool.map(_run_in_worker, [(fn, task) for task in tasks]))
    with spelled(PYTHON):
        return [fn(*task, log=log) for task in tasks]


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
