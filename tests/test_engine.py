import numpy as np
import pytest
import rasterio
from sklearn.metrics import roc_auc_score

from hsanomaly.engine import detect
from hsanomaly.errors import HsanomalyError
from hsanomaly.io import ArraySource
from hsanomaly.scorers import GlobalRX, LocalRX, make_scorer

from synthetic import CRS, TRANSFORM, synthetic_cube


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


@pytest.mark.parametrize("score", ["rx", "lrx", "gmm"])
def test_georeferencing_size_and_nodata_round_trip(tmp_path, synthetic_raster, score):
    path, truth, nodata_mask = synthetic_raster
    opts = {"outer": 9, "guard": 3} if score == "lrx" else {}
    detect(path, tmp_path / "out.tif", make_scorer(score, **opts), tile=16, progress=False)
    heat, profile = read(tmp_path / "out.tif")
    assert profile["crs"] == CRS and profile["transform"] == TRANSFORM
    assert (profile["width"], profile["height"]) == (50, 40)
    assert profile["dtype"] == "float32" and profile["tiled"] and profile["compress"] == "deflate"
    assert np.isnan(profile["nodata"])
    np.testing.assert_array_equal(np.isnan(heat), nodata_mask)
    ok = ~nodata_mask
    if score != "gmm":  # a 5-component mixture fits the two tight planted clusters themselves
        assert roc_auc_score(truth[ok], heat[ok]) > 0.99
    assert not (tmp_path / "out.tif.partial").exists()


def test_tiling_does_not_change_scores(tmp_path):
    cube, _ = synthetic_cube()
    for score, opts in (("rx", {}), ("lrx", {"outer": 7, "guard": 3})):
        detect(ArraySource(cube), tmp_path / "a.tif", make_scorer(score, **opts), tile=256, progress=False)
        detect(ArraySource(cube), tmp_path / "b.tif", make_scorer(score, **opts), tile=16, progress=False)
        np.testing.assert_allclose(read(tmp_path / "a.tif")[0], read(tmp_path / "b.tif")[0], rtol=1e-5)


def test_global_rx_equals_mahalanobis_in_memory():
    cube, _ = synthetic_cube()
    X = cube.reshape(cube.shape[0], -1).T.astype(np.float64)
    rx = GlobalRX().fit(ArraySource(cube))
    d = X - X.mean(0)
    expected = np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(X.T)), d)
    np.testing.assert_allclose(rx.score_samples(X), expected, rtol=1e-4)


def test_local_rx_matches_brute_force_ring():
    cube, _ = synthetic_cube(bands=6, rows=20, cols=20)
    lrx = LocalRX(outer=7, guard=3, components=4, ridge=0).fit(ArraySource(cube))
    block, valid = ArraySource(cube).read(ArraySource(cube).windows()[0], lrx.halo)
    heat = lrx.score_block(block, valid)["score"][0]
    x = (cube.reshape(6, -1).T - lrx.mean_) @ lrx.projection_
    x = x.reshape(20, 20, 4)
    r, c = 10, 9
    ring = [x[i, j] for i in range(r - 3, r + 4) for j in range(c - 3, c + 4)
            if max(abs(i - r), abs(j - c)) > 1]
    ring = np.array(ring)
    d = x[r, c] - ring.mean(0)
    expected = d @ np.linalg.solve(np.cov(ring.T), d)
    assert heat[r, c] == pytest.approx(expected, rel=1e-3)
    assert np.isfinite(heat).all()  # edge pixels use the part of the ring inside the image


def test_cancel_leaves_nothing(tmp_path):
    cube, _ = synthetic_cube()
    with pytest.raises(HsanomalyError, match="cancelled"):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               callback=lambda fraction, message: fraction > 0.2)
    assert list(tmp_path.iterdir()) == []


def test_resume_after_interruption_gives_identical_output(tmp_path):
    cube, _ = synthetic_cube()
    detect(ArraySource(cube), tmp_path / "full.tif", GlobalRX(), tile=16, progress=False)

    def interrupt(fraction, message):
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               callback=interrupt)
    assert not (tmp_path / "out.tif").exists()
    finished = len(list((tmp_path / "out.tif.partial").glob("tile_*.npz")))
    assert 0 < finished < 12
    result = detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
                    resume=True)
    assert result.tiles_resumed == finished
    np.testing.assert_array_equal(read(tmp_path / "out.tif")[0], read(tmp_path / "full.tif")[0])


def test_resume_with_other_settings_is_refused(tmp_path):
    cube, _ = synthetic_cube()
    with pytest.raises(KeyboardInterrupt):
        detect(ArraySource(cube), tmp_path / "out.tif", GlobalRX(), tile=16, progress=False,
               callback=lambda f, m: f > 0 and (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(HsanomalyError, match="other settings"):
        detect(ArraySource(cube), tmp_path / "out.tif", LocalRX(), tile=16, progress=False,
               resume=True)


def test_window_larger_than_image(tmp_path):
    cube, _ = synthetic_cube(rows=8, cols=8)
    with pytest.raises(HsanomalyError, match="15x15 window of score 'lrx' is larger than the 8x8"):
        detect(ArraySource(cube), tmp_path / "o.tif", LocalRX(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_score():
    with pytest.raises(HsanomalyError, match="unknown score 'foo'"):
        make_scorer("foo")
