"""The --png quick look: scores above a labelled colour bar, placed on the map by a world file."""

import numpy as np
import rasterio
from matplotlib.image import imread

import hsanomaly
from hsanomaly.quicklook import BAR_HEIGHT, sidecars, world_file_text

from synthetic import TRANSFORM


def test_png_has_a_colour_bar_and_a_world_file_that_places_it(synthetic_raster, tmp_path):
    path, _, nodata = synthetic_raster
    png = tmp_path / "heat.png"
    hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", png=png)
    image = imread(png)
    assert image.shape == (40 + BAR_HEIGHT, 50, 4)
    assert (image[:40][nodata][:, 3] == 0).all() and (image[:40][~nodata][:, 3] == 1).all()
    bar = image[40 + 5, :, :3]
    assert np.abs(np.diff(bar, axis=0)).sum() > 0            # a colour ramp, left to right
    world, aux = sidecars(png)
    a, d, b, e, x, y = map(float, world.read_text().split())
    assert (a, e, b, d) == (TRANSFORM.a, TRANSFORM.e, 0, 0)
    assert (x, y) == (TRANSFORM.c + 0.5 * TRANSFORM.a, TRANSFORM.f + 0.5 * TRANSFORM.e)
    assert "32633" in aux.read_text()
    with rasterio.open(png) as ds:                            # GDAL reads it georeferenced
        assert ds.crs == "EPSG:32633" and ds.transform.c == TRANSFORM.c


def test_world_file_is_the_gdal_convention(tmp_path):
    assert world_file_text(TRANSFORM).split() == ["2", "0", "0", "-2", "500001", "6699999"]
    # a rotated grid: the rotation terms in GDAL's own order (its PNG driver writes one)
    from affine import Affine

    turned = Affine(2.0, 0.5, 500000.0, 0.25, -2.0, 6700000.0)
    with rasterio.open(tmp_path / "gdal.png", "w", driver="PNG", width=4, height=3, count=1,
                       dtype="uint8", transform=turned, WORLDFILE="YES") as ds:
        ds.write(np.zeros((1, 3, 4), np.uint8))
    gdal = [float(v) for v in (tmp_path / "gdal.wld").read_text().split()]
    assert [float(v) for v in world_file_text(turned).split()] == gdal


def test_png_sidecars_count_as_outputs(synthetic_raster, tmp_path):
    import pytest

    path, _, _ = synthetic_raster
    with pytest.raises(hsanomaly.HsanomalyError, match="world file"):
        hsanomaly.detect(path, tmp_path / "heat.pgw", score="rx", png=tmp_path / "heat.png")


def test_a_geotransform_without_crs_still_gets_a_world_file(synthetic_raster, tmp_path):
    path, _, _ = synthetic_raster
    with rasterio.open(path) as src:
        profile = {**src.profile, "crs": None}
        cube = src.read()
    unplaced = tmp_path / "no-crs.tif"
    with rasterio.open(unplaced, "w", **profile) as dst:
        dst.write(cube)
    heat = tmp_path / "heat.tif"
    hsanomaly.detect(unplaced, heat, score="rx")
    with rasterio.open(heat) as ds:
        assert ds.crs is None and not ds.transform.is_identity
        transform = ds.transform
    from hsanomaly.quicklook import write_png

    hsanomaly.detect(path, tmp_path / "placed.tif", score="rx", png=tmp_path / "q.png")
    assert "<SRS>" in (tmp_path / "q.png.aux.xml").read_text()      # an earlier run's, with CRS
    write_png(heat, tmp_path / "q.png")
    assert (tmp_path / "q.pgw").read_text() == world_file_text(transform)
    assert "SRS" not in (tmp_path / "q.png.aux.xml").read_text()    # not the earlier CRS


def test_an_earlier_runs_side_files_never_describe_the_new_outputs(synthetic_raster, tmp_path):
    """A rerun left the earlier heatmap's GDAL side files (.aux.xml, .ovr), which GDAL laid
    over the new heatmap (CRS, tags, statistics), and, for a heatmap without georeferencing,
    the earlier quick look's world file and CRS, which placed the new picture on the map."""
    from synthetic import synthetic_cube, write_raster

    path, _, _ = synthetic_raster
    heat, png = tmp_path / "heat.tif", tmp_path / "heat.png"
    hsanomaly.detect(path, heat, score="rx", png=png)
    assert all(side.exists() for side in sidecars(png))
    (tmp_path / "heat.tif.aux.xml").write_text(
        '<PAMDataset><SRS>EPSG:4326</SRS><Metadata><MDI key="HSANOMALY_SCORE">gmm</MDI>'
        '</Metadata></PAMDataset>')
    (tmp_path / "heat.tif.ovr").write_bytes(b"an earlier heatmap's overviews")
    (tmp_path / "heat.tfw").write_text("2\n0\n0\n-2\n500000\n4000000\n")   # it placed
    (tmp_path / "heat.wld").write_text("a world file any heat.* picture may own: kept")
    cube, _ = synthetic_cube(rows=40, cols=50)                       # an unplaced heatmap
    unplaced = write_raster(tmp_path / "unplaced.tif", cube, crs=None, transform=None)
    hsanomaly.detect(unplaced, heat, score="lrx", png=png, overwrite=True)   # another input's
    with rasterio.open(heat) as ds:
        assert ds.crs is None and ds.tags()["HSANOMALY_SCORE"] == "lrx"
        assert ds.transform.is_identity
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.png", "heat.tif", "heat.wld",
                                                         "scene.tif", "unplaced.tif"]


