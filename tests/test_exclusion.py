"""detect's exclusion mask (io.exclusion): its pixels are scored as if they were nodata, in
fitting, in a quick model's training and in scoring, whatever the mask's kind."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import shapely
from click.testing import CliRunner

import hsanomaly
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.io.exclusion import Exclusion

from synthetic import CRS, NODATA, TRANSFORM, synthetic_cube, write_raster

gpd = pytest.importorskip("geopandas")


def place(col, row):
    return TRANSFORM.c + TRANSFORM.a * col, TRANSFORM.f + TRANSFORM.e * row


def pixel_box(row0, col0, row1, col1):
    (x0, y0), (x1, y1) = place(col0, row0), place(col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@pytest.fixture
def masked_scene(tmp_path):
    """(raster, mask raster, the same mask as polygons, the raster with those pixels nodata):
    a bright "cloud" block and a strip left out of a 12-band 40x50 scene."""
    cube, _ = synthetic_cube()
    cube[:, 20:28, 2:12] += 3.0                      # the cloud: far off every other spectrum
    out = np.zeros((40, 50), np.uint8)
    out[20:28, 2:12] = out[:, 47:] = 1
    raster = write_raster(tmp_path / "scene.tif", cube, nodata=NODATA)
    mask = write_raster(tmp_path / "mask.tif", out[None].astype(np.float32))
    layer = tmp_path / "mask.gpkg"
    gpd.GeoDataFrame(geometry=[pixel_box(20, 2, 28, 12), pixel_box(0, 47, 40, 50)],
                     crs=CRS).to_file(layer)
    holed = cube.copy()
    holed[:, out == 1] = NODATA
    return raster, mask, layer, write_raster(tmp_path / "holed.tif", holed, nodata=NODATA), out


def heat(path):
    with rasterio.open(path) as ds:
        return ds.read(1, masked=True).filled(np.nan), ds.tags()


@pytest.mark.parametrize("score", ["rx", "gmm", "rxmlrx"])
def test_masked_pixels_are_scored_as_nodata_would_be(masked_scene, tmp_path, score):
    """The reference: the same raster with the mask's pixels written as nodata."""
    raster, mask, layer, holed, out = masked_scene
    options = {"rings": "5/3,7/3"} if score == "rxmlrx" else {}
    reference = hsanomaly.detect(holed, tmp_path / "ref.tif", score=score, **options)
    assert "HSANOMALY_MASK_FINGERPRINT" not in heat(tmp_path / "ref.tif")[1]
    fingerprints = set()
    for given, name in ((mask, "raster.tif"), (layer, "vector.tif")):
        result = hsanomaly.detect(raster, tmp_path / name, score=score, mask=given, **options)
        scores, tags = heat(tmp_path / name)
        np.testing.assert_array_equal(scores, heat(tmp_path / "ref.tif")[0])
        assert np.isnan(scores[out == 1]).all() and tags["HSANOMALY_MASK"] == given.name
        fingerprints.add(tags["HSANOMALY_MASK_FINGERPRINT"])
        assert (result.pixels_scored, result.pixels_nodata) == (reference.pixels_scored,
                                                                reference.pixels_nodata)
        assert result.text().endswith(f"{reference.pixels_nodata:,} nodata or masked")
    # the pixels left out, whatever the mask's kind and name: the same for both
    assert len(fingerprints) == 1 and len(fingerprints.pop()) == 16
    unmasked = hsanomaly.detect(raster, tmp_path / "plain.tif", score=score, **options)
    assert not np.array_equal(heat(tmp_path / "plain.tif")[0][out == 0],
                              heat(tmp_path / "ref.tif")[0][out == 0])   # the cloud counted
    assert unmasked.text().endswith(" nodata")


