"""The thesis's latent search, kept as the reference solver.

R random restarts z ~ N(0, 1), each followed by S momentum gradient-descent steps on the
reconstruction cost (learning rate 0.1, momentum 0.9, TensorFlow's MomentumOptimizer update
``v = 0.9 v + grad; z -= 0.1 v``); per pixel the restart whose *final* iterate has the lowest
cost is kept, as in the thesis code's ``batch_minimize``. The only departure is the gradient: dG/dz
comes from forward differences through the ONNX generator (see ``generator.py``), so a step
costs ``latent_dim + 1`` generator evaluations instead of a forward and a backward pass. A
pixel's random starts are drawn from its own values and the seed (``pixel_starts``), so its
score does not depend on which pixels are solved with it (a tile's size, nodata beside it).
"""

import numpy as np

from .. import defaults
from .generator import finite_pixels, reconstruction_cost
from .result import LatentResult

CHUNK = 2048   # pixels optimised together: (latent_dim + 1) * CHUNK vectors per generator call
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)      # SplitMix64's increment


def _mix(h):
    """SplitMix64's finaliser on uint64 arrays (their products wrap modulo 2**64)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def pixel_starts(x, restarts, latent_dim, seed):
    """Starts z ~ N(0, 1), (restarts, n, latent_dim) float32, for the rows of ``x`` (n, d):
    each row's from a hash of its float32 values and ``seed`` (a counter-based draw, Box-Muller
    on SplitMix64), so a pixel gets the same starts wherever it lies and whatever is solved
    with it; equal pixels get equal starts."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    key = _mix(np.full(len(x), (int(seed) + 1) * int(_GOLDEN) % 2**64, dtype=np.uint64))
    for column in bits.T:
        key = _mix(key ^ column)
    count = restarts * latent_dim
    draws = _mix(key[None, :] + np.arange(1, 2 * count + 1, dtype=np.uint64)[:, None] * _GOLDEN)
    uniform = ((draws >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53    # in (0, 1)
    radius = np.sqrt(-2.0 * np.log(uniform[:count]))
    z = radius * np.cos(2.0 * np.pi * uniform[count:])
    return z.reshape(restarts, latent_dim, len(x)).transpose(0, 2, 1).astype(np.float32)


class ThesisSolver:
    """``restarts`` x ``steps`` momentum gradient descent; convergence = |cost change| of the last step."""

    name = "thesis"
    options = ("c1", "c2", "restarts", "steps", "seed")     # what ``make_solver`` passes on

    def __init__(self, c1=defaults.C1, c2=defaults.C2, restarts=defaults.RESTARTS,
                 steps=defaults.STEPS, lr=0.1, momentum=0.9, seed=defaults.SEED):
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
        """Best latent vector per row of ``x`` (n, d); each row's starts from its values and
        ``seed`` (``pixel_starts``)."""
        x = finite_pixels(x)
        parts = []
        for i in range(0, len(x), CHUNK):
            chunk = x[i:i + CHUNK]
            starts = pixel_starts(chunk, self.restarts, generator.latent_dim, self.seed)
            parts.append(self._solve_chunk(generator, chunk, starts))
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
