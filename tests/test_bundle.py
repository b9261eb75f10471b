"""Loading and validating model bundles (hsanomaly.model) without torch.

The bundles here are built directly with the onnx package (tiny graphs with the contract's
signatures), so these tests exercise the loader alone; tests/test_train.py round-trips real
exported networks.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from hsanomaly.errors import HsanomalyError
from hsanomaly.model import check_bands, load_bundle
from hsanomaly.io.digest import file_sha256
from hsanomaly.model.bundle import embedded_metadata
from hsanomaly.preprocess import Preprocessor

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

BANDS_IN, BANDS, WINDOW, LATENT = 6, 3, 1, 2


def _generator_graph(latent, bands, window):
    """z (N, latent) -> x (N, bands, window, window) = tanh(z @ W)."""
    w = numpy_helper.from_array(np.ones((latent, bands * window * window), np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, bands, window, window], np.int64), "shape")
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"]),
             helper.make_node("Tanh", ["h"], ["t"]),
             helper.make_node("Reshape", ["t", "shape"], ["x"])]
    return helper.make_graph(
        nodes, "generator", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", bands, window, window])],
        [w, shape])


def _critic_graph(bands, window):
    """x -> features = flatten(x), score = sum(features)."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("Flatten", ["x"], ["features"], axis=1),
             helper.make_node("ReduceSum", ["features", "axes"], ["score"], keepdims=0)]
    return helper.make_graph(
        nodes, "critic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", bands, window, window])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                       ["batch", bands * window * window])],
        [axes])


CODEBOOK_ENTRIES = 64


def write_bundle(path, latent_graph=LATENT, codebook=False, external=False, generator=None,
                 codebook_arrays=("z", "g", "jacobian"), **overrides):
    """A valid bundle as hsanomaly.training writes it; ``overrides`` change model.json and metadata.

    codebook: also store a (random) fast-solver codebook of CODEBOOK_ENTRIES entries, as the
    export does for 1x1-window models, of ``codebook_arrays``. external: save the generator's weights in an external
    data file (listed with its sha256), which the exporter never does. generator: another
    generator graph, signed as the exporter signs its own."""
    path.mkdir()
    X = np.random.default_rng(0).normal(size=(50, BANDS_IN))
    meta = {"format": "hsanomaly-model", "format_version": 1, "hsanomaly_version": "0.1.0",
            "bands_in": BANDS_IN, "bands": BANDS, "wavelengths": None, "window": WINDOW,
            "latent_dim": LATENT,
            "preprocess": json.loads(json.dumps(Preprocessor(n_bands=BANDS).fit(X).to_dict())),
            "training": {"iterations": 1, "seed": 0}, "fingerprint": "0" * 64, "opset": 17,
            "versions": {"hsanomaly": "0.1.0"}}
    if codebook:
        meta["codebook"] = {"size": CODEBOOK_ENTRIES, "scale": 2.0, "seed": 0, "jacobian_step": 1e-3,
                            "arrays": {n: f"codebook.{n}.npy" for n in codebook_arrays}}
    meta.update(overrides)
    graphs = {"generator.onnx": generator or _generator_graph(latent_graph, BANDS, WINDOW),
              "critic.onnx": _critic_graph(BANDS, WINDOW)}
    files = {}
    for name, graph in graphs.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        entry = model.metadata_props.add()
        entry.key, entry.value = "hsanomaly", embedded_metadata(meta)
        if external and name == "generator.onnx":
            onnx.save(model, path / name, save_as_external_data=True, size_threshold=0,
                      location="generator.data")
            files["generator.data"] = file_sha256(path / "generator.data")
        else:
            onnx.save(model, path / name)
        files[name] = file_sha256(path / name)
    if codebook:
        rng = np.random.default_rng(1)
        d = BANDS * WINDOW * WINDOW
        shapes = {"z": (CODEBOOK_ENTRIES, LATENT), "g": (CODEBOOK_ENTRIES, d),
                  "jacobian": (CODEBOOK_ENTRIES, d, LATENT)}
        for name in codebook_arrays:
            shape = shapes.get(name, (CODEBOOK_ENTRIES,))
            file = f"codebook.{name}.npy"
            np.save(path / file, rng.normal(size=shape).astype(np.float32), allow_pickle=False)
            files[file] = file_sha256(path / file)
    meta["files"] = files
    (path / "model.json").write_text(json.dumps(meta, indent=2))
    return path


@pytest.fixture
def bundle_dir(tmp_path):
    return write_bundle(tmp_path / "model")


