"""Writing the model bundle: the two networks as ONNX, the fast solver's codebook, model.json.

The bundle is assembled in a hidden temporary sibling directory and renamed into place only when
complete, so a failed or cancelled run never leaves a half-written bundle (an existing bundle at
the same path is replaced in one rename). See hsanomaly.model.bundle for the format.

Graphs. For 1x1 windows (the default) every layer of both networks is an affine map of the
pixel's flattened (length x channels) activations, so the export lowers each network to a chain
of dense ``Gemm`` nodes on (N, features) matrices with ReLU between them: the bias, a residual
shortcut (as Gemm's C input) and the activation fuse into the products, and there is no Pad,
Slice, Concat or batch-looping Conv left for onnxruntime to run. Each layer's matrix is read off
the torch module itself (its response to the unit vectors, in float64), so the graph computes
exactly the trained network, up to float32 rounding; linear maps with no ReLU between them
(the generator's projection and first shortcut, the critic's first convolution and first
shortcut) are multiplied together. The dense matrices hold the convolutions' structural zeros
(about a quarter more multiply-adds than the convolutions), which onnxruntime's GEMMs still run
faster than the convolution-shaped graph; ``docs/training/graphs.md`` has the
measurements. Windows of 3 or 5 pixels are exported by ``torch.onnx`` with their Conv3d layers.
The public tensors are the same either way (hsanomaly.model.bundle.SIGNATURES).

Codebook. The fast latent solver's codebook (hsanomaly.latent.fast: latent vectors over the
prior, their generator outputs and Jacobians) depends only on the generator, so for 1x1-window
models it is built here, once, from the exported generator through onnxruntime, exactly as a
scoring process would build it, and stored as plain ``.npy`` arrays covered by model.json's
checksums. Scoring loads it instead of rebuilding it when the requested size, scale and seed
match (see hsanomaly.model.bundle.StoredCodebook).
"""

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import torch

from .. import defaults
from .._version import __version__
from ..errors import ignoring
from ..io.digest import file_sha256
from ..model.bundle import (CODEBOOK_ARRAYS, CODEBOOK_FILE, CODEBOOK_STORED, CRITIC, GENERATOR,
                            META_FILE, METADATA_KEY, embedded_metadata)

OPSET = 17
IR_VERSION = 8      # the ONNX IR version that goes with opset 17


