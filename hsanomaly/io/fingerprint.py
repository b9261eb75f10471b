"""Fingerprints of inputs: what ``--resume`` and ``detect-many`` compare to know a result is current.

A file up to ``FULL_HASH_BYTES`` is hashed whole (sha256 of every byte, with its size): at that
size reading it once more is cheap, and it catches any change at all (a file that was only
touched keeps its fingerprint). A larger file is fingerprinted by its size, its modification
time (nanoseconds) and the sha256 of a deterministic sample: its first and last
``SAMPLE_BLOCK`` bytes (the headers and directories GeoTIFF, ENVI and HDF5 keep there) and
``SAMPLE_BLOCKS`` blocks spread evenly between. Hashing all of a large raster would read it
once more for every run and every batch check; the sample reads a small, fixed amount. A
replaced file changes its mtime (and almost always its size and sampled bytes); what the sample
can miss is an edit confined to unsampled bytes that also restores the mtime, which no ordinary
tool does. In-memory cubes are hashed whole. A dataset GDAL names itself (an archive member,
a subdataset) is fingerprinted by the files on disk it lies in, and a VRT by the files under
it, however deeply nested; only a name with no file on disk (/vsicurl/) falls back on a sample
of its pixels.
"""

import hashlib
import os

import numpy as np

from .digest import file_sha256

FULL_HASH_BYTES = 64 * 2**20
SIDE_HASH_BYTES = 2**20      # the other files an input reads: by content up to this size
SAMPLE_BLOCK = 2**16
SAMPLE_BLOCKS = 64


def file_fingerprint(path, whole=None):
    """{"size", "sha256"} for files of at most ``whole`` bytes (default ``FULL_HASH_BYTES``);
    {"size", "mtime_ns", "sample_sha256"} for larger ones."""
    stat = os.stat(path)
    whole = max(FULL_HASH_BYTES if whole is None else whole,
                (SAMPLE_BLOCKS + 2) * SAMPLE_BLOCK)    # a sample would read more than the file
    if stat.st_size <= whole:
        return {"size": stat.st_size, "sha256": file_sha256(path)}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        last = stat.st_size - SAMPLE_BLOCK
        for offset in np.linspace(0, last, SAMPLE_BLOCKS + 2).astype(np.int64):
            f.seek(int(offset))
            digest.update(f.read(SAMPLE_BLOCK))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sample_sha256": digest.hexdigest()}


def array_fingerprint(*arrays):
    """sha256 of in-memory arrays (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return {"sha256": digest.hexdigest()}


def input_fingerprint(src, source=None):
    """The fingerprint of an input: ``src`` a path (a file is fingerprinted as files, with
    those GDAL reads beside it, so a .mat scene need not be loaded) or a pixel source (its
    in-memory cube)."""
    from .gdal import dataset_files, is_gdal_name, spelled_absolute
    from .paths import is_path

    if is_path(src):
        if not is_gdal_name(src) and os.path.isfile(src):
            return path_fingerprint(src)
        if source is None:
            from .source import open_source

            opened = open_source(src)
            try:
                return input_fingerprint(opened, opened)
            finally:
                opened.close()
    source = source if source is not None else src
    cube = getattr(source, "cube", None)
    if cube is not None:
        return array_fingerprint(cube, source.valid)
    path = getattr(source, "path", None)
    if path and not is_gdal_name(path) and os.path.isfile(path):
        return path_fingerprint(path)
    files = _spelled(dataset_files(path) if path else [])
    if path and files:              # a subdataset, an archive member: the files they lie in
        folder = os.path.dirname(min(files))
        # named as within its folder, as its files are: a moved project keeps its fingerprint
        name = spelled_absolute(path).replace(os.path.join(folder, ""), "")
        return {"name": name, "files": {_relative(key, folder): path_fingerprint(file)
                                        for key, file in sorted(files.items())}}
    return _pixel_fingerprint(source)


def _spelled(files):
    """{the name a fingerprint gives file, the file as GDAL names it}: absolute as the names
    read, a linked folder kept, so that a moved project's side files keep their names (the
    file itself is read where the kernel finds it: 'link/..' is the link's target's
    parent)."""
    return {os.path.abspath(file): file for file in files}


def path_fingerprint(path):
    """The fingerprint of file ``path`` and of the other files GDAL reads for it (a VRT's
    sources, an ENVI header, a mask, a .aux.xml): a change to any of them changes the pixels
    read. A file read alone keeps its ``file_fingerprint``. Side files are named relative to
    the input's folder (a moved project keeps its fingerprints); overviews (.ovr) are left
    out, and of a .aux.xml only what changes the pixels read counts (``_pam_fingerprint``),
    so a viewer's statistics never make an input "changed"."""
    from .gdal import dataset_files

    own = os.path.abspath(path)
    folder = os.path.dirname(own)
    others = _spelled(dataset_files(path))
    others.pop(own, None)
    fingerprint = file_fingerprint(path)
    # an ENVI header places the pixels itself (its "rpc info"), and GDAL copies that into the
    # .aux.xml as a viewer asks for statistics: there the copy is no change
    placing = not any(file.lower().endswith(".hdr") for file in others.values())
    found = {_relative(key, folder): _side_fingerprint(file, placing)
             for key, file in sorted(others.items())
             if os.path.isfile(file) and not file.lower().endswith(".ovr")}
    found = {f: v for f, v in found.items() if v is not None}
    return {**fingerprint, "with": found} if found else fingerprint


