"""Training hyperparameters, importable without torch (the CLI reads its defaults from here).

Defaults for a 100x100 scene binned to 32 bands; the seed's values are in brackets: 250
generator iterations [20,000], 2 critic steps per generator step [5], batch 64 [256], Adam lr
1e-3 [5e-6 stepped to 5e-7] with betas (0.5, 0.9) [TensorFlow's (0.9, 0.999)] decaying linearly
to 0, gradient-penalty weight 10 [10]. 250 iterations with 2 critic steps cost about a quarter
of the former 800 with 5 and detect as well on held-out scenes (the default score's AUC over 8
scenes and 3 seeds; benchmarks/train_quality.py, docs/training/quality.md). Earlier fit-only
measurements (benchmarks/train_speed.py), at 800 iterations and 5 critic steps:
Given the same 100 CPU-seconds on airport-2, batch 64 (850 iterations) and batch 256 (350)
fitted equally well (sliced Wasserstein distance 0.039 to held-out pixels, against 0.013 between
training and held-out pixels); 2 critic steps per generator step fitted worse (0.057; at 300
iterations on airport-2 its worst band's mean is 0.61 data standard deviations off, against
0.25-0.35 with 5), which the detection figures above show does not cost the default score
any accuracy. Batch 64
is kept because short runs then still take many steps and log finely. With the upstream
WGAN-GP optimiser (1e-4, betas (0, 0.9)) two seeds gave 0.037 and 0.056 against 0.039 and 0.040
with these defaults: no better, and less steady. The thesis's 5e-6 had hardly moved (0.31).
"""

from dataclasses import asdict, dataclass

from .. import defaults

# torch CPU threads for training unless the caller asks for more (``threads=``, ``--threads``):
# the networks' matrix products (batch 64, at most 256 x 256) are too small for a second thread
# to pay for its synchronisation, and on a busy machine torch's extra threads spin against the
# other processes instead of waiting. docs/training/threads.md has the measurements.
THREADS = 1


@dataclass
class Settings:
    iterations: int = defaults.ITERATIONS
    critic_steps: int = defaults.CRITIC_STEPS
    batch: int = 64
    lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.9
    gp_weight: float = 10.0
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "critic_steps", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self):
        return asdict(self)
