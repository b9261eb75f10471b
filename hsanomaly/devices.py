"""Which onnxruntime runs the networks, and on which device: the device names (``cpu``,
``cuda``, ``cuda:N``, as training names them), the providers each asks for, and whether the
CUDA provider really starts here, asked before any work. onnxruntime-gpu lists its CUDA
provider whether or not the CUDA and cuDNN libraries it needs load; a session then lands on
the CPU (saying why on stdout), and a quick model was trained before that was found."""

import contextlib
import io
import os
import re
import socket
import sys
import threading

from .errors import HsanomalyError
from .spelling import spell

DEVICES = ("cpu", "cuda")
RUNTIMES = ("onnxruntime", "onnxruntime-gpu")   # one module, two distributions: [cpu], [gpu]
# A graph of one Identity node (ONNX IR 7, opset 13): a session on it starts a provider
PROBE_GRAPH = bytes.fromhex(
    "08073a3b0a100a017812017922084964656e74697479120570726f62655a0f0a0178120a0a08080112040a020801"
    "620f0a0179120a0a08080112040a02080142040a00100d")
BANNER = ("*" * 15, "EP Error", "Falling back to ")   # onnxruntime's lines on a provider's failure
LIBRARIES = "pip install 'onnxruntime-gpu[cuda,cudnn]' brings them"


def on_worker():
    """" on the Dask worker on host H" in a task on a Dask worker, else "": what a worker
    lacks, the machine that started the run may well have."""
    if "distributed" not in sys.modules:
        return ""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return ""
    return f" on the Dask worker on host {socket.gethostname()}"


def import_onnxruntime():
    """onnxruntime, or a one-line error saying which extra installs it; both runtimes
    installed (``[cpu]`` and ``[gpu]``) are said once; its telemetry off unless asked for."""
    # 1.29 on: a device id and a growing queue of events in HOME, sent where there is a network
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        on = on_worker()
        raise HsanomalyError(f"the model scores need the ONNX runtime{on}: pip install "
                             f"'hsanomaly[cpu]'{' there' if on else ''} (or 'hsanomaly[gpu]' "
                             f"for {spell('device', 'cuda')})") from None
    if len(installed(RUNTIMES)) > 1:
        from .io.checks import warn_once

        warn_once("onnxruntime and onnxruntime-gpu are both installed: they install the same "
                  "module and overwrite each other's files, so which one runs is not known; "
                  "keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install "
                  "'hsanomaly[gpu]' (or 'hsanomaly[cpu]')")
    return onnxruntime


def installed(distributions):
    """Those of ``distributions`` (names as pip knows them) that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    def present(name):
        with contextlib.suppress(PackageNotFoundError):
            return bool(version(name))
    return [name for name in distributions if present(name)]


def parse_device(device):
    """``(kind, index)`` of a device named as training names it: ``cpu``, ``cuda`` (the first
    GPU) or ``cuda:N``; anything else is refused in one line, before any work."""
    kind, colon, index = str(device).partition(":")
    if kind in DEVICES and not colon:
        return kind, 0
    if kind == "cuda" and re.fullmatch(r"[0-9]+", index):
        return kind, int(index)
    raise HsanomalyError(f"{spell('device', device)}: unknown device; use cpu, cuda or cuda:N")


def providers(device="cpu"):
    """The onnxruntime execution providers for ``device``; raises a one-line error where
    onnxruntime has no CUDA provider (``check_device`` also starts it)."""
    kind, index = parse_device(device)
    ort = import_onnxruntime()
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise HsanomalyError(
            f"{spell('device', device)}: onnxruntime has no CUDA provider here (install the [gpu] "
            f"extra, onnxruntime-gpu, on a machine with an NVIDIA GPU, or use {spell('device', 'cpu')})")
    # TF32 matrix products (onnxruntime's default on Ampere and later) round to 10 bits of
    # mantissa: scores would differ from the CPU's in the third digit (benchmarks/gpu_check.py)
    options = {"use_tf32": "0", **({"device_id": str(index)} if index else {})}
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def check_device(device):
    """Refuse, before any work, a ``device`` this installation cannot run the networks on: no
    CUDA provider, or one that does not start (a session on ``PROBE_GRAPH``, until one has
    started in this process for that GPU)."""
    chosen = providers(device)
    if chosen[0] == "CPUExecutionProvider":
        return
    options = tuple(sorted(chosen[0][1].items()))
    if options not in _STARTED:                 # a failure is asked again: a GPU busy then
        failure = _cuda_start(device, options)  # may be free at the next call
        if failure is not None:
            raise HsanomalyError(failure)
        _STARTED.add(options)


_STARTED: set = set()   # the CUDA provider options a session started with in this process


def _cuda_start(device, options):
    """Why a CUDA session with provider ``options`` does not start here, or None."""
    ort = import_onnxruntime()
    settings = ort.SessionOptions()
    settings.log_severity_level = 4
    with ep_error() as said:
        try:
            session = ort.InferenceSession(PROBE_GRAPH, sess_options=settings, providers=[
                ("CUDAExecutionProvider", dict(options)), "CPUExecutionProvider"])
        except Exception as err:            # onnxruntime's own types
            said.text += f"\nEP Error {err}"
            session = None
    if session is not None and "CUDAExecutionProvider" in session.get_providers():
        return None
    return said.cuda_failure(device)


class _Said:
    """What onnxruntime printed while a session started (``ep_error``)."""

    def __init__(self):
        self.text = ""

    def cuda_failure(self, device):
        """The one line for a CUDA provider that did not start, with onnxruntime's reason."""
        reasons = [line.removeprefix("EP Error").strip() for line in self.text.splitlines()
                   if line.startswith("EP Error") and line.strip() != "EP Error"]
        reason = next((r.split(" when using ")[0] for r in reasons if r), None)
        return (f"{spell('device', device)}: onnxruntime could not start its CUDA provider"
                f"{f' ({reason})' if reason else ''}: is the GPU there and free, and are the "
                f"CUDA and cuDNN libraries it needs? ({LIBRARIES}); or use "
                f"{spell('device', 'cpu')}")


@contextlib.contextmanager
def ep_error(active=True):
    """Keep the banner onnxruntime prints on stdout where a provider fails to start ("EP
    Error", then a retry on the CPU) out of the caller's output, for the error that names it;
    whatever else was printed meanwhile (another thread's) is passed on after. ``active``
    False (a CPU session, which prints none): nothing is redirected. sys.stdout is the
    process's: these swaps take turns, but a caller's own ``redirect_stdout`` in another
    thread at the same moment can still be put back out of order."""
    said, buffer = _Said(), io.StringIO()
    if not active or sys.stdout is None:       # (pythonw: no stdout, nothing printed)
        yield said
        return
    with _REDIRECTING:          # sys.stdout is the process's: one session's start at a time
        out = sys.stdout
        try:
            with contextlib.redirect_stdout(buffer):
                yield said
        finally:
            lines = buffer.getvalue().splitlines(keepends=True)
            banner = [line.startswith(BANNER) for line in lines]
            said.text += "".join(line for line, ours in zip(lines, banner) if ours)
            out.write("".join(line for line, ours in zip(lines, banner) if not ours))


_REDIRECTING = threading.Lock()
