"""How distributed detection scales: 1 vs 2 local Dask workers against the single-process engine.

Writes a synthetic raster (default 4000 x 4000 x 20 float32, 1.3 GB), then times, in this
process, the global RX statistics pass and a full `detect` run (fit, tiles, assembly)
locally and on local clusters of 1 and 2 single-threaded worker processes. The local
reference scores one tile at a time on one BLAS thread, as a worker does, so the ratios compare
like with like. Times
are printed as ratios to the local run, plus the scheduler's overhead per task measured
with trivial tasks. Cluster start-up and the workers' first imports are excluded; the
load average is printed because other processes on the machine skew every figure.

    python benchmarks/dask_scaling.py [--rows 4000 --cols 4000 --bands 20 --tile 256]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from threadpoolctl import threadpool_limits

from hsanomaly.engine import detect
from hsanomaly.engine.tiles import LocalExecutor
from hsanomaly.io.source import RasterSource, iter_windows
from hsanomaly.scorers import GlobalRX
from hsanomaly.scorers.base import scene_moments


def write_synthetic(path, rows, cols, bands, tile):
    """Three smooth endmembers mixed per pixel plus noise, written tile by tile (bounded memory)."""
    rng = np.random.default_rng(0)
    ends = np.stack([np.sin(3 * np.linspace(0, 1, bands) + k) + 2 for k in range(3)])
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "height": rows, "width": cols,
               "tiled": True, "blockxsize": tile, "blockysize": tile, "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for window in iter_windows(rows, cols, tile):
            h, w = int(window.height), int(window.width)
            mix = rng.dirichlet(np.ones(3), size=h * w) @ ends + rng.normal(0, 0.01, (h * w, bands))
            dst.write(mix.T.reshape(bands, h, w).astype(np.float32), window=window)
    return path


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _noop(x):
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--cols", type=int, default=4000)
    parser.add_argument("--bands", type=int, default=20)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--trivial-tasks", type=int, default=2000)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from hsanomaly.distributed import DaskExecutor, DistributedSource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = write_synthetic(tmp / "big.tif", args.rows, args.cols, args.bands, args.tile)
        tiles = len(list(iter_windows(args.rows, args.cols, args.tile)))
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"raster {args.rows} x {args.cols} x {args.bands}, {tiles} tiles of {args.tile}")

        source = RasterSource(src)
        with threadpool_limits(1):
            reference = {"statistics pass": timed(lambda: scene_moments(source, tile=args.tile)),
                         # one tile at a time, as a worker of one thread scores them
                         "detect (rx)": timed(lambda: detect(src, tmp / "local.tif", GlobalRX(),
                                                             tile=args.tile, progress=False,
                                                             executor=LocalExecutor(threads=1)))}
        loop = timed(lambda: [_noop(i) for i in range(args.trivial_tasks)]) / args.trivial_tasks
        print(f"reference, this process: statistics pass {reference['statistics pass']:.2f} s, "
              f"detect {reference['detect (rx)']:.2f} s")

        seconds = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0") as cluster, \
                    Client(cluster, set_as_default=False) as client:
                client.run(__import__, "hsanomaly.distributed")  # workers' imports are start-up
                cluster_source = DistributedSource(source, client)
                run = {"statistics pass": timed(lambda: scene_moments(cluster_source, tile=args.tile)),
                       "detect (rx)": timed(lambda: detect(
                           src, tmp / f"dask{workers}.tif", GlobalRX(), tile=args.tile,
                           executor=DaskExecutor(client)))}
                trivial = timed(lambda: client.gather(client.map(_noop, range(args.trivial_tasks))))
                seconds[workers] = run
                print(f"{workers} worker(s): " + ", ".join(
                    f"{name} {t:.2f} s ({t / reference[name]:.2f} x reference)" for name, t in run.items())
                    + f"; trivial task {1e3 * trivial / args.trivial_tasks:.2f} ms "
                      f"({trivial / args.trivial_tasks / loop:.0f} x a local call)")
        same = (tmp / "dask2.tif").read_bytes() == (tmp / "local.tif").read_bytes()
        print(f"2-worker output byte-identical to the local one: {same}")
        for name in reference:
            print(f"speed-up 1 -> 2 workers, {name}: {seconds[1][name] / seconds[2][name]:.2f} x")
        overhead = (seconds[1]["detect (rx)"] - reference["detect (rx)"]) / tiles
        print(f"1-worker detect minus local detect, per tile: {1e3 * overhead:.1f} ms")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
