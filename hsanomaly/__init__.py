"""hsanomaly: unsupervised anomaly detection in hyperspectral rasters with Wasserstein GANs."""

from ._version import __version__
