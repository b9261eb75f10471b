"""GDAL datasets: their names (a file, a subdataset, a virtual file system path), opening and
reading them with one-line errors, the files on disk they read, and what their headers say
(bad bands, band wavelengths, a raw data file's size)."""

import contextlib
import functools
import gzip
import itertools
import numbers
import os
import posixpath
import re
import threading
import zlib
from pathlib import Path

import numpy as np

from ..errors import HsanomalyError, describe, ignoring
from .checks import absolute, special_kind
from .units import nanometres

# GDAL's block cache defaults to 5% of RAM; cap it so memory is bounded by the tile size.
GDAL_CACHE_BYTES = 256 * 2**20


_HOLD = threading.Lock()
_held: dict = {}     # GDAL config key -> [gdal_env blocks open that set it, its value before]


@contextlib.contextmanager
def gdal_env(cache_bytes=GDAL_CACHE_BYTES, **options):
    """The rasterio environment every read and write of the engine runs in; ``cache_bytes``:
    GDAL's block cache (a striped raster's reads need more: ``RasterSource.cache_for``);
    ``options``: other GDAL config options the block pins (``heatmap.OVERVIEW_CONFIG``).
    GDAL's settings are the whole process's, and rasterio's environments are a thread's:
    inside a caller's environment (a ``rasterio.open`` block holds one) rasterio does not put
    them back, nor where two threads' blocks overlap (two runs at once in QGIS), and a block
    nested in another unsets what it set, a caller's own ``set_gdal_config`` with it; this
    puts each back, the last block to end the value from before the first."""
    import rasterio
    from rasterio._env import del_gdal_config
    from rasterio.env import get_gdal_config, set_gdal_config

    settings = {"GDAL_CACHEMAX": int(cache_bytes), **options}
    with _HOLD:
        for key in settings:
            held = _held.setdefault(key, [0, None])
            if held[0] == 0:          # one the environment gives stays its to give (None)
                before = get_gdal_config(key, normalize=False)
                held[1] = None if before == os.environ.get(key) else before
            held[0] += 1
    try:
        # a block inside another of this thread's: rasterio puts back the outer one's values
        with rasterio.Env(**settings) as env:
            yield env
    finally:
        with _HOLD:
            for key in settings:
                _held[key][0] -= 1
                if _held[key][0] == 0 and _held[key][1] is None:
                    del_gdal_config(key)         # (set to None, rasterio writes "None")
                elif _held[key][0] == 0:
                    set_gdal_config(key, _held[key][1], normalize=False)


# A GDAL dataset name that is not a plain file path: a virtual file system path (/vsizip/...,
# /vsicurl/...) or a URL; or a subdataset or connection (NETCDF:"f.nc":var, HDF5:...,
# GTIFF_DIR:2:f.tif, PG:dbname=...), whose prefix is a driver's name or one of these. Any
# other prefix is a file's name with a colon in it ("flight_10:30.tif").
_VIRTUAL = re.compile(r"^(/vsi[a-z0-9_]+/|[a-z][a-z0-9+.-]*://)")
_PREFIX = re.compile(r"^([A-Za-z0-9_]{2,}):")
SUBDATASET_PREFIXES = {
    "HDF4", "HDF4_SDS", "HDF4_EOS", "HDF4_GR", "GTIFF_DIR", "GTIFF_RAW", "NITF_IM",
    "NITF_TOC_ENTRY", "ECRG_TOC_ENTRY", "SENTINEL2_L1B", "SENTINEL2_L1C", "SENTINEL2_L2A",
    "SENTINEL2_L1C_TILE", "SENTINEL1_CALIB", "RADARSAT_2_CALIB", "RCM_CALIB", "PG", "GEORASTER",
    "EOPFZARR", "TILEDB"}
# subdatasets of one file on disk whose libraries print their own error stacks (HDF5-DIAG)
# where it is missing: the file is looked for first
FILE_PREFIXES = {"HDF5", "HDF4", "HDF4_SDS", "HDF4_EOS", "HDF4_GR", "NETCDF"}


def is_gdal_name(path):
    """True for dataset names GDAL resolves itself, which are not files on disk."""
    text = str(path)
    prefix = _PREFIX.match(text)
    return bool(_VIRTUAL.match(text)) or (prefix is not None
                                          and prefix.group(1).upper() in _gdal_prefixes())


@functools.lru_cache(maxsize=1)
def _gdal_prefixes():
    import rasterio

    with rasterio.Env() as env:
        return {name.upper() for name in env.drivers()} | SUBDATASET_PREFIXES


def check_driver(name, label, vector=False):
    """Refuse output ``label`` where the GDAL that writes it lacks its driver ``name``
    (GDAL_SKIP, a build without it), before the work: writing it would fail after the whole
    run. ``vector``: written through pyogrio, whose wheel may bring a GDAL of its own."""
    if vector:
        import pyogrio

        drivers = pyogrio.list_drivers(write=True)
    else:
        import rasterio

        with rasterio.Env() as env:
            drivers = env.drivers()
    if name not in drivers:
        raise HsanomalyError(f"{label}: this GDAL has no {name} driver to write it with "
                             "(GDAL_SKIP names it, or GDAL was built without it)")


