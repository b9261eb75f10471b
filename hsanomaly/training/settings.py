"""Training hyperparameters, importable without torch (the CLI reads its defaults from here).

Chosen for a 100x100 scene binned to 32 bands, and far shorter than the thesis code's (which
trained 20,000 iterations with 5 critic steps, batch 256 and Adam at 5e-6): the default score
detects as well on held-out scenes with these, at a fraction of the cost. Batch 64 keeps many
steps, and fine logs, in short runs. The measurements, and the settings that lost, are in
docs/training/quality.md (benchmarks/train_quality.py) and benchmarks/train_speed.py.
"""

from dataclasses import asdict, dataclass

from .. import defaults
from ..errors import HsanomalyError
from ..spelling import spell

# The largest network sizes and batch taken (library keywords; the CLI has none): far above any
# useful model (the default latent has 4 dimensions), below sizes that fail on memory after the
# data are read (a 10**6-dimensional latent wrote a 1.5 GB checkpoint, then asked the export
# for terabytes). A 64-dimensional latent's stored codebook is about 0.5 GB for 32 bands.
MAX_DIM = 1024
MAX_LATENT_DIM = 64
MAX_BATCH = 65536


class UnusableCheckpoint(HsanomalyError):
    """A checkpoint a resume cannot take up: unreadable, or made for other data or settings."""


@dataclass
class Settings:
    iterations: int = defaults.ITERATIONS
    critic_steps: int = defaults.CRITIC_STEPS
    batch: int = defaults.TRAIN_BATCH
    lr: float = defaults.TRAIN_LR
    beta1: float = 0.5
    beta2: float = 0.9
    gp_weight: float = 10.0
    seed: int = defaults.TRAIN_SEED

    def __post_init__(self):
        for name in ("iterations", "critic_steps", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{spell(name)} must be at least 1, got {getattr(self, name)}")
        if int(self.batch) > MAX_BATCH:
            raise ValueError(f"{spell('batch')} must be at most {MAX_BATCH}, got {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"{spell('lr')} must be positive, got {self.lr}")

    def to_dict(self):
        return asdict(self)
