"""Whole-raster scoring on the seed's scene size: wall time and peak memory against the FLOP floor.

Writes a synthetic raster (--size, default the seed's 1600 x 700 x 20: three endmembers mixed
per pixel plus noise, a few planted targets), trains a model on it with the defaults unless
--model is given, then runs ``hsanomaly detect`` for RX, the critic, the reconstruction score
(fast solver) and the default score (``hsanomaly.defaults.SCORE``), each in a fresh process, and records its
wall time (start-up, imports, model load, fits, scoring and writing: everything) and its peak
resident memory (the child's own rusage).

The floor: in this process, a float32 GEMM of the networks' size class (a 4096 x 256 by
256 x 256 product, through onnxruntime's CPU provider with the same --threads) gives the
machine's multiply rate in GFLOP/s; the generator's FLOPs per pixel are counted on its ONNX
graph (2 per non-zero weight, benchmarks/flops.py); ``floor_s`` is one
generator forward over every pixel at that rate. Each score's time is printed as a multiple of
it. The thesis's 16 x 100 search is timed on a few pixels and extrapolated (--seed-sample 0
skips it).

    python benchmarks/gan_wall_time.py [--size 1600x700x20] [--model DIR] [--threads 2]

Last line: default_s=<s> critic_s=<s> recon_s=<s> rx_s=<s> floor_s=<s> peak_rss_mib=<max>
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.transform

from hsanomaly.io.source import iter_windows

from hsanomaly.defaults import SCORE as DEFAULT_SCORE

SCORES = (("rx", "rx"), ("critic", "critic"), ("recon", "recon"), ("default", DEFAULT_SCORE))
GEMM = (4096, 256, 256)       # M, K, N: a batch through the networks' widest layer


def write_synthetic(path, rows, cols, bands, seed=0):
    rng = np.random.default_rng(seed)
    wl = np.linspace(0, 1, bands)
    ends = np.stack([np.sin(3 * wl + k) + 2 for k in range(3)]) * 60
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "height": rows, "width": cols,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "crs": "EPSG:32633",
               "transform": rasterio.transform.from_origin(500000.0, 6700000.0, 1.0, 1.0)}
    with rasterio.open(path, "w", **profile) as dst:
        for window in iter_windows(rows, cols, 256):
            h, w = int(window.height), int(window.width)
            mix = rng.dirichlet(np.ones(3), size=h * w) @ ends + rng.normal(0, 1.0, (h * w, bands))
            dst.write(mix.T.reshape(bands, h, w).astype(np.float32), window=window)
        foreign = (np.cos(9 * wl) + 2) * 60
        for r, c in rng.integers(0, [max(1, rows - 4), max(1, cols - 4)], size=(14, 2)):
            dst.write(np.broadcast_to(foreign[:, None, None], (bands, 3, 3)).astype(np.float32),
                      window=rasterio.windows.Window(int(c), int(r), 3, 3))
    return path


def parse_size(text):
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 2:
        parts.append(20)
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--size: expected ROWSxCOLS[xBANDS], got {text!r}")
    return tuple(parts)


def timed_detect(src, dst, score, model, threads):
    """``hsanomaly detect`` in a fresh process: (wall seconds, peak RSS MiB, CPU seconds)."""
    command = [sys.executable, "-c", "from hsanomaly.cli import main; main()", "detect",
               str(src), str(dst), "--score", score, "--quiet"]
    if model is not None:
        command += ["--model", str(model), "--threads", str(threads)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = process.stdout.read(), process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"detect --score {score} failed ({process.returncode}):\n"
                         f"{out.decode()}{err.decode()}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def gemm_gflops(threads, seconds=1.0):
    """float32 GEMM rate of onnxruntime's CPU provider with ``threads`` threads, in GFLOP/s."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = GEMM
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Gemm", ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"a": rng.standard_normal((m, k)).astype(np.float32)}
    session.run(None, feed)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:      # best of many: the rate the machine can reach
        start = time.perf_counter()
        for _ in range(5):
            session.run(None, feed)
        best = max(best, 5 * 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def generator_flops(model):
    """FLOPs per pixel of one generator forward (non-zero weights of its dense graph)."""
    from flops import count_flops     # benchmarks/flops.py, beside this script
    from hsanomaly.model import load_bundle

    bundle = load_bundle(model)
    flops = count_flops(bundle.generator_path)
    if flops is None:   # a convolution-shaped graph (older export, or a window > 1): the
        # same network lowered from a freshly initialised one (the zeros are structural)
        from hsanomaly.training.export import network_bytes
        from hsanomaly.training.networks import Generator

        settings = bundle.meta["training"].get("settings", {})
        if bundle.window != 1:
            raise SystemExit(f"{model}: FLOP counting needs a 1x1-window model")
        generator = Generator(bundle.bands, 1, settings.get("dim", 8), bundle.latent_dim)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "g.onnx"
            path.write_bytes(network_bytes(generator))
            flops = count_flops(path)
    return flops


def seed_seconds_per_pixel(model, src, threads, n):
    """Seconds per pixel of the thesis's 16 x 100 search on ``n`` pixels of the raster."""
    from hsanomaly.io.source import RasterSource
    from hsanomaly.latent import GeneratorFunction, make_solver
    from hsanomaly.model import load_bundle
    from hsanomaly.runtime import open_session

    bundle = load_bundle(model)
    x = bundle.preprocessor.transform(RasterSource(src).sample(n, seed=1)[:n])
    generator = GeneratorFunction(open_session(bundle.generator_path, threads=threads),
                                  bundle.latent_dim)
    start = time.perf_counter()
    make_solver("thesis", restarts=16, steps=100).solve(generator, x)
    return (time.perf_counter() - start) / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(1600, 700, 20),
                        help="ROWSxCOLS[xBANDS] of the synthetic raster [1600x700x20]")
    parser.add_argument("--model", help="model bundle for BANDS bands; default: train one")
    parser.add_argument("--workdir", help="keep the raster and the model here and reuse them "
                        "(default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads of detect")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations [hsanomaly's default]")
    parser.add_argument("--seed-sample", type=int, default=200,
                        help="pixels for the thesis-search estimate (0: skip it)")
    args = parser.parse_args()
    rows, cols, bands = args.size

    with (contextlib.nullcontext(args.workdir) if args.workdir else
          tempfile.TemporaryDirectory()) as tmp:
        tmp = Path(tmp)
        src = tmp / "scene.tif"
        if not src.exists():
            write_synthetic(src, rows, cols, bands)
        model = args.model or (tmp / "model" if (tmp / "model" / "model.json").exists() else None)
        if model is None:
            from hsanomaly.training import train

            model = tmp / "model"
            options = {} if args.iterations is None else {"iterations": args.iterations}
            wall, cpu = time.perf_counter(), time.process_time()
            train([str(src)], model, bands=bands, progress=False, **options)
            print(f"trained a {bands}-band model in {time.perf_counter() - wall:.0f} s "
                  f"({time.process_time() - cpu:.0f} CPU-s, export and codebook included)")
        pixels = rows * cols
        rate = gemm_gflops(args.threads)
        flops = generator_flops(model)
        floor = pixels * flops / (rate * 1e9)
        print(f"{rows} x {cols} x {bands} = {pixels} pixels, {args.threads} threads, "
              f"load {os.getloadavg()[0]:.1f}; GEMM {rate:.0f} GFLOP/s, generator "
              f"{flops / 1e6:.2f} MFLOP/px: floor (one generator forward) {floor:.2f} s")
        results = {}
        for label, score in SCORES:
            seconds, memory, cpu = timed_detect(src, tmp / f"{label}.tif", score,
                                                None if score == "rx" else model, args.threads)
            results[label] = (seconds, memory)
            print(f"{label:8s} ({score}): {seconds:6.1f} s, {cpu:6.1f} CPU-s, "
                  f"{pixels / seconds:8.0f} px/s, {seconds / floor:5.1f} x floor, "
                  f"{seconds / results['rx'][0]:5.1f} x rx, peak RSS {memory:.0f} MiB")
        if args.seed_sample:
            per_pixel = seed_seconds_per_pixel(str(model), src, args.threads, args.seed_sample)
            print(f"recon with --solver thesis (16 x 100), extrapolated from {args.seed_sample} "
                  f"pixels: {per_pixel * pixels / 3600:.1f} h ({1 / per_pixel:.1f} px/s)")
        print(f"load {os.getloadavg()[0]:.1f}")
        print(f"default_s={results['default'][0]:.1f} critic_s={results['critic'][0]:.1f} "
              f"recon_s={results['recon'][0]:.1f} rx_s={results['rx'][0]:.1f} "
              f"floor_s={floor:.2f} peak_rss_mib={max(m for _, m in results.values()):.0f}")


if __name__ == "__main__":
    main()