def refused(path, fragment):
    with pytest.raises(HsanomalyError) as err:
        load_bundle(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and fragment in message, message
    return message


def edit_json(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    meta.update(changes)
    (path / "model.json").write_text(json.dumps(meta))


def drop_key(path, key):
    meta = json.loads((path / "model.json").read_text())
    del meta[key]
    (path / "model.json").write_text(json.dumps(meta))


def test_round_trip(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert (bundle.bands_in, bundle.bands, bundle.window, bundle.latent_dim) == \
        (BANDS_IN, BANDS, WINDOW, LATENT)
    assert bundle.generator_path == bundle_dir / "generator.onnx" and bundle.critic_path.is_file()
    assert bundle.path == bundle_dir and bundle.meta["format"] == "hsanomaly-model"
    assert bundle.preprocessor.transform(np.ones((4, BANDS_IN))).shape == (4, BANDS)


def test_two_loads_of_one_bundle_are_equal_and_hash_alike(bundle_dir, tmp_path):
    """A Bundle could not be hashed (its meta is a dict), and two loads of one folder were never
    equal (the preprocessor compares by identity): a Detector given the same model again
    was unfitted."""
    import copy

    import hsanomaly

    first, again = load_bundle(bundle_dir), load_bundle(bundle_dir)
    assert first == again == copy.deepcopy(first) and {first: 1}[again] == 1
    other = load_bundle(write_bundle(tmp_path / "other"))
    assert first != other and first != str(bundle_dir)
    detector = hsanomaly.Detector("critic", model=first)
    detector.scorer_ = "what fit learned"      # the parameters alone decide what unfits
    assert hasattr(detector.set_params(model=again), "scorer_")
    assert not hasattr(detector.set_params(model=other), "scorer_")


def test_edited_model_json_is_refused(bundle_dir):
    edit_json(bundle_dir, window=3)
    refused(bundle_dir, "disagrees with model.json")


def test_edited_onnx_bytes_are_refused(bundle_dir):
    data = bytearray((bundle_dir / "critic.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bundle_dir / "critic.onnx").write_bytes(bytes(data))
    refused(bundle_dir, "critic.onnx does not match its sha256")


def test_other_format_version_is_refused(tmp_path):
    path = write_bundle(tmp_path / "model", format_version=2)
    message = refused(path, "format version 2 is not supported")
    assert "reads version 1" in message


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: (p / "generator.onnx").unlink(), "generator.onnx is missing"),
    (lambda p: ((p / "generator.onnx").unlink(), (p / "generator.onnx").mkdir()),
     "generator.onnx is not a file"),
    (lambda p: (p / "model.json").unlink(), "model.json is missing"),
    # shared through git without its large files: what to fetch, not "try again"
    (lambda p: (p / "generator.onnx").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1\n"),
     "generator.onnx is a git LFS pointer, not the file it stands for: fetch the bundle's "
     "files (git lfs pull)"),
    (lambda p: ((p / "critic.onnx").unlink(), (p / "critic.onnx").symlink_to(
        p / ".git" / "annex" / "objects" / "critic")),
     "critic.onnx is a link to content that is not there (git annex get, dvc pull?)"),
    (lambda p: (p / "model.json").write_text("{not json"), "not valid JSON"),
    (lambda p: edit_json(p, format="something-else"), "does not describe an hsanomaly model"),
    (lambda p: drop_key(p, "fingerprint"), "lacks fingerprint"),
    (lambda p: edit_json(p, bands=4), "preprocessing maps 6 bands to 3"),
])
def test_damaged_bundles_are_refused(bundle_dir, damage, fragment):
    damage(bundle_dir)
    refused(bundle_dir, fragment)


def test_missing_directory_is_refused(tmp_path):
    refused(tmp_path / "nowhere", "no model bundle here")


def test_network_that_disagrees_with_its_metadata_is_refused(tmp_path):
    path = write_bundle(tmp_path / "model", latent_graph=LATENT + 1)
    refused(path, "generator.onnx has tensors")


def test_networks_with_external_data_are_refused(tmp_path):
    """Weights in another file would load from beside the network (swappable, unchecked)."""
    path = write_bundle(tmp_path / "model", external=True)
    refused(path, "generator.onnx keeps tensors in external data files")
    from hsanomaly.model.external import read_graph

    assert not read_graph((path / "critic.onnx").read_bytes()).external


def _hostile_generator(kind):
    """The test generator's signature, with what a network hsanomaly exported never holds: a
    Loop that would run for ever, a tensor as large as a shape says, random numbers."""
    graph = _generator_graph(LATENT, BANDS, WINDOW)
    out = graph.node[-1].output[0]
    graph.node[-1].output[0] = "y"
    if kind == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
             helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
        graph.initializer.extend([numpy_helper.from_array(np.array(2 ** 62, np.int64), "n"),
                                  numpy_helper.from_array(np.array(True), "go")])
        graph.node.append(helper.make_node("Loop", ["n", "go", "y"], [out], body=body))
    elif kind in ("huge", "constant", "padded"):   # 1 GiB, built with allowed operators but Expand
        graph.initializer.extend([numpy_helper.from_array(np.array([2 ** 14] * 2, np.int64), "s"),
                                  numpy_helper.from_array(np.zeros(1, np.float32), "one"),
                                  numpy_helper.from_array(np.array([2 ** 14 - 1, 2 ** 14 - 1, 0, 0],
                                                                   np.int64), "pads")])
        graph.node.extend([
            helper.make_node("Expand", ["one", "s"], ["big"]) if kind == "huge" else
            helper.make_node("ConstantOfShape", ["s"], ["big"]) if kind == "constant" else
            helper.make_node("Pad", ["square", "pads"], ["big"]),
            helper.make_node("ReduceMin", ["big"], ["zero"], keepdims=0),
            helper.make_node("Add", ["y", "zero"], [out])])
        if kind == "padded":
            graph.node.insert(0, helper.make_node("Reshape", ["one", "s1"], ["square"]))
            graph.initializer.append(numpy_helper.from_array(np.array([1, 1], np.int64), "s1"))
    else:
        graph.node.append(helper.make_node("RandomNormalLike", ["y"], [out]))
    return graph


@pytest.mark.parametrize("kind, said", [("loop", "generator.onnx runs Loop, which hsanomaly"),
                                        ("huge", "generator.onnx runs Expand"),
                                        ("random", "generator.onnx runs RandomNormalLike")])
def test_a_graph_with_operators_the_exporter_never_writes_is_refused(tmp_path, kind, said):
    """A signed bundle whose generator held a Loop of 2^62 turns hung detect for good (no
    Ctrl-C reaches onnxruntime's run); one building a tensor as large as its shape says
    filled the memory; random operators and a runtime's own ran as well."""
    path = write_bundle(tmp_path / "model", generator=_hostile_generator(kind))
    refused(path, said)


@pytest.mark.parametrize("kind", ["constant", "padded"])
def test_a_graph_that_builds_a_tensor_larger_than_any_network_needs_is_refused(tmp_path, kind):
    """ConstantOfShape and Pad are allowed (torch's export of F.pad), and their sizes can be
    any constant: a bundle of a few KB took 1 GiB (any size, in the audit) as it loaded,
    and again for every batch it scored. The check runs the networks in an arena of its own."""
    path = write_bundle(tmp_path / "model", generator=_hostile_generator(kind))
    refused(path, "generator.onnx builds a tensor of 1.0 GiB on a batch of two, more than a "
                  "network of hsanomaly's ever takes")


def test_a_description_beyond_any_model_is_refused_before_anything_is_built(tmp_path):
    """A window of 20001 in model.json made the check build a batch of two 20001 x 20001
    windows (any size model.json said) before a network was run."""
    path = write_bundle(tmp_path / "model", window=20001)
    refused(path, "model.json: 3 bands in 20001x20001 windows make 1,200,120,003 values a pixel, "
                  "beyond what any model takes (65,536)")


def test_the_operators_of_every_network_the_exporter_writes_are_allowed():
    from hsanomaly.model.bundle import OPERATORS
    from hsanomaly.model.external import read_graph

    assert {"Gemm", "Conv", "ConvTranspose", "Tanh", "Relu", "Reshape", "Constant", "Add"} <= \
        OPERATORS
    assert {"Pad", "ConstantOfShape"} <= OPERATORS      # torch's F.pad: every 1x1 bundle of 0.1
    model = helper.make_model(_critic_graph(BANDS, WINDOW))
    graph = read_graph(model.SerializeToString())
    assert (graph.operators, graph.nested) == ({("", "Flatten"), ("", "ReduceSum")}, False)


def test_external_data_in_a_constant_node_is_found(tmp_path):
    from hsanomaly.model.external import MalformedProtobuf, read_graph

    value = numpy_helper.from_array(np.ones((8, 8), np.float32), "value")
    graph = helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert not read_graph(model.SerializeToString()).external
    onnx.save(model, tmp_path / "c.onnx", save_as_external_data=True, size_threshold=0,
              location="c.data", convert_attribute=True)
    assert (tmp_path / "c.data").is_file()
    assert read_graph((tmp_path / "c.onnx").read_bytes()).external
    with pytest.raises(MalformedProtobuf):
        read_graph(b"\x3a\x10abc")         # a graph of 16 bytes holding 3


def test_check_bands(bundle_dir):
    bundle = load_bundle(bundle_dir)
    check_bands(bundle, BANDS_IN, "scene.tif")
    with pytest.raises(HsanomalyError, match=r"^scene.tif: has 5 bands but the model .* trained on 6$"):
        check_bands(bundle, 5, "scene.tif")


def test_loading_does_not_import_torch(bundle_dir):
    code = ("import sys; from hsanomaly.model import load_bundle; "
            f"b = load_bundle({str(bundle_dir)!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(b.bands)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(BANDS)


# --- the stored fast-solver codebook ----------------------------------------------------------

@pytest.fixture
def codebook_dir(tmp_path):
    return write_bundle(tmp_path / "model", codebook=True)


def test_bundles_without_a_codebook_still_load(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert "codebook" not in bundle.meta and bundle.codebook is None


def test_stored_codebook_round_trip(codebook_dir):
    stored = load_bundle(codebook_dir).codebook
    z, g, jac = stored.load()
    assert z.shape == (CODEBOOK_ENTRIES, LATENT) and g.shape == (CODEBOOK_ENTRIES, BANDS)
    assert jac.shape == (CODEBOOK_ENTRIES, BANDS, LATENT) and jac.dtype == np.float32
    np.testing.assert_array_equal(z, np.load(codebook_dir / "codebook.z.npy"))
    assert stored.matches(CODEBOOK_ENTRIES, 2.0, 0, 1e-3)
    assert not stored.matches(4096, 2.0, 0, 1e-3)          # e.g. detect --codebook 4096
    assert not stored.matches(CODEBOOK_ENTRIES, 2.0, 1, 1e-3)
    assert not stored.matches(CODEBOOK_ENTRIES, 3.0, 0, 1e-3)


def test_tampered_codebook_is_refused(codebook_dir):
    file = codebook_dir / "codebook.g.npy"
    array = np.load(file)
    array[0, 0] += 1e-3
    np.save(file, array, allow_pickle=False)
    message = refused(codebook_dir, "codebook.g.npy does not match its sha256 in model.json")
    assert message.startswith(f"{codebook_dir}: codebook.g.npy")


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: (p / "codebook.jacobian.npy").unlink(), "codebook.jacobian.npy is missing"),
    (lambda p: edit_json(p, files={k: v for k, v in json.loads((p / "model.json").read_text())
                                   ["files"].items() if k != "codebook.z.npy"}),
     "codebook file 'codebook.z.npy' has no sha256 in files"),
    (lambda p: edit_json(p, files={**json.loads((p / "model.json").read_text())["files"],
                                   "../elsewhere.npy": "0" * 64}),
     "which is not a file name in the bundle"),
])
def test_damaged_codebooks_are_refused(codebook_dir, damage, fragment):
    damage(codebook_dir)
    refused(codebook_dir, fragment)


@pytest.mark.parametrize("names", [("z",), ("z", "jacobian"), ("z", "g", "jacobian", "x")])
def test_a_codebook_must_store_its_vectors_and_outputs_and_may_leave_out_the_jacobians(
        tmp_path, names):
    refused(write_bundle(tmp_path / "model", codebook=True, codebook_arrays=names),
            "codebook arrays must name the files of z, g (and jacobian)")
    lean = load_bundle(write_bundle(tmp_path / "lean", codebook=True, codebook_arrays=("z", "g")))
    z, g, jac = lean.codebook.load()
    assert jac is None and not lean.codebook.has_jacobian and len(z) == len(g) == CODEBOOK_ENTRIES


def test_codebook_settings_are_part_of_the_checked_metadata(codebook_dir):
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["codebook"]["seed"] = 7          # claims another seed than the arrays were built with
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    refused(codebook_dir, "disagrees with model.json")


def test_codebook_arrays_are_never_unpickled(codebook_dir):
    """An object array (which only pickle can read) in place of a codebook array, with its
    checksum updated as an attacker would, is refused on loading the arrays, never executed."""
    file = codebook_dir / "codebook.z.npy"
    np.save(file, np.array([{"not": "numbers"}], dtype=object), allow_pickle=True)
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["files"]["codebook.z.npy"] = file_sha256(file)
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    stored = load_bundle(codebook_dir).codebook
    with pytest.raises(HsanomalyError, match=r"codebook.z.npy is not a plain .npy array"):
        stored.load()


def test_codebook_of_the_wrong_shape_is_refused_on_loading(codebook_dir):
    file = codebook_dir / "codebook.g.npy"
    np.save(file, np.zeros((CODEBOOK_ENTRIES, BANDS + 1), np.float32), allow_pickle=False)
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["files"]["codebook.g.npy"] = file_sha256(file)
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HsanomalyError, match=r"codebook.g.npy holds float32 \(64, 4\), "
                                             r"expected float32 \(64, 3\)"):
        load_bundle(codebook_dir).codebook.load()


