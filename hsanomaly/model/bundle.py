"""The model bundle: ``generator.onnx``, ``critic.onnx``, ``model.json`` and, for 1x1-window
models, the fast solver's codebook (``codebook.z.npy``, ``codebook.g.npy``,
``codebook.jacobian.npy``), validated without torch.

``model.json`` says what the networks expect (raw and preprocessed band counts, window, latent
size, the fitted preprocessing) and holds the sha256 of every other file of the bundle (its
``files``); each ONNX file carries the same JSON (minus ``files``) in its metadata under
``hsanomaly``. Loading checks they all agree, so a bundle edited by hand, corrupted, or written
by an incompatible format version is refused with one line instead of producing silently wrong
scores; so is a network that keeps tensors in external data files, which no checksum covers.
Only onnxruntime is used to read the ONNX metadata; torch and the onnx package are never
imported here.

The codebook (optional, format version 1 bundles written before it existed have none) is
described by model.json's ``codebook``: the settings it was built with (entries requested,
scale, Sobol seed, the Jacobian's finite-difference step) and its array files, plain float32
``.npy`` files read with ``allow_pickle=False``: ``z`` (K, latent), ``g`` = G(z) (K, d) and
``jacobian`` = dG/dz (K, d, latent), d = bands x window x window.
"""

import contextlib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from ..errors import HsanomalyError, describe
from ..io.checks import absolute, read_small, size_text
from ..io.digest import file_sha256
from ..preprocess import Preprocessor
from .external import MalformedProtobuf, read_graph

FORMAT = "hsanomaly-model"
FORMAT_VERSION = 1
METADATA_KEY = "hsanomaly"
GENERATOR = "generator.onnx"
CRITIC = "critic.onnx"
META_FILE = "model.json"
LOG_TABLE, LOG_PLOT = "training.csv", "training.png"    # the training's log, beside them
CODEBOOK_FILE = "codebook.{}.npy"
CODEBOOK_STORED = ("z", "g")                # a codebook's arrays: these always,
CODEBOOK_ARRAYS = CODEBOOK_STORED + ("jacobian",)   # the Jacobians where stored (steps read them)
CODEBOOK_KEYS = ("size", "scale", "seed", "jacobian_step", "arrays")
REQUIRED_KEYS = ("hsanomaly_version", "bands_in", "bands", "wavelengths", "window", "latent_dim",
                 "preprocess", "training", "fingerprint", "opset", "versions", "files")
MAX_NETWORK_BYTES = 2**31        # protobuf's limit: no ONNX network is larger
MAX_META_BYTES = 16 * 2**20      # model.json: a description, some kilobytes
MAX_CODEBOOK_FILE_BYTES = 2**28 + 2**16   # a codebook's arrays all fit the latent search's
                                          # cap (latent.fast.CODEBOOK_BYTES), plus a header
MAX_SIZE = 2**16                 # bands, window, latent size, and values a pixel: beyond any model
# name -> expected inputs and outputs: (tensor name, shape with None for the batch axis)
SIGNATURES = {
    GENERATOR: lambda m: ([("z", [None, m["latent_dim"]])],
                          [("x", [None, m["bands"], m["window"], m["window"]])]),
    CRITIC: lambda m: ([("x", [None, m["bands"], m["window"], m["window"]])],
                       [("score", [None]), ("features", [None, None])]),
}


