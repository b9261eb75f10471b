import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from click.testing import CliRunner
from rasterio.windows import Window

from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.io import ArraySource, RasterSource, open_source, read_mat, read_scene, read_truth
from hsanomaly.io.convert import convert_mat
from hsanomaly.scorers.base import SCENE_MOMENTS, scene_moments

from synthetic import EXAMPLE, NODATA, SHARED_DATA, synthetic_cube, write_raster


def test_mat_v5_finds_cube_and_truth_in_its_own_type(tmp_path):
    cube = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3)  # rows, cols, bands
    truth = np.zeros((4, 5), np.uint8)
    truth[1, 2] = 1
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": truth})
    got, gt = read_mat(tmp_path / "s.mat")
    assert got.dtype == np.uint16 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got[:, 1, 2], cube[1, 2])
    assert gt.sum() == 1 and gt[1, 2] == 1


def test_mat_cube_saved_bands_first_is_read_by_its_truth(tmp_path):
    """Bands last is the benchmark files' layout; a (bands, rows, cols) cube was read as if
    it were one, and its truth then refused as "does not match cube"."""
    cube = np.arange(3 * 7 * 5, dtype=np.float32).reshape(3, 7, 5)      # bands, rows, cols
    truth = np.zeros((7, 5), np.uint8)
    truth[2, 4] = 1
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": truth})
    got, gt = read_mat(tmp_path / "s.mat")
    np.testing.assert_array_equal(got, cube)
    assert gt.shape == (7, 5) and gt[2, 4] == 1
    scipy.io.savemat(tmp_path / "bad.mat", {"data": cube, "map": np.zeros((4, 4))})
    with pytest.raises(HsanomalyError, match="the ground truth 'map' is 4 x 4 pixels, and the "
                                             "cube .3 x 7 x 5. has no two axes of that size"):
        read_mat(tmp_path / "bad.mat")


def test_mat_layout_is_told_by_a_named_truth_only(tmp_path):
    """An unnamed 2-D variable (a cols x bands calibration matrix) turned a (rows, cols, bands)
    cube around as if it were a truth of a bands-first one; it is refused now, naming it. A
    truth named 'truth' or 'target' says the layout as 'map' does."""
    cube = np.random.default_rng(0).random((30, 40, 12))                 # rows, cols, bands
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "gain": np.ones((40, 12))})
    with pytest.raises(HsanomalyError, match="the variable 'gain' .40 x 12. has the size of the "
                                             "cube's last two axes"):
        read_mat(tmp_path / "s.mat")
    scipy.io.savemat(tmp_path / "t.mat", {"data": cube, "gain": np.ones((40, 12)),
                                          "map": np.eye(30, 40)})
    assert read_mat(tmp_path / "t.mat")[0].shape == (12, 30, 40)
    first = np.moveaxis(cube, -1, 0)                                      # bands, rows, cols
    for name in ("truth", "target"):
        scipy.io.savemat(tmp_path / f"{name}.mat", {"data": first, name: np.eye(30, 40)})
        got, gt = read_mat(tmp_path / f"{name}.mat")
        assert got.shape == (12, 30, 40) and gt.sum() == 30


def test_mat_beside_a_wavelength_vector_or_text_is_read(tmp_path):
    """A lone 2-D variable was taken for the truth whatever its shape, so a 1 x bands
    wavelength vector (or a v7.3 text variable) made the file unreadable to every command."""
    cube = np.random.default_rng(0).random((6, 8, 4))
    microns = np.array([[0.45, 0.55, 0.65, 0.75]])
    scipy.io.savemat(tmp_path / "v5.mat", {"data": cube, "wavelength": microns})
    got, gt = read_mat(tmp_path / "v5.mat")
    assert got.shape == (4, 6, 8) and gt is None
    # and the vector gives the bands' centres, to train and detect, and to convert's GeoTIFF
    # (they were dropped: a model trained on the scene could not check a raster's bands)
    centres = [450.0, 550.0, 650.0, 750.0]
    assert open_source(tmp_path / "v5.mat").wavelengths == pytest.approx(centres)
    convert_mat(tmp_path / "v5.mat", tmp_path / "v5.tif")
    assert RasterSource(tmp_path / "v5.tif").wavelengths == pytest.approx(centres)
    with h5py.File(tmp_path / "v73.mat", "w") as f:
        f["data"] = cube.T
        text = f.create_dataset("sensor", data=np.frombuffer(b"A\0V\0I\0", np.uint16)[None])
        text.attrs["MATLAB_class"] = np.bytes_(b"char")
        f["map"] = np.eye(6, 8).T
    got, gt = read_mat(tmp_path / "v73.mat")
    np.testing.assert_allclose(got, np.moveaxis(cube, -1, 0))
    assert gt.sum() == 6


def test_convert_keeps_wide_integers_and_labels_exact(tmp_path):
    """The cube was cast to float32 before its integer test (16777217 -> 16777216), values
    beyond float32 became inf (nodata), and a labelled truth was written as 0/1."""
    cube = np.full((4, 4, 3), 16777217, np.int32)
    cube[0, 0, 0] = 0
    labels = np.zeros((4, 4))
    labels[1, 1], labels[2, 2], labels[3, 3] = 1, 2, np.nan
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": labels})
    assert convert_mat(tmp_path / "s.mat", tmp_path / "s.tif", tmp_path / "gt.tif")[3] == 2
    with rasterio.open(tmp_path / "s.tif") as ds:
        assert ds.dtypes[0] == "int32" and ds.read(1)[1, 1] == 16777217
    with rasterio.open(tmp_path / "gt.tif") as ds:
        assert ds.nodata == 255
        np.testing.assert_array_equal(ds.read(1), np.nan_to_num(labels, nan=255))
    huge = np.random.default_rng(0).random((4, 4, 3))
    huge[1, 1, 0] = 1e39
    scipy.io.savemat(tmp_path / "huge.mat", {"data": huge})
    for read in (lambda: convert_mat(tmp_path / "huge.mat", tmp_path / "huge.tif"),
                 lambda: open_source(tmp_path / "huge.mat")):
        with pytest.raises(HsanomalyError, match="band 1 holds values beyond float32's range"):
            read()
    assert not (tmp_path / "huge.tif").exists()


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
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.zeros((3, 3, 4)), "b": np.ones((3, 3, 4))})
    with pytest.raises(HsanomalyError, match=r"two.mat: 2 3-D variables \(a, b\) and none named"):
        read_mat(tmp_path / "two.mat")


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


def test_band_scale_and_offset_are_applied(tmp_path):
    """A product stored as (value - offset) / scale, with GDAL's scale/offset metadata, reads
    as its values (it was scored in its stored counts, with no word); nodata stays nodata."""
    cube, _ = synthetic_cube()
    scales = np.linspace(0.5, 4, 12)
    offsets = np.linspace(-100, 1000, 12)
    stored = ((cube - offsets[:, None, None]) / scales[:, None, None]).astype(np.float32)
    stored[:, 0, 0] = NODATA
    path = write_raster(tmp_path / "scaled.tif", stored, nodata=NODATA)
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = tuple(scales), tuple(offsets)
    block, valid = RasterSource(path).read(Window(0, 0, 50, 40))
    assert not valid[0, 0] and np.isnan(block[:, 0, 0]).all()
    np.testing.assert_allclose(block[:, valid], cube[:, valid], rtol=1e-4, atol=1e-4)
    with rasterio.open(path, "r+") as ds:
        ds.scales = (0.0,) + tuple(scales[1:])
    with pytest.raises(HsanomalyError, match="scaled.tif: band scale/offset metadata is not usable"):
        RasterSource(path)


def test_scaled_values_float32_cannot_resolve_are_warned_about(tmp_path):
    """uint16 counts with an offset of 1e5 and a scale of 1e-3: float32 rounds the scaled
    values by more than their spread allows. The same values stored as float64 were warned
    about; scaled, the check saw only the stored counts, and the scores were silently off."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    stored = np.random.default_rng(0).integers(0, 1000, (12, 20, 20)).astype(np.uint16)
    path = write_raster(tmp_path / "scaled.tif", stored, dtype="uint16")
    for offset, said in ((1e5, True), (0.0, False)):
        with rasterio.open(path, "r+") as ds:
            ds.scales, ds.offsets = (1e-3,) * 12, (offset,) * 12
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(path).check_data()
        said_now = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
        assert any("once scaled by its scale and offset" in m and "gdal_edit.py -offset" in m
                   for m in said_now) == said, said_now


@pytest.mark.parametrize("factor, said", [
    (1.0, None), (1e-30, None),
    (1e-46, "values are so small that float32, in which pixels are scored, rounds them by"),
    (1e-300, "values are so small that float32"),      # every value rounds to 0
    (1e12, "times their spread from zero"),
])
def test_float64_values_too_small_for_float32_are_warned_about(tmp_path, factor, said):
    """float64 values in units far too large (1e-46) lie below float32's finest step: it
    rounded them by up to half their spread, and the heatmap was off by up to 30 %, without
    a word; at 1e-300 every value became 0 and the only warning was of constant bands. Far
    from zero (1e12 from a spread of ~1), the former warning holds."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    values = cube.astype(np.float64)
    values = values * factor if factor < 1e6 else values + factor
    path = write_raster(tmp_path / "x.tif", values, dtype="float64")
    for check in (lambda: RasterSource(path).check_data(),
                  lambda: ArraySource(values, name=f"array x{factor:g}")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check()
        coarse = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)
                  and "float32, in which pixels are scored" in str(w.message)]
        if said is None:
            assert coarse == []
        else:
            assert len(coarse) == 1 and said in coarse[0], coarse


def test_a_scale_beyond_float32_is_refused_not_turned_into_nodata(tmp_path):
    """int16 counts times a scale of 1e35 overflow float32, in which pixels are scored: the
    brightest pixels became infinite, then nodata, and the run said nothing but numpy's
    overflow warning."""
    import warnings

    stored = np.full((2, 20, 20), 100, np.int16)
    stored[0, 10, 12] = 30000                               # 3e39 once scaled
    stored[:, 0, 0] = -32768
    path = write_raster(tmp_path / "scaled.tif", stored, nodata=-32768)
    with rasterio.open(path, "r+") as ds:
        ds.scales = (1e35, 1e35)
    with pytest.raises(HsanomalyError, match="scaled.tif: band 1 holds values beyond float32's "
                                             "range .* once scaled"):
        RasterSource(path).read(Window(0, 0, 20, 20))
    with rasterio.open(path, "r+") as ds:
        ds.scales = (1e33, 1e33)                            # 3e37: within float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block, valid = RasterSource(path).read(Window(0, 0, 20, 20))
    assert valid.sum() == 399 and block[0, 10, 12] == pytest.approx(3e37, rel=1e-6)


def test_float64_nodata_beyond_float32_reads_without_warnings(tmp_path):
    import warnings

    stored = np.ones((2, 10, 10))
    stored[:, 0, 0] = -np.finfo(np.float64).max
    path = tmp_path / "f64.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float64", count=2, height=10, width=10,
                       nodata=-np.finfo(np.float64).max) as ds:
        ds.write(stored)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block, valid = RasterSource(path).read(Window(0, 0, 10, 10))
    assert not valid[0, 0] and valid.sum() == 99


def test_streaming_reduce_and_sample_match_memory(synthetic_raster):
    path, _, nodata_mask = synthetic_raster
    src = RasterSource(path)
    n = src.reduce(lambda X: np.array(len(X)), tile=16)
    assert n == (~nodata_mask).sum()
    a, b = src.sample(300, seed=1, tile=16), src.sample(300, seed=1, tile=16)
    np.testing.assert_array_equal(a, b)
    assert 150 < len(a) < 450 and np.isfinite(a).all()


def test_a_sample_is_about_n_valid_pixels_however_much_is_nodata():
    """The fraction drawn was n over every pixel, so a raster three quarters nodata gave a
    quarter of the sample the statistics (gmm, the residual scores) asked for."""
    cube = np.random.default_rng(0).normal(size=(4, 200, 200)).astype(np.float32)
    cube[:, :, :150] = np.nan                                   # 10,000 valid pixels
    source = ArraySource(cube)
    for n in (2000, 5000, 50000):
        drawn = source.sample(n, seed=3, tile=64)
        assert abs(len(drawn) - min(n, 10000)) < 0.05 * min(n, 10000) + 100, (n, len(drawn))
        np.testing.assert_array_equal(drawn, source.sample(n, seed=3, tile=64))


def test_a_sample_folds_the_scene_moments_on_its_pass_so_a_fit_reads_the_raster_once():
    """The default score's fit drew its sample in one pass over the raster and then read it
    all again for the moments its rings on the pixels fit on. Within ``folding`` the sample
    folds them on its pass: the same bits as a pass of their own, also where nodata makes it
    draw again, handed over once and never kept: an array's pixels may change between fits."""
    import pickle

    cube = np.random.default_rng(0).normal(1000, 5, size=(6, 150, 140)).astype(np.float32)
    cube[:, :, :100] = np.nan                        # the sample draws again
    expected = scene_moments(ArraySource(cube), tile=64)
    source, reads = ArraySource(cube), []
    read = source._read
    source._read = lambda window: reads.append(window) or read(window)
    with source.folding(SCENE_MOMENTS):
        drawn = source.sample(500, seed=2, tile=64)
        passes = len(reads)
        got = scene_moments(source, tile=64)
        assert len(reads) == passes == 2 * len(source.windows(64))    # the draw and its redraw
        for part, want in zip(got, expected):
            np.testing.assert_array_equal(part, want)
        scene_moments(source, tile=64)                               # once: a pass of its own
        assert len(reads) == passes + len(source.windows(64))
        del source._read
        assert "_folding" not in vars(pickle.loads(pickle.dumps(source)))
    np.testing.assert_array_equal(drawn, ArraySource(cube).sample(500, seed=2, tile=64))
    cube *= 2                                        # the caller's array, changed between fits
    np.testing.assert_array_equal(scene_moments(source, tile=64)[1],
                                  scene_moments(ArraySource(cube), tile=64)[1])


def test_noise_bands_that_hold_much_of_the_variance_are_said():
    """Water vapour bands left in a scene: local RX, gmm and the rings project on the leading
    principal components, which ten noisy bands took over (lrx 0.90 -> 0.63 AUC in the
    numerics audit) without a word. Noise-like bands of little variance are no matter."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=40, rows=60, cols=60)
    rng = np.random.default_rng(1)

    def said(cube):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ArraySource(cube.astype(np.float32)).check_data()
        return [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)
                and "barely follow" in str(w.message)]

    assert said(cube) == []
    noisy = cube.copy()
    noisy[20:25] = rng.normal(cube.mean(), 5 * cube.std(), (5, 60, 60))
    assert said(noisy) == ["<array>: 5 bands (21, 22, 23, 24, 25) barely follow their "
                           "neighbours in the pixels probed, as noise does (water vapour "
                           "absorption bands, or a layer that is no band of the spectra?), and "
                           "hold 93% of the pixels' variance, enough that the principal "
                           "components of lrx, gmm and the rings of the context scores would be "
                           "spent on them (rx is not affected); leave them out (a band subset)"]
    one = cube.copy()
    one[20] = rng.normal(cube.mean(), 5 * cube.std(), (60, 60))
    assert said(one)[0].startswith("<array>: 1 band (21) barely follows its neighbours")
    faint = cube.copy()
    faint[20:25] = rng.normal(cube.mean(), 1e-3 * cube.std(), (5, 60, 60))
    assert said(faint) == []


def test_noise_bands_of_little_variance_that_still_take_principal_components_are_said():
    """The example scene with 20 absorption bands of 10 times its own band-to-band noise:
    0.7 % of the variance, below the share said before, yet each varies more than the
    scene's 10th principal component; gmm lost 0.94 -> 0.87 AUC and lrx 0.90 -> 0.88 without
    a word (the sensor audit). Bands of the scene's own noise take none, and are not said."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    with rasterio.open(EXAMPLE) as src:
        cube = src.read().astype(np.float32)
    noise = np.median(np.std(np.diff(cube, axis=0), axis=(1, 2))) / np.sqrt(2)
    rng = np.random.default_rng(0)

    def said(times):
        bands = rng.normal(cube.mean(), times * noise, (20,) + cube.shape[1:])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ArraySource(np.concatenate([cube, bands.astype(np.float32)])).check_data()
        return [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)
                and "barely follow" in str(w.message)]

    assert said(1) == []
    found = said(10)
    assert len(found) == 1 and found[0].startswith(
        "<array>: 20 bands (206, 207, 208, 209, 210, 211, 212, 213, ...) barely follow their "
        "neighbours")
    assert "hold 0.71% of the pixels' variance, enough that the principal components" in found[0]
    # a few hot pixels, extreme in one band each, make no band noise (the artefacts audit's
    # F01: 5 of them had bands 51 and 101 left out as water vapour absorption bands)
    hot = cube.copy()
    for row, col, band in [(10, 10, 50), (30, 60, 50), (70, 20, 100), (50, 50, 100), (5, 90, 50)]:
        hot[band, row, col] = 65535
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ArraySource(hot).check_data()
    assert not [w for w in caught if "barely follow" in str(w.message)]


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
    mask, known = read_truth(tmp_path / "t.tif")
    np.testing.assert_array_equal(mask, truth)
    assert known is None
    scene = read_scene(tmp_path / "s.tif", truth=tmp_path / "t.tif")
    assert scene.truth.sum() == 1 and scene.cube.shape == (4, 6, 7)


@pytest.mark.parametrize("dst, truth, label", [("s.img", "t.tif", "'dst'"), ("s.tif", "t.png", "'truth'")])
def test_convert_refuses_an_output_named_for_another_format(tmp_path, dst, truth, label):
    scipy.io.savemat(tmp_path / "s.mat", {"data": np.ones((6, 7, 4)), "map": np.eye(6, 7)})
    with pytest.raises(HsanomalyError, match=f"{label} writes a GeoTIFF; give it a .tif or .tiff name"):
        convert_mat(tmp_path / "s.mat", tmp_path / dst, truth=tmp_path / truth)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mat"]


def test_convert_replaces_its_own_outputs_and_nothing_else(tmp_path, synthetic_raster):
    cube = np.random.default_rng(0).integers(0, 300, (6, 7, 4)).astype(np.int16)
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": np.eye(6, 7, dtype=np.uint8)})
    convert_mat(tmp_path / "s.mat", tmp_path / "s.tif", truth=tmp_path / "t.tif")
    convert_mat(tmp_path / "s.mat", tmp_path / "s.tif", truth=tmp_path / "t.tif")   # a rerun
    theirs = tmp_path / "theirs.tif"
    theirs.write_bytes(open(synthetic_raster[0], "rb").read())       # a raster we did not write
    for dst, truth, label in ((theirs, None, "'dst'"), (tmp_path / "new.tif", theirs, "'truth'")):
        with pytest.raises(HsanomalyError, match=f"theirs.tif: {label} exists and is not a "
                                                 "GeoTIFF written by hsanomaly"):
            convert_mat(tmp_path / "s.mat", dst, truth=truth)
    assert theirs.read_bytes() == open(synthetic_raster[0], "rb").read()
    assert not (tmp_path / "new.tif").exists()
    convert_mat(tmp_path / "s.mat", theirs, overwrite=True)
    with rasterio.open(theirs) as ds:
        assert ds.count == 4


