"""The exported ONNX graphs: the dense Gemm lowering of 1x1-window networks computes exactly the
torch networks, keeps the bundle's public tensors, and leaves onnxruntime nothing but matrix
products, ReLU and reshapes after its graph optimisations."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from hsanomaly.model.bundle import CRITIC, GENERATOR, SIGNATURES  # noqa: E402

TOLERANCE = 1e-5     # max abs difference from the torch network, in output units (|x| <= 1)


def _networks(bands, window=1, dim=8, seed=0, steps=0):
    """Generator and critic at their initialisation, or after ``steps`` WGAN-GP iterations on
    random spectra (weights that have moved: ReLUs that cut, a tanh that bends)."""
    from hsanomaly.training.networks import Critic, Generator
    from hsanomaly.training.settings import Settings
    from hsanomaly.training.wgan import WGANGP

    torch.manual_seed(seed)
    generator, critic = Generator(bands, window, dim), Critic(bands, window, dim)
    if steps:
        trainer = WGANGP(generator, critic, Settings(iterations=steps, batch=32, seed=seed))
        data = torch.rand(256, bands, window, window) * 1.6 - 0.8
        threads = torch.get_num_threads()
        torch.set_num_threads(1)     # hsanomaly.defaults.TRAIN_THREADS
        try:
            for _ in range(steps):
                trainer.step(data)
        finally:
            torch.set_num_threads(threads)
    return generator.eval(), critic.eval()


def _session(data, path=None):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if path is not None:
        options.optimized_model_filepath = str(path)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("bands, steps", [(1, 0), (7, 0), (20, 0), (20, 30), (32, 0), (205, 0)])
def test_dense_graphs_match_torch(bands, steps):
    from hsanomaly.training.export import network_bytes

    generator, critic = _networks(bands, steps=steps)
    z = torch.randn(300, generator.latent_dim) * 2
    x = torch.rand(300, bands, 1, 1) * 2 - 1
    with torch.no_grad():
        expected = [generator(z).numpy(), *(t.numpy() for t in critic(x))]
    got = (_session(network_bytes(generator)).run(["x"], {"z": z.numpy()})
           + _session(network_bytes(critic)).run(["score", "features"], {"x": x.numpy()}))
    for e, o in zip(expected, got):
        assert o.shape == e.shape and o.dtype == np.float32
        assert np.abs(o - e).max() <= TOLERANCE


def test_dense_graphs_keep_the_bundle_signatures():
    from hsanomaly.training.export import network_bytes

    generator, critic = _networks(20)
    meta = {"latent_dim": generator.latent_dim, "bands": 20, "window": 1}
    for name, network in ((GENERATOR, generator), (CRITIC, critic)):
        session = _session(network_bytes(network))
        inputs, outputs = SIGNATURES[name](meta)
        for expected, actual in ((inputs, session.get_inputs()), (outputs, session.get_outputs())):
            got = [(a.name, [d if isinstance(d, int) else None for d in a.shape]) for a in actual]
            assert [n for n, _ in got] == [n for n, _ in expected]
            for (_, e), (_, g) in zip(expected, got):
                assert len(e) == len(g) and all(a is None or a == b for a, b in zip(e, g))


def test_optimised_dense_graphs_are_matrix_products_only(tmp_path):
    """What onnxruntime runs (its optimised graph, written out): fused Gemms, ReLU, one Tanh and
    reshapes; none of the Pad/Slice/Concat/Transpose the convolution-shaped export had."""
    from hsanomaly.training.export import network_bytes

    generator, critic = _networks(20)
    for name, network in (("generator", generator), ("critic", critic)):
        path = tmp_path / f"{name}.optimised.onnx"
        _session(network_bytes(network), path)
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert ops <= {"Gemm", "FusedGemm", "Relu", "Reshape", "Tanh"}, ops
        assert "Gemm" in ops and "FusedGemm" in ops    # bias, residual and ReLU fused in


def test_windows_keep_the_convolution_export():
    from hsanomaly.training.export import network_bytes

    generator, critic = _networks(7, window=3, dim=2)
    z = torch.randn(9, generator.latent_dim)
    x = torch.rand(9, 7, 3, 3) * 2 - 1
    with torch.no_grad():
        expected = [generator(z).numpy(), *(t.numpy() for t in critic(x))]
    got = (_session(network_bytes(generator)).run(["x"], {"z": z.numpy()})
           + _session(network_bytes(critic)).run(["score", "features"], {"x": x.numpy()}))
    for e, o in zip(expected, got):
        np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1x1 window"):
        network_bytes(generator, dense=True)


def test_flops_are_counted_on_the_dense_graph(tmp_path):
    import importlib.util
    from pathlib import Path

    from hsanomaly.training.export import network_bytes

    spec = importlib.util.spec_from_file_location(
        "flops", Path(__file__).parents[1] / "benchmarks" / "flops.py")
    flops_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flops_module)
    count_flops = flops_module.count_flops

    generator, _ = _networks(20)
    path = tmp_path / "g.onnx"
    path.write_bytes(network_bytes(generator))
    flops = count_flops(path)
    # the convolutions' multiply-adds, about 0.3 M for 20 bands at DIM 8: within a factor 1.5
    assert 0.4e6 < flops < 0.9e6
    path.write_bytes(network_bytes(generator, dense=False))
    assert count_flops(path) is None


def test_torch_s_export_of_a_1x1_network_passes_the_operator_check():
    """Every 1x1 bundle of 0.1 (and any export with dense=False) holds torch's export of
    F.pad, Pad fed by ConstantOfShape: the bundle's operator check refused them all."""
    from hsanomaly.model.bundle import OPERATORS
    from hsanomaly.model.external import read_graph
    from hsanomaly.training.export import network_bytes

    generator, critic = _networks(20)
    for network in (generator, critic):
        graph = read_graph(network_bytes(network, dense=False))
        found, nested = graph.operators, graph.nested
        assert {op for _, op in found} <= OPERATORS and not nested
        assert {"Pad", "ConstantOfShape"} <= {op for _, op in found}
