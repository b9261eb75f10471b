"""onnxruntime sessions for the model bundle: one place that opens them, on the providers
``devices`` picks, with their threads (numpy's BLAS threads too), and says what this
installation can train; and the process settings a run changes and puts back (threads, the
allocator, the environment a cluster's start writes).

Detection runs ONNX graphs only (never torch), on the CPU provider by default or the CUDA
provider on request; CUDA asked for where onnxruntime cannot use it is an error, not a silent
fallback: a user who asked for the GPU learns that it is not being used."""

import contextlib
import ctypes
import functools
import importlib.util
import os
import threading

from .devices import ep_error, import_onnxruntime, installed, parse_device, providers
from .errors import HsanomalyError, OutOfResources, describe, out_of_memory, out_of_memory_text

TRAINING_MODULES = ("torch", "onnx", "onnxruntime")   # train, export, check the export
TRAINING_INSTALL = ("pip install torch --index-url https://download.pytorch.org/whl/cpu && "
                    "pip install 'hsanomaly[cpu,train]'")
# where the GPU runtime is installed: [cpu] would install the CPU one over its files, and
# PyPI's torch is the CUDA build
TRAINING_INSTALL_GPU = "pip install torch && pip install 'hsanomaly[gpu,train]'"


def training_install():
    """How to install what training needs beside the ONNX runtime installed here."""
    return TRAINING_INSTALL_GPU if installed(("onnxruntime-gpu",)) else TRAINING_INSTALL


def missing_for_training():
    """The modules training needs that are not installed, asked before any work: torch
    trains, onnx exports and onnxruntime checks the export, which comes last."""
    return [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]


def training_unavailable():
    """Why training cannot run here ("training needs torch: pip install ..."), or None."""
    missing = missing_for_training()
    if missing:
        return f"training needs {' and '.join(missing)}: {training_install()}"
    return folder_gone() or training_broken()


def training_broken():
    """Why a module training needs is installed but does not load (a half-installed wheel, a
    numpy it was not built for, a CUDA library missing), or None: asked before any work, as
    a missing one is, where it failed after the work as a write error or a traceback."""
    for name in TRAINING_MODULES:
        try:
            importlib.import_module(name)
        except (ImportError, OSError) as err:
            return (f"{name} cannot load: {out_of_memory_text(err)}" if out_of_memory(err)
                    else f"{name} is installed but does not load ({describe(err)}): reinstall "
                    f"it ({training_install()})")      # a memory limit is no broken wheel
    return None


def folder_gone():
    """Why torch cannot load here, where the current folder is gone (removed under the shell):
    its MKL ends the process with a fatal error of its own; None where it is there."""
    from .io.checks import FOLDER_GONE

    try:
        os.getcwd()
    except FileNotFoundError:
        return f"{FOLDER_GONE}, and torch cannot load without one: cd into a folder"
    return None


@contextlib.contextmanager
def one_blas_thread():
    """A context in which numpy's BLAS and LAPACK run on one thread. The engine parallelises
    over tiles itself, and the small products and eigendecompositions of fitting and scoring
    run several times slower when BLAS threads compete with tile threads or other processes
    (docs/speed.md). The limit is the process's: of calls that overlap in a caller's threads,
    the first sets it and restores it when it ends, in its own thread (OpenBLAS lets no other
    thread raise a count the main thread set); the others run within it meanwhile. Each call
    restoring what it saw on entry left the process on one thread for good."""
    global _blas_limit
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        mine = _blas_limit is None
        if mine:
            _blas_limit = threadpool_limits(limits=1, user_api="blas")
    try:
        yield
    finally:
        if mine:
            with _BLAS_LOCK:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_BLAS_LOCK, _blas_limit = threading.Lock(), None


def check_threads(threads):
    """Refuse a thread count onnxruntime cannot use, before any work starts."""
    from .options import check_whole

    check_whole("threads", threads, 1, optional=True)


CHECK_MEMORY = 256 << 20    # what a bundle's networks may take on a batch of two, when checked


def open_session(path, device="cpu", threads=None, optimize=True, label=None, checking=False):
    """An InferenceSession on ``path`` (a file, or the model's bytes with ``label`` naming it
    in errors); ``threads`` sets intra-op threads (None: onnxruntime's choice);
    ``optimize=False`` loads the graph as written. ``checking``: a session that checks a
    bundle, whose tensors come from an arena of CHECK_MEMORY bytes (``_checking_arena``)."""
    ort = import_onnxruntime()
    chosen = providers(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 4    # fatal only: an error's text comes with its exception
    check_threads(threads)
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if parse_device(device)[0] == "cpu":
        # Idle pool threads sleep instead of spinning: on a shared or busy machine spinning
        # threads burn the cores the other threads (and processes) need; docs/training/graphs.md
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if checking:
        _checking_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    model, name = (path, label) if isinstance(path, bytes) else (str(path), path)
    try:
        with ep_error(chosen[0] != "CPUExecutionProvider") as said:
            session = ort.InferenceSession(model, sess_options=options, providers=chosen)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
        if out_of_memory(err):          # (std::bad_alloc under a limit)
            raise OutOfResources(f"{name}: {out_of_memory_text(err)}") from None
        raise HsanomalyError(f"{name}: not a loadable ONNX model ({describe(err)})") from None
    if chosen[0] != "CPUExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
        raise HsanomalyError(f"{name}: {said.cuda_failure(device)}")
    return session


@functools.cache
def _checking_arena():
    """Once per process: the arena the sessions that check a bundle share, of CHECK_MEMORY
    bytes. A graph may build a tensor as large as a constant in it says (ConstantOfShape, Pad):
    a bundle of a few KB took the memory of the process (QGIS's, in QGIS) as it loaded. In
    the arena such a tensor is refused, and the bundle with it."""
    ort = import_onnxruntime()
    with contextlib.suppress(Exception):    # an onnxruntime without it: the check runs unbounded
        where = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                  ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(where, ort.OrtArenaCfg(CHECK_MEMORY, -1, -1, -1))


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20      # where glibc's own adaptive threshold stops on 64-bit systems


@functools.cache
def malloc_as_alone():
    """Once per process (a Dask worker's): Dask's nanny starts a worker with its
    MALLOC_TRIM_THRESHOLD_, which stops glibc's threshold for mapping a block from adapting:
    every large numpy temporary was mapped, faulted in and unmapped again (much of the
    workers' time in the kernel)."""
    import dask

    nanny = dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_", None)
    if nanny is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(nanny):
        with contextlib.suppress(OSError, AttributeError):     # not glibc: nothing to set
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)      # glibc's own, as alone
            libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)


@contextlib.contextmanager
def environment_kept():
    """The caller's environment as it was once the block ends: Dask's nanny writes its
    workers' settings (OMP_NUM_THREADS=1, ...) into the process that starts them. Yields
    ``started()``, called once the cluster has started: what changed until then is the
    nanny's, put back where it still holds the nanny's value."""
    before, written = dict(os.environ), {}

    def started():
        written.update((key, value) for key, value in os.environ.items()
                       if before.get(key) != value)

    try:
        yield started
    finally:
        for key, value in written.items():
            if os.environ.get(key) == value:
                if key in before:
                    os.environ[key] = before[key]
                else:
                    del os.environ[key]