def _preprocess_with(**state):
    X = np.random.default_rng(0).normal(size=(50, BANDS_IN))
    pre = json.loads(json.dumps(Preprocessor(n_bands=BANDS).fit(X).to_dict()))
    pre["state"].update(state)
    return pre


@pytest.mark.parametrize("state, fragment", [
    ({"half_range_": [float("nan"), 1.0, 1.0]}, "half_range_ is not 3 finite numbers"),
    ({"half_range_": [0.0, 1.0, 1.0]}, "half_range_ has a value that is not above 0"),
    ({"keep_": [True] * (BANDS_IN - 1)}, f"keep_ is not {BANDS_IN} true/false values"),
    ({"bin_edges_": [0, 50, BANDS_IN]}, "bin_edges_ do not split"),
    ({"center_": [0.0, 0.0]}, "center_ is not 3 finite numbers"),
])
def test_preprocessing_state_that_does_not_fit_together_is_refused(tmp_path, state, fragment):
    """A bundle consistent in every checksum, but whose preprocessing would raise an
    IndexError or turn every pixel NaN when scoring."""
    path = write_bundle(tmp_path / "model", preprocess=_preprocess_with(**state))
    refused(path, fragment)


def test_json_nested_past_pythons_limit_is_refused_with_one_line(bundle_dir):
    (bundle_dir / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(bundle_dir, "not valid JSON (nested too deeply)")
    from hsanomaly.io.paths import is_model_bundle

    assert not is_model_bundle(bundle_dir)


def test_embedded_metadata_that_is_not_json_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "embedded_metadata", lambda meta: "{not json")
    path = write_bundle(tmp_path / "model")
    refused(path, "generator.onnx: its embedded hsanomaly metadata is not valid JSON")