def _relative(path, folder):
    try:
        return os.path.relpath(path, folder)
    except ValueError:             # Windows: another drive
        return path


def _side_fingerprint(path, placing=True):
    """A cheap fingerprint of a file GDAL reads beside an input, None where there is nothing
    that changes the pixels: small files (headers, .aux.xml) by content, large ones (a VRT's
    many sources) by size, modification time and a sample of their bytes (another file of
    the same size and time, renamed over one, differs there), an unreadable one by what
    ``stat`` says. ``placing``: a .aux.xml's RPCs and geolocation count (``_pam_fingerprint``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    try:
        if path.lower().endswith(".aux.xml"):
            return _pam_fingerprint(path, placing)
        return file_fingerprint(path, whole=SIDE_HASH_BYTES)
    except (OSError, ValueError):
        pass
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# what in a GDAL .aux.xml changes the pixels read or where they lie; the rest (statistics,
# histograms, and the metadata GDAL copies there from an ENVI header when a viewer asks for
# statistics, which hsanomaly reads from the header itself: ``gdal.envi_header``) does not
PAM_PIXELS = ("SRS", "GeoTransform", "GCPList", "NoDataValue", "Offset", "Scale", "ColorInterp")
# the metadata domains that place the pixels, copied onto every output (``io.heatmap``)
PAM_PLACING = ("RPC", "GEOLOCATION")


def _pam_fingerprint(path, placing=True):
    """sha256 of what in a GDAL .aux.xml changes the pixels read or where they lie
    (``PAM_PIXELS``, of the dataset and of each band, and ``PAM_PLACING``'s metadata), None
    if nothing does."""
    import json
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(str(err)) from None

    for element in root.iter():          # GDAL re-indents the file whenever it rewrites it
        element.text = (element.text or "").strip() or None
        element.tail = None

    def kept(element):
        return [ET.tostring(child).decode() for child in element if child.tag in PAM_PIXELS
                or (placing and child.tag == "Metadata" and child.get("domain") in PAM_PLACING)]
    found = {"dataset": kept(root)}
    for band in root.iter("PAMRasterBand"):
        found[f"band {band.get('band')}"] = kept(band)
    found = {k: v for k, v in found.items() if v}
    if not found:
        return None
    return {"pam_sha256": hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()}


def without_served(fingerprint):
    """An input's fingerprint less what a server stated of it (``_pixel_fingerprint``): some
    servers state a new Last-Modified or ETag in every answer, which between runs only scores
    a raster again, but within one run would fail it as "changed while it was scored"."""
    return {k: v for k, v in fingerprint.items() if k != "served"} \
        if isinstance(fingerprint, dict) else fingerprint


def _pixel_fingerprint(source):
    """A dataset without a file on disk (/vsicurl/...): what its server states of it (ETag,
    Last-Modified, size: ``gdal.served_as``), and sha256 of the pixels of its first, middle
    and last tiles, with its size (all there is where the server states nothing). Named
    without a signed URL's secrets: signed anew, the same file is the same input."""
    from .gdal import served_as, without_secrets

    windows = source.windows()
    picked = sorted({0, len(windows) // 2, len(windows) - 1})
    digest = hashlib.sha256(f"{source.count}x{source.height}x{source.width};".encode())
    for i in picked:
        block, valid = source.read(windows[i], masked=False)    # the input, not the job
        digest.update(block.tobytes())
        digest.update(valid.tobytes())
    served = served_as(getattr(source, "path", source.name))     # asked as signed
    return {"name": without_secrets(source.name), "sample_sha256": digest.hexdigest(),
            **({"served": served} if served else {})}


def digest(obj):
    """A short, stable sha256 of a plain-JSON object."""
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]
