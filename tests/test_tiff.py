"""Damage GDAL reads without a word: a GeoTIFF's deflate checksums and its blocks without bytes,
an ENVI header that describes less than its data file (``hsanomaly.io.tiff``, ``io.gdal``)."""

import os
import struct
import zlib

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import scipy.io

import hsanomaly
from hsanomaly.errors import HsanomalyError
from hsanomaly.io import tiff
from hsanomaly.io.gdal import open_raster

from synthetic import synthetic_cube, write_raster


def _blocks(path):
    """(offsets, byte counts) of the image's blocks, as GDAL reports them."""
    with rasterio.open(path) as ds:
        items = [(ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=b),
                  ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=b))
                 for b in range(1, ds.count + 1) for y in range(ds.height // 16)
                 for x in range(ds.width // 16)]
    return [(int(o), int(n)) for o, n in items]


def _scene(path, interleave="pixel", **profile):
    cube, truth = synthetic_cube(rows=48, cols=64)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=cube.shape[0],
                       dtype="float32", tiled=True, blockxsize=16, blockysize=16,
                       interleave=interleave, **profile) as ds:
        ds.write(cube)
    return cube, truth


@pytest.mark.parametrize("compress", ["deflate", "zstd", "lzw", None])
def test_a_copy_as_written_reads_and_only_a_deflate_checksum_is_compared(tmp_path, compress):
    path = tmp_path / "scene.tif"
    _scene(path, **({"compress": compress} if compress else {}))
    with open_raster(path):
        pass
    offset, count = _blocks(path)[5]
    data = bytearray(path.read_bytes())
    data[offset + count // 2] ^= 0x10                 # one bit, in a block's middle
    path.write_bytes(bytes(data))
    if compress != "deflate":    # no checksum: GDAL's own errors, or nothing to tell
        return
    with pytest.raises(HsanomalyError, match=r"scene.tif: cannot read pixels, the file is "
                                             r"truncated or corrupt \(block 5 fails its deflate "
                                             r"check: .*\)"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="rx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_flipped_bit_that_gdal_reads_as_other_pixels_is_refused(tmp_path):
    """The shipped example's layout (one deflate tile over the whole image): GDAL inflated
    as far as it needed, never reached the checksum, and the heatmap was scored from the
    wrong pixels with exit 0 (AUC 0.84 to 0.68 on the example)."""
    path = tmp_path / "scene.tif"
    cube, _ = _scene(path, compress="deflate")
    offset, count = _blocks(path)[0]
    data = bytearray(path.read_bytes())
    data[offset + count - 5] ^= 0x01       # the last deflate bytes, before the checksum
    path.write_bytes(bytes(data))
    with rasterio.open(path) as ds:
        read = ds.read()
    stream = zlib.decompressobj()
    stream.decompress(bytes(data[offset:offset + count]))
    assert not np.array_equal(read, cube) or not stream.eof     # GDAL reads it, silently
    with pytest.raises(HsanomalyError, match="fails its deflate check"):
        open_raster(path)


def test_a_block_without_bytes_is_refused_unless_nodata_fills_it(tmp_path):
    """A zeroed entry in the table of offsets and byte counts is a "sparse" block to GDAL,
    which reads it as 0: a damaged table scored, or a truth mask counted 46 target pixels of
    87, with exit 0."""
    path = tmp_path / "scene.tif"
    _scene(path, compress="deflate", interleave="band")
    before = _blocks(path)
    data = bytearray(path.read_bytes())
    tags, order = {}, "<"                      # the tables' places, from the directory
    (first,) = struct.unpack(order + "I", data[4:8])
    (entries,) = struct.unpack(order + "H", data[first:first + 2])
    for i in range(entries):
        at = first + 2 + 12 * i
        tag, kind, count, value = struct.unpack(order + "HHII", data[at:at + 12])
        tags[tag] = (value, {3: "H", 4: "I"}[kind]) if tag in (324, 325) else value
    for table in (324, 325):                   # TileOffsets, TileByteCounts: entry 7
        at, kind = tags[table]
        struct.pack_into(order + kind, data, at + struct.calcsize(kind) * 7, 0)
    path.write_bytes(bytes(data))
    assert before[7] != (0, 0)
    with pytest.raises(HsanomalyError, match=r"\(block 7 of 144 holds no bytes and would read "
                                             "as 0, where no nodata is declared; a sparse"):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="rx")
    with rasterio.open(path, "r+") as ds:
        ds.nodata = -9999                        # a sparse block is nodata now, as GDAL means
    with open_raster(path) as ds:
        assert ds.read(1, masked=True).mask.sum() == 16 * 16


def test_a_block_outside_the_file_and_an_unchanged_file_checked_once(tmp_path, monkeypatch):
    path = tmp_path / "scene.tif"
    _scene(path)
    calls = []
    monkeypatch.setattr(tiff, "_directories", lambda f, size: calls.append(1) or iter(()))
    for _ in range(3):
        with open_raster(path):
            pass
    assert len(calls) == 1
    os.utime(path, ns=(1, 1))                           # another version: checked again
    with open_raster(path):
        pass
    assert len(calls) == 2
    monkeypatch.undo()
    offset, _ = _blocks(path)[0]
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:offset + 10])
    with pytest.raises(HsanomalyError, match=r"cut.tif: .*(truncated or corrupt|GDAL can read)"):
        open_raster(cut)