def test_a_scene_leaves_out_the_pixels_whose_truth_is_nodata_and_needs_its_grid(
        tmp_path, synthetic_raster):
    from affine import Affine

    from synthetic import TRANSFORM, write_raster

    path, truth, nodata_mask = synthetic_raster
    partial = truth.astype(np.float32)
    partial[30:, :] = 255
    write_raster(tmp_path / "t.tif", partial[None], nodata=255)
    scene = read_scene(path, truth=tmp_path / "t.tif")
    # evaluated where the truth is known; scored (the cube) on every valid pixel, as detect
    # scores it: the benchmark's AUC was of another scene than detect + evaluate's
    np.testing.assert_array_equal(scene.valid, ~nodata_mask)
    np.testing.assert_array_equal(scene.evaluated, ~nodata_mask & (np.arange(40) < 30)[:, None])
    assert np.isfinite(scene.cube[:, 30:]).all() and scene.truth[30:].sum() == 0
    write_raster(tmp_path / "moved.tif", truth[None].astype(np.float32),
                 transform=TRANSFORM * Affine.translation(0, 3))
    with pytest.raises(HsanomalyError, match="moved.tif: the mask is not on the grid of"):
        read_scene(path, truth=tmp_path / "moved.tif")
    # a grid that differs by its rotation alone was told as two identical grids
    write_raster(tmp_path / "turned.tif", truth[None].astype(np.float32),
                 transform=TRANSFORM * Affine.shear(0.5, 0))
    with pytest.raises(HsanomalyError, match=r"turned.tif: the mask is not on the grid of .*"
                                             r"\(pixel \S+ x -\S+ at \S+, \S+, rotated by "
                                             r"[-0-9.]+, 0 against pixel \S+ x -\S+ at \S+, \S+\)"):
        read_scene(path, truth=tmp_path / "turned.tif")


def test_a_mask_in_the_same_crs_written_otherwise_lines_up(tmp_path, synthetic_raster):
    """UTM 33N as a PROJ string with a zero datum shift was refused as another CRS, in a
    message naming EPSG:32633 twice; another zone is still refused."""
    from synthetic import write_raster

    path, truth, _ = synthetic_raster
    written = "+proj=utm +zone=33 +ellps=WGS84 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"
    write_raster(tmp_path / "same.tif", truth[None].astype(np.float32), crs=written)
    mask, _ = read_truth(tmp_path / "same.tif", grid_of=path)
    np.testing.assert_array_equal(mask, truth != 0)
    write_raster(tmp_path / "zone.tif", truth[None].astype(np.float32), crs="EPSG:32632")
    with pytest.raises(HsanomalyError, match="zone.tif: the mask is in EPSG:32632 but .* is in "
                                             "EPSG:32633"):
        read_truth(tmp_path / "zone.tif", grid_of=path)


def test_nan_in_a_mat_truth_is_unknown_not_a_target(tmp_path):
    """NaN != 0, so a .mat truth's NaN pixels were read as 200 target pixels."""
    cube = (np.arange(20 * 20 * 6).reshape(20, 20, 6) % 11).astype(np.float64)
    truth = np.zeros((20, 20))
    truth[2, 2] = 1
    truth[10:] = np.nan
    scipy.io.savemat(tmp_path / "s.mat", {"data": cube, "map": truth})
    mask, known = read_truth(tmp_path / "s.mat")
    assert mask.sum() == 1 and known.sum() == 200 and not known[10:].any()
    scipy.io.savemat(tmp_path / "alone.mat", {"map": truth})     # a truth saved on its own
    alone, known_alone = read_truth(tmp_path / "alone.mat")
    assert np.array_equal(alone, mask) and np.array_equal(known_alone, known)
    scene = read_scene(tmp_path / "s.mat")
    assert scene.truth.sum() == 1 and scene.evaluated.sum() == 200 and scene.valid.all()
    assert convert_mat(tmp_path / "s.mat", tmp_path / "c.tif", truth=tmp_path / "t.tif")[3] == 1
    with rasterio.open(tmp_path / "t.tif") as ds:
        written = ds.read(1, masked=True)
    assert written.mask[10:].all() and not written.mask[:10].any() and written.sum() == 1


def test_truth_shape_mismatch(tmp_path, synthetic_raster):
    _, truth, _ = synthetic_raster
    path = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    with pytest.raises(HsanomalyError, match="the mask is 40x50 pixels, the scene is 3x3"):
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


@pytest.mark.parametrize("units, values, expected", [
    ("Index", "1, 2, 3", None),                     # band numbers were 1000, 2000, 3000 nm
    ("GHz", "5, 6, 7", None),
    ("Wavenumber", "2500, 2000, 1000", [4000.0, 5000.0, 10000.0]),   # cm^-1: 1e7 / v nm
    ("Unknown", "0.45, 0.55, 0.65", [450.0, 550.0, 650.0]),          # not given: guessed
    ("Centimeters", "4.5e-5, 5.5e-5, 6.5e-5", [450.0, 550.0, 650.0]),
    ("nanometres", "450, 550, 650", [450.0, 550.0, 650.0]),        # other spellings
    ("Micrometres", "0.45, 0.55, 0.65", [450.0, 550.0, 650.0]),
    ("\u03bcm", "0.45, 0.55, 0.65", [450.0, 550.0, 650.0]),          # Greek mu
    ("nm (nanometers)", "450, 550, 650", [450.0, 550.0, 650.0]),
    ("centimeter", "4.5e-5, 5.5e-5, 6.5e-5", [450.0, 550.0, 650.0]),    # singular
    ("meter", "4.5e-7, 5.5e-7, 6.5e-7", [450.0, 550.0, 650.0]),
    ("angstrom", "4500, 5500, 6500", [450.0, 550.0, 650.0]),
    ("cm^-1", "2500, 2000, 1000", [4000.0, 5000.0, 10000.0]),
])
def test_envi_units_that_are_no_length_give_no_wavelengths(tmp_path, units, values, expected):
    """ENVI's other units were taken for nanometres or micrometres, and a model trained on
    such a file recorded them, so the same sensor's files were later refused by them."""
    from hsanomaly.io.source import RasterSource

    envi = tmp_path / "scene.img"
    with rasterio.open(envi, "w", driver="ENVI", dtype="float32", count=3, height=4, width=5) as ds:
        ds.write(np.ones((3, 4, 5), np.float32))
    header = envi.with_suffix(".hdr")
    header.write_text(header.read_text() + f"wavelength units = {units}\n"
                      f"wavelength = {{{values}}}\n")
    found = RasterSource(envi).wavelengths
    assert found == (None if expected is None else pytest.approx(expected))


def test_model_refuses_a_raster_with_other_wavelengths(tmp_path):
    from types import SimpleNamespace

    from hsanomaly.model import check_wavelengths

    bundle = SimpleNamespace(wavelengths=[0.45, 0.55, 0.65], path=tmp_path / "model")
    check_wavelengths(bundle, [450.2, 550.0, 650.4], "scene.tif")     # micrometre-era bundle
    from hsanomaly.errors import HsanomalyWarning
    with pytest.warns(HsanomalyWarning, match="scene.tif: has no band centres to check against "
                                              "the 450-650 nm the model"):
        check_wavelengths(bundle, None, "scene.tif")     # nothing vouches for its band order
    with pytest.raises(HsanomalyError, match="band 2 is centred at 600 nm .* 550 nm .*"
                                             "ignore_wavelengths=True"):
        check_wavelengths(bundle, [450.0, 600.0, 650.0], "scene.tif")
    with pytest.raises(HsanomalyError, match=r"scene.tif: holds the band centres the model .* "
                                             r"in another order \(band 1 is centred at 650 nm, "
                                             r"the model's band 1 at 450 nm\); put its bands in "
                                             r"the model's order .*, not ignore_wavelengths=True"):
        check_wavelengths(bundle, [650.0, 550.0, 450.0], "scene.tif")     # a descending product
    unnamed = SimpleNamespace(wavelengths=None, path=tmp_path / "model")   # trained on a .mat
    with pytest.warns(HsanomalyWarning, match=r"scene.tif: its band centres \(650-450 nm\) "
                                              "cannot be checked: the model .* records none"):
        check_wavelengths(unnamed, [650.0, 550.0, 450.0], "scene.tif")   # reversed, say


def test_a_side_file_in_a_linked_folder_keeps_the_name_it_is_read_by(tmp_path):
    """A VRT whose source lies in a data folder that is a link (to a big disk): its
    fingerprint named the source by the link's target ("../store/band.tif"), so a moved
    project was another input, and results of earlier versions were scored again."""
    import shutil

    from hsanomaly.io.fingerprint import input_fingerprint

    (tmp_path / "store").mkdir()
    (tmp_path / "proj").mkdir()
    with rasterio.open(tmp_path / "store" / "band.tif", "w", driver="GTiff", width=6, height=4,
                       count=1, dtype="float32") as ds:
        ds.write(np.arange(24, dtype=np.float32).reshape(1, 4, 6))
    (tmp_path / "proj" / "data").symlink_to(tmp_path / "store")
    (tmp_path / "proj" / "scene.vrt").write_text(
        '<VRTDataset rasterXSize="6" rasterYSize="4"><VRTRasterBand dataType="Float32" band="1">'
        '<SimpleSource><SourceFilename relativeToVRT="1">data/band.tif</SourceFilename>'
        '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    fingerprint = input_fingerprint(str(tmp_path / "proj" / "scene.vrt"))
    assert list(fingerprint["with"]) == ["data/band.tif"]
    shutil.copytree(tmp_path / "proj", tmp_path / "moved", symlinks=True)
    assert input_fingerprint(str(tmp_path / "moved" / "scene.vrt")) == fingerprint


def test_a_model_of_hsanomaly_0_1_refuses_a_raster_whose_bands_are_scaled(tmp_path):
    """hsanomaly 0.1 trained on the stored values of a raster with band scales; this version
    reads them scaled, and such a model scored other units than it saw without a word (a
    scale of 0.5 reversed the critic's ranking)."""
    from types import SimpleNamespace

    from hsanomaly.model import check_scaling

    cube = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5)
    for name, scales in (("plain.tif", (1.0, 1.0)), ("scaled.tif", (0.5, 0.5))):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=5, height=4, count=2,
                           dtype="uint16") as ds:
            ds.write(cube)
            ds.scales = scales
    old = SimpleNamespace(meta={"hsanomaly_version": "0.1.0"}, path=tmp_path / "model")
    new = SimpleNamespace(meta={"hsanomaly_version": "0.2.0"}, path=tmp_path / "model")
    scaled, plain = RasterSource(tmp_path / "scaled.tif"), RasterSource(tmp_path / "plain.tif")
    with pytest.raises(HsanomalyError, match=r"scaled.tif: its bands carry a scale or offset, "
                                             r"which hsanomaly 0.1.0 ignored as it trained the "
                                             r"model .*; train the model again"):
        check_scaling(old, scaled)
    check_scaling(old, plain)
    check_scaling(new, scaled)
    scaled.close(), plain.close()
    # so does a DataArray's scale_factor, which 0.1 ignored too (the raster's check alone ran)
    from hsanomaly.io.source import band_scaling

    attributes = ArraySource(cube, name="DataArray 'r'", scaling=band_scaling(0.5, 0.0, 2, None))
    with pytest.raises(HsanomalyError, match="DataArray 'r': its bands carry a scale"):
        check_scaling(old, attributes)
    check_scaling(old, ArraySource(cube))


# --- the one write path, paths, fingerprints, memory checks (issue 11) ------------------------

def test_a_write_failure_in_a_temporary_names_its_output():
    """A file-size limit hit while GDAL wrote a staged heatmap named the private temporary."""
    import errno

    from hsanomaly.engine.checks import runtime_error
    from hsanomaly.io.atomic import TMP_SUFFIX, destination_of

    staged_file = f"/data/.h.tif.1-host.abc{TMP_SUFFIX}/h.tif"
    assert str(destination_of(staged_file)) == "/data/h.tif"
    assert str(destination_of("/data/h.tif")) == "/data/h.tif"
    nested = f"/data/.h.model.1-host.abc{TMP_SUFFIX}/.h.model.1-host.def{TMP_SUFFIX}/h.model/g.onnx"
    assert str(destination_of(nested)) == "/data/h.model/g.onnx"     # a quick model's export
    from hsanomaly.io.atomic import write_failure    # and in a library's own text of it
    said = str(write_failure(nested, RuntimeError(f"onnx: failed to write {nested}.tmp")))
    assert said == ("/data/h.model/g.onnx: cannot write (onnx: failed to write "
                    "/data/h.model/g.onnx.tmp); nothing was replaced")
    err = OSError(errno.EFBIG, "File too large", staged_file)
    assert str(runtime_error(err, "h.tif")).startswith("/data/h.tif: ")


def test_gdals_write_failed_under_a_file_size_limit_names_the_limit(tmp_path):
    """GDAL says "Write failed. See previous exception" of a heatmap that hit ``ulimit -f``:
    the message did not name the limit, why --resume alone would fail again. Where the file's
    size is unknown, the limit is a cause that may be: named, and no ``OutOfResources``."""
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 2**20, "
            "10 * 2**20)); from rasterio.errors import RasterioIOError; "
            "from hsanomaly.engine.checks import runtime_error; print(runtime_error("
            "RasterioIOError('Write failed. See previous exception for details.'), "
            f"{str(tmp_path / 'heat.tif')!r}))")
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120).stdout.strip()
    assert said.startswith(f"{tmp_path / 'heat.tif'}: Write failed; a file-size limit of "
                           "10.0 MiB (ulimit -f); the finished tiles are kept: rerun with")


def test_a_failure_beside_a_limit_is_no_running_out_unless_it_ran_out(tmp_path):
    """Under any file-size limit (1 TiB), a write refused for its permissions was
    ``OutOfResources`` and told to wait for room: a service retrying those would retry a
    permission error for ever (the review's F02). The limit is still named, as a cause that
    may be; running out is said where the error says so, or where the file reached it."""
    import subprocess
    import sys

    code = ("import errno, resource; resource.setrlimit(resource.RLIMIT_FSIZE, (2**40, 2**40)); "
            "from rasterio.errors import RasterioIOError; "
            "from hsanomaly.engine.checks import runtime_error; "
            "from hsanomaly.io.atomic import write_failure; "
            f"path = {str(tmp_path / 'heat.tif')!r}; "
            "denied = PermissionError(errno.EACCES, 'Permission denied'); "
            "full = OSError(errno.ENOSPC, 'No space left on device'); "
            "print([type(e).__name__ for e in (write_failure(path, denied), "
            "runtime_error(denied, path), write_failure(path, full), runtime_error(full, path), "
            "runtime_error(RasterioIOError('Write failed'), path))]); "
            "print(runtime_error(denied, path))")
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120).stdout.splitlines()
    assert said[0] == str(["HsanomalyError", "HsanomalyError", "OutOfResources",
                           "OutOfResources", "HsanomalyError"])
    assert "once there is room" not in said[1] and "(ulimit -f)" in said[1]


def test_a_heatmap_cut_short_by_a_file_size_limit_is_out_of_resources(tmp_path):
    """GDAL's writes do not fail at ``ulimit -f``: the file cut short fails as it is read back
    (an I/O error), which a review of this stop's own fix classed as a bad input again."""
    import subprocess
    import sys

    from synthetic import synthetic_cube, write_raster

    scene = write_raster(tmp_path / "scene.tif", synthetic_cube(rows=200, cols=200)[0])
    code = ("import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
            "import hsanomaly\ntry:\n    hsanomaly.detect("
            f"{str(scene)!r}, {str(tmp_path / 'heat.tif')!r}, score='rx', tile=64)\n"
            "except hsanomaly.HsanomalyError as err:\n    print(type(err).__name__, err)")
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300).stdout.strip()
    assert said.startswith(f"OutOfResources {tmp_path / 'heat.tif'}: ") and \
        "a file-size limit of 98 KiB (ulimit -f)" in said and "once there is room" in said, said


def test_an_interrupt_during_a_commits_cleanup_is_held_till_it_ends(tmp_path):
    """Ctrl-C once every output was in place broke off the cleanup after it (a tile store left
    half removed) and was reported as if nothing had been replaced."""
    import signal

    from hsanomaly.io.atomic import staged

    cleaned = []

    def cleanup():
        signal.raise_signal(signal.SIGINT)          # the user's Ctrl-C, right then
        cleaned.append("all of it")
    with pytest.raises(KeyboardInterrupt):
        with staged() as stage:
            stage.path(tmp_path / "out.txt").write_text("new")
            stage.on_commit(cleanup)
    assert cleaned == ["all of it"] and (tmp_path / "out.txt").read_text() == "new"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_commit_leaves_a_signal_handler_set_outside_python_alone(tmp_path, monkeypatch):
    """A host that embeds Python (uWSGI, mod_wsgi) sets its SIGTERM handler before Python
    starts, which Python reads as None: the commit's held handler could not be put back
    (a TypeError after the outputs were in place) and stayed, swallowing every SIGTERM."""
    import signal

    from hsanomaly.io import atomic

    outside = signal.getsignal
    monkeypatch.setattr(signal, "getsignal",
                        lambda number: None if number == signal.SIGTERM else outside(number))
    handled = []
    real_signal = signal.signal
    monkeypatch.setattr(signal, "signal",
                        lambda number, handler: handled.append(number) or real_signal(number,
                                                                                      handler))
    with atomic.staged() as stage:
        stage.path(tmp_path / "out.txt").write_text("new")
    assert (tmp_path / "out.txt").read_text() == "new"
    assert handled and signal.SIGTERM not in handled


def test_overlapping_quiet_blocks_in_threads_give_descriptor_2_back(monkeypatch):
    """Blocks that keep libtiff off stderr swap descriptor 2, which the whole process shares:
    two that overlapped in threads, the first ending first, left it on /dev/null for good (every
    later message of the process lost)."""
    import threading

    from hsanomaly.io import atomic

    monkeypatch.setattr(atomic, "_QUIET_NATIVE", True)        # as in a CLI command
    start = os.fstat(2)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with atomic.native_quiet():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with atomic.native_quiet():
            second_in.set()
            first_out.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    now = os.fstat(2)
    assert (now.st_dev, now.st_ino) == (start.st_dev, start.st_ino)


