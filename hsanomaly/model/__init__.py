"""Model bundles: load and validate the ONNX networks a trained model consists of (no torch)."""

from .bundle import Bundle, check_bands, load_bundle
from .compat import check_scaling, check_value_range, check_wavelengths

__all__ = ["Bundle", "check_bands", "check_scaling", "check_value_range", "check_wavelengths",
           "load_bundle"]
