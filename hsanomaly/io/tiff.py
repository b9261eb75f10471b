"""What GDAL does not check in a GeoTIFF it reads: the deflate streams' checksums and blocks
that hold no bytes.

GDAL inflates a deflate block only as far as the pixels it needs, so the checksum at the end
of the stream is never compared: one flipped bit, or a page of zeros a crash left, reads as
wrong pixels without a word. A block whose offset and byte count are 0 is "sparse" to GDAL and
reads as nodata, or as 0 where none is declared: a damaged table of offsets, scored silently.
``check_blocks`` reads the file's image directories itself and checks both, once per version
of a file in a process. Uncompressed and LZW blocks carry no checksum: nothing can tell their
damage from data.
"""

import contextlib
import gzip
import io
import itertools
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import HsanomalyError, describe
from ..spelling import counted

DEFLATE = (8, 32946)          # TIFF's Compression tag: Adobe deflate, and the older code
OFFSET_TAGS = {273: 279, 324: 325}     # Strip/TileOffsets: their Strip/TileByteCounts
COMPRESSION = 259
SUBFILE_TYPE = 254            # NewSubfileType: 4, a transparency mask of the full resolution
MASK = 4
# TIFF field types of the tags read here -> numpy dtype: SHORT, LONG, LONG8 (BigTIFF), IFD8
TYPES = {3: "u2", 4: "u4", 16: "u8", 18: "u8"}      # SubfileType is LONG too
MAX_DIRECTORIES = 1000        # a chain of image directories longer than this loops, damaged
CHUNK = 1 << 24               # bytes inflated at a time: a block's pixels are never held whole
READ_AHEAD = 1 << 26          # stored bytes read at a time, for the threads to inflate
MAX_THREADS = 4
PART_READ = 8                 # files read in part are checked up to this many times the part
SMALL_FILES = 1 << 26         # ... or up to this many bytes in all
HEADER = 8                    # no block lies in the header (BigTIFF's is longer still)
MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")     # TIFF and BigTIFF, either byte order

_CHECKED: set = set()         # the file versions checked in this process (``file_version``)
_LOCK = threading.Lock()


def check_blocks(path, name=None, nodata=False):
    """Refuse GeoTIFF ``path`` (``name`` in messages) where a deflate block fails its checksum,
    or where a block of its image holds no bytes and no nodata is declared (``nodata``: GDAL
    fills such a block with it, as a sparse file written so means). ``path`` may name a member
    of a local archive (/vsizip/, /vsitar/, /vsigzip/, zip://), read with Python's own
    modules; other files (a URL: checking would fetch it twice), and a file checked before
    unchanged, are left alone."""
    member = archive_member(path)
    version = file_version(path) if member is None else _member_version(*member)
    if version is None or version in _CHECKED:
        return
    name = path if name is None else name
    try:
        with _opened(path, member) as (f, size):
            deflated = []       # every directory first, then every block in one pass in file order
            for number, (compression, blocks) in list(_directories(f, size)):
                offsets, counts = blocks
                astray = np.flatnonzero((counts > 0) & ((offsets < HEADER)
                                                        | (offsets + counts > size)))
                if astray.size:
                    raise HsanomalyError(
                        f"{name}: cannot read pixels, the file is truncated or corrupt "
                        f"({_which(astray, counts.size, 'lies', 'lie')} outside the file's "
                        "data)")
                empty = np.flatnonzero(counts == 0)
                if number == 0 and empty.size and not nodata:
                    raise HsanomalyError(
                        f"{name}: cannot read pixels, the file is truncated or corrupt "
                        f"({_which(empty, counts.size)} no bytes and would read as 0, where no "
                        "nodata is declared; a sparse file written so on purpose (SPARSE_OK) "
                        "reads whole once gdal_translate has copied it)")
                if compression in DEFLATE:
                    deflated.append((number, offsets, counts))
            _check_deflate(f, deflated, name)
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile, tarfile.TarError,
            zlib.error) as err:
        raise HsanomalyError(f"{name}: cannot read pixels, the file is truncated or corrupt "
                             f"({describe(err)})") from None
    with _LOCK:
        _CHECKED.add(version)


def check_part_read(files, read, nodata=True):
    """``check_blocks`` of ``files`` of which ``read`` bytes are read (a VRT's sources, the file
    behind a DataArray), unless they hold far more (``PART_READ``): a window of a mosaic does
    not inflate the mosaic. A sparse block is not judged (their nodata is not known here)."""
    sizes = [os.path.getsize(f) for f in files if file_version(f) is not None]
    if sum(sizes) <= PART_READ * read + SMALL_FILES:
        for file in files:
            check_blocks(file, nodata=nodata)