UNRELATED_CHECK = """
import resource, sys
from pathlib import Path
from hsanomaly.errors import HsanomalyError
from hsanomaly.io.atomic import staged
resource.setrlimit(resource.RLIMIT_FSIZE, (2**30, resource.RLIM_INFINITY))
def refuse(path):
    raise HsanomalyError(f"{path}: not good")
try:
    with staged() as stage:
        stage.path(Path(sys.argv[1]), check=refuse).write_text("new")
except HsanomalyError as err:
    print(err)
"""


def test_a_check_that_fails_for_its_own_reason_is_not_blamed_on_a_size_limit(tmp_path):
    """Under any finite ulimit -f, every failed check was said to meet "a file-size limit"."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", UNRELATED_CHECK, str(tmp_path / "b.txt")],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert out == f"{tmp_path / 'b.txt'}: not good; nothing was replaced"


def test_staged_outputs_are_replaced_together_or_not_at_all(tmp_path):
    from hsanomaly.io.atomic import TMP_SUFFIX, staged

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("earlier")

    def refuse(path):
        raise HsanomalyError(f"{path}: not good")

    with pytest.raises(HsanomalyError, match="not good; nothing was replaced") as err:
        with staged() as stage:
            stage.path(tmp_path / "a.txt").write_text("new a")
            stage.path(tmp_path / "b.txt", check=refuse).write_text("new b")
    assert str(err.value).startswith(f"{tmp_path / 'b.txt'}: not good")    # not its temporary
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["earlier", "earlier"]
    with staged() as stage:
        for name in ("a.txt", "b.txt"):
            tmp = stage.path(tmp_path / name)
            assert tmp.parent.name.startswith(f".{name}.") and tmp.parent.name.endswith(TMP_SUFFIX)
            assert oct(tmp.parent.stat().st_mode & 0o777) == "0o700"       # private
            tmp.write_text("new")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_staged_write_error_is_one_line_and_leaves_nothing(tmp_path):
    import errno

    from hsanomaly.io.atomic import atomic_path

    (tmp_path / "out.json").write_text("earlier")
    with pytest.raises(HsanomalyError, match="out.json: cannot write .file too large"):
        with atomic_path(tmp_path / "out.json"):
            raise OSError(errno.EFBIG, "File too large")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert (tmp_path / "out.json").read_text() == "earlier"


def test_atomic_directory_replaces_a_folder_whole(tmp_path):
    from hsanomaly.io.atomic import atomic_directory

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "model") as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("export failed")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["old.txt"]
    with atomic_directory(tmp_path / "model") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_rename_that_fails_mid_commit_puts_back_the_ones_before_it(tmp_path, monkeypatch,
                                                                      exchange):
    from hsanomaly.io import atomic

    if not exchange:              # where renameat2 cannot swap, the old folder is moved aside
        monkeypatch.setattr(atomic, "_rename2", lambda a, b, flag: False)
    (tmp_path / "a.txt").write_text("earlier a")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    (tmp_path / "b.txt").write_text("earlier b")
    with pytest.raises(HsanomalyError, match=r"b.txt: cannot replace it \(is a directory\); "
                                             "nothing was replaced"):
        with atomic.staged() as stage:
            stage.path(tmp_path / "a.txt").write_text("new a")
            (stage.directory(tmp_path / "model") / "new.txt").write_text("new")
            stage.path(tmp_path / "c.txt").write_text("new c")
            stage.path(tmp_path / "b.txt").write_text("new b")
            (tmp_path / "b.txt").unlink()           # the last rename will fail
            (tmp_path / "b.txt").mkdir()
            (tmp_path / "b.txt" / "user.txt").write_text("user's")
    assert (tmp_path / "a.txt").read_text() == "earlier a"
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model"]
    assert (tmp_path / "b.txt" / "user.txt").read_text() == "user's"


@pytest.mark.parametrize("exchange", [True, False])
def test_a_failed_commit_names_the_outputs_it_could_not_put_back(tmp_path, monkeypatch, exchange):
    """Without hard links the earlier file is kept only where renameat2 swaps it out."""
    import errno
    import os

    from hsanomaly.io import atomic

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)     # a file system without hard links
    if not exchange:
        monkeypatch.setattr(atomic, "_rename2", lambda a, b, flag: False)
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("earlier")
    outcome = ("nothing was replaced" if exchange else r"these were replaced and could not be "
               r"put back: .*a.txt \(no copy of the earlier one was kept\)")
    with pytest.raises(HsanomalyError, match=r"b.txt: cannot replace it \(is a directory\); "
                                             f"{outcome}$"):
        with atomic.staged() as stage:
            for name in ("a.txt", "b.txt"):
                stage.path(tmp_path / name).write_text("new")
            (tmp_path / "b.txt").unlink()
            (tmp_path / "b.txt").mkdir()
    assert (tmp_path / "a.txt").read_text() == ("earlier" if exchange else "new")
    assert (tmp_path / "b.txt").is_dir()

def test_an_interrupt_between_the_renames_puts_back_the_ones_before_it(tmp_path, monkeypatch):
    """Ctrl-C between two renames left the first output new and the second old, and the
    journals went with the staging, so nothing ever completed or undid it."""
    import functools
    import os

    from hsanomaly.io import atomic

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("earlier")
    real_replace, real_rename2 = os.replace, atomic._rename2

    for after_the_rename in (False, True):        # before b's rename, or in it once done
        fired = []

        def interrupted(rename, src, dst, *flag):
            staged = os.path.basename(src) == "b.txt" and atomic.TMP_SUFFIX in str(src)
            if staged and not fired:                  # once: not in the undo that follows
                fired.append(dst)
                if after_the_rename:
                    rename(src, dst, *flag)
                raise KeyboardInterrupt
            return rename(src, dst, *flag)

        monkeypatch.setattr(os, "replace", functools.partial(interrupted, real_replace))
        monkeypatch.setattr(atomic, "_rename2", functools.partial(interrupted, real_rename2))
        with pytest.raises(KeyboardInterrupt):
            with atomic.staged() as stage:
                for name in ("a.txt", "b.txt"):
                    stage.path(tmp_path / name).write_text("new")
        monkeypatch.undo()
        assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["earlier", "earlier"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]

def test_a_folder_that_cannot_be_flushed_stops_no_rollback(tmp_path, monkeypatch):
    """With warnings made errors, the flush warning of the first undo ended the rollback
    half way, and the earlier files went with the private folders."""
    import errno
    import warnings

    from hsanomaly.errors import HsanomalyWarning
    from hsanomaly.io import atomic

    real_fsync, flushes = atomic.fsync_path, []

    def no_folder_flush(path, directory=False):       # the first output's flush goes well
        if directory and not str(path).endswith(atomic.TMP_SUFFIX):
            flushes.append(path)
            if len(flushes) > 1:
                raise OSError(errno.EIO, "Input/output error")
        return real_fsync(path, directory)

    monkeypatch.setattr(atomic, "fsync_path", no_folder_flush)
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text("earlier")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        with pytest.raises(HsanomalyWarning, match="cannot flush the folder"):
            with atomic.staged() as stage:
                for name in ("a.txt", "b.txt", "c.txt"):
                    stage.path(tmp_path / name).write_text("new")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt", "c.txt")] == ["earlier"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt"]

def test_a_killed_runs_drawing_folder_goes_with_the_next_one(tmp_path):
    """Figures drawn before they are staged (the thesis) lie in a private folder inside the
    figures' folder: a killed run's is removed by the next, a live one's is left alone."""
    import subprocess
    import sys

    from hsanomaly.io import atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    killed = tmp_path / f".drawn.{dead}-{atomic._host()}.abc{atomic.TMP_SUFFIX}"
    alive = tmp_path / f".drawn.1-{atomic._host()}.abc{atomic.TMP_SUFFIX}"     # pid 1 runs
    for folder in (killed, alive):
        folder.mkdir()
        (folder / "scene-roc.png").write_bytes(b"half drawn")
    with atomic.drawing_folder(tmp_path) as drawn:
        assert drawn.parent == tmp_path and not killed.exists() and alive.exists()
        (drawn / "scene-roc.png").write_bytes(b"drawn")
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]

def test_a_writers_lock_not_its_pid_says_whether_its_temporaries_are_abandoned(tmp_path):
    """A writer in another pid namespace of this host (a container) looked dead to a run that
    could not see its pid, which removed the live run's temporaries; and a dead writer whose
    pid another process has now looked alive. A live writer holds a lock on its folder."""
    import os
    import subprocess
    import sys
    import time

    from hsanomaly.io import atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    holds = atomic._host() + atomic.HOLDS             # a writer that holds a lock on its folder
    unseen = tmp_path / f".out.txt.{dead}-{holds}.abc{atomic.TMP_SUFFIX}"      # its pid unseen
    reused = tmp_path / f".out.txt.1-{holds}.def{atomic.TMP_SUFFIX}"           # pid 1 runs
    older = tmp_path / f".out.txt.1-{atomic._host()}.ghi{atomic.TMP_SUFFIX}"   # a writer from
    for folder in (unseen, reused, older):                                      # before locks
        folder.mkdir()
        (folder / "out.txt").write_text("half")
    hour_ago = time.time() - 3600
    for folder in (unseen, reused, older):          # long past its writer's start
        os.utime(folder, (hour_ago, hour_ago))
    holder = subprocess.Popen(                       # the live writer the pid does not show
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()",
         str(unseen)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with atomic.atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("whole")
            assert atomic._held_by_another(tmp.parent)         # this run's own, while it runs
        assert unseen.exists() and older.exists() and not reused.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with atomic.atomic_path(tmp_path / "out.txt") as tmp:    # its writer gone: removed
        tmp.write_text("again")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([older.name, "out.txt"])


def test_outputs_in_a_folder_reached_through_a_link_are_replaced_together(tmp_path):
    """The folder's flush after each rename refused the link (O_NOFOLLOW), so the first output
    was replaced, the run said it failed, and the rest stayed from the earlier run."""
    import os

    from hsanomaly.io import atomic

    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    for name in ("a.txt", "b.txt"):
        (tmp_path / "real" / name).write_text("earlier")
    with atomic.staged() as stage:
        for name in ("a.txt", "b.txt"):
            stage.path(tmp_path / "link" / name).write_text("new")
    assert [(tmp_path / "real" / n).read_text() for n in ("a.txt", "b.txt")] == ["new", "new"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["a.txt", "b.txt"]

def test_check_paths_sees_through_links_and_folders(tmp_path):
    import os

    from hsanomaly.io.paths import DIRECTORY, check_paths

    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    os.symlink(src, tmp_path / "soft.tif")
    os.link(src, tmp_path / "hard.tif")
    for out in ("in.tif", "soft.tif", "hard.tif", "./in.tif"):
        with pytest.raises(HsanomalyError, match="DST is the same file as the input SRC"):
            check_paths([("SRC", src)], [("DST", tmp_path / out)])
    with pytest.raises(HsanomalyError, match="--png collides with DST"):
        check_paths([("SRC", src)], [("DST", tmp_path / "o.tif"), ("--png", tmp_path / "o.tif")])
    with pytest.raises(HsanomalyError, match="store holds the input SRC"):
        check_paths([("SRC", src)], [("the store", tmp_path, DIRECTORY)])
    check_paths([("SRC", src)], [("DST", tmp_path / "o.tif"), ("--png", tmp_path / "o.png")])


def test_model_bundle_marker(tmp_path):
    import json

    from hsanomaly.io.paths import is_model_bundle

    (tmp_path / "model.json").write_text(json.dumps({"format": "hsanomaly-model",
                                                     "files": {"generator.onnx": "0"}}))
    (tmp_path / "generator.onnx").write_bytes(b"")
    assert is_model_bundle(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert not is_model_bundle(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "model.json").write_text(json.dumps({"format": "something-else"}))
    assert not is_model_bundle(tmp_path)


def test_file_fingerprint_hashes_small_files_whole_and_samples_large_ones(tmp_path, monkeypatch):
    from hsanomaly.io import fingerprint

    path = tmp_path / "f.bin"
    path.write_bytes(bytes(5_000_000))    # more than the sample reads (else hashed whole)
    small = fingerprint.file_fingerprint(path)
    assert set(small) == {"size", "sha256"}
    monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 1000)
    large = fingerprint.file_fingerprint(path)
    assert set(large) == {"size", "mtime_ns", "sample_sha256"}
    data = bytearray(path.read_bytes())
    data[-1] = 1                                        # the last block is always sampled
    path.write_bytes(bytes(data))
    assert fingerprint.file_fingerprint(path) != large


def test_a_large_side_file_renamed_over_by_one_of_its_size_and_time_is_told(tmp_path,
                                                                          monkeypatch):
    """A VRT's source over SIDE_HASH_BYTES was known by its size and time alone: another of
    both, renamed over it, kept a batch's stale heatmap as finished."""
    import rasterio.shutil

    from hsanomaly.io import fingerprint
    from synthetic import synthetic_cube, write_raster

    monkeypatch.setattr(fingerprint, "SIDE_HASH_BYTES", 1000)
    cube, _ = synthetic_cube(bands=3, rows=20, cols=20)
    data = write_raster(tmp_path / "data.tif", cube)
    rasterio.shutil.copy(data, tmp_path / "scene.vrt", driver="VRT")
    before = fingerprint.input_fingerprint(str(tmp_path / "scene.vrt"))
    stat_before = os.stat(data)
    other = write_raster(tmp_path / "other.tif", cube[:, ::-1].copy())
    assert os.path.getsize(other) == stat_before.st_size
    os.utime(other, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    os.replace(other, data)
    assert fingerprint.input_fingerprint(str(tmp_path / "scene.vrt")) != before


def test_an_inputs_fingerprint_covers_every_file_gdal_reads_for_it(tmp_path):
    """A VRT's source pixels or an ENVI header could change while the fingerprint (of the file
    named alone) did not: detect-many skipped the scene as current, --resume mixed two inputs."""
    import rasterio

    from hsanomaly.io.fingerprint import file_fingerprint, input_fingerprint
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(bands=3, rows=20, cols=20)
    data = write_raster(tmp_path / "data.tif", cube)
    assert input_fingerprint(str(data)) == file_fingerprint(data)     # a file read alone: as before
    # what a viewer writes beside it (QGIS's statistics and histograms, overviews) is no change
    (tmp_path / "data.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><Histograms><HistItem><HistMin>0</HistMin>'
        '</HistItem></Histograms><Metadata><MDI key="STATISTICS_MAXIMUM">3</MDI></Metadata>'
        '</PAMRasterBand></PAMDataset>')
    (tmp_path / "data.tif.ovr").write_bytes(b"overviews")
    assert input_fingerprint(str(data)) == file_fingerprint(data)
    (tmp_path / "data.tif.aux.xml").write_text(        # a nodata value there changes the pixels
        '<PAMDataset><PAMRasterBand band="1"><NoDataValue>0</NoDataValue></PAMRasterBand>'
        '</PAMDataset>')
    with_nodata = input_fingerprint(str(data))
    assert with_nodata != file_fingerprint(data)
    (tmp_path / "data.tif.aux.xml").write_text(        # ... and statistics added beside it do not
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <Histograms />\n    <NoDataValue>0'
        '</NoDataValue>\n    <Metadata>\n      <MDI key="STATISTICS_MEAN">1</MDI>\n    '
        '</Metadata>\n  </PAMRasterBand>\n</PAMDataset>\n')
    assert input_fingerprint(str(data)) == with_nodata
    placed = {}                  # RPCs or geolocation there place the pixels, on every output
    for domain, key in (("RPC", "LONG_OFF"), ("GEOLOCATION", "X_DATASET")):
        for value in ("12", "13"):
            (tmp_path / "data.tif.aux.xml").write_text(
                f'<PAMDataset><Metadata domain="{domain}"><MDI key="{key}">{value}</MDI>'
                '</Metadata><Metadata><MDI key="AREA">x</MDI></Metadata></PAMDataset>')
            placed[domain, value] = input_fingerprint(str(data))
    assert len(set(map(str, placed.values()))) == 4
    assert file_fingerprint(data) not in placed.values()
    # an ENVI header places the pixels itself: GDAL's copy of its rpc info, written into the
    # .aux.xml as a viewer asks for statistics, is no change
    envi = tmp_path / "scene.bil"
    with rasterio.open(envi, "w", driver="ENVI", width=20, height=20, count=3,
                       dtype="float32") as ds:
        ds.write(cube)
    before = input_fingerprint(str(envi))
    (tmp_path / "scene.bil.aux.xml").write_text(
        '<PAMDataset><Metadata domain="RPC"><MDI key="LONG_OFF">12</MDI></Metadata>'
        '</PAMDataset>')
    assert input_fingerprint(str(envi)) == before
    for side in ("data.tif.aux.xml", "data.tif.ovr"):
        (tmp_path / side).unlink()
    vrt = tmp_path / "scene.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource><SourceFilename '
        f'relativeToVRT="1">data.tif</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
        "</VRTRasterBand>" for b in (1, 2, 3))
    vrt.write_text(f'<VRTDataset rasterXSize="20" rasterYSize="20">{bands}</VRTDataset>')
    before = input_fingerprint(str(vrt))
    import shutil

    moved = shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-moved")
    assert input_fingerprint(str(moved / "scene.vrt")) == before        # a moved project
    write_raster(data, cube[:, ::-1])                                   # other pixels, same XML
    assert input_fingerprint(str(vrt)) != before
    with rasterio.open(tmp_path / "scene.img", "w", driver="ENVI", count=3, width=20, height=20,
                       dtype="float32") as dst:
        dst.write(cube)
    before = input_fingerprint(str(tmp_path / "scene.img"))
    with rasterio.open(tmp_path / "scene.img") as ds:     # statistics, as QGIS asks for them:
        ds.stats(indexes=[1])                             # GDAL copies the header into PAM too
    assert (tmp_path / "scene.img.aux.xml").exists()
    assert input_fingerprint(str(tmp_path / "scene.img")) == before
    header = tmp_path / "scene.hdr"
    header.write_text(header.read_text().replace("byte order = 0", "byte order = 1"))
    assert input_fingerprint(str(tmp_path / "scene.img")) != before

def test_mat_larger_than_memory_is_refused_before_loading(tmp_path, monkeypatch):
    from hsanomaly.io import checks

    scipy.io.savemat(tmp_path / "s.mat", {"data": np.ones((40, 50, 12)), "map": np.eye(40, 50)})
    with h5py.File(tmp_path / "v73.mat", "w") as f:
        f.create_dataset("data", data=np.ones((12, 50, 40)))
    monkeypatch.setattr(checks, "available_memory", lambda: 100_000)
    for name in ("s.mat", "v73.mat"):
        with pytest.raises(HsanomalyError, match=f"{name}: loading the .* needs about .* memory"):
            read_mat(tmp_path / name)


def test_a_truncated_v73_mat_is_one_line_naming_it(tmp_path, capfd):
    """It printed GDAL's HDF5 error stack (probing it as a raster) and an error naming the
    program, not the file."""
    from hsanomaly.cli import main

    with h5py.File(tmp_path / "whole.mat", "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).random((10, 64, 64)))
    raw = (tmp_path / "whole.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(HsanomalyError, match="cut.mat: not a readable MATLAB file"):
        read_mat(tmp_path / "cut.mat")
    capfd.readouterr()
    result = CliRunner().invoke(main, ["detect", str(tmp_path / "cut.mat"),
                                       str(tmp_path / "h.tif"), "--score", "rx"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        next(line for line in result.output.splitlines() if line.startswith("Error: "))]
    assert "cut.mat: not a readable MATLAB file" in result.output
    assert "HDF5-DIAG" not in capfd.readouterr().err


def test_complex_mat_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "c.mat", {"data": np.ones((4, 5, 3)) * 1j})
    with pytest.raises(HsanomalyError, match="complex pixels"):
        read_mat(tmp_path / "c.mat")


def test_another_users_file_in_a_sticky_directory_is_refused_up_front(tmp_path, monkeypatch):
    import os

    from hsanomaly.io.atomic import check_writable

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "theirs.tif").write_bytes(b"x")
    check_writable(shared / "theirs.tif")                       # as its owner: fine
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(shared).st_uid + 4242)
    with pytest.raises(HsanomalyError, match="another user in a shared .sticky. directory"):
        check_writable(shared / "theirs.tif")
    check_writable(shared / "new.tif")                          # a new name is fine


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from hsanomaly.io import atomic
    from hsanomaly.io.atomic import TMP_SUFFIX, atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.txt.{dead}.abc123{TMP_SUFFIX}"     # named before hosts were
    stale.mkdir()
    (stale / "out.txt").write_text("half")
    alive = tmp_path / f".out.txt.1.abc123{TMP_SUFFIX}"          # pid 1 always runs
    alive.mkdir()
    other = tmp_path / f".t.gpkg.{dead}.xyz789{TMP_SUFFIX}"   # a killed run's other output, which
    other.mkdir()                                               # this run does not write
    here = tmp_path / f".out.txt.{dead}-{atomic._host()}.abc{TMP_SUFFIX}"      # named with the host
    here.mkdir()
    elsewhere = tmp_path / f".out.txt.{dead}-0123abcd.abc{TMP_SUFFIX}"   # another host's (a shared
    elsewhere.mkdir()                                          # folder): its pid means nothing here
    with atomic_path(tmp_path / "out.txt") as tmp:
        assert tmp.parent.name.startswith(f".out.txt.{atomic._this_writer()}.")
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere.name,
                                                                 "out.txt"])