def test_a_heatmap_placed_by_ground_control_points_gives_a_png_placed_by_them(tmp_path):
    """The GeoTIFF kept its GCPs, but the quick look had neither a world file nor GCPs, and a
    GIS could not place it; they go into its .aux.xml, scaled to a decimated picture."""
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS as RasterCRS

    from hsanomaly.quicklook import write_png

    heat = tmp_path / "heat.tif"
    gcps = [GroundControlPoint(row=r, col=c, x=500000 + 2 * c, y=4000000 - 2 * r, id=f"p{i}")
            for i, (r, c) in enumerate([(0, 0), (0, 3000), (3000, 0), (3000, 3000)])]
    with rasterio.open(heat, "w", driver="GTiff", dtype="float32", count=1, height=3000,
                       width=3000) as ds:
        ds.write(np.random.default_rng(0).random((1, 3000, 3000), np.float32))
        ds.gcps = (gcps, RasterCRS.from_epsg(32633))
    write_png(heat, tmp_path / "q.png", max_size=1000)
    assert not (tmp_path / "q.pgw").exists()
    with rasterio.open(tmp_path / "q.png") as png:
        found, crs = png.gcps
    assert crs.to_epsg() == 32633 and [(g.row, g.col, g.x, g.y) for g in found] == [
        (g.row / 3, g.col / 3, g.x, g.y) for g in gcps]


def test_a_large_heatmaps_quick_look_keeps_one_pixel_targets(tmp_path, monkeypatch):
    """The picture of a heatmap over ``max_size`` pixels a side was GDAL's reduced read, the
    average overviews, where a one-pixel target faded into the background and the colour bar's
    labels were percentiles of averages; it is the blocks' maxima, read a strip at a time."""
    from rasterio.transform import from_origin

    from hsanomaly import quicklook
    from hsanomaly.io.heatmap import finish_heatmap

    rng = np.random.default_rng(0)
    scores = rng.chisquare(10, (300, 250)).astype(np.float32)
    scores[124, 77] = 500.0
    scores[:6, :9] = np.nan                                # a nodata block stays transparent
    heat = tmp_path / "heat.tif"
    with rasterio.open(heat, "w", driver="GTiff", dtype="float32", count=1, height=300, width=250,
                       nodata=np.nan, crs="EPSG:32633", transform=from_origin(500000, 4e6, 2, 2),
                       tiled=True, blockxsize=64, blockysize=64) as ds:
        ds.write(scores, 1)
    finish_heatmap(heat)
    monkeypatch.setattr(quicklook, "STRIP_PIXELS", 2000)   # many strips, as a large heatmap reads
    quicklook.write_png(heat, tmp_path / "q.png", max_size=100)
    from PIL import Image

    image = np.asarray(Image.open(tmp_path / "q.png"))
    shown = quicklook.block_maxima(scores, 100)
    assert shown.shape == (100, 84) and shown[41, 25] == 500.0
    low, high = quicklook.stretch_limits(shown)             # of the picture, as labelled
    assert np.array_equal(image, quicklook.render(shown.astype(float), low, high, "score"))
    assert (image[:2, :3, 3] == 0).all() and (image[2:100, 3:, 3] == 255).all()
    a, _, _, e, _, _ = map(float, sidecars(tmp_path / "q.png")[0].read_text().split())
    assert (a, e) == (6.0, -6.0)                           # 3 heatmap pixels a picture pixel


def test_an_infinite_score_is_drawn_in_the_top_colour_not_as_nodata():
    """A score beyond float32 (kept by detect, which warns that it ranks beyond every other)
    was drawn transparent like nodata: the most anomalous pixel vanished from the picture."""
    from hsanomaly.quicklook import render

    scores = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    scores[5, 5], scores[10, 10], scores[15, 15] = np.inf, np.nan, -np.inf
    image = np.asarray(render(scores, -2.0, 2.0, "score"))
    top, bottom = image[20 + 7, -1], image[20 + 7, 0]            # the colour bar's ends
    assert image[10, 10, 3] == 0
    assert (image[5, 5] == top).all() and (image[15, 15] == bottom).all()


