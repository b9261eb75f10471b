"""The types the front door's hints name, in one place.

The package ships ``py.typed``, so a type checker or an editor reads these from
``hsanomaly.detect``, ``Detector`` and the rest. Optional libraries (xarray, Dask, rasterio's
classes) are described by what they have (Protocols), never named: a checker where they are not
installed would take an unknown class for Any, and pass anything (or return Any) there.
"""

import os
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Literal, Optional, Protocol,
                    SupportsFloat, Union)

if TYPE_CHECKING:
    from .model.bundle import Bundle


class SupportsArray(Protocol):
    """Anything numpy turns into an array (numpy's, a masked array, Dask's, torch's)."""

    def __array__(self, *args: Any, **kwargs: Any) -> Any: ...


class OpenDataset(Protocol):
    """An open rasterio dataset, as ``Detector`` tells one (rasterio has no hints of its own,
    so naming its class would let a checker pass anything)."""

    profile: Any

    def read(self, *args: Any, **kwargs: Any) -> Any: ...


class LabelledArray(Protocol):
    """An xarray DataArray, told by what only it has: its dimensions' names and coordinates."""

    @property
    def dims(self) -> Any: ...

    @property
    def coords(self) -> Any: ...

    def __array__(self, *args: Any, **kwargs: Any) -> Any: ...


class DaskClient(Protocol):
    """A Dask distributed Client, used as it is."""

    def submit(self, *args: Any, **kwargs: Any) -> Any: ...

    def scheduler_info(self, *args: Any, **kwargs: Any) -> Any: ...


PathArg = Union[str, "os.PathLike[str]"]
# inputs of ``train`` and ``detect_many``: a path or wildcard pattern, or several of them
Inputs = Union[PathArg, Iterable[PathArg]]
# a model bundle: its folder, or the Bundle ``train`` returns
ModelArg = Union[PathArg, "Bundle"]
# what ``Detector`` scores: a cube (bands, rows, cols), an open rasterio dataset, a DataArray
Cube = Union[SupportsArray, OpenDataset, LabelledArray]
Scene = Cube         # its former name (hsanomaly.io.Scene is a scene with its truth): goes in 0.3
# scores or a mask in memory: a (rows, cols) array (masked: masked = nodata) or a DataArray
Scores = Union[SupportsArray, LabelledArray]
# a false-alarm rate for ``detect``'s polygons, or "auto" (a tail fit of the scores)
FalseAlarmRate = Union[SupportsFloat, Literal["auto"]]
# a Dask scheduler: its address, or a Client used as it is
Scheduler = Union[str, DaskClient]
# callback(fraction done, message) -> True cancels the run
Progress = Callable[[float, str], Optional[bool]]
# evaluate's report: "auc", "log_auc", "lg_far", "pd", the counts "n_*", "targets", ...
Report = Dict[str, Any]