def test_a_fingerprint_reaches_the_files_under_nested_vrts_archives_and_subdatasets(tmp_path):
    """GDAL's file list of a VRT of VRTs stops at the inner VRT, and a name GDAL resolves
    itself (/vsizip/, GTIFF_DIR:) was fingerprinted by three of its tiles: pixels changed
    below or beside them kept the fingerprint, so detect-many kept a stale heatmap as current
    and --resume mixed two inputs."""
    import zipfile

    from hsanomaly.io.fingerprint import input_fingerprint
    from hsanomaly.io.gdal import local_files
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(bands=3, rows=600, cols=600)        # 3 x 3 tiles of 256
    data = write_raster(tmp_path / "data.tif", cube)

    def vrt(name, source):
        bands = "".join(
            f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource><SourceFilename '
            f'relativeToVRT="1">{source}</SourceFilename><SourceBand>{b}</SourceBand>'
            "</SimpleSource></VRTRasterBand>" for b in (1, 2, 3))
        (tmp_path / name).write_text(f'<VRTDataset rasterXSize="600" rasterYSize="600">{bands}'
                                     "</VRTDataset>")
        return str(tmp_path / name)

    outer = vrt("outer.vrt", vrt("inner.vrt", "data.tif"))
    names = {"outer": outer, "dir": f"GTIFF_DIR:1:{data}",
             "vrt of a name": vrt("named.vrt", f"GTIFF_DIR:1:{data}")}
    archive = tmp_path / "scene.zip"

    def zipped():
        with zipfile.ZipFile(archive, "w") as z:
            z.write(data, "scene.tif")
    zipped()
    names["zip"] = f"/vsizip/{archive}/scene.tif"
    assert local_files(names["zip"]) == [str(archive)]
    assert local_files(f'HDF5:"{data}"://cube') == [str(data)]
    assert local_files("/vsicurl/https://example.com/a.tif") == []
    before = {label: input_fingerprint(name) for label, name in names.items()}
    changed = cube.copy()
    changed[:, 60:66, 300:306] = 1e4                  # in a tile the three sampled ones miss
    write_raster(data, changed)
    zipped()
    after = {label: input_fingerprint(name) for label, name in names.items()}
    assert [label for label in names if after[label] == before[label]] == []
    import hsanomaly             # and none of them is an output to replace: it is the input
    for name in (names[label] for label in names if label != "zip"):     # the zip reads a copy
        with pytest.raises(HsanomalyError, match="'dst' is the same file as the input"):
            hsanomaly.detect(name, data, score="rx", overwrite=True)


def test_gdal_subdataset_and_vsi_names_are_read_end_to_end(synthetic_raster, tmp_path):
    """GTIFF_DIR:, /vsizip/ (and NETCDF:/HDF5: alike) reach GDAL unchanged, as QGIS passes them."""
    import zipfile

    import hsanomaly

    path, _, _ = synthetic_raster
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "scene.tif")
    outputs = {}
    for label, name in (("plain", str(path)), ("dir", f"GTIFF_DIR:1:{path}"),
                        ("zip", f"/vsizip/{archive}/scene.tif")):
        outputs[label] = tmp_path / f"{label}.tif"
        hsanomaly.detect(name, outputs[label], score="rx")
    with rasterio.open(outputs["plain"]) as a:
        for label in ("dir", "zip"):
            with rasterio.open(outputs[label]) as b:
                np.testing.assert_array_equal(a.read(1), b.read(1))
    with pytest.raises(HsanomalyError, match="not a raster GDAL can read"):
        hsanomaly.detect(f"/vsizip/{tmp_path}/missing.zip/scene.tif", tmp_path / "x.tif", score="rx")


KILLED_WHILE_REPLACING = """
import os, sys
from pathlib import Path
from hsanomaly.io import atomic

folder, when, first = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
real_replace, real_rename2, real_journal_path = os.replace, atomic._rename2, atomic._journal_path
journals = []

def rename_then_die(rename, src, dst, *flag):
    if when == "first rename" and Path(dst) == folder / first:   # linked and journaled only
        os._exit(9)
    done = rename(src, dst, *flag)
    if when == "renames" and Path(dst) == folder / first and done is not False:
        os._exit(9)                                       # the first in place, not the rest
    return done

def replace_then_die(src, dst):
    rename_then_die(real_replace, src, dst)

def rename2_then_die(src, dst, flag):
    return rename_then_die(real_rename2, src, dst, flag)

def journal_path_or_die(tmp):
    journals.append(tmp)
    if when == "journals" and len(journals) == 2:             # one journal written, not the mark
        os._exit(9)
    return real_journal_path(tmp)

atomic.os.replace, atomic._journal_path = replace_then_die, journal_path_or_die
atomic._rename2 = rename2_then_die
with atomic.staged() as stage:
    stage.path(folder / first).write_text("new a")
    stage.path(folder / "b.txt").write_text("new b")
    (stage.directory(folder / "model") / "w").write_text("new model")
"""


def _killed_while_replacing(folder, when="renames", first="a.txt", earlier="old a"):
    import subprocess
    import sys

    (folder / first).write_text(earlier)
    (folder / "b.txt").write_text("old b")
    (folder / "model").mkdir()
    (folder / "model" / "w").write_text("old model")
    died = subprocess.run([sys.executable, "-c", KILLED_WHILE_REPLACING, str(folder), when, first])
    assert died.returncode == 9
    assert (folder / first).read_text() == ("new a" if when == "renames" else earlier)
    assert (folder / "b.txt").read_text() == "old b"


def test_a_run_killed_between_its_renames_is_completed_by_the_next_write(tmp_path):
    """Outputs of one run belong together: the next write in the folder finishes the renames."""
    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path)
    with pytest.warns(HsanomalyWarning, match="b.txt, .*model: completed, as the run"):
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert (tmp_path / "b.txt").read_text() == "new b"
    assert (tmp_path / "model" / "w").read_text() == "new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


def test_a_run_killed_before_its_first_rename_is_completed_whole(tmp_path):
    """The earlier file, kept as a hard link to put back if a rename failed, changed its
    change time after the journal had recorded it: the next write took the first output for
    one the user had changed and completed only the others (outputs from two runs)."""
    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path, when="first rename")
    with pytest.warns(HsanomalyWarning, match="a.txt, .*b.txt, .*model: completed, as the run"):
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["new a", "new b"]
    assert (tmp_path / "model" / "w").read_text() == "new model"


def test_an_output_changed_since_the_killed_run_is_left_as_it_is(tmp_path):
    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path)
    (tmp_path / "b.txt").write_text("the user's b")
    with pytest.warns(HsanomalyWarning) as caught:
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    messages = " ".join(str(w.message) for w in caught)
    assert "b.txt: changed since a run that was stopped" in messages
    assert (tmp_path / "b.txt").read_text() == "the user's b"
    assert (tmp_path / "model" / "w").read_text() == "new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


@pytest.mark.parametrize("first", ["commit.json", ".commit.json"])
def test_outputs_named_like_the_journal_are_completed_too(tmp_path, first):
    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path, first=first)
    with pytest.warns(HsanomalyWarning, match="completed"):
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert (tmp_path / first).read_text() == "new a"
    assert (tmp_path / "b.txt").read_text() == "new b"
    assert (tmp_path / "model" / "w").read_text() == "new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first, "b.txt", "model",
                                                                  "other.txt"])


def test_a_run_killed_while_writing_its_journals_replaced_nothing_and_leaves_nothing(tmp_path):
    """The first output's journal marks the commit: before it, no rename has happened, and
    the staged files go (in whatever order the folder lists them)."""
    import warnings

    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path, when="journals")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["old a", "old b"]
    assert (tmp_path / "model" / "w").read_text() == "old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


def test_a_damaged_or_foreign_journal_is_ignored_and_names_no_folder_to_remove(tmp_path):
    """A journal that lists a folder other than the dead process's private ones (damaged, or
    planted) moves and removes nothing outside them, and the write goes on."""
    import json
    import subprocess
    import sys

    from hsanomaly.io.atomic import JOURNAL, JOURNAL_MARK, TMP_SUFFIX, atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    private = tmp_path / f".x.txt.{dead}.abc{TMP_SUFFIX}"
    private.mkdir()
    for record in ({"mark": JOURNAL_MARK, "entries": [{"dst": str(tmp_path / "x.txt"),
                                                       "tmp": str(precious / "keep.txt"),
                                                       "dir": False, "tmp_was": None,
                                                       "dst_was": None}]},
                   {"mark": JOURNAL_MARK, "entries": [{"tmp": 3}]}, "not json at all"):
        (private / JOURNAL).write_text(json.dumps(record))
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
        assert (precious / "keep.txt").read_text() == "mine"
        assert not private.exists()
        private.mkdir()
    private.rmdir()


def test_an_output_named_like_the_journal_is_written(tmp_path):
    from hsanomaly.io.atomic import JOURNAL, staged

    with staged() as stage:
        stage.path(tmp_path / JOURNAL).write_text("mine")
        stage.path(tmp_path / "b.txt").write_text("b")
    assert (tmp_path / JOURNAL).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", JOURNAL]


def test_convert_names_what_it_reads_when_given_another_raster(synthetic_raster, tmp_path):
    """An ENVI or GeoTIFF input was "not a readable MATLAB file (... corrupt ...)"."""
    path, _, _ = synthetic_raster
    with pytest.raises(HsanomalyError, match="convert reads MATLAB .mat scenes; train and detect "
                                             "read GeoTIFF, ENVI"):
        convert_mat(path, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_envi_bad_bands_are_left_out(tmp_path):
    """The header's bad band list (bbl: AVIRIS's water-vapour bands) was read as good bands,
    noise and all, by train and detect alike."""
    from hsanomaly.io.source import RasterSource

    cube = np.stack([np.full((4, 5), b, np.float32) for b in range(1, 7)])
    envi = tmp_path / "scene.img"
    with rasterio.open(envi, "w", driver="ENVI", dtype="float32", count=6, height=4, width=5) as ds:
        ds.write(cube)
    header = envi.with_suffix(".hdr")
    header.write_text(header.read_text() + "wavelength units = Nanometers\n"
                      "wavelength = {400, 500, 600, 700, 800, 900}\n"
                      "bbl = {1, 1, 0, 1, 0, 1}\n")
    source = RasterSource(envi)
    assert source.count == 4 and source.wavelengths == [400, 500, 700, 900]
    assert source.left_out == "of its 6 bands, 2 marked bad in the ENVI header's bbl left out"
    from types import SimpleNamespace

    from hsanomaly.model import check_bands
    with pytest.raises(HsanomalyError, match=r"has 4 bands \(of its 6 bands, 2 marked bad in "
                                             r"the ENVI header's bbl left out\) but the model"):
        check_bands(SimpleNamespace(bands_in=6, path="model"), source.count, envi,
                    source.left_out)
    block, _ = source.read(Window(0, 0, 5, 4))
    assert block[:, 0, 0].tolist() == [1, 2, 4, 6]


def test_a_bad_band_list_of_another_length_is_refused(tmp_path):
    """It was ignored, so the bands it meant to leave out were scored."""
    from hsanomaly.io.source import RasterSource

    envi = tmp_path / "scene.img"
    with rasterio.open(envi, "w", driver="ENVI", dtype="float32", count=6, height=4, width=5) as ds:
        ds.write(np.ones((6, 4, 5), np.float32))
    header = envi.with_suffix(".hdr")
    written = header.read_text()
    header.write_text(written + "bbl = {1, 1, 0, 1, 0}\n")
    with pytest.raises(HsanomalyError, match=r"scene.img: the ENVI header's bad band list \(bbl\) "
                                             "has 5 flags for 6 bands"):
        RasterSource(envi)
    # as ENVI itself writes them: numbers in exponent form
    header.write_text(written + "bbl = {" + ", ".join(f"{flag:e}" for flag in (1, 1, 0, 1, 0, 1))
                      + "}\n")
    assert RasterSource(envi).count == 4                        # bands 3 and 5 left out


@pytest.mark.parametrize("offset", [0, 512])
def test_a_raw_data_file_shorter_than_its_header_is_refused(tmp_path, offset):
    """GDAL reads the missing bytes of an ENVI file as zeros without an error: half a BSQ
    cube was scored as a whole one, its last bands all zero."""
    from hsanomaly.io.source import RasterSource

    cube = np.random.default_rng(0).random((6, 4, 5), dtype=np.float32)
    envi = tmp_path / "scene.img"
    header = (f"ENVI\nsamples = 5\nlines = 4\nbands = 6\nheader offset = {offset}\n"
              "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n")
    envi.with_suffix(".hdr").write_text(header)
    envi.write_bytes(bytes(offset) + cube.tobytes())
    assert RasterSource(envi).count == 6
    envi.write_bytes(bytes(offset) + cube.tobytes()[:-4])          # one pixel short
    with pytest.raises(HsanomalyError, match=f"scene.img: truncated: holds {offset + 476:,} "
                                             f"bytes, but its header describes {offset + 480:,}"):
        RasterSource(envi)


def test_a_gzip_compressed_envi_file_is_read_and_one_cut_short_refused(tmp_path):
    """ENVI's "file compression = 1": the size on disk is no measure (it was refused as
    truncated), while a cut stream is read as zeros by GDAL as a short raw file is."""
    import gzip

    from hsanomaly.io.source import RasterSource

    cube = np.random.default_rng(0).integers(900, 1100, (6, 40, 50)).astype("<i2")
    envi = tmp_path / "scene.img"
    envi.with_suffix(".hdr").write_text(
        "ENVI\nsamples = 50\nlines = 40\nbands = 6\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 2\ninterleave = bsq\nbyte order = 0\n"
        "file compression = 1\n")
    packed = gzip.compress(cube.tobytes())
    envi.write_bytes(packed)
    source = RasterSource(envi)
    assert np.array_equal(source.read(source.windows(64)[0])[0], cube)
    source.close()
    envi.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(HsanomalyError, match="scene.img: truncated or damaged: uncompressed, it "
                                             "holds less than the 24,000 bytes its header"):
        RasterSource(envi)


def test_gdal_imagery_domain_wavelengths_are_read(tmp_path):
    """GDAL 3.10's standard band metadata (IMAGERY domain, micrometres) was ignored, so a
    band-reversed raster that stated its centres only there was scored without a check."""
    from hsanomaly.io.source import RasterSource

    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=3, height=4,
                       width=5) as ds:
        ds.write(np.ones((3, 4, 5), np.float32))
        for band, centre in enumerate((0.45, 0.55, 0.65), start=1):
            ds.update_tags(band, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=str(centre))
    assert RasterSource(path).wavelengths == pytest.approx([450.0, 550.0, 650.0])


def test_a_damaged_tile_is_named_by_gdals_own_reason(tmp_path):
    """The message ended "(Read failed. See previous exception for details.)", an exception
    never shown; GDAL's reason (the block, the codec) is in the chain of causes."""
    cube, _ = synthetic_cube(bands=4, rows=64, cols=64)
    path = tmp_path / "damaged.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=4, height=64, width=64,
                       tiled=True, blockxsize=16, blockysize=16, compress="lzw",
                       interleave="pixel") as ds:      # no checksum: GDAL's the only word
        ds.write(cube)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_3_3", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_3_3", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = bytes(size)
    path.write_bytes(bytes(data))
    with pytest.raises(HsanomalyError) as refused:
        RasterSource(path).read(Window(0, 0, 64, 64))
    message = str(refused.value)
    assert "cannot read pixels, the file is truncated or corrupt (" in message
    assert "IReadBlock failed at X offset 3, Y offset 3" in message
    assert "See previous exception" not in message and "\n" not in message