def file_version(path):
    """(device, inode, size, modification time in ns) of a TIFF file on disk, or None where
    ``path`` names none (a URL, an archive member, another format)."""
    try:
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode):        # a pipe would block the read
            return None
        with open(path, "rb") as f:
            magic = f.read(4)
    except (OSError, ValueError, TypeError):
        return None
    if magic not in MAGIC or not found.st_size:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


ARCHIVES = {"/vsizip/": "zip", "/vsitar/": "tar", "/vsigzip/": "gzip"}   # GDAL's, for files


def archive_member(path):
    """(kind, archive, member) of a GeoTIFF in an archive on disk ("zip", "tar" or "gzip";
    the member None for a gzip), or None where ``path`` (as GDAL spells it) names none (a
    plain file, a URL, an archive inside an archive or behind a URL)."""
    text = str(path)             # GDAL's spelling (``gdal.gdal_spelling``: not rasterio's)
    kind = next((k for prefix, k in ARCHIVES.items() if text.startswith(prefix)), None)
    if kind is None:
        return None
    rest = text[len(f"/vsi{kind}/"):]
    if rest.startswith("{") and "}" in rest:           # /vsizip/{a.zip}/m.tif
        archive, _, member = rest[1:].partition("}")
        return _found(kind, archive, member.lstrip("/"))
    if kind == "gzip":
        return _found(kind, rest, None)
    cuts = [i for i, c in enumerate(rest) if c == "/"]
    return next((found for i in cuts if (found := _found(kind, rest[:i], rest[i + 1:]))), None)


def _found(kind, archive, member):
    if not (archive and os.path.isfile(archive) and (member or kind == "gzip")):
        return None
    return kind, archive, member


def _member_version(kind, archive, member):
    """``file_version`` of an archive member: the archive's, with the member's name; None
    where the member is no TIFF, or cannot be read (GDAL will say why)."""
    try:
        found = os.stat(archive)
        with _open_member(kind, archive, member) as (f, _, _):
            magic = f.read(4)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError,
            zlib.error):
        return None
    if magic not in MAGIC:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, kind, member


