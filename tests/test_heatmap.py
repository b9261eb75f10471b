"""Heatmaps describe themselves: tags, band descriptions, statistics, overviews, COG, GCPs,
geolocation arrays."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rasterio.vrt import WarpedVRT

import hsanomaly
from hsanomaly.errors import ignoring
from hsanomaly.io.heatmap import overview_factors, score_description
from hsanomaly.scorers import SCORES, scorer_class

from synthetic import synthetic_cube, write_raster


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hsanomaly.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", SCORES)
def test_every_score_says_what_it_measures_in_its_band_description(name):
    scorer = scorer_class(name)
    assert scorer.meaning
    assert score_description(scorer) == f"{name} anomaly score ({scorer.meaning}; high = anomalous)"


def test_tags_name_the_score_every_parameter_and_the_input(synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    out = tmp_path / "heat.tif"
    assert cli("detect", path, out, "--score", "lrx", "--outer", 7, "--guard", 3, "--tile", 32,
               "-q").returncode == 0
    with rasterio.open(out) as ds:
        tags = ds.tags()
        assert tags["HSANOMALY_SCORE"] == "lrx" and tags["HSANOMALY_INPUT"] == "scene.tif"
        assert tags["HSANOMALY_TILE"] == "32" and "HSANOMALY_MASK" not in tags
        assert json.loads(tags["HSANOMALY_PARAMETERS"]) == {"name": "lrx", "outer": 7, "guard": 3,
                                                            "pca": 10}
        assert tags["HSANOMALY_VERSION"] == hsanomaly.__version__
        assert ds.descriptions[0] == ("lrx anomaly score (local RX: squared Mahalanobis distance "
                                      "to the surrounding ring, scaled to its size; high = "
                                      "anomalous)")
        stats = ds.tags(1)
        values = ds.read(1)
        assert float(stats["STATISTICS_MAXIMUM"]) == pytest.approx(np.nanmax(values), rel=1e-6)
        assert float(stats["STATISTICS_MEAN"]) == pytest.approx(np.nanmean(values), rel=1e-5)
        assert float(stats["STATISTICS_MINIMUM"]) == pytest.approx(np.nanmin(values), rel=1e-6)
        assert float(stats["STATISTICS_STDDEV"]) == pytest.approx(np.nanstd(values), rel=1e-4)
        assert float(stats["STATISTICS_VALID_PERCENT"]) == pytest.approx(
            100 * np.isfinite(values).mean(), abs=0.01)            # the nodata corner


def test_overviews_average_the_scores(tmp_path):
    """A viewer zoomed out reads the overviews: each pixel there is the mean of the scores it
    covers (nearest-neighbour picking would drop most small targets from view)."""
    cube, _ = synthetic_cube(bands=4, rows=600, cols=520, targets=())
    src = write_raster(tmp_path / "scene.tif", cube)
    out = tmp_path / "heat.tif"
    hsanomaly.detect(src, out, score="rx")
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4]
        full = ds.read(1).astype(np.float64)
        half = ds.read(1, out_shape=(300, 260)).astype(np.float64)
    means = full.reshape(300, 2, 260, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(half, means, rtol=1e-4)
    # whatever the user's GDAL settings: JPEG overviews of floats were left empty (all NaN
    # zoomed out), others changed the bytes, TIFF_USE_OVR put them in a .ovr thrown away
    # (the GDAL settings audit's F01, F02)
    import hashlib

    from rasterio.env import get_gdal_config, set_gdal_config

    for cog in (False, True):
        made = {}
        for setting in ({}, {"COMPRESS_OVERVIEW": "JPEG"}, {"ZLEVEL_OVERVIEW": "1",
                                                            "GDAL_TIFF_OVR_BLOCKSIZE": "64",
                                                            "TIFF_USE_OVR": "YES"},
                        {"USE_RRD": "YES"}):
            made[str(setting)] = out = tmp_path / f"heat{len(made)}{cog}.tif"
            with pytest.MonkeyPatch.context() as env:
                for key, value in setting.items():
                    env.setenv(key, value)
                hsanomaly.detect(src, out, score="rx", cog=cog)
            with rasterio.open(out) as ds:
                assert ds.overviews(1) == [2, 4] and not os.path.exists(f"{out}.ovr")
                np.testing.assert_allclose(ds.read(1, out_shape=(300, 260)), half, rtol=1e-4)
        assert len({hashlib.sha256(path.read_bytes()).digest() for path in made.values()}) == 1
    # and a caller's own setting is its own again after the run (review 2's F01), one the
    # environment gave is left to it, and none is left behind
    from rasterio._env import del_gdal_config

    assert [get_gdal_config(key, normalize=False) for key in ("TIFF_USE_OVR", "USE_RRD",
                                                              "COMPRESS_OVERVIEW")] == [None] * 3
    set_gdal_config("COMPRESS_OVERVIEW", "LZW")
    try:
        hsanomaly.detect(src, tmp_path / "lzw.tif", score="rx")
        assert get_gdal_config("COMPRESS_OVERVIEW") == "LZW"
        assert (tmp_path / "lzw.tif").read_bytes() == (tmp_path / "heat0False.tif").read_bytes()
    finally:
        del_gdal_config("COMPRESS_OVERVIEW")


@pytest.mark.train
def test_model_scores_record_the_bundle_digest_and_band_meanings(tmp_path):
    import hashlib

    pytest.importorskip("torch")
    cube, _ = synthetic_cube(rows=24, cols=24, targets=((5, 5),))
    path = write_raster(tmp_path / "scene.tif", cube)
    bundle = hsanomaly.train(path, tmp_path / "model", iterations=3)
    out, recon = tmp_path / "heat.tif", tmp_path / "recon.tif"
    result = cli("detect", path, out, "--score", "recon", "--model", bundle.path, "--codebook", 64,
                 "--recon-out", recon, "-q")
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as ds:
        tags = ds.tags()
        params = json.loads(tags["HSANOMALY_PARAMETERS"])
        assert tags["HSANOMALY_MODEL_DIGEST"] == params["model"] and len(params["model"]) == 16
        assert tags["HSANOMALY_MODEL_FINGERPRINT"] == bundle.meta["fingerprint"]
        assert params["codebook"] == 64 and ds.descriptions[0].startswith("recon anomaly score")
        versions = json.loads(tags["HSANOMALY_VERSIONS"])       # the provenance audit's F06
    import onnxruntime

    assert versions["onnxruntime"] == onnxruntime.__version__ and versions["device"] == "cpu"
    with rasterio.open(recon) as ds:
        assert ds.descriptions[0].startswith("G(z*) band 1 (input band")
        # an extra of several bands: its digest runs band by band, row by row
        assert ds.tags()["HSANOMALY_PIXELS"] == "sha256:" + hashlib.sha256(
            ds.read().astype("<f4").tobytes()).hexdigest()


def envi_without_bands_2_and_5(path, cube):
    """An ENVI file of ``cube`` (8 bands, 24 x 24) whose header's bbl marks bands 2 and 5 bad."""
    path.write_bytes(cube.astype("<f4").tobytes())
    path.with_suffix(".hdr").write_text(
        "ENVI\nsamples = 24\nlines = 24\nbands = 8\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n"
        "bbl = {1, 0, 1, 1, 0, 1, 1, 1}\n")