@dataclass(frozen=True, eq=False)
class Bundle:
    """A checked model bundle, as ``hsanomaly.train`` returns it and ``load_bundle`` reads it:
    its folder (``path``, what ``model=`` takes in its place), ``model.json`` (``meta``: bands,
    window, latent size, training settings), the fitted ``preprocessor`` and the networks'
    bytes. Properties name the parts (``bands``, ``window``, ``latent_dim``, ``wavelengths``,
    ``codebook``)."""

    path: Path
    meta: dict
    preprocessor: Preprocessor
    # the networks' bytes as checked at load: scoring runs exactly these, even if the folder is
    # replaced meanwhile (say, by a training into the same --out), and they travel to Dask workers
    networks: dict = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self):      # the folder and the shape of the model, not every band's scaling
        meta = self.meta
        return (f"Bundle({str(self.path)!r}, bands={meta.get('bands')}, "
                f"window={meta.get('window')}, latent_dim={meta.get('latent_dim')})")

    def __eq__(self, other: object) -> bool:
        """One model: the same folder and the same files (their checksums), however often it
        was loaded (a Detector given it again stays fitted)."""
        if not isinstance(other, Bundle):
            return NotImplemented
        return self.path == other.path and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash((self.path, self.digest()))

    def text(self, name: Optional[str] = None) -> str:
        """The one line the command line and QGIS print of a trained model (``name``: its
        folder as the user gave it): its bands, window, iterations and how its generator's
        spectra spread against the training data's (``training.health``: near 1 where it
        learnt them; a bundle of an earlier version gives its held-out Wasserstein estimate,
        which tells no good model from a bad one)."""
        training = self.meta.get("training", {})
        health = training.get("health")
        estimate = training.get("losses", {}).get("val_wasserstein")
        line = (f"{name or self.path}: {self.bands_in} -> {self.bands} bands, window "
                f"{self.window}, {training.get('iterations')} iterations")
        if health is not None:
            return line + f", generator spread {health['spread']:.2f} of the data's"
        return line + ("" if estimate is None else f", held-out Wasserstein estimate {estimate:.4f}")

    def network(self, name: str) -> bytes:
        """The ONNX bytes of ``GENERATOR`` or ``CRITIC``, as checked when the bundle loaded."""
        return self.networks[name]

    def digest(self) -> str:
        """Identifies the model's networks and preprocessing (its files' checksums), so a
        resume refuses another model and a heatmap names the one it was scored with."""
        digest = hashlib.sha256()
        for name in sorted(self.meta.get("files", {})):
            digest.update(f"{name}:{self.meta['files'][name]};".encode())
        return digest.hexdigest()[:16]

    def in_its_folder(self) -> bool:
        """Whether ``path`` still holds this bundle: its model.json lists the same files with
        the same checksums (a training into the folder since replaces them)."""
        try:
            meta = json.loads(read_small(self.path / META_FILE, MAX_META_BYTES, follow=True))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(meta, dict) and meta.get("files") == self.meta.get("files")

    @property
    def generator_path(self) -> Path:
        return self.path / GENERATOR

    @property
    def critic_path(self) -> Path:
        return self.path / CRITIC

    @property
    def bands_in(self) -> int:
        return self.meta["bands_in"]

    @property
    def bands(self) -> int:
        return self.meta["bands"]

    @property
    def window(self) -> int:
        return self.meta["window"]

    @property
    def latent_dim(self) -> int:
        return self.meta["latent_dim"]

    @property
    def wavelengths(self) -> Optional[List[float]]:
        return self.meta["wavelengths"]

    @property
    def codebook(self) -> Optional["StoredCodebook"]:
        """The stored fast-solver codebook (a StoredCodebook), or None when the bundle has none."""
        if "codebook" not in self.meta:
            return None
        book = self.meta["codebook"]
        digests = {name: self.meta["files"][file] for name, file in book["arrays"].items()}
        return StoredCodebook(self.path, book, self.latent_dim,
                              self.bands * self.window * self.window, digests)