@contextlib.contextmanager
def _opened(path, member=None):
    """(binary file, its size) of file ``path``, or of ``member`` (``archive_member``)."""
    if member is None:
        with open(path, "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
        return
    with _open_member(*member) as (f, size, compressed):
        if not compressed:
            yield f, size
            return
        # inflated once into a temporary file: reading a directory at the end, then the blocks
        # from the start, inflated the member again at each backward seek (three to four times)
        with tempfile.TemporaryFile() as copy:
            try:
                shutil.copyfileobj(f, copy, CHUNK)
            except OSError:          # no room for it: read the member itself, the slow way
                size = f.seek(0, os.SEEK_END) if size is None else size
                f.seek(0)
                yield f, size
                return
            size = copy.tell()
            copy.seek(0)
            yield copy, size


@contextlib.contextmanager
def _open_member(kind, archive, member):
    """(binary file that seeks, its size, whether it is compressed) of a member of a local
    archive (a backward seek in a compressed one inflates it again from its start); a gzip's
    size is None (its trailer states it only modulo 4 GiB: found by inflating it)."""
    if kind == "gzip":
        with gzip.open(archive, "rb") as f:
            yield f, None, True
    elif kind == "zip":
        with zipfile.ZipFile(archive) as z, z.open(member) as f:
            info = z.getinfo(member)
            yield f, info.file_size, info.compress_type != zipfile.ZIP_STORED
    else:
        with tarfile.open(archive) as t:
            info = t.getmember(member)
            f = t.extractfile(info)
            if f is None:
                raise ValueError(f"{member} is no file in {archive}")
            with f:
                yield f, info.size, not isinstance(t.fileobj, io.BufferedReader)


def _which(blocks, total, one="holds", many="hold"):
    """"block 7 of 144 holds" or "3 blocks of 144, the first 7, hold"."""
    if blocks.size == 1:
        return f"block {blocks[0]} of {total} {one}"
    return f"{counted(blocks.size, 'block')} of {total}, the first {blocks[0]}, {many}"


def _directories(f, size):
    """(number, (compression, (offsets, byte counts))) of the image directories whose pixels
    are read: the first (the image) and a full-resolution mask; not overviews or other pages,
    whose damage (a failed ``gdaladdo``) leaves the pixels scored whole."""
    order = "<" if f.read(2) == b"II" else ">"
    big = struct.unpack(order + "H", f.read(2))[0] == 43
    if big:
        f.read(4)                        # the offsets' size (8) and a reserved word
    where = struct.unpack(order + ("Q" if big else "I"), f.read(8 if big else 4))[0]
    seen = set()
    while where and where not in seen and len(seen) < MAX_DIRECTORIES:
        seen.add(where)
        number = len(seen) - 1
        try:
            tags, where = _directory(f, order, big, where, size)
        except (OSError, ValueError, struct.error):
            if not number:
                raise
            return                       # an overview's or another page's: not read here
        if number and (SUBFILE_TYPE not in tags or int(tags[SUBFILE_TYPE][0]) != MASK):
            continue
        compression = int(tags[COMPRESSION][0]) if COMPRESSION in tags else 1
        for offsets_tag, counts_tag in OFFSET_TAGS.items():
            if offsets_tag in tags and counts_tag in tags:
                offsets, counts = tags[offsets_tag], tags[counts_tag]
                if offsets.size != counts.size:
                    raise ValueError(f"{offsets.size} block offsets, {counts.size} byte counts")
                yield number, (compression, (offsets, counts))


def _directory(f, order, big, where, size):
    """The tags read here of the directory at ``where``, and the next directory's offset."""
    entry, count_format, word = (20, "Q", 8) if big else (12, "I", 4)
    f.seek(where)
    (entries,) = struct.unpack(order + ("Q" if big else "H"), f.read(8 if big else 2))
    table = f.read(entries * entry + word)
    if len(table) < entries * entry + word:
        raise OSError("an image directory runs past the end of the file")
    tags = {}
    wanted = {COMPRESSION, SUBFILE_TYPE, *OFFSET_TAGS, *OFFSET_TAGS.values()}
    for i in range(entries):
        raw = table[i * entry:(i + 1) * entry]
        tag, kind = struct.unpack(order + "HH", raw[:4])
        if tag not in wanted or kind not in TYPES:
            continue
        (count,) = struct.unpack(order + count_format, raw[4:4 + word])
        dtype = np.dtype(TYPES[kind]).newbyteorder(order)
        length = count * dtype.itemsize
        if length <= word:
            data = raw[4 + word:4 + word + length]
        else:
            (at,) = struct.unpack(order + count_format, raw[4 + word:])
            if at + length > size:
                raise OSError("a table of block offsets runs past the end of the file")
            f.seek(at)
            data = f.read(length)
        tags[tag] = np.frombuffer(data, dtype).astype(np.int64)
    (following,) = struct.unpack(order + count_format, table[entries * entry:])
    return tags, following


def _check_deflate(f, directories, name):
    """Inflate every block of ``directories`` ([(number, offsets, byte counts)]) to its end,
    where zlib compares the checksum: read in file order, ``READ_AHEAD`` bytes at a time,
    inflated in threads (zlib lets the others run)."""
    order = iter(sorted((int(offset), int(count), number, i)
                        for number, offsets, counts in directories
                        for i, (offset, count) in enumerate(zip(offsets, counts)) if count))
    with ThreadPoolExecutor(_threads()) as pool:
        for first in order:
            batch, held = [], 0
            for offset, count, number, i in itertools.chain([first], order):
                f.seek(offset)
                batch.append(((number, i, count), f.read(count)))
                held += count
                if held >= READ_AHEAD:
                    break
            for ((number, i, count), stored), reason in zip(batch,
                                                             pool.map(_inflate_problem, batch)):
                if reason is None and len(stored) < count:
                    reason = "the file ends inside it"
                if reason is not None:
                    where = f"block {i}" + (" of its mask" if number else "")
                    raise HsanomalyError(f"{name}: cannot read pixels, the file is truncated or "
                                         f"corrupt ({where} fails its deflate check: {reason})")


def _inflate_problem(block):
    """Why block ``(index, stored bytes)`` is no whole deflate stream, or None."""
    stream = zlib.decompressobj()
    try:
        out = stream.decompress(block[1], CHUNK)
        while out and not stream.eof:      # output held back by CHUNK, then the rest
            out = stream.decompress(stream.unconsumed_tail, CHUNK)
    except zlib.error as err:
        return str(err)
    return None if stream.eof else "the block ends early"


def _threads():
    """The CPUs this process may use, at most ``MAX_THREADS``."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_THREADS, usable or 1))