def test_an_undeclared_fill_value_is_warned_about(tmp_path):
    """-9999 around a swath, not declared as nodata, entered the scene's statistics (and a
    model's training range) with no word."""
    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube()
    cube[:, :, :15] = -9999
    path = write_raster(tmp_path / "filled.tif", cube)
    with pytest.warns(HsanomalyWarning, match=r"filled.tif: 30% of the pixels probed hold -9999 "
                                              r"in every band.*gdal_edit.py -a_nodata -9999"):
        RasterSource(path).check_data()
    with pytest.warns(HsanomalyWarning, match="<array>: 30% .* mask it, or set it to NaN"):
        ArraySource(cube).check_data()
    # a dataset handed in is declared where it is opened: gdal_edit would edit its file,
    # where the value may be data (a warped dataset's fill is in no file at all)
    with rasterio.open(path) as ds, pytest.warns(
            HsanomalyWarning, match=r"declare it \(open it as rasterio's WarpedVRT\(dataset, "
                                    r"nodata=-9999\)\)"):
        RasterSource.from_dataset(ds).check_data()
    rgb = np.full((3, 20, 20), 255, np.uint8)        # saturated pixels of a few-band image
    rgb[:, :10] = 7
    rgb[:, :5] = 60                 # (of three values: two would be said as a mask's)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        ArraySource(rgb).check_data()
    declared = write_raster(tmp_path / "declared.tif", cube, nodata=-9999)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        RasterSource(declared).check_data()


def test_declared_nodata_counts_beside_a_mask_band(tmp_path):
    """A mask band replaces GDAL's nodata test: pixels holding the declared nodata value read
    as data, entered the scene's statistics and were scored; an "unknown" truth pixel (255)
    was read as a target. Both the mask and the nodata value count now."""
    import hsanomaly

    cube, truth = synthetic_cube(bands=12, rows=30, cols=40)
    cube[:, 0, :] = -9999                                     # a fill row, declared nodata
    hidden = np.zeros(cube.shape[1:], bool)
    hidden[25:, :] = True                                     # what the mask band hides
    masked = write_raster(tmp_path / "masked.tif", cube, nodata=-9999)
    with rasterio.open(masked, "r+") as ds:
        ds.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    plain = cube.copy()
    plain[:, hidden] = -9999
    plain = write_raster(tmp_path / "plain.tif", plain, nodata=-9999)
    heat = hsanomaly.Detector("rx").fit(rasterio.open(masked)).score(rasterio.open(masked))
    reference = hsanomaly.Detector("rx").fit(rasterio.open(plain)).score(rasterio.open(plain))
    assert np.isnan(heat[0]).all() and np.isnan(heat[hidden]).all()
    np.testing.assert_array_equal(heat, reference)
    unknown = truth.astype(np.uint8)
    unknown[:3] = 255                                         # truth unknown in the top rows
    path = write_raster(tmp_path / "truth.tif", unknown[None], nodata=255, dtype="uint8")
    with rasterio.open(path, "r+") as ds:
        ds.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    gt, known = read_truth(path)
    assert not known[:3].any() and not known[hidden].any() and gt[:3].sum() == 0
    assert gt.sum() == truth[3:25].sum()


@pytest.mark.parametrize("fill", [-3.4028235e38, 1e20])
def test_a_few_extreme_fill_pixels_are_warned_about(tmp_path, fill):
    """Three pixels holding an undeclared float fill outweigh every other pixel in the
    scene's covariance beyond float64's precision: every score flattened, and nothing was
    said (the fill check needed 5 % of the pixels)."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=12, rows=30, cols=40)
    for case, pixels in (("clean", []), ("filled", [(0, 0), (0, 1), (29, 39)])):
        filled = cube.copy()
        for row, col in pixels:
            filled[:, row, col] = fill
        path = write_raster(tmp_path / f"{case}.tif", filled)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(path).check_data()
        said = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
        if not pixels:
            assert said == []
            continue
        [message] = said
        assert message.startswith(f"{path}: 3 of the pixels probed hold values such as {fill:g}")
        declared = message.split("gdal_edit.py -a_nodata ")[1].split(")")[0]
        assert np.float32(float(declared)) == np.float32(fill)      # the very value, not :g's
    near_constant = cube.copy()
    near_constant[0] = 1.0 + np.random.default_rng(1).normal(0, 1e-7, cube.shape[1:])
    near_constant[0, 3, 3:8] = 0.8              # real pixels, not a fill
    path = write_raster(tmp_path / "flat_band.tif", near_constant)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RasterSource(path).check_data()
    assert not [w for w in caught if "pixels probed hold values such as" in str(w.message)]


def test_a_fill_every_kth_column_is_found_whatever_the_medians_are_taken_from():
    """The medians come from a sample of the probed pixels; a stride through them could land
    on a fill every 4th column only, whose median is the fill: nothing was found."""
    from hsanomaly.io.values import CENTRE_SAMPLE, extreme_values

    pixels = np.random.default_rng(0).normal(100, 5, (6, 4 * CENTRE_SAMPLE)).astype(np.float32)
    pixels[:, ::4] = -3.4e38
    assert extreme_values(pixels) == (CENTRE_SAMPLE, float(np.float32(-3.4e38)))


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not available")
def test_no_shared_scene_has_extreme_pixels():
    """The fill warning's margin on real scenes: their farthest values lie at most about a
    thousand deviations out, the warning starts at a million."""
    from hsanomaly.io.values import extreme_values

    for path in sorted(SHARED_DATA.glob("*/*.mat")):
        cube = read_mat(path)[0]
        pixels = cube.reshape(len(cube), -1)
        assert extreme_values(pixels[:, np.isfinite(pixels).all(axis=0)]) is None, path


def test_masks_of_rasters_placed_by_ground_control_points_are_checked(tmp_path):
    """A raster placed only by GCPs (an airborne line not yet orthorectified) counted as not
    georeferenced, so a truth 5 km away, or one on a map grid, was evaluated without a word."""
    from rasterio.control import GroundControlPoint

    cube, truth = synthetic_cube(bands=6, rows=30, cols=40)
    def gcps(east=0.0):
        return [GroundControlPoint(row=r, col=c, x=5e5 + 2 * c + east, y=6.7e6 - 2 * r)
                for r, c in ((0, 0), (0, 40), (30, 0), (30, 40))]

    def placed(name, data, points, **kwargs):
        path = write_raster(tmp_path / name, data, crs=None, transform=None, **kwargs)
        if points is not None:
            with rasterio.open(path, "r+") as ds:
                ds.gcps = (points, rasterio.crs.CRS.from_epsg(32633))
        return path

    scene = placed("scene.tif", cube, gcps())
    mask = truth[None].astype(np.float32)
    assert read_truth(placed("same.tif", mask, gcps()), grid_of=scene)[0].sum() == truth.sum()
    read_truth(placed("none.tif", mask, None), grid_of=scene)       # nothing to check by
    with pytest.raises(HsanomalyError, match="far.tif: the mask's ground control points are "
                                             "not those of .*scene.tif"):
        read_truth(placed("far.tif", mask, gcps(east=5000.0)), grid_of=scene)
    with pytest.raises(HsanomalyError, match="map.tif: the mask is placed by a map grid and "
                                             ".*scene.tif by ground control points"):
        read_truth(write_raster(tmp_path / "map.tif", mask), grid_of=scene)


def test_a_container_of_datasets_names_them(tmp_path):
    """An HDF5 or NetCDF file of several datasets has no bands of its own: it was refused as
    "every band is an alpha band or marked bad in the ENVI header's bbl"."""
    path = tmp_path / "multi.h5"
    with h5py.File(path, "w") as f:
        f["radiance"] = np.zeros((6, 10, 12), np.float32)
        f["reflectance"] = np.zeros((6, 10, 12), np.float32)
    with pytest.raises(HsanomalyError) as err:
        RasterSource(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: a container of 2 datasets and no bands of its own; "
                              "name one: HDF5:")
    assert "://radiance" in message and "://reflectance" in message


def test_a_vrt_whose_source_is_gone_says_so(tmp_path):
    """It was "the file is truncated or corrupt"; the VRT is whole, its source is missing."""
    cube, _ = synthetic_cube(bands=3, rows=10, cols=12)
    source = write_raster(tmp_path / "source.tif", cube)
    bands = "".join(f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource>'
                    f'<SourceFilename relativeToVRT="1">source.tif</SourceFilename>'
                    f'<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                    for b in (1, 2, 3))
    vrt = tmp_path / "stack.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="12" rasterYSize="10">{bands}</VRTDataset>')
    source.unlink()
    with pytest.raises(HsanomalyError, match=r"stack.vrt: cannot read pixels, a file it reads "
                                             r"from is missing \(.*source.tif"):
        RasterSource(str(vrt)).read(Window(0, 0, 12, 10))


def test_a_vrt_whose_pixels_are_python_code_says_gdal_does_not_run_it(tmp_path, monkeypatch):
    """GDAL refuses a VRT's inline Python pixel function by default (nothing runs), and the
    refusal was reported as "the file is truncated or corrupt"."""
    monkeypatch.delenv("GDAL_VRT_ENABLE_PYTHON", raising=False)
    cube, _ = synthetic_cube(bands=1, rows=10, cols=12)
    write_raster(tmp_path / "source.tif", cube)
    ran = tmp_path / "ran"
    vrt = tmp_path / "code.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="12" rasterYSize="10"><VRTRasterBand dataType="Float32" '
        'band="1" subClass="VRTDerivedRasterBand"><PixelFunctionType>f</PixelFunctionType>'
        '<PixelFunctionLanguage>Python</PixelFunctionLanguage><PixelFunctionCode><![CDATA[\n'
        f'def f(in_ar, out_ar, *args, **kwargs):\n    open("{ran}", "w")\n'
        '    out_ar[:] = in_ar[0]\n]]></PixelFunctionCode><SimpleSource><SourceFilename '
        'relativeToVRT="1">source.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        '</VRTRasterBand></VRTDataset>')
    with pytest.raises(HsanomalyError, match=r"code.vrt: cannot read pixels, GDAL does not run "
                                             r"the Python code the file holds \("):
        RasterSource(str(vrt)).read(Window(0, 0, 12, 10))
    assert not ran.exists()


def test_a_pixel_in_overlapping_probe_windows_is_counted_once(tmp_path):
    """The probe windows overlap on a scene under a few of them across: five fill pixels at
    the centre of a 100 x 100 scene were "20 of the pixels probed", one in every window."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=12, rows=100, cols=100)
    cube[:, 50, 48:53] = 1e20
    path = write_raster(tmp_path / "filled.tif", cube)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RasterSource(path).check_data()
    [message] = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
    assert message.startswith(f"{path}: 5 of the pixels probed hold values such as 1e+20")


@pytest.mark.parametrize("zeros", [[(44, 38)], [(44, 38), (10, 3), (90, 97)]])
def test_a_few_pixels_nodata_in_a_few_bands_are_said_however_few(tmp_path, zeros):
    """A collar declared nodata=0 dropped every pixel with a 0 in one dark band, a target pixel
    among them, without a word: the warning needed 5 % of the pixels probed."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=12, rows=100, cols=100)
    cube = cube - cube.min() + 1.0
    for row, col in zeros:
        cube[7, row, col] = 0.0
    path = write_raster(tmp_path / "collar.tif", cube, nodata=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RasterSource(path).check_data()
    said = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
    one = len(zeros) == 1
    assert said == [f"{path}: {len(zeros)} of the pixels probed {'is' if one else 'are'} nodata "
                    f"in only a few bands (band 8 most often), so {'it is' if one else 'they are'}"
                    " left out whole; is the nodata value also real data there (0 over water, "
                    "say)? If so, set another nodata value, or none"]


def test_a_seam_of_pixels_missing_half_their_bands_is_no_few_bands_warning(tmp_path):
    """A swath's edge where one detector's bands end a pixel before the other's (a VNIR/SWIR
    seam): pixels missing half their spectrum are rightly left out, and a share of 1 % of
    them is no dark band's 0 taken for nodata; said "however few" once, with the advice to
    change the nodata value."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=20, rows=100, cols=100)
    cube = cube - cube.min() + 1.0
    for row in range(100):
        cube[10:, row, 99 - row] = 0.0                    # the seam: bands 11-20 end there
    path = write_raster(tmp_path / "seam.tif", cube, nodata=0)
    one = cube[:1].copy()
    one[0, :10] = -9999                                   # one band: a pixel misses it all
    for raster in (path, write_raster(tmp_path / "one.tif", one, nodata=-9999)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(raster).check_data()
        assert not [w for w in caught if issubclass(w.category, HsanomalyWarning)], raster


@pytest.mark.parametrize("saturated_bands", [3, 12, 19])
def test_pixels_saturated_at_a_nodata_value_of_the_type_s_largest_are_said(tmp_path,
                                                                          saturated_bands):
    """A uint16 product whose nodata is 65535, which bright pixels saturate at: pixels at it in
    more than a tenth of the bands (and under 5 % of those probed) were left out, unsaid,
    though they are the scene's brightest (the sensor audit: 4 pixels saturated in 20 to 150
    of 194 bands). A fill edge, nodata in every band, is not said, nor a ragged one."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=20, rows=60, cols=60)
    cube = np.round((cube - cube.min()) / np.ptp(cube) * 20000 + 100).astype(np.uint16)
    cube[:, :, :3] = 65535                                   # the swath's fill edge
    edge = write_raster(tmp_path / "edge.tif", cube, nodata=65535, dtype="uint16")
    ragged = cube.copy()
    ragged[10:, :, 3:5] = 65535                # the SWIR bands' fill reaches 2 columns further
    ragged = write_raster(tmp_path / "ragged.tif", ragged, nodata=65535, dtype="uint16")
    bright = cube.copy()           # ordinary bright pixels, far below the ceiling, across which
    bright[:, 20:40, 30] = 45000   # a dead column (one band) runs: no saturation (review 3 F08)
    bright[7, :, 30] = 65535
    bright = write_raster(tmp_path / "dead.tif", bright, nodata=65535, dtype="uint16")
    for row, col in [(10, 20), (30, 40), (50, 10)]:    # a roof: near the ceiling where not at it
        cube[:, row, col] = 60000
        cube[:saturated_bands, row, col] = 65535
    path = write_raster(tmp_path / "bright.tif", cube, nodata=65535, dtype="uint16")
    for raster, said in [(edge, []), (path, [
            f"{path}: 3 of the pixels probed hold the nodata value 65535, the largest a uint16 "
            "holds, in some bands and not all, so they are left out whole: saturated pixels, "
            "often the scene's brightest and most anomalous? If so, set another nodata value, "
            "or none"])]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(raster).check_data()
        assert [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)] \
            == said
    # a ragged fill edge holds ordinary values beside its gaps: no saturation (review 2's F03)
    for raster in (ragged, bright):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(raster).check_data()
        assert not [str(w.message) for w in caught if "saturated pixels" in str(w.message)]


def test_infinite_pixels_are_said_to_be_left_out(tmp_path):
    """+-Inf pixels became nodata without a word, while float64 values beyond float32 (which
    would become infinite) are refused for that very reason."""
    import warnings

    from hsanomaly.errors import HsanomalyWarning

    cube, _ = synthetic_cube(bands=6, rows=20, cols=20)
    cube[2, 3, 4], cube[5, 10, 10] = np.inf, -np.inf
    path = write_raster(tmp_path / "inf.tif", cube)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RasterSource(path).check_data()
    said = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
    assert said == [f"{path}: 2 of the pixels probed are infinite in some band; they are left "
                    "out like nodata (NaN in the heatmap), though such a value may mark the "
                    "scene's most anomalous pixels (saturated?)"]


def test_a_nodata_value_the_band_cannot_hold_masks_nothing(tmp_path):
    """A nodata of 0.5 on a uint8 band beside a mask band was cut to 0, masking every 0."""
    from hsanomaly.io.gdal import read_masked

    values = np.array([[[0, 1], [2, 0]]], np.uint8)
    path = write_raster(tmp_path / "u8.tif", values, nodata=0.5, dtype="uint8")
    with rasterio.open(path, "r+") as ds:
        ds.write_mask(np.full((2, 2), 255, np.uint8))
    with rasterio.open(path) as ds:
        assert not np.ma.getmaskarray(read_masked(ds, np.int64(1))).any()


def test_gdal_names_travel_to_workers_as_they_are(tmp_path):
    """A /vsi name (or a URL) is no file on the driver's disk: a worker refused it as "not
    found on worker host", though GDAL reads it there."""
    import pickle

    from rasterio.shutil import delete
    from rasterio.windows import Window

    cube, _ = synthetic_cube(bands=3, rows=6, cols=5)
    name = "/vsimem/travel.tif"
    with rasterio.open(name, "w", driver="GTiff", width=5, height=6, count=3,
                       dtype="float32") as ds:
        ds.write(cube.astype(np.float32))
    try:
        copy = pickle.loads(pickle.dumps(RasterSource(name)))
        assert copy.path == name
        np.testing.assert_array_equal(copy.read(Window(0, 0, 5, 6))[0], cube)
    finally:
        delete(name)


def test_a_mask_with_an_alpha_band_reads_its_one_data_band(tmp_path):
    """A grey + alpha mask (what many editors write) was refused as two bands."""
    from rasterio.enums import ColorInterp

    truth = np.zeros((2, 10, 12), np.uint8)
    truth[0, 3, 4] = 1
    truth[1] = 255
    truth[1, 0] = 0                              # transparent: unknown
    path = write_raster(tmp_path / "alpha.tif", truth, dtype="uint8")
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = (ColorInterp.gray, ColorInterp.alpha)
    gt, known = read_truth(path)
    assert gt.sum() == 1 and not known[0].any() and known[1:].all()


def test_patterns_leave_urls_and_gdal_names_alone():
    """A presigned URL's query (?sig=...) was taken for a pattern: "no file matches"."""
    from hsanomaly.io.paths import expand_pattern

    for name in ("https://example.com/x.tif?sig=abc", "/vsicurl/https://h/x.tif?t=1",
                 'HDF5:"f.h5"://x', "scene[1].tif"):
        assert expand_pattern(name) == [name]


def test_a_scene_held_in_memory_is_changed_when_its_file_is_not_when_it_is_touched(tmp_path):
    """A .mat scene is read whole when opened: a touch counted as a change (its modification
    time was compared), and a rewrite that kept the modification time did not."""
    import os

    import scipy.io

    from hsanomaly.io import open_source

    cube = np.random.default_rng(0).random((12, 20, 8)).astype(np.float32)   # rows, cols, bands
    path = tmp_path / "scene.mat"
    scipy.io.savemat(path, {"data": cube})
    source = open_source(path)
    os.utime(path, ns=(1, 1))
    assert not source.changed()                                    # touched: the same bytes
    stat = os.stat(path)
    scipy.io.savemat(path, {"data": cube[::-1].copy()})            # the same size, other pixels
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))        # its time put back
    assert os.stat(path).st_size == stat.st_size and source.changed()


@pytest.mark.parametrize("how", ["external storage", "external link", "virtual dataset",
                                 "nested group"])
