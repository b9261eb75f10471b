"""The default latent search: a linearised codebook, then chord Gauss-Newton steps.

Why it is fast: the generator is the expensive part (about 0.7 MFLOP per evaluation) while
the latent space is tiny (4 dims) and the output short (about 20 values), so nearly all the
work can be done once per model instead of once per pixel.

Once per model (``Codebook``): K latent vectors spread over the prior (a scrambled Sobol
sequence mapped through the normal quantile and widened by ``scale``, so that off-manifold
pixels whose best z lies in the prior's tails are covered), their outputs G(z_k), a KD-tree on
the outputs' ``projection`` leading principal axes (a KD-tree in all ~20 output dimensions
degrades to brute force, about 1 ms a query), and at each entry the finite-difference Jacobian J_k, factored for the damped
Gauss-Newton normal equations ``A_k = c1/d J_k^T J_k + (c2/k + mu) I = L_k L_k^T``.

Per pixel x:
1. the ``candidates`` entries nearest to x in the projected output space;
2. for each, the Gauss-Newton model's optimum without any generator call: with
   ``u = L_k^-1 (c1/d J_k^T r_k - c2/k z_k)`` (``r_k = x - G(z_k)``, one k x d product),
   the model's best cost is ``cost_k - |u|^2`` and its step ``L_k^-T u``;
3. from the candidate with the lowest predicted cost, ``steps`` chord Gauss-Newton steps that
   reuse that entry's factored Jacobian, one generator call each; a step that raises the cost
   is undone and the next one halved. The exact cost of every codebook candidate is known for
   free, so the result is never worse than the best of them.
"""

import numpy as np

from .generator import reconstruction_cost
from .result import LatentResult

CHUNK = 8192            # pixels per vectorised pass: bounds the gathered (chunk, candidates, k, d) arrays
CODEBOOK_BYTES = 2**28  # memory cap for one codebook (outputs, factored Jacobians)
SHARED_CODEBOOKS = 2    # codebooks kept per process for generators that carry a key
_shared = {}            # (generator key, solver params) -> Codebook, oldest first


