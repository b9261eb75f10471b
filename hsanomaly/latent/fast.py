"""The default latent search: a linearised codebook, then chord Gauss-Newton steps.

Why it is fast: the generator is the expensive part while the latent space is tiny (a few
dimensions) and the output short (the model's bands), so nearly all the work can be done
once per model instead of once per pixel.

Once per model (``Codebook``): K latent vectors spread over the prior (a scrambled Sobol
sequence mapped through the normal quantile and scaled by ``codebook_scale``: 1 covers the prior the
generator was trained on; a wider codebook also reaches latent vectors the generator never saw
in training, where it extrapolates and fits the anomalies too; docs/ablations.md), their
outputs G(z_k), a KD-tree on the outputs' ``projection`` leading principal axes (a KD-tree in
all ~20 output dimensions degrades to brute force; on fewer axes than 8 its nearest entries
often miss the best one, and the search then ends above the thesis's optimum on most pixels;
docs/ablations.md), and at each entry the finite-difference Jacobian J_k, factored for the
damped Gauss-Newton normal equations ``A_k = c1/d J_k^T J_k + (c2/k + mu) I = L_k L_k^T``.
The generator calls (z_k, G(z_k), J_k: ``codebook_samples``) are nearly all of that work and
depend on the generator alone, so a model bundle stores them
(hsanomaly.model.bundle.StoredCodebook) and ``FastSolver.codebook`` loads them when the
requested size, scale and seed match; the rest is derived per solver in a fraction of the
time.

Per pixel x:
1. the ``candidates`` entries nearest to x in the projected output space;
2. for each, the Gauss-Newton model's optimum without any generator call: with
   ``u = L_k^-1 (c1/d J_k^T r_k - c2/k z_k)`` (``r_k = x - G(z_k)``, one k x d product),
   the model's best cost is ``cost_k - |u|^2`` and its step ``L_k^-T u``;
3. from the candidate with the lowest predicted cost, ``refine`` chord Gauss-Newton steps that
   reuse that entry's factored Jacobian, one generator call each; a step that raises the cost
   is undone and the next one halved. The exact cost of every codebook candidate is known for
   free, so the result is never worse than the best of them.
"""

import logging
import threading

import numpy as np

from .. import defaults
from ..cancel import cancel_point
from ..errors import HsanomalyError
from .generator import finite_pixels, reconstruction_cost
from .result import LatentResult

logger = logging.getLogger(__name__)

CHUNK = 8192            # pixels per vectorised pass: bounds the gathered (chunk, candidates, k, d) arrays
CODEBOOK_BYTES = 2**28  # memory cap for one codebook (outputs, factored Jacobians)
SHARED_CODEBOOKS = 2    # codebooks kept per process for generators that carry a key
KDTREE_LEAF = 64        # entries per KD-tree leaf: queries in 8 dimensions run faster than with
                        # scipy's 16 (the neighbours found are the same)
MORTON_AXES, MORTON_BITS = 3, 10   # queries are ordered along a Z-curve over these leading axes
_shared: dict = {}      # (generator key, solver params) -> Codebook, oldest first
_shared_lock = threading.RLock()


