"""Latent search: z* = argmin_z c1 mean((x - G(z))^2) + c2 mean(z^2), per pixel, through ONNX.

``seed``: the thesis's restarts x gradient steps (the reference). ``fast``: a linearised
codebook and chord Gauss-Newton steps (the default). Both are numpy + onnxruntime only.
"""

from ..errors import HsanomalyError
from .fast import Codebook, FastSolver
from .generator import GeneratorFunction, reconstruction_cost
from .result import LatentResult
from .seed import SeedSolver

SOLVERS = {"fast": FastSolver, "seed": SeedSolver}


def make_solver(name, *, c1=1.0, c2=0.0, restarts=16, steps=100, codebook=65536, seed=0):
    """A solver by its CLI name; ``restarts``/``steps`` configure the seed solver only,
    ``codebook`` (entries) the fast solver only."""
    if name == "seed":
        if restarts < 1 or steps < 1:
            raise HsanomalyError(f"--restarts and --steps must be at least 1, got {restarts} and {steps}")
        return SeedSolver(c1=c1, c2=c2, restarts=restarts, steps=steps, seed=seed)
    if name == "fast":
        if codebook < 16:
            raise HsanomalyError(f"--codebook must be at least 16 entries, got {codebook}")
        return FastSolver(c1=c1, c2=c2, codebook=codebook, seed=seed)
    raise HsanomalyError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")


__all__ = ["Codebook", "FastSolver", "GeneratorFunction", "LatentResult", "SOLVERS", "SeedSolver",
           "make_solver", "reconstruction_cost"]
