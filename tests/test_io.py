import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from rasterio.windows import Window

from hsanomaly.errors import HsanomalyError
from hsanomaly.io import ArraySource, RasterSource, open_source, read_mat, read_scene, read_truth
from hsanomaly.io.convert import convert_mat

from synthetic import NODATA, SHARED_DATA


def test_mat_v5_finds_cube_and_truth_and_casts(tmp_path):
    cube = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3)  # rows, cols, bands
    truth = np.zeros((4, 5), np.uint8)
    truth[1, 2] = 1
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": truth})
    got, gt = read_mat(tmp_path / "s.mat")
    assert got.dtype == np.float32 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got[:, 1, 2], cube[1, 2])
    assert gt.sum() == 1 and gt[1, 2] == 1


def test_mat_v73_is_transposed_back(tmp_path):
    cube = np.random.default_rng(0).random((4, 5, 3))  # rows, cols, bands as MATLAB sees it
    mask = np.zeros((4, 5))
    mask[3, 4] = 1
    with h5py.File(tmp_path / "s.mat", "w") as f:  # HDF5 stores MATLAB arrays column-major
        f["image"] = cube.T
        f["mask"] = mask.T
    got, gt = read_mat(tmp_path / "s.mat")
    np.testing.assert_allclose(got[:, 2, 1], cube[2, 1].astype(np.float32))
    assert gt[3, 4] == 1 and gt.sum() == 1


def test_mat_without_cube_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "s.mat", {"map": np.zeros((3, 3))})
    with pytest.raises(HsanomalyError, match="no 3-D hyperspectral cube"):
        read_mat(tmp_path / "s.mat")


def test_raster_source_masks_nodata_and_pads_halo(synthetic_raster):
    path, _, nodata_mask = synthetic_raster
    src = RasterSource(path)
    assert (src.count, src.height, src.width) == (12, 40, 50)
    block, valid = src.read(Window(0, 0, 10, 10), halo=2)
    assert block.shape == (12, 14, 14)
    assert not valid[:2].any() and not valid[:, :2].any()          # outside the raster
    np.testing.assert_array_equal(valid[2:12, 2:12], ~nodata_mask[:10, :10])
    assert np.isnan(block[:, ~valid]).all() and np.isfinite(block[:, valid]).all()
    assert not (block == NODATA).any()


def test_streaming_reduce_and_sample_match_memory(synthetic_raster):
    path, _, nodata_mask = synthetic_raster
    src = RasterSource(path)
    n = src.reduce(lambda X: np.array(len(X)), tile=16)
    assert n == (~nodata_mask).sum()
    a, b = src.sample(300, seed=1, tile=16), src.sample(300, seed=1, tile=16)
    np.testing.assert_array_equal(a, b)
    assert 150 < len(a) < 450 and np.isfinite(a).all()


def test_envi_wavelengths_and_geotiff_descriptions(tmp_path):
    cube = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    with rasterio.open(tmp_path / "s.img", "w", driver="ENVI", count=3, height=4, width=5,
                       dtype="float32") as dst:
        dst.write(cube)
    hdr = tmp_path / "s.hdr"
    hdr.write_text(hdr.read_text() + "wavelength = { 450.5, 550.0, 650.25 }\n")
    assert RasterSource(tmp_path / "s.img").wavelengths == [450.5, 550.0, 650.25]
    with rasterio.open(tmp_path / "d.tif", "w", driver="GTiff", count=3, height=4, width=5,
                       dtype="float32") as dst:
        dst.write(cube)
        dst.set_band_description(2, "green")
    assert RasterSource(tmp_path / "d.tif").band_names[1] == "green"


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(HsanomalyError, match="missing.tif: file not found"):
        open_source(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(HsanomalyError, match="not a raster GDAL can read"):
        open_source(tmp_path / "junk.tif")


def test_convert_writes_cube_and_truth_without_crs(tmp_path):
    cube = np.random.default_rng(0).integers(-5, 300, (6, 7, 4)).astype(np.int16)
    truth = np.zeros((6, 7), np.uint8)
    truth[2, 3] = 1
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": truth})
    convert_mat(tmp_path / "s.mat", tmp_path / "s.tif", truth=tmp_path / "t.tif")
    with rasterio.open(tmp_path / "s.tif") as ds:
        assert ds.crs is None and ds.count == 4 and ds.profile["tiled"]
        assert ds.dtypes[0] == "int16" and ds.compression.value == "DEFLATE"
        np.testing.assert_array_equal(ds.read()[:, 5, 6], cube[5, 6])
    np.testing.assert_array_equal(read_truth(tmp_path / "t.tif"), truth)
    scene = read_scene(tmp_path / "s.tif", truth=tmp_path / "t.tif")
    assert scene.truth.sum() == 1 and scene.cube.shape == (4, 6, 7)


def test_truth_shape_mismatch(tmp_path, synthetic_raster):
    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError, match="truth is 40x50, the scene is 3x3"):
        read_truth(path, shape=(3, 3))


def test_array_source_reads_windows():
    cube = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    block, valid = ArraySource(cube).read(Window(2, 2, 2, 2), halo=1)
    np.testing.assert_array_equal(block[:, 1:3, 1:3], cube[:, 2:4, 2:4])
    assert valid.sum() == 9


@pytest.mark.slow
def test_shared_v73_scene_reads():
    path = SHARED_DATA / "Auto-AD" / "HYDICE1.mat"
    if not path.exists():
        pytest.skip("shared data absent")
    scene = read_scene(path)
    assert scene.cube.shape == (162, 80, 100) and scene.truth.sum() == 17


def test_wavelength_units_are_honoured(tmp_path):
    """ENVI micrometres and GDAL band metadata come out in nanometres."""
    from hsanomaly.io.source import RasterSource

    cube = np.ones((3, 4, 5), np.float32)
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=3, height=4, width=5) as ds:
        ds.write(cube)
        for band, value in enumerate((0.45, 0.55, 0.65), start=1):
            ds.update_tags(band, wavelength=str(value), wavelength_units="Micrometers")
    assert RasterSource(path).wavelengths == pytest.approx([450.0, 550.0, 650.0])
    envi = tmp_path / "scene.img"
    with rasterio.open(envi, "w", driver="ENVI", dtype="float32", count=3, height=4, width=5) as ds:
        ds.write(cube)
    header = envi.with_suffix(".hdr")
    header.write_text(header.read_text() + "wavelength units = Nanometers\n"
                      "wavelength = {450.5, 551, 652.25}\n")
    assert RasterSource(envi).wavelengths == pytest.approx([450.5, 551.0, 652.25])


def test_model_refuses_a_raster_with_other_wavelengths(tmp_path):
    from types import SimpleNamespace

    from hsanomaly.model import check_wavelengths

    bundle = SimpleNamespace(wavelengths=[0.45, 0.55, 0.65], path=tmp_path / "model")
    check_wavelengths(bundle, [450.2, 550.0, 650.4], "scene.tif")     # micrometre-era bundle
    check_wavelengths(bundle, None, "scene.tif")                      # nothing to compare
    with pytest.raises(HsanomalyError, match="band 2 is centred at 600 nm .* 550 nm .*"
                                             "--ignore-wavelengths"):
        check_wavelengths(bundle, [450.0, 600.0, 650.0], "scene.tif")