def test_a_shrunk_quick_look_of_an_unplaced_heatmap_lies_on_its_pixel_grid(tmp_path):
    """An unplaced heatmap (a converted .mat scene) over ``max_size`` pixels got a picture a
    step smaller and no world file: a GIS showed it at a fraction of the heatmap's size."""
    from hsanomaly import quicklook

    heat = tmp_path / "heat.tif"
    with rasterio.open(heat, "w", driver="GTiff", dtype="float32", count=1, height=40,
                       width=250) as ds:
        ds.write(np.random.default_rng(0).random((40, 250), np.float32), 1)
    quicklook.write_png(heat, tmp_path / "whole.png", max_size=250)
    quicklook.write_png(heat, tmp_path / "shrunk.png", max_size=100)
    world, aux = sidecars(tmp_path / "shrunk.png")
    assert [float(v) for v in world.read_text().split()] == [3.0, 0.0, 0.0, -3.0, 1.5, -1.5]
    assert not aux.exists() and not sidecars(tmp_path / "whole.png")[0].exists()


def test_a_south_up_or_mirrored_raster_looks_as_its_north_up_twin(tmp_path):
    """A raster stored south up (rows from the south: the geotransform's e > 0) drew upside
    down, its colour bar north of the scene in a GIS with mirrored labels. The same ground
    stored either way now gives the same picture and world file."""
    from affine import Affine

    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(rows=30, cols=40)
    rows, cols = cube.shape[1:]
    south_up = TRANSFORM * Affine(1, 0, 0, 0, -1, rows)          # row 0 is the south edge
    mirrored = TRANSFORM * Affine(-1, 0, cols, 0, 1, 0)          # column 0 is the east edge
    twins = {"north": (cube, TRANSFORM), "south": (cube[:, ::-1], south_up),
             "east": (cube[:, :, ::-1], mirrored)}
    pictures = {}
    for name, (data, transform) in twins.items():
        path = write_raster(tmp_path / f"{name}.tif", data, transform=transform)
        png = tmp_path / f"{name}.png"
        hsanomaly.detect(path, tmp_path / f"{name}-heat.tif", score="rx", png=png)
        pictures[name] = (imread(png), sidecars(png)[0].read_text())
    for name in ("south", "east"):
        np.testing.assert_array_equal(pictures[name][0], pictures["north"][0])
        assert pictures[name][1] == pictures["north"][1]


def test_a_label_the_picture_is_too_narrow_for_is_left_out_not_cut():
    """On a 12-pixel-wide quick look the lower limit 112.4 was drawn cut to "11"."""
    from hsanomaly.quicklook import render

    scores = np.linspace(0, 1, 80 * 12).reshape(80, 12)
    narrow = render(scores, 112.4, 536.2, "rx")[80:]
    assert (narrow[12:, :, :3] == 255).all()         # the labels' rows: nothing drawn
    wide = render(np.linspace(0, 1, 80 * 120).reshape(80, 120), 112.4, 536.2, "rx")[80:]
    assert (wide[12:, :, :3] < 255).any()


def test_a_quick_look_and_target_polygons_say_which_heatmap_they_were_drawn_from(tmp_path):
    """The PNG recorded only its software, and the GeoPackage the heatmap's name and the
    threshold: after a rescore without them, nothing told they showed another run, the rate
    asked was recorded nowhere, and ``info`` refused both (the provenance audit's F01, F02)."""
    import hsanomaly
    from synthetic import synthetic_cube, write_raster

    cube, truth = synthetic_cube()
    scene = write_raster(tmp_path / "scene.tif", cube)
    heat, png, gpkg = tmp_path / "heat.tif", tmp_path / "heat.png", tmp_path / "heat.gpkg"
    hsanomaly.detect(scene, heat, score="rx", png=png, polygons=gpkg, far=0.01)
    look, targets = hsanomaly.info(png), hsanomaly.info(gpkg)
    assert (look["kind"], look["heatmap"], look["score"]) == ("quick look", "heat.tif", "rx")
    assert look["drawn"] == targets["drawn"] == "drawn from heat.tif as it is"
    assert len(look["stretch"]) == 2 and look["stretch"][0] < look["stretch"][1]
    assert (targets["kind"], targets["far"], targets["heatmap"]) == ("targets", "0.01",
                                                                     "heat.tif")
    assert targets["threshold"] == hsanomaly.find_targets(heat, far=0.01)["threshold"].iloc[0]
    hsanomaly.detect(scene, heat, score="lrx", overwrite=True)          # rescored, undrawn
    for path in (png, gpkg):
        assert hsanomaly.info(path)["drawn"] == ("drawn from another state of heat.tif, "
                                                 "scored again since")
    heat.unlink()
    assert hsanomaly.info(png)["drawn"] == "its heatmap is not beside it"
    hsanomaly.evaluate(write_raster(tmp_path / "h.tif", cube[:1]), truth,
                       plots=tmp_path / "plots")
    plot = next((tmp_path / "plots").glob("*.png"))
    assert hsanomaly.info(plot)["kind"] == "picture"
    import sqlite3

    with sqlite3.connect(gpkg) as db:            # a GeoPackage drawn before the record
        db.execute("DELETE FROM gpkg_metadata_reference")
    assert hsanomaly.info(gpkg)["drawn"] == ("it records no heatmap: drawn before hsanomaly "
                                             "recorded one")