def warn_unusable_proj():
    """Warn, once a job (``warn_once``), where PROJ cannot read its database (``PROJ_LIB``/
    ``PROJ_DATA`` naming another PROJ's, or none): GDAL then writes an output's CRS as a
    user-defined one without its EPSG code, equal in its parameters, which readers that go by
    the code miss (a GeoTIFF's EPSG geokey too: reading it needs the database)."""
    from .checks import warn_once

    problem = _proj_database_problem()
    if problem is not None:
        warn_once(f"PROJ cannot read its database ({problem}), so an output's coordinate "
                  "system may lose its EPSG code (a GIS then shows a custom CRS, equal in its "
                  "parameters); unset PROJ_LIB "
                  "and PROJ_DATA, or point them at the database of rasterio's own PROJ")


@functools.lru_cache(maxsize=1)
def _proj_database_problem():
    """Why PROJ cannot read its database, or None; looked at once a process (the environment
    it reads is read when it starts)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with rasterio.Env():       # its handler takes GDAL's message (printed raw without)
            CRS.from_epsg(4326)
    except CRSError as err:
        return describe(err)
    return None


def require_file(path, file=None):
    """Refuse, as every input says it, a ``file`` (default ``path``; ``path`` names it in the
    message) that does not exist, unless GDAL names it without one (``/vsizip/``, a
    subdataset), or that is a pipe or a device: GDAL's open would wait on a pipe that no
    program writes, where no interrupt reaches it."""
    file = path if file is None else file
    if is_gdal_name(file):
        prefix = _PREFIX.match(str(file))
        if prefix and prefix.group(1).upper() in FILE_PREFIXES and not is_remote(file) \
                and not local_files(file):       # HDF5's library prints its error stack
            raise HsanomalyError(f"{path}: file not found (the file its subdataset lies in)")
        return
    try:
        mode = os.stat(file).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise HsanomalyError(f"{path}: file not found") from None
    except OSError as err:
        raise HsanomalyError(f"{path}: cannot read it ({describe(err)})") from None
    kind = special_kind(mode)
    if kind:
        raise HsanomalyError(f"{path}: {kind}, not a file; hsanomaly reads its inputs from files")


# Settings GIS users export for reads over the network (GDAL's cloud-optimised-read advice),
# which on a raster on disk hide its side files: its mask (.msk), the nodata and scales of its
# .aux.xml, an ENVI header. A local raster is read with them, whatever the environment says.
LOCAL_READS = {"GDAL_DISABLE_READDIR_ON_OPEN": "FALSE", "GDAL_PAM_ENABLED": "YES"}
# a name GDAL reads over the network: a network file system's, or a URL (rasterio's spelling,
# "zip+https://" too); not rasterio's local archives ("zip://a.zip!m.tif")
_REMOTE = re.compile(r"/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)(_streaming)?/"
                     r"|(^|\+)(https?|ftp|s3|gs|az|adls|oss|swift)://", re.IGNORECASE)
# rasterio's spelling of a member of a local archive, and GDAL's of it
_ARCHIVE_SCHEME = re.compile(r"^(zip|tar|gzip)(?:\+file)?://([^!]*)(?:!(.*))?$")
# a URL: its scheme, credentials, path and query, up to a "}" that closes it inside GDAL's
# name of an archive's member (/vsizip/{/vsicurl/https://h/a.zip?sig=x}/m.tif)
_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/?#@}]*@)?(?P<path>[^?#}]*)"
                  r"(?:\?(?P<query>[^#}]*))?(?:#[^}]*)?", re.IGNORECASE)
# a remote archive, within GDAL's name of one of its members: the file the server states of
_REMOTE_ARCHIVE = re.compile(r"^/vsi(?:zip|tar|gzip)/(?:\{(?P<braced>[^}]*)\}|(?P<plain>.*?\."
                             r"(?:zip|tar|tgz|tar\.gz|gz)(?=/|$)))", re.IGNORECASE)
# the query parameters that sign a URL (Azure's SAS, S3's and Google's X-Amz-*/X-Goog-*,
# CloudFront's): a secret, and new each time one file is signed again
SIGNING = {"sig", "signature", "se", "st", "sp", "sv", "sr", "spr", "ss", "srt", "skoid",
           "sktid", "skt", "ske", "sks", "skv", "ses", "token", "access_token", "expires",
           "key-pair-id", "policy", "awsaccesskeyid", "security-token", "api_key", "apikey",
           "access_key", "auth"}


def is_remote(name):
    """Whether GDAL reads dataset ``name`` over the network."""
    return bool(_REMOTE.search(str(name)))


def gdal_spelling(name):
    """Dataset ``name`` as GDAL spells it where rasterio spells it otherwise: a member of a
    local archive, "zip://a.zip!m.tif", is /vsizip/a.zip/m.tif (one dataset, one key)."""
    found = _ARCHIVE_SCHEME.match(str(name))
    if found is None:
        return str(name)
    kind, archive, member = found.groups()
    return f"/vsi{kind}/{archive}" + (f"/{member}" if member else "")


def without_secrets(name):
    """Dataset ``name`` without what its URL carries as secrets, credentials and a signature's
    query parameters (``SIGNING``): the name a result records, the same for every signing
    of one file. Other names are as they are."""
    text = str(name)
    found = _URL.search(text)
    if found is None or not is_remote(text):
        return text
    query = "&".join(part for part in (found["query"] or "").split("&")
                     if part and not _signs(part.partition("=")[0]))
    return (text[:found.start()] + found["scheme"] + found["path"] + (f"?{query}" if query else "")
            + text[found.end():])


def scrubbed(text, name):
    """``text``, a message about dataset ``name`` (GDAL's own words among it, which name the
    file with its query), with the name's secrets left out (``without_secrets``)."""
    name = str(name)
    found = _URL.search(name) if is_remote(name) else None
    if found is None:
        return text
    text = text.replace(name, without_secrets(name))
    kept = _URL.search(without_secrets(name))["query"]
    return text.replace(f"?{found['query']}", f"?{kept}" if kept else "") if found["query"] \
        else text


