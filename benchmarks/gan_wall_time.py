"""Whole-raster GAN scoring on the seed's scene size: wall time and peak memory on 2 cores.

Writes a synthetic 1600 x 700 x 20 GeoTIFF (three endmembers mixed per pixel plus noise, a few
planted targets), trains a small model on it unless --model is given, then runs `detect`
with the critic score and the reconstruction score (fast solver), each in a fresh process
limited to --threads onnxruntime threads, and reports wall time and peak resident memory.
Global RX on the same raster, run the same way, is the reference the times are divided by;
the seed's 16 x 100 search is timed on a small sample and extrapolated to the whole raster.

    python benchmarks/gan_wall_time.py [--model DIR] [--threads 2] [--rows 1600 --cols 700]
"""

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.transform

from hsanomaly.io.source import iter_windows


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
        for r, c in rng.integers(0, [rows - 4, cols - 4], size=(14, 2)):
            dst.write(np.broadcast_to(foreign[:, None, None], (bands, 3, 3)).astype(np.float32),
                      window=rasterio.windows.Window(int(c), int(r), 3, 3))
    return path


def _run(queue, src, dst, score, model, threads):
    """One detection in this (fresh) process; reports (seconds, peak RSS in MiB)."""
    from hsanomaly.api import detect_anomalies

    options = {} if model is None else {"threads": threads}
    start = time.perf_counter()
    detect_anomalies(src, dst, score=score, model=model, options=options, progress=False)
    seconds = time.perf_counter() - start
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def timed_detect(src, dst, score, model, threads):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run, args=(queue, src, dst, score, model, threads))
    process.start()
    result = queue.get()
    process.join()
    return result


def seed_seconds_per_pixel(model, src, threads, n):
    """Seconds per pixel of the seed's 16 x 100 search on ``n`` pixels of the raster."""
    from hsanomaly.io.source import RasterSource
    from hsanomaly.latent import GeneratorFunction, make_solver
    from hsanomaly.model import load_bundle
    from hsanomaly.runtime import open_session

    bundle = load_bundle(model)
    x = bundle.preprocessor.transform(RasterSource(src).sample(n, seed=1)[:n])
    generator = GeneratorFunction(open_session(bundle.generator_path, threads=threads), bundle.latent_dim)
    start = time.perf_counter()
    make_solver("seed", restarts=16, steps=100).solve(generator, x)
    return (time.perf_counter() - start) / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model bundle for 20 bands; default: train one on the raster")
    parser.add_argument("--rows", type=int, default=1600)
    parser.add_argument("--cols", type=int, default=700)
    parser.add_argument("--bands", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations")
    parser.add_argument("--seed-sample", type=int, default=200, help="pixels for the seed estimate")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = str(write_synthetic(tmp / "scene.tif", args.rows, args.cols, args.bands))
        model = args.model
        if model is None:
            from hsanomaly.training import train

            model = tmp / "model"
            start = time.perf_counter()
            train([src], model, bands=args.bands, iterations=args.iterations, progress=False)
            print(f"trained a {args.bands}-band model in {time.perf_counter() - start:.0f} s")
        pixels = args.rows * args.cols
        print(f"{args.rows} x {args.cols} x {args.bands} = {pixels} pixels, {args.threads} threads, "
              f"load {os.getloadavg()[0]:.1f}")
        rx_seconds, rx_memory = timed_detect(src, str(tmp / "rx.tif"), "rx", None, args.threads)
        print(f"rx (reference): {rx_seconds:.1f} s, peak RSS {rx_memory:.0f} MiB")
        for score in ("critic", "recon"):
            seconds, memory = timed_detect(src, str(tmp / f"{score}.tif"), score, str(model), args.threads)
            print(f"{score}: {seconds:.1f} s ({pixels / seconds:.0f} px/s, {seconds / rx_seconds:.1f} x rx), "
                  f"peak RSS {memory:.0f} MiB")
        per_pixel = seed_seconds_per_pixel(str(model), src, args.threads, args.seed_sample)
        print(f"recon with --solver seed (16 x 100), extrapolated from {args.seed_sample} pixels: "
              f"{per_pixel * pixels / 3600:.1f} h ({1 / per_pixel:.1f} px/s)")


if __name__ == "__main__":
    main()
