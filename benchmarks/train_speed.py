"""How long training takes, and what the seed's settings would cost instead.

    python benchmarks/train_speed.py [--scene examples/abu-airport-2.tif] [--threads 2]
                                     [--plots DIR]

1. End to end: ``hsanomaly.training.train`` with its defaults on a 100x100 x 205-band scene
   (binned to 32 bands): wall time, CPU time, generator iterations per second.
2. Settings compared at equal CPU time: ours, the upstream WGAN-GP code's (Adam 1e-4,
   betas (0, 0.9)) and the thesis's (Adam 5e-6, TensorFlow betas), each given the CPU time our
   whole run used. Also the projected time of each schedule run to its own end (the seed ran
   20,000 generator iterations).

Quality of a generator = how well its samples match held-out pixels: the worst band's
mean error in data standard deviations, the range of per-band std ratios, and the sliced
Wasserstein distance (64 random directions) to the held-out windows, next to the same distance
between training and held-out windows (the floor a perfect generator would reach).
CPU time is reported besides wall time because a shared machine inflates the latter.
``--plots DIR`` keeps the run's training.png and draws spectra.png: per-band mean and std of
the scene against those of 8192 generated spectra.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hsanomaly.training import train
from hsanomaly.training.data import load_training_data
from hsanomaly.training.networks import Critic, Generator
from hsanomaly.training.settings import Settings
from hsanomaly.training.wgan import WGANGP

ROOT = Path(__file__).resolve().parents[1]
COMPARED = {
    "hsanomaly default": dict(),
    "upstream WGAN-GP": dict(lr=1e-4, beta1=0.0, beta2=0.9, iterations=20000),
    "thesis (seed)": dict(lr=5e-6, beta1=0.9, beta2=0.999, iterations=20000),
}


def quality(generator, train_windows, val_windows, n=4096, seed=123):
    with torch.no_grad():
        z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
        fake = generator(z).flatten(1).numpy()
    train_x = train_windows.reshape(len(train_windows), -1)
    val_x = val_windows.reshape(len(val_windows), -1)
    data = np.concatenate([train_x, val_x])
    mean, std = data.mean(0), data.std(0)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(data.shape[1], 64))
    directions /= np.linalg.norm(directions, axis=0)

    def sliced_wasserstein(a, b):
        m = min(len(a), len(b))
        a = np.sort(a[rng.permutation(len(a))[:m]] @ directions, axis=0)
        b = np.sort(b[rng.permutation(len(b))[:m]] @ directions, axis=0)
        return float(np.abs(a - b).mean())

    ratio = fake.std(0) / std
    return {"mean_error": float((np.abs(fake.mean(0) - mean) / std).max()),
            "std_ratio": (float(ratio.min()), float(ratio.max())),
            "swd": sliced_wasserstein(fake, val_x), "swd_floor": sliced_wasserstein(train_x, val_x)}


def describe(q):
    return (f"mean error <= {q['mean_error']:.2f} sd, std ratio {q['std_ratio'][0]:.2f}-"
            f"{q['std_ratio'][1]:.2f}, SWD {q['swd']:.4f} (floor {q['swd_floor']:.4f})")


def end_to_end(scene, plots=None):
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        bundle = train([scene], Path(tmp) / "model", progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if plots:
            Path(plots).mkdir(parents=True, exist_ok=True)
            shutil.copy(bundle.path / "training.png", Path(plots) / "training.png")
            plot_spectra(bundle, scene, Path(plots) / "spectra.png")
    return wall, cpu, bundle.meta["training"]["iterations"]


def plot_spectra(bundle, scene, path):
    """Per-band mean +- std of the preprocessed scene and of generated spectra."""
    import onnxruntime as ort
    from matplotlib.figure import Figure

    from hsanomaly.io import read_scene

    data = bundle.preprocessor.transform(read_scene(scene).pixels)
    session = ort.InferenceSession(str(bundle.generator_path), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).normal(size=(8192, bundle.latent_dim)).astype(np.float32)
    fake = session.run(["x"], {"z": z})[0][:, :, 0, 0]
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    bands = np.arange(data.shape[1])
    for values, label in ((data, "scene pixels"), (fake, "generated")):
        mean, std = values.mean(0), values.std(0)
        ax.plot(bands, mean, label=f"{label}: mean")
        ax.fill_between(bands, mean - std, mean + std, alpha=0.25, label=f"{label}: +- 1 std")
    ax.set_xlabel("band (after binning)")
    ax.set_ylabel("preprocessed value")
    ax.set_title(f"{Path(scene).name}: {bundle.meta['training']['iterations']} iterations")
    ax.legend()
    fig.savefig(path, dpi=100)


def run_for(data, cpu_budget, **overrides):
    """Train with ``overrides`` until ``cpu_budget`` CPU seconds are spent; return stats."""
    settings = Settings(**overrides)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        trainer = WGANGP(Generator(data.bands), Critic(data.bands), settings)
    windows = torch.from_numpy(data.train)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    while time.process_time() - start_cpu < cpu_budget and trainer.iteration < settings.iterations:
        trainer.step(windows)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    return {"iterations": trainer.iteration, "cpu": cpu, "wall": wall,
            "it_per_cpu_s": trainer.iteration / cpu,
            "full_run_cpu": settings.iterations * cpu / trainer.iteration,
            "quality": quality(trainer.generator, data.train, data.val)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default=str(ROOT / "examples" / "abu-airport-2.tif"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads [torch's default]")
    parser.add_argument("--plots", help="directory for training.png and spectra.png")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"scene {args.scene}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    wall, cpu, iterations = end_to_end(args.scene, args.plots)
    print(f"\n1. hsanomaly train (defaults, {iterations} iterations): wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s, {iterations / wall:.1f} it/s wall, {iterations / cpu:.1f} it/s CPU")

    data = load_training_data([args.scene])
    print(f"\n2. settings at equal CPU time ({cpu:.0f} s each), {len(data.train)} windows of "
          f"{data.bands} bands:")
    results = {name: run_for(data, cpu, **overrides) for name, overrides in COMPARED.items()}
    ours = results["hsanomaly default"]
    for name, r in results.items():
        print(f"  {name:18s} {r['iterations']:5d} it, {r['it_per_cpu_s']:.2f} it/CPU-s, "
              f"{describe(r['quality'])}; full schedule {r['full_run_cpu'] / 3600:.2f} CPU-h "
              f"({r['full_run_cpu'] / ours['full_run_cpu']:.0f}x ours)")
        if r is not ours:
            print(f"  {'':18s} SWD {r['quality']['swd'] / ours['quality']['swd']:.1f}x ours at "
                  f"equal time")


if __name__ == "__main__":
    main()