def test_codebook_with_values_that_are_not_finite_is_refused_on_loading(codebook_dir):
    file = codebook_dir / "codebook.g.npy"
    g = np.load(file)
    g[3, 1] = np.nan
    np.save(file, g, allow_pickle=False)
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["files"]["codebook.g.npy"] = file_sha256(file)
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HsanomalyError, match="codebook.g.npy holds values that are not finite"):
        load_bundle(codebook_dir).codebook.load()


def test_a_codebook_whose_header_claims_another_size_names_the_file(codebook_dir):
    """numpy allocates what a .npy header says before reading: a forged shape (1e13 x 4) was
    reported as running out of memory while scoring (try a smaller --tile, --resume)."""
    file = codebook_dir / "codebook.z.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (10**13, 4)
    with open(file, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["files"]["codebook.z.npy"] = file_sha256(file)
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HsanomalyError, match=r"codebook.z.npy is not a plain .npy array \(its "
                                             r"header claims 160000000000000 bytes of float32 "
                                             r"\(10000000000000, 4\), it holds 64\)"):
        load_bundle(codebook_dir).codebook.load()


@pytest.mark.parametrize("version", [(2, 0), (3, 0)])
def test_a_codebook_in_a_later_npy_format_still_loads(codebook_dir, version):
    """The header check took only format 1.0 and 2.0; numpy reads 3.0 too."""
    z = load_bundle(codebook_dir).codebook.load()[0]
    file = codebook_dir / "codebook.z.npy"
    with open(file, "wb") as f:
        np.lib.format.write_array(f, z, version=version, allow_pickle=False)
    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["files"]["codebook.z.npy"] = file_sha256(file)
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(load_bundle(codebook_dir).codebook.load()[0], z)