def codebook_size(size, latent_dim, output_size):
    """The entries a codebook of ``size`` requested entries gets: capped by CODEBOOK_BYTES,
    rounded down to a power of two (Sobol points come in powers of two), at least MIN_CODEBOOK
    (a model whose MIN_CODEBOOK entries pass the cap is refused: its latent search would
    take gigabytes; the critic's score needs none)."""
    k, d = latent_dim, output_size
    per_entry = 4 * (d + 2 * k * d + k * k + k)      # z, G(z) and the factored Jacobian
    fewest = defaults.MIN_CODEBOOK * per_entry
    if fewest > CODEBOOK_BYTES:
        raise HsanomalyError(f"a latent size of {latent_dim} for {output_size} values a pixel "
                             f"needs more memory than the latent search holds ({fewest / 2**20:.0f} "
                             f"MiB for the fewest codebook entries, against "
                             f"{CODEBOOK_BYTES // 2**20} MiB)")
    size = min(int(size), CODEBOOK_BYTES // per_entry)
    return 2 ** max(int(np.log2(defaults.MIN_CODEBOOK)), int(np.log2(max(size, 1))))


def codebook_samples(generator, size, scale, seed, jacobian=True):
    """(z (K, k), G(z) (K, d), J (K, d, k)): the codebook's generator work, float32.

    z: a scrambled Sobol sequence of ``codebook_size`` points mapped through the normal
    quantile and scaled by ``scale``; J by forward differences (GeneratorFunction.with_jacobian,
    whose G(z) a bundle stores: one call gives both, so built and stored outputs agree bit
    for bit). ``jacobian=False``: J is None, and G(z) one forward each (of k + 1 with J), in
    other batches: the same outputs to onnxruntime's rounding (bit for bit on the CPUs
    measured), which a bundle's codebook built so stores.
    """
    from scipy.special import ndtri
    from scipy.stats import qmc

    from ..logs import stage

    k, d = generator.latent_dim, generator.output_size
    n = codebook_size(size, k, d)
    with stage(f"building a latent codebook of {n} entries"):
        uniform = qmc.Sobol(k, scramble=True, seed=seed).random_base2(int(np.log2(n)))
        z = (scale * ndtri(np.clip(uniform, 1e-6, 1 - 1e-6))).astype(np.float32)
        g, jac = generator.with_jacobian(z) if jacobian else (generator(z), None)
    return z, g, jac


CHECKED_ENTRIES = 16    # stored codebook entries whose outputs are checked against the generator
OUTPUT_TOLERANCE = 1e-2    # relative: a GPU's reduced-precision products stay far inside it,
                           # another training's outputs (up to 1 apart) far outside


def check_outputs(generator, z, g, path, jac=None):
    """Refuse a stored codebook whose outputs (and Jacobians, where given) are not this
    generator's: entries spread over it are run through the generator and compared. Checksums
    tie the arrays to model.json, not to the networks, so a codebook copied from another
    training would score silently."""
    rows = np.linspace(0, len(z) - 1, min(CHECKED_ENTRIES, len(z))).astype(int)
    if jac is None:
        found = {"outputs": (generator(z[rows]), g[rows])}
    else:
        outputs, jacobians = generator.with_jacobian(z[rows])
        found = {"outputs": (outputs, g[rows]), "Jacobians": (jacobians, jac[rows])}
    for what, (computed, stored) in found.items():
        error = np.abs(computed - stored).max()
        if not error <= OUTPUT_TOLERANCE * max(1.0, float(np.abs(stored).max())):
            raise HsanomalyError(f"{path}: its codebook's {what} are not its generator's (off "
                                 f"by {error:.3g}; copied from another model?); train it again")


class Codebook:
    """Latent vectors, their outputs and factored Gauss-Newton systems, built once per generator.

    ``samples``: (z, G(z), J) as ``codebook_samples`` returns them (or a bundle stores them);
    built from ``generator`` when not given. With ``gauss_newton=False`` (J may then be None)
    it answers candidates only: the Gauss-Newton systems, the largest part of a codebook,
    serve refinement steps alone.
    """

    def __init__(self, generator, size, scale, c1, c2, damping, projection, seed, samples=None,
                 gauss_newton=True):
        from scipy.spatial import cKDTree

        z, g, jac = samples if samples is not None else codebook_samples(generator, size, scale, seed)
        k, d = z.shape[1], g.shape[1]
        self.z, self.g = z, g
        self.chol_inv = self.weights = None
        if gauss_newton:
            jac_t = np.ascontiguousarray(jac.transpose(0, 2, 1), dtype=np.float64)    # (K, k, d)
            normal = (c1 / d) * np.matmul(jac_t, jac_t.transpose(0, 2, 1))           # (K, k, k)
            normal += (c2 / k + damping + _jitter(normal)) * np.eye(k)
            chol = np.linalg.cholesky(normal)
            self.chol_inv = np.linalg.inv(chol).astype(np.float32)            # L^-1, (K, k, k)
            self.weights = np.float32(c1 / d) * np.matmul(self.chol_inv,    # L^-1 c1/d J^T
                                                          jac_t.astype(np.float32))
        self.c2_over_k = np.float32(c2 / k)
        self.mean = self.g.mean(axis=0)
        # leading principal axes of the outputs: eigenvectors of their (d, d) scatter matrix,
        # largest first (the SVD of the (K, d) outputs gives the same axes, far slower)
        centred = (self.g - self.mean).astype(np.float64)
        values, vectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(values)[::-1][:min(projection, d)]
        self.basis = np.ascontiguousarray(vectors[:, order], dtype=np.float32)   # (d, p)
        self.tree = cKDTree(self.project(self.g), leafsize=KDTREE_LEAF)

    def project(self, x):
        """Coordinates on the codebook outputs' leading principal axes, where the KD-tree lives.
        numpy's own loop, not BLAS: a BLAS product may round a row differently with the batch
        it is in, and a pixel's search must not depend on its neighbours (scorers/halo.py)."""
        return np.einsum("nd,dp->np", x - self.mean, self.basis)

    def __len__(self):
        return len(self.z)

    def model_step(self, entry, residual, z):
        """(predicted cost decrease |u|^2, step L^-T u) of each pixel's Gauss-Newton model at ``entry``."""
        if self.weights is None:
            raise ValueError("this codebook was built without Jacobians: it takes no Gauss-Newton step")
        u = np.einsum("...kd,...d->...k", self.weights[entry], residual)
        if self.c2_over_k:
            u -= self.c2_over_k * np.einsum("...kl,...l->...k", self.chol_inv[entry], z)
        step = np.einsum("...lk,...l->...k", self.chol_inv[entry], u)
        return np.einsum("...k,...k->...", u, u), step


def morton_order(points):
    """The order of ``points`` (n, p) along a Z-curve over their first MORTON_AXES coordinates,
    each cut into 2**MORTON_BITS steps between its minimum and maximum."""
    lead = np.asarray(points[:, :MORTON_AXES], np.float64)
    if not len(lead):
        return np.arange(0)
    span = np.ptp(lead, axis=0)
    cells = ((lead - lead.min(axis=0)) / np.where(span > 0, span, 1) * (2**MORTON_BITS - 1))
    cells = cells.astype(np.int64)
    code = np.zeros(len(lead), np.int64)
    for bit in range(MORTON_BITS):
        for axis in range(lead.shape[1]):
            code |= ((cells[:, axis] >> bit) & 1) << (lead.shape[1] * bit + axis)
    return np.argsort(code, kind="stable")


def _jitter(normal):
    """A floor under the normal matrices' eigenvalues, far below their typical scale: where
    tanh saturates (z deep in the tails) G is flat and J^T J singular, which Cholesky refuses."""
    typical = np.mean(np.trace(normal, axis1=1, axis2=2)) / normal.shape[1]
    return 1e-6 * typical + 1e-12


class FastSolver:
    """Codebook candidates + chord Gauss-Newton; convergence = cost decrease of the last step."""

    name = "fast"
    options = ("c1", "c2", "codebook", "refine", "codebook_scale", "seed")   # from make_solver

    def __init__(self, c1=defaults.C1, c2=defaults.C2, codebook=defaults.CODEBOOK, candidates=8,
                 refine=defaults.REFINE, codebook_scale=defaults.CODEBOOK_SCALE, damping=0.0,
                 projection=8, seed=defaults.SEED):
        self.c1, self.c2 = float(c1), float(c2)
        self.codebook_size, self.candidates, self.refine = int(codebook), int(candidates), int(refine)
        self.codebook_scale, self.damping, self.seed = float(codebook_scale), float(damping), int(seed)
        self.projection = int(projection)
        self._codebook = None

    def params(self):
        return {"solver": self.name, "codebook": self.codebook_size, "candidates": self.candidates,
                "refine": self.refine, "codebook_scale": self.codebook_scale, "damping": self.damping,
                "projection": self.projection, "seed": self.seed}

    @property
    def measures_convergence(self):
        """Whether its convergence output means something: without a refinement step there is
        no last decrease to measure, and the band would be all zeros."""
        return self.refine > 0

    @property
    def pixelwise(self):
        """Whether each pixel's answer is the same whatever other pixels it is solved with:
        without refinement (whose generator steps run in batches, and an ONNX product may
        round a row differently with the batch it is in)."""
        return self.refine == 0

    def __getstate__(self):
        return {**vars(self), "_codebook": None}   # rebuilt (deterministically) where it is used

    def codebook(self, generator):
        """This solver's codebook for ``generator``; built once per process and generator key, so
        several scores of one model (e.g. a benchmark's recon, anogan and context) share it.
        Threads that ask at once (a library user scoring in several) wait for one build."""
        with _shared_lock:
            if self._codebook is None:
                key = None if generator.key is None else (generator.key, self.c1, self.c2,
                                                        *self.params().items())
                if key in _shared:
                    self._codebook = _shared.pop(key)          # re-inserted below as the newest
                else:
                    self._codebook = Codebook(generator, self.codebook_size, self.codebook_scale,
                                              self.c1, self.c2, self.damping, self.projection,
                                              self.seed, samples=self._stored_samples(generator),
                                              gauss_newton=bool(self.refine))
                if key is not None:
                    _shared[key] = self._codebook
                    while len(_shared) > SHARED_CODEBOOKS:
                        _shared.pop(next(iter(_shared)))
            return self._codebook

    def _stored_samples(self, generator):
        """The generator's stored codebook arrays (GeneratorFunction.codebook, from its model
        bundle) when they are exactly what this solver would build, else None (build them)."""
        from .generator import JACOBIAN_STEP

        stored = getattr(generator, "codebook", None)
        if stored is not None and self.refine and not stored.has_jacobian:
            return None          # steps need the Jacobians it does not store: built with them
        if stored is None or not stored.matches(self.codebook_size, self.codebook_scale, self.seed,
                                                JACOBIAN_STEP):
            if stored is not None and stored.matches(self.codebook_size, self.codebook_scale,
                                                     stored.settings["seed"], JACOBIAN_STEP):
                logger.info("%s: its codebook is stored for seed %d (the training's); building "
                            "one for seed %d (pass seed %d to use the stored one)", stored.path,
                            stored.settings["seed"], self.seed, stored.settings["seed"])
            return None
        samples = stored.load(jacobian=bool(self.refine))    # steps alone use the Jacobians
        expected = codebook_size(self.codebook_size, generator.latent_dim, generator.output_size)
        if len(samples[0]) != expected:
            return None
        check_outputs(generator, samples[0], samples[1], stored.path, jac=samples[2])
        return samples

    def solve(self, generator, x):
        """The best z found for each pixel of x (n, d), in x's order.

        The pixels are searched in the Z-curve order of their projected coordinates
        (``morton_order``): consecutive KD-tree queries then walk the same branches while they
        are in the caches, which makes the search faster with the same answers (docs/speed.md)."""
        x = finite_pixels(x)
        book = self.codebook(generator)
        points = book.project(x)
        order = morton_order(points)
        x, points = x[order], points[order]
        parts = []
        for i in range(0, len(x), CHUNK):
            cancel_point()          # a long fit's search stops between two chunks
            parts.append(self._solve_chunk(generator, book, x[i:i + CHUNK], points[i:i + CHUNK]))
        return LatentResult.concatenate(parts, generator).take(np.argsort(order))

    def _solve_chunk(self, generator, book, x, points):
        n = len(x)
        m = min(self.candidates, len(book))
        _, entries = book.tree.query(points, k=m)
        entries = entries.reshape(n, m)
        residual = x[:, None, :] - book.g[entries]                          # (n, m, d)
        z0 = book.z[entries]
        exact = self.c1 * np.mean(np.square(residual), axis=2)
        if self.c2:
            exact += self.c2 * np.mean(np.square(z0), axis=2)
        rows = np.arange(n)
        start = np.argmin(exact, axis=1)
        best = LatentResult(z0[rows, start], exact[rows, start], book.g[entries[rows, start]],
                            np.zeros(n, np.float32))
        if not self.refine:
            return best
        decrease, steps = book.model_step(entries, residual, z0)
        pick = np.argmin(exact - decrease, axis=1)
        entry = entries[rows, pick]
        z, step, cost = z0[rows, pick], steps[rows, pick], exact[rows, pick]
        for _ in range(self.refine):
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
