"""Reading scenes (any GDAL raster, benchmark .mat files) and writing GeoTIFFs atomically."""

from .atomic import atomic_path
from .mat import read_mat
from .source import ArraySource, RasterSource, open_source
from .scene import Scene, read_scene, read_truth

__all__ = ["ArraySource", "RasterSource", "Scene", "atomic_path", "open_source",
           "read_mat", "read_scene", "read_truth"]
