"""hsanomaly: unsupervised anomaly detection in hyperspectral rasters with Wasserstein GANs."""

__version__ = "0.1.0"
