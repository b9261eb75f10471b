"""Bad inputs, refused up front with one line (or, for a constant raster, warned about)."""

import re
import sys

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io

import hsanomaly

from synthetic import write_raster

from .conftest import Tree, assert_ok, assert_one_error, make_scene, run_cli


def truncated_raster(path):
    """A striped, uncompressed GeoTIFF cut at 60%: the header reads, the pixels do not."""
    make_scene(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    return path


def test_complex_geotiff(tmp_path):
    path = tmp_path / "complex.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=2,
                       dtype="complex64") as ds:
        ds.write(np.ones((2, 8, 8), np.complex64) * (1 + 2j))
    tree = Tree(tmp_path)
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "complex.tif", "complex pixels")
    tree.assert_unchanged()


def test_complex_mat(tmp_path):
    scipy.io.savemat(tmp_path / "c.mat", {"data": np.ones((5, 6, 3)) * (1 + 1j)})
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", tmp_path / "c.mat", tmp_path / "c.tif"), "complex pixels")
    tree.assert_unchanged()


def test_a_missing_mat_is_not_found_as_any_input(tmp_path):
    """It was "not a readable MATLAB file ([Errno 2] No such file or directory: ...)"."""
    assert_one_error(run_cli("convert", tmp_path / "gone.mat", tmp_path / "c.tif"),
                     f"{tmp_path / 'gone.mat'}: file not found")


def test_mat_v73_declaring_a_huge_cube(tmp_path):
    """An HDF5 (v7.3) .mat whose chunked cube is declared but never written: a few KiB on
    disk, 16 TB in memory. Refused from its header, before anything is loaded."""
    path = tmp_path / "huge.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(200, 10**5, 10**5), dtype="float64", chunks=(1, 64, 64))
    tree = Tree(tmp_path)
    for command in (["convert", path, tmp_path / "huge.tif"],
                    ["detect", path, tmp_path / "heat.tif", "--score", "rx", "-q"]):
        assert_one_error(run_cli(*command), "huge.mat", "of memory", "available")
    tree.assert_unchanged()


def test_heatmap_declaring_a_huge_size(tmp_path, truth):
    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=10**6, height=10**6, count=1,
                       dtype="float32", tiled=True, blockxsize=16384, blockysize=16384,
                       sparse_ok=True, BIGTIFF="YES", nodata=-1):
        pass
    tree = Tree(tmp_path)
    assert_one_error(run_cli("evaluate", huge, truth), "huge.tif", "of memory", "available")
    tree.assert_unchanged()