def export_networks(generator, critic, meta, directory, codebook=defaults.CODEBOOK,
                    codebook_seed=0, codebook_jacobians=True, dense=None, threads=None):
    """Write generator.onnx and critic.onnx with ``meta`` embedded, the codebook, then model.json.

    codebook: fast-solver codebook entries to build and store (None or 0: none); only for 1x1
    windows, where a codebook is a few tens of MB (a 5x5 window's would be ten times larger and
    take minutes to build). codebook_seed: its Sobol seed (scoring with another seed builds its
    own). codebook_jacobians: store its Jacobians too (``training.train``). dense: lower the
    networks to Gemm chains (default: for 1x1 windows, the only ones it supports). threads:
    onnxruntime threads for building the codebook.
    """
    import onnx

    directory = Path(directory)
    generator = copy.deepcopy(generator).cpu().eval()
    critic = copy.deepcopy(critic).cpu().eval()
    window = generator.window
    dense = window == 1 if dense is None else bool(dense)
    meta = json.loads(json.dumps(meta))  # plain JSON types, so the embedded copy compares equal
    stored = _codebook_settings(codebook, codebook_seed, codebook_jacobians) if window == 1 \
        else None
    if stored is not None:
        meta["codebook"] = stored
    embedded = embedded_metadata(meta)
    files = {}
    for name, network in ((GENERATOR, generator), (CRITIC, critic)):
        model = onnx.load_from_string(network_bytes(network, dense))
        model.producer_name, model.producer_version = "hsanomaly", __version__
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, embedded
        onnx.save(model, directory / name)
        files[name] = file_sha256(directory / name)
    if stored is not None:
        files.update(_write_codebook(directory, generator.latent_dim, stored, threads))
    meta["files"] = files
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def network_bytes(network, dense=None):
    """A Generator or Critic as a serialised ONNX model (no hsanomaly metadata).

    dense: the Gemm-chain lowering (default for 1x1 windows) or torch.onnx's export of the
    modules as they are (the only choice for larger windows).
    """
    network = copy.deepcopy(network).cpu().eval()
    if dense is None:
        dense = network.window == 1
    if not dense:
        return _torch_export(network)
    if network.window != 1:
        raise ValueError("the dense lowering needs a 1x1 window")
    from .networks import Generator

    graph = _dense_generator(network) if isinstance(network, Generator) else _dense_critic(network)
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hsanomaly")
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _torch_export(network):
    from .networks import Generator

    if isinstance(network, Generator):
        example, inputs, outputs = torch.zeros(2, network.latent_dim), ["z"], ["x"]
    else:
        example = torch.zeros(2, network.bands, network.window, network.window)
        inputs, outputs = ["x"], ["score", "features"]
    buffer = io.BytesIO()
    with ignoring(DeprecationWarning):  # the TorchScript exporter's deprecation notices
        torch.onnx.export(network, (example,), buffer, input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
    return buffer.getvalue()


# --- the dense lowering (1x1 windows) ---------------------------------------------------------

def _affine(module, shape):
    """(W (n_in, n_out), b (n_out,)) in float64 with ``module(x).flatten() = x.flatten() @ W + b``
    for inputs of ``shape`` (one sample, no batch axis): the module's response to unit vectors."""
    n = int(np.prod(shape))
    module = copy.deepcopy(module).double()
    with torch.no_grad():
        bias = module(torch.zeros(1, *shape, dtype=torch.float64)).reshape(-1)
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
        weight = module(eye).reshape(n, -1) - bias
    return weight.numpy(), bias.numpy()


class _GraphBuilder:
    """Nodes and float32 initialisers of one ONNX graph, with readable unique names."""

    def __init__(self):
        self.nodes, self.initializers, self.names = [], [], set()

    def _name(self, base):
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def constant(self, value, name):
        from onnx import numpy_helper

        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        name = self._name(name)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op, inputs, name, output=None, **attributes):
        from onnx import helper

        output = output or self._name(name)
        self.nodes.append(helper.make_node(op, inputs, [output], name=self._name(name + "/" + op),
                                           **attributes))
        return output

    def affine(self, x, weight, bias, name, residual=None):
        """x @ weight + bias, plus ``residual`` (a tensor of the output's shape) when given, in
        which case ``bias`` must already be part of ``residual``."""
        w = self.constant(weight, name + ".weight")
        if residual is None:
            return self.node("Gemm", [x, w, self.constant(bias, name + ".bias")], name)
        return self.node("Gemm", [x, w, residual], name)

    def relu(self, x, name):
        return self.node("Relu", [x], name)

    def graph(self, name, inputs, outputs):
        from onnx import TensorProto, helper

        info = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
        return helper.make_graph(self.nodes, name, [info(*i) for i in inputs],
                                 [info(*o) for o in outputs], self.initializers)


def _dense_generator(generator):
    """z -> project -> 5 up-blocks -> to_bands -> tanh as Gemms on (N, length * channels)."""
    g = _GraphBuilder()
    lengths, widths, k = generator.lengths, generator.widths, generator.latent_dim
    w_in, b_in = _affine(generator.project, (k,))
    x = g.affine("z", w_in, b_in, "project")
    linear_in = ("z", w_in, b_in)        # x as an affine map of a graph input (no ReLU between)
    for i, block in enumerate(generator.blocks):
        shape = (lengths[i], widths[i])
        w_sc, b_sc = _affine(block.shortcut, shape)
        w_up, b_up = _affine(block.resample, shape)
        w_conv, b_conv = _affine(block.conv, (lengths[i + 1], widths[i + 1]))
        name = f"blocks.{i}"
        shortcut = _shortcut(g, x, linear_in, w_sc, b_sc + b_conv, name)
        h = g.relu(g.affine(g.relu(x, name + ".in"), w_up, b_up, name + ".resample"), name + ".mid")
        x = g.affine(h, w_conv, None, name + ".conv", residual=shortcut)
        linear_in = None
    w_out, b_out = _affine(generator.to_bands, (lengths[-1], widths[-1]))
    y = g.affine(g.relu(x, "out"), w_out, b_out, "to_bands")
    # Tanh after the reshape: onnxruntime would otherwise fuse it into the Gemm, whose fused
    # activation computes tanh more slowly than the Tanh kernel does
    shape = g.constant(np.array([-1, generator.bands, 1, 1], np.int64), "image_shape")
    y = g.node("Reshape", [y, shape], "image")
    g.node("Tanh", [y], "tanh", output="x")
    return g.graph("generator", [("z", ["batch", k])], [("x", ["batch", generator.bands, 1, 1])])