@dataclass(frozen=True)
class StoredCodebook:
    """A codebook's settings and arrays as the bundle stores them; ``load`` reads the arrays."""

    path: Path          # the bundle directory
    settings: dict      # model.json's "codebook"
    latent_dim: int
    output_size: int
    digests: dict       # array name -> sha256 of its file, as model.json records it

    def matches(self, size, scale, seed, jacobian_step):
        """Whether a solver asking for this codebook gets exactly these arrays by building them."""
        s = self.settings
        return (int(size), float(scale), int(seed), float(jacobian_step)) == \
            (s["size"], float(s["scale"]), s["seed"], float(s["jacobian_step"]))

    @property
    def has_jacobian(self):
        """Whether it stores the Jacobians (a quick model stores none: ``training.train``)."""
        return "jacobian" in self.settings["arrays"]

    def load(self, jacobian=True):
        """(z (K, k), g (K, d), jacobian (K, d, k)) as float32 arrays; no pickle is ever read.
        Each file is checked against its sha256 as read: the arrays are read when scoring
        starts, and must still be the bundle's that was loaded. ``jacobian=False`` leaves the
        largest unread (None): a search without Gauss-Newton steps never uses it; so is it
        where the bundle stores none."""
        import io

        import numpy as np

        arrays = []
        for name in CODEBOOK_ARRAYS if jacobian and self.has_jacobian else CODEBOOK_STORED:
            file = self.path / self.settings["arrays"][name]
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                _fail(self.path, f"{file.name} is gone since the model was loaded (moved or "
                                 "removed?); a run or a detector fitted on it needs the bundle "
                                 "where it was: put it back, or start again (rerun, or fit "
                                 "again)")
            except OSError as err:
                _fail(self.path, f"{file.name} cannot be read ({describe(err)})")
            try:
                if hashlib.sha256(data).hexdigest() != self.digests[name]:
                    _fail(self.path, f"{file.name} changed since the model was loaded "
                                     "(replaced or modified), so it is not the model the "
                                     "scoring began with: start again with the model as it "
                                     "is now (rerun, or load it again)")
                _check_npy_size(data)
                array = np.load(io.BytesIO(data), allow_pickle=False)
            except (OSError, ValueError) as err:
                _fail(self.path, f"{file.name} is not a plain .npy array ({err})")
            arrays.append(array)
        z, g, jac = (*arrays, None)[:3]
        n = len(z)
        if n < 1:
            _fail(self.path, f"{self.settings['arrays']['z']} holds no codebook entry")
        expected = ((n, self.latent_dim), (n, self.output_size),
                    (n, self.output_size, self.latent_dim))
        for name, array, shape in zip(CODEBOOK_ARRAYS, arrays, expected):
            if array.dtype != np.float32 or array.shape != shape:
                _fail(self.path, f"{self.settings['arrays'][name]} holds {array.dtype} "
                                 f"{array.shape}, expected float32 {shape}")
            if not np.isfinite(array).all():
                _fail(self.path, f"{self.settings['arrays'][name]} holds values that are not "
                                 "finite (a diverged training?)")
        return z, g, jac


def _check_npy_size(data):
    """Refuse (ValueError) .npy bytes whose header claims another size than they hold: numpy
    allocates what the header says before reading, so a forged shape ran out of memory."""
    import io

    import numpy as np

    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"format version {version[0]}.{version[1]}")
    # 3.0 is 2.0's layout with UTF-8 field names, which a plain array's header has none of
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(stream)
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed != len(data) - stream.tell():
        raise ValueError(f"its header claims {claimed} bytes of {dtype} {shape}, it holds "
                         f"{len(data) - stream.tell()}")


# training's record of where its data lay: model.json keeps it, the networks do not, so one
# model has one digest wherever its project lies (a resume after a move retrained the quick
# model to a digest of its own, and refused the finished tiles as another model's)
WHERE_TRAINED = ("inputs", "quick_model_of", "quick_model_input")


def embedded_metadata(meta):
    """The JSON stored inside each ONNX file: model.json without the file checksums and
    without training's record of where its data lay (``WHERE_TRAINED``)."""
    kept = {k: v for k, v in meta.items() if k != "files"}
    if isinstance(kept.get("training"), dict):
        kept["training"] = {k: v for k, v in kept["training"].items() if k not in WHERE_TRAINED}
    return json.dumps(kept, sort_keys=True)


def load_bundle(path: Union[str, "os.PathLike[str]"]) -> Bundle:
    """Load and validate a bundle directory; raise a one-line HsanomalyError naming what is wrong.
    The bundle keeps its absolute path: its arrays are read when first needed, maybe by a Dask
    worker in another working directory, or after the caller's ``os.chdir``."""
    path = Path(absolute(path))
    meta = _read_meta(path)
    preprocessor = _check_meta(path, meta)
    networks = {name: _check_network(path, name, meta) for name in (GENERATOR, CRITIC)}
    _check_codebook(path, meta)
    for name in sorted(set(meta["files"]) - {GENERATOR, CRITIC}):
        _check_file(path, name, meta)
    return Bundle(path, meta, preprocessor, networks)


