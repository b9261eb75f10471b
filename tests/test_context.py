"""Residual scores on top of a GAN model (hsanomaly.scorers.context)."""

import importlib.util

import numpy as np
import pytest

from hsanomaly.errors import HsanomalyError
from hsanomaly.io import ArraySource

from synthetic import synthetic_cube

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="training the test model needs torch")


@pytest.fixture(scope="module")
def scene_and_model(tmp_path_factory):
    from hsanomaly.training import train

    root = tmp_path_factory.mktemp("context")
    cube, truth = synthetic_cube(rows=30, cols=30, targets=((5, 5), (20, 22)), seed=4)
    path = root / "scene.tif"
    from synthetic import write_raster

    write_raster(path, cube)
    bundle = train([path], root / "model", iterations=3, progress=False)
    return cube, truth, bundle.path


def test_resrx_scores_pixels_alike_alone_and_in_blocks(scene_and_model):
    from hsanomaly.scorers import make_scorer

    cube, _, model = scene_and_model
    scorer = make_scorer("resrx", model=model, sample=500).fit(ArraySource(cube))
    assert scorer.halo == 0 and scorer.params()["name"] == "resrx"
    valid = np.ones(cube.shape[1:], bool)
    valid[0, :3] = False
    out = scorer.score_block(cube, valid)
    assert out["score"].shape == (1, 30, 30) and np.isnan(out["score"][0, 0, :3]).all()
    assert out["recon"].shape[0] == scorer.extras["recon"]
    alone = scorer.score_samples(cube[:, valid].T)
    np.testing.assert_allclose(out["score"][0][valid], alone, rtol=1e-5)


def test_context_adds_local_rx_and_needs_spatial_blocks(scene_and_model):
    from hsanomaly.scorers import make_scorer
    from hsanomaly.scorers.rx import LocalRX

    cube, _, model = scene_and_model
    source = ArraySource(cube)
    resrx = make_scorer("resrx", model=model, sample=500).fit(source)
    context = make_scorer("context", model=model, sample=500, outer=9, guard=3).fit(source)
    h = context.halo
    assert h == 4
    block = np.pad(cube, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    valid = np.pad(np.ones(cube.shape[1:], bool), h)
    local = LocalRX(9, 3).fit(source).score_block(block, valid)["score"][0]
    expected = resrx.score_block(cube, valid[h:-h, h:-h])["score"][0] + np.log(local + 1e-12)
    np.testing.assert_allclose(context.score_block(block, valid)["score"][0], expected,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(HsanomalyError, match="use score_block"):
        context.score_samples(cube[:, 0, :].T)
    with pytest.raises(HsanomalyError, match="unknown score"):
        make_scorer("bogus", model=model)
    with pytest.raises(HsanomalyError, match="--outer: score 'resrx' does not take"):
        make_scorer("resrx", model=model, outer=9)


def test_purge_is_checked_and_offered_only_where_there_are_rings():
    from hsanomaly.scorers import check_options, make_scorer

    with pytest.raises(HsanomalyError, match="--purge must lie in"):
        make_scorer("dualcontext", model="m", purge=0.5)
    with pytest.raises(HsanomalyError, match="does not take this option"):
        check_options("resrx", {"purge": 0.01})
    check_options("dualcontext", {"purge": 0.01})