@pytest.mark.parametrize("kind", ["constant", "near-constant"])
def test_constant_raster_is_warned_about(tmp_path, kind):
    cube = np.full((6, 20, 30), 1000.0, np.float32)
    if kind == "near-constant":
        cube += np.random.default_rng(0).normal(0, 1e-4, cube.shape).astype(np.float32)
    src = write_raster(tmp_path / "flat.tif", cube)
    result = run_cli("detect", src, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Warning: ") and "constant" in lines[0], lines
    assert (tmp_path / "heat.tif").exists()


@pytest.mark.parametrize("command", ["detect", "rio", "train", "evaluate"])
def test_truncated_geotiff(tmp_path, command, earlier, truth):
    bad = truncated_raster(tmp_path / "cut.tif")
    tree = Tree(tmp_path)
    if command == "detect":         # --overwrite: a failed run keeps it all the same
        result = run_cli("detect", bad, earlier, "--score", "rx", "-q", "--overwrite")
    elif command == "rio":
        import subprocess

        result = subprocess.run([sys.executable, "-c", "from rasterio.rio.main import main_group;"
                                 " main_group()", "hsanomaly", "detect", str(bad), str(earlier),
                                 "--score", "rx", "-q", "--overwrite"], capture_output=True,
                                text=True)
    elif command == "train":
        result = run_cli("train", bad, "--out", tmp_path / "model", "--iterations", "2", "-q")
    else:                             # a heatmap has one band
        from synthetic import write_raster

        write_raster(bad, rasterio.open(truth).read())
        bad.write_bytes(bad.read_bytes()[:int(bad.stat().st_size * 0.6)])
        tree = Tree(tmp_path)
        result = run_cli("evaluate", bad, truth)
    assert_one_error(result, "cut.tif", "truncated or corrupt")
    tree.assert_unchanged()


@pytest.mark.parametrize("content", [b"", b"hello", b"II*\x00" + bytes(100)],
                         ids=["empty", "text", "tiff-magic"])
def test_unreadable_file(tmp_path, content):
    (tmp_path / "bad.tif").write_bytes(content)
    tree = Tree(tmp_path)
    result = run_cli("detect", tmp_path / "bad.tif", tmp_path / "heat.tif", "--score", "rx", "-q")
    assert_one_error(result, "bad.tif")
    tree.assert_unchanged()


def test_not_a_mat_file(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really" + bytes(200))
    tree = Tree(tmp_path)
    assert_one_error(run_cli("convert", tmp_path / "x.mat", tmp_path / "x.tif"), "x.mat")
    tree.assert_unchanged()


@pytest.mark.parametrize("cut", [None, 100], ids=["text", "truncated"])
def test_a_mat_file_of_text_or_cut_short(tmp_path, cut):
    """scipy's MatReadError (text) and an IndexError in its header parser (a real .mat cut
    to 100 bytes) were tracebacks."""
    if cut is None:
        (tmp_path / "x.mat").write_text("garbage\n")
    else:
        scipy.io.savemat(tmp_path / "x.mat", {"data": np.ones((5, 6, 3))})
        (tmp_path / "x.mat").write_bytes((tmp_path / "x.mat").read_bytes()[:cut])
    tree = Tree(tmp_path)
    for command in (("convert", tmp_path / "x.mat", tmp_path / "x.tif"),
                    ("detect", tmp_path / "x.mat", tmp_path / "h.tif", "--score", "rx", "-q")):
        assert_one_error(run_cli(*command), "x.mat")
    tree.assert_unchanged()


@pytest.mark.parametrize("score, valid, fragment", [
    ("rx", 3, "RX on 12 bands needs at least 13 valid pixels (one more than bands); the raster has 3"),
    ("rx", 12, "the raster has 12"),
    ("gmm", 3, "a mixture of 5 components needs at least 13 valid pixels"),
])
def test_too_few_valid_pixels_for_the_statistics(tmp_path, score, valid, fragment):
    """RX fitted on 3 pixels of 12 bands wrote negative squared distances with exit 0, and the
    mixture stopped with scikit-learn's traceback: both are refused in one line."""
    cube = np.full((12, 20, 30), np.nan, np.float32)
    cube[:, 0, :valid] = np.random.default_rng(0).normal(100, 5, (12, valid))
    src = write_raster(tmp_path / "sparse.tif", cube)
    tree = Tree(tmp_path)
    line = assert_one_error(run_cli("detect", src, tmp_path / "heat.tif", "--score", score,
                                    "-q"), "sparse.tif", fragment)
    assert not line.endswith(".0"), line            # a count of pixels, not "3.0"
    tree.assert_unchanged()


def test_rx_on_barely_more_pixels_than_bands_is_said_to_flatten():
    """RX on 400 pixels of 371 bands (an analyst's chip of an AVIRIS-NG scene) ranked its
    targets 27th to 116th, every distance within 8 % of the mean, and said nothing: a fitted
    pixel lies at most (n - 1) / bands times the mean out (the sensor audit). Chips of the
    shared scenes ranked as the whole scene did down to about 4 times, and are quiet; rxmlrx
    names its own term."""
    import warnings

    import hsanomaly
    from hsanomaly.errors import HsanomalyWarning

    cube = np.random.default_rng(0).normal(100, 5, (40, 12, 12)).astype(np.float32)

    def said(score, cube):
        options = {"rings": "7/3", "pca": 3} if score == "rxmlrx" else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hsanomaly.Detector(score, **options).fit(cube)
        return [str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning)]

    assert said("rx", cube[:, :10, :10]) == [
        "<array>: RX fitted on 100 valid pixels of 40 bands: no pixel's distance can exceed "
        "2.48 times their mean, too few pixels a band for its covariance to rank the targets; "
        "fit on more pixels or fewer bands, or score with gmm or lrx, which work in a few "
        "principal components"]
    assert said("rx", cube) == []                                   # 144 pixels: 3.6 times
    assert said("rxmlrx", cube[:, :10, :10])[0].startswith(
        "<array>: the global RX term of rxmlrx fitted on 100 valid pixels of 40 bands")
    assert said("rxmlrx", cube[:, :10, :10])[0].endswith("or score with mlrx, its rings alone")


def _vrt(path, width, height, bands):
    """A VRT stacking (file, band, GDAL type) sources, as gdalbuildvrt -separate makes."""
    xml = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    for i, (source, band, kind) in enumerate(bands, start=1):
        xml.append(f'<VRTRasterBand dataType="{kind}" band="{i}"><SimpleSource><SourceFilename '
                   f'relativeToVRT="0">{source}</SourceFilename><SourceBand>{band}</SourceBand>'
                   '</SimpleSource></VRTRasterBand>')
    path.write_text("".join(xml) + "</VRTDataset>")
    return path


def test_bands_of_different_types_are_scored_as_their_values(tmp_path):
    """A stack of an int16 and a float32 product scores as the same values stored as float32."""
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=6, rows=30, cols=30)
    counts = write_raster(tmp_path / "a.tif", np.round(cube[:3] * 1000), dtype="int16")
    floats = write_raster(tmp_path / "b.tif", cube[3:])
    stack = _vrt(tmp_path / "stack.vrt", 30, 30, [(counts, b, "Int16") for b in (1, 2, 3)]
                 + [(floats, b, "Float32") for b in (1, 2, 3)])
    same = write_raster(tmp_path / "same.tif",
                        np.concatenate([np.round(cube[:3] * 1000), cube[3:]]))
    for raster, out in ((stack, "stack-heat.tif"), (same, "same-heat.tif")):
        result = run_cli("detect", raster, tmp_path / out, "--score", "rx", "-q")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    with rasterio.open(tmp_path / "stack-heat.tif") as a, rasterio.open(tmp_path / "same-heat.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_complex_band_that_is_not_the_first_is_refused_in_one_line(tmp_path):
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=2, rows=10, cols=10)
    real = write_raster(tmp_path / "real.tif", cube)
    path = tmp_path / "cplx.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1,
                       dtype="complex64") as ds:
        ds.write((cube[:1] * (1 + 1j)).astype(np.complex64))
    stack = _vrt(tmp_path / "stack.vrt", 10, 10, [(real, 1, "Float32"), (path, 1, "CFloat32")])
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", stack, tmp_path / "heat.tif", "--score", "rx", "-q"),
                     "stack.vrt", "complex pixels", "band 2")
    tree.assert_unchanged()


