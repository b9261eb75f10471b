"""The generator as a numpy function: batched forwards and finite-difference Jacobians.

Detection never imports torch, so dG/dz comes from the ONNX generator itself: a forward
difference, ``J[:, :, i] = (G(z + h e_i) - G(z)) / h`` with ``h = 1e-3``, evaluated in the
same onnxruntime call as ``G(z)`` (one batch of ``N * (latent_dim + 1)`` latent vectors).
With z of order one and float32 outputs in [-1, 1], the truncation error (about ``h``) and the
rounding error (about ``1e-7 / h``) both stay near 1e-3 of the derivative: ample for gradient
descent and Gauss-Newton steps, which only need a descent direction.
"""

import numpy as np

from .. import defaults
from ..cancel import cancel_point
from ..errors import HsanomalyError

JACOBIAN_STEP = 1e-3
# Latent vectors (or windows, for the critic) per onnxruntime call: small enough that a call's
# activations stay in the CPU's caches, large enough that the per-call overhead vanishes
# (benchmarks/graph_speed.py measures the choice; figures in docs/training/graphs.md).
BATCH = 4096


def finite_pixels(x):
    """x (n, d) as float32, refused in one line where a pixel is not finite once scaled for
    the model: no search reconstructs an infinite value (the fast solver's KD-tree raised
    scipy's traceback; the thesis's descent took NaN steps)."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():     # NaN: an overflow's inf - inf, or a direct caller's nodata
        raise HsanomalyError("a pixel is no finite number once scaled for the model: its "
                             "values overflow float32 (an undeclared fill value? declare it "
                             "nodata; or other units), or it is NaN (nodata: leave it out)")
    return x


def reconstruction_cost(x, g, z, c1=defaults.C1, c2=defaults.C2):
    """The thesis code's cost per sample: ``c1 * mean((x - G(z))^2) + c2 * mean(z^2)``.

    x, g: (n, d) flattened windows; z: (n, k). The means over the d output values and the k
    latent values are the thesis code's ``sum(...)/bands`` and ``w * sum(z^2)/NOISE_DIM``.
    """
    cost = c1 * np.mean(np.square(x - g, dtype=np.float32), axis=1)
    if c2:
        cost = cost + c2 * np.mean(np.square(z), axis=1)
    return cost


class GeneratorFunction:
    """``G: (n, latent_dim) -> (n, d)`` with d = bands * window * window, through onnxruntime.

    Counts the latent vectors it has evaluated (``forwards``), so solvers can be compared by
    generator work as well as by wall time. ``key`` identifies the network (e.g. its file's
    sha256), so work done once per generator can be shared by every solver that uses it.
    ``codebook``: the codebook its model bundle stores (hsanomaly.model.bundle.StoredCodebook),
    which the fast solver loads instead of building when it asks for the same one.
    """

    def __init__(self, session, latent_dim, key=None, codebook=None):
        self.session = session
        self.latent_dim = int(latent_dim)
        self.key = key
        self.codebook = codebook
        self.forwards = 0

    def __call__(self, z):
        z = np.ascontiguousarray(z, dtype=np.float32)
        self.forwards += len(z)
        parts = []
        for i in range(0, len(z), BATCH):
            cancel_point()          # a long fit's search stops between two batches
            parts.append(self.session.run(["x"], {"z": z[i:i + BATCH]})[0].reshape(
                len(z[i:i + BATCH]), -1))
        if not parts:
            return np.empty((0, self.output_size), np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @property
    def output_size(self):
        shape = self.session.get_outputs()[0].shape
        return int(np.prod(shape[1:]))

    def with_jacobian(self, z, step=JACOBIAN_STEP):
        """(G(z) (n, d), J (n, d, k)) by forward differences, in one batch."""
        n, k = z.shape
        probes = np.repeat(z[:, None, :], k + 1, axis=1)
        probes[:, 1:, :] += step * np.eye(k, dtype=np.float32)
        out = self(probes.reshape(-1, k)).reshape(n, k + 1, -1)
        g = out[:, 0]
        jac = (out[:, 1:] - g[:, None, :]).transpose(0, 2, 1) / np.float32(step)
        return g, jac
