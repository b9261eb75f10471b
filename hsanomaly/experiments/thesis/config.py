"""What the thesis reproduction runs, and the thesis's own findings it checks."""

from dataclasses import dataclass

from ... import defaults
from ...errors import HsanomalyError
from ...spelling import spell

DEFAULT_SCENES = ("abu-airport-1", "abu-airport-2", "sandiego", "HYDICE")
SAME = 0.01      # AUC differences below this count as "alike"


@dataclass
class ThesisConfig:
    """What the thesis reproduction runs; its defaults are those of ``hsanomaly thesis`` and
    ``make thesis``, which docs/report.md was generated with (see its first lines)."""
    scenes: tuple = DEFAULT_SCENES     # names or file stems under the data folder
    iterations: int = defaults.ITERATIONS   # generator iterations of every full-length model
    seed: int = defaults.TRAIN_SEED
    solver_pixels: int = 300           # background pixels sampled for the solver comparison
    c2_values: tuple = (0.01, 0.1, 1.0)
    large_latent: int = 64
    large_window: int = 5              # 0 skips the window experiment
    codebook: int = defaults.CODEBOOK  # fast-solver codebook entries of every recon score
    window_iterations: int = 100       # iterations of both models of the window experiment,
                                       # short: a larger window costs far more per iteration

    def __post_init__(self):
        # checked before hours of work; 1 is the 1x1 model the window one is compared with
        if self.large_window and (self.large_window % 2 == 0 or self.large_window == 1):
            raise HsanomalyError(f"{spell('window', python='large_window')} must be odd and at "
                                 "least 3 (or 0 to skip the window experiment), "
                                 f"got {self.large_window}")

    @property
    def early_iterations(self):
        return max(1, self.iterations // 2)


THESIS_FINDINGS = {
    "critic_vs_recon": "the reconstruction score beats the critic score by far (AUC 0.91 vs "
                       "near chance, figure 12)",
    "background_only": "training on background only and fully unsupervised training "
                       "perform alike (figure 15)",
    "c2": "every z-norm penalty C2 > 0 is worse than none, monotonically (figure 17)",
    "early_critic": "a critic stopped at half the iterations with a 64-dimensional latent "
                    "detects better than the fully trained baseline critic (figure 19)",
    "solver": "a more thorough latent search (16x100 against 4x50) improves the AUC a lot "
              "(0.91 to 0.98, figure 20)",
    "window": "larger windows were not made to work (section 5.5)",
}
