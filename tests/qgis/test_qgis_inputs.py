"""Inputs as hyperspectral products arrive: GDAL subdatasets and /vsizip/ paths reach the
library exactly as given; a layer picked in QGIS gives its source."""

import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest


class LibrarySpy(SimpleNamespace):
    """Stands in for hsanomaly.api: records the dataset names it is called with, then stops
    the run with a library error (whatever the function is called)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def call(src, dst, **options):
            from hsanomaly.errors import HsanomalyError

            self.calls.append(src)
            raise HsanomalyError("spy: stop")
        return call


def gdal_names(raster, tmp_path):
    """GDAL dataset names for the scene in several containers: {kind: name}."""
    names = {}
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(raster, "inside/scene.tif")
    names["vsizip"] = f"/vsizip/{archive}/inside/scene.tif"
    names["gtiff_dir"] = f"GTIFF_DIR:1:{raster}"
    try:
        from osgeo import gdal
    except ImportError:
        return names
    gdal.UseExceptions()
    netcdf = tmp_path / "scene.nc"
    if gdal.GetDriverByName("netCDF") is not None:
        gdal.Translate(str(netcdf), str(raster), format="netCDF")
        names["netcdf"] = f'NETCDF:"{netcdf}":Band1'
    if gdal.GetDriverByName("HDF5") is not None:
        import h5py
        import rasterio

        with rasterio.open(raster) as src, h5py.File(tmp_path / "scene.h5", "w") as h5:
            h5["radiance"] = src.read()
        names["hdf5"] = f'HDF5:"{tmp_path / "scene.h5"}"://radiance'
    return names


@pytest.mark.parametrize("kind", ["vsizip", "gtiff_dir", "netcdf", "hdf5"])
def test_dataset_names_reach_the_library_unchanged(scene, tmp_path, monkeypatch, kind):
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer

    names = gdal_names(scene[0], tmp_path)
    if kind not in names:
        pytest.skip(f"this GDAL cannot make a {kind} dataset")
    spy = LibrarySpy(calls=[])
    monkeypatch.setitem(sys.modules, "hsanomaly.api", spy)
    with pytest.raises(QgsProcessingException, match="spy: stop"):
        processing.run("hsanomaly:detect", {"INPUT": names[kind], "SCORE": "rx",
                                            "OUTPUT": str(tmp_path / "heat.tif")})
    assert spy.calls == [names[kind]]

    # the same dataset added to the project in QGIS (Add Raster Layer), then picked
    layer = QgsRasterLayer(names[kind], kind, "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    try:
        with pytest.raises(QgsProcessingException, match="spy: stop"):
            processing.run("hsanomaly:detect", {"INPUT": layer.id(), "SCORE": "rx",
                                                "OUTPUT": str(tmp_path / "heat.tif")})
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert spy.calls[1] == names[kind]


def test_train_inputs_and_mask_pass_through(scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    names = gdal_names(scene[0], tmp_path)
    monkeypatch.setattr(sys.modules["hsanomaly_qgis.dependencies"], "missing",
                        lambda *modules: [])            # torch not needed: a spy
    seen = {}

    def train(inputs, out, **options):
        from hsanomaly.errors import HsanomalyError

        seen.update(inputs=inputs, **{k: options[k] for k in TRAINING_FIELDS})
        raise HsanomalyError("spy: stop")

    monkeypatch.setattr("hsanomaly.api.train_bundle", train)
    with pytest.raises(QgsProcessingException, match="spy: stop"):
        processing.run("hsanomaly:train", {"INPUTS": [names["vsizip"], str(scene[0])],
                                           "MASK": names["gtiff_dir"].replace(
                                               str(scene[0]), str(scene[1])),
                                           "WHITEN": True, "WINDOW": 3, "BANDS": 6,
                                           "ITERATIONS": 5, "SEED": 7,
                                           "OUTPUT": str(tmp_path / "model")})
    # every field as set (a seed or band count dropped trained another model without a word)
    assert seen == {"inputs": [names["vsizip"], str(scene[0])],
                    "mask": f"GTIFF_DIR:1:{scene[1]}", "whiten": True, "window": 3, "bands": 6,
                    "iterations": 5, "seed": 7, "resume": False}


TRAINING_FIELDS = ("mask", "whiten", "window", "bands", "iterations", "seed", "resume")


@pytest.mark.parametrize("given, expected", [
    ({"INPUT": "{tmp}/missing.tif"}, "{tmp}/missing.tif: no such file or folder "
                                     "(Hyperspectral raster)"),
    ({"INPUT": "{tmp}/notes.txt"}, "{tmp}/notes.txt: not a raster QGIS can open "
                                   "(Hyperspectral raster)"),
    ({"SCORE": "nosuch"}, "'nosuch': not one of "),
    ({"TILE": -5}, "-5: Tile size must be at least "),
    ({"TILE": 64.5}, "64.5: Tile size must be a whole number"),    # was rounded (QGIS audit F8)
    # text QGIS takes for an optional number field though it reads no number: it ran as 0
    ({"THRESHOLD": "1092,5"}, "'1092,5': not a number (Polygon score threshold); write its "
                              "decimals after a point"),
    ({"NEIGHBOUR_WEIGHT": "abc"}, "'abc': not a number (Neighbour weight"),
    ({"THRESHOLD": "1_000"}, "'1_000': not a number (Polygon score threshold)"),  # float() reads
    ({"THRESHOLD": "\u0661\u0662"}, "'\u0661\u0662': not a number"),            # them, QGIS not
    ({"SEED": "7,0"}, "'7,0': not a number (Random seed"),
])
def test_a_value_qgis_cannot_take_is_named_in_one_line_before_the_library(scene, tmp_path,
                                                                          given, expected):
    """Not QGIS's "Could not load source layer for INPUT: ... not found" for a file that is
    there, nor "Incorrect parameter value for TILE"."""
    import processing
    from qgis.core import QgsProcessingException

    (tmp_path / "notes.txt").write_text("not a raster")
    params = {"INPUT": str(scene[0]), "SCORE": "rx", "OUTPUT": str(tmp_path / "h.tif")}
    params.update({k: v.format(tmp=tmp_path) if isinstance(v, str) else v
                   for k, v in given.items()})
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:detect", params)
    assert str(err.value).splitlines()[-1].startswith(expected.format(tmp=tmp_path))
    assert not (tmp_path / "h.tif").exists()


@pytest.mark.parametrize("given, expected", [
    ({"WINDOW": 1.5}, "1.5: Window size must be a whole number"),    # trained as 2, said "got 2"
    ({"SEED": -1}, "-1: Random seed must be at least 0"),            # the library's refusal
    ({"SEED": 3 * 10**9}, "3000000000: Random seed must be at most 2147483647"),   # wrapped to 0
])
def test_trains_number_fields_are_checked_as_the_library_would(scene, tmp_path, given, expected):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:train", {"INPUTS": [str(scene[0])], "ITERATIONS": 1,
                                           "OUTPUT": str(tmp_path / "model"), **given})
    assert str(err.value).splitlines()[-1].startswith(expected)
    assert not (tmp_path / "model").exists()


def test_the_librarys_messages_name_the_dialogs_fields_not_the_command_line_options(scene,
                                                                                     tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "rx",
                                            "MODEL": str(model),
                                            "OUTPUT": str(tmp_path / "h.tif")})
    assert str(err.value).startswith("'Model bundle folder': score 'rx' takes no model")
    with pytest.raises(QgsProcessingException) as err:
        processing.run("hsanomaly:detect", {"INPUT": str(scene[0]), "SCORE": "mlrx",
                                            "PURGE": 0.7, "OUTPUT": str(tmp_path / "h.tif")})
    assert "'Purge' must lie in [0, 0.5)" in str(err.value) and "--" not in str(err.value)


def test_a_project_layer_gives_its_source(scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(str(scene[0]), "my scene")
    QgsProject.instance().addMapLayer(layer)
    spy = LibrarySpy(calls=[])
    monkeypatch.setitem(sys.modules, "hsanomaly.api", spy)
    try:
        for value in (layer.id(), "my scene", layer):
            with pytest.raises(QgsProcessingException, match="spy: stop"):
                processing.run("hsanomaly:detect", {"INPUT": value, "SCORE": "rx",
                                                    "OUTPUT": str(tmp_path / "heat.tif")})
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert spy.calls == [str(scene[0])] * 3


def test_vsizip_scene_detects_like_the_file(scene, tmp_path):
    import processing
    import rasterio

    names = gdal_names(scene[0], tmp_path)
    heat = {}
    for kind, name in (("file", str(scene[0])), ("vsizip", names["vsizip"])):
        out = tmp_path / f"{kind}.tif"
        processing.run("hsanomaly:detect", {"INPUT": name, "SCORE": "rx", "TILE": 16,
                                            "OUTPUT": str(out)})
        with rasterio.open(out) as ds:
            heat[kind] = ds.read(1)
    np.testing.assert_array_equal(heat["vsizip"], heat["file"])


def test_a_layer_that_is_no_raster_file_is_named_as_such(scene, tmp_path):
    """A vector layer's id was "no such file or folder"; a web raster layer's source
    ("type=xyz&url=...") reached the library as a file name: "file not found"."""
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer, QgsVectorLayer

    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    tiles = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0",
                           "tiles", "wms")
    QgsProject.instance().addMapLayers([vector, tiles])
    try:
        for value, expected in ((vector.id(), "points: a vector layer, not a raster"),
                                (tiles.id(), "tiles: a wms layer, not a raster file; save it as "
                                             "a GeoTIFF first"),
                                (tiles, "tiles: a wms layer, not a raster file")):
            with pytest.raises(QgsProcessingException) as err:
                processing.run("hsanomaly:detect", {"INPUT": value, "SCORE": "rx",
                                                    "OUTPUT": str(tmp_path / "h.tif")})
            assert str(err.value).splitlines()[-1].startswith(expected), str(err.value)
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert not (tmp_path / "h.tif").exists()
    # Train's several rasters given as layer objects (from a script or a model)
    good = QgsRasterLayer(str(scene[0]), "scene")
    web = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0",
                         "web", "wms")
    QgsProject.instance().addMapLayers([good, web])       # the project owns them, as QGIS's
    try:
        with pytest.raises(QgsProcessingException) as err:
            processing.run("hsanomaly:train", {"INPUTS": [good, web], "ITERATIONS": 1,
                                               "OUTPUT": str(tmp_path / "model")})
        assert str(err.value).splitlines()[-1].startswith("web: a wms layer, not a raster "
                                                          "file"), str(err.value)
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert not (tmp_path / "model").exists()


def test_gdal_names_where_the_library_cannot_load_leave_the_answer_to_the_run(plugin, monkeypatch):
    """Installed but broken (a dependency missing), the library's import in the dialog's
    check raised a traceback instead of the install hint the run gives."""
    base = sys.modules["hsanomaly_qgis.algorithms.base"]
    assert base.gdal_names(["/vsizip/a.zip/x.tif"]) == ["/vsizip/a.zip/x.tif"]
    monkeypatch.setitem(sys.modules, "hsanomaly.io.gdal", None)     # import fails
    assert base.gdal_names(["/vsizip/a.zip/x.tif"]) == []
