"""Does an encoder that starts the latent search (f-AnoGAN style) make ``recon`` rank better?

For each scene: the benchmark's ``recon`` model (whitened, the training defaults, from its
model cache), scored by the product's fast solver; then an encoder E (an MLP, the generator
and critic fixed) trained on the scene's pixels in three ways, and each pixel's cost found
from E(x): at E(x) itself, and after the fast solver's own chord Gauss-Newton steps started
there (its Jacobian taken at E(x)). One setting for every scene. Prints the AUC per scene and
variant, and the median ratio of the encoder-started cost to the product's on background and
target pixels (docs/ablations.md, "an encoder as the search's starting point").

    python benchmarks/encoder_start.py ../shared/data [--models .models] [--seed 0]

Needs the training extra (torch).
"""

import argparse
import time

import numpy as np

from hsanomaly.evaluation import roc_curve
from hsanomaly.experiments.cache import ModelCache
from hsanomaly.experiments.scenes import find_scenes
from hsanomaly.latent.fast import Codebook
from hsanomaly.latent.generator import reconstruction_cost
from hsanomaly.model import load_bundle
from hsanomaly.scorers import make_scorer

STEPS, BATCH, LR, HIDDEN = 2000, 256, 1e-3, 128
# name: (weight of the critic-feature term, weight of the latent prior E(x)^2) in E's loss
VARIANTS = {"image": (0.0, 0.0), "image+features": (1.0, 0.0), "image+prior": (0.0, 0.1)}
GAUSS_NEWTON_STEPS = (0, 2, 5, 20)


def onnx_as_torch(path):
    """The bundle's dense ONNX graph (Gemm, Relu, Tanh, Reshape) as a fixed torch function
    returning every graph output: E is trained through the generator the product scores with."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    consts = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    ops = {"Relu": torch.relu, "Tanh": torch.tanh}

    def forward(x):
        env = {**consts, graph.input[0].name: x}
        for node in graph.node:
            a = [env[i] for i in node.input]
            if node.op_type == "Gemm":
                y = a[0] @ a[1] + (a[2] if len(a) > 2 else 0)
            elif node.op_type == "Reshape":
                y = a[0].reshape([len(x) if (s == 0 and j == 0) else int(s)
                                  for j, s in enumerate(a[1].tolist())])
            else:
                y = ops[node.op_type](a[0])
            env[node.output[0]] = y
        return [env[o.name] for o in graph.output]

    return forward


def train_encoder(x, generator, critic, latent_dim, features, prior, seed):
    import torch

    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(),
                                  torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
                                  torch.nn.Linear(HIDDEN, latent_dim))
    optimiser = torch.optim.Adam(encoder.parameters(), lr=LR)
    pixels = torch.from_numpy(x)
    draws = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for _ in range(STEPS):
        batch = pixels[torch.randint(len(pixels), (BATCH,), generator=draws)]
        z = encoder(batch)
        g = generator(z)[0].reshape(len(batch), -1)
        loss = torch.mean((batch - g) ** 2) + prior * torch.mean(z ** 2)
        if features:
            real = critic(batch.reshape(len(batch), -1, 1, 1))[1]
            fake = critic(g.reshape(len(batch), -1, 1, 1))[1]
            loss = loss + features * torch.mean((real - fake) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return encoder(pixels).numpy().astype(np.float32), time.process_time() - start


def costs_from(generator, x, z0, c1, c2):
    """{steps: each pixel's best cost} of the fast solver's chord Gauss-Newton loop started at
    z0: a one-entry-per-pixel Codebook gives its factored normal equations at z0."""
    g0, jacobian = generator.with_jacobian(z0)
    book = Codebook(generator, len(z0), 1.0, c1, c2, 0.0, 8, 0, samples=(z0, g0, jacobian))
    entry = np.arange(len(z0))
    z, cost = z0.copy(), reconstruction_cost(x, g0, z0, c1, c2)
    best, found = cost.copy(), {0: cost.copy()}
    _, step = book.model_step(entry, x - g0, z0)
    for n in range(1, max(GAUSS_NEWTON_STEPS) + 1):
        trial = z + step
        g = generator(trial)
        trial_cost = reconstruction_cost(x, g, trial, c1, c2)
        better = trial_cost < cost
        best = np.minimum(best, trial_cost)
        z, cost = np.where(better[:, None], trial, z), np.where(better, trial_cost, cost)
        _, chord = book.model_step(entry, x - g, trial)
        step = np.where(better[:, None], chord, 0.5 * step)
        if n in GAUSS_NEWTON_STEPS:
            found[n] = best.copy()
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--models", default=".models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    models = ModelCache(args.models, None)
    rows = {}
    for scene in find_scenes(args.data):
        data = scene.load()
        model = models.get(scene, args.seed, whiten=True)      # recon's model, as the benchmark's
        bundle = load_bundle(model.path)
        scorer = make_scorer("recon", model=model.path, seed=args.seed)
        generator = scorer.generator()
        x = np.ascontiguousarray(bundle.preprocessor.transform(data.cube[:, data.valid].T),
                                 np.float32)
        truth = data.truth[data.valid].astype(bool)
        scored = data.evaluated[data.valid]

        def auc(cost):
            return roc_curve(cost[scored & truth], cost[scored & ~truth]).auc

        product = scorer.solver.solve(generator, x).cost
        row = {"product": auc(product)}
        torch_generator = onnx_as_torch(str(model.path / "generator.onnx"))
        torch_critic = onnx_as_torch(str(model.path / "critic.onnx"))
        for name, (features, prior) in VARIANTS.items():
            z0, seconds = train_encoder(x, torch_generator, torch_critic, bundle.latent_dim,
                                        features, prior, args.seed)
            found = costs_from(generator, x, z0, scorer.c1, scorer.c2)
            for steps, cost in found.items():
                row[f"{name}, {steps} steps"] = auc(cost)
            last = found[max(GAUSS_NEWTON_STEPS)]
            row[f"{name}: cost ratio background / targets"] = (
                f"{np.median(last[~truth] / product[~truth]):.3f} / "
                f"{np.median(last[truth] / product[truth]):.3f} ({seconds:.1f} CPU-s to train E)")
        rows[scene.name] = row
        print(scene.name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
              flush=True)
    for key in rows[next(iter(rows))]:
        values = [row[key] for row in rows.values()]
        if isinstance(values[0], float):
            shown = " ".join(f"{v:.4f}" for v in values)
            print(f"{key:40s} {shown}  mean {np.mean(values):.4f}")


if __name__ == "__main__":
    main()