def _signs(key):
    from urllib.parse import unquote

    key = unquote(key).lower()
    return key in SIGNING or key.startswith(("x-amz-", "x-goog-"))


def served_as(name):
    """What the server states of remote dataset ``name``: the ETag, Last-Modified and
    Content-Length its answer to GDAL carried (GDAL's memory of them cleared first, so that a
    long session sees a change), for a fingerprint; {} where it states none, or for a name
    on disk."""
    import ctypes

    if not is_remote(name):
        return {}
    try:
        from rasterio._path import _parse_path

        vsi = _parse_path(str(name)).as_vsi()
        archive = _REMOTE_ARCHIVE.match(vsi)      # a member: its archive's headers (its own
        if archive and is_remote(archive["braced"] or archive["plain"]):   # are none)
            vsi = archive["braced"] or archive["plain"]
        vsi = vsi.encode()
        gdal = _vsi_functions()
        gdal.VSICurlPartialClearCache(vsi)
        listed = gdal.VSIGetFileMetadata(vsi, b"HEADERS", None)
    except (ImportError, OSError, AttributeError, ValueError):
        return {}
    headers = {}
    for i in itertools.count():
        if not listed or not listed[i]:
            break
        key, _, value = listed[i].decode("utf-8", "replace").partition("=")
        headers[key.strip().lower()] = value.strip()
    if listed:
        gdal.CSLDestroy(ctypes.cast(listed, ctypes.c_void_p))
    return {key: headers[key] for key in ("etag", "last-modified", "content-length")
            if key in headers}


@functools.lru_cache(maxsize=1)
def _vsi_functions():
    """libgdal, through rasterio's extension (which links it), with the signatures of the
    few VSI functions ``served_as`` calls."""
    import ctypes

    import rasterio._base

    gdal = ctypes.CDLL(rasterio._base.__file__)
    gdal.VSICurlPartialClearCache.argtypes = [ctypes.c_char_p]
    gdal.VSIGetFileMetadata.restype = ctypes.POINTER(ctypes.c_char_p)
    gdal.VSIGetFileMetadata.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    gdal.CSLDestroy.argtypes = [ctypes.c_void_p]
    return gdal


def open_raster(path, check=True):
    """rasterio.open for reading, with one-line errors for a missing or unreadable raster
    and without the warning for rasters that carry no georeferencing; a local raster with its
    side files (``LOCAL_READS``). A GeoTIFF file is ``check``ed for the damage GDAL reads
    without a word (``tiff.check_blocks``): pass False where a process reads a file checked
    before (a worker reading its tiles), or where only its tags are wanted."""
    import contextlib

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    require_file(path)
    local = contextlib.nullcontext() if is_remote(path) else rasterio.Env(**LOCAL_READS)
    try:
        with ignoring(NotGeoreferencedWarning), local:
            ds = rasterio.open(path)
            if check:       # within the environment, whose handler takes GDAL's warnings
                try:
                    check_dataset(ds, path)
                except BaseException:
                    ds.close()
                    raise
    except rasterio.errors.RasterioIOError as err:
        raise HsanomalyError(f"{without_secrets(path)}: not a raster GDAL can read "
                             f"({scrubbed(describe(err), path)})") from None
    return ds


def check_dataset(ds, path=None):
    """``tiff.check_blocks`` of open dataset ``ds`` where it is a GeoTIFF file (``path``: the
    name it was opened by, default its own)."""
    from rasterio.enums import MaskFlags

    from .tiff import check_blocks, check_part_read

    path = ds.name if path is None else path
    if ds.driver == "VRT":     # the GeoTIFFs it reads (their nodata: the VRT's to say)
        check_part_read(ds.files[1:], ds.width * ds.height * sum(
            np.dtype(dtype).itemsize for dtype in ds.dtypes))
        return
    if ds.driver not in ("GTiff", "COG"):      # check_blocks: files on disk, archive members
        return
    # a block without bytes is filled with the nodata, or left out by a mask
    masked = any(v is not None for v in ds.nodatavals) or any(
        MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in ds.mask_flag_enums)
    check_blocks(gdal_spelling(path), name=path, nodata=masked)


def vrt_root(ds):
    """The XML of a VRT dataset ``ds``, parsed; None for another driver or XML that does not
    parse. Its file's own where it is a file: GDAL's copy (``xml:VRT``) leaves out what each
    source states of itself (``SourceProperties``)."""
    import xml.etree.ElementTree as ElementTree

    if ds.driver != "VRT":
        return None
    try:
        if ds.name.lstrip().startswith("<"):
            text = ds.name
        elif os.path.isfile(ds.name):
            with open(ds.name, "rb") as file:
                text = file.read()
        else:
            text = ds.tags(ns="xml:VRT").get("xml:VRT", "")
        return ElementTree.fromstring(text)
    except (OSError, ElementTree.ParseError):
        return None


