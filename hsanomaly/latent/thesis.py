"""The thesis's latent search, kept as the reference solver.

R random restarts z ~ N(0, 1), each followed by S momentum gradient-descent steps on the
reconstruction cost (learning rate 0.1, momentum 0.9, TensorFlow's MomentumOptimizer update
``v = 0.9 v + grad; z -= 0.1 v``); per pixel the restart whose *final* iterate has the lowest
cost is kept, as in the thesis code's ``batch_minimize``. The only departure is the gradient: dG/dz
comes from forward differences through the ONNX generator (see ``generator.py``), so a step
costs ``latent_dim + 1`` generator evaluations instead of a forward and a backward pass.
"""

import numpy as np

from .generator import finite_pixels, reconstruction_cost
from .result import LatentResult

CHUNK = 2048   # pixels optimised together: (latent_dim + 1) * CHUNK vectors per generator call


class ThesisSolver:
    """``restarts`` x ``steps`` momentum gradient descent; convergence = |cost change| of the last step."""

    name = "thesis"

    def __init__(self, c1=1.0, c2=0.0, restarts=16, steps=100, lr=0.1, momentum=0.9, seed=0):
        if restarts < 1 or steps < 1:
            raise ValueError(f"the thesis solver needs restarts >= 1 and steps >= 1, got {restarts}x{steps}")
        self.c1, self.c2 = float(c1), float(c2)
        self.restarts, self.steps = int(restarts), int(steps)
        self.lr, self.momentum, self.seed = float(lr), float(momentum), int(seed)

    measures_convergence = True
    pixelwise = False       # gradient steps through the generator, in batches

    def params(self):
        return {"solver": self.name, "restarts": self.restarts, "steps": self.steps,
                "lr": self.lr, "momentum": self.momentum, "seed": self.seed}

    def solve(self, generator, x):
        """Best latent vector per row of ``x`` (n, d); starts are drawn from ``seed`` on every call."""
        x = finite_pixels(x)
        rng = np.random.default_rng(self.seed)
        starts = rng.standard_normal((self.restarts, len(x), generator.latent_dim)).astype(np.float32)
        parts = [self._solve_chunk(generator, x[i:i + CHUNK], starts[:, i:i + CHUNK])
                 for i in range(0, len(x), CHUNK)]
        return LatentResult.concatenate(parts, generator)

    def _solve_chunk(self, generator, x, starts):
        best = None
        for z in starts:
            z = z.copy()
            velocity = np.zeros_like(z)
            previous = None
            for _ in range(self.steps):
                g, jac = generator.with_jacobian(z)
                previous = reconstruction_cost(x, g, z, self.c1, self.c2)
                velocity = self.momentum * velocity + self._gradient(x, g, jac, z)
                z = z - self.lr * velocity
            g = generator(z)
            cost = reconstruction_cost(x, g, z, self.c1, self.c2)
            run = LatentResult(z, cost, g, np.abs(previous - cost))
            best = run if best is None else best.keep_better(run)
        return best

    def _gradient(self, x, g, jac, z):
        grad = np.einsum("ndk,nd->nk", jac, g - x) * np.float32(2 * self.c1 / x.shape[1])
        if self.c2:
            grad += np.float32(2 * self.c2 / z.shape[1]) * z
        return grad
