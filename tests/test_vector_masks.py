"""Vector masks (io.vector): features burnt onto a raster's grid give the mask a truth raster
would, through read_truth, evaluate (truth and outer mask) and training's exclusion masks."""

import json
import warnings

import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.io import read_truth
from hsanomaly.io.vector import is_vector, split_layer

from synthetic import CRS, TRANSFORM, synthetic_cube, write_raster

gpd = pytest.importorskip("geopandas")
SIZE = TRANSFORM.a                                  # metres a pixel


def place(col, row):
    """Map coordinates of a (fractional) pixel position."""
    return TRANSFORM.c + TRANSFORM.a * col, TRANSFORM.f + TRANSFORM.e * row


def pixel_box(row0, col0, row1, col1):
    """The polygon of pixels [row0, row1) x [col0, col1), by their edges."""
    (x0, y0), (x1, y1) = place(col0, row0), place(col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def pixel_centre(row, col):
    return shapely.Point(place(col + 0.5, row + 0.5))


def write_layer(path, geometries, crs=CRS, layer=None):
    gpd.GeoDataFrame({"id": range(len(geometries))}, geometry=list(geometries),
                     crs=crs).to_file(path, layer=layer)
    return path


@pytest.fixture
def grid(tmp_path):
    """A 12-band 40x50 raster on the synthetic grid, and the truth of its two 2x2 targets."""
    cube, truth = synthetic_cube()
    scene = write_raster(tmp_path / "scene.tif", cube)
    return scene, truth


def test_polygons_by_pixel_edges_give_the_truth_raster(grid, tmp_path):
    scene, truth = grid
    layer = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)])
    mask, known = read_truth(layer, shape=truth.shape, grid_of=scene)
    assert known is None and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, truth)


def test_the_memory_to_burn_features_is_checked_first(grid, tmp_path, monkeypatch):
    """Features are burnt onto the whole grid at once: a huge raster's ran out of memory in
    the middle (a bare MemoryError, or the OOM killer)."""
    import hsanomaly.io.checks

    scene, truth = grid
    layer = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12)])
    monkeypatch.setattr(hsanomaly.io.checks, "available_memory", lambda: 10_000)
    with pytest.raises(HsanomalyError, match=r"t.gpkg: burning its features onto the 40x50 grid "
                                             r"of .*scene.tif needs about 15.6 KiB of memory"):
        read_truth(layer, shape=truth.shape, grid_of=scene)


def test_features_in_another_crs_are_reprojected(grid, tmp_path):
    """GeoJSON is lon/lat: the same polygons, reprojected there and back, cover the same centres."""
    scene, truth = grid
    frame = gpd.GeoDataFrame(geometry=[pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)],
                             crs=CRS).to_crs(4326)
    frame.to_file(tmp_path / "t.geojson")
    np.testing.assert_array_equal(read_truth(tmp_path / "t.geojson", grid_of=scene)[0], truth)


def test_points_lines_and_polygons_smaller_than_a_pixel_keep_their_pixels(grid, tmp_path):
    scene, _ = grid
    tiny = pixel_centre(5, 5).buffer(0.2 * SIZE)          # holds no pixel centre
    off_centre = shapely.Point(place(20.9, 7.1))   # row 7, col 20
    line = shapely.LineString([place(30.5, 20.5), place(33.5, 20.5)])
    mask, _ = read_truth(write_layer(tmp_path / "m.gpkg", [tiny, off_centre, line]), grid_of=scene)
    expected = np.zeros((40, 50), np.uint8)
    expected[5, 5] = expected[7, 20] = 1
    expected[20, 30:34] = 1
    np.testing.assert_array_equal(mask, expected)


def test_a_polygon_another_covers_is_not_spread_to_the_pixels_it_touches(grid, tmp_path):
    """The burn by pixel centre keeps one id per pixel: a polygon hidden under a larger one
    is burnt again alone, by centre, not by every pixel it touches."""
    scene, _ = grid
    inner = pixel_box(9, 9, 13, 13).buffer(0.2 * SIZE)   # 4x4 centres, touches 6x6 pixels
    outer = pixel_box(9, 9, 13, 13).buffer(0.3 * SIZE)   # the same centres
    mask, _ = read_truth(write_layer(tmp_path / "m.gpkg", [inner, outer]), grid_of=scene)
    expected = np.zeros((40, 50), np.uint8)
    expected[9:13, 9:13] = 1
    np.testing.assert_array_equal(mask, expected)