def vrt_source_pixels(ds):
    """{band: its source's pixel size, in the VRT's pixels (2.0: each source pixel covers two
    of the grid's)} of a VRT dataset ``ds`` (its DstRect against its SrcRect), for the bands
    whose sources say; empty for any other dataset, or a VRT whose XML does not parse."""
    root = vrt_root(ds)
    if root is None:
        return {}
    sizes = {}
    for band in root.iter("VRTRasterBand"):
        for source in band:
            src, dst = source.find("SrcRect"), source.find("DstRect")
            try:
                sizes[int(band.get("band"))] = float(dst.get("xSize")) / float(src.get("xSize"))
            except (AttributeError, TypeError, ValueError, ZeroDivisionError):
                continue        # a source without its rectangles, or of another kind
    return sizes


def vrt_blocks(ds):
    """(block_rows, row_bytes, striped) of the blocks a VRT dataset ``ds`` reads: its sources'
    (GDAL reports the VRT's own 128-pixel blocks, which no read decodes), in the VRT's rows: the
    rows of the tallest row of blocks, the bytes one of its rows decodes (every block of each
    source it crosses, whole; an opened source's column subset counted whole: more) and
    whether its sources are all striped (a mosaic with a striped file among tiled ones is not:
    its strips span that file alone). None where they cannot be known (a source that does not
    open, a band's mask read, VRTs nested over 4 deep, more than 64 files to open: those
    whose blocks the VRT states are not opened, ``_stated_span``), or where the VRT
    computes its own blocks (warped, pansharpened, processed): its own are then the ones."""
    if ds.driver != "VRT":
        return None
    spans = _vrt_spans(ds, 0, {})
    if not spans:
        return None
    spans = [span for band in spans.values() for span in band]
    return (max(rows for _, _, rows, _, _ in spans),
            int(np.ceil(max(sum(size for top, end, _, size, _ in spans if top <= at < end)
                            for at, _, _, _, _ in spans))),
            all(striped for *_, striped in spans))


