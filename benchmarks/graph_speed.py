"""The networks' ONNX graphs on the CPU: the dense Gemm lowering against the convolution-shaped
export, onnxruntime batch sizes and thread settings, all in one process.

Both graphs are exported from the same torch networks (a generator and a critic of the default
shape, DIM 8, for --bands bands; speed does not depend on the weights), so every ratio printed
compares like with like under the same machine load. Rounds alternate between the settings so
that a load change mid-run hits all of them alike. Pixels per second of wall time and per
CPU-second (time.process_time: all threads of this process) are both printed: on a busy machine
the first drops for every setting, the second shows which setting wastes the CPU.

    python benchmarks/graph_speed.py [--bands 20] [--batches 1024,4096,16384] [--threads 1,2]
                                     [--rounds 3] [--pixels 65536]

Last line: dense_vs_conv_generator=<x> dense_vs_conv_critic=<x> (px/CPU-s ratios at batch 4096,
1 thread).
"""

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
import torch

from flops import count_flops     # benchmarks/flops.py, beside this script
from hsanomaly.training.export import network_bytes
from hsanomaly.training.networks import Critic, Generator


def session(graph, threads, spin):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", type=int, default=20)
    parser.add_argument("--batches", default="1024,4096,16384")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pixels", type=int, default=65536, help="pixels per timing")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    torch.manual_seed(0)
    generator, critic = Generator(args.bands).eval(), Critic(args.bands).eval()
    graphs = {("generator", kind): network_bytes(generator, dense=kind == "dense")
              for kind in ("conv", "dense")}
    graphs.update({("critic", kind): network_bytes(critic, dense=kind == "dense")
                   for kind in ("conv", "dense")})
    rng = np.random.default_rng(0)
    feeds = {"generator": lambda n: {"z": rng.standard_normal((n, 4)).astype(np.float32)},
             "critic": lambda n: {"x": rng.uniform(-1, 1, (n, args.bands, 1, 1)).astype(np.float32)}}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        path.write_bytes(graphs["generator", "dense"])
        flops = count_flops(path)
    print(f"{args.bands} bands, DIM 8: {flops / 1e6:.2f} MFLOP per generator forward; "
          f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    settings = [(t, spin) for t in threads for spin in ((True, False) if t > 1 else (True,))]
    cases = [(net, kind, batch, t, spin) for net in ("generator", "critic")
             for kind in ("conv", "dense") for batch in batches for t, spin in settings]
    sessions = {c: session(graphs[c[0], c[1]], c[3], c[4]) for c in cases}
    inputs = {(net, batch): feeds[net](batch) for net in ("generator", "critic") for batch in batches}
    for net, batch in inputs:            # a fast lowering must give the same outputs to win
        conv, dense = (sessions[net, kind, batch, threads[0], True].run(None, inputs[net, batch])
                       for kind in ("conv", "dense"))
        for a, b in zip(conv, dense):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{net} conv and dense differ at batch {batch}")
    totals = {c: [0.0, 0.0, 0] for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            net, kind, batch, t, spin = case
            s, feed = sessions[case], inputs[net, batch]
            s.run(None, feed)
            calls = max(1, args.pixels // batch)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                s.run(None, feed)
            totals[case][0] += time.perf_counter() - wall
            totals[case][1] += time.process_time() - cpu
            totals[case][2] += calls * batch

    def rates(case):
        wall, cpu, n = totals[case]
        return n / wall, n / cpu

    for net in ("generator", "critic"):
        print(f"\n{net}: k px/s wall, k px/CPU-s (dense / conv ratio of px/CPU-s)")
        for batch in batches:
            for t, spin in settings:
                label = f"{t} thread{'s' if t > 1 else ''}{'' if spin else ', no spin'}"
                conv, dense = (rates((net, k, batch, t, spin)) for k in ("conv", "dense"))
                print(f"  batch {batch:6d} {label:20s} conv {conv[0] / 1e3:5.0f} {conv[1] / 1e3:5.0f}"
                      f"   dense {dense[0] / 1e3:5.0f} {dense[1] / 1e3:5.0f}   "
                      f"x{dense[1] / conv[1]:.2f}")
    print(f"\nload {os.getloadavg()[0]:.1f}")
    ref = batches.index(4096) if 4096 in batches else 0
    ratio = {net: rates((net, "dense", batches[ref], threads[0], True))[1]
             / rates((net, "conv", batches[ref], threads[0], True))[1]
             for net in ("generator", "critic")}
    print(f"dense_vs_conv_generator={ratio['generator']:.2f} dense_vs_conv_critic={ratio['critic']:.2f}")


if __name__ == "__main__":
    main()