class Codebook:
    """Latent vectors, their outputs and factored Gauss-Newton systems, built once per generator."""

    def __init__(self, generator, size, scale, c1, c2, damping, projection, seed):
        from scipy.spatial import cKDTree
        from scipy.special import ndtri
        from scipy.stats import qmc

        k, d = generator.latent_dim, generator.output_size
        per_entry = 4 * (d + 2 * k * d + k * k + k)
        size = min(int(size), CODEBOOK_BYTES // per_entry)
        uniform = qmc.Sobol(k, scramble=True, seed=seed).random_base2(max(4, int(np.log2(size))))
        self.z = (scale * ndtri(np.clip(uniform, 1e-6, 1 - 1e-6))).astype(np.float32)
        self.g, jac = generator.with_jacobian(self.z)
        normal = (c1 / d) * np.einsum("ndk,ndl->nkl", jac, jac, dtype=np.float64)
        normal += (c2 / k + damping + _jitter(normal)) * np.eye(k)
        chol = np.linalg.cholesky(normal)
        self.chol_inv = np.linalg.inv(chol).astype(np.float32)            # L^-1, (K, k, k)
        self.weights = np.float32(c1 / d) * np.einsum("nkl,ndl->nkd", self.chol_inv, jac)  # L^-1 c1/d J^T
        self.c2_over_k = np.float32(c2 / k)
        self.mean = self.g.mean(axis=0)
        _, _, vt = np.linalg.svd(self.g - self.mean, full_matrices=False)
        self.basis = np.ascontiguousarray(vt[:min(projection, d)].T)         # (d, p)
        self.tree = cKDTree(self.project(self.g))

    def project(self, x):
        """Coordinates on the codebook outputs' leading principal axes, where the KD-tree lives."""
        return (x - self.mean) @ self.basis

    def __len__(self):
        return len(self.z)

    def model_step(self, entry, residual, z):
        """(predicted cost decrease |u|^2, step L^-T u) of each pixel's Gauss-Newton model at ``entry``."""
        u = np.einsum("...kd,...d->...k", self.weights[entry], residual)
        if self.c2_over_k:
            u -= self.c2_over_k * np.einsum("...kl,...l->...k", self.chol_inv[entry], z)
        step = np.einsum("...lk,...l->...k", self.chol_inv[entry], u)
        return np.einsum("...k,...k->...", u, u), step


def _jitter(normal):
    """A floor under the normal matrices' eigenvalues, far below their typical scale: where
    tanh saturates (z deep in the tails) G is flat and J^T J singular, which Cholesky refuses."""
    typical = np.mean(np.trace(normal, axis1=1, axis2=2)) / normal.shape[1]
    return 1e-6 * typical + 1e-12


class FastSolver:
    """Codebook candidates + chord Gauss-Newton; convergence = cost decrease of the last step."""

    name = "fast"

    def __init__(self, c1=1.0, c2=0.0, codebook=65536, candidates=8, steps=2, scale=2.0,
                 damping=0.0, projection=6, seed=0):
        self.c1, self.c2 = float(c1), float(c2)
        self.codebook_size, self.candidates, self.steps = int(codebook), int(candidates), int(steps)
        self.scale, self.damping, self.seed = float(scale), float(damping), int(seed)
        self.projection = int(projection)
        self._codebook = None

    def params(self):
        return {"solver": self.name, "codebook": self.codebook_size, "candidates": self.candidates,
                "steps": self.steps, "scale": self.scale, "damping": self.damping,
                "projection": self.projection, "seed": self.seed}

    def __getstate__(self):
        return {**vars(self), "_codebook": None}   # rebuilt (deterministically) where it is used

    def codebook(self, generator):
        """This solver's codebook for ``generator``; built once per process and generator key, so
        several scores of one model (e.g. a benchmark's recon, anogan and context) share it."""
        if self._codebook is None:
            key = None if generator.key is None else (generator.key, self.c1, self.c2,
                                                    *self.params().items())
            if key in _shared:
                self._codebook = _shared.pop(key)          # re-inserted below as the newest
            else:
                self._codebook = Codebook(generator, self.codebook_size, self.scale, self.c1,
                                          self.c2, self.damping, self.projection, self.seed)
            if key is not None:
                _shared[key] = self._codebook
                while len(_shared) > SHARED_CODEBOOKS:
                    _shared.pop(next(iter(_shared)))
        return self._codebook

    def solve(self, generator, x):
        x = np.asarray(x, dtype=np.float32)
        book = self.codebook(generator)
        parts = [self._solve_chunk(generator, book, x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)]
        return LatentResult.concatenate(parts, generator)

    def _solve_chunk(self, generator, book, x):
        n = len(x)
        m = min(self.candidates, len(book))
        _, entries = book.tree.query(book.project(x), k=m)
        entries = entries.reshape(n, m)
        residual = x[:, None, :] - book.g[entries]                          # (n, m, d)
        z0 = book.z[entries]
        exact = self.c1 * np.mean(np.square(residual), axis=2)
        if self.c2:
            exact += self.c2 * np.mean(np.square(z0), axis=2)
        decrease, steps = book.model_step(entries, residual, z0)
        pick = np.argmin(exact - decrease, axis=1)
        rows = np.arange(n)
        start = np.argmin(exact, axis=1)
        entry = entries[rows, pick]
        best = LatentResult(z0[rows, start], exact[rows, start], book.g[entries[rows, start]],
                            np.zeros(n, np.float32))
        z, step, cost = z0[rows, pick], steps[rows, pick], exact[rows, pick]
        for _ in range(self.steps):
            trial = z + step
            g = generator(trial)
            trial_cost = reconstruction_cost(x, g, trial, self.c1, self.c2)
            improved = trial_cost < cost
            best = best.keep_better(LatentResult(trial, trial_cost, g, np.maximum(cost - trial_cost, 0)))
            z = np.where(improved[:, None], trial, z)
            cost = np.where(improved, trial_cost, cost)
            _, chord = book.model_step(entry, x - g, trial)
            step = np.where(improved[:, None], chord, 0.5 * step)
        return best
