"""The types the front door's hints name, in one place.

The package ships ``py.typed``, so a type checker or an editor reads these from
``hsanomaly.detect``, ``Detector`` and the rest. Optional libraries (xarray, Dask, rasterio's
classes) are named for the checker only: importing hsanomaly never imports them.
"""

import os
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Literal, Optional, Protocol,
                    SupportsFloat, Union)

if TYPE_CHECKING:
    import xarray
    from distributed import Client

    from .model.bundle import Bundle


class SupportsArray(Protocol):
    """Anything numpy turns into an array (numpy's, a masked array, Dask's, torch's)."""

    def __array__(self, *args: Any, **kwargs: Any) -> Any: ...


class OpenDataset(Protocol):
    """An open rasterio dataset, as ``Detector`` tells one (rasterio has no hints of its own,
    so naming its class would let a checker pass anything)."""

    profile: Any

    def read(self, *args: Any, **kwargs: Any) -> Any: ...


PathArg = Union[str, "os.PathLike[str]"]
# inputs of ``train`` and ``detect_many``: a path or wildcard pattern, or several of them
Inputs = Union[PathArg, Iterable[PathArg]]
# a model bundle: its folder, or the Bundle ``train`` returns
ModelArg = Union[PathArg, "Bundle"]
# what ``Detector`` scores: a cube (bands, rows, cols), an open rasterio dataset, a DataArray
Cube = Union[SupportsArray, OpenDataset, "xarray.DataArray"]
Scene = Cube         # its former name (hsanomaly.io.Scene is a scene with its truth): goes in 0.3
# scores or a mask in memory: a (rows, cols) array (masked: masked = nodata) or a DataArray
Scores = Union[SupportsArray, "xarray.DataArray"]
# a false-alarm rate for ``detect``'s polygons, or "auto" (a tail fit of the scores)
FalseAlarmRate = Union[SupportsFloat, Literal["auto"]]
# a Dask scheduler: its address, or a Client used as it is
Scheduler = Union[str, "Client"]
# callback(fraction done, message) -> True cancels the run
Progress = Callable[[float, str], Optional[bool]]
# evaluate's report: "auc", "log_auc", "lg_far", "pd", the counts "n_*", "targets", ...
Report = Dict[str, Any]