def test_an_alpha_band_is_the_mask_not_a_spectral_band(tmp_path):
    """With more than 4 bands GDAL does not mask with alpha: the transparent pixels must still
    be nodata, and alpha must not be fitted or scored as a band."""
    import hsanomaly
    from rasterio.enums import ColorInterp
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=12, rows=40, cols=50)
    transparent = np.zeros((40, 50), bool)
    transparent[:, :5] = transparent[20:30, 20:30] = True
    alpha = np.where(transparent, 0, 255)[None].astype(np.float32)
    path = write_raster(tmp_path / "rgba-like.tif", np.concatenate([cube, alpha]))
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * 11 + [ColorInterp.alpha]
    plain = ~transparent
    expected = hsanomaly.Detector("rx").fit_score(np.ma.masked_array(
        cube, np.broadcast_to(transparent, cube.shape)))
    with rasterio.open(path) as ds:
        detector = hsanomaly.Detector("rx").fit(ds)
        scores = detector.score(ds)
    assert detector.n_features_in_ == 12
    assert np.isnan(scores[transparent]).all() and np.isfinite(scores[plain]).all()
    np.testing.assert_allclose(scores[plain], expected[plain], rtol=1e-5)


def test_a_nodata_value_that_one_band_holds_as_data_is_warned_about(tmp_path):
    """nodata=0 and a band that reads 0 over water: GDAL leaves those pixels out whole."""
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=12, rows=80, cols=90)
    counts = np.round(cube * 1000)
    counts[:, :10, :10] = 0                            # a real nodata corner: every band
    plain = write_raster(tmp_path / "plain.tif", counts, nodata=0, dtype="uint16")
    counts[7, 30:, :] = 0                              # "water": band 8 only
    water = write_raster(tmp_path / "water.tif", counts, nodata=0, dtype="uint16")
    result = run_cli("detect", water, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "water.tif" in warning[0] and "band 8 most often" in warning[0]
    quiet = run_cli("detect", plain, tmp_path / "heat2.tif", "--score", "rx", "-q")
    assert quiet.returncode == 0 and "Warning" not in quiet.stderr, quiet.stderr


def test_nan_in_a_few_bands_is_warned_about_as_nodata_there_is(tmp_path):
    """One band's dropout as NaN, no nodata declared: a third of the scene was left out whole
    without a word (the warning counted declared nodata only), from a file and an array."""
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=12, rows=80, cols=90)
    cube[3, :, :30] = np.nan                            # band 4's dropout
    path = write_raster(tmp_path / "dropout.tif", cube)
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and re.fullmatch(
        r"Warning: .*dropout.tif: \d+% of the pixels probed are NaN in only a few bands \(band 4 "
        r"most often\), so they are left out whole; leave such bands out \(gdal_translate -b\) "
        r"to score those pixels", warning[0]), warning
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"^<array>: \d+% .* NaN in only a few "
                                                         r"bands \(band 4 most often\)"):
        hsanomaly.Detector("rx").fit(cube)
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"^<array>: \d+% .* NaN in only a few "
                                                         r"bands \(band 4 most often\)"):
        hsanomaly.Detector("rx").fit(np.ma.masked_invalid(cube))    # the mask folded: unsaid
    zeros = np.ma.masked_array(np.nan_to_num(cube), np.isnan(cube))
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"^<array>: \d+% .* masked in only a "
                                                         r"few bands \(band 4 most often\)"):
        hsanomaly.Detector("rx").fit(zeros)
    xr = pytest.importorskip("xarray")
    filled = xr.DataArray(np.nan_to_num(cube, nan=-9999), dims=("band", "y", "x"),
                          attrs={"_FillValue": -9999})
    with pytest.warns(hsanomaly.HsanomalyWarning, match=r"^<DataArray>: \d+% .* masked in only "
                                                         r"a few bands \(band 4 most often\)"):
        hsanomaly.Detector("rx").fit(filled)
    declared = write_raster(tmp_path / "declared.tif", cube, nodata=float("nan"))   # GDAL's way
    result = run_cli("detect", declared, tmp_path / "heat2.tif", "--score", "rx", "-q")
    assert "declared.tif: " in result.stderr and "NaN in only a few bands" in result.stderr


