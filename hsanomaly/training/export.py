"""Writing the model bundle: the two networks as ONNX, metadata inside them and in model.json.

The bundle is assembled in a hidden temporary sibling directory and renamed into place only when
complete, so a failed or cancelled run never leaves a half-written bundle (an existing bundle at
the same path is replaced in one rename). See hsanomaly.model.bundle for the format.
"""

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path

import torch

from ..model.bundle import CRITIC, GENERATOR, META_FILE, METADATA_KEY, embedded_metadata, file_sha256

OPSET = 17


def export_networks(generator, critic, meta, directory):
    """Write generator.onnx and critic.onnx with ``meta`` embedded, then model.json with checksums."""
    import onnx

    directory = Path(directory)
    meta = json.loads(json.dumps(meta))  # plain JSON types, so the embedded copy compares equal
    embedded = embedded_metadata(meta)
    generator = copy.deepcopy(generator).cpu().eval()
    critic = copy.deepcopy(critic).cpu().eval()
    window, bands = generator.window, generator.bands
    graphs = {
        GENERATOR: (generator, torch.zeros(2, generator.latent_dim), ["z"], ["x"]),
        CRITIC: (critic, torch.zeros(2, bands, window, window), ["x"], ["score", "features"]),
    }
    files = {}
    for name, (network, example, inputs, outputs) in graphs.items():
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(network, (example,), buffer, input_names=inputs,
                              output_names=outputs, opset_version=OPSET, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
        model = onnx.load_from_string(buffer.getvalue())
        model.producer_name = "hsanomaly"
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, embedded
        onnx.save(model, directory / name)
        files[name] = file_sha256(directory / name)
    meta["files"] = files
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


@contextlib.contextmanager
def staged_directory(out):
    """Yield an empty private temporary directory beside ``out``; on success it replaces
    ``out`` through the one write path (``hsanomaly.io.atomic``): every file fsync'd and the
    bundle loaded and checked (checksums, ONNX metadata) before the rename, so a failed export
    leaves the previous bundle as it was."""
    from ..io.atomic import atomic_directory
    from ..model import load_bundle

    with atomic_directory(out, check=load_bundle) as tmp:
        yield tmp
