"""FLOPs of an exported network, for the speed benchmarks' hardware floor (not the product's:
nothing in ``hsanomaly`` needs it). The scripts beside this file import it by name."""

import numpy as np


def count_flops(model_path):
    """Floating-point operations per sample of a graph written by ``export_networks`` with the
    dense lowering: 2 per non-zero weight of each Gemm (its structural zeros are not counted:
    they are no work the network needs). None for graphs of another shape (Conv, MatMul)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    weights = {t.name: t for t in model.graph.initializer}
    ops = {n.op_type for n in model.graph.node}
    if not ops <= {"Gemm", "Relu", "Reshape", "Tanh"}:
        return None
    flops = 0
    for node in model.graph.node:
        if node.op_type == "Gemm":
            flops += 2 * int(np.count_nonzero(numpy_helper.to_array(weights[node.input[1]])))
    return flops
