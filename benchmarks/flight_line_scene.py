"""A synthetic hyperspectral flight line: the rasters of docs/speed.md's memory table.

usage: python benchmarks/flight_line_scene.py OUT.tif TRUTH.tif ROWS COLS [--bands 150] [--dtype int16|float32] [--seed 0]

Background: 4 endmember spectra mixed with spatially smooth abundances (softmax of zoomed
low-res noise) times a smooth brightness field, plus white noise. Targets: 1x1, 2x2 and 3x3
squares of a 5th spectrum mixed at 15-60 %, about one per 20,000 pixels, a share of them
placed across 256-pixel tile boundaries. Nodata: a slanted swath edge on the left (about 4 %)
set to -9999 (int16, scale 1e-4) or NaN (float32, nodata NaN).
"""
import argparse

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("truth")
p.add_argument("rows", type=int)
p.add_argument("cols", type=int)
p.add_argument("--bands", type=int, default=150)
p.add_argument("--dtype", default="int16")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

rng = np.random.default_rng(a.seed)
H, W, B = a.rows, a.cols, a.bands
wl = np.linspace(400, 2500, B)
x = (wl - 400) / 2100.0


def bump(c, w):
    return np.exp(-0.5 * ((wl - c) / w) ** 2)


E = np.stack([
    0.05 + 0.45 / (1 + np.exp(-(wl - 715) / 15)) - 0.2 * bump(1450, 60) - 0.25 * bump(1940, 80),  # vegetation
    0.10 + 0.30 * x - 0.05 * bump(2200, 40),                                                       # soil
    0.30 - 0.05 * x + 0.05 * bump(900, 200),                                                       # concrete
    0.08 * np.exp(-(wl - 400) / 300) + 0.01,                                                       # water
]).astype(np.float64)
T = 0.15 + 0.25 * bump(600, 30) + 0.2 * bump(1100, 60) + 0.15 * bump(2100, 50) - 0.1 * x   # paint

def smooth_field(cells, scale=1.0):
    lo = rng.normal(size=(max(2, H // cells + 2), max(2, W // cells + 2))) * scale
    f = ndimage.zoom(lo, (H / (lo.shape[0] - 1), W / (lo.shape[1] - 1)), order=3)
    return f[:H, :W].astype(np.float32)

logits = np.stack([smooth_field(64, 2.0) for _ in range(4)])
logits -= logits.max(axis=0)
A = np.exp(logits)
A /= A.sum(axis=0)
bright = (1 + 0.1 * smooth_field(32)).astype(np.float32)

# targets
truth = np.zeros((H, W), np.uint8)
tmix = np.zeros((H, W), np.float32)
n_t = max(10, H * W // 20000)
for i in range(n_t):
    s = (1, 2, 3)[i % 3]
    if i % 4 == 0:     # across a tile boundary
        r = (rng.integers(1, max(2, H // 256)) * 256 - s // 2 - (s > 1)) if H > 300 else rng.integers(5, H - 5)
        c = (rng.integers(1, max(2, W // 256)) * 256 - s // 2 - (s > 1)) if W > 300 else rng.integers(5, W - 5)
    else:
        r, c = rng.integers(5, H - 5), rng.integers(W // 10, W - 5)
    r, c = int(min(max(r, 2), H - s - 2)), int(min(max(c, W // 10), W - s - 2))
    truth[r:r + s, c:c + s] = 1
    tmix[r:r + s, c:c + s] = rng.uniform(0.15, 0.6)

# nodata: slanted swath edge on the left
rr, cc = np.mgrid[0:H, 0:W]
nodata_mask = cc < (0.06 * W * (1 - rr / H))
truth[nodata_mask] = 0

profile = dict(driver="GTiff", width=W, height=H, count=B, dtype=a.dtype, tiled=True,
               blockxsize=256, blockysize=256, crs="EPSG:32633",
               transform=from_origin(500000, 7000000, 1.0, 1.0), BIGTIFF="IF_SAFER")
if a.dtype == "int16":
    profile["nodata"] = -9999
else:
    profile["nodata"] = float("nan")

step = 128
with rasterio.open(a.out, "w", **profile) as dst:
    if a.dtype == "int16":
        dst.scales = [1e-4] * B
        dst.offsets = [0.0] * B
    for i in range(B):
        dst.update_tags(i + 1, wavelength=f"{wl[i]:.2f}", wavelength_units="nm")
    for r0 in range(0, H, step):
        r1 = min(H, r0 + step)
        a_blk = A[:, r0:r1].reshape(4, -1).T.astype(np.float64)           # (n, 4)
        refl = (a_blk @ E) * bright[r0:r1].reshape(-1, 1)
        t = tmix[r0:r1].reshape(-1, 1)
        refl = (1 - t) * refl + t * T
        refl += rng.normal(0, 0.004, refl.shape)
        nd = nodata_mask[r0:r1].ravel()
        cube = refl.T.reshape(B, r1 - r0, W)
        if a.dtype == "int16":
            out = np.clip(np.round(cube * 10000), -9000, 32000).astype(np.int16)
            out[:, nd.reshape(r1 - r0, W)] = -9999
        else:
            out = cube.astype(np.float32)
            out[:, nd.reshape(r1 - r0, W)] = np.nan
        dst.write(out, window=rasterio.windows.Window(0, r0, W, r1 - r0))

tprof = dict(driver="GTiff", width=W, height=H, count=1, dtype="uint8", tiled=True,
             blockxsize=256, blockysize=256, crs="EPSG:32633", compress="deflate",
             transform=from_origin(500000, 7000000, 1.0, 1.0))
with rasterio.open(a.truth, "w", **tprof) as dst:
    dst.write(truth, 1)
print(f"{a.out}: {H}x{W}x{B} {a.dtype}, {n_t} targets, {int(truth.sum())} target px, "
      f"{int(nodata_mask.sum())} nodata px")