def test_a_mat_file_whose_variables_lie_in_other_files_is_refused(tmp_path, how):
    """HDF5 reads a v7.3 variable's bytes from wherever the file says: a downloaded "scene"
    could make convert copy any file the user can read (a key) into its GeoTIFF, and detect
    score it, with exit 0. MATLAB writes no such variable; it is refused, nothing is written."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not a scene, any local file " * 100)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["cube"] = np.arange(6 * 5 * 4, dtype=np.uint8).reshape(4, 5, 6)
    scene = tmp_path / "scene.mat"
    with h5py.File(scene, "w", libver="latest") as f:
        if how == "external storage":
            f.create_dataset("data", shape=(4, 5, 6), dtype="u1",
                             external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
        elif how == "external link":
            f["data"] = h5py.ExternalLink(str(other), "cube")
        elif how == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(4, 5, 6), dtype="u1")
            layout[:] = h5py.VirtualSource(str(other), "cube", shape=(4, 5, 6))
            f.create_virtual_dataset("data", layout)
        else:
            f["data"] = np.zeros((4, 5, 6), np.uint8)
            f.create_group("#refs#")["a"] = h5py.ExternalLink(str(other), "cube")
    where = "#refs#/a" if how == "nested group" else "data"
    with pytest.raises(HsanomalyError, match=rf"scene.mat: the variable {where} is stored "
                                             r"outside the file \("):
        read_mat(scene)
    with pytest.raises(HsanomalyError, match="stored outside the file"):
        convert_mat(scene, tmp_path / "scene.tif")
    assert not (tmp_path / "scene.tif").exists()


def test_a_mat_file_whose_groups_link_back_up_still_loads(tmp_path):
    """The look for variables stored outside the file followed links back up (a soft link to
    '/', a group holding itself) into a RecursionError traceback; such a file loaded before."""
    cube = np.random.default_rng(0).random((6, 5, 4))
    for how in ("soft", "hard"):
        scene = tmp_path / f"{how}.mat"
        with h5py.File(scene, "w") as f:
            f["data"] = cube
            group = f.create_group("s")
            group["up"] = h5py.SoftLink("/") if how == "soft" else group
        got, _ = read_mat(scene)
        np.testing.assert_allclose(got, np.moveaxis(cube.T, -1, 0))


def test_a_call_inside_a_callers_rasterio_environment_leaves_gdals_block_cache_as_it_was(
        example_scene):
    """GDAL's block cache limit is the process's: a detector scored on an open dataset (whose
    block holds a rasterio environment) left it at hsanomaly's 256 MiB for the caller's own
    reads after, as rasterio puts back nested environments' options, not that limit."""
    from rasterio.env import get_gdal_config, set_gdal_config

    import hsanomaly

    path, _ = example_scene
    default = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", 300 * 2**20)      # the process's, whatever the RAM
    try:
        with rasterio.Env(), rasterio.open(path) as ds:
            hsanomaly.Detector("rx").fit_score(ds)
            assert get_gdal_config("GDAL_CACHEMAX") == 300 * 2**20
    finally:
        set_gdal_config("GDAL_CACHEMAX", default)


def test_runs_at_once_in_two_threads_leave_gdals_block_cache_as_it_was():
    """rasterio's environments are a thread's, GDAL's cache limit the process's: where two
    runs' blocks overlapped (QGIS runs algorithms in threads), the one ending last put back
    the other's 256 MiB, for the rest of the process."""
    import threading

    from rasterio.env import get_gdal_config, set_gdal_config

    from hsanomaly.io.gdal import gdal_env

    default = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", 300 * 2**20)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with gdal_env():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with gdal_env(128 * 2**20):
            second_in.set()
            first_out.wait(10)

    try:
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert get_gdal_config("GDAL_CACHEMAX") == 300 * 2**20
    finally:
        set_gdal_config("GDAL_CACHEMAX", default)


def test_a_row_of_tiles_fits_gdals_block_cache(tmp_path, monkeypatch):
    """Every tile of a row of tiles reads all the strips of its rows: with more of them than
    the default 256 MiB cache held (a wide, many-band striped GeoTIFF), each tile decoded them
    all again, about 8 times as slow as the same pixels tiled. A tiled raster's tiles read
    with a halo reach the rows of blocks above and below, which the next row of tiles reads
    again: a wide scene's ring scores read it three times (the checks' tax audit's F01)."""
    from hsanomaly.io import gdal, source as source_module

    cube = np.ones((5, 40, 300), np.float32)
    striped, tiled = tmp_path / "striped.tif", tmp_path / "tiled.tif"
    for path, layout in ((striped, dict(tiled=False, blockysize=4)),
                         (tiled, dict(tiled=True, blockxsize=16, blockysize=16))):
        with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=5, height=40,
                           width=300, **layout) as ds:
            ds.write(cube)
    row = 300 * 5 * 4                                    # bytes of one row of every band
    monkeypatch.setattr(source_module, "GDAL_CACHE_BYTES", 1000)     # as if the rows were wide
    used = []
    monkeypatch.setattr(source_module, "gdal_env",
                        lambda cache_bytes: used.append(cache_bytes) or gdal.gdal_env(cache_bytes))
    source = RasterSource(striped)
    assert (source.striped, source.block_rows, source.row_bytes) == (True, 4, row)
    block, _ = source.read(Window(16, 16, 16, 16), halo=3)
    assert used == [int(1.25 * (16 + 6 + 2 * 4) * row)] and block.shape == (5, 22, 22)
    source = RasterSource(tiled)
    decoded = 304 * 5 * 4                   # the last column of 16-pixel tiles decoded whole
    assert (source.striped, source.block_rows, source.row_bytes) == (False, 16, decoded)
    source.read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == int(1.25 * 48 * decoded)   # every block a row reads: all 3 rows here
    import warnings

    source = RasterSource(tiled)
    source.cache_limit = 20_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no word: a smaller tile would not help
        source.read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == 1000       # too little to keep a row's blocks: none taken for nothing
    # and at most TILED_CACHE_BYTES: several runs at once took a quarter of the memory each
    monkeypatch.setattr(source_module, "TILED_CACHE_BYTES", 100_000)     # (review 1's F10)
    RasterSource(tiled).read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == 1000
    # a Dask worker's tiles are spread over the raster: each worker's cache kept nothing for
    # it, and took the memory (the heavy audit's F01)
    import pickle

    monkeypatch.setattr(source_module, "TILED_CACHE_BYTES", 10**9)
    source = RasterSource(tiled)
    source.read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] > 1000
    pickle.loads(pickle.dumps(source)).read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == 1000
    source = RasterSource(striped)
    source.cache_limit = 20_000
    with pytest.warns(UserWarning, match="striped.tif: its blocks as wide as the raster .* "
                                         r"need 219.7 KiB of GDAL's block cache, more than it "
                                         r"may take \(19.5 KiB, a quarter of the free memory"
                                         r".* or a smaller 'tile' avoids it$"):
        source.read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == 20_000
    # a tile wider than the raster is decoded whole, every band of it: its cache was taken
    # from the raster's width, a little short of the one block, decoded again for each tile
    # (22 times as slow), unsaid (the layouts audit's F01, F02)
    wide = tmp_path / "wide.tif"
    with rasterio.open(wide, "w", driver="GTiff", dtype="float32", count=5, height=40,
                       width=300, tiled=True, blockxsize=512, blockysize=512) as ds:
        ds.write(cube)
    source = RasterSource(wide)
    assert (source.striped, source.block_rows, source.row_bytes) == (True, 512, 512 * 5 * 4)
    source.read(Window(16, 16, 16, 16), halo=3)
    assert used[-1] == int(1.25 * 512 * 512 * 5 * 4)          # the one block, whole
    source = RasterSource(wide)
    source.cache_limit = 20_000
    with pytest.warns(UserWarning, match=r"\(slow\); a tiled copy \(gdal_translate -co "
                                         r"TILED=YES\) avoids it$"):   # no smaller tile helps
        source.read(Window(16, 16, 16, 16), halo=3)
    # and for the whole run, not only each read: rasterio puts GDAL's setting back as each
    # read ends, which dropped the strips between two tiles
    from hsanomaly.engine import tiles

    held = []
    monkeypatch.setattr(tiles, "gdal_env", lambda *cache_bytes: held.append(cache_bytes)
                        or gdal.gdal_env(*cache_bytes))
    import hsanomaly

    hsanomaly.detect(striped, tmp_path / "heat.tif", score="lrx", outer=5, guard=3, tile=16)
    halo = hsanomaly.scorers.make_scorer("lrx", outer=5, guard=3).halo
    # at least the tiles' need (the data probe's larger reads may have asked more)
    assert held[0][0] >= int(1.25 * (16 + 2 * halo + 2 * 4) * row)


def test_free_memory_inside_a_container_is_its_limits(tmp_path, monkeypatch):
    """The free-memory checks read the machine's free memory alone: in a container, a Slurm
    job or a systemd unit limited to less, a raster they let through was killed for memory
    instead of refused in one line."""
    from hsanomaly.io import checks

    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    monkeypatch.setattr(checks, "CGROUP_MEMORY", (
        ("", str(v2), "memory.max", "memory.current", "inactive_file"),
        ("memory", str(v1), "memory.limit_in_bytes", "memory.usage_in_bytes",
         "total_inactive_file")))
    own = tmp_path / "cgroup"
    monkeypatch.setattr(checks, "OWN_CGROUPS", str(own))
    own.write_text("0::/\n")
    machine = checks.available_memory()
    assert machine is not None and machine > 2**20
    v2.mkdir()
    (v2 / "memory.max").write_text(f"{2**20}\n")          # a 1 MiB container, half used,
    (v2 / "memory.current").write_text(f"{2**19}\n")      # 64 KiB of it droppable cache
    (v2 / "memory.stat").write_text(f"anon 1\ninactive_file {2**16}\nactive_file 7\n")
    assert checks.available_memory() == 2**19 + 2**16
    (v2 / "memory.max").write_text("max\n")               # no limit: the machine's
    assert abs(checks.available_memory() - machine) < machine / 10
    # a Slurm job's step, two groups down: the tightest limit on the way up counts
    job = v2 / "slurm" / "job_7" / "step_0"
    job.mkdir(parents=True)
    own.write_text("0::/slurm/job_7/step_0\n")
    (v2 / "slurm" / "job_7" / "memory.max").write_text(f"{2**22}\n")
    (v2 / "slurm" / "job_7" / "memory.current").write_text(f"{2**21}\n")
    assert checks.available_memory() == 2**21
    (job / "memory.max").write_text(f"{2**21}\n")
    (job / "memory.current").write_text(f"{2**20 + 2**19}\n")
    assert checks.available_memory() == 2**19
    # cgroup v1: the memory controller's own line
    own.write_text("4:cpu,cpuacct:/a\n3:memory:/batch/42\n")
    (v1 / "batch" / "42").mkdir(parents=True)
    (v1 / "batch" / "42" / "memory.limit_in_bytes").write_text(f"{2**21}\n")
    (v1 / "batch" / "42" / "memory.usage_in_bytes").write_text(f"{2**20}\n")
    assert checks.available_memory() == 2**20
    (v1 / "batch" / "42" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert abs(checks.available_memory() - machine) < machine / 10    # v1's "no limit"


@pytest.mark.parametrize("job", ["evaluate", "detect"])
def test_the_run_after_one_killed_while_replacing_finishes_it_and_its_own(tmp_path, job,
                                                                          synthetic_raster):
    """The next run finished the killed run's renames only as it staged its outputs, after it
    had checked them: its commit then took that for another program's change and refused,
    after all the work."""
    import json

    import hsanomaly
    from hsanomaly.io.checks import HsanomalyWarning

    first = "report.json" if job == "evaluate" else "heat.tif"
    _killed_while_replacing(tmp_path, when="first rename", first=first)
    with pytest.warns(HsanomalyWarning, match="completed, as the run"):
        if job == "evaluate":
            truth = np.zeros((10, 10), np.uint8)
            truth[4, 4] = 1
            hsanomaly.evaluate(np.arange(100.0).reshape(10, 10), truth,
                               json=tmp_path / first, overwrite=True)
        else:
            hsanomaly.detect(synthetic_raster[0], tmp_path / first, score="rx", overwrite=True)
    if job == "evaluate":
        assert json.loads((tmp_path / first).read_text())["n_targets"] == 1
    else:
        with rasterio.open(tmp_path / first) as ds:
            assert ds.read(1).shape == (40, 50)
    assert (tmp_path / "b.txt").read_text() == "new b"


def test_an_output_named_through_a_linked_folder_and_dotdot_is_staged_where_it_lands(
        tmp_path, synthetic_raster):
    """'link/..' is the parent of the link's target for the kernel, but os.path.abspath drops
    it as text: the tile store and staging went to the folder the name seemed to say, and the
    final rename crossed into the other one (across file systems, after all the work, it
    failed)."""
    import os

    import hsanomaly

    here, there = tmp_path / "here", tmp_path / "there"
    (there / "child").mkdir(parents=True)
    here.mkdir()
    (here / "link").symlink_to(there / "child")
    seen = []

    def look(fraction, message):
        seen.append(sorted(os.listdir(here)) + sorted(p for p in os.listdir(there)
                                                      if p.endswith(".partial")))

    hsanomaly.detect(synthetic_raster[0], here / "link" / ".." / "heat.tif", score="rx", tile=16,
                     callback=look)
    assert seen and all(names == ["link", "heat.tif.partial"] for names in seen[1:])
    assert sorted(os.listdir(there)) == ["child", "heat.tif"] and os.listdir(here) == ["link"]


KILLED_AROUND_ITS_RENAME = """
import os, sys
from pathlib import Path
from hsanomaly.io import atomic

folder, when = Path(sys.argv[1]), sys.argv[2]
real_replace, real_rename2 = os.replace, atomic._rename2

def rename_then_die(rename, *args):
    if when == "before its rename" and Path(args[1]) == folder / "heat.tif":
        os._exit(9)
    done = rename(*args)
    if when == "after its rename" and Path(args[1]) == folder / "heat.tif" and done is not False:
        os._exit(9)
    return done

atomic.os.replace = lambda src, dst: rename_then_die(real_replace, src, dst)
atomic._rename2 = lambda src, dst, flag: rename_then_die(real_rename2, src, dst, flag)
if when == "before setting aside":
    atomic._set_aside = lambda stale: os._exit(9)
with atomic.staged() as stage:
    stage.path(folder / "heat.tif", stale=[folder / "heat.tif.aux.xml"]).write_text("new")
"""


def _killed_around_its_rename(folder, when):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", KILLED_AROUND_ITS_RENAME, str(folder), when])


def test_a_run_killed_as_its_output_goes_in_leaves_no_earlier_side_file_over_it(tmp_path):
    """The earlier raster's GDAL side files were removed after the new one was in place: a
    kill in between left the old .aux.xml (nodata, scale, statistics) laid over the new."""

    (tmp_path / "heat.tif").write_text("old")
    (tmp_path / "heat.tif.aux.xml").write_text("<PAMDataset>old</PAMDataset>")
    died = _killed_around_its_rename(tmp_path, "after its rename")
    assert died.returncode == 9
    assert (tmp_path / "heat.tif").read_text() == "new"
    assert not (tmp_path / "heat.tif.aux.xml").exists()


def test_a_failed_commit_puts_the_earlier_side_files_back(tmp_path, monkeypatch):
    from hsanomaly.io import atomic

    (tmp_path / "heat.tif").write_text("old")
    (tmp_path / "heat.tif.aux.xml").write_text("old aux")

    def refuse(tmp, dst, is_dir, moved_aside=None, expected=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "_replace", refuse)
    with pytest.raises(HsanomalyError, match="nothing was replaced"):
        with atomic.staged() as stage:
            stage.path(tmp_path / "heat.tif", stale=[tmp_path / "heat.tif.aux.xml"]).write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif", "heat.tif.aux.xml"]
    assert (tmp_path / "heat.tif.aux.xml").read_text() == "old aux"


def test_threads_sharing_one_raster_source_read_what_each_would_alone(tmp_path):
    """A Dask worker's threads share the source sent to it: reading through its one dataset
    handle at once, they got each other's blocks (a wrong heatmap, written without a word) or
    a false "truncated or corrupt"; the local engine took turns by itself, a worker did not."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    cube = rng.normal(size=(8, 256, 256)).astype(np.float32)
    path = tmp_path / "tiled.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=8, height=256,
                       width=256, tiled=True, blockxsize=32, blockysize=32,
                       compress="deflate") as ds:
        ds.write(cube)
    sent = pickle.dumps(RasterSource(path))
    windows = [Window(c, r, 48, 48) for r in range(0, 208, 16) for c in range(0, 208, 16)] * 2
    with ThreadPoolExecutor(4) as pool:
        for _ in range(12):           # a race, at its handle's first opening most: each round
            source = pickle.loads(sent)               # a worker's copy, opened anew
            blocks = list(pool.map(lambda w: source.read(w)[0], windows))
            for window, block in zip(windows, blocks):
                r, c = int(window.row_off), int(window.col_off)
                np.testing.assert_array_equal(block, cube[:, r:r + 48, c:c + 48])


def test_a_lone_output_killed_before_its_rename_is_completed_not_left_bare(tmp_path):
    """Its earlier side files were set aside (into the private folder the next write removes)
    with no journal to finish the rename: the earlier heatmap stayed, without them."""

    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    (tmp_path / "heat.tif").write_text("old")
    (tmp_path / "heat.tif.aux.xml").write_text("<PAMDataset>old</PAMDataset>")
    died = _killed_around_its_rename(tmp_path, "before its rename")
    assert died.returncode == 9 and (tmp_path / "heat.tif").read_text() == "old"
    with pytest.warns(HsanomalyWarning, match="heat.tif: completed, as the run"):
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif", "other.txt"]
    assert (tmp_path / "heat.tif").read_text() == "new"


def test_a_plots_folder_given_as_a_link_gets_its_plots(tmp_path):
    """A link to a folder is where the plots go: only files in it are replaced."""
    import os

    import hsanomaly

    (tmp_path / "real").mkdir()
    (tmp_path / "plots").symlink_to(tmp_path / "real")
    truth = np.zeros((20, 20), np.uint8)
    truth[5, 5] = 1
    hsanomaly.evaluate(np.random.default_rng(0).random((20, 20)), truth, plots=tmp_path / "plots")
    assert "roc.png" in os.listdir(tmp_path / "real")


def test_a_run_killed_between_its_journal_and_setting_side_files_aside_has_them_removed(tmp_path):
    """The journal is written before the earlier side files are set aside: completed by the
    next write, the new heatmap had the old .aux.xml laid over it."""

    from hsanomaly.io.atomic import atomic_path
    from hsanomaly.io.checks import HsanomalyWarning

    (tmp_path / "heat.tif").write_text("old")
    (tmp_path / "heat.tif.aux.xml").write_text("<PAMDataset>old</PAMDataset>")
    died = _killed_around_its_rename(tmp_path, "before setting aside")
    assert died.returncode == 9 and (tmp_path / "heat.tif.aux.xml").exists()
    with pytest.warns(HsanomalyWarning, match="heat.tif: completed, as the run"):
        with atomic_path(tmp_path / "other.txt") as tmp:
            tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.tif", "other.txt"]
    assert (tmp_path / "heat.tif").read_text() == "new"


def test_a_replaced_output_keeps_the_access_the_user_gave_the_earlier_one(tmp_path,
                                                                           synthetic_raster):
    """A rerun replaced outputs the user had made private (600, a folder 700) or given a
    group with world-readable ones of the user's own group, without a word."""
    import os
    import stat
    from pathlib import Path

    import hsanomaly
    from hsanomaly.io.atomic import atomic_directory

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    heat, png = tmp_path / "h.tif", tmp_path / "h.png"
    hsanomaly.detect(synthetic_raster[0], heat, score="rx", png=png, tile=16)
    os.chmod(heat, 0o600)
    os.chmod(png, 0o640)
    group = next((g for g in os.getgroups() if g != os.stat(heat).st_gid), None)
    if group is not None:
        os.chown(heat, -1, group)
    hsanomaly.detect(synthetic_raster[0], heat, score="lrx", png=png, tile=16)
    assert (mode(heat), mode(png)) == (0o600, 0o640)
    if group is not None:
        assert os.stat(heat).st_gid == group
    folder = tmp_path / "model"
    with atomic_directory(folder) as made:
        (Path(made) / "model.json").write_text("1")
        (Path(made) / "codebook.npy").write_text("1")
    os.chmod(folder, 0o711)                 # others may open its files by name, not list them
    os.chmod(folder / "model.json", 0o640)
    os.chmod(folder / "codebook.npy", 0o644)
    with atomic_directory(folder) as made:
        for name in ("model.json", "codebook.npy", "new.npy"):
            (Path(made) / name).write_text("2")
            os.chmod(Path(made) / name, 0o664)
    assert [mode(folder / name) for name in ("", "model.json", "codebook.npy", "new.npy")] == [
        0o711, 0o640, 0o644, 0o664]
    fresh = tmp_path / "fresh.tif"                    # a new output has the umask's
    hsanomaly.detect(synthetic_raster[0], fresh, score="rx", tile=16)
    umask = os.umask(0)
    os.umask(umask)
    assert mode(fresh) == 0o666 & ~umask


@pytest.mark.parametrize("is_dir", [False, True])
def test_another_commit_landing_between_the_check_and_the_rename_is_not_replaced(tmp_path,
                                                                                monkeypatch,
                                                                                is_dir):
    """Two runs sharing an output (the same --png, --polygons or --json) checked it unchanged
    and then both renamed over it: both exited 0, with outputs of the two mixed. What the
    rename takes out is now checked after it, so the second is undone and refused."""
    from hsanomaly.io import atomic
    from hsanomaly.io.checks import one_job

    (tmp_path / "a.txt").write_text("earlier a")
    (tmp_path / "shared").mkdir()
    real_keep_access, landed = atomic._keep_access, []

    def other_run_commits_meanwhile(tmp, dst, dst_is_dir):    # after the check, before renames
        real_keep_access(tmp, dst, dst_is_dir)
        if dst.name == "shared" and not landed:
            landed.append(dst)
            with atomic.staged() as other:
                if is_dir:
                    (other.directory(dst) / "other.txt").write_text("other run's")
                else:
                    other.path(dst).write_text("other run's")

    monkeypatch.setattr(atomic, "_keep_access", other_run_commits_meanwhile)
    if not is_dir:
        (tmp_path / "shared").rmdir()
    with one_job():
        atomic.note_checked(tmp_path / "a.txt")
        atomic.note_checked(tmp_path / "shared", is_dir)
        with pytest.raises(HsanomalyError, match=r"shared: changed since this run checked its "
                                                 r"outputs .*; nothing was replaced: look"):
            with atomic.staged() as stage:
                stage.path(tmp_path / "a.txt").write_text("new a")
                if is_dir:
                    (stage.directory(tmp_path / "shared") / "mine.txt").write_text("mine")
                else:
                    stage.path(tmp_path / "shared").write_text("mine")
    assert (tmp_path / "a.txt").read_text() == "earlier a"
    other = tmp_path / "shared" / "other.txt" if is_dir else tmp_path / "shared"
    assert other.read_text() == "other run's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "shared"]


def test_a_commit_swapped_with_a_folder_made_at_its_file_s_place_puts_the_folder_back(tmp_path):
    """renameat2's exchange swaps a file with a folder: the folder made meanwhile at a file
    output's place would have gone with the private folder."""
    from hsanomaly.io import atomic

    with pytest.raises(HsanomalyError, match=r"out.txt: cannot replace it \(is a directory\)"):
        with atomic.staged() as stage:
            stage.path(tmp_path / "out.txt").write_text("new")
            (tmp_path / "out.txt").mkdir()
            (tmp_path / "out.txt" / "user.txt").write_text("user's")
    assert (tmp_path / "out.txt" / "user.txt").read_text() == "user's"


@pytest.mark.parametrize("setting", [("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"),
                                     ("GDAL_PAM_ENABLED", "NO")])
def test_a_local_raster_is_read_with_its_side_files_whatever_gdal_s_settings(tmp_path,
                                                                            monkeypatch, setting):
    """Settings GIS users export for reads over the network hid a local raster's side files:
    its .msk mask's and its .aux.xml's nodata pixels were scored as data, without a word."""
    profile = dict(driver="GTiff", width=8, height=6, count=3, dtype="float32")
    data = np.random.default_rng(0).random((3, 6, 8)).astype(np.float32)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False):
        with rasterio.open(tmp_path / "masked.tif", "w", **profile) as ds:
            ds.write(data)
            mask = np.full((6, 8), 255, np.uint8)
            mask[:, :3] = 0
            ds.write_mask(mask)
    with rasterio.open(tmp_path / "pam.tif", "w", **profile) as ds:
        ds.write(np.where(np.arange(8) < 2, 7.0, data).astype(np.float32))
    (tmp_path / "pam.tif.aux.xml").write_text("<PAMDataset>" + "".join(
        f'<PAMRasterBand band="{b}"><NoDataValue>7</NoDataValue></PAMRasterBand>'
        for b in (1, 2, 3)) + "</PAMDataset>")
    monkeypatch.setenv(*setting)
    cases = [("pam.tif", 2)] + ([("masked.tif", 3)] if setting[1] == "EMPTY_DIR" else [])
    for name, columns in cases:
        cube = read_scene(tmp_path / name).cube
        assert np.isnan(cube[..., :columns]).all() and not np.isnan(cube[..., columns:]).any()