def test_a_layer_is_named_as_qgis_names_it(grid, tmp_path):
    scene, truth = grid
    path = tmp_path / "two.gpkg"
    write_layer(path, [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)], layer="truth")
    write_layer(path, [pixel_box(0, 0, 5, 5)], layer="other")
    with pytest.raises(HsanomalyError, match=r"has 2 layers \(truth, other\); name one as "
                                             r"'.*two.gpkg\|layername=NAME'"):
        read_truth(path, grid_of=scene)
    np.testing.assert_array_equal(read_truth(f"{path}|layername=truth", grid_of=scene)[0], truth)
    assert read_truth(f"{path}|layername=other", grid_of=scene)[0].sum() == 25
    with pytest.raises(HsanomalyError, match="no layer 'nope'; it has truth, other"):
        read_truth(f"{path}|layername=nope", grid_of=scene)
    with pytest.raises(HsanomalyError, match=r"a filtered layer \('\|subset=id=0'\); save"):
        read_truth(f"{path}|layername=truth|subset=id=0", grid_of=scene)
    with pytest.raises(HsanomalyError, match=r"'\|layerid=0' is not understood; name the layer "
                                             r"as '.*two.gpkg\|layername=NAME'"):
        read_truth(f"{path}|layerid=0", grid_of=scene)
    # OGR looks layer names up regardless of case; so does this
    np.testing.assert_array_equal(read_truth(f"{path}|layername=TRUTH", grid_of=scene)[0], truth)
    assert split_layer(f"{path}|layername=truth") == (str(path), "truth")


def test_a_plain_image_truth_says_nothing_of_georeferencing(example_scene, tmp_path):
    """Asking whether a truth is vector features opened it as a raster: without a word about
    the example's missing georeferencing, as every other read of it."""
    import warnings

    import hsanomaly

    scene, truth = example_scene
    hsanomaly.detect(scene, tmp_path / "heat.tif", score="rx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hsanomaly.evaluate(tmp_path / "heat.tif", truth)


def test_rasters_stay_rasters(grid, tmp_path):
    scene, _ = grid
    assert not is_vector(scene) and is_vector(write_layer(tmp_path / "t.shp", [pixel_box(0, 0, 1, 1)]))
    assert not is_vector(tmp_path / "missing.gpkg") and not is_vector(tmp_path / "scene.mat")


def test_features_without_a_crs_are_taken_in_the_rasters(grid, tmp_path):
    scene, truth = grid
    path = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)],
                       crs=None)
    with pytest.warns(HsanomalyWarning, match=f"the features have no CRS; taken to be .*{CRS}"):
        mask, _ = read_truth(path, grid_of=scene)
    np.testing.assert_array_equal(mask, truth)


@pytest.mark.parametrize("srs_id", [0, -1])
def test_a_geopackages_own_no_crs_entries_are_no_crs(grid, tmp_path, srs_id):
    """QGIS saves a layer without a CRS into a GeoPackage under srs_id 0 ("Undefined
    geographic SRS"), which GDAL reads as a geographic CRS: such a layer was refused ("x inf
    to inf") on a georeferenced raster and told to drop a CRS QGIS cannot drop on a raster
    without georeferencing, while the same features as a Shapefile without .prj were taken."""
    import sqlite3

    scene, truth = grid
    path = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)],
                       crs=None)
    with sqlite3.connect(path) as db:
        for table in ("gpkg_geometry_columns", "gpkg_contents"):
            db.execute(f"UPDATE {table} SET srs_id = ?", (srs_id,))
    with pytest.warns(HsanomalyWarning, match=f"the features have no CRS; taken to be .*{CRS}"):
        mask, _ = read_truth(path, grid_of=scene)
    np.testing.assert_array_equal(mask, truth)


def test_a_raster_that_cannot_place_the_features_is_refused(grid, tmp_path):
    scene, truth = grid
    layer = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12)])
    plain = write_raster(tmp_path / "plain.tif", synthetic_cube()[0], crs=None,
                         transform=TRANSFORM.identity())
    with pytest.raises(HsanomalyError, match=f"are in {CRS}, but .*plain.tif has no CRS"):
        read_truth(layer, grid_of=plain)
    no_crs = write_raster(tmp_path / "nocrs.tif", synthetic_cube()[0], crs=None)
    with pytest.raises(HsanomalyError, match=f"are in {CRS}, but .*nocrs.tif has no CRS"):
        read_truth(layer, grid_of=no_crs)
    with pytest.raises(HsanomalyError, match=r"\.mat file; rasterise it"):
        read_truth(layer, grid_of=tmp_path / "scene.mat")