def _shortcut(g, x, linear_in, w_sc, bias, name):
    """A block's shortcut branch, folded into the preceding affine map when there is one."""
    if linear_in is None:
        return g.affine(x, w_sc, bias, name + ".shortcut")
    source, w0, b0 = linear_in
    return g.affine(source, w0 @ w_sc, b0 @ w_sc + bias, name + ".shortcut")


def _dense_critic(critic):
    """x -> from_bands -> 5 down-blocks -> features -> head as Gemms on (N, length * channels)."""
    g = _GraphBuilder()
    lengths, widths, bands = critic.lengths, critic.widths, critic.bands
    x_flat = g.node("Reshape", ["x", g.constant(np.array([-1, bands], np.int64), "flat_shape")],
                    "flat")
    w_in, b_in = _affine(critic.from_bands, (bands, 1))
    h = g.affine(x_flat, w_in, b_in, "from_bands")
    linear_in = (x_flat, w_in, b_in)
    for i, block in enumerate(critic.blocks):
        shape = (lengths[i], widths[i])
        w_sc, b_sc = _affine(block.shortcut, shape)
        w_conv, b_conv = _affine(block.conv, shape)
        w_down, b_down = _affine(block.resample, shape)
        name = f"blocks.{i}"
        shortcut = _shortcut(g, h, linear_in, w_sc, b_sc + b_down, name)
        c = g.relu(g.affine(g.relu(h, name + ".in"), w_conv, b_conv, name + ".conv"), name + ".mid")
        h = g.affine(c, w_down, None, name + ".resample", residual=shortcut)
        linear_in = None
    features = g.node("Relu", [h], "features", output="features")
    w_head, b_head = _affine(critic.head, (critic.n_features,))
    score = g.affine(features, w_head, b_head, "head")
    g.node("Reshape", [score, g.constant(np.array([-1], np.int64), "score_shape")], "score",
           output="score")
    return g.graph("critic", [("x", ["batch", bands, 1, 1])],
                   [("score", ["batch"]), ("features", ["batch", critic.n_features])])


# --- the codebook -----------------------------------------------------------------------------

def _codebook_settings(size, seed, jacobians):
    from ..latent.generator import JACOBIAN_STEP

    if not size:
        return None
    return {"size": int(size), "scale": defaults.CODEBOOK_SCALE, "seed": int(seed),
            "jacobian_step": JACOBIAN_STEP,
            "arrays": {name: CODEBOOK_FILE.format(name)
                       for name in (CODEBOOK_ARRAYS if jacobians else CODEBOOK_STORED)}}


def _write_codebook(directory, latent_dim, settings, threads):
    """Build the codebook from the exported generator (as scoring would) and save its arrays;
    returns {file name: sha256}."""
    from ..latent import GeneratorFunction
    from ..latent.fast import codebook_samples
    from ..runtime import open_session

    session = open_session(directory / GENERATOR, threads=threads or torch.get_num_threads())
    generator = GeneratorFunction(session, latent_dim)
    arrays = dict(zip(CODEBOOK_ARRAYS, codebook_samples(
        generator, settings["size"], settings["scale"], settings["seed"],
        jacobian="jacobian" in settings["arrays"])))
    files = {}
    for name, file in settings["arrays"].items():
        np.save(directory / file, np.ascontiguousarray(arrays[name], np.float32),
                allow_pickle=False)
        files[file] = file_sha256(directory / file)
    return files


@contextlib.contextmanager
def staged_directory(out, on_commit=None):
    """Yield an empty private temporary directory beside ``out``; on success it replaces
    ``out`` through the one write path (``hsanomaly.io.atomic``): every file fsync'd and the
    bundle loaded and checked (checksums, ONNX metadata) before the rename, so a failed export
    leaves the previous bundle as it was. ``on_commit``: run once it is in place."""
    from ..io.atomic import atomic_directory
    from ..model import load_bundle

    with atomic_directory(out, check=load_bundle, on_commit=on_commit) as tmp:
        yield tmp