def test_an_envi_header_that_describes_less_than_its_data_file_is_refused(tmp_path):
    """A header cut short lost its data type, and GDAL read 16-bit pixels as bytes; one of
    another file (a band, a line or a column fewer) sheared the image; all scored, exit 0."""
    cube = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    cube.tofile(tmp_path / "scene.img")
    header = ("ENVI\nsamples = 30\nlines = 20\nbands = 3\nheader offset = 0\nfile type = ENVI "
              "Standard\ndata type = 12\ninterleave = bsq\nbyte order = 0\n")
    (tmp_path / "scene.hdr").write_text(header)
    with open_raster(tmp_path / "scene.img") as ds:
        np.testing.assert_array_equal(ds.read(), cube)
    for old, new, message in (("bands = 3", "bands = 2", "more than the 2,400"),
                              ("lines = 20", "lines = 19", "more than the 3,420"),
                              ("samples = 30", "samples = 29", "more than the 3,480"),
                              ("data type = 12\n", "", "its ENVI header names no data type")):
        (tmp_path / "scene.hdr").write_text(header.replace(old, new))
        with pytest.raises(HsanomalyError, match=message):
            hsanomaly.detect(tmp_path / "scene.img", tmp_path / "heat.tif", score="rx")
    (tmp_path / "scene.hdr").write_text(header)
    with open(tmp_path / "scene.img", "ab") as f:         # a few bytes of padding: read
        f.write(b"\0" * 64)
    with open_raster(tmp_path / "scene.img") as ds:
        np.testing.assert_array_equal(ds.read(), cube)