def test_features_off_the_raster_are_said_and_none_on_it_refused(grid, tmp_path):
    scene, truth = grid
    far = shapely.Point(place(500, 500))
    path = write_layer(tmp_path / "part.gpkg", [pixel_box(10, 10, 12, 12), far, far])
    with pytest.warns(HsanomalyWarning, match="2 of its 3 features lie outside .*scene.tif; left out"):
        assert read_truth(path, grid_of=scene)[0].sum() == 4
    # the usual cause: coordinates in one CRS, the file saying another
    wrong = gpd.GeoDataFrame(geometry=[pixel_box(10, 10, 12, 12)], crs=CRS).set_crs(
        3857, allow_override=True)
    wrong.to_file(tmp_path / "wrong.gpkg")
    with pytest.raises(HsanomalyError, match=r"its only feature does not fall on .*scene.tif "
                                             r"\(x .* against x 500000 to 500100.*CRS right"):
        read_truth(tmp_path / "wrong.gpkg", grid_of=scene)


def test_empty_layers_and_geometries(grid, tmp_path):
    scene, _ = grid
    path = write_layer(tmp_path / "null.gpkg", [None, pixel_box(10, 10, 12, 12)])
    with pytest.warns(HsanomalyWarning, match="1 feature without a geometry left out"):
        assert read_truth(path, grid_of=scene)[0].sum() == 4
    with pytest.raises(HsanomalyError, match="no feature of the layer has a geometry"):
        read_truth(write_layer(tmp_path / "nulls.gpkg", [None, None]), grid_of=scene)
    empty = gpd.GeoDataFrame({"id": []}, geometry=[], crs=CRS)
    empty.to_file(tmp_path / "empty.gpkg")
    with pytest.raises(HsanomalyError, match="empty.gpkg: the layer has no features"):
        read_truth(tmp_path / "empty.gpkg", grid_of=scene)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(HsanomalyError, match=r"table.csv: no layer has geometries \(only "
                                             r"tables: table\)"):
        read_truth(tmp_path / "table.csv", grid_of=scene)
    with pytest.raises(HsanomalyError, match=r"gone.gpkg\|layername=t: file not found"):
        read_truth(f"{tmp_path / 'gone.gpkg'}|layername=t", grid_of=scene)


