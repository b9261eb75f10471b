"""Every default the user meets, in one place: the library, the CLI, QGIS and Dask read them here.

Changing a value here changes it everywhere, help texts included; ``tests/test_defaults.py``
checks that no shell restates one by hand. Nothing here imports beyond the standard library.
"""

# The score ``hsanomaly detect`` and ``Detector`` use when none is named (docs/benchmark.md).
SCORE = "dualcontext"

# Tiles: the engine's unit of reading, scoring, storing and resuming.
TILE = 256
MIN_TILE = 8               # the smallest tile the engine takes
TILE_THREADS = 2           # tiles scored at once in a process (numpy, onnxruntime release the GIL)

# Training (hsanomaly.training.settings.Settings reads these).
ITERATIONS = 250           # generator iterations (docs/training/quality.md)
CRITIC_STEPS = 2           # critic updates per generator iteration
TRAIN_WINDOW = 1           # spatial window of the training patches (odd; 1 = spectra only)
TRAIN_SEED = 0
TRAIN_BANDS = 32           # training bins the spectrum to at most this many bands
TRAIN_DIM = 8              # the networks' width (channels of their first layer)
TRAIN_LATENT_DIM = 4       # the generator's latent dimension
TRAIN_BATCH = 64           # windows per step
TRAIN_LR = 1e-3            # Adam's learning rate
TRAIN_THREADS = 1          # torch CPU threads: too small a network for more (docs/training/threads.md)

# The random seed of scoring: sample draws, latent codebooks, mixtures.
SEED = 0
SEED_MAX = 2**32 - 1       # the largest seed numpy and scikit-learn take

# Latent search for the reconstruction cost (hsanomaly.latent).
SOLVER = "fast"            # "fast" (codebook + Gauss-Newton) or "thesis" (restarts x steps)
CODEBOOK = 65536           # fast solver: codebook entries
MIN_CODEBOOK = 16          # fast solver: the fewest codebook entries
REFINE = 0                 # fast solver: Gauss-Newton steps from the best codebook entry
CODEBOOK_SCALE = 1.0       # fast solver: the codebook's latent spread, in the prior's standard deviations
                           # (the prior the generator was trained on; docs/ablations.md)
RESTARTS = 16              # thesis solver: random restarts
STEPS = 100                # thesis solver: gradient steps per restart
C1 = 1.0                   # weight of the reconstruction error mean((x - G(z))^2)
C2 = 0.0                   # weight of the latent prior mean(z^2)
LAM = 0.1                  # anogan: weight of the critic-feature distance

# Local RX rings (outer / guard window, odd pixel sizes).
LRX_OUTER, LRX_GUARD = 15, 5              # the lrx baseline
CONTEXT_OUTER, CONTEXT_GUARD = 21, 7      # the local term of the context score
LRX_PCA = 10                              # principal components local RX works in
RINGS = ((7, 3), (11, 5), (15, 5), (21, 7), (25, 9), (31, 11), (41, 15))  # multi-ring scores
TOP_RINGS = 0              # multi-ring scores: average a pixel's largest ring distances only (0: all)

# Residual scores: pixels drawn to fit the residual statistics.
RESIDUAL_SAMPLE = 20000
RESIDUAL_TRIM = 0.0        # fraction of the most distant residuals left out of their statistics
DUAL_WEIGHT = 0.5          # dualcontext: weight of the resrx term beside the two spatial terms
PURGE = 0.0                # fraction of pixels (the score's own first pass ranks them highest) left out of the rings
DUAL_PURGE = 0.03          # dualcontext's purge (docs/benchmark.md: the held-out selection)
NEIGHBOUR_WEIGHT = 0.0     # ring and residual scores: the 3x3 neighbourhood's highest score, weighted, is added
DUAL_TOP_RINGS = 4         # dualcontext: rings averaged per pixel (docs/benchmark.md: the held-out selection)
DUAL_NEIGHBOUR_WEIGHT = 0.5  # dualcontext's neighbour_weight (docs/benchmark.md: the held-out selection)

# Gaussian mixture baseline.
GMM_COMPONENTS, GMM_PCA, GMM_SAMPLE = 5, 25, 50_000

# Where the networks run (scoring and training): cpu, cuda (the first GPU) or cuda:N.
DEVICE = "cpu"

# Evaluation: the false-alarm rate at which Pd (the share of target pixels found) is reported.
PD_FAR = 0.001             # one false pixel in a thousand
