"""The types the front door's hints name, in one place.

The package ships ``py.typed``, so a type checker or an editor reads these from
``hsanomaly.detect``, ``Detector`` and the rest. Optional libraries (xarray, Dask, rasterio's
classes) are named for the checker only: importing hsanomaly never imports them.
"""

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Union

if TYPE_CHECKING:
    import numpy.typing
    import rasterio.io
    import xarray
    from distributed import Client

    from .model.bundle import Bundle

PathArg = Union[str, "os.PathLike[str]"]
# inputs of ``train`` and ``detect_many``: a path or wildcard pattern, or a list of them
Inputs = Union[PathArg, Sequence[PathArg]]
# a model bundle: its folder, or the Bundle ``train`` returns
ModelArg = Union[PathArg, "Bundle"]
# what ``Detector`` scores: a cube (bands, rows, cols), an open rasterio dataset, a DataArray
Scene = Union["numpy.typing.ArrayLike", "rasterio.io.DatasetReader", "xarray.DataArray"]
# a Dask scheduler: its address, or a Client used as it is
Scheduler = Union[str, "Client"]
# callback(fraction done, message) -> True cancels the run
Progress = Callable[[float, str], Optional[bool]]
# evaluate's report: "auc", "log_auc", "lg_far", "pd", the counts "n_*", "targets", ...
Report = Dict[str, Any]
