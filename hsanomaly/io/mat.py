"""Benchmark scenes distributed as MATLAB files (v5 through scipy, v7.3 through h5py)."""

import numpy as np

from ..errors import HsanomalyError

CUBE_NAMES = ("data", "image", "img", "hsi", "cube", "X", "Y")
TRUTH_NAMES = ("map", "mask", "gt", "groundtruth", "ground_truth", "label", "labels")


def _load_variables(path):
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3; h5py sees arrays transposed (column-major)
        with h5py.File(path, "r") as f:
            return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
    try:
        return scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        raise HsanomalyError(f"{path}: not a readable MATLAB file ({err})") from None


def _pick(variables, names, ndim):
    arrays = {k: v for k, v in variables.items()
              if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == ndim
              and v.dtype.kind in "uifb"}
    lower = {k.lower(): k for k in arrays}
    for name in names:
        if name.lower() in lower:
            return arrays[lower[name.lower()]]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    return None


def read_mat(path):
    """Return (cube float32 (bands, rows, cols), truth uint8 (rows, cols) or None)."""
    variables = _load_variables(path)
    cube = _pick(variables, CUBE_NAMES, 3)
    if cube is None:
        raise HsanomalyError(f"{path}: no 3-D hyperspectral cube variable found in the .mat file")
    cube = np.ascontiguousarray(np.moveaxis(cube, -1, 0), dtype=np.float32)
    truth = _pick(variables, TRUTH_NAMES, 2)
    if truth is not None:
        if truth.shape != cube.shape[1:]:
            raise HsanomalyError(
                f"{path}: ground truth shape {truth.shape} does not match cube {cube.shape[1:]}")
        truth = (truth != 0).astype(np.uint8)
    return cube, truth