def test_float64_values_beyond_float32s_range_are_refused_not_made_nodata(tmp_path):
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=6, rows=20, cols=20)
    cube = cube.astype(np.float64)
    cube[4, 10, 10] = 1e40                       # finite in the file, infinite in float32
    path = write_raster(tmp_path / "wide.tif", cube, dtype="float64")
    tree = Tree(tmp_path)
    assert_one_error(run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q"),
                     "wide.tif", "band 5 holds values beyond float32's range", "1e+40")
    tree.assert_unchanged()
    cube[4, 10, 10] = 1.5                         # within range: scored as before
    path = write_raster(tmp_path / "fine.tif", cube, dtype="float64")
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr


def test_float64_values_float32_rounds_coarsely_are_warned_about(tmp_path):
    """Kelvin-like values (300 +- a thousandth) in float64: float32 keeps steps of 3e-5, a
    good part of the spread; reflectance-like values are fine."""
    import hsanomaly
    from hsanomaly.io.checks import HsanomalyWarning
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=6, rows=30, cols=30)
    cube = cube.astype(np.float64)
    coarse = cube.copy()
    coarse[2] = 300.0 + (cube[2] - cube[2].mean()) * 1e-3
    path = write_raster(tmp_path / "kelvin.tif", coarse, dtype="float64")
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "kelvin.tif: band 3's values lie" in warnings[0]
    fine = write_raster(tmp_path / "fine.tif", cube, dtype="float64")
    result = run_cli("detect", fine, tmp_path / "heat2.tif", "--score", "rx", "-q")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    with pytest.warns(HsanomalyWarning, match="band 3's values lie") as caught:   # arrays
        hsanomaly.Detector("rx").fit(coarse)
    assert caught[0].filename == __file__         # the caller's line, not the library's
    assert hsanomaly.HsanomalyWarning is HsanomalyWarning                 # public, to filter
    with pytest.raises(Exception, match="beyond float32's range"):
        hsanomaly.Detector("rx").fit(cube * 1e300)