def test_embedded_metadata_that_is_not_text_is_refused_with_one_line(tmp_path):
    """Bytes of the metadata that are not UTF-8 (the checksum updated, as a re-hashing copy
    would) raised onnxruntime's UnicodeDecodeError as a traceback."""
    path = write_bundle(tmp_path / "model")
    data = bytearray((path / "generator.onnx").read_bytes())
    at = data.rfind(b'"bands"')
    data[at:at + 2] = b"\xcf\x28"
    (path / "generator.onnx").write_bytes(bytes(data))
    meta = json.loads((path / "model.json").read_text())
    meta["files"]["generator.onnx"] = file_sha256(path / "generator.onnx")
    (path / "model.json").write_text(json.dumps(meta))
    refused(path, "generator.onnx: its embedded metadata is not text (edited or corrupt)")


@pytest.mark.parametrize("files", [5, [["x"]], "abc", None])
def test_a_folder_whose_model_json_lists_no_files_is_no_bundle_to_replace(tmp_path, files):
    """"files" that is no mapping of names raised a TypeError traceback where a train or a
    quick model would replace the folder (a number, a list), or was read letter by letter
    ("abc"), or let the folder be replaced as a bundle (null)."""
    from hsanomaly.io.paths import foreign_entries, is_model_bundle

    folder = tmp_path / "out.model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"format": "hsanomaly-model", "files": files}))
    assert not is_model_bundle(folder) and foreign_entries(folder) == []