def test_evaluate_takes_vector_truth_and_outer_masks(grid, tmp_path):
    """The command's report on vector masks is the one on their rasters."""
    from hsanomaly.cli import main

    scene, truth = grid
    heat = tmp_path / "heat.tif"
    assert CliRunner().invoke(main, ["detect", str(scene), str(heat), "--score", "rx", "-q"]).exit_code == 0
    outer = np.zeros_like(truth)
    outer[8:14, 8:14] = 1
    rasters = [write_raster(tmp_path / "truth.tif", truth[None].astype(np.float32)),
               write_raster(tmp_path / "outer.tif", outer[None].astype(np.float32))]
    vectors = [write_layer(tmp_path / "truth.gpkg", [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)]),
               write_layer(tmp_path / "outer.geojson", [pixel_box(8, 8, 14, 14)])]
    reports = []
    for (truth_path, outer_path), name in ((rasters, "r.json"), (vectors, "v.json")):
        result = CliRunner().invoke(main, ["evaluate", str(heat), str(truth_path), "--outer-mask",
                                           str(outer_path), "--json", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        reports.append(json.loads((tmp_path / name).read_text()))
    raster, vector = ({k: v for k, v in r.items() if k not in ("inputs", "provenance")}
                      for r in reports)
    assert vector == raster and raster["n_excluded_pixels"] == 32
    assert reports[1]["inputs"]["truth"] == str(vectors[0])


def test_an_output_may_not_replace_a_vector_layers_file(grid, tmp_path):
    from hsanomaly.cli import main

    scene, _ = grid
    layer = write_layer(tmp_path / "t.gpkg", [pixel_box(10, 10, 12, 12)], layer="truth")
    heat = tmp_path / "heat.tif"
    CliRunner().invoke(main, ["detect", str(scene), str(heat), "--score", "rx", "-q"])
    before = layer.read_bytes()
    result = CliRunner().invoke(main, ["evaluate", str(heat), f"{layer}|layername=truth",
                                       "--json", str(layer), "--overwrite"])
    assert result.exit_code == 1 and "is the same file as the input" in result.output
    assert layer.read_bytes() == before


def test_training_excludes_the_features_pixels(grid, tmp_path):
    """A vector exclusion mask leaves out the windows a raster of the same pixels does."""
    from hsanomaly.training.data import load_training_data

    scene, truth = grid
    raster = write_raster(tmp_path / "exclude.tif", truth[None].astype(np.float32))
    vector = write_layer(tmp_path / "exclude.shp", [pixel_box(10, 10, 12, 12), pixel_box(30, 40, 32, 42)])
    by_raster, by_vector = (load_training_data([scene], mask=m, window=3) for m in (raster, vector))
    np.testing.assert_array_equal(by_vector.train, by_raster.train)
    unmasked = load_training_data([scene], window=3)
    assert len(by_vector.train) + len(by_vector.val) < len(unmasked.train) + len(unmasked.val)


# --- found by a review: CRSs, file names, shared masks, lines, side files, edges -------------

def test_an_engineering_crs_written_two_ways_is_one_and_an_impossible_reprojection_one_line(
        tmp_path):
    site = ('LOCAL_CS["Site grid",LOCAL_DATUM["x",0],UNIT["metre",1],AXIS["X",EAST],'
            'AXIS["Y",NORTH]]')
    scene = write_raster(tmp_path / "site.tif", synthetic_cube()[0], crs=site)
    layer = write_layer(tmp_path / "site.shp", [pixel_box(10, 10, 12, 12)], crs=None)
    (tmp_path / "site.prj").write_text(site)
    assert read_truth(layer, grid_of=scene)[0].sum() == 4
    utm = write_raster(tmp_path / "utm.tif", synthetic_cube()[0])
    with pytest.raises(HsanomalyError, match=r"site.shp: its features cannot be reprojected "
                                             r"from Site grid to .*utm.tif's CRS \(EPSG:32633\)"):
        read_truth(layer, grid_of=utm)


def test_one_crs_written_two_ways_is_one_and_two_datums_are_two(tmp_path):
    """UTM 33N written with a zero shift to WGS 84 places features as EPSG:32633 does (a mask
    raster so written was refused); ED50 and Datum 73, on one ellipsoid but shifted about 290
    m apart, are two: the features are reprojected."""
    import pyproj
    from rasterio.transform import from_origin

    from hsanomaly.io.vector import same_crs

    zero = "+proj=utm +zone=33 +ellps=WGS84 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs"
    near = ([500000.0], [4000000.0])
    assert same_crs(pyproj.CRS(zero), pyproj.CRS("EPSG:32633"), near=near, tolerance=0.02)
    assert not same_crs(pyproj.CRS(zero), pyproj.CRS("EPSG:32632"), near=near, tolerance=0.02)
    ed50 = "+proj=utm +zone=29 +ellps=intl +towgs84=-87,-98,-121,0,0,0,0 +units=m +no_defs"
    datum73 = ("+proj=utm +zone=29 +ellps=intl +towgs84=-223.237,110.193,36.649,0,0,0,0 "
               "+units=m +no_defs")
    x, y = 500000, 4300000
    raster = write_raster(tmp_path / "r.tif", np.zeros((1, 100, 100), np.float32), crs=datum73,
                          transform=from_origin(x - 500, y + 500, 10, 10))
    layer = write_layer(tmp_path / "p.gpkg", [shapely.Point(x, y)], crs=ed50)
    moved = pyproj.Transformer.from_crs(ed50, datum73, always_xy=True).transform(x, y)
    mask, _ = read_truth(layer, grid_of=raster)
    assert np.argwhere(mask).tolist() == [[int((y + 500 - moved[1]) // 10),
                                           int((moved[0] - x + 500) // 10)]]


def test_file_names_with_a_bar_are_files(grid, tmp_path):
    """'|' starts a QGIS option only where one follows; 'a|b.tif' is a file name."""
    from hsanomaly.cli import main

    scene, _ = grid
    odd = tmp_path / "sc|ene.tif"
    odd.write_bytes(scene.read_bytes())
    result = CliRunner().invoke(main, ["detect", str(odd), str(tmp_path / "h|1.tif"),
                                       "--score", "rx", "-q"])
    assert result.exit_code == 0, result.output
    assert split_layer(odd) == (str(odd), None) and split_layer("a|b.tif") == ("a|b.tif", None)


def test_lines_and_points_take_every_pixel_they_touch(grid, tmp_path):
    from rasterio.features import rasterize

    scene, _ = grid
    line = shapely.LineString([place(0.5, 0.5), place(20.5, 7.3)])
    edge = shapely.Point(place(50, 20))                   # on the raster's right edge
    with pytest.warns(HsanomalyWarning, match="1 of its 2 features lies outside"):
        mask, _ = read_truth(write_layer(tmp_path / "l.gpkg", [line, edge]), grid_of=scene)
    touched = rasterize([line], out_shape=(40, 50), transform=TRANSFORM, all_touched=True)
    np.testing.assert_array_equal(mask, touched)
    assert mask.sum() > rasterize([line], out_shape=(40, 50), transform=TRANSFORM).sum()


def test_an_output_may_not_replace_a_shapefiles_parts(grid, tmp_path):
    from hsanomaly.cli import main

    scene, _ = grid
    layer = write_layer(tmp_path / "t.shp", [pixel_box(10, 10, 12, 12)])
    heat = tmp_path / "heat.tif"
    CliRunner().invoke(main, ["detect", str(scene), str(heat), "--score", "rx", "-q"])
    for part in ("t.prj", "t.dbf", "t.shx"):
        before = (tmp_path / part).read_bytes()
        result = CliRunner().invoke(main, ["evaluate", str(heat), str(layer), "--json",
                                           str(tmp_path / part), "--overwrite"])
        assert result.exit_code == 1 and "is the same file as the input" in result.output
        assert (tmp_path / part).read_bytes() == before


def test_a_prj_gdal_cannot_read_is_refused_not_taken_for_no_crs(grid, tmp_path):
    """GDAL reads such a .prj as no CRS at all: the features would be placed in the raster's."""
    from hsanomaly.io.vector import vector_files

    scene, _ = grid
    layer = write_layer(tmp_path / "t.shp", [pixel_box(10, 10, 12, 12)])
    assert read_truth(layer, grid_of=scene)[0].sum() == 4
    (tmp_path / "t.prj").rename(tmp_path / "t.PRJ")           # either case is the shapefile's
    assert str(tmp_path / "t.PRJ") in vector_files(layer)
    (tmp_path / "t.PRJ").write_text("not a CRS")
    with pytest.raises(HsanomalyError, match=r"t.PRJ: not a CRS GDAL can read"):
        read_truth(layer, grid_of=scene)


def test_hsanomalys_own_polygons_are_a_mask_without_naming_their_layer(grid, tmp_path):
    """Its GeoPackage holds a style table beside the targets: a table, not a layer."""
    scene, _ = grid
    polygons = tmp_path / "targets.gpkg"
    import hsanomaly

    hsanomaly.detect(scene, tmp_path / "heat.tif", score="rx", polygons=polygons, far=0.01)
    assert is_vector(polygons)
    assert read_truth(polygons, grid_of=scene)[0].any()


def test_features_on_a_raster_without_georeferencing_lie_where_qgis_shows_its_pixels(
        tmp_path):
    """A raster without georeferencing (the shipped example, a converted .mat) refused every
    vector mask and truth, even the polygons ``--polygons`` had written for it: they, and the
    features drawn on it in QGIS, are in its pixel coordinates (x the column, y minus the
    row), and are burnt there."""
    import hsanomaly

    cube, truth = synthetic_cube()
    plain = write_raster(tmp_path / "plain.tif", cube, crs=None, transform=TRANSFORM.identity())
    heat, polygons = tmp_path / "heat.tif", tmp_path / "targets.gpkg"
    hsanomaly.detect(plain, heat, score="rx", polygons=polygons, far=0.01)
    threshold = gpd.read_file(polygons, layer="targets")["threshold"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no CRS on either side: nothing to say
        burnt = read_truth(polygons, grid_of=heat)[0]
    with rasterio.open(heat) as ds:
        scores = ds.read(1)
    np.testing.assert_array_equal(burnt, scores > threshold)
    drawn = write_layer(tmp_path / "drawn.gpkg", [shapely.box(10, -12, 12, -10),
                                                  shapely.box(40, -32, 42, -30)], crs=None)
    np.testing.assert_array_equal(read_truth(drawn, grid_of=plain)[0], truth)
    report = hsanomaly.evaluate(heat, drawn)
    assert report["auc"] == hsanomaly.evaluate(heat, truth)["auc"]
    # GDAL's tools write such a raster's features with y the row: told so, not "give a CRS"
    rows_down = write_layer(tmp_path / "down.gpkg", [shapely.box(10, 10, 12, 12)], crs=None)
    with pytest.raises(HsanomalyError, match=r"plain.tif \(x 10 to 12, y 10 to 12 against x 0 to "
                                             r"50, y -40 to 0 in its pixel coordinates\); the "
                                             r"raster has no georeferencing, so "
                                             r"they were taken in its pixel coordinates, x the "
                                             r"column and y minus the row \(GDAL's tools write "
                                             r"y the row: flip y\)$"):
        read_truth(rows_down, grid_of=plain)
    with pytest.raises(HsanomalyError, match=f"are in {CRS}, but .*plain.tif has no CRS, so "
                                             "nothing says where they fall on it; drop the "
                                             "layer's CRS if it is drawn in the raster's pixel"):
        read_truth(write_layer(tmp_path / "crs.gpkg", [shapely.box(10, -12, 12, -10)]),
                   grid_of=plain)
    # one placed by ground control points: its polygons are in pixel coordinates too, said
    from rasterio.control import GroundControlPoint

    with rasterio.open(plain, "r+") as ds:
        ds.gcps = ([GroundControlPoint(0, 0, 500000, 6700000), GroundControlPoint(40, 0, 500040,
                    6700000), GroundControlPoint(0, 50, 500000, 6699950)], CRS)
    with pytest.warns(HsanomalyWarning, match="placed on the map by ground control points, which "
                                              "the features are not burnt by"):
        np.testing.assert_array_equal(read_truth(drawn, grid_of=plain)[0], truth)
    # features in map coordinates: nothing burns them there, and no warning says otherwise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(HsanomalyError, match=f"are in {CRS}, but .*plain.tif has no map "
                                                 "grid, .*; rasterise the mask onto its pixels$"):
            read_truth(tmp_path / "crs.gpkg", grid_of=plain)


def test_one_mask_for_several_rasters_need_not_fall_on_each(grid, tmp_path):
    from hsanomaly.training.data import load_training_data

    scene, _ = grid
    elsewhere = write_raster(tmp_path / "east.tif", synthetic_cube(seed=3)[0],
                             transform=TRANSFORM.translation(10000, 0) * TRANSFORM)
    layer = write_layer(tmp_path / "m.gpkg", [pixel_box(10, 10, 12, 12)])
    with pytest.warns(HsanomalyWarning, match="its only feature does not fall on .*east.tif"):
        load_training_data([scene, elsewhere], mask=layer)
    with pytest.raises(HsanomalyError, match="its only feature does not fall on .*east.tif"):
        load_training_data([elsewhere], mask=layer)


def test_features_without_a_crs_off_the_raster_are_told_why(grid, tmp_path):
    scene, _ = grid
    layer = write_layer(tmp_path / "lonlat.gpkg", [shapely.Point(15.0, 60.4)], crs=None)
    with pytest.raises(HsanomalyError, match="the file has no CRS, so they were taken to be "
                                             "in the raster's; give the file its CRS"):
        with pytest.warns(HsanomalyWarning, match="have no CRS"):
            read_truth(layer, grid_of=scene)
    with pytest.raises(HsanomalyError, match="a vector mask is burnt onto a raster's grid, "
                                             "and none was given"):
        read_truth(layer)


@pytest.mark.parametrize("west, shift", [(179.97, -360), (-180.03, 360)])
def test_features_a_turn_of_longitude_away_fall_on_a_raster_across_the_antimeridian(
        tmp_path, west, shift):
    """A raster across the antimeridian runs past 180 degrees (or before -180), as gdalwarp
    writes it; a feature digitised at -179.98 lies on it at 180.02. It was said to lie
    outside and left out: one target fewer, counted as a false alarm."""
    from affine import Affine

    cube, truth = synthetic_cube()
    transform = Affine(0.001, 0, west, 0, -0.001, 10.0)
    scene = write_raster(tmp_path / "scene.tif", cube, crs="EPSG:4326", transform=transform)

    def box(row0, col0, row1, col1, by=0.0):
        (x0, y0), (x1, y1) = transform * (col0, row0), transform * (col1, row1)
        return shapely.box(x0 + by, y1, x1 + by, y0)

    layer = write_layer(tmp_path / "t.gpkg", [box(10, 10, 12, 12), box(30, 40, 32, 42, shift)],
                        crs="EPSG:4326")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        mask, _ = read_truth(layer, shape=truth.shape, grid_of=scene)
    np.testing.assert_array_equal(mask, truth)
    alone = write_layer(tmp_path / "east.gpkg", [box(30, 40, 32, 42, shift)], crs="EPSG:4326")
    assert read_truth(alone, shape=truth.shape, grid_of=scene)[0].sum() == 4
    # one feature split at 180 degrees, as GeoJSON writes one: each part finds its place
    split = shapely.MultiPolygon([box(20, 28, 24, 30), box(20, 30, 24, 34, shift)])
    layer = write_layer(tmp_path / "split.gpkg", [split], crs="EPSG:4326")
    assert read_truth(layer, shape=truth.shape, grid_of=scene)[0][20:24, 28:34].all()
    # ... in a collection too, whose polygons still take pixels by centre, not by touch
    held = shapely.GeometryCollection([split, shapely.LineString([(0, 0), (0, 1)])])
    layer = write_layer(tmp_path / "held.geojson", [held], crs="EPSG:4326")
    mask = read_truth(layer, shape=truth.shape, grid_of=scene)[0]
    assert mask[20:24, 28:34].all() and mask.sum() == 24       # by touch it took more


def test_a_gps_file_s_empty_layers_leave_its_waypoints_the_only_layer(grid, tmp_path):
    """A GPX file lists its five kinds of layer, used or not: its waypoints were refused until
    a layer was named ("has 5 layers")."""
    scene, truth = grid
    points = gpd.GeoSeries([pixel_centre(10, 10), pixel_centre(31, 41)], crs=CRS)
    gpx = tmp_path / "field.gpx"
    gpd.GeoDataFrame(geometry=points.to_crs("EPSG:4326")).to_file(gpx, driver="GPX",
                                                                  layer="waypoints")
    import pyogrio

    assert len(pyogrio.list_layers(gpx)) == 5
    mask, _ = read_truth(gpx, shape=truth.shape, grid_of=scene)
    assert mask.sum() == 2 and mask[10, 10] == mask[31, 41] == 1
    # another format's empty layer is still a layer to choose from (the review's F01: an
    # empty "clouds" beside "aoi" was passed over, and "aoi" masked without a word)
    layers = write_layer(tmp_path / "two.gpkg", [pixel_box(0, 0, 10, 10)], layer="aoi")
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=CRS).to_file(layers, layer="clouds")
    with pytest.raises(HsanomalyError, match=r"two.gpkg: has 2 layers \(aoi, clouds\)"):
        read_truth(layers, shape=truth.shape, grid_of=scene)


def test_a_geojson_is_told_as_lon_lat_whatever_its_coordinates(grid, tmp_path):
    """GDAL reads a GeoJSON without a 'crs' member as EPSG:4326: one drawn in a plain raster's
    pixel coordinates was told to "drop the layer's CRS", which a GeoJSON cannot; one in UTM
    was said to lie at "x inf to inf", the span of its failed reprojection."""
    scene, _ = grid
    cube, _ = synthetic_cube()
    plain = write_raster(tmp_path / "plain.tif", cube, crs=None, transform=None)
    def geojson(name, shape):
        (tmp_path / name).write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(shape)}]}))
        return tmp_path / name

    with pytest.raises(HsanomalyError, match=r"t.geojson: the features are in EPSG:4326, but .*"
                       r"plain.tif has no CRS.*if it is drawn in the raster's pixel coordinates, "
                       r"save it without a CRS in another format \(a GeoJSON file without a "
                       r"'crs' member is read as EPSG:4326"):
        read_truth(geojson("t.geojson", shapely.box(10, -12, 12, -10)), grid_of=plain)
    with pytest.raises(HsanomalyError) as err:
        read_truth(geojson("utm.geojson", pixel_box(30, 40, 32, 42)), grid_of=scene)
    assert "inf" not in str(err.value)
    assert f"y {TRANSFORM.f + TRANSFORM.e * 32:.8g} to {TRANSFORM.f + TRANSFORM.e * 30:.8g} " \
        "in WGS 84, which do not reproject to its CRS" in str(err.value)
    assert str(err.value).endswith("is the file's CRS right? (a GeoJSON file without a 'crs' "
                                   "member is read as EPSG:4326, lon/lat, whatever its "
                                   "coordinates)")
