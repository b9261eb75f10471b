"""What the GeoTIFF block check (``io.tiff.check_blocks``) costs, against reading the raster
and against a whole ``detect --score rx``, in one run.

Every raster hsanomaly reads is first checked for the damage GDAL reads without a word: each
deflate block inflated to its checksum, in threads. Its floor is one inflate of the file,
which GDAL's own read also does; so the ratios below are the measure: the check against a
read of every pixel (its floor's neighbour), one thread against the default, and the check
against the run it guards.

    python benchmarks/block_check.py SCENE.tif [--repeats 3]

SCENE: a deflate GeoTIFF, e.g. ``benchmarks/flight_line_scene.py`` at 1000 x 1000 (deflate is
added here if it is not). Last line: check_vs_read=<...> threads_speedup=<...>
check_vs_detect=<...>, each the ratio of minimum wall times.
"""

import argparse
import tempfile
import time
from pathlib import Path

import rasterio
import rasterio.shutil

import hsanomaly
from hsanomaly.io import tiff

p = argparse.ArgumentParser()
p.add_argument("scene")
p.add_argument("--repeats", type=int, default=3)
a = p.parse_args()

work = Path(tempfile.mkdtemp(prefix="block-check-"))
scene = a.scene
with rasterio.open(scene) as ds:
    compressed = ds.compression is not None and ds.compression.name.lower() == "deflate"
if not compressed:
    scene = str(work / "scene.tif")
    rasterio.shutil.copy(a.scene, scene, driver="GTiff", compress="deflate", tiled=True,
                         blockxsize=256, blockysize=256)


def check(threads):
    tiff._CHECKED.clear()
    saved = tiff.MAX_THREADS
    tiff.MAX_THREADS = threads
    try:
        tiff.check_blocks(scene, nodata=True)
    finally:
        tiff.MAX_THREADS = saved


def read():
    with rasterio.open(scene) as ds:
        ds.read()


def detect():
    tiff._CHECKED.clear()
    hsanomaly.detect(scene, work / "heat.tif", score="rx", overwrite=True)


cases = {"check, 1 thread": lambda: check(1), "check": lambda: check(tiff.MAX_THREADS),
         "read every pixel": read, "detect --score rx": detect}
best = dict.fromkeys(cases, float("inf"))
for _ in range(a.repeats):                # alternating, so a busy spell hits all alike
    for name, run in cases.items():
        start = time.perf_counter()
        run()
        best[name] = min(best[name], time.perf_counter() - start)
size = Path(scene).stat().st_size
print(f"{scene}: {size / 2**20:.0f} MiB, threads {tiff._threads()}")
for name, seconds in best.items():
    print(f"  {name:20s} {seconds:7.2f} s")
print(f"check_vs_read={best['check'] / best['read every pixel']:.3f} "
      f"threads_speedup={best['check, 1 thread'] / best['check']:.2f} "
      f"check_vs_detect={best['check'] / best['detect --score rx']:.3f}")
