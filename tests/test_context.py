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
    assert out["recon"].shape[0] == scorer.extra_bands["recon"]
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
    with pytest.raises(HsanomalyError, match="'outer': score 'resrx' does not take"):
        make_scorer("resrx", model=model, outer=9)


def test_purge_is_checked_and_offered_only_where_there_are_rings():
    from hsanomaly.scorers import check_options, make_scorer

    with pytest.raises(HsanomalyError, match="'purge' must lie in"):
        make_scorer("dualcontext", model="m", purge=0.5)
    with pytest.raises(HsanomalyError, match="does not take this option"):
        check_options("resrx", {"purge": 0.01})
    check_options("dualcontext", {"purge": 0.01})


@pytest.mark.parametrize("score, names", [
    ("resrx", ["resrx"]), ("context", ["resrx", "pixel rings"]),
    ("rescontext", ["resrx", "residual rings"]),
    ("dualcontext", ["resrx", "residual rings", "pixel rings"])])
def test_a_scores_terms_are_what_it_sums(scene_and_model, score, names):
    """``terms`` names each log term; the score of a block is ``weight`` x resrx plus the
    others, in both purge passes (the second leaves the first's top pixels out of the rings)."""
    from hsanomaly.scorers import make_scorer

    cube, _, model = scene_and_model
    options = {"rings": "5/3;9/5", "weight": 0.5, "purge": 0.05, "neighbour_weight": 0} \
        if score == "dualcontext" else {}             # the lift: tests/test_references.py
    scorer = make_scorer(score, model=model, sample=500, **options).fit(ArraySource(cube))
    h = scorer.halo
    block = np.pad(cube, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    valid = np.pad(np.ones(cube.shape[1:], bool), h)
    terms = scorer.terms(block, valid)[0]
    first = terms(None, h)
    assert list(first) == names and all(t.shape == (30, 30) for t in first.values())
    weight = scorer.weight
    by_hand = weight * first["resrx"] + sum(first[n] for n in names[1:])
    if not scorer.purge:
        np.testing.assert_allclose(scorer.score_block(block, valid)["score"][0], by_hand,
                                   rtol=1e-6)
        return
    assert weight == 0.5
    ring = scorer.ring_halo
    first = terms(None, ring)
    exclude = np.zeros(valid.shape, bool)
    exclude[ring:-ring, ring:-ring] = (weight * first["resrx"] + first["residual rings"]
                                       + first["pixel rings"]) > scorer.purge_threshold_
    second = terms(exclude, h)
    by_hand = weight * second["resrx"] + second["residual rings"] + second["pixel rings"]
    np.testing.assert_allclose(scorer.score_block(block, valid)["score"][0], by_hand, rtol=1e-6)
    assert exclude.any() and not np.allclose(second["pixel rings"], terms(None, h)["pixel rings"])


def test_the_latent_search_treats_pixels_alike_in_any_batch(scene_and_model):
    """What lets neighbouring blocks share their halo's residuals (scorers/halo.py): a pixel's
    residual and outputs are the same bits whatever other pixels it is solved with."""
    from hsanomaly.scorers import make_scorer

    cube, _, model = scene_and_model
    scorer = make_scorer("dualcontext", model=model, rings="5/3;9/5").fit(ArraySource(cube))
    pixels = cube.reshape(cube.shape[0], -1).T
    whole, outputs = scorer._residual(pixels)
    picks = [np.arange(a, b) for a, b in ((0, 1), (7, 300), (301, 900), (123, 124), (40, 42))]
    picks += [np.arange(a, a + n) for a in range(0, 880, 97) for n in (3, 13, 17)]
    picks.append(np.random.default_rng(0).permutation(len(pixels))[:211])
    for pick in picks:
        part, part_outputs = scorer._residual(pixels[pick])
        np.testing.assert_array_equal(part, whole[pick])
        for name in ("recon", "latent", "convergence"):
            np.testing.assert_array_equal(part_outputs[name], outputs[name][pick])
    # where a pixel's answer may depend on its batch, blocks do not share them
    assert scorer.shares_halo
    assert not make_scorer("dualcontext", model=model, rings="5/3;9/5", refine=1).shares_halo
    assert not make_scorer("dualcontext", model=model, rings="5/3;9/5", solver="thesis").shares_halo


@pytest.mark.parametrize("score, options", [
    ("dualcontext", {"rings": "5/3;9/5"}),
    ("rescontext", {"rings": "5/3;9/5", "purge": 0.0, "neighbour_weight": 0.5}),
    ("resrx", {"neighbour_weight": 0.5})])
def test_blocks_sharing_their_halos_score_as_blocks_alone(scene_and_model, score, options,
                                                         monkeypatch):
    """The engine's tiles (two at a time in threads, neighbours taking the residuals their
    neighbours kept) give every output bit for bit as each block scored on its own."""
    from hsanomaly.engine import score_array
    from hsanomaly.engine.tiles import tile_outputs
    from hsanomaly.scorers import make_scorer
    from hsanomaly.scorers.halo import HaloCache

    taken, fill = [], HaloCache.fill

    def counting_fill(self, place, values, known):
        fill(self, place, values, known)
        taken.append(int(known.sum()))

    monkeypatch.setattr(HaloCache, "fill", counting_fill)

    _, _, model = scene_and_model
    cube, _ = synthetic_cube(rows=61, cols=70, targets=((10, 10), (40, 50)), seed=9)
    cube[:, 20:26, 33:37] = np.nan                       # nodata inside shared halos
    source = ArraySource(cube)
    scorer = make_scorer(score, model=model, **options).fit(source)
    assert scorer.shares_halo
    shared = score_array(source, scorer, tile=16)
    assert sum(taken) > 0                                  # blocks took their neighbours' pixels
    assert getattr(scorer, "_cache", None) is None         # and let go of them at the end
    for window in source.windows(16):
        alone = tile_outputs(scorer, *source.read(window, scorer.halo))
        rows, cols = window.toslices()
        for name, value in alone.items():
            if name in shared:
                np.testing.assert_array_equal(shared[name][:, rows, cols], value, err_msg=name)


def test_the_halo_cache_keeps_lower_strips_until_passed_for_one_source_within_its_size():
    from hsanomaly.scorers.halo import HaloCache, Place

    strip = 2 * 4 * 10 * 4                                     # bytes: 2 channels, 4 rows, 10 cols
    cache = HaloCache(halo=2, max_bytes=2 * strip)
    values = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    known = np.ones((10, 10), bool)
    cache.keep(Place("a", 0, 0), values, known)
    assert list(cache._strips) == [Place("a", 6, 0)]             # its last 2 * halo rows
    found, have = np.zeros((2, 10, 10), np.float32), np.zeros((10, 10), bool)
    cache.fill(Place("a", 6, 6), found, have)                    # the block below and right
    assert have[:4, :4].all() and have.sum() == 16
    np.testing.assert_array_equal(found[:, :4, :4], values[:, 6:, 6:])
    cache.keep(Place("a", 0, 6), values, known)
    cache.keep(Place("a", 0, 12), values, known)                 # beyond max_bytes: not kept
    assert list(cache._strips) == [Place("a", 6, 0), Place("a", 6, 6)]
    cache.keep(Place("a", 6, 17), values, known)                 # the row below, past both
    assert list(cache._strips) == [Place("a", 12, 17)]
    cache.keep(Place("b", 0, 0), values, known)
    assert list(cache._strips) == [Place("b", 6, 0)]             # another source: only its own
    assert cache._bytes == strip


def _counting_solves(monkeypatch):
    """A list that the latent search appends each call's pixel count to."""
    from hsanomaly.latent import fast

    solved, solve = [], fast.FastSolver.solve

    def counting(self, generator, x):
        solved.append(len(x))
        return solve(self, generator, x)

    monkeypatch.setattr(fast.FastSolver, "solve", counting)
    return solved


def test_a_scene_of_one_tile_is_solved_and_first_passed_once_from_fit_to_scores(
        scene_and_model, monkeypatch):
    """The purge fit of a scene of at most a tile is its one tile's block: the scoring solved
    every pixel and ran the whole first pass (latent search and rings) again, a third or more
    of a small scene's work, and a sample of every pixel was solved apart before. Each pixel
    is solved once now, the first pass run once, with the same bits as a scoring that does
    all the work itself; and what was kept is let go once scored."""
    from hsanomaly.engine import fit_and_score, fit_scorer, score_array
    from hsanomaly.scorers import make_scorer
    from hsanomaly.scorers.rings import MultiRingLRX

    _, _, model = scene_and_model
    cube, _ = synthetic_cube(rows=41, cols=37, targets=((10, 10), (30, 25)), seed=5)
    cube[:, 3:6, 30:33] = np.nan
    source = ArraySource(cube)
    redone = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    fit_scorer(redone, source)                  # not scored next: what it kept is let go
    assert getattr(redone, "_cache", None) is None
    assert getattr(make_scorer("dualcontext", model=model, rings="5/3;9/5").fit(source),
                   "_cache", None) is None      # nor by a fit of its own (it keeps on request)
    expected = score_array(source, redone)

    solved = _counting_solves(monkeypatch)
    first_passes, log_score = [], MultiRingLRX.log_score

    def counting(self, block, valid, exclude=None, crop=None):
        first_passes.append(exclude is None)
        return log_score(self, block, valid, exclude, crop)

    monkeypatch.setattr(MultiRingLRX, "log_score", counting)
    scorer = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    fit_scorer(scorer, source, then_scored=True)
    fitted, fit_first_passes = sum(solved), sum(first_passes)
    found = score_array(source, scorer)
    assert fitted == 41 * 37 - 9                 # each valid pixel once, its sample included
    assert sum(solved) == fitted and sum(first_passes) == fit_first_passes == 2
    assert len(first_passes) == 4               # the fit's first pass, the scoring's second
    for name, value in expected.items():
        np.testing.assert_array_equal(found[name], value, err_msg=name)
    assert getattr(scorer, "_cache", None) is None
    np.testing.assert_array_equal(fit_and_score(source, make_scorer(
        "dualcontext", model=model, rings="5/3;9/5"))["score"], expected["score"])


def test_the_fits_blocks_serve_the_tiles_that_overlap_them(scene_and_model, monkeypatch):
    """On a scene of several fit windows, the tiles solve no pixel the purge fit solved in
    their blocks (kept whole, not only their lower strips), and give the same bits as tiles
    that solve everything themselves."""
    from hsanomaly.engine import fit_scorer, score_array
    from hsanomaly.scorers import make_scorer, purge
    from hsanomaly.scorers.halo import HaloCache

    _, _, model = scene_and_model
    monkeypatch.setattr(purge, "TILE", 24)                 # windows of a larger scene, here
    monkeypatch.setattr(purge, "FIT_TILE", 12)
    cube, _ = synthetic_cube(rows=61, cols=70, targets=((10, 10), (40, 50)), seed=9)
    source = ArraySource(cube)
    windows = purge.fit_windows(61, 70)
    assert len(windows) == 4
    alone = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    fit_scorer(alone, source)
    expected = score_array(source, alone, tile=16)

    solved_at, fill = np.zeros((61, 70), int), HaloCache.fill

    def spying(self, place, values, known):
        fill(self, place, values, known)
        rows, cols = np.nonzero(~known)
        rows, cols = rows + place.row, cols + place.col
        inside = (rows >= 0) & (rows < 61) & (cols >= 0) & (cols < 70)
        np.add.at(solved_at, (rows[inside], cols[inside]), 1)

    scorer = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    fit_scorer(scorer, source, then_scored=True)
    monkeypatch.setattr(HaloCache, "fill", spying)
    found = score_array(source, scorer, tile=16, threads=1)
    h = scorer.halo
    fitted = np.zeros((61, 70), bool)
    for w in windows:
        fitted[max(w.row_off - h, 0):w.row_off + w.height + h,
               max(w.col_off - h, 0):w.col_off + w.width + h] = True
    assert solved_at.any() and not solved_at[fitted].any()
    for name, value in expected.items():
        np.testing.assert_array_equal(found[name], value, err_msg=name)


def test_the_halo_cache_keeps_a_fit_block_whole_and_its_first_pass_for_one_block():
    from hsanomaly.scorers.halo import HaloCache, Place

    cache = HaloCache(halo=2)
    values = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    cache.keep(Place("a", -2, 0), values, np.ones((10, 12), bool), whole=True)
    assert list(cache._strips) == [Place("a", -2, 0)]
    # a block right of it, whose next row still reaches it: it stays (it was dropped as a
    # lower strip of the row above would be)
    cache.keep(Place("a", 0, 14), values[:, :6], np.ones((6, 12), bool))
    assert Place("a", -2, 0) in cache._strips
    found, have = np.zeros((2, 8, 8), np.float32), np.zeros((8, 8), bool)
    cache.fill(Place("a", 2, 0), found, have)
    assert have[:6].all() and have.sum() == 6 * 8
    np.testing.assert_array_equal(found[:, :6], values[:, 4:, :8])
    cache.keep(Place("a", 8, 14), values[:, :6], np.ones((6, 12), bool))    # past it: dropped
    assert Place("a", -2, 0) not in cache._strips
    first = np.ones((6, 8))
    cache.keep_first_pass(Place("a", -2, -2), first)
    assert cache.take_first_pass(Place("a", -2, -2), (6, 9)) is None    # another block's shape
    cache.keep_first_pass(Place("a", -2, -2), first)
    assert cache.take_first_pass(Place("b", -2, -2), (6, 8)) is None    # another source
    assert cache.take_first_pass(Place("a", -2, -2), (6, 8)) is first
    assert cache.take_first_pass(Place("a", -2, -2), (6, 8)) is None    # taken once


def test_a_detectors_fit_score_solves_each_pixel_of_a_small_scene_once(
        scene_and_model, monkeypatch):
    """``fit_score`` fits and scores one source, so its scoring takes what the fit solved;
    the heatmap is ``fit(X).score(X)``'s, bit for bit."""
    import hsanomaly

    cube, _, model = scene_and_model
    expected = hsanomaly.Detector("dualcontext", model=model, rings="5/3;9/5").fit(cube).score(cube)
    solved = _counting_solves(monkeypatch)
    detector = hsanomaly.Detector("dualcontext", model=model, rings="5/3;9/5")
    found = detector.fit_score(cube)
    np.testing.assert_array_equal(found, expected)
    assert sum(solved) == 30 * 30               # the sample, the purge fit and the tile
    assert getattr(detector.scorer_, "_cache", None) is None


def test_a_run_gathers_and_shares_only_the_extras_it_writes(scene_and_model, tmp_path,
                                                           monkeypatch):
    """Extras a run does not write are not gathered into its tiles' results nor kept in the
    strips neighbouring blocks share (they took over half of that room, so a swath half as
    wide lost its strips); the heatmap is the same bits, and the caller's scorer still
    offers every extra."""
    import rasterio

    from hsanomaly.engine import detect
    from hsanomaly.scorers import context, make_scorer
    from hsanomaly.scorers.halo import HaloCache
    from synthetic import write_raster

    kept, keep = [], HaloCache.keep
    gathered, score_block = [], context.ResidualScorer.score_block

    def spying_keep(self, place, values, known, whole=False):
        kept.append(values.shape[0])
        keep(self, place, values, known, whole)

    def spying_score_block(self, block, valid, place=None):
        found = score_block(self, block, valid, place)
        gathered.append(sorted(found))
        return found

    monkeypatch.setattr(HaloCache, "keep", spying_keep)
    monkeypatch.setattr(context.ResidualScorer, "score_block", spying_score_block)
    _, _, model = scene_and_model
    cube, _ = synthetic_cube(rows=40, cols=44, targets=((10, 10), (30, 25)), seed=6)
    write_raster(tmp_path / "in.tif", cube)
    scorer = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    bands = scorer.model_bundle.bands
    heatmaps = {}
    for extras in ({}, {"recon": tmp_path / "recon.tif"}):
        kept.clear(), gathered.clear()
        dst = tmp_path / f"heatmap-{len(extras)}.tif"
        detect(tmp_path / "in.tif", dst, scorer, extras=extras, tile=16)
        assert set(kept) == {bands * (1 + len(extras))}      # the residual, and recon's
        assert gathered and all(names == sorted(["score", *extras]) for names in gathered)
        with rasterio.open(dst) as heatmap:
            heatmaps[len(extras)] = heatmap.read(1)
    np.testing.assert_array_equal(heatmaps[0], heatmaps[1])
    assert set(scorer.extra_bands) == {"recon", "latent", "convergence"}
    assert set(scorer.gan.extra_bands) == {"recon", "latent", "convergence"}
    recon = make_scorer("recon", model=model)
    assert recon.planned({"score": None}).extra_bands == {}
    assert recon.planned({"latent": None}).extra_bands == {"latent": recon.bundle.latent_dim}
    assert recon.planned(["recon", "latent", "convergence"]) is recon


def test_a_detector_gathers_the_extras_only_where_they_are_asked_for(scene_and_model,
                                                                     monkeypatch):
    """``Detector.score`` and ``fit_score`` gathered every extra output of every pixel (the
    reconstruction's bands and more, for a cube) and dropped them; ``score_outputs`` gives
    them, after either, and the scores agree bit for bit."""
    import hsanomaly
    from hsanomaly.scorers import context

    gathered, score_block = [], context.ResidualScorer.score_block

    def spying_score_block(self, block, valid, place=None):
        found = score_block(self, block, valid, place)
        gathered.append(sorted(found))
        return found

    monkeypatch.setattr(context.ResidualScorer, "score_block", spying_score_block)
    cube, _, model = scene_and_model
    options = dict(model=model, rings="5/3;9/5", tile=16)
    fitted = hsanomaly.Detector("dualcontext", **options).fit(cube)
    scores = [fitted.score(cube)]
    assert gathered and all(names == ["score"] for names in gathered)
    both = hsanomaly.Detector("dualcontext", **options)
    scores.append(both.fit_score(cube))
    assert all(names == ["score"] for names in gathered)
    gathered.clear()
    for detector in (fitted, both):
        outputs = detector.score_outputs(cube)
        assert sorted(outputs) == ["latent", "recon", "score"]
        scores.append(outputs["score"])
    assert all(names == ["convergence", "latent", "recon", "score"] for names in gathered)
    for score in scores[1:]:
        np.testing.assert_array_equal(score, scores[0])
    assert set(both.scorer_.extra_bands) == {"recon", "latent", "convergence"}   # as after fit


def test_scoring_through_a_planned_copy_leaves_the_scorer_and_its_sessions_as_they_were(
        scene_and_model, tmp_path, monkeypatch):
    """A run's copy of a scorer (``Scorer.planned``) shared its rings, so a run on another
    scene refitted half of the caller's scorer (its rings, not its residual statistics);
    and each ``Detector.score`` opened the networks' sessions anew."""
    import hsanomaly
    import hsanomaly.runtime
    from hsanomaly.engine import detect, fit_scorer
    from hsanomaly.scorers import make_scorer
    from synthetic import write_raster

    cube, _, model = scene_and_model
    scorer = make_scorer("dualcontext", model=model, rings="5/3;9/5")
    fit_scorer(scorer, ArraySource(cube))
    fitted = [np.copy(rings.locals[0].mean_) for rings in (scorer.local, scorer.residual_local)]
    other, _ = synthetic_cube(rows=30, cols=30, targets=((8, 8),), seed=11)
    write_raster(tmp_path / "other.tif", other * 3 + 1)
    detect(tmp_path / "other.tif", tmp_path / "heat.tif", scorer, tile=16)
    for rings, mean in zip((scorer.local, scorer.residual_local), fitted):
        np.testing.assert_array_equal(rings.locals[0].mean_, mean)

    detector = hsanomaly.Detector("recon", model=model).fit(cube)    # the bundle checked
    opened, open_session = [], hsanomaly.runtime.open_session
    monkeypatch.setattr(hsanomaly.runtime, "open_session",
                        lambda *args, **kwargs: opened.append(1) or open_session(*args, **kwargs))
    for _ in range(3):
        detector.score(cube)
    assert len(opened) == 1


def test_the_dual_context_fit_lets_a_cancel_through_in_its_search_and_its_purge(scene_and_model):
    from hsanomaly.scorers import make_scorer
    from test_engine import cancel_points_passed

    cube, _, model = scene_and_model
    scorer = make_scorer("dualcontext", model=model)
    passed = cancel_points_passed(lambda: scorer.fit(ArraySource(cube)))
    assert {"_Source.read", "FastSolver.solve", "results"} <= passed     # results: the purge's
