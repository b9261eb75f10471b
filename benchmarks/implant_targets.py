"""Scenes with implanted targets of a chosen size, to see how each score holds as targets grow.

    .venv/bin/python benchmarks/implant_targets.py ../shared/data /tmp/implanted [--sizes 1,3,7,13]
    .venv/bin/hsanomaly benchmark /tmp/implanted/size13 --scores rx,lrx,resrx,dualcontext \\
        --seeds 0 --jobs 2 --models /tmp/implanted/models --out /tmp/implanted/out13

Why: the shared scenes hold small targets, and the scores with local rings were chosen on them;
issue 15's unseen scenes showed a ring failing where targets are large or clustered. A scene
from ``DATA_DIR`` keeps its background: its own targets (dilated by ``--margin`` pixels) become
invalid (NaN, so they neither train a model nor count in the AUC), and ``--targets`` squares of
``size`` x ``size`` pixels are implanted where the square and ``size`` pixels around it are
valid background, ``size`` pixels apart at least. Every implanted pixel is shifted towards a
real rare material of the same scene (the valid pixel at the ``--rare`` quantile of global RX)
by ``a`` (material - scene mean), with ``a`` drawn uniformly from [``--abundance``,
``--abundance-max``] (default 1; 0.1 to 0.2: faint, sub-pixel targets): the pixel
keeps its own texture and sensor noise (a linear mix ``(1 - a) x + a m`` would shrink the noise
and make a target *quieter* than any real pixel, which RX then ranks last), and the targets
vary like real ones. The truth is the implanted squares. Each size goes to its own
folder (``OUT/size<k>/<dataset>/<scene>.mat``, with the ``data`` and ``map`` variables of the
shared scenes), which ``hsanomaly benchmark`` reads as it is; every model is trained on the
implanted scene, as ``detect`` would. Deterministic for a given ``--seed``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def implant(cube, valid, truth, size, targets, rare, abundance, margin, rng, most=1.0):
    """(cube with NaN for the scene's own targets and the implants mixed in, valid, implant
    truth, (row, col) of each square's corner, the material's shift from the scene mean)."""
    from scipy.ndimage import binary_dilation

    cube = cube.copy()
    own = binary_dilation(truth.astype(bool), iterations=margin) if truth is not None else False
    valid = valid & ~own
    cube[:, ~valid] = np.nan
    pixels = cube[:, valid].T.astype(np.float64)
    centred = pixels - pixels.mean(axis=0)
    cov = np.cov(centred, rowvar=False) + 1e-9 * np.eye(pixels.shape[1])
    rx = np.einsum("ij,ij->i", centred @ np.linalg.pinv(cov), centred)
    material = pixels[np.argsort(rx)[int(rare * (len(rx) - 1))]]

    free = valid.copy()
    placed = np.zeros_like(valid)
    corners = []
    rows, cols = valid.shape
    for r, c in rng.permutation([(r, c) for r in range(size, rows - 2 * size + 1)
                                 for c in range(size, cols - 2 * size + 1)]):
        if len(corners) == targets:
            break
        if free[r - size:r + 2 * size, c - size:c + 2 * size].all():
            placed[r:r + size, c:c + size] = True
            free[r:r + size, c:c + size] = False       # the next keeps ``size`` pixels away
            corners.append((int(r), int(c)))
    share = rng.uniform(abundance, most, int(placed.sum()))
    shift = material - pixels.mean(axis=0)
    cube[:, placed] = (cube[:, placed] + share * shift[:, None]).astype(cube.dtype)
    return cube, valid, placed.astype(np.uint8), corners, shift


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--sizes", default="1,3,7,13")
    parser.add_argument("--targets", type=int, default=3, help="squares per scene")
    parser.add_argument("--rare", type=float, default=0.995,
                        help="global-RX quantile of the implanted material's pixel")
    parser.add_argument("--abundance", type=float, default=0.5,
                        help="lowest share of the material in an implanted pixel")
    parser.add_argument("--abundance-max", type=float, default=1.0,
                        help="highest share of the material in an implanted pixel")
    parser.add_argument("--margin", type=int, default=2,
                        help="pixels around the scene's own targets left out too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import scipy.io

    from hsanomaly.experiments.scenes import find_scenes

    for size in (int(s) for s in args.sizes.split(",")):
        for scene in find_scenes(args.data_dir):
            data = scene.load()
            rng = np.random.default_rng([args.seed, size, sum(map(ord, scene.name))])
            cube, valid, truth, corners, _ = implant(data.cube, data.valid, data.truth, size,
                                                  args.targets, args.rare, args.abundance,
                                                  args.margin, rng, args.abundance_max)
            if not corners:
                print(f"{scene.name}: no room for a {size}x{size} target", file=sys.stderr)
                continue
            out = Path(args.out_dir) / f"size{size}" / f"{scene.name}.mat"
            out.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(out, {"data": np.moveaxis(cube, 0, -1).astype(np.float32),
                                   "map": truth})
            print(f"{out}: {len(corners)} targets of {size}x{size} "
                  f"({int(truth.sum())} pixels, {truth.sum() / valid.sum():.2%} of the valid ones)")


if __name__ == "__main__":
    main()