def _vrt_spans(ds, depth, opened):
    """{band: [(top, end, block rows, bytes a row decodes, striped)]} of open dataset ``ds``
    in its rows: a VRT's from its sources' (``opened``: the files opened, by name), any other
    raster's its own; None where not known (``vrt_blocks``)."""
    root = vrt_root(ds)
    if root is None or root.get("subClass"):     # blocks it reads, or computes, itself
        return {band: [(0, ds.height, height, -(-ds.width // width) * width
                        * np.dtype(ds.dtypes[band - 1]).itemsize, width >= ds.width)]
                for band, (height, width) in enumerate(ds.block_shapes, 1)}
    if depth > 4:
        return None
    here = "" if ds.name.lstrip().startswith("<") else posixpath.dirname(ds.name)
    spans = {}
    for band in root.iter("VRTRasterBand"):
        for source in band:
            name = source.find("SourceFilename")
            if name is None:
                continue
            path = (posixpath.join(here, name.text or "") if name.get("relativeToVRT") == "1"
                    else name.text or "")
            stated = _stated_span(source.find("SourceProperties"), path, source.find("SrcRect"))
            if stated is None and path not in opened:
                if len(opened) >= 64:
                    return None
                try:
                    with open_raster(path, check=False) as inner:
                        opened[path] = _vrt_spans(inner, depth + 1, opened)
                except Exception:        # noqa: BLE001 (any reason: not known)
                    opened[path] = None
            try:
                inner = stated or opened[path][int(source.findtext("SourceBand", "1"))]
                number = int(band.get("band"))
                sy, sh = (float(source.find("SrcRect").get(k)) for k in ("yOff", "ySize"))
                dy, dh = (float(source.find("DstRect").get(k)) for k in ("yOff", "ySize"))
            except (AttributeError, KeyError, TypeError, ValueError):
                return None     # not opened, a mask band, no rectangles: not known
            if sh <= 0 or dh <= 0:
                return None
            scale = dh / sh                                  # the VRT's rows per source row
            for top, end, rows, size, striped in inner:
                top, end = max(top, sy), min(end, sy + sh)
                if top < end:
                    spans.setdefault(number, []).append(
                        (max(0, dy + (top - sy) * scale), min(ds.height, dy + (end - sy) * scale),
                         int(np.ceil(rows * scale)), size / scale, striped))
    return spans


def _stated_span(props, path, rect):
    """[the span ``_vrt_spans`` gives] of a source whose blocks its VRT states, as gdalbuildvrt
    writes them (``SourceProperties``): a stack of a file per band needs none opened. Only
    the blocks its ``SrcRect``'s columns cross count (a crop of a wide file reads no more).
    None where not stated, or where the source is a VRT (it states its own 128-pixel blocks,
    which no read decodes)."""
    if props is None or rect is None or path.lower().endswith(".vrt"):
        return None
    try:
        height, width = int(props.get("RasterYSize")), int(props.get("RasterXSize"))
        rows, cols = int(props.get("BlockYSize")), int(props.get("BlockXSize"))
        kind = props.get("DataType", "").lower()
        itemsize = np.dtype("uint8" if kind == "byte" else kind).itemsize
        left, across = float(rect.get("xOff")), float(rect.get("xSize"))
    except (TypeError, ValueError):
        return None
    if min(height, width, rows, cols) <= 0:
        return None
    blocks = int(np.ceil(min(width, left + across) / cols)) - max(0, int(left // cols))
    return [(0, height, rows, max(blocks, 1) * cols * itemsize, cols >= width)]


def local_files(name):
    """The files on disk a GDAL dataset name lies in, as it spells them: the archive of
    /vsizip/a.zip/x.tif (/vsitar/, /vsigzip/, ...), the file of HDF5:"f.h5"://x,
    NETCDF:f.nc:v or GTIFF_DIR:2:f.tif. Found by trying each stretch between separators."""
    text = str(name or "")
    return sorted({os.path.realpath(text[a:b]) for a, b in _file_stretches(text)})


def _file_stretches(text, folder=""):
    """(start, end) of each stretch of ``text`` between separators that names a file on
    disk (relative names from ``folder``; default: the working directory)."""
    starts = {0}
    for m in re.finditer(r'/vsi[a-z0-9_]+/|[:"]', text):
        starts |= {m.end(), m.end() - 1} if m.group().startswith("/vsi") else {m.end()}
    ends = [m.start() for m in re.finditer(r'[/:"]', text)] + [len(text)]
    return [(a, b) for a in sorted(starts) for b in ends       # not GTIFF_DIR:1:'s "1"
            if b > a and not text[a:b].isdigit()
            and os.path.isfile(os.path.join(folder, text[a:b]))]


def _longest_file(text, folder=""):
    """(start, end) of the longest stretch of ``text`` that names a file on disk (the file of a
    GDAL name: an archive's, a subdataset's), or None."""
    stretches = _file_stretches(text, folder)
    return max(stretches, key=lambda span: span[1] - span[0]) if stretches else None


def spelled_absolute(name):
    """A dataset name with the file it names spelled as an absolute path (for a GDAL name,
    its longest file stretch), so that two spellings of one dataset read alike: a key, not a
    name to open."""
    text = gdal_spelling(without_secrets(name))
    if not is_gdal_name(text):
        return absolute(text)
    span = _longest_file(text)
    if span is None:
        return text
    a, b = span
    head, path = text[:a], absolute(text[a:b]).lstrip("/")    # POSIX keeps "//"
    return (head.rstrip("/") if head.startswith("/vsi") else head) + "/" + path + text[b:]


def geolocation(ds):
    """A swath's geolocation arrays (GDAL's GEOLOCATION metadata: 2-D longitudes and latitudes,
    as netCDF and HDF5 products carry them), their datasets named as GDAL finds them from
    anywhere: by absolute paths, a name relative to the raster's folder (``*_RELATIVE_TO_
    SOURCE``) joined to it, its flag kept (GDAL leaves an absolute name as it is), so that
    outputs name them beside themselves in turn (``geolocation_beside``); None where there
    are none."""
    tags = ds.tags(ns="GEOLOCATION")
    if not tags.get("X_DATASET") or not tags.get("Y_DATASET"):
        return None
    placed = dict(tags)
    raster = ds.files[0] if ds.files else ds.name
    folder = posixpath.dirname(raster) if is_remote(raster) else \
        os.path.dirname(absolute(raster))                       # a URL keeps its "//"
    for axis in "XY":
        name = tags[f"{axis}_DATASET"]
        placed[f"{axis}_DATASET"] = _absolute(name, folder if _beside(placed, axis) else
                                              os.getcwd())
    return placed


def geolocation_beside(placed, path):
    """``geolocation``'s metadata for an output written to ``path``: arrays its input named
    relative to itself, in the output's folder or below it, are named relative to the
    output, so the output moves with them (and names no absolute folder) as the input did;
    the others by absolute name, which keeps an output placed that is moved on its own out
    of a folder of data (a relative name up from it could name another scene's arrays
    there), and names that no relative name reaches (remote, a GDAL dataset name)."""
    written = dict(placed)
    folder = os.path.dirname(absolute(path))
    for axis in "XY":
        name, flag = written[f"{axis}_DATASET"], f"{axis}_DATASET_RELATIVE_TO_SOURCE"
        if _beside(written, axis) and not is_gdal_name(name) and not is_remote(name) \
                and _inside(name, folder):
            written[f"{axis}_DATASET"] = os.path.relpath(name, folder)
        else:
            written.pop(flag, None)
    return written


def _inside(name, folder):
    """Whether file ``name`` (absolute) lies in ``folder`` or below it."""
    try:
        return os.path.commonpath([name, folder]) == folder
    except ValueError:                       # another drive
        return False


def _beside(placed, axis):
    """Whether GEOLOCATION metadata ``placed`` names ``axis``'s array relative to its raster."""
    return placed.get(f"{axis}_DATASET_RELATIVE_TO_SOURCE", "NO").upper() in TRUE


TRUE = ("YES", "TRUE", "ON", "1")      # GDAL's spellings of a true option


def dataset_found(name):
    """Whether dataset ``name``'s file is there (a remote one is taken to be)."""
    text = str(name)
    if not is_gdal_name(text):
        return os.path.isfile(text)
    return bool(_file_stretches(gdal_spelling(text))) or is_remote(text)


def _absolute(name, folder):
    """Dataset ``name`` with the file it names made absolute from ``folder`` (a GDAL name's
    longest file stretch: NETCDF:"f.nc":lon)."""
    text = str(name)
    if is_remote(folder) and not is_gdal_name(text):
        return posixpath.join(folder, text)
    if not is_gdal_name(text):
        return absolute(os.path.join(folder, text))
    span = _longest_file(text, folder)
    if span is None:
        return text
    a, b = span
    return text[:a] + absolute(os.path.join(folder, text[a:b])) + text[b:]


# a driver's subdataset by its syntax, the file quoted (NETCDF:"f.nc":v, HDF5:"f.h5"://a/b,
# remote files too), or a GeoTIFF's page (GTIFF_DIR:2:f.tif)
_QUOTED = re.compile(r'^[A-Za-z0-9_]{2,}:"([^"]+)":/*(.+)$')
_PAGE = re.compile(r"^GTIFF_DIR:(\d+):(.+)$")


def subdataset(name):
    """(file, variable) of a driver's subdataset name (NETCDF:"f.nc":radiance is f.nc and
    radiance, HDF5:"f.h5"://a/b f.h5 and a/b, GTIFF_DIR:2:f.tif f.tif and 2); None for any
    other name."""
    text = str(name)
    for pattern, file, inside in ((_QUOTED, 1, 2), (_PAGE, 2, 1)):
        match = pattern.match(text)
        if match:
            return match.group(file), match.group(inside)
    span = _longest_file(text) if is_gdal_name(text) else None      # NETCDF:f.nc:v
    if span is not None:
        a, b = span
        inside = text[b:].lstrip('":/')
        if text[b:b + 1] in ('"', ":") and inside:
            return text[a:b], inside
    return None


def safe_stem(name, otherwise="scene"):
    """``dataset_stem`` in characters every file system takes, and short enough for a file
    name with any suffix ("<array>" has none left: ``otherwise``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_stem(name))[:100].strip("_.") or otherwise


def dataset_stem(name):
    """A file name's stem for dataset ``name``: its file's, and a subdataset's variable after it
    (NETCDF:"f.nc":radiance is f_radiance, HDF5:"f.h5"://a/b f_a_b), so that two variables
    of one file are two names."""
    parts = subdataset(name)
    if parts is None:       # a URL's path, without its query; an archive's member
        text = gdal_spelling(name)
        if is_remote(text):          # every query left out, a signature's among them
            text = re.sub(r"\?[^#}]*|#[^}]*", "", text).rstrip("}/")
        return Path(text).stem
    file, inside = parts
    return f"{Path(file).stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', inside).strip('_.')}"


def placed_without_transform(ds):
    """What places open raster ``ds`` on the map where it has no geotransform, in words ("ground
    control points", ...), or None: what polygons and pictures cannot follow."""
    if ds.gcps[0]:
        return "ground control points"
    if ds.rpcs:
        return "rational polynomial coefficients (RPCs)"
    return "geolocation arrays" if ds.tags(ns="GEOLOCATION") else None


def files_read_with(path):
    """The files besides ``path`` that GDAL reads as part of raster ``path``: an ENVI header, a
    ``.msk``, an ``.aux.xml``, an ``.ovr``, a world file; none where it does not open. A VRT's
    sources are rasters of their own, not its parts."""
    if str(path).lower().endswith(".mat") or not os.path.isfile(path):
        return []
    try:
        with open_raster(path, check=False) as ds:     # its files
            if ds.driver == "VRT":
                return []
            return [file for file in ds.files if os.path.realpath(file) != os.path.realpath(path)]
    except HsanomalyError:
        return []


def dataset_files(path, _seen=None):
    """The files on disk that raster ``path`` reads: itself, or those a VRT, a subdataset name
    (GTIFF_DIR:1:f.tif) or an archive path points at (GDAL's file list, with the files its
    dataset names lie in, ``local_files``), through nested VRTs (GDAL lists an outer VRT's
    inner VRT, not what that reads); none where it does not open. An output must not be one
    of them, whatever name the input reaches it by, and they make the input's fingerprint. A
    .mat scene is no raster of GDAL's (its HDF5 driver would print a damaged one's error
    stack)."""
    if str(path).lower().endswith(".mat"):
        return [os.fspath(path)]
    seen = set() if _seen is None else _seen
    try:
        with open_raster(path, check=False) as ds:     # its files
            listed = list(ds.files)
    except HsanomalyError:
        return []
    files = []
    for file in listed:
        for found in local_files(file) if is_gdal_name(file) else [file]:
            key = absolute(found)
            if key not in seen:
                seen.add(key)
                files.append(found)
                if found.lower().endswith(".vrt") and key != absolute(path):
                    files += dataset_files(found, seen)
    return files


def read_masked(dataset, indexes=None, **kwargs):
    """``dataset.read(indexes, masked=True)``, with every band's declared nodata value masked
    too: where a raster carries a mask band (internal, .msk or per dataset), GDAL's mask
    replaces its nodata test, and pixels holding the declared nodata value would read as
    data (a fill row scored, an "unknown" truth pixel read as a target)."""
    from rasterio.enums import MaskFlags

    if isinstance(indexes, numbers.Integral):
        indexes = int(indexes)                 # rasterio reads a Python int as one band
    data = read_checked(dataset, indexes, masked=True, **kwargs)
    bands = ([indexes] if isinstance(indexes, int) else
             list(range(1, dataset.count + 1)) if indexes is None else list(indexes))
    # read once: each of rasterio's properties asks GDAL about every band
    nodatavals, flags, dtypes = dataset.nodatavals, dataset.mask_flag_enums, dataset.dtypes
    values, mask = np.ma.getdata(data), np.array(np.ma.getmaskarray(data))   # a copy of our own
    planes, masks = values.reshape(-1, *values.shape[-2:]), mask.reshape(-1, *mask.shape[-2:])
    for row, band in enumerate(bands):
        nodata = nodatavals[band - 1]
        if nodata is None or MaskFlags.nodata in flags[band - 1] or (
                not np.isnan(nodata) and np.asarray(nodata).astype(dtypes[band - 1]) != nodata):
            continue     # none declared, GDAL's mask is that test, or no stored value is it
        plane = planes[row]
        masks[row] |= np.isnan(plane) if np.isnan(nodata) else \
            plane == np.asarray(nodata).astype(plane.dtype)
    return np.ma.MaskedArray(values, mask)


def read_scaled(dataset, band, **kwargs):
    """Band ``band`` as float64, masked as ``read_masked`` masks it, with the band's scale and
    offset applied, in double as GDAL's unscaling does: a heatmap stored as scaled integers
    reads as the scores it stands for (a negative scale reverses their order)."""
    data = read_masked(dataset, band, **kwargs)
    scale, offset = dataset.scales[band - 1], dataset.offsets[band - 1]
    if not (np.isfinite(scale) and np.isfinite(offset)) or scale == 0:
        raise HsanomalyError(f"{without_secrets(dataset.name)}: band {band}'s scale and offset "
                             f"are not usable (scale {scale}, offset {offset})")
    values = data.astype(np.float64)
    return values if (scale, offset) == (1, 0) else values * scale + offset


def read_checked(dataset, *args, **kwargs):
    """``dataset.read`` with a one-line error for a raster that is truncated or corrupt.
    rasterio's warning that a nodata value shadows an alpha band (read masked) is not said:
    hsanomaly masks with both (``read_masked`` the value, the source the alpha band), so it
    would tell a user the alpha band is ignored when it is not."""
    import rasterio

    # GDAL masks with an alpha band only in 2- and 4-band rasters: no other is asked for its
    # bands' colours at every read
    shadowed = kwargs.get("masked") and dataset.count in (2, 4) and \
        dataset.nodata is not None and any(c.name == "alpha" for c in dataset.colorinterp)
    try:
        with ignoring(rasterio.errors.NodataShadowWarning) if shadowed else \
                contextlib.nullcontext():
            return dataset.read(*args, **kwargs)
    except rasterio.errors.RasterioIOError as err:
        reason = _gdal_reason(err)
        if "No such file or directory" in reason:      # a VRT's source, a .hdr's data file
            raise HsanomalyError(f"{dataset.name}: cannot read pixels, a file it reads from is "
                                 f"missing ({reason})") from None
        if "Python code needs to be executed" in reason:    # a VRT's pixel function
            raise HsanomalyError(f"{dataset.name}: cannot read pixels, GDAL does not run the "
                                 f"Python code the file holds ({reason})") from None
        if is_remote(dataset.name):     # GDAL's reason does not tell the network from the file
            raise HsanomalyError(f"{without_secrets(dataset.name)}: cannot read pixels: the "
                                 "server or the network failed, or the file is truncated or "
                                 f"corrupt; try again later ({scrubbed(reason, dataset.name)})"
                                 ) from None
        raise HsanomalyError(f"{dataset.name}: cannot read pixels, the file is truncated or "
                             f"corrupt ({reason})") from None


def _gdal_reason(err):
    """GDAL's own reason for a failed read: rasterio's message is often "Read failed. See
    previous exception for details.", and the details are in the chain of causes (where the
    block failed, then the codec's complaint)."""
    chain = []
    while err is not None and len(chain) < 10:
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if text and "See previous exception" not in text and text not in chain:
            chain.append(text)
        err = err.__cause__
    return ": ".join(chain[:1] + chain[-1:] if len(chain) > 1 else chain) or "read error"


# a number in an ENVI header's list: 1, 0.5, .5, 1.000000e+00
NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def bad_bands(ds, name, envi):
    """Band numbers an ENVI header's bad band list (``bbl``: 1 good, 0 bad; ``envi``: the
    header, ``envi_header``) marks bad, such as an AVIRIS scene's water-vapour bands: left
    out, as ENVI leaves them out. A list of another length names no band for certain:
    refused, not ignored (its bad bands would be scored)."""
    listed = envi.get("bbl")
    if not listed:
        return set()
    flags = re.findall(NUMBER, listed)
    if len(flags) != ds.count:
        raise HsanomalyError(f"{name}: the ENVI header's bad band list (bbl) has "
                             f"{len(flags)} flags for {ds.count} bands, so it names no band for "
                             "certain; fix it or remove it from the header")
    return {b for b, flag in enumerate(flags, start=1) if float(flag) == 0}


def envi_header(ds):
    """The ENVI domain of open dataset ``ds`` as its header says it (empty for other
    drivers). Once a viewer saved statistics, GDAL reads the domain from the copy it wrote
    in the ``.aux.xml``, so a bad band list or wavelengths corrected in the header were not
    read, and said to come from it."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    if ds.driver != "ENVI" or not ds.files or is_gdal_name(ds.files[0]) or not any(
            f.lower().endswith(".aux.xml") for f in ds.files):
        return ds.tags(ns="ENVI")
    with ignoring(NotGeoreferencedWarning), rasterio.Env(GDAL_PAM_ENABLED="NO"), \
            rasterio.open(ds.files[0]) as header:
        return header.tags(ns="ENVI")


# GDAL drivers of raw pixels beside a header, whose reads past the end of a short data file
# give zeros without an error; their first file is the data file
RAW_DRIVERS = ("ENVI", "EHdr", "GenBin", "ISCE", "PAux", "ROI_PAC")


def check_raw_size(ds, envi):
    """Refuse a raw data file shorter than its header says: GDAL would read the missing
    pixels as zeros and the run would score them, silently. An ENVI data file longer by a
    line of every band or a band or more, or an ENVI header without a data type (GDAL takes
    bytes), is a header cut short or of another file: its pixels would be read out of place
    (EHdr's gaps between bands or rows are not told here, its SKIPBYTES is counted).
    ``envi``: the ENVI header (``envi_header``)."""
    if ds.driver not in RAW_DRIVERS or not ds.files or is_gdal_name(ds.files[0]):
        return
    if ds.driver == "ENVI" and "data_type" not in envi:
        raise HsanomalyError(f"{ds.files[0]}: its ENVI header names no data type, which GDAL "
                             "then takes for bytes; a header cut short?")
    offset = envi.get("header_offset", "0")
    offset = (int(offset) if offset.isdigit() else 0) + _ehdr_skip(ds)
    pixel = sum(np.dtype(dtype).itemsize for dtype in ds.dtypes)
    needed = offset + ds.width * ds.height * pixel
    described = (f"({ds.count} bands of {ds.width}x{ds.height} {ds.dtypes[0]} pixels); "
                 "a copy cut short?")
    if envi.get("file_compression", "0").strip() == "1":
        if not _gzip_holds(ds.files[0], needed):
            raise HsanomalyError(f"{ds.files[0]}: truncated or damaged: uncompressed, it holds "
                                 f"less than the {needed:,} bytes its header describes {described}")
        return
    held = os.path.getsize(ds.files[0])
    if held < needed:
        raise HsanomalyError(f"{ds.files[0]}: truncated: holds {held:,} bytes, but its header "
                             f"describes {needed:,} {described}")
    band = ds.width * ds.height * min(np.dtype(dtype).itemsize for dtype in ds.dtypes)
    if ds.driver == "ENVI" and held - needed >= min(min(ds.width, ds.height) * pixel, band):
        raise HsanomalyError(f"{ds.files[0]}: holds {held:,} bytes, more than the {needed:,} "
                             f"its header describes ({ds.count} bands of {ds.width}x{ds.height}"
                             f" {ds.dtypes[0]} pixels), so the pixels would be read out of "
                             "place; a header of another file, or damaged?")


def _ehdr_skip(ds):
    """The bytes an EHdr header's SKIPBYTES says its data file begins with (0 elsewhere)."""
    header = next((f for f in ds.files if f.lower().endswith(".hdr")), None)
    if ds.driver != "EHdr" or header is None:
        return 0
    try:
        with open(header, encoding="latin-1") as f:
            found = re.search(r"^\s*SKIPBYTES\s+(\d+)", f.read(1 << 16), re.I | re.M)
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def _gzip_holds(path, needed):
    """Whether a gzip-compressed ENVI data file (``file compression = 1``) holds ``needed``
    bytes once uncompressed: GDAL reads a cut stream's missing pixels as zeros too, and the
    size on disk says nothing of the size uncompressed. Read through once, up to ``needed``."""
    held = 0
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as stream:
        try:
            while held < needed:
                chunk = stream.read(min(1 << 22, needed - held))
                if not chunk:
                    return False
                held += len(chunk)
        except (EOFError, OSError, zlib.error):     # cut short, or not gzip where it should be
            return False
    return True


def band_wavelengths(ds, envi, bands=None):
    """Band centre wavelengths in nanometres from the ENVI header (``envi``, ``envi_header``)
    or GDAL band metadata, or None; of ``bands`` (numbers from 1; default: every band).

    Units come from ``wavelength_units`` where given (lengths, or wavenumbers in cm^-1);
    unitless values that all lie below MICROMETRE_GUESS are micrometres (no sensor measures
    0.4-30 nm), anything else nanometres. Units that are no length (ENVI's Index, GHz) give
    None: band numbers or frequencies are no centre wavelengths to check bands by.
    """
    values, units = None, envi.get("wavelength_units")
    bands = bands or range(1, ds.count + 1)
    if envi.get("wavelength"):
        found = [float(v) for v in re.findall(NUMBER,
                                               envi["wavelength"])]
        values = [found[b - 1] for b in bands] if len(found) == ds.count else None
    if values is None:
        # GDAL's own band metadata (3.10 on: the IMAGERY domain, in micrometres)
        per_band = [ds.tags(b, ns="IMAGERY").get("CENTRAL_WAVELENGTH_UM") for b in bands]
        if all(per_band):
            units = "micrometers"
        else:
            per_band = [ds.tags(b).get("wavelength") or ds.tags(b).get("WAVELENGTH")
                        for b in bands]
            units = units or ds.tags(1).get("wavelength_units") or ds.tags(1).get(
                "WAVELENGTH_UNITS")
        if not all(per_band):
            return None
        try:
            values = [float(v) for v in per_band]
        except ValueError:
            return None
    return nanometres(values, units)
