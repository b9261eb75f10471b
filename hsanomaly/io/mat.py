"""Benchmark scenes distributed as MATLAB files (v5 through scipy, v7.3 through h5py).

The variables are chosen from the file's header (``scipy.io.whosmat``, HDF5 dataset shapes)
and only the cube and truth are loaded, after checking that the memory available can hold
them: a file that declares a huge cube is refused with one line, not a MemoryError.
"""

import os
import zlib

import numpy as np

from ..errors import HsanomalyError, OutOfResources, describe
from .checks import check_memory
from .units import nanometres
from .values import warn_mask_values

CUBE_NAMES = ("data", "image", "img", "hsi", "cube", "X", "Y")
TRUTH_NAMES = ("map", "mask", "gt", "groundtruth", "ground_truth", "gt_map", "truth",
               "label", "labels", "target", "targets", "anomaly", "anomalies", "anomaly_map")
WAVELENGTH_NAMES = ("wavelength", "wavelengths", "wl", "wave", "lambda", "centers", "centres")
# MATLAB classes of numeric arrays -> bytes per element (whosmat reports classes, not dtypes)
ITEMSIZE = {"double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
            "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "logical": 1}
NOT_NUMERIC = ("char", "cell", "struct", "function_handle")   # v7.3 classes stored as numbers
UNKNOWN = 255   # a truth pixel that is NaN in the file: left out of evaluations, as nodata is
# Bytes per cube element at the peak of loading: the file's own type plus two float32 copies.
LOAD_OVERHEAD = 8


# what scipy's and h5py's readers raise on a file that is not, or not all, a .mat (a truncated
# header ends in an IndexError inside scipy's parser, a damaged compressed variable in zlib's)
READ_ERRORS = (ValueError, TypeError, OSError, NotImplementedError, IndexError, zlib.error,
               EOFError)


def _unreadable(path, err):
    if isinstance(err, FileNotFoundError):       # as every other input says it
        return HsanomalyError(f"{path}: file not found")
    return HsanomalyError(f"{path}: not a readable MATLAB file ({describe(err)})")


def _headers(path):
    """{name: (shape in loadmat's order, bytes per element, complex?)} of numeric variables."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3; h5py sees arrays transposed (column-major)
        found = {}
        try:
            f = h5py.File(path, "r")
        except READ_ERRORS as err:          # a truncated copy, say
            raise _unreadable(path, err) from None
        with f:
            _refuse_stored_outside(path, f)
            for name, item in f.items():
                if not isinstance(item, h5py.Dataset) or _matlab_class(item) in NOT_NUMERIC:
                    continue
                dtype = item.dtype
                is_complex = dtype.kind == "c" or (dtype.names is not None and
                                                   set(dtype.names) == {"real", "imag"})
                if dtype.kind in "uifbc" or is_complex:
                    found[name] = (tuple(item.shape[::-1]), dtype.itemsize, is_complex)
        return found
    try:
        listing = scipy.io.whosmat(str(path))
    except READ_ERRORS + (scipy.io.matlab.MatReadError,) as err:
        raise _unreadable(path, err) from None
    return {name: (tuple(shape), ITEMSIZE[cls], False) for name, shape, cls in listing
            if cls in ITEMSIZE}


def _refuse_stored_outside(path, group, seen=None):
    """Refuse a v7.3 file any of whose variables HDF5 would read from another file (an external
    link, a virtual dataset, external raw storage): MATLAB writes none, and read they would
    put any file the user can read (a key, say) into the scene and whatever is written of it.
    Each group is looked into once (links may lead back up); a soft link names a path of the
    file, looked into where it lies."""
    import h5py

    seen = set() if seen is None else seen
    seen.add(h5py.h5o.get_info(group.id).addr)
    for name in group:
        link = group.get(name, getlink=True)
        where = None
        if isinstance(link, h5py.ExternalLink):
            where = f"an external link to {link.filename}"
        elif not isinstance(link, h5py.SoftLink):
            item = group.get(name)
            if isinstance(item, h5py.Group):
                if h5py.h5o.get_info(item.id).addr not in seen:
                    _refuse_stored_outside(path, item, seen)
            elif isinstance(item, h5py.Dataset) and item.is_virtual:
                where = "a virtual dataset, mapping other files"
            elif isinstance(item, h5py.Dataset) and item.external:
                where = f"external storage in {os.fsdecode(item.external[0][0])}"
        if where:
            variable = f"{group.name}/{name}".lstrip("/")
            raise HsanomalyError(f"{path}: the variable {variable} is stored "
                                 f"outside the file ({where}), which is not read; save the "
                                 "data inside the .mat file")


def _matlab_class(dataset):
    """The MATLAB class v7.3 records with each variable (text is stored as uint16 codes)."""
    value = dataset.attrs.get("MATLAB_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _pick(headers, names, ndim):
    candidates = {k: v for k, v in headers.items() if not k.startswith("__") and len(v[0]) == ndim}
    lower = {k.lower(): k for k in candidates}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    if len(candidates) == 1:
        return next(iter(candidates))
    return None


def _load(path, names):
    import h5py
    import scipy.io

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                _refuse_stored_outside(path, f)            # the file may be new since _headers
                return {k: np.asarray(f[k]).T for k in names}
        return scipy.io.loadmat(str(path), variable_names=list(names))
    except MemoryError:
        raise OutOfResources(f"{path}: not enough memory to load the .mat file") from None
    except READ_ERRORS + (scipy.io.matlab.MatReadError, KeyError) as err:
        raise _unreadable(path, err) from None


def read_mat(path, labels=False):
    """Return (cube (bands, rows, cols) in the file's numeric type, truth uint8 (rows, cols) or
    None); a truth's NaN pixels (not known either way) are ``UNKNOWN``, never targets. With
    ``labels`` the truth is the file's own array (labels, NaN), not that mask."""
    cube_name, truth_name, bands_first = mat_layout(path)
    variables = _load(path, [cube_name] + ([truth_name] if truth_name else []))
    cube = variables[cube_name]
    if cube.dtype.kind == "c":
        raise HsanomalyError(f"{path}: the cube {cube_name!r} has complex pixels ({cube.dtype}), "
                             "which are not supported; convert to amplitude or real/imaginary "
                             "bands first")
    if cube.dtype.kind not in "uifb" or cube.ndim != 3:
        raise HsanomalyError(f"{path}: the variable {cube_name!r} is not a numeric 3-D cube")
    # in the file's own type: ArraySource and convert check what float32 would lose
    cube = np.ascontiguousarray(cube if bands_first else np.moveaxis(cube, -1, 0))
    cube = cube.astype(np.uint8) if cube.dtype.kind == "b" else cube
    truth = variables.get(truth_name) if truth_name else None
    if labels:
        return cube, truth if _mask(truth) is not None else None
    return cube, _mask(truth, path)


def mat_layout(path):
    """(cube variable, truth variable or None, whether the cube is saved bands first) of the
    .mat scene ``path``, from its headers alone: what ``read_mat`` refuses before it loads
    anything is refused here too, so a batch of scenes can be checked before any is scored."""
    headers = _headers(path)
    cube_name = _pick(headers, CUBE_NAMES, 3)
    if cube_name is None:
        cubes = sorted(k for k, v in headers.items() if not k.startswith("__") and len(v[0]) == 3)
        if cubes:
            raise HsanomalyError(f"{path}: {len(cubes)} 3-D variables ({', '.join(cubes)}) and "
                                 f"none named as a cube ({', '.join(CUBE_NAMES)}); keep or rename "
                                 "one")
        raise HsanomalyError(f"{path}: no 3-D hyperspectral cube variable found in the .mat file")
    shape, itemsize, is_complex = headers[cube_name]
    if is_complex:
        raise HsanomalyError(f"{path}: the cube {cube_name!r} has complex pixels, which are not "
                             "supported; convert to amplitude or real/imaginary bands first")
    check_memory(path, int(np.prod(shape, dtype=np.float64)) * (itemsize + LOAD_OVERHEAD),
                 f"loading the {'x'.join(map(str, shape))} cube {cube_name!r}")
    truth_name = _truth_name(path, headers, cube_name)
    bands_first = _bands_first(path, shape, truth_name and headers[truth_name][0], truth_name)
    return cube_name, truth_name, bands_first


def _bands_first(path, shape, truth_shape, truth_name):
    """Whether a cube of ``shape`` (the file's order) holds its bands first: benchmark scenes
    keep them last, (rows, cols, bands), but some are saved (bands, rows, cols); the truth's
    (rows, cols) tells which. Without a truth, last."""
    if truth_shape is None or tuple(truth_shape) == tuple(shape[:2]):
        return False
    if tuple(truth_shape) == tuple(shape[1:]):
        return True
    raise HsanomalyError(f"{path}: the ground truth {truth_name!r} is {truth_shape[0]} x "
                         f"{truth_shape[1]} pixels, and the cube ({' x '.join(map(str, shape))}) "
                         f"has no two axes of that size to be its rows and columns")


def read_mat_wavelengths(path, bands):
    """The band centres in nm of a .mat scene of ``bands`` bands: a vector named like one
    (``WAVELENGTH_NAMES``, 1 x bands or bands x 1), in micrometres where every value is
    below 30 (the rule for unitless centres), else nanometres; None without one."""
    headers = _headers(path)
    lower = {k.lower(): k for k in headers if not k.startswith("__")}
    for name in WAVELENGTH_NAMES:
        found = lower.get(name)
        if found is not None and sorted(headers[found][0]) in ([1, bands], [bands]) \
                and not headers[found][2]:
            values = np.asarray(_load(path, [found])[found], dtype=np.float64).ravel()
            if np.isfinite(values).all():
                return nanometres(values.tolist(), None)
    return None


def read_mat_truth(path):
    """The truth of a .mat file as ``read_mat`` gives it, or None; the file may hold a scene
    or only its 2-D mask (a truth saved on its own), and no cube is loaded."""
    headers = _headers(path)
    name = _truth_name(path, headers, _pick(headers, CUBE_NAMES, 3))
    return _mask(_load(path, [name])[name], path) if name else None


def _truth_name(path, headers, cube_name):
    """The truth variable: one named as a truth, or else the only 2-D variable of the size of
    a (rows, cols, bands) cube's rows and columns (a wavelength vector, 1 x bands, is no
    truth). Only a variable named as one may say the cube is saved bands first: an unnamed
    one of the size of the cube's last two axes (a truth? a cols x bands calibration?) is
    refused, not guessed."""
    others = {k: v for k, v in headers.items() if k != cube_name}
    named = _pick(others, TRUTH_NAMES, 2)
    if named is not None and named.lower() in (n.lower() for n in TRUTH_NAMES):
        return named
    if cube_name is None:
        return _pick(others, (), 2)
    shape = headers[cube_name][0]
    flat = {k: tuple(v[0]) for k, v in others.items() if len(v[0]) == 2 and not k.startswith("__")}
    if not any(s == tuple(shape[:2]) for s in flat.values()):
        last = [k for k, s in flat.items() if s == tuple(shape[1:])]
        if last:
            raise HsanomalyError(
                f"{path}: the variable {last[0]!r} ({shape[1]} x {shape[2]}) has the size of the "
                f"cube's last two axes: the truth of a cube saved (bands, rows, cols), or "
                f"something else? Name a truth {TRUTH_NAMES[0]!r} (or gt, mask, truth), or "
                "remove the variable")
    return _pick({k: v for k, v in others.items()
                  if len(v[0]) != 2 or tuple(v[0]) == tuple(shape[:2])}, (), 2)


def _mask(truth, path=None):
    """uint8: 1 where non-zero, 0 where zero, UNKNOWN where NaN; None for no usable mask.
    With the file's ``path``, its negative values (non-zero, so targets) are said."""
    if truth is None or truth.dtype.kind not in "uifb" or truth.ndim != 2:
        return None
    unknown = np.isnan(truth) if truth.dtype.kind == "f" else np.zeros(truth.shape, bool)
    if path is not None:
        warn_mask_values(path, truth, unknown, lambda value: "set those pixels to NaN in the "
                           "file, which marks them unknown")
    return np.where(unknown, UNKNOWN, np.nan_to_num(truth) != 0).astype(np.uint8)