def test_a_damaged_compressed_mat_file_is_one_line(tmp_path):
    cube = np.random.default_rng(0).random((20, 30, 8)).astype(np.float32)
    path = tmp_path / "scene.mat"
    scipy.io.savemat(path, {"data": cube, "map": np.zeros((20, 30), np.uint8)},
                     do_compression=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(HsanomalyError, match=r"scene.mat: not a readable MATLAB file \("):
        hsanomaly.detect(path, tmp_path / "heat.tif", score="rx")


def test_a_damaged_file_behind_a_data_array_or_an_open_dataset_is_refused(tmp_path):
    """A Detector given what rioxarray read (its file in ``encoding["source"]``) or an open
    rasterio dataset scored the damaged pixels GDAL handed over."""
    xarray = pytest.importorskip("xarray")
    path = tmp_path / "scene.tif"
    cube, _ = _scene(path, compress="deflate")
    offset, count = _blocks(path)[3]
    data = bytearray(path.read_bytes())
    data[offset + count // 2] ^= 0x10
    path.write_bytes(bytes(data))
    array = xarray.DataArray(cube, dims=("band", "y", "x"))
    array.encoding["source"] = str(path)
    with pytest.raises(HsanomalyError, match="fails its deflate check"):
        hsanomaly.Detector("rx").fit(array)
    with rasterio.open(path) as ds, pytest.raises(HsanomalyError, match="deflate check"):
        hsanomaly.Detector("rx").fit(ds)


def test_damage_in_an_overview_leaves_the_image_readable_and_a_mask_is_checked(tmp_path):
    """A failed gdaladdo (an overview damaged) refused a scene whose pixels were whole; the
    image's own mask is what says which pixels are scored, and is checked."""
    path = tmp_path / "scene.tif"
    cube, _ = _scene(path, compress="deflate")
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2])
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1, ovr=0))
        count = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1, ovr=0))
    data = bytearray(path.read_bytes())
    data[offset + count // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with open_raster(path) as ds:
        np.testing.assert_array_equal(ds.read(), cube)
    masked = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        _scene(masked, compress="deflate")
        with rasterio.open(masked, "r+") as ds:
            ds.write_mask(np.full((48, 64), 255, np.uint8))
    with rasterio.open(masked) as ds:
        assert ds.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
    with open(masked, "rb") as f:
        found = dict(tiff._directories(f, masked.stat().st_size))
    assert sorted(found) == [0, 1]                      # the image and its mask
    _, (offsets, counts) = found[1]
    data = bytearray(masked.read_bytes())
    data[offsets[2] + counts[2] - 3] ^= 0x10
    masked.write_bytes(bytes(data))
    with pytest.raises(HsanomalyError, match="block 2 of its mask fails its deflate check"):
        open_raster(masked)


def test_a_vrt_over_a_damaged_geotiff_and_an_ehdr_with_skipped_bytes(tmp_path):
    """A VRT's GeoTIFF is read as the GeoTIFF itself is; an EHdr file's SKIPBYTES header is
    no sign of another file's header (it was refused as longer than described)."""
    path = tmp_path / "scene.tif"
    cube, _ = _scene(path, compress="deflate")
    vrt = tmp_path / "scene.vrt"
    rasterio.shutil.copy(path, vrt, driver="VRT")
    with open_raster(vrt) as ds:
        np.testing.assert_array_equal(ds.read(), cube)
    offset, count = _blocks(path)[2]
    data = bytearray(path.read_bytes())
    data[offset + count // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(HsanomalyError, match="scene.tif: cannot read pixels, .*deflate check"):
        open_raster(vrt)
    bil = tmp_path / "scene.bil"
    bil.write_bytes(b"\0" * 2048 + cube[:3].astype(np.float32).tobytes())
    (tmp_path / "scene.hdr").write_text(
        "BYTEORDER I\nLAYOUT BSQ\nNROWS 48\nNCOLS 64\nNBANDS 3\nNBITS 32\nPIXELTYPE FLOAT\n"
        "SKIPBYTES 2048\n")
    with open_raster(bil) as ds:
        assert ds.driver == "EHdr"
        np.testing.assert_array_equal(ds.read(), cube[:3])
    with rasterio.open(bil) as ds:         # its size checked: whole
        hsanomaly.Detector("rx").fit(ds)
    os.truncate(bil, bil.stat().st_size - 1000)        # cut by less than its SKIPBYTES
    with pytest.raises(HsanomalyError, match="scene.bil: truncated: holds 37,912 bytes, but its "
                                             "header describes 38,912"):
        hsanomaly.detect(bil, tmp_path / "heat.tif", score="rx")


def test_an_envi_header_corrected_after_a_viewer_saved_statistics_is_read(tmp_path):
    """gdalinfo -stats or QGIS copy the header's ENVI metadata into the .aux.xml, which GDAL
    then reads instead: a bad band list or wavelengths corrected in the header were ignored
    (and the bands left out said to be the header's)."""
    from hsanomaly.io.source import open_source

    cube = np.arange(6 * 20 * 30, dtype=np.uint16).reshape(6, 20, 30)
    cube.tofile(tmp_path / "scene.img")
    header = ("ENVI\nsamples = 30\nlines = 20\nbands = 6\nheader offset = 0\nfile type = ENVI "
              "Standard\ndata type = 12\ninterleave = bsq\nbyte order = 0\n"
              "wavelength = {{{}}}\nbbl = {{{}}}\n")
    (tmp_path / "scene.hdr").write_text(header.format("400, 500, 600, 700, 800, 900",
                                                      "0, 1, 1, 1, 1, 1"))
    (tmp_path / "scene.img.aux.xml").write_text(
        '<PAMDataset><Metadata domain="ENVI"><MDI key="bbl">{0, 1, 1, 1, 1, 1}</MDI>'
        '<MDI key="wavelength">{400, 500, 600, 700, 800, 900}</MDI><MDI key="data_type">12'
        '</MDI></Metadata></PAMDataset>')
    (tmp_path / "scene.hdr").write_text(header.format("405, 505, 605, 705, 805, 905",
                                                      "1, 1, 1, 1, 1, 0"))
    with rasterio.open(tmp_path / "scene.img") as ds:
        assert ds.tags(ns="ENVI")["bbl"] == "{0, 1, 1, 1, 1, 1}"      # GDAL's: the copy
    source = open_source(tmp_path / "scene.img")
    assert source.bands == [1, 2, 3, 4, 5]
    assert source.wavelengths[0] == 405.0


def test_a_small_window_of_a_large_file_does_not_inflate_the_whole_file(tmp_path, monkeypatch):
    """A VRT clip of a mosaic read a few kilobytes and inflated every source whole; files far
    larger than what is read of them are left to GDAL."""
    path = tmp_path / "scene.tif"
    _scene(path, compress="deflate")
    offset, count = _blocks(path)[2]
    data = bytearray(path.read_bytes())
    data[offset + count // 2] ^= 0x10
    path.write_bytes(bytes(data))
    monkeypatch.setattr(tiff, "SMALL_FILES", 0)
    whole = tmp_path / "whole.vrt"
    rasterio.shutil.copy(path, whole, driver="VRT")
    with pytest.raises(HsanomalyError, match="deflate check"):
        open_raster(whole)                          # all of it read: checked
    pixel = 12 * 4                                  # one pixel of its 12 float32 bands
    assert tiff.PART_READ * pixel < path.stat().st_size
    tiff.check_part_read([str(path)], pixel)        # left to GDAL


def test_a_damaged_geotiff_in_a_local_archive_or_under_a_driver_like_name_is_refused(
        tmp_path, monkeypatch):
    """The check read plain files only: the same damaged file inside a zip (stored or
    deflated), a tar or a gzip, or named "L1B:flight.tif" (a driver's prefix), was scored with
    exit 0. A sound member reads; nested archives and URLs are left to GDAL."""
    import gzip
    import shutil
    import tarfile
    import zipfile

    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    _scene(good, compress="deflate")
    offset, count = _blocks(good)[0]
    data = bytearray(good.read_bytes())
    data[offset + count - 5] ^= 0x01
    bad.write_bytes(bytes(data))
    for kind in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with zipfile.ZipFile(tmp_path / f"{kind}.zip", "w", kind) as z:
            z.write(good, "dir/good.tif")
            z.write(bad, "dir/bad.tif")
    with tarfile.open(tmp_path / "s.tar", "w") as t:
        t.add(good, "good.tif")
        t.add(bad, "bad.tif")
    for path in (good, bad):
        with open(path, "rb") as f, gzip.open(f"{path}.gz", "wb") as z:
            shutil.copyfileobj(f, z)
    shutil.copy(bad, tmp_path / "L1B:flight.tif")
    names = {f"/vsizip/{tmp_path}/{kind}.zip/dir/{{}}.tif" for kind in (0, 8)}
    names |= {f"zip://{tmp_path}/8.zip!dir/{{}}.tif", f"/vsitar/{tmp_path}/s.tar/{{}}.tif",
              f"/vsigzip/{tmp_path}/{{}}.tif.gz"}
    for name in sorted(names):
        with open_raster(name.format("good")) as ds:
            assert ds.count == 12
        with pytest.raises(HsanomalyError, match=r"bad.tif(.gz)?: cannot read pixels, the file "
                                                 r"is truncated or corrupt \(block 0 fails its "
                                                 r"deflate check"):
            open_raster(name.format("bad"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HsanomalyError, match="fails its deflate check"):
        open_raster("L1B:flight.tif")
    assert tiff.archive_member(f"/vsizip//vsicurl/http://host/{tmp_path}/8.zip/x.tif") is None
    assert tiff.archive_member(f"/vsizip/{tmp_path}/8.zip") is None
    assert tiff.archive_member(f"/vsizip/{{{tmp_path}/8.zip}}/dir/good.tif") == (
        "zip", f"{tmp_path}/8.zip", "dir/good.tif")


def test_a_compressed_archive_member_is_inflated_once(tmp_path, monkeypatch):
    """Its directories at the end, its blocks from the start, its mask's after them: each
    backward seek inflated the member again from its start (736 MB inflated for a 195 MB
    member). It is copied out once, and checked there."""
    import zipfile

    from rasterio.enums import Resampling

    path = tmp_path / "scene.tif"
    _scene(path, compress="deflate")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        ds.write_mask(np.full((48, 64), 255, np.uint8))
        ds.build_overviews([2], Resampling.nearest)
    with zipfile.ZipFile(tmp_path / "s.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "scene.tif")
    moves = []
    seek = zipfile.ZipExtFile.seek

    def counted(self, offset, whence=0):
        before = self.tell()
        after = seek(self, offset, whence)
        moves.append(after < before)
        return after
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", counted)
    with open_raster(f"/vsizip/{tmp_path}/s.zip/scene.tif") as ds:
        assert ds.count == 12
    assert not any(moves)