@pytest.mark.parametrize("name, message", [
    ("scÃ¨ne.tif", "/scène.tif: the name of 'src' was read in a locale that is not UTF-8; run under"),
    ("scène.tif", "/sc\\xe8ne.tif: the name of 'src' is not valid UTF-8, and hsanomaly takes UTF-8")])
def test_a_name_the_system_spells_in_latin_1_is_refused_before_the_work(tmp_path, monkeypatch,
                                                                        name, message):
    """In a Latin-1 locale every byte decodes, so no check fired: GDAL, SQLite and onnxruntime
    took the name's UTF-8 bytes, another file or none (an input that exists was "No such
    file", polygons failed after the scoring)."""
    import os
    import re

    import hsanomaly

    monkeypatch.setattr(os, "fsencode", lambda text: os.fspath(text).encode("latin-1"))
    with pytest.raises(HsanomalyError, match=re.escape(message)):
        hsanomaly.detect(str(tmp_path / name), str(tmp_path / "heat.tif"), score="rx")
    assert os.listdir(tmp_path) == []


def test_an_output_folder_that_is_a_file_or_a_loop_of_links_is_said_so(tmp_path):
    """Both were "output directory ... does not exist"."""
    import os

    from hsanomaly.io.atomic import check_writable

    (tmp_path / "notes.txt").write_text("a file")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    for out, said in (("notes.txt/h.tif", "notes.txt is a file, not a directory"),
                      ("notes.txt/sub/h.tif", "sub cannot be: a file stands in its path"),
                      ("loop1/h.tif", "loop1: too many levels of symbolic links"),
                      ("gone/h.tif", "gone does not exist"),
                      ("/dev/null/h.tif", "/dev/null is a character device, not a directory")):
        with pytest.raises(HsanomalyError, match=f"h.tif: output directory .*{said}$"):
            check_writable(tmp_path / out)


@pytest.mark.parametrize("earlier", ["old a", '{"auc": 0.9}'])
def test_an_earlier_output_swapped_in_at_the_journal_s_name_is_not_taken_for_it(tmp_path,
                                                                                earlier):
    """The swap leaves the earlier output where the staged one was: an output named like the
    journal (``--json commit.json``) was read as it, did not parse, and the folder holding the
    commit's mark went without completing it; whether the killed run's outputs were ever
    completed hung on the order the folder listed its entries."""
    from hsanomaly.io import atomic
    from hsanomaly.io.checks import HsanomalyWarning

    _killed_while_replacing(tmp_path, first="commit.json", earlier=earlier)
    (private,) = tmp_path.glob(".commit.json.*" + atomic.TMP_SUFFIX)
    assert (private / "commit.json").read_text() == earlier        # swapped out, as said
    with pytest.warns(HsanomalyWarning, match="completed, as the run"):
        atomic._finish_journal(private, atomic._writer(private.name))
    assert [(tmp_path / n).read_text() for n in ("commit.json", "b.txt")] == ["new a", "new b"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root's case")
def test_root_without_cap_fowner_is_refused_early_in_a_shared_folder(tmp_path):
    """Root with CAP_FOWNER dropped (a container's default set, setpriv) was taken to replace
    any file: a run in a sticky folder scored everything, then failed at the rename."""
    import shutil
    import subprocess
    import sys

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    os.chown(shared, 65534, -1)
    (shared / "heat.tif").write_text("another user's")
    os.chown(shared / "heat.tif", 65534, -1)
    check = ("from hsanomaly.io.atomic import check_writable; import sys; "
             "check_writable(sys.argv[1], directory=False)")
    done = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                           "-c", check, str(shared / "heat.tif")], capture_output=True, text=True)
    assert "belongs to another user in a shared (sticky) directory" in done.stderr
    assert subprocess.run([sys.executable, "-c", check, str(shared / "heat.tif")]).returncode == 0


def test_an_interrupt_between_a_swap_and_its_check_swaps_back(tmp_path, monkeypatch):
    """An interrupt just after the swap put back the earlier file kept at the job's start, so
    another run's output that had landed meanwhile (its run exited 0) was destroyed."""
    from pathlib import Path

    from hsanomaly.io import atomic
    from hsanomaly.io.checks import one_job

    for name in ("a.txt", "shared.txt"):
        (tmp_path / name).write_text("earlier")
    real_set_aside, real_rename2, fired = atomic._set_aside, atomic._rename2, []

    def other_run_commits_meanwhile(stale):        # just before the renames
        (tmp_path / "other.txt").write_text("other run's")
        os.replace(tmp_path / "other.txt", tmp_path / "shared.txt")
        return real_set_aside(stale)

    def interrupted_after_the_swap(src, dst, flag):
        done = real_rename2(src, dst, flag)
        if Path(dst).name == "shared.txt" and not fired:
            fired.append(dst)
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(atomic, "_set_aside", other_run_commits_meanwhile)
    monkeypatch.setattr(atomic, "_rename2", interrupted_after_the_swap)
    with one_job():
        with pytest.raises(KeyboardInterrupt):
            with atomic.staged() as stage:
                stage.path(tmp_path / "a.txt").write_text("new a")
                stage.path(tmp_path / "shared.txt").write_text("mine")
    assert fired, "renameat2 is not there to swap"
    assert (tmp_path / "shared.txt").read_text() == "other run's"
    assert (tmp_path / "a.txt").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "shared.txt"]


def test_only_a_held_private_folder_marks_its_output_as_being_written(tmp_path):
    """A quick model's folder left by a run killed on another host (an NFS output folder)
    refused every later run on that output as "being written", for good."""
    from hsanomaly.io import atomic

    other_host = tmp_path / f".heat.model.4242-{'0' * atomic.HOST_TAG}L.x1y2z3w4{atomic.TMP_SUFFIX}"
    other_host.mkdir()
    assert atomic.live_writer(tmp_path / "heat.model") is None
    held = atomic.private_folder(tmp_path, "heat.model")      # this process, writing it now
    try:
        assert atomic.live_writer(tmp_path / "heat.model") == held
        assert atomic.live_writer(tmp_path / "heat.model.x") is None
    finally:
        atomic.remove_private(held)
    assert atomic.live_writer(tmp_path / "heat.model") is None


def test_a_name_of_ascii_alone_in_a_folder_the_system_spells_in_latin_1_is_refused(tmp_path,
                                                                                  monkeypatch):
    """In a Latin-1 locale, a plain name given in a folder named with an accent passed the
    check, and the run failed after all the work (GDAL took the folder's UTF-8 bytes)."""
    import sys

    from hsanomaly.io.paths import check_path_kind

    (tmp_path / "café").mkdir()
    monkeypatch.chdir(tmp_path / "café")
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso8859-1")
    monkeypatch.setattr(os, "fsencode", lambda text: os.fspath(text).encode("latin-1"))
    with pytest.raises(HsanomalyError, match=r"caf\\xe9/heat.tif: the name of DST is not valid UTF-8"):
        check_path_kind("heat.tif", "DST")
    check_path_kind(str(tmp_path / "heat.tif"), "DST")            # a path of ASCII alone


def test_a_held_private_folder_of_a_long_name_marks_its_output_too(tmp_path):
    """A private folder's name is cut to fit the file system: for a long output name the
    look compared the cut name with the whole one and found nobody writing."""
    from hsanomaly.io import atomic

    name = "h" * 240 + ".model"
    held = atomic.private_folder(tmp_path, name)
    try:
        assert name not in held.name and atomic.live_writer(tmp_path / name) == held
    finally:
        atomic.remove_private(held)


def test_every_file_is_flushed_to_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """The write path's promise (README: written, flushed to disk, read back, renamed): a
    rename of a file not yet flushed can leave an empty or torn file after a power loss,
    under the output's name or as a tile a resume takes for finished. Every file renamed in
    a run (the tiles, the store's manifest, the heatmap, PNG and GeoPackage) was flushed first,
    and the outputs' folder after them."""
    from pathlib import Path

    import hsanomaly
    from hsanomaly.io import atomic

    cube, _ = synthetic_cube()
    src = write_raster(tmp_path / "scene.tif", cube)
    # in order: (None, inode) for a flush, (target, whether its file was flushed) for a rename
    synced, events = set(), []
    real_fsync, real_replace, real_rename2 = os.fsync, os.replace, atomic._rename2

    def renamed(source, target):
        if os.path.isfile(source):
            events.append((Path(target), os.stat(source).st_ino in synced))

    def fsync(fd):
        synced.add(os.fstat(fd).st_ino)
        events.append((None, os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(source, target, **kwargs):
        renamed(source, target)
        return real_replace(source, target, **kwargs)

    def rename2(source, target, flags):   # Linux's renameat2, where the outputs go in
        renamed(source, target)
        return real_rename2(source, target, flags)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(atomic, "_rename2", rename2)
    out = tmp_path / "out"
    out.mkdir()
    folder = os.stat(out).st_ino
    hsanomaly.detect(src, out / "heat.tif", score="rx", tile=16, png=out / "heat.png",
                     polygons=out / "t.gpkg", far=0.01)
    # into place: in the outputs' folder and the tile store (a writer's own renames inside
    # its private temporary folder come before the commit flushes the result)
    placed = [(i, path.name, flushed) for i, (path, flushed) in enumerate(events)
              if path is not None and path.parent in (out, out / "heat.tif.partial")]
    names = {name for _, name, _ in placed}
    assert {"heat.tif", "heat.png", "t.gpkg", "manifest.json"} <= names
    assert any(name.startswith("tile_") for name in names)
    assert [name for _, name, flushed in placed if not flushed] == []
    outputs = [i for i, _, _ in placed if events[i][0].parent == out] + [len(events)]
    assert all((None, folder) in events[start:end]      # the folder flushed after each rename
               for start, end in zip(outputs, outputs[1:]))


def test_a_tile_stores_files_have_the_umasks_mode_and_an_unreadable_manifest_says_so(
        tmp_path, monkeypatch):
    """A run's tiles and manifest were 0600 whatever the umask, and a manifest the user could
    not read was called damaged: a colleague of the group, told to start over, would have
    removed the tiles of a shared run rather than asked for them."""
    from hsanomaly.engine import store
    from hsanomaly.io.atomic import replace_durably

    for umask in (0o022, 0o002, 0o077):
        before = os.umask(umask)
        try:
            replace_durably(str(tmp_path / f"tile{umask}"), lambda f: f.write(b"x"), ".tile.")
        finally:
            os.umask(before)
        assert stat.S_IMODE(os.stat(tmp_path / f"tile{umask}").st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile18", "tile2", "tile63"]

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(store, "read_small", refused)
    with pytest.raises(HsanomalyError, match=r"x.partial: cannot read the interrupted run's "
                                             r"manifest \(permission denied\)"):
        store.read_manifest(tmp_path / "x.partial")


def test_a_drawing_that_matplotlib_cannot_start_is_refused_before_the_work(tmp_path,
                                                                           monkeypatch,
                                                                           synthetic_raster):
    """Without a writable folder for matplotlib's cache (a read-only container), --png and
    --plots failed after all the scoring, blaming the heatmap, and the scores were lost."""
    import importlib

    real = importlib.import_module

    def no_cache(name, *args):
        if name == "matplotlib":
            raise OSError("Matplotlib requires access to a writable cache directory")
        return real(name, *args)
    import hsanomaly

    monkeypatch.setattr(importlib, "import_module", no_cache)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HsanomalyError, match="^'png': matplotlib, which draws it, finds no "
                                             "writable folder .*set MPLCONFIGDIR"):
        hsanomaly.detect(synthetic_raster[0], out / "heat.tif", score="rx", png=out / "q.png")
    assert list(out.iterdir()) == []
    with pytest.raises(HsanomalyError, match="^'plots': matplotlib"):
        hsanomaly.evaluate(synthetic_raster[0], synthetic_raster[1], plots=out / "plots")
    assert list(out.iterdir()) == []


def test_a_folder_output_is_replaced_where_no_folder_is_renamed_over_another(tmp_path,
                                                                             monkeypatch):
    """Windows renames no folder over another, not even an empty one, and has no chown: a
    model bundle could not be replaced there (an empty folder left behind at each try), and
    every output replaced failed with AttributeError after the work."""
    import errno

    from hsanomaly.io import atomic
    from hsanomaly.io.atomic import atomic_directory

    folder = tmp_path / "model"
    with atomic_directory(folder) as made:
        (Path(made) / "model.json").write_text("1")
    real = os.replace

    def windows_replace(src, dst, *args, **kwargs):
        if os.path.isdir(dst):
            raise PermissionError(errno.EACCES, "Access is denied", str(src), None, str(dst))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", windows_replace)
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    monkeypatch.delattr(os, "chown")
    with atomic_directory(folder) as made:
        (Path(made) / "model.json").write_text("2")
    assert (folder / "model.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_jobs_private_temporary_goes_with_it_and_a_killed_ones_with_the_next(tmp_path,
                                                                              monkeypatch):
    """benchmark and thesis trained into tempfile's folder, which a kill -9 left for good."""
    import os
    import tempfile
    import time

    from hsanomaly.io import atomic

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = tmp_path / f".hsanomaly-benchmark.1-{atomic._host()}{atomic.HOLDS}.x{atomic.TMP_SUFFIX}"
    (killed / "models").mkdir(parents=True)                    # pid 1 holds no lock on it
    os.utime(killed, (time.time() - 3600,) * 2)
    with atomic.private_temporary("hsanomaly-benchmark") as workdir:
        assert os.path.isdir(workdir) and os.path.dirname(workdir) == str(tmp_path)
        (Path(workdir) / "models").mkdir()
        assert not killed.exists()
    assert list(tmp_path.iterdir()) == []


class _Handle:
    """A path-like object whose str() is not its path (a catalogue's entry)."""

    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self):
        return self.path

    def __str__(self):
        return "entry-42.tif"


def test_path_like_outputs_are_taken_by_their_path_not_their_str(tmp_path, monkeypatch):
    """An os.PathLike output was taken by its str(): refused with a mangled message, or, where
    str() ended in .tif, scored whole with a tile store in the working folder, then a KeyError."""
    import hsanomaly
    from synthetic import synthetic_cube, write_raster

    monkeypatch.chdir(tmp_path)
    cube, truth = synthetic_cube()
    src = write_raster(tmp_path / "scene.tif", cube)
    mask = write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    result = hsanomaly.detect(_Handle(src), _Handle(out / "h.tif"), score="rx",
                              png=_Handle(out / "q.png"), polygons=_Handle(out / "t.gpkg"),
                              far=0.01)
    assert result.path == str(out / "h.tif")
    report = hsanomaly.evaluate(_Handle(out / "h.tif"), _Handle(mask),
                                json=_Handle(out / "r.json"), plots=_Handle(out / "plots"))
    assert report["auc"] > 0.9 and report["inputs"]["heatmap"] == str(out / "h.tif")
    kept = hsanomaly.detect(_Handle(src), _Handle(out / "h.tif"), score="rx", resume=True)
    assert kept.earlier and kept.path == str(out / "h.tif")
    assert sorted(p.name for p in out.iterdir()) == ["h.tif", "plots", "q.pgw", "q.png",
                                                     "q.png.aux.xml", "r.json", "t.gpkg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scene.tif", "truth.tif"]


def test_a_last_alpha_band_holding_data_is_said(tmp_path):
    """GDAL marks the 4th band of a 4-band 8-bit GeoTIFF alpha unless told otherwise (an RGB
    + near-infrared image written with rasterio's defaults): its near-infrared was dropped
    and its zeros (water) made nodata, unsaid, while a Detector scored all 4 bands."""
    import warnings

    cube = np.random.default_rng(0).normal(120, 15, (4, 20, 20)).clip(1, 254).astype(np.uint8)
    path = tmp_path / "rgbn.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=4,
                       dtype="uint8") as ds:
        ds.write(cube)
        marked = [c.name for c in ds.colorinterp]
    if marked[-1] != "alpha":
        pytest.skip(f"this GDAL marks the 4th band {marked[-1]}")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        source = RasterSource(str(path))
    told = [str(w.message) for w in said if issubclass(w.category, HsanomalyWarning)]
    assert source.bands == [1, 2, 3] and len(told) == 1
    assert told[0].startswith(f"{path}: band 4 of 4 is marked alpha (transparency) but holds ")
    assert told[0].endswith("; if it is spectral, unmark it (gdal_translate -colorinterp_4 "
                            "undefined)")
    mask = np.full((20, 20), 255, np.uint8)
    mask[:, :8] = 0
    mask[:, 8] = np.arange(20) * 12                       # an anti-aliased edge: a mask still
    with rasterio.open(path, "r+") as ds:
        ds.write(mask, 4)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        RasterSource(str(path))
    assert not [w for w in said if issubclass(w.category, HsanomalyWarning)]