def check_bands(bundle, n_bands, path, left_out=""):
    """Refuse a raster whose band count is not the one the model was trained on;
    ``left_out`` says which of its bands reading left out (alpha, bad bands), if any."""
    if n_bands != bundle.bands_in:
        note = f" ({left_out})" if left_out else ""
        raise HsanomalyError(f"{path}: has {n_bands} bands{note} but the model {bundle.path} "
                             f"was trained on {bundle.bands_in}")


def _fail(path, problem):
    raise HsanomalyError(f"{path}: {problem}")


def _read_meta(path):
    if not path.is_dir():
        _fail(path, "no model bundle here (expected a directory with model.json)")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        _fail(path, f"not a model bundle: {META_FILE} is "
                    f"{'not a file' if meta_path.exists() else 'missing'}")
    if meta_path.stat().st_size > MAX_META_BYTES:
        _fail(path, f"{META_FILE} holds {meta_path.stat().st_size / 2**20:.0f} MiB, far more than "
                    "a model's description")
    try:
        meta = json.loads(read_small(meta_path, MAX_META_BYTES, follow=True))
    except OSError as err:
        _fail(path, f"{META_FILE} cannot be read ({describe(err)})")
    except ValueError as err:
        _fail(path, f"{META_FILE} is not valid JSON ({err})")
    except RecursionError:
        _fail(path, f"{META_FILE} is not valid JSON (nested too deeply)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _fail(path, f"{META_FILE} does not describe an hsanomaly model")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        _fail(path, f"model format version {version!r} is not supported (this hsanomaly reads "
                    f"version {FORMAT_VERSION}); retrain the model or use a matching hsanomaly")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        _fail(path, f"{META_FILE} lacks {', '.join(missing)}")
    return meta


def _check_meta(path, meta):
    for key in ("bands_in", "bands", "window", "latent_dim"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 1:
            _fail(path, f"{META_FILE}: {key} must be a positive integer, got {meta[key]!r}")
    if meta["window"] % 2 == 0:
        _fail(path, f"{META_FILE}: window must be odd, got {meta['window']}")
    problem = size_problem(**{key: meta[key] for key in ("bands_in", "bands", "window",
                                                          "latent_dim")})
    if problem:
        _fail(path, f"{META_FILE}: {problem}")
    for key in ("training", "files"):
        if not isinstance(meta[key], dict):
            _fail(path, f"{META_FILE}: {key} must be an object, got {type(meta[key]).__name__}")
    wavelengths = meta.get("wavelengths")
    if wavelengths is not None and not (
            isinstance(wavelengths, list) and len(wavelengths) == meta["bands_in"]
            and all(isinstance(w, (int, float)) and not isinstance(w, bool)
                    and not math.isinf(w) for w in wavelengths)):   # NaN: a centre unknown
        _fail(path, f"{META_FILE}: wavelengths must be null or {meta['bands_in']} numbers "
                    "(nanometres), one a band")
    try:
        pre = Preprocessor.from_dict(meta["preprocess"])
    except HsanomalyError as err:
        _fail(path, str(err))
    if (pre.n_features_in_, getattr(pre, "n_features_out_", None)) != (meta["bands_in"], meta["bands"]):
        _fail(path, f"{META_FILE}: preprocessing maps {pre.n_features_in_} bands to "
                    f"{getattr(pre, 'n_features_out_', '?')}, not {meta['bands_in']} to {meta['bands']}")
    return pre


def size_problem(bands_in, bands, window, latent_dim):
    """What makes a model of these sizes one no bundle holds (``MAX_SIZE``), or None: the
    check would build a batch of its windows, and the networks run on that many values a
    pixel (training refuses them before it starts)."""
    for key, value in (("bands_in", bands_in), ("bands", bands), ("window", window),
                       ("latent_dim", latent_dim)):
        if value > MAX_SIZE:
            return f"{key} is {value:,}, beyond what any model holds ({MAX_SIZE:,})"
    if bands * window ** 2 > MAX_SIZE:
        return (f"{bands} bands in {window}x{window} windows make {bands * window ** 2:,} "
                f"values a pixel, beyond what any model takes ({MAX_SIZE:,})")
    return None


def _check_file(path, name, meta, keep=False):
    """Any file listed in model.json's ``files``: present and with its recorded sha256.
    ``keep``: read it whole and return the bytes that were checked (for the small networks,
    so what runs is what was checked); otherwise it is hashed as a stream."""
    file = path / name
    if Path(name).name != name or name in ("", ".", ".."):
        _fail(path, f"{META_FILE}: files lists {name!r}, which is not a file name in the bundle")
    if not file.is_file():
        _fail(path, f"{name} is a link to content that is not there (git annex get, dvc "
                    "pull?)" if file.is_symlink() and not file.exists() else
                    f"{name} is {'not a file' if file.exists() else 'missing'}")
    if keep and file.stat().st_size > MAX_NETWORK_BYTES:
        _fail(path, f"{name} holds {file.stat().st_size / 2**30:.1f} GiB, more than an ONNX "
                    "network can (2 GiB)")
    try:
        data = file.read_bytes() if keep else None
        digest = file_sha256(file) if data is None else hashlib.sha256(data).hexdigest()
    except OSError as err:
        _fail(path, f"{name} cannot be read ({describe(err)})")
    if meta["files"].get(name) != digest:
        if _lfs_pointer(file):
            _fail(path, f"{name} is a git LFS pointer, not the file it stands for: fetch the "
                        "bundle's files (git lfs pull)")
        _fail(path, f"{name} does not match its sha256 in {META_FILE} (modified, corrupt, or "
                    "the bundle replaced by a training as it was read: try again)")
    return data


def _lfs_pointer(file):
    """Whether ``file`` is a git LFS pointer: the small text git leaves for a large file
    without the LFS filter."""
    with contextlib.suppress(OSError):
        if file.stat().st_size < 1024:
            return file.read_bytes().startswith(b"version https://git-lfs.github.com/spec/")
    return False


def _check_codebook(path, meta):
    """model.json's ``codebook``, when present: complete, and every array covered by ``files``."""
    if "codebook" not in meta:
        return
    book = meta["codebook"]
    if not isinstance(book, dict) or any(k not in book for k in CODEBOOK_KEYS):
        _fail(path, f"{META_FILE}: codebook must give {', '.join(CODEBOOK_KEYS)}")
    arrays = book["arrays"]
    if not isinstance(arrays, dict) or set(arrays) not in (set(CODEBOOK_ARRAYS),
                                                           set(CODEBOOK_STORED)) or \
            not all(isinstance(name, str) for name in arrays.values()):
        _fail(path, f"{META_FILE}: codebook arrays must name the files of "
                    f"{', '.join(CODEBOOK_STORED)} (and {CODEBOOK_ARRAYS[-1]})")
    for name in arrays.values():
        if name not in meta["files"]:
            _fail(path, f"{META_FILE}: codebook file {name!r} has no sha256 in files")
        size = (path / name).stat().st_size if (path / name).is_file() else 0
        if size > MAX_CODEBOOK_FILE_BYTES:        # refused before it is hashed or read
            _fail(path, f"{name} holds {size / 2**20:,.0f} MiB, more than a codebook can "
                        f"({MAX_CODEBOOK_FILE_BYTES // 2**20} MiB)")
    numbers = {"size": int, "seed": int, "scale": (int, float), "jacobian_step": (int, float)}
    for key, kind in numbers.items():
        if not isinstance(book[key], kind) or isinstance(book[key], bool):
            _fail(path, f"{META_FILE}: codebook {key} must be a number, got {book[key]!r}")


def _check_network(path, name, meta):
    """Check one network, read once, and return its bytes."""
    from ..runtime import open_session

    data = _check_file(path, name, meta, keep=True)
    try:
        graph = read_graph(data)
    except MalformedProtobuf as err:    # what this reading cannot check must not run: a group
        _fail(path, f"{name} is not an ONNX network hsanomaly exported ({err})")  # (onnxruntime
    except RecursionError:                                      # skips it) hid a Loop from it
        _fail(path, f"{name}: its graphs nest too deep to be a network hsanomaly exported")
    if graph.external:
        _fail(path, f"{name} keeps tensors in external data files, which the bundle's checksums "
                    "do not cover (export the network as one file)")
    _check_operators(path, name, graph)
    session = open_session(data, threads=1, optimize=False, label=path / name, checking=True)
    try:
        embedded = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    except UnicodeDecodeError:          # onnxruntime decodes every value as it hands them over
        _fail(path, f"{name}: its embedded metadata is not text (edited or corrupt)")
    if embedded is None:
        _fail(path, f"{name} carries no hsanomaly metadata")
    try:
        embedded = json.loads(embedded)
    except (ValueError, RecursionError):
        _fail(path, f"{name}: its embedded hsanomaly metadata is not valid JSON")
    if not isinstance(embedded, dict) or \
            json.loads(embedded_metadata(embedded)) != json.loads(embedded_metadata(meta)):
        _fail(path, f"{name}: its embedded metadata disagrees with {META_FILE} (edited by hand?)")
    inputs, outputs = SIGNATURES[name](meta)
    for expected, actual in ((inputs, session.get_inputs()), (outputs, session.get_outputs())):
        got = [(a.name, [d if isinstance(d, int) else None for d in a.shape]) for a in actual]
        if not _signature_matches(expected, got):
            _fail(path, f"{name} has tensors {got}, expected {expected} (None = any size)")
    _probe(path, name, session, inputs, outputs)
    return data


def _probe(path, name, session, inputs, outputs):
    """Run the network once on a batch of two zeros: what it gives must be what it declares,
    float32 and finite (a graph that says one shape and gives another, or NaN, failed in the
    middle of a run's tiles)."""
    import numpy as np

    feed = {n: np.zeros([2 if d is None else d for d in shape], np.float32) for n, shape in inputs}
    try:
        given = session.run(None, feed)
    except Exception as err:       # onnxruntime's own exceptions: a graph that cannot run
        asked = re.search(r"smaller than requested bytes of (\d+)", str(err))
        if asked:                  # beyond the checking arena (``runtime.CHECK_MEMORY``)
            _fail(path, f"{name} builds a tensor of {size_text(int(asked[1]))} on a batch of "
                        f"two, more than a network of hsanomaly's ever takes (a bundle is "
                        f"data: refusing a graph that fills the memory)")
        _fail(path, f"{name} does not run on a batch of two ({describe(err)})")
    for (n, shape), value in zip(outputs, given):
        value = np.asarray(value)
        declared = [2 if d is None else d for d in shape]
        if value.dtype != np.float32 or len(value.shape) != len(shape) or \
                any(d not in (g, None) for d, g in zip([2] + shape[1:], value.shape)):
            _fail(path, f"{name} gives {n} of shape {list(value.shape)} ({value.dtype}) for a "
                        f"batch of two, where it declares {declared} (float32)")
        if not np.isfinite(value).all():
            _fail(path, f"{name} gives {n} that is not finite (NaN or infinite) for zeros")


# The operators hsanomaly's exporter writes (its dense lowering and torch's export of the
# networks), and the plain tensor plumbing another torch version may export them with. A graph
# with any other (a Loop that never ends, a tensor built as large as it says, random numbers,
# a runtime's own operators) is not a network hsanomaly trained.
OPERATORS = frozenset({
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Exp", "Log", "Clip",
    "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Conv", "ConvTranspose", "ReduceSum", "ReduceMean",
    "ReduceMax", "ReduceMin", "Reshape", "Constant", "Identity", "Flatten", "Shape", "Gather",
    "Unsqueeze", "Squeeze", "Concat", "Slice", "Transpose", "Cast",
    "Pad", "ConstantOfShape"})     # torch's export of F.pad: every 1x1 bundle of 0.1


def _check_operators(path, name, graph):
    others = sorted(f"{domain}:{op}" if domain else op for domain, op in graph.operators
                    if domain or op not in OPERATORS)
    if graph.nested or others:
        what = ", ".join(others) if others else "a graph inside a node (control flow)"
        _fail(path, f"{name} runs {what}, which hsanomaly's networks never do (a bundle is data, "
                    "not code: refusing a graph that may loop for ever or fill the memory)")


def _signature_matches(expected, got):
    """Same tensor names and ranks, and equal sizes wherever the expected size is fixed."""
    if [n for n, _ in expected] != [n for n, _ in got]:
        return False
    return all(len(e) == len(g) and all(a is None or a == b for a, b in zip(e, g))
               for (_, e), (_, g) in zip(expected, got))