def _generator_then(op_nodes, initializers=()):
    """The test generator's graph with its output passed through ``op_nodes`` (from "y")."""
    graph = _generator_graph(LATENT, BANDS, WINDOW)
    out = graph.node[-1].output[0]
    graph.node[-1].output[0] = "y"
    graph.initializer.extend(initializers)
    graph.node.extend(op_nodes)
    graph.node[-1].output[0] = out
    return graph


@pytest.mark.parametrize("overrides, said", [
    (dict(training="fast"), "model.json: training must be an object, got str"),
    (dict(wavelengths=[500.0, 600.0]), "wavelengths must be null or 6 numbers"),
    (dict(wavelengths=["400-2500"] * 6), "wavelengths must be null or 6 numbers"),
    (dict(generator=_generator_then([helper.make_node("Mul", ["y", "nan"], ["x"])],
                                    [numpy_helper.from_array(np.array(np.nan, np.float32), "nan")])),
     "generator.onnx gives x that is not finite (NaN or infinite) for zeros"),
    (dict(generator=_generator_then([helper.make_node("ReduceMean", ["y"], ["x"], axes=[0])])),
     "generator.onnx gives x of shape [1, 3, 1, 1] (float32) for a batch of two, where it "
     "declares [2, 3, 1, 1]")])
def test_a_signed_bundle_that_would_fail_or_fill_the_memory_in_a_run_is_refused_as_it_loads(
        tmp_path, overrides, said):
    """Each of these loaded, then ended a run in a traceback (TypeError, AttributeError,
    ValueError in a reshape, LinAlgError on NaN) or used gigabytes (a latent of 10,000 took
    7 GB for a 64 x 64 scene)."""
    refused(write_bundle(tmp_path / "model", **overrides), said)


def test_a_model_json_that_is_no_file_or_far_too_large_is_refused(tmp_path):
    import os

    path = write_bundle(tmp_path / "model")
    (path / "model.json").rename(tmp_path / "kept.json")
    os.mkfifo(path / "model.json")
    refused(path, "model.json is not a file")
    (path / "model.json").unlink()
    with open(path / "model.json", "wb") as file:
        file.truncate(17 * 2**20)                   # sparse: nothing is written
    refused(path, "model.json holds 17 MiB, far more than a model's description")


def test_zeros_are_no_protobuf_message():
    """Zeros decoded as field 0 two bytes at a time: a 200 MB file of zeros took 39 s."""
    from hsanomaly.model.external import MalformedProtobuf, read_graph

    with pytest.raises(MalformedProtobuf, match="numbered 0"):
        read_graph(bytes(1000))


def test_codebook_arrays_named_by_anything_but_a_file_name_are_refused(codebook_dir):
    """A list for a file's name ended in "TypeError: unhashable type"."""
    from hsanomaly.model.bundle import _check_codebook

    meta = json.loads((codebook_dir / "model.json").read_text())
    meta["codebook"]["arrays"]["z"] = ["codebook.z.npy"]
    with pytest.raises(HsanomalyError, match=r"codebook arrays must name the files of z, g "
                                             r"\(and jacobian\)"):
        _check_codebook(codebook_dir, meta)


def test_a_codebook_without_entries_says_so(codebook_dir):
    """It said "holds float32 (0, 2), expected float32 (0, 2)"."""
    meta = json.loads((codebook_dir / "model.json").read_text())
    for name, shape in (("z", (0, LATENT)), ("g", (0, BANDS)), ("jacobian", (0, BANDS, LATENT))):
        np.save(codebook_dir / f"codebook.{name}.npy", np.zeros(shape, np.float32))
        meta["files"][f"codebook.{name}.npy"] = file_sha256(codebook_dir / f"codebook.{name}.npy")
    (codebook_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HsanomalyError, match="codebook.z.npy holds no codebook entry"):
        load_bundle(codebook_dir).codebook.load()


def test_a_latent_size_whose_search_would_take_gigabytes_is_refused_by_the_search():
    """A latent of 10,000 took 7 GB to score a 64 x 64 scene; the bundle itself loads (the
    critic's score needs no latent search, and hsanomaly trains such models)."""
    from hsanomaly.latent.fast import codebook_size

    with pytest.raises(HsanomalyError, match="a latent size of 10000 for 3 values a pixel needs "
                                             "more memory than the latent search holds"):
        codebook_size(2 ** 16, 10000, 3)
    assert codebook_size(2 ** 16, 4, 32) == 2 ** 16