@pytest.mark.train
def test_recon_bands_name_the_input_files_band_numbers_past_left_out_bands(tmp_path):
    """An ENVI bad band list leaves bands 2 and 5 out: recon band 2 reconstructs file band 3."""
    pytest.importorskip("torch")
    cube, _ = synthetic_cube(bands=8, rows=24, cols=24, targets=((5, 5),))
    envi_without_bands_2_and_5(tmp_path / "s.img", cube)
    bundle = hsanomaly.train(tmp_path / "s.img", tmp_path / "model", iterations=3)
    hsanomaly.detect(tmp_path / "s.img", tmp_path / "heat.tif", score="recon", model=bundle.path,
                     extras={"recon": tmp_path / "recon.tif"})
    with rasterio.open(tmp_path / "recon.tif") as ds:
        named = [re.search(r"\(input bands? ([0-9-]+)\)", text).group(1)
                 for text in ds.descriptions]
    assert named == ["1", "3", "4", "6", "7", "8"]


def test_the_bands_an_envi_bad_band_list_leaves_out_are_said_and_recorded(tmp_path):
    """A heatmap of 6 of a raster's 8 bands was told from one of all 8 by nothing: not the
    run's line, not its tags, not ``info`` (the sensor audit). A raster read whole says none."""
    from hsanomaly.records import info

    cube, _ = synthetic_cube(bands=8, rows=24, cols=24, targets=((5, 5),))
    envi_without_bands_2_and_5(tmp_path / "s.img", cube)
    said = "of its 8 bands, 2 marked bad in the ENVI header's bbl left out"
    result = hsanomaly.detect(tmp_path / "s.img", tmp_path / "heat.tif", score="rx")
    assert result.bands_left_out == said and result.text().endswith(f"nodata; {said}")
    assert info(tmp_path / "heat.tif")["bands_left_out"] == said
    whole = write_raster(tmp_path / "whole.tif", cube)
    result = hsanomaly.detect(whole, tmp_path / "whole_rx.tif", score="rx")
    assert result.bands_left_out is None and result.text().endswith(" nodata")
    assert "bands_left_out" not in info(tmp_path / "whole_rx.tif")


