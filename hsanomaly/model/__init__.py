"""Model bundles: load and validate the ONNX networks a trained model consists of (no torch)."""

from .bundle import Bundle, check_bands, load_bundle

__all__ = ["Bundle", "check_bands", "load_bundle"]