def test_the_mask_is_part_of_the_run_fingerprint(masked_scene, tmp_path):
    from hsanomaly.engine.run import RUN_TAG

    raster, mask, layer, _, out = masked_scene
    other = write_raster(tmp_path / "other.tif", np.roll(out, 1, axis=0)[None].astype(np.float32))
    prints = []
    for given, name in ((None, "a.tif"), (mask, "b.tif"), (layer, "c.tif"), (other, "d.tif")):
        hsanomaly.detect(raster, tmp_path / name, score="rx", mask=given)
        prints.append(heat(tmp_path / name)[1][RUN_TAG])
    assert prints[1] == prints[2]             # the same pixels, from a raster or features
    assert len({prints[0], prints[1], prints[3]}) == 3


def test_a_bad_mask_is_one_line_before_any_work(masked_scene, tmp_path):
    from hsanomaly.cli import main

    raster, mask, layer, _, out = masked_scene
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[pixel_box(500, 500, 510, 510)], crs=CRS).to_file(far)
    everything = write_raster(tmp_path / "all.tif", np.ones((1, 40, 50), np.float32))
    small = write_raster(tmp_path / "small.tif", np.ones((1, 20, 50), np.float32))
    cases = [(far, "its only feature does not fall on"),
             (everything, "the mask leaves out every pixel of"),
             (small, "the mask is 20x50 pixels, the raster is 40x50"),
             (tmp_path / "gone.tif", "gone.tif: file not found")]
    for given, message in cases:
        # the default score without a model: refused before a quick model is trained
        result = CliRunner().invoke(main, ["detect", str(raster), str(tmp_path / "o.tif"),
                                           "--mask", str(given)])
        assert result.exit_code == 1 and message in result.output, result.output
        assert result.output.count("\n") == 1
        assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.model").exists()
    result = CliRunner().invoke(main, ["detect", str(raster), str(mask), "--mask", str(mask)])
    assert result.exit_code == 1 and "is the same file as the input" in result.output
    # by any name that reads it: these replaced the mask's raster with --overwrite
    vrt = tmp_path / "mask.vrt"
    rasterio.shutil.copy(mask, vrt, driver="VRT")
    before = mask.read_bytes()
    for name in (f"GTIFF_DIR:1:{mask}", str(vrt)):
        result = CliRunner().invoke(main, ["detect", str(raster), str(mask), "--mask", name,
                                           "--score", "rx", "--overwrite"])
        assert result.exit_code == 1 and "is the same file as the input --mask" in \
            result.output, result.output
    assert mask.read_bytes() == before
    with pytest.raises(HsanomalyError, match="is the same file as the input"):
        hsanomaly.evaluate(tmp_path / "heat.tif", str(vrt), json=mask)
    with pytest.raises(HsanomalyError, match="expected a raster's path"):
        hsanomaly.detect(raster, tmp_path / "o.tif", score="rx", mask=out)
    nothing = write_raster(tmp_path / "none.tif", np.zeros((1, 40, 50), np.float32))
    with pytest.warns(HsanomalyWarning, match="none.tif: the mask leaves out no pixel"):
        hsanomaly.detect(raster, tmp_path / "o.tif", score="rx", mask=nothing)


def test_a_quick_model_is_trained_without_the_masked_pixels(masked_scene, tmp_path,
                                                            monkeypatch):
    pytest.importorskip("torch")
    import hsanomaly.training
    from hsanomaly.model import load_bundle

    raster, mask, layer, _, out = masked_scene
    masks, train = [], hsanomaly.training.train
    monkeypatch.setattr(hsanomaly.training, "train", lambda *args, **options: masks.append(
        options.get("mask")) or train(*args, **{**options, "iterations": 5}))
    hsanomaly.detect(raster, tmp_path / "o.tif", score="resrx", mask=layer)
    assert masks == [layer]
    recorded = load_bundle(tmp_path / "o.model").meta["training"]["settings"]["mask"]
    assert recorded == [Path(str(layer)).name]
    assert np.isnan(heat(tmp_path / "o.tif")[0][out == 1]).all()