def test_rasterios_nodata_shadow_warning_is_not_passed_on(tmp_path):
    """A raster with a nodata value and an alpha band: rasterio warned, a dozen times a run,
    that the alpha band was ignored (it is the mask here), and under the README's
    PYTHONWARNINGS=error::UserWarning the run ended in a traceback."""
    import warnings

    from rasterio.enums import ColorInterp
    from rasterio.errors import NodataShadowWarning

    import hsanomaly

    cube, _ = synthetic_cube(bands=4, rows=20, cols=24)
    cube[-1] = 255
    cube[-1, :3] = 0                                      # transparent rows
    path = write_raster(tmp_path / "shadow.tif", cube, nodata=-9999)
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.gray] * 3 + [ColorInterp.alpha]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NodataShadowWarning)
        with rasterio.open(path) as ds:
            heat = hsanomaly.Detector("rx").fit(ds).score(ds)
        hsanomaly.detect(path, tmp_path / "heat.tif", score="rx")
    assert np.isnan(heat[:3]).all() and not np.isnan(heat[3:]).any()      # the alpha masks


def test_an_alpha_band_is_left_out_and_one_not_last_is_said(tmp_path):
    """A last alpha band masks its zeros and is no spectrum; gdal_translate -co ALPHA=YES
    marks band 2 of a multiband raster alpha, which was dropped, its zeros nodata, unsaid."""
    import warnings

    from rasterio.enums import ColorInterp

    cube, _ = synthetic_cube(bands=4, rows=10, cols=12)
    cube[-1] = 255
    cube[-1, 0, :3] = 0                                   # transparent
    for name, alpha in (("last.tif", 4), ("second.tif", 2)):
        path = write_raster(tmp_path / name, cube)
        with rasterio.open(path, "r+") as ds:
            ds.colorinterp = [ColorInterp.alpha if b == alpha else ColorInterp.undefined
                              for b in range(1, 5)]
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            source = RasterSource(str(path))
        told = [str(w.message) for w in said if issubclass(w.category, HsanomalyWarning)]
        assert source.bands == [b for b in (1, 2, 3, 4) if b != alpha]
        if alpha == 4:
            assert not told
        else:
            assert told == [f"{path}: band 2 of 4 is marked alpha (transparency): it is left out "
                            "of the spectra and its zeros are nodata; an alpha band is the "
                            "last: if it is spectral, unmark it (gdal_translate -colorinterp_2 "
                            "undefined)"]


def test_a_quality_layer_stacked_with_the_bands_is_said(tmp_path):
    """A Landsat QA_PIXEL band stacked with its scaled reflectance bands (gdalbuildvrt
    -separate) held a few codes in units thousands of times the reflectances': it took the
    local rings over, lrx and the default found none of 6 targets, and nothing was said (the
    multispectral audit's F01). In a stack without it, or in the stored counts' units where
    it is the smallest band, nothing is said; nor of a hyperspectral band quantised to a few
    values by its low signal."""
    import warnings

    rng = np.random.default_rng(0)
    reflectance = rng.normal(9000, 250, (7, 60, 60))
    qa = np.where(rng.random((60, 60)) < 0.8, 21824, 21952)[None]    # clear, and water
    cases = {"stack.tif": (np.concatenate([reflectance, qa]), True),
             "bands.tif": (reflectance, True), "counts.tif": (np.concatenate([reflectance, qa
                                                                             * 0.01]), False)}
    said = {}
    for name, (cube, scaled) in cases.items():
        path = write_raster(tmp_path / name, cube, dtype="uint16")
        if scaled:
            with rasterio.open(path, "r+") as ds:
                ds.scales = [2.75e-5] * 7 + [1.0] * (ds.count - 7)
                ds.offsets = [-0.2] * 7 + [0.0] * (ds.count - 7)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(path).check_data()
        said[name] = [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]
    assert said["stack.tif"] == [
        f"{tmp_path / 'stack.tif'}: 1 band (8) holds a few values in the pixels probed, as codes "
        "do, and carries no scale or offset where the other bands do: a quality, cloud or "
        "scene-classification layer (QA_PIXEL, SCL)? Scored as a band of the spectra, it can "
        "take over the local rings and principal components (lrx, gmm, the context scores) "
        "and hide the targets; leave it out (gdal_translate -b, or a stack without it), and "
        "mask the clouds ('mask')"]
    # a Detector takes no mask: its remedy is the one it takes (the faces audit's F02)
    import hsanomaly

    with pytest.warns(HsanomalyWarning, match=r"mask the clouds \(as a masked array or NaN\)"):
        with rasterio.open(tmp_path / "stack.tif") as ds:
            hsanomaly.Detector("rx").fit(ds)
    assert said["bands.tif"] == said["counts.tif"] == []
    dim = np.concatenate([reflectance, np.round(rng.normal(0, 0.5, (1, 60, 60)))])
    from hsanomaly.io.values import code_bands

    assert code_bands(dim.reshape(8, -1)) == ([], [])
    assert code_bands(np.concatenate([reflectance * 1e-4, qa]).reshape(8, -1)) == ([7], [])


def test_a_vrt_of_bands_at_other_pixel_sizes_is_said(tmp_path):
    """gdalbuildvrt -separate over 10 m and 20 m bands scores a 16 m grid by default, each band
    resampled by nearest neighbour, and a 20 m band in blocks spreads a cloud's edge past a
    10 m mask; nothing was said (the multispectral audit's F02)."""
    import warnings

    from synthetic import TRANSFORM

    rng = np.random.default_rng(0)
    fine = write_raster(tmp_path / "fine.tif", rng.normal(100, 5, (1, 40, 40)))
    coarse = write_raster(tmp_path / "coarse.tif", rng.normal(100, 5, (1, 20, 20)),
                          transform=TRANSFORM * TRANSFORM.scale(2))

    def vrt(name, size, sources):
        pixel = TRANSFORM.a * 40 / size
        bands = "".join(
            f'<VRTRasterBand dataType="Float32" band="{band}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="1">{source.name}</SourceFilename>'
            f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{pixels}" '
            f'ySize="{pixels}"/><DstRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>'
            "</SimpleSource></VRTRasterBand>"
            for band, (source, pixels) in enumerate(sources, start=1))
        (tmp_path / name).write_text(
            f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
            f"<GeoTransform>{TRANSFORM.c}, {pixel}, 0, {TRANSFORM.f}, 0, {-pixel}"
            f"</GeoTransform>{bands}</VRTDataset>")
        return tmp_path / name

    said = {}
    for path in (vrt("highest.vrt", 40, [(fine, 40), (coarse, 20), (fine, 40)]),
                 vrt("average.vrt", 25, [(fine, 40), (coarse, 20), (fine, 40)]),
                 vrt("alike.vrt", 40, [(fine, 40), (fine, 40), (fine, 40)])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RasterSource(path).check_data()
        said[path.name] = [str(w.message) for w in caught
                           if issubclass(w.category, HsanomalyWarning)]
    assert said["highest.vrt"] == [
        f"{tmp_path / 'highest.vrt'}: its bands come at pixel sizes of 2 and 4, each resampled "
        "onto its grid of 2; each pixel of a coarse band covers several of the grid's, "
        "which spread a target or a cloud's edge past its own pixels. Leave the coarse bands "
        "out, or grow a cloud mask by the coarsest band's pixel"]
    assert said["average.vrt"] == [
        f"{tmp_path / 'average.vrt'}: its bands come at pixel sizes of 2 and 4, each resampled "
        "onto its grid of 3.2 (a size none of them has: gdalbuildvrt's default, -resolution "
        "average); each pixel of a coarse band covers several of the grid's, which "
        "spread a target or a cloud's edge past its own pixels. Build it at the finest band's "
        "pixels (gdalbuildvrt -resolution highest), and leave the coarse bands out, or grow a "
        "cloud mask by the coarsest band's pixel"]
    assert said["alike.vrt"] == []


def _vrt_over(path, vrt, count, height, width, name=None, rows=None, block=None, cols=None,
              names=None):
    """A VRT (as gdalbuildvrt writes it) of ``path``'s bands; ``rows``: (source yOff, ySize,
    VRT yOff, ySize); ``cols``: (source xOff, xSize); ``block``: the source's block size as
    its SourceProperties state it (a VRT's: 128), None for none stated; ``names``: a file per
    band, each read at its band 1 (gdalbuildvrt -separate)."""
    sy, sh, dy, dh = rows or (0, height, 0, height)
    sx, sw = cols or (0, width)
    stated = "" if block is None else (
        f'<SourceProperties RasterXSize="{width}" RasterYSize="{height}" DataType="Float32" '
        f'BlockXSize="{block}" BlockYSize="{block}"/>')
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">'
        f'{names[b - 1] if names else name or Path(path).name}</SourceFilename>'
        f'<SourceBand>{1 if names else b}</SourceBand>{stated}'
        f'<SrcRect xOff="{sx}" yOff="{sy}" xSize="{sw}" ySize="{sh}"/>'
        f'<DstRect xOff="0" yOff="{dy}" xSize="{sw}" ySize="{dh}"/></SimpleSource>'
        "</VRTRasterBand>" for b in range(1, (len(names) if names else count) + 1))
    Path(vrt).write_text(f'<VRTDataset rasterXSize="{sw}" rasterYSize="{dh}">{bands}'
                         "</VRTDataset>")
    return vrt


def test_a_vrts_block_cache_is_sized_by_its_sources_blocks(tmp_path):
    """GDAL reports a VRT's own 128-pixel blocks, not its sources': over a tiled-512 GeoTIFF
    the cache was sized for 128-row blocks, too small for a row of the file's, and `detect
    --score lrx` read the file 7 times (the perf audit's F01). A VRT of a VRT, and one over a
    part of its source's rows, take the file's blocks too; one whose source's blocks are not
    known, its own."""
    cube = np.ones((3, 300, 600), np.float32)
    tiled = tmp_path / "tiled.tif"
    with rasterio.open(tiled, "w", driver="GTiff", dtype="float32", count=3, height=300,
                       width=600, tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(cube)
    file = RasterSource(tiled)
    assert (file.block_rows, file.row_bytes, file.striped) == (256, 768 * 3 * 4, False)
    vrt = RasterSource(_vrt_over(tiled, tmp_path / "a.vrt", 3, 300, 600))
    assert (vrt.block_rows, vrt.row_bytes, vrt.striped) == (256, 768 * 3 * 4, False)
    assert vrt.cache_for(256 + 14) == file.cache_for(256 + 14)
    stated = RasterSource(_vrt_over(tiled, tmp_path / "s.vrt", 3, 300, 600, block=256))
    assert (stated.block_rows, stated.row_bytes) == (256, 768 * 3 * 4)
    nested = RasterSource(_vrt_over(tmp_path / "a.vrt", tmp_path / "b.vrt", 3, 300, 600,
                                    block=128))             # a VRT states its own: opened
    assert (nested.block_rows, nested.row_bytes) == (256, 768 * 3 * 4)
    half = RasterSource(_vrt_over(tiled, tmp_path / "c.vrt", 3, 300, 600,
                                  rows=(0, 300, 0, 150)))          # every other row
    assert (half.block_rows, half.row_bytes) == (128, 2 * 768 * 3 * 4)
    crop = RasterSource(_vrt_over(tiled, tmp_path / "e.vrt", 3, 300, 600, block=256,
                                  cols=(300, 100)))        # columns 300-399: one block across
    assert (crop.block_rows, crop.row_bytes) == (256, 256 * 3 * 4)
    # a band stack of more files than are opened, none of them there: their stated blocks
    stack = _vrt_over(tiled, tmp_path / "f.vrt", 0, 300, 600, block=512,
                      names=[f"band{b}.tif" for b in range(100)])
    from hsanomaly.io.gdal import vrt_blocks

    with rasterio.open(stack) as ds:
        assert vrt_blocks(ds) == (512, 100 * 1024 * 4, False)
    # striped where its sources all are; a mosaic of a striped file beside a tiled one is not
    strips = _vrt_over(tiled, tmp_path / "g.vrt", 3, 300, 600, block=600)
    with rasterio.open(strips) as ds:
        assert vrt_blocks(ds)[2] is True
    sources = [f'<SimpleSource><SourceFilename>{name}</SourceFilename><SourceBand>1</SourceBand>'
               f'<SourceProperties RasterXSize="300" RasterYSize="300" DataType="Float32" '
               f'BlockXSize="{block}" BlockYSize="{block}"/><SrcRect xOff="0" yOff="0" '
               f'xSize="300" ySize="300"/><DstRect xOff="{left}" yOff="0" xSize="300" '
               f'ySize="300"/></SimpleSource>'
               for name, block, left in (("a.tif", 300, 0), ("b.tif", 256, 300))]
    mosaic = tmp_path / "mosaic.vrt"
    mosaic.write_text('<VRTDataset rasterXSize="600" rasterYSize="300"><VRTRasterBand '
                      f'dataType="Float32" band="1">{"".join(sources)}</VRTRasterBand>'
                      "</VRTDataset>")
    with rasterio.open(mosaic) as ds:
        assert vrt_blocks(ds) == (300, 300 * 4 + 512 * 4, False)
    with rasterio.open(tmp_path / "a.vrt") as ds:
        assert ds.block_shapes[0] == (128, 128)            # what GDAL says of it
    gone = _vrt_over(tiled, tmp_path / "d.vrt", 3, 300, 600, name="gone.tif")
    with rasterio.open(gone) as ds:
        assert vrt_blocks(ds) is None                      # not known: its own blocks
    with rasterio.open(tiled) as ds:
        assert vrt_blocks(ds) is None                      # not a VRT


@pytest.mark.parametrize("name", ['HDF5:"{}"://cube', 'NETCDF:"{}":reflectance'])
def test_a_subdataset_of_a_missing_file_is_one_line(tmp_path, name):
    """HDF5's library printed its error stack (HDF5-DIAG, some twenty lines) above the one
    line: the file a subdataset lies in is looked for first."""
    import subprocess
    import sys

    name = name.format(tmp_path / "gone.h5")
    run = subprocess.run([sys.executable, "-m", "hsanomaly", "detect", name,
                          str(tmp_path / "heat.tif"), "--score", "rx"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr == (
        f"Error: {name}: file not found (the file its subdataset lies in)\n"), run.stderr