def test_a_network_the_check_cannot_read_does_not_run(tmp_path):
    """An empty protobuf group (two bytes, which onnxruntime skips) in front of a network made
    the checks give up and pass it on: a Loop behind it loaded and scored (random numbers
    here: a Loop would now hang the probe run of a check that let it through)."""
    path = write_bundle(tmp_path / "model", generator=_hostile_generator("random"))
    network = path / "generator.onnx"
    network.write_bytes(bytes([15 << 3 | 3, 15 << 3 | 4]) + network.read_bytes())
    files = json.loads((path / "model.json").read_text())["files"]
    edit_json(path, files={**files, "generator.onnx": file_sha256(network)})
    refused(path, "generator.onnx is not an ONNX network hsanomaly exported (unsupported wire "
                  "type 3)")


def test_a_band_whose_centre_is_unknown_still_loads(tmp_path):
    """A raster with a band centred at wavenumber 0 gives that band a NaN wavelength, which
    training records: the model it wrote was refused as it loaded."""
    load_bundle(write_bundle(tmp_path / "model", wavelengths=[float("nan")] + [500.0] * 5))


def test_a_codebook_file_larger_than_any_codebook_is_refused_before_it_is_read(codebook_dir):
    """A forged codebook array of many gigabytes was hashed whole, and read whole into memory,
    before its header was looked at."""
    with open(codebook_dir / "codebook.g.npy", "r+b") as file:
        file.truncate(300 * 2**20)                       # sparse: no 300 MiB written
    refused(codebook_dir, "codebook.g.npy holds 300 MiB, more than a codebook can (256 MiB)")


def test_info_brackets_a_parts_own_settings():
    """A composite score's parts were flattened into its own settings: dualcontext's purge
    0.03 read among its rings' purge 0 and 0, whose was whose unsaid."""
    from hsanomaly.records import info_lines

    found = {"parameters": {"local": {"name": "mlrx", "purge": 0.0}, "purge": 0.03,
                            "rings": [[7, 3], [11, 5]]}}
    assert info_lines(found) == ("parameters: local (name mlrx, purge 0), purge 0.03, "
                                 "rings ((7, 3), (11, 5))")
    # a list among settings is bracketed as a part is: where it ends is seen (review 2's F04)
    assert info_lines({"settings": {"mask": ["a.tif", "b.tif"], "window": 1}}) == \
        "settings: mask (a.tif, b.tif), window 1"


def test_info_says_what_detect_would_read_of_a_scene(tmp_path):
    """A raster hsanomaly did not write was refused, so the bands, centres, nodata and
    scaling a run would take could be seen only by running it (the products audit F03); its
    checks before the work refuse there as in a run."""
    import h5py
    import rasterio
    from click.testing import CliRunner

    import hsanomaly
    import hsanomaly.cli
    from synthetic import synthetic_cube, write_mat

    cube, _ = synthetic_cube(bands=12, rows=30, cols=40)
    cube[:, 3, 4] = -9999
    with rasterio.open(tmp_path / "envi.img", "w", driver="ENVI", dtype="float32", count=12,
                       height=30, width=40, nodata=-9999) as ds:
        ds.write(cube.astype(np.float32))
    header = tmp_path / "envi.hdr"
    header.write_text(header.read_text() + "wavelength units = nm\nwavelength = {"
                      + ", ".join(str(400 + 10 * b) for b in range(12)) + "}\nbbl = {"
                      + ", ".join(["1"] * 11 + ["0"]) + "}\n")
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", str(tmp_path / "envi.img")])
    assert run.exit_code == 0, run.output
    lines = dict(line.split(": ", 1) for line in run.output.strip().splitlines())
    assert (lines["kind"], lines["rows"], lines["cols"], lines["bands"], lines["wavelengths_nm"],
            lines["nodata"], lines["mask"], lines["crs"], lines["placed_by"]) == (
        "scene", "30", "40", "11", "400, 500", "-9999", "None", "None", "None"), lines
    assert lines["left_out"].startswith("of its 12 bands, 1 marked bad"), lines
    # NaN nodata said once, and as strict JSON; a .mat scene as detect reads it
    with rasterio.open(tmp_path / "nan.tif", "w", driver="GTiff", dtype="float32", count=12,
                       height=30, width=40, nodata=float("nan")) as ds:
        ds.write(cube.astype(np.float32))
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", str(tmp_path / "nan.tif"), "--json"])
    assert run.exit_code == 0 and json.loads(run.output)["nodata"] == ["nan"], run.output
    write_mat(tmp_path / "scene.mat", cube, np.zeros(cube.shape[1:]))
    assert (hsanomaly.info(tmp_path / "scene.mat")["rows"], hsanomaly.info(
        tmp_path / "scene.mat")["cols"]) == (30, 40)
    # an alpha band leaves pixels out as nodata does: said (the info audit's F01)
    from rasterio.enums import ColorInterp

    with rasterio.open(tmp_path / "alpha.tif", "w", driver="GTiff", dtype="uint16", count=13,
                       height=30, width=40, crs="EPSG:32633",
                       transform=rasterio.Affine(1, 0, 500000, 0, -1, 7000000)) as ds:
        ds.write(np.abs(cube).astype(np.uint16), indexes=list(range(1, 13)))
        ds.write(np.full((30, 40), 65535, np.uint16), 13)
        ds.colorinterp = [ColorInterp.gray] * 12 + [ColorInterp.alpha]
    found = hsanomaly.info(tmp_path / "alpha.tif")
    assert (found["bands"], found["mask"], found["crs"], found["placed_by"]) == (
        12, "alpha band 13", "EPSG:32633", "its geotransform"), found
    with rasterio.open(tmp_path / "no-crs.tif", "w", driver="GTiff", dtype="float32", count=12,
                       height=30, width=40, transform=rasterio.Affine(2, 0, 100, 0, -2, 500)) as ds:
        ds.write(cube.astype(np.float32))
    found = hsanomaly.info(tmp_path / "no-crs.tif")      # placed, in units of no known CRS
    assert (found["crs"], found["placed_by"]) == (None, "its geotransform"), found
    with h5py.File(tmp_path / "prs.he5", "w") as f:      # stored (rows, bands, cols)
        f["cube"] = np.moveaxis(synthetic_cube(bands=60, rows=50, cols=60)[0], 0, 1)
    with pytest.raises(HsanomalyError, match="stored \\(rows, bands, cols\\)"):
        hsanomaly.info(f'HDF5:"{tmp_path / "prs.he5"}"://cube')