@pytest.mark.parametrize("how", ["saved", "deleted", "deleted first"])
def test_a_mask_saved_anew_before_the_quick_model_reads_it_is_refused(masked_scene, tmp_path,
                                                                      monkeypatch, how):
    """The mask was read for the scoring, then again by its path for the quick model's
    training: saved anew in between, the model learnt pixels the heatmap says were left out
    (clouds, water), with exit 0."""
    pytest.importorskip("torch")
    import os

    import hsanomaly.training

    raster, mask, _, _, out = masked_scene
    other = write_raster(tmp_path / "other.tif", np.zeros((1, 40, 50), np.float32) + (
        np.arange(50) < 4))                                    # another mask: four columns
    train = hsanomaly.training.train

    def saved_first(*args, **options):
        os.replace(other, mask)
        if how == "deleted first":                     # before the training reads it
            mask.unlink()
        bundle = train(*args, **{**options, "iterations": 5})
        if how == "deleted":                           # after
            mask.unlink()
        return bundle

    monkeypatch.setattr(hsanomaly.training, "train", saved_first)
    with pytest.raises(HsanomalyError, match=f"{mask}: the mask changed while the quick model "
                                             "was trained"):
        hsanomaly.detect(raster, tmp_path / "o.tif", score="resrx", mask=mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["holed.tif", "mask.gpkg", "scene.tif", *(["mask.tif"] if how == "saved" else [])])


def test_exclusion_windows_are_the_masks_pixels(tmp_path):
    """Packed one bit a pixel: any window, at any bit offset, reads back the mask."""
    rng = np.random.default_rng(0)
    out = rng.random((40, 50)) < 0.3
    mask = write_raster(tmp_path / "m.tif", out[None].astype(np.float32))
    scene = write_raster(tmp_path / "s.tif", synthetic_cube()[0])
    exclusion = Exclusion(mask, scene, (40, 50))
    assert exclusion.count == out.sum()
    for _ in range(300):
        row, col = rng.integers(0, 40), rng.integers(0, 50)
        rows, cols = rng.integers(1, 41 - row), rng.integers(1, 51 - col)
        np.testing.assert_array_equal(exclusion.window(row, col, rows, cols),
                                      out[row:row + rows, col:col + cols])


def test_a_mask_leaves_the_inputs_fingerprint_alone(masked_scene, tmp_path):
    """A GDAL-named input is identified by its pixels; read through the mask they gave
    another fingerprint, and --resume refused as if the input had changed."""
    import zipfile

    from hsanomaly.io.exclusion import exclude
    from hsanomaly.io.fingerprint import input_fingerprint
    from hsanomaly.io.source import open_source

    raster, mask, layer, _, _ = masked_scene
    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as archive:
        archive.write(raster, "scene.tif")
    name = f"/vsizip/{tmp_path / 'scene.zip'}/scene.tif"
    plain, masked = open_source(name), exclude(open_source(name), mask)
    assert input_fingerprint(name, masked) == input_fingerprint(name, plain)


def test_resuming_with_another_mask_names_both(masked_scene, tmp_path):
    from hsanomaly.engine.run import manifest
    from hsanomaly.engine.store import TileStore, store_path
    from hsanomaly.io.exclusion import exclude
    from hsanomaly.io.source import open_source
    from hsanomaly.scorers import make_scorer

    raster, mask, _, _, out = masked_scene
    other = write_raster(tmp_path / "other.tif", np.roll(out, 3, axis=1)[None].astype(np.float32))
    scorer, outputs = make_scorer("rx"), {"score": (str(tmp_path / "h.tif"), 1)}
    first = exclude(open_source(raster), mask)
    TileStore(store_path(tmp_path / "h.tif"), manifest(raster, first, scorer, outputs, 16)).release()
    second = exclude(open_source(raster), other)
    with pytest.raises(HsanomalyError, match=r"other settings is here \(mask: .*mask.tif "
                                             r"\(\w{8}\) -> .*other.tif \(\w{8}\)\)"):
        TileStore(store_path(tmp_path / "h.tif"), manifest(raster, second, scorer, outputs, 16),
                  resume=True)