@pytest.mark.parametrize("dtype", ["int32", "uint32"])
def test_wide_integers_float32_rounds_coarsely_are_warned_about(tmp_path, dtype):
    """Counts near 2e8 varying by a few hundred: GDAL reads them into float32, in steps of 16,
    a good part of the spread; the same counts near zero are fine."""
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(bands=6, rows=30, cols=30)
    counts = np.round((cube - cube.mean()) * 300 / cube.std()).astype(np.int64)
    coarse = counts + 0
    coarse[3] += 200_000_000
    path = write_raster(tmp_path / "counts.tif", coarse - coarse.min() * (dtype == "uint32"),
                        dtype=dtype)
    result = run_cli("detect", path, tmp_path / "heat.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "counts.tif: band 4's values lie" in warnings[0], warnings
    fine = write_raster(tmp_path / "fine.tif", counts - counts.min(), dtype=dtype)
    result = run_cli("detect", fine, tmp_path / "heat2.tif", "--score", "rx", "-q")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr


def test_an_input_whose_name_begins_with_a_dash_is_said_how_to_give(tmp_path, scene):
    """click took -x.tif for the option -x and said only "No such option '-x'"."""
    import shutil

    shutil.copy(scene, tmp_path / "-x.tif")
    assert_one_error(run_cli("detect", "--score", "rx", "-x.tif", "h.tif", cwd=tmp_path),
                     "No such option '-x' (-x.tif is a file: give it as ./-x.tif, or after --)",
                     status=2)
    assert_ok(run_cli("detect", "--score", "rx", "-q", "--", "-x.tif", "h.tif", cwd=tmp_path))


def test_highest_scores_along_one_column_are_said_on_the_command_line(tmp_path):
    """A push-broom detector's noisy column held all of RX's top 100 pixels of the example
    and nothing was said (the artefacts audit's F02). And a warning said while another
    GDAL write had descriptor 2 silenced (``native_quiet``, the CLI's) was lost: this one
    was, the first time."""
    from synthetic import synthetic_cube

    cube, _ = synthetic_cube(rows=60, cols=60)
    clean = write_raster(tmp_path / "clean.tif", cube)
    noisy = cube.copy()
    noisy[:, :, 17] += np.random.default_rng(0).normal(0, 5 * cube.std(), (cube.shape[0], 60))
    noisy = write_raster(tmp_path / "noisy.tif", noisy)
    result = assert_ok(run_cli("detect", noisy, tmp_path / "noisy_rx.tif", "--score", "rx"))
    lines = [line for line in result.stderr.splitlines() if "highest scores" in line]
    assert len(lines) == 1 and lines[0].startswith(f"Warning: {tmp_path / 'noisy_rx.tif'}: ")
    assert "lie in column 18 of 60: a detector artefact (a bad or noisy column, a stripe) " \
        "ranked above the targets? Mask it (--mask) and score again" in lines[0]
    result = assert_ok(run_cli("detect", clean, tmp_path / "clean_rx.tif", "--score", "rx"))
    assert "highest scores" not in result.stderr
    # a scene of a few rows holds its highest scores in one by chance (review 3's F01)
    strip = write_raster(tmp_path / "strip.tif", cube[:, :1, :].repeat(3, axis=2))
    result = assert_ok(run_cli("detect", strip, tmp_path / "strip_rx.tif", "--score", "rx"))
    assert "highest scores" not in result.stderr
    # said once the heatmap is in place: made an error, it loses none (review 3's F02)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", hsanomaly.HsanomalyWarning)
        with pytest.raises(hsanomaly.HsanomalyWarning, match=r"highest scores lie in column 18"
                                                             r".*score again \(the heatmap is "
                                                             r"written\)$"):
            hsanomaly.detect(noisy, tmp_path / "kept.tif", score="rx")
    assert hsanomaly.info(tmp_path / "kept.tif")["score"] == "rx"   # and it is (faces F04)
    # a Detector's scores in memory are looked at too, with the remedy it takes (the faces
    # audit's F01, F02)
    with pytest.warns(hsanomaly.HsanomalyWarning) as said:
        with rasterio.open(noisy) as ds:
            hsanomaly.Detector("rx").fit_score(ds)
    assert [str(w.message) for w in said if "highest scores" in str(w.message)] == [
        f"{noisy}: 20 of its 20 highest scores lie in column 18 of 60: a detector artefact (a "
        "bad or noisy column, a stripe) ranked above the targets? Mask it (as a masked array "
        "or NaN) and score again"]


def test_a_warning_reaches_stderr_while_a_gdal_write_silences_it():
    """``native_quiet`` points descriptor 2 at /dev/null around GDAL's writes under the CLI;
    a warning said meanwhile, by that thread or another, went there too (a process of its
    own: descriptor 2 as the command line has it)."""
    import subprocess

    code = ("from hsanomaly.cli import _show_warning\n"
            "from hsanomaly.errors import HsanomalyWarning\n"
            "from hsanomaly.io import atomic\n"
            "from hsanomaly.logs import LOGGER, configure\n"
            "configure(0)\n"
            "with atomic.file_size_signal_ignored(), atomic.native_quiet():\n"
            "    _show_warning('said in a quiet block', HsanomalyWarning, 'f', 1)\n"
            "    LOGGER.info('a stage line, another thread\\'s in a run')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == ("Warning: said in a quiet block\n"
                                                    "a stage line, another thread's in a run\n")