def test_binned_recon_bands_name_no_band_that_was_left_out():
    """A bin of file bands 1 and 3 (band 2 left out) was "input bands 1-3"."""
    from hsanomaly.preprocess import Preprocessor
    from hsanomaly.scorers.gan import _input_bands

    binned = Preprocessor(n_bands=3).fit(np.random.default_rng(0).random((50, 6)))
    assert _input_bands(binned, [1, 3, 4, 6, 7, 8]) == ["input bands 1, 3", "input bands 4, 6",
                                                        "input bands 7-8"]


def is_cog(path):
    """True when GDAL reads ``path`` as a Cloud-Optimized GeoTIFF with overviews."""
    with rasterio.open(path) as ds:
        return (ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                and bool(ds.overviews(1)) and ds.profile.get("tiled", False))


def test_a_cogs_failed_write_names_the_output(tmp_path, example_scene):
    """Under a file-size limit the message named GDAL's intermediate, heat.tif.gtiff, which
    the user never sees."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (30 * 2**10, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "hsanomaly", "detect", str(example_scene[0]),
                           "heat.tif", "--score", "rx", "--tile", "32", "--cog", "-q"],
                          cwd=tmp_path, preexec_fn=limited, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "gtiff" not in done.stderr and "hsanomaly-tmp" not in \
        done.stderr
    assert done.stderr.startswith(f"Error: {tmp_path / 'heat.tif'}: "), done.stderr


def test_cog_output_is_a_valid_cloud_optimized_geotiff_with_overviews(tmp_path):
    cube, _ = synthetic_cube(bands=4, rows=600, cols=520, targets=((100, 100),))
    path = write_raster(tmp_path / "scene.tif", cube)
    out = tmp_path / "heat.tif"
    assert cli("detect", path, out, "--score", "rx", "--cog", "-q").returncode == 0
    assert is_cog(out)
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4] and ds.profile["blockxsize"] == 256
        assert ds.tags()["HSANOMALY_SCORE"] == "rx" and "STATISTICS_MEAN" in ds.tags(1)
        assert ds.crs == "EPSG:32633"
    plain = tmp_path / "plain.tif"
    assert cli("detect", path, plain, "--score", "rx", "-q").returncode == 0
    assert not is_cog(plain)
    with rasterio.open(plain) as a, rasterio.open(out) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert a.overviews(1) == [2, 4]                 # internal overviews either way


def test_gcps_of_the_input_are_kept(tmp_path):
    cube, _ = synthetic_cube(bands=3, rows=20, cols=30)
    gcps = [GroundControlPoint(0, 0, 10.0, 60.0), GroundControlPoint(0, 30, 10.3, 60.0),
            GroundControlPoint(20, 0, 10.0, 59.8)]
    path = tmp_path / "gcps.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=3, height=20, width=30,
                       gcps=gcps, crs="EPSG:4326") as ds:
        ds.write(cube)
    out = tmp_path / "heat.tif"
    result = cli("detect", path, out, "--score", "rx", "--polygons", tmp_path / "t.gpkg",
                 "--far", "0.01", "-q")
    assert result.returncode == 0
    with rasterio.open(out) as ds:
        kept, crs = ds.gcps
        assert len(kept) == 3 and crs == "EPSG:4326"
    # the polygons cannot follow GCPs: said, not left for the user to find on the map
    assert "ground control points" in result.stderr and "pixel coordinates" in result.stderr


def test_rpcs_of_the_input_are_kept(tmp_path):
    """A scene placed by rational polynomial coefficients (a satellite's level-1 product): the
    heatmap keeps them, so GDAL and QGIS place it as they place the scene."""
    from rasterio.rpc import RPC

    cube, _ = synthetic_cube(bands=3, rows=20, cols=30)
    rpcs = RPC(height_off=0, height_scale=1, lat_off=45, lat_scale=1,
               line_den_coeff=[1] + [0] * 19, line_num_coeff=[0, 1] + [0] * 18, line_off=0,
               line_scale=1, long_off=10, long_scale=1, samp_den_coeff=[1] + [0] * 19,
               samp_num_coeff=[0, 0, 1] + [0] * 17, samp_off=0, samp_scale=1)
    path = tmp_path / "rpcs.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=3, height=20,
                       width=30) as ds:
        ds.write(cube)
        ds.rpcs = rpcs
    hsanomaly.detect(path, tmp_path / "heat.tif", score="rx")
    with rasterio.open(tmp_path / "heat.tif") as ds:
        kept = ds.rpcs.to_dict()
    # GDAL writes its "unknown" (-1) for the error terms left out
    assert {k: v for k, v in kept.items() if not k.startswith("err_")} == \
        {k: v for k, v in rpcs.to_dict().items() if not k.startswith("err_")}


def test_geolocation_arrays_of_a_swath_are_kept(tmp_path, monkeypatch):
    """A swath placed by 2-D longitudes and latitudes (GDAL's GEOLOCATION metadata, as netCDF
    and HDF5 products carry them) gave a heatmap placed nowhere, and polygons in pixel
    coordinates without a word."""
    monkeypatch.chdir(tmp_path)
    cube, _ = synthetic_cube(bands=3, rows=20, cols=30)
    rows, cols = np.mgrid[0:20, 0:30].astype(np.float32)
    for name, values in (("lon.tif", 10 + 2e-4 * cols + 3e-5 * rows),
                         ("lat.tif", 60 - 1e-4 * rows + 2e-5 * cols)):
        with rasterio.open(name, "w", driver="GTiff", dtype="float32", count=1, height=20,
                           width=30) as ds:
            ds.write(values, 1)
    placed = dict(X_DATASET="lon.tif", X_BAND="1", Y_DATASET="lat.tif", Y_BAND="1",
                  PIXEL_OFFSET="0", PIXEL_STEP="1", LINE_OFFSET="0", LINE_STEP="1",
                  SRS="EPSG:4326", GEOREFERENCING_CONVENTION="PIXEL_CENTER")
    with rasterio.open("swath.tif", "w", driver="GTiff", dtype="float32", count=3, height=20,
                       width=30) as ds:
        ds.write(cube)
        ds.update_tags(ns="GEOLOCATION", **placed)
    (tmp_path / "out").mkdir()
    result = cli("detect", "swath.tif", "out/heat.tif", "--score", "rx", "--polygons",
                 "out/t.gpkg", "--far", "0.01", "--png", "out/heat.png", "-q")
    assert result.returncode == 0, result.stderr
    with rasterio.open("out/heat.tif") as ds:
        kept = ds.tags(ns="GEOLOCATION")
    # the arrays are named so that they are found from the heatmap's folder too
    folder = os.path.realpath(tmp_path)
    assert kept == {**placed, "X_DATASET": os.path.join(folder, "lon.tif"),
                    "Y_DATASET": os.path.join(folder, "lat.tif")}
    # polygons and the quick look cannot follow them: said
    assert "placed on the map by geolocation arrays, which polygons do not follow" in \
        result.stderr
    assert "heat.png: the heatmap is placed on the map by geolocation arrays, which a PNG " \
        "cannot carry" in result.stderr
    # nor can GDAL's COG driver: said before the work
    result = cli("detect", "swath.tif", "out/cog.tif", "--score", "rx", "--cog", "-q")
    assert result.returncode == 0, result.stderr
    assert "COG driver does not keep the input's geolocation arrays" in result.stderr
    # arrays named beside the input (GDAL's *_RELATIVE_TO_SOURCE), run from elsewhere: they
    # were named from the working directory, where another scene's lon.tif placed it wrongly
    (tmp_path / "data").mkdir()
    for name in ("lon.tif", "lat.tif", "swath.tif"):
        os.rename(name, os.path.join("data", name))
    with rasterio.open("data/swath.tif", "r+") as ds:
        ds.update_tags(ns="GEOLOCATION", X_DATASET_RELATIVE_TO_SOURCE="YES",
                       Y_DATASET_RELATIVE_TO_SOURCE="YES")
    assert cli("detect", "data/swath.tif", "out/elsewhere.tif", "--score", "rx", "-q",
               "--overwrite").returncode == 0
    with rasterio.open("out/elsewhere.tif") as ds:
        kept = ds.tags(ns="GEOLOCATION")
    # outside the arrays' folder, by absolute name: moved on its own, it stays placed (a
    # relative name up from it could name another scene's arrays there)
    assert kept["X_DATASET"] == os.path.join(folder, "data", "lon.tif")
    assert "X_DATASET_RELATIVE_TO_SOURCE" not in kept
    # above them, beside the data, named relative to the heatmap: it named the input's
    # absolute folder, and a project copied or moved elsewhere left its heatmaps placed on
    # the old folder's arrays, or nowhere
    assert cli("detect", "data/swath.tif", "beside.tif", "--score", "rx", "-q").returncode == 0
    with rasterio.open("beside.tif") as ds:
        kept = ds.tags(ns="GEOLOCATION")
    assert (kept["X_DATASET"], kept["Y_DATASET"]) == ("data/lon.tif", "data/lat.tif")
    assert kept["X_DATASET_RELATIVE_TO_SOURCE"] == kept["Y_DATASET_RELATIVE_TO_SOURCE"] == "YES"
    shutil.copytree("data", "copy/data")
    shutil.copy("beside.tif", "copy/beside.tif")
    with rasterio.open("copy/data/lon.tif", "r+") as ds:    # the copy's arrays lie 1° east
        ds.write(ds.read(1) + 1, 1)

    def bounds(path):                         # where GDAL places the heatmap (its warper)
        with ignoring(NotGeoreferencedWarning), rasterio.open(path) as ds, \
                WarpedVRT(ds, crs="EPSG:4326") as placed:
            return np.array(placed.bounds)

    np.testing.assert_allclose(bounds("copy/beside.tif"), bounds("beside.tif") + [1, 0, 1, 0],
                               atol=1e-9)
    # arrays that are not there place nothing: said, and not written
    os.remove("data/lat.tif")
    result = cli("detect", "data/swath.tif", "out/lost.tif", "--score", "rx", "-q")
    assert result.returncode == 0, result.stderr
    assert "data/swath.tif: its geolocation arrays (" + os.path.join(folder, "data", "lat.tif") \
        + ") are not found, so its outputs are not placed on the map" in result.stderr
    with rasterio.open("out/lost.tif") as ds:
        assert not ds.tags(ns="GEOLOCATION")


def test_a_subdatasets_heatmap_records_its_file_and_variable(tmp_path):
    """HSANOMALY_INPUT of HDF5:"scene.h5"://reflectance was 'reflectance', of a netCDF
    variable 'scene.nc":reflectance'; results recorded so are still taken as this input's."""
    import h5py

    cube, _ = synthetic_cube(bands=4, rows=20, cols=30)
    with h5py.File(tmp_path / "scene.h5", "w") as f:
        f["reflectance"] = cube
    name, out = f'HDF5:"{tmp_path / "scene.h5"}"://reflectance', tmp_path / "heat.tif"
    hsanomaly.detect(name, out, score="rx")
    with rasterio.open(out) as ds:
        assert ds.tags()["HSANOMALY_INPUT"] == "scene.h5:reflectance"
    with rasterio.open(out, "r+") as ds:
        ds.update_tags(HSANOMALY_INPUT="reflectance")     # as written before
    hsanomaly.detect(name, out, score="rx")               # its own result: replaced
    with rasterio.open(out) as ds:
        assert ds.tags()["HSANOMALY_INPUT"] == "scene.h5:reflectance"
    with rasterio.open(out, "r+") as ds:
        ds.update_tags(HSANOMALY_INPUT="other.h5:reflectance")
    with pytest.raises(hsanomaly.HsanomalyError, match="other.h5:reflectance"):
        hsanomaly.detect(name, out, score="rx")


def test_overview_levels_stop_below_one_block():
    assert overview_factors(100, 100) == [] and overview_factors(600, 520) == [2, 4]
    assert overview_factors(4096, 3000) == [2, 4, 8, 16]
    # a pushbroom swath: by its longer side, as GDAL's COG driver (the shorter gave none)
    assert overview_factors(255, 60000) == [2, 4, 8, 16, 32, 64, 128, 256]


def test_the_parameters_tag_holds_the_options_that_are_off(synthetic_raster, tmp_path):
    """Options at 0 were left out of HSANOMALY_PARAMETERS, so a heatmap did not say whether a
    run had them off or was made by a version whose defaults were otherwise."""
    path, _, _ = synthetic_raster
    tags = {}
    for name, extra in (("default", []), ("on", ["--purge", 0.05, "--neighbour-weight", 0.5])):
        out = tmp_path / f"{name}.tif"
        assert cli("detect", path, out, "--score", "mlrx", "--rings", "5/3;7/3", *extra,
                   "-q").returncode == 0
        with rasterio.open(out) as ds:
            tags[name] = json.loads(ds.tags()["HSANOMALY_PARAMETERS"])
    default = hsanomaly.scorers.scorer_class("mlrx")()
    assert (tags["default"]["purge"], tags["default"]["neighbour_weight"]) == \
        (default.purge, default.neighbour_weight) == (0, 0)
    assert (tags["on"]["purge"], tags["on"]["neighbour_weight"]) == (0.05, 0.5)
    assert tags["on"]["top_rings"] == tags["default"]["top_rings"] == 0


@pytest.mark.parametrize("cog", [False, True])
def test_a_pixel_is_point_inputs_heatmap_is_pixel_is_point(tmp_path, cog):
    """It was written pixel-is-area: GDAL placed both alike, but a reader of the raw tie
    point (GTIFF_POINT_GEO_IGNORE, libgeotiff's tools) saw them half a pixel apart."""
    import hsanomaly
    from synthetic import synthetic_cube, write_raster

    src = write_raster(tmp_path / "point.tif", synthetic_cube()[0])
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(AREA_OR_POINT="Point")
    heat = tmp_path / "heat.tif"
    hsanomaly.detect(src, heat, score="rx", cog=cog)
    for ignore in (False, True):
        with rasterio.Env(GTIFF_POINT_GEO_IGNORE=ignore):
            with rasterio.open(src) as a, rasterio.open(heat) as b:
                assert b.tags()["AREA_OR_POINT"] == "Point" and a.transform == b.transform
    plain = write_raster(tmp_path / "area.tif", synthetic_cube()[0])
    hsanomaly.detect(plain, tmp_path / "area-heat.tif", score="rx", cog=cog)
    with rasterio.open(tmp_path / "area-heat.tif") as ds:
        assert ds.tags().get("AREA_OR_POINT", "Area") == "Area"


def test_a_heatmap_cut_short_before_its_png_is_drawn_is_said_of_the_output(tmp_path,
                                                                           example_scene):
    """Under a file-size limit with --png, the PNG was drawn from the staged heatmap before
    the commit read it back: the error named the private temporary as "not a raster GDAL can
    read", without the limit or "nothing was replaced"."""
    import resource

    from rasterio.windows import Window

    with rasterio.open(example_scene[0]) as ds:       # a heatmap of about 15 KiB, its tile
        cube = ds.read(window=Window(0, 0, 60, 60))   # in the store less than 14 KiB
    write_raster(tmp_path / "scene.tif", cube)

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (14 * 2**10, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "hsanomaly", "detect", "scene.tif",
                           "heat.tif", "--score", "rx", "--png", "heat.png"],
                          cwd=tmp_path, preexec_fn=limited, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "hsanomaly-tmp" not in done.stderr
    assert done.stderr.startswith("Error: heat.tif: "), done.stderr
    assert done.stderr.rstrip().endswith("(ulimit -f); nothing was replaced"), done.stderr


def test_a_copy_of_a_heatmap_cut_or_rescaled_since_is_told_from_it(tmp_path):
    """A copy GDAL cut or rescaled keeps the tags that describe the run: ``info`` reported a
    50x50 cut as the 100x100 heatmap, and evaluate attributed a Byte copy's AUC (0.8410) to
    the run, whose own is 0.8404 (the provenance audit's F03). The heatmap records its grid
    and a digest of its pixels, which anyone can take again; a plain or COG copy is the
    heatmap as written."""
    import hashlib
    import warnings

    from hsanomaly.records import info

    cube, truth = synthetic_cube(rows=40, cols=50)
    heat = tmp_path / "heat.tif"
    hsanomaly.detect(write_raster(tmp_path / "s.tif", cube), heat, score="rx")
    with rasterio.open(heat) as ds:
        pixels, profile, tags = ds.read(), ds.profile, ds.tags()
    assert tags["HSANOMALY_PIXELS"] == "sha256:" + hashlib.sha256(
        pixels.astype("<f4").tobytes()).hexdigest()
    assert "copy" not in info(heat)
    import sklearn

    assert json.loads(tags["HSANOMALY_VERSIONS"]) == {         # the provenance audit's F06
        "numpy": np.__version__, "scikit-learn": sklearn.__version__, "gdal":
        rasterio.__gdal_version__, "rasterio": rasterio.__version__}
    cog = tmp_path / "cog.tif"
    with rasterio.open(cog, "w", **{**profile, "driver": "COG"}) as ds:
        ds.write(pixels)
        ds.update_tags(**tags)
    assert "copy" not in info(cog)
    cut = tmp_path / "cut.tif"
    with rasterio.open(cut, "w", **{**profile, "width": 20, "height": 10}) as ds:
        ds.write(pixels[:, :10, :20])
        ds.update_tags(**tags)
    assert info(cut)["copy"] == ("cut, resampled or warped (20x10 pixels) from the heatmap its "
                                 "record describes (50x40)")
    scaled = tmp_path / "scaled.tif"
    with rasterio.open(scaled, "w", **profile) as ds:
        ds.write(np.round(pixels * 10) / 10)
        ds.update_tags(**tags)
    said = ("its pixels changed since they were written (rescaled, converted to other values "
            "or edited): its record describes the heatmap it was copied from")
    assert info(scaled)["copy"] == said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = hsanomaly.evaluate(scaled, truth)
    assert report["provenance"]["heatmap_copy"] == said
    assert f"{scaled}: {said}; the report's provenance says so" in \
        [str(w.message) for w in caught]
    assert hsanomaly.evaluate(heat, truth)["provenance"]["heatmap_copy"] is None