def test_masks_that_leave_out_most_or_all_pixels(masked_scene, tmp_path):
    """A mask read as GDAL's (255 where valid) leaves out nearly everything: said; with the
    raster's nodata it may leave nothing to score, which no score may pass as a heatmap."""
    raster, mask, _, holed, out = masked_scene
    inverted = write_raster(tmp_path / "inverted.tif", (1 - out)[None].astype(np.float32) * 255)
    with pytest.warns(HsanomalyWarning, match=r"leaves out 9\d% .* non-zero where pixels are "
                                              "left OUT"):
        hsanomaly.detect(raster, tmp_path / "a.tif", score="rx", mask=inverted)
    with pytest.raises(HsanomalyError, match=": an empty name"):
        hsanomaly.detect(raster, tmp_path / "b.tif", score="rx", mask="")


def test_data_warnings_leave_the_masked_pixels_out(tmp_path):
    """A fill value under the mask is nobody's concern: the statistics never see it."""
    cube, _ = synthetic_cube()
    cube[:, :, :20] = -9999.0                         # an undeclared fill, 40 % of the scene
    raster = write_raster(tmp_path / "filled.tif", cube)
    out = np.zeros((1, 40, 50), np.float32)
    out[0, :, :20] = 1
    mask = write_raster(tmp_path / "fill.tif", out)
    with pytest.warns(HsanomalyWarning, match="hold -9999 in every band"):
        hsanomaly.detect(raster, tmp_path / "a.tif", score="rx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        hsanomaly.detect(raster, tmp_path / "b.tif", score="rx", mask=mask)


def test_a_raster_with_no_pixel_left_to_score_is_no_heatmap():
    """A score fitted on nothing (a given model's) would write an all-nodata heatmap and call it
    done: the tiles' counts refuse it."""
    from hsanomaly.engine.checks import COUNTS, check_outcome
    from hsanomaly.scorers import make_scorer

    nothing = [{COUNTS: np.array([0, 0])}, {COUNTS: np.array([0, 0])}]
    with pytest.raises(HsanomalyError, match="s.tif: no pixel to score: every one is nodata "
                                             r"\(or masked\)"):
        check_outcome("s.tif", make_scorer("rx"), nothing)
    assert check_outcome("s.tif", make_scorer("rx"), [{COUNTS: np.array([5, 0])}]) == (5, 0)


def test_one_mask_over_a_batch(masked_scene, tmp_path):
    """A region's vector mask: each raster is scored with the part of it that falls there
    (one it misses, without it); a rerun skips both; another mask rescores only the raster
    it changes; a raster mask on another grid fails that raster alone."""
    from hsanomaly.cli import main

    raster, mask, layer, _, out = masked_scene
    east = write_raster(tmp_path / "east.tif", synthetic_cube(seed=3)[0],
                        transform=TRANSFORM.translation(10000, 0) * TRANSFORM)
    with pytest.warns(HsanomalyWarning, match="fall on .*east.tif"):
        items = hsanomaly.batch.detect_many([raster, east], tmp_path / "out", score="rx",
                                            mask=layer)
    assert [item.status for item in items] == ["scored", "scored"]
    assert [item.result.mask for item in items] == [str(layer), None]
    hsanomaly.detect(raster, tmp_path / "one.tif", score="rx", mask=layer)
    hsanomaly.detect(east, tmp_path / "two.tif", score="rx")
    for item, alone in zip(items, ("one.tif", "two.tif")):
        np.testing.assert_array_equal(heat(item.dst)[0], heat(tmp_path / alone)[0])
    again = hsanomaly.batch.detect_many([raster, east], tmp_path / "out", score="rx", mask=layer)
    assert [item.status for item in again] == ["skipped", "skipped"]
    smaller = tmp_path / "smaller.gpkg"
    gpd.GeoDataFrame(geometry=[pixel_box(20, 2, 28, 12)], crs=CRS).to_file(smaller)
    changed = hsanomaly.batch.detect_many([raster, east], tmp_path / "out", score="rx",
                                          mask=smaller)
    assert [item.status for item in changed] == ["scored", "skipped"]
    result = CliRunner().invoke(main, ["detect-many", str(raster), str(east), "--out-dir",
                                       str(tmp_path / "cli"), "--score", "rx", "--mask", str(mask)])
    assert result.exit_code == 1, result.output
    assert "1 scored, 0 skipped, 1 failed" in result.output
    assert "mask.tif: the mask is not on the grid of" in result.output