def test_info_says_what_a_bundle_and_a_heatmap_are_and_which_scored_which(tmp_path):
    """A bundle handed over could be told apart only in Python, and the digest a heatmap
    names its model by was printed nowhere (the bundle audit's F03)."""
    from click.testing import CliRunner

    import hsanomaly
    import hsanomaly.cli
    from synthetic import synthetic_cube, write_raster

    path = write_bundle(tmp_path / "model")
    bundle = load_bundle(path)
    found = hsanomaly.info(path)
    assert found["kind"] == "model" and found["digest"] == bundle.digest()
    assert found["bands_in"] == bundle.bands_in and found["summary"] == bundle.text(str(path))
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", str(path), "--json"])
    assert run.exit_code == 0 and json.loads(run.output)["digest"] == bundle.digest()

    cube, _ = synthetic_cube()
    scene = write_raster(tmp_path / "scene.tif", cube)
    hsanomaly.detect(scene, tmp_path / "heat.tif", score="rx", tile=16)
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", str(tmp_path / "heat.tif")])
    assert run.exit_code == 0 and "kind: heatmap\n" in run.output and "score: rx\n" in run.output
    found = hsanomaly.info(tmp_path / "heat.tif")        # what the tags hold, not their text
    assert found["tile"] == 16 and found["parameters"]["name"] == "rx"
    assert found["versions"]["numpy"] == np.__version__ and "versions: gdal " in run.output
    # a Detector's DataArray saved as a raster keeps its record in lower case: read as one
    import rasterio

    with rasterio.open(tmp_path / "heat.tif") as ds:
        pixels, profile, tags = ds.read(), ds.profile, ds.tags()
    with rasterio.open(tmp_path / "saved.tif", "w", **profile) as ds:
        ds.write(pixels)
        ds.update_tags(**{k.lower(): v for k, v in tags.items() if k.startswith("HSANOMALY_")
                          and k[10:] in ("SCORE", "PARAMETERS", "VERSION", "VERSIONS")})
    saved = hsanomaly.info(tmp_path / "saved.tif")
    assert (saved["kind"], saved["score"], saved["parameters"]) == ("heatmap", "rx",
                                                                    {"name": "rx"})
    run = CliRunner().invoke(hsanomaly.cli.main, ["info", str(tmp_path / "model" / "model.json")])
    assert run.exit_code == 1 and run.output.startswith(
        f"Error: {tmp_path / 'model' / 'model.json'}: not a raster GDAL can read (") and \
        run.output.endswith("; info takes a model bundle (a folder), a raster, or a quick look "
                            "or targets GeoPackage hsanomaly wrote\n") and \
        len(run.output.splitlines()) == 1
    (path / "critic.onnx").write_bytes(b"damaged")
    with pytest.raises(HsanomalyError, match="critic.onnx does not match its sha256"):
        hsanomaly.info(path)
