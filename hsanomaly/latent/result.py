"""What a latent search returns for each pixel."""

from dataclasses import dataclass

import numpy as np


@dataclass
class LatentResult:
    z: np.ndarray            # (n, latent_dim) the best latent vector found
    cost: np.ndarray         # (n,) reconstruction cost at z
    recon: np.ndarray        # (n, d) G(z), flattened
    convergence: np.ndarray  # (n,) cost change of the last step at z: near 0 = settled

    def keep_better(self, other):
        """Per sample, whichever of ``self`` and ``other`` has the lower cost."""
        better = other.cost < self.cost
        return LatentResult(np.where(better[:, None], other.z, self.z),
                            np.where(better, other.cost, self.cost),
                            np.where(better[:, None], other.recon, self.recon),
                            np.where(better, other.convergence, self.convergence))

    def take(self, index):
        """The results of the samples at ``index``, in that order."""
        return LatentResult(self.z[index], self.cost[index], self.recon[index],
                            self.convergence[index])

    @classmethod
    def concatenate(cls, parts, generator):
        if not parts:
            return cls(np.empty((0, generator.latent_dim), np.float32), np.empty(0, np.float32),
                       np.empty((0, generator.output_size), np.float32), np.empty(0, np.float32))
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("z", "cost", "recon", "convergence")))
