"""Peak memory of `hsanomaly detect` on a ~2 GiB raster: it must stay bounded by the tile size.

Generates a tiled float32 GeoTIFF of about 2 GiB (100 bands x 2320 x 2320 by default) in a
scratch directory, then runs global RX and local RX detection in child processes and reports
each one's peak resident memory (ru_maxrss) next to the raster size.

    python benchmarks/streaming_memory.py [--gib 2.0] [--bands 100] [--dir /tmp/hsanomaly-bench]
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

CHILD = """
import resource, sys
import hsanomaly
hsanomaly.detect(sys.argv[1], sys.argv[2], score=sys.argv[3], progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_raster(path, bands, side, block=512):
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "width": side, "height": side,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "crs": "EPSG:32633",
               "transform": from_origin(500000, 7000000, 1, 1), "BIGTIFF": "YES"}
    rng = np.random.default_rng(0)
    base = rng.random((bands, 1, 1)).astype(np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, block):
            for col in range(0, side, block):
                w = Window(col, row, min(block, side - col), min(block, side - row))
                noise = rng.normal(0, 0.05, (bands, w.height, w.width)).astype(np.float32)
                dst.write(base + noise, window=w)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--bands", type=int, default=100)
    parser.add_argument("--dir", default="/tmp/hsanomaly-bench")
    args = parser.parse_args()
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    side = int((args.gib * 2**30 / 4 / args.bands) ** 0.5)
    src = workdir / f"big_{args.bands}x{side}x{side}.tif"
    if not src.exists():
        t = time.perf_counter()
        make_raster(src, args.bands, side)
        print(f"generated {src} in {time.perf_counter() - t:.0f} s")
    size = args.bands * side * side * 4
    print(f"raster: {args.bands} bands x {side} x {side} = {size / 2**30:.2f} GiB of float32")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for score in ("rx", "lrx"):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(workdir / f"{score}.tif"), score],
                             check=True, capture_output=True, text=True)
        peak_mib = int(out.stdout.split()[-1]) / 1024
        print(f"{score}: {time.perf_counter() - t:.0f} s, peak RSS {peak_mib:.0f} MiB "
              f"= {peak_mib * 2**20 / size:.3f} x raster size")
    print(f"(this driver process: {baseline / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
