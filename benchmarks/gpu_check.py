"""One prepared run on a machine with an NVIDIA GPU: does the CUDA path work, agree and pay?

    python benchmarks/gpu_check.py [--model DIR] [--scene examples/abu-airport-2.tif]
                                   [--batches 1024,4096,16384,65536] [--out gpu.json]

1. Providers: onnxruntime's CUDA execution provider is available and a session of the model's
   generator actually runs on it (``hsanomaly.runtime.open_session(device="cuda")``).
2. Parity: every model score (``hsanomaly.scorers.MODEL_SCORES``) of ``hsanomaly detect`` on
   the example scene with ``--device cpu`` and ``--device cuda`` (fresh processes): the largest
   absolute difference per score, and whether it is within 1e-4 (the latent search makes
   discrete choices, so a pixel whose nearest codebook entries tie may differ more; the count
   of such pixels is printed).
3. Throughput: pixels per second of the critic and generator networks on the GPU at several
   batch sizes with IO binding (inputs and outputs resident on the device, so PCIe copies are
   not timed), against the CPU provider; then the critic, recon and default scores end to end
   through the library (``score_block`` on the whole example) with ``hsanomaly.latent.generator
   .BATCH`` set to each batch size.
4. Training: WGAN-GP iterations per second with torch on CUDA against the CPU (1 thread, the
   training default), default networks and settings on the example.
5. A larger raster: the example tiled ``--mosaic`` times in each direction, scored by
   ``hsanomaly detect`` with ``--device cpu`` and ``--device cuda`` (fresh processes, all the
   machine's cores): wall seconds, pixels per second and the largest difference, for the
   critic, recon and default scores.
6. The thesis's own latent search (``recon --solver thesis``: restarts x steps of gradient
   descent, thousands of generator calls a pixel) on a ``--thesis-crop`` square of the scene,
   CPU against GPU: wall seconds and the largest difference.

``--steps 2,6`` runs only those steps, and step 1, which the verdict needs (the model is
trained first whenever none is given). Step 4 is skipped, and said, where torch has no CUDA.
The script imports the checkout it sits in, and its ``detect`` processes too; the report
names that hsanomaly's version and folder.

Without a GPU (no CUDA provider in onnxruntime, or no device behind it) it says so in one line
and exits with status 0: nothing can be measured. ``--simulate-on-cpu`` runs every step with
the CPU provider standing in for CUDA, to check the script itself on a machine without one.
The model: ``--model``, or one trained here on the scene with the defaults (on the GPU when
torch has one). Figures go to the terminal and, with ``--out``, to a JSON file.

Last line: gpu_check=<ok|failed|skipped> parity_max_abs=<x> critic_px_s=<best> recon_px_s=<best>
default_px_s=<best> train_it_s_cuda=<x> train_it_s_cpu=<x> mosaic_default_speedup=<cpu s / cuda s>
thesis_speedup=<cpu s / cuda s>
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))        # this checkout, not an hsanomaly installed beside it

import hsanomaly  # noqa: E402
from hsanomaly.defaults import SCORE as DEFAULT_SCORE  # noqa: E402
from hsanomaly.scorers import MODEL_SCORES  # noqa: E402

END_TO_END = ("critic", "recon", DEFAULT_SCORE)
TOLERANCE = 1e-4


def measured(device):
    """The key of the GPU run's seconds (simulated: the second CPU run's, beside the first)."""
    return "seconds_simulated" if device == "cpu" else f"seconds_{device}"


def gpu_available(simulate):
    """(device name for hsanomaly, why not) where name is "cuda", or "cpu" when simulating."""
    import onnxruntime as ort

    if simulate:
        return "cpu", None
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return None, (f"onnxruntime {ort.__version__} has no CUDA execution provider "
                      f"(providers: {', '.join(available)}; install onnxruntime-gpu, the [gpu] "
                      "extra)")
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        if done.returncode != 0 or "GPU" not in done.stdout:
            return None, f"nvidia-smi finds no GPU ({(done.stderr or done.stdout).strip()[:200]})"
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"nvidia-smi cannot run ({err})"
    return "cuda", None


def check_provider(model, device):
    from hsanomaly.model import load_bundle
    from hsanomaly.runtime import open_session

    bundle = load_bundle(model)
    session = open_session(bundle.generator_path, device=device)
    z = np.zeros((4, bundle.latent_dim), np.float32)
    x = session.run(["x"], {"z": z})[0]
    return {"providers": session.get_providers(), "output_shape": list(x.shape)}


def train_model(scene, out, device):
    from hsanomaly.training import train

    start = time.perf_counter()
    train([str(scene)], out, device=device, progress=False)
    return time.perf_counter() - start


def detect(scene, dst, score, model, device, more=()):
    command = [sys.executable, "-c", "from hsanomaly.cli import main; main()", "detect",
               *(str(Path(p).resolve()) for p in (scene, dst)), "--score", score, "--model",
               str(Path(model).resolve()), "--device", device, "--quiet", *more]
    start = time.perf_counter()
    # the children score with this checkout too (the parent's hsanomaly)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    # in the checkout's root: `python -c` puts the folder it runs in first, before PYTHONPATH
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"detect --score {score} --device {device}: {done.stderr.strip()}")
    return time.perf_counter() - start


def cpu_and_gpu(scene, stem, score, model, device, tmp, more=()):
    """``detect`` of ``scene`` on the CPU and on ``device`` into ``tmp/<stem>-cpu.tif`` and
    ``-gpu.tif`` (two files also when simulating): (seconds {"cpu", "gpu"}, the two heatmaps)."""
    import rasterio

    seconds = {run: detect(scene, tmp / f"{stem}-{run}.tif", score, model, d, more)
               for run, d in (("cpu", "cpu"), ("gpu", device))}
    with rasterio.open(tmp / f"{stem}-cpu.tif") as a, rasterio.open(tmp / f"{stem}-gpu.tif") as b:
        return seconds, a.read(1), b.read(1)


def parity(scene, model, device, tmp):
    results = {}
    for score in MODEL_SCORES:
        try:
            seconds, x, y = cpu_and_gpu(scene, score, score, model, device, tmp)
        except RuntimeError as err:           # one score's failure leaves the others measured
            results[score] = {"error": str(err)}
            print(f"  {score:8s} FAILED: {err}", flush=True)
            continue
        both = np.isfinite(x) & np.isfinite(y)
        diff = np.abs(x[both] - y[both])
        results[score] = {"max_abs": float(diff.max()) if diff.size else 0.0,
                          "pixels_over": int(np.sum(diff > TOLERANCE)),
                          "nan_mismatch": int(np.sum(np.isfinite(x) != np.isfinite(y))),
                          "seconds_cpu": seconds["cpu"], measured(device): seconds["gpu"]}
        r = results[score]
        print(f"  {score:8s} max |cpu - {device}| {r['max_abs']:.2e}, {r['pixels_over']} pixels "
              f"over {TOLERANCE:g}, {r['nan_mismatch']} NaN mismatches; detect {seconds['cpu']:.1f} s "
              f"cpu, {seconds['gpu']:.1f} s {device}", flush=True)
    return results


def _bound_rate(session, name, array, device, repeats):
    """Pixels per second of ``session`` with input and outputs bound on ``device``."""
    import onnxruntime as ort

    where = "cuda" if device == "cuda" else "cpu"
    value = ort.OrtValue.ortvalue_from_numpy(array, where, 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name, where, 0)
    session.run_with_iobinding(binding)        # warm-up: kernels, memory arenas
    binding.synchronize_outputs()
    start = time.perf_counter()
    for _ in range(repeats):
        session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return repeats * len(array) / (time.perf_counter() - start)


def network_rates(model, device, batches, seconds=2.0):
    from hsanomaly.model import load_bundle
    from hsanomaly.runtime import open_session

    bundle = load_bundle(model)
    rng = np.random.default_rng(0)
    rates = {}
    for net, path, name, shape in (
            ("generator", bundle.generator_path, "z", (bundle.latent_dim,)),
            ("critic", bundle.critic_path, "x", (bundle.bands, bundle.window, bundle.window))):
        for dev in dict.fromkeys(("cpu", device)):
            session = open_session(path, device=dev)
            for batch in batches:
                array = rng.standard_normal((batch, *shape)).astype(np.float32)
                probe = _bound_rate(session, name, array, dev, 1)
                repeats = max(2, int(seconds * probe / batch))
                rate = _bound_rate(session, name, array, dev, repeats)
                rates[f"{net}/{dev}/{batch}"] = rate
                print(f"  {net:9s} {dev:4s} batch {batch:6d}: {rate:12.0f} px/s (IO binding)",
                      flush=True)
    return rates


def score_rates(scene, model, device, batches):
    """Pixels per second of whole-scene scoring through the library, per BATCH."""
    import hsanomaly.latent.generator as generator_module
    from hsanomaly.io.scene import read_scene
    from hsanomaly.io.source import ArraySource
    from hsanomaly.latent import fast
    from hsanomaly.scorers import make_scorer

    data = read_scene(str(scene))
    source = ArraySource(data.cube, valid=data.valid, profile=data.profile, name="scene")
    pixels = int(data.valid.sum())
    rates = {}
    original = generator_module.BATCH
    try:
        for batch in batches:
            generator_module.BATCH = batch
            for score in END_TO_END:
                fast._shared.clear()
                scorer = make_scorer(score, model=str(model), device=device)
                scorer.check(source)
                fit = getattr(scorer, "fit", None)
                if fit is not None:
                    fit(source)
                halo = scorer.halo
                block = np.pad(data.cube.astype(np.float32), ((0, 0), (halo, halo), (halo, halo)),
                               constant_values=np.nan)
                valid = np.pad(data.valid, halo)
                scorer.score_block(block, valid)               # warm: sessions, codebook
                start = time.perf_counter()
                scorer.score_block(block, valid)
                rate = pixels / (time.perf_counter() - start)
                rates[f"{score}/{batch}"] = rate
                print(f"  {score:8s} BATCH {batch:6d}: {rate:10.0f} px/s", flush=True)
    finally:
        generator_module.BATCH = original
    return rates


def write_like(scene, dst, cube, **profile):
    """``cube`` written to ``dst`` with the profile (updated by ``profile``), band descriptions
    and band tags of ``scene``: a raster of the same bands, so the same model scores it."""
    import rasterio

    with rasterio.open(scene) as src:
        profile = {**src.profile, "width": cube.shape[2], "height": cube.shape[1], **profile}
        descriptions, band_tags = src.descriptions, [src.tags(b) for b in src.indexes]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(cube)
        for b, (text, tags) in enumerate(zip(descriptions, band_tags), start=1):
            if text:
                out.set_band_description(b, text)
            if tags:
                out.update_tags(b, **tags)
    return cube.shape[1] * cube.shape[2]


def write_mosaic(scene, dst, repeat):
    """The scene tiled ``repeat`` x ``repeat`` times."""
    import rasterio

    with rasterio.open(scene) as src:
        cube = np.tile(src.read(), (1, repeat, repeat))
    return write_like(scene, dst, cube, tiled=True, blockxsize=256, blockysize=256,
                      compress="deflate")


def mosaic_rates(scene, model, device, tmp, repeat):
    """Wall seconds of ``detect`` on the tiled scene, CPU against ``device``, per score."""
    mosaic = tmp / "mosaic.tif"
    pixels = write_mosaic(scene, mosaic, repeat)
    results = {}
    for score in END_TO_END:
        seconds, x, y = cpu_and_gpu(mosaic, f"mosaic-{score}", score, model, device, tmp)
        both = np.isfinite(x) & np.isfinite(y)
        results[score] = {"pixels": pixels, "seconds_cpu": seconds["cpu"],
                          measured(device): seconds["gpu"],
                          "speedup": seconds["cpu"] / seconds["gpu"],
                          "max_abs": float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0}
        r = results[score]
        print(f"  {score:8s} {pixels} px: {r['seconds_cpu']:.1f} s cpu ({pixels / r['seconds_cpu']:.0f} "
              f"px/s), {r[measured(device)]:.1f} s {device} ({pixels / r[measured(device)]:.0f} "
              f"px/s), x{r['speedup']:.2f}, max |cpu - {device}| {r['max_abs']:.2e}", flush=True)
    return results


def write_crop(scene, dst, size):
    """The scene's top-left ``size`` x ``size`` pixels."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(scene) as src:
        window = Window(0, 0, min(size, src.width), min(size, src.height))
        cube, transform = src.read(window=window), src.window_transform(window)
    return write_like(scene, dst, cube, transform=transform)


def thesis_rates(scene, model, device, tmp, size):
    """Wall seconds of ``detect --score recon --solver thesis`` on a crop, CPU against ``device``."""
    crop = tmp / "crop.tif"
    pixels = write_crop(scene, crop, size)
    seconds, x, y = cpu_and_gpu(crop, "thesis", "recon", model, device, tmp,
                                ["--solver", "thesis"])
    both = np.isfinite(x) & np.isfinite(y)
    result = {"pixels": pixels, "seconds_cpu": seconds["cpu"], measured(device): seconds["gpu"],
              "speedup": seconds["cpu"] / seconds["gpu"],
              "max_abs": float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0,
              "max_rel": float((np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), 1e-12)).max())
              if both.any() else 0.0}
    print(f"  recon --solver thesis, {pixels} px: {seconds['cpu']:.1f} s cpu, {seconds['gpu']:.1f} s "
          f"{device}, x{result['speedup']:.1f}; max |cpu - {device}| {result['max_abs']:.2e} "
          f"(relative {result['max_rel']:.2e})", flush=True)
    return result


def training_rates(scene, device, iterations=30):
    import torch

    from hsanomaly.training.data import load_training_data
    from hsanomaly.training.networks import Critic, Generator
    from hsanomaly import defaults
    from hsanomaly.training.settings import Settings
    from hsanomaly.training.wgan import WGANGP

    data = load_training_data([str(scene)])
    rates = {}
    torch_device = "cuda" if device == "cuda" else "cpu"
    for dev in dict.fromkeys(("cpu", torch_device)):
        previous = torch.get_num_threads()
        if dev == "cpu":
            torch.set_num_threads(defaults.TRAIN_THREADS)
        try:
            torch.manual_seed(0)
            trainer = WGANGP(Generator(data.bands), Critic(data.bands),
                             Settings(iterations=10**6), device=dev)
            windows = torch.from_numpy(data.train).to(dev)
            for _ in range(3):
                trainer.step(windows)
            if dev == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(iterations):
                trainer.step(windows)
            if dev == "cuda":
                torch.cuda.synchronize()
            rates[dev] = iterations / (time.perf_counter() - start)
        finally:
            torch.set_num_threads(previous)
        print(f"  torch {dev:4s}: {rates[dev]:.1f} generator iterations/s (batch "
              f"{Settings.batch}, {Settings.critic_steps} critic steps)", flush=True)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model bundle for the scene (default: train one here)")
    parser.add_argument("--scene", default=str(ROOT / "examples" / "abu-airport-2.tif"))
    parser.add_argument("--batches", default="1024,4096,16384,65536")
    parser.add_argument("--mosaic", type=int, default=5,
                        help="step 5 tiles the scene this many times each way (0: skip it)")
    parser.add_argument("--thesis-crop", type=int, default=40,
                        help="step 6 scores this many pixels square with the thesis's search")
    parser.add_argument("--steps", default="1,2,3,4,5,6", help="the steps to run")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--simulate-on-cpu", action="store_true",
                        help="use the CPU provider in place of CUDA (checks this script only)")
    args = parser.parse_args()
    from rasterio.errors import NotGeoreferencedWarning

    warnings.simplefilter("ignore", NotGeoreferencedWarning)    # the example has no geotransform
    batches = [int(b) for b in args.batches.split(",")]
    steps = {int(n) for n in args.steps.split(",")}

    device, why = gpu_available(args.simulate_on_cpu)
    if device is None:
        print(f"gpu_check: no GPU to measure: {why}. Nothing was measured.")
        print("gpu_check=skipped parity_max_abs=nan critic_px_s=nan recon_px_s=nan "
              "default_px_s=nan train_it_s_cuda=nan train_it_s_cpu=nan mosaic_default_speedup=nan "
              "thesis_speedup=nan")
        return 0
    try:
        import torch
    except ImportError:               # the network, score and detect steps need no torch
        torch = None
    torch_cuda = torch is not None and torch.cuda.is_available()
    report = {"device": device, "simulated": args.simulate_on_cpu, "torch_cuda": torch_cuda,
              "load": os.getloadavg()[0],
              "hsanomaly": {"version": hsanomaly.__version__, "path": hsanomaly.__file__}}
    print(f"hsanomaly {hsanomaly.__version__} from {Path(hsanomaly.__file__).parent}", flush=True)
    if torch_cuda:
        report["gpu"] = torch.cuda.get_device_name(0)
    print(f"gpu_check on {report.get('gpu', 'no torch GPU')} "
          f"({'simulated on the CPU' if args.simulate_on_cpu else 'CUDA'})", flush=True)
    errors = report["errors"] = {}

    def step(key, title, measure):
        """Run one step; a failure is recorded and reported, and the later steps still run
        (a lent GPU machine's time is too short to lose every figure to one error)."""
        print(title, flush=True)
        try:
            report[key] = measure()
        except Exception as err:  # noqa: BLE001 - any failure is a finding, not a crash
            errors[key] = f"{type(err).__name__}: {err}"
            print(f"  FAILED: {errors[key]}", flush=True)
        if args.out:                      # what was measured so far survives a later failure
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = tmp / "model"
            where = "cuda" if torch_cuda else "cpu"
            step("train_seconds", f"0. training the default model ({where})",
                 lambda: train_model(args.scene, model, where))
            if "train_seconds" not in report and where == "cuda":
                step("train_seconds_cpu", "0. training it on the cpu instead",
                     lambda: train_model(args.scene, tmp / "model-cpu", "cpu"))
                model = tmp / "model-cpu"
            if not Path(model, "model.json").exists():
                print("gpu_check=failed: no model to measure with")
                return 1
        # always: the verdict needs it (a session really on the GPU), and it takes a second
        step("provider", "1. providers", lambda: check_provider(model, device))
        print(f"  generator session providers: {report.get('provider', {}).get('providers')}")
        if 2 in steps:
            step("parity", "2. parity cpu vs " + device,
                 lambda: parity(args.scene, model, device, tmp))
        if 3 in steps:
            step("networks", "3. throughput", lambda: network_rates(model, device, batches))
            step("scores", "3b. scores end to end",
                 lambda: score_rates(args.scene, model, device, batches))
        if 4 in steps and not (torch_cuda or args.simulate_on_cpu):
            report["training"] = {"skipped": "torch is not installed" if torch is None
                                  else "torch has no CUDA here"}
            print(f"4. training: skipped, {report['training']['skipped']}", flush=True)
        elif 4 in steps:
            step("training", "4. training", lambda: training_rates(args.scene, device))
        if 5 in steps and args.mosaic > 0:
            step("mosaic", f"5. a {args.mosaic}x{args.mosaic} mosaic of the scene",
                 lambda: mosaic_rates(args.scene, model, device, tmp, args.mosaic))
        if 6 in steps:
            step("thesis", f"6. the thesis's search on a {args.thesis_crop}-pixel square",
                 lambda: thesis_rates(args.scene, model, device, tmp, args.thesis_crop))

    providers_ok = args.simulate_on_cpu or (
        report.get("provider", {}).get("providers", [""])[0] == "CUDAExecutionProvider")
    parity_ok = "parity" in report and all(r.get("pixels_over") == 0 and r["nan_mismatch"] == 0
                                           for r in report["parity"].values())
    ok = providers_ok and (parity_ok or 2 not in steps) and not errors
    nan = float("nan")
    worst = max((r["max_abs"] for r in report.get("parity", {}).values() if "max_abs" in r),
                default=nan)

    def best(score):
        return max((v for k, v in report.get("scores", {}).items()
                    if k.startswith(score + "/")), default=nan)

    train = report.get("training", {})
    print(f"gpu_check={'ok' if ok else 'failed'} parity_max_abs={worst:.2e} "
          f"critic_px_s={best('critic'):.0f} recon_px_s={best('recon'):.0f} "
          f"default_px_s={best(DEFAULT_SCORE):.0f} "
          f"train_it_s_cuda={train.get('cuda', nan):.1f} "
          f"train_it_s_cpu={train.get('cpu', nan):.1f} mosaic_default_speedup="
          f"{report.get('mosaic', {}).get(DEFAULT_SCORE, {}).get('speedup', nan):.2f} "
          f"thesis_speedup={report.get('thesis', {}).get('speedup', nan):.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
