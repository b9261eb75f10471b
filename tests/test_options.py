"""Every scorer option has a kind, and a value of another kind is refused in one line, naming
the option, before anything is built, trained or read: through make_scorer and Detector (the
benchmark's methods: test_benchmark.py)."""

import re

import numpy as np
import pytest

import hsanomaly
from hsanomaly import Detector
from hsanomaly.errors import HsanomalyError, HsanomalyWarning
from hsanomaly.options import KINDS, OPTION_KINDS, TRAINING_KINDS, check_values
from hsanomaly.scorers import REGISTRY, make_scorer

CASES = [(name, option) for name, cls in REGISTRY.items() for option in cls.options]

# values of another kind, per kind; each was a TypeError, a ValueError or silently accepted
WRONG = {
    "whole": ["abc", None, True, 2.5, float("nan")],
    "optional_whole": ["abc", 1.5, True],
    "seed": ["abc", None, -1, 2**32, 1.0],
    "real": ["abc", None, True, float("nan"), float("inf")],
    "flag": ["abc", 1, None],
    "text": [3, None],
    "rings": [3, None, ((7.5, 3),), ((7, 3, 1),), "7/3;x"],
    "callback": [3, "print"],
}


def _model(name):
    return {"model": "not loaded"} if REGISTRY[name].needs_model else {}


def test_every_option_has_a_kind_and_every_kind_is_used():
    assert set(OPTION_KINDS) == {option for _, option in CASES}
    assert set(OPTION_KINDS.values()) | set(TRAINING_KINDS.values()) == set(KINDS) == set(WRONG)
    for kind in set(TRAINING_KINDS.values()) - set(OPTION_KINDS.values()):   # training's own
        for bad in WRONG[kind]:
            with pytest.raises(HsanomalyError, match=f"^'{kind}' must be"):
                check_values({kind: bad}, {kind: kind})


@pytest.mark.parametrize("name, option", CASES)
def test_a_value_of_another_kind_is_refused_in_one_line(name, option):
    for bad in WRONG[OPTION_KINDS[option]]:
        with pytest.raises(HsanomalyError, match=f"^'{option}'") as refused:
            make_scorer(name, **_model(name), **{option: bad})
        assert "\n" not in str(refused.value)


def test_numpy_scalars_and_ring_pairs_are_of_their_kinds():
    check_values({"codebook": np.int64(1024), "c2": np.float32(0.5), "seed": np.uint32(7),
                  "ignore_wavelengths": np.bool_(True), "threads": None,
                  "rings": [(7, 3), (15, 5)], "purge": 0})
    scorer = make_scorer("dualcontext", model="not loaded", codebook=np.int64(1024),
                         rings="7/3;15/5", purge=np.float64(0.05))
    assert scorer.purge == 0.05


def test_detector_refuses_a_bad_option_when_built_not_after_training():
    """Detector.fit trains a quick model for a model score; a bad value must stop it first."""
    for options, flag in (({"codebook": "abc"}, "'codebook'"), ({"purge": 0.9}, "'purge'"),
                          ({"score": "recon", "c2": -1.0}, "'c2' must be at least 0, got -1.0"),
                          ({"score": "gmm", "seed": -1}, "'seed'")):
        with pytest.raises(HsanomalyError, match=flag):
            Detector(**options)
    assert Detector(purge=0.05).get_params()["purge"] == 0.05


@pytest.mark.parametrize("bad", [0, 1, -0.1, float("nan"), float("inf"), "often", "", None, True,
                                 [0.1]])
def test_every_false_alarm_rate_is_checked_by_one_rule(bad):
    from hsanomaly.evaluation.metrics import check_pd_far
    from hsanomaly.thresholds import threshold_from_far

    scores = np.arange(100, dtype=np.float32).reshape(10, 10)
    refusals = [lambda: threshold_from_far(scores, bad), lambda: check_pd_far(bad)]
    if bad is not None:     # polygons without a rate ask for --threshold or --far instead
        refusals.append(lambda: hsanomaly.detect("in.tif", "out.tif", score="rx",
                                                 polygons="t.gpkg", far=bad))
    for refuse in refusals:
        with pytest.raises(HsanomalyError, match="must be a false-alarm rate in \\(0, 1\\)"):
            refuse()
    assert threshold_from_far(scores, "0.1") == threshold_from_far(scores, 0.1) == 89


def test_every_score_option_is_a_flag_of_detect_and_detect_many():
    """The CLI is a thin layer: an option the library takes can be given from the shell
    (gmm's ``components``, ``pca``, ``sample`` and ``seed``, ``trim``, dualcontext's
    ``weight`` had no flag), and a message's ``--<option>`` names a flag that exists."""
    from hsanomaly.cli.detect import detect
    from hsanomaly.cli.detect_many import detect_many

    options = {option for cls in REGISTRY.values() for option in cls.options}
    for command in (detect, detect_many):
        flags = {param.name for param in command.params}
        assert options <= flags, options - flags


def test_a_former_option_name_still_works_with_a_warning(recwarn):
    """Local RX's ``components`` (principal components kept) is called ``pca`` now, as gmm's
    option of that meaning is, so ``components`` means a mixture's components only. The former
    name gives the same scores and one warning naming the new one (it was said at every
    build of the scorer); giving both is refused. A detector keeps its parameters as given,
    so scikit-learn's ``clone`` and ``set_params`` round trips hold."""
    from sklearn.base import clone

    from hsanomaly.errors import HsanomalyWarning

    cube = np.random.default_rng(0).normal(size=(6, 45, 45)).astype(np.float32)
    for score in ("lrx", "mlrx"):
        with pytest.warns(HsanomalyWarning, match="calls this option 'pca' now") as said:
            former = Detector(score, components=4)
            heat = former.fit_score(cube)
        assert former.get_params()["components"] == 4
        assert len([w for w in said if "calls this option" in str(w.message)]) == 1
        assert former.scorer_.params()["pca"] == 4
        assert np.array_equal(heat, Detector(score, pca=4).fit_score(cube), equal_nan=True)
        assert clone(former).get_params() == former.get_params()
        assert former.set_params(components=7).get_params()["components"] == 7
        with pytest.raises(HsanomalyError, match="give 'pca' only"):
            make_scorer(score, components=4, pca=3)
    for score in ("context", "dualcontext"):
        with pytest.warns(HsanomalyWarning, match="'components': .* calls this option 'pca'"):
            scorer = make_scorer(score, model="not loaded", components=4)
        assert scorer.local.pca == 4
    recwarn.clear()
    assert make_scorer("gmm", components=3, pca=4).params()["components"] == 3
    assert not [w for w in recwarn if issubclass(w.category, HsanomalyWarning)]


def test_a_ring_given_twice_is_refused():
    """'7/3;7/3' counted that ring twice in every pixel's average, with no word."""
    for rings in ("7/3;15/5;7/3", ((7, 3), (7, 3))):
        with pytest.raises(HsanomalyError, match="'rings': 7/3 given more than once"):
            make_scorer("mlrx", rings=rings)


def test_rings_text_is_pairs_and_nothing_else():
    """'21/7/3' was read as the one ring 21/7, the '/3' dropped without a word."""
    assert make_scorer("mlrx", rings="7/3; 15/5,21/7 25/9;").rings == ((7, 3), (15, 5), (21, 7),
                                                                       (25, 9))
    for rings in ("21/7/3", "21", "21/7;;15/5", "7/3 and 15/5"):
        with pytest.raises(HsanomalyError, match="'rings': expected outer/guard pairs"):
            make_scorer("mlrx", rings=rings)


def test_more_pca_than_bands_is_said():
    """gmm's --pca 300 on fewer bands ran with as many components as bands and recorded 300,
    without a word."""
    import warnings

    cube = np.random.default_rng(0).normal(size=(6, 30, 30)).astype(np.float32)
    with pytest.warns(HsanomalyWarning, match="pca=10 is more than the bands .6.; the "
                                              "mixture is fitted on 6 principal components"):
        Detector("gmm", pca=10).fit(cube)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        Detector("gmm").fit(cube)             # the default is no request: no word


def test_the_cli_refuses_a_former_name_that_never_was_a_flag(synthetic_raster, tmp_path):
    """``--components`` is gmm's mixture count; given for lrx it was taken for local RX's
    principal components (its Python-only former name) with a deprecation warning."""
    from click.testing import CliRunner

    from hsanomaly.cli import main

    path, _, _ = synthetic_raster
    for command in (["detect", str(path), str(tmp_path / "heat.tif")],
                    ["detect-many", str(path), "--out-dir", str(tmp_path / "many")]):
        result = CliRunner().invoke(main, [*command, "--score", "lrx", "--components", "4"])
        assert result.exit_code == 1          # as any option the score does not take
        assert result.output.strip().splitlines()[-1] == (
            "Error: --components: score 'lrx' has no such option (its own is --pca)")
    assert [p.name for p in tmp_path.iterdir()] == ["scene.tif"]
    result = CliRunner().invoke(main, ["detect", str(path), str(tmp_path / "gmm.tif"), "--score",
                                       "gmm", "--components", "2", "-q"])
    assert result.exit_code == 0, result.output


def test_switching_score_does_not_carry_an_option_into_its_former_name():
    """gmm's mixture components became lrx's principal components through the alias, and lrx's
    former name for its principal components became gmm's mixture components."""
    detector = Detector("gmm", components=3)
    with pytest.raises(HsanomalyError, match="components: score 'gmm' takes it as components, "
                                             "score 'lrx' as pca; set it to None"):
        detector.set_params(score="lrx")
    assert detector.get_params()["score"] == "gmm"
    assert detector.set_params(score="lrx", components=None).get_params() == {
        "score": "lrx", "model": None, "tile": Detector().tile}
    with pytest.warns(HsanomalyWarning):
        local = Detector("lrx", components=5)
    with pytest.raises(HsanomalyError, match="score 'lrx' takes it as pca, score 'gmm' as "
                                             "components"):
        local.set_params(score="gmm")
    assert local.set_params(score="mlrx").get_params()["components"] == 5   # pca there too


def test_a_float32_rate_is_taken_as_written():
    """np.float32(0.001) was recorded as 0.0010000000474974513 (a report's pd_far)."""
    from hsanomaly.rates import check_rate

    assert check_rate("far", np.float32(0.001)) == 0.001
    assert check_rate("far", np.float64(0.001)) == 0.001 and check_rate("far", "1e-3") == 0.001


def test_a_rate_never_allows_every_pixel():
    """Within 1e-12 of 1 the rounding guard counted n of n pixels, a rank below the lowest
    score: the threshold became the highest score instead of the lowest."""
    from hsanomaly.rates import rate_count
    from hsanomaly.thresholds import threshold_from_far

    assert rate_count(0.29, 100) == 29 and rate_count(1 - 1e-13, 100) == 99
    # a relative slack of 1e-12 allowed a pixel too many on heatmaps of 1e10 pixels and more
    from fractions import Fraction

    for rate, n in ((0.00123, 62_927_202_439), (0.000123457, 9_276_468_730)):
        assert rate_count(rate, n) == int(Fraction(str(rate)) * n)
    assert threshold_from_far(np.arange(100.0).reshape(10, 10), 1 - 1e-13) == 0.0


def test_an_option_of_the_other_latent_search_is_said_to_do_nothing():
    """--restarts with the fast solver, --refine with the thesis's: ignored without a word."""
    import warnings

    with pytest.warns(HsanomalyWarning, match="'restarts', 'steps': an option of the other "
                                              "latent search, which solver='fast' does not use"):
        make_scorer("recon", model="not loaded", restarts=64, steps=5)
    with pytest.warns(HsanomalyWarning, match="'refine': .*solver='thesis' does not use"):
        make_scorer("resrx", model="not loaded", solver="thesis", refine=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HsanomalyWarning)
        make_scorer("recon", model="not loaded", refine=2, codebook=1024)
        make_scorer("recon", model="not loaded", solver="thesis", restarts=2, steps=3)


def test_a_batch_is_one_job_and_says_a_warning_once(synthetic_raster, tmp_path):
    """detect_many's detects are jobs inside its job: a deprecation was said once for the batch
    and once more for each raster."""
    import shutil

    import hsanomaly

    path, _, _ = synthetic_raster
    other = shutil.copy(path, tmp_path / "other.tif")
    with pytest.warns(hsanomaly.HsanomalyDeprecationWarning) as said:
        items = hsanomaly.detect_many([path, other], tmp_path / "out", score="lrx",
                                      components=4)
    assert [item.status for item in items] == ["scored", "scored"]
    assert len([w for w in said if "calls this option 'pca' now" in str(w.message)]) == 1


@pytest.mark.parametrize("name, why", [("cog", "a batch writes tiled GeoTIFF heatmaps"),
                                       ("extras", "a batch writes heatmaps, and quick looks "
                                                  "and polygons drawn from them"),
                                       ("resume", "a rerun of the batch resumes by itself")])
def test_detect_many_refuses_detect_s_job_options_as_such(tmp_path, name, why):
    """They were refused as options of the score ("--cog: score 'rx' does not take this option")."""
    import hsanomaly
    from hsanomaly.errors import HsanomalyError

    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect_many([tmp_path / "a.tif"], tmp_path / "out", score="rx", **{name: True})
    assert str(err.value) == (f"detect_many: no option {name!r}: {why} (detect takes {name}= for "
                              "one raster)")
    assert not (tmp_path / "out").exists()


def test_gmm_needs_the_pixels_a_covariance_of_its_components_needs(tmp_path):
    """gmm fitted 5 full covariances in 9 dimensions on 9 valid pixels and wrote scores from
    -43 to 3e6 where rx refuses the same raster."""
    from synthetic import synthetic_cube

    cube = synthetic_cube(bands=30, rows=3, cols=3)[0]
    with pytest.raises(HsanomalyError, match=r"a mixture of 5 components needs at least 26 valid "
                                             r"pixels \(one per component, and a covariance on 25 "
                                             r"principal components needs 26\); the raster has 9"):
        Detector("gmm").fit(cube)
    with pytest.raises(HsanomalyError, match="no component of the mixture holds the 5 pixels"):
        Detector("gmm", pca=4).fit(cube)        # 9 pixels pass, but 5 components split them
    Detector("gmm", pca=2, components=2).fit(cube)


def test_a_sample_too_small_for_the_fit_is_named_not_the_raster(synthetic_raster, tmp_path):
    """A small --sample drew 23 pixels of a raster of 10,000 and the fit said "the raster has
    23", sending the user to look for nodata."""
    from click.testing import CliRunner

    from hsanomaly.cli import main
    from synthetic import synthetic_cube, write_raster

    result = CliRunner().invoke(main, ["detect", str(synthetic_raster[0]),
                                       str(tmp_path / "heat.tif"), "--score", "gmm",
                                       "--sample", "6", "-q"])
    assert result.exit_code == 1
    assert re.search(r"a mixture of 5 components needs at least 13 valid pixels \(.*\); "
                     r"--sample 6 drew \d+ of the raster's 1965: pass at least 130$",
                     result.output.strip())
    cube = synthetic_cube()[0]
    with pytest.raises(HsanomalyError, match=r"; sample=6 drew \d+ of the raster's 2000: pass "
                                             r"at least 130$"):
        Detector("gmm", sample=6).fit(cube)
    # where a mask leaves them out, the pixels it leaves are counted as such
    outside = np.ones((40, 50), np.uint8)
    outside[20:22, 20:24] = 0                                            # 8 pixels left in
    mask = write_raster(tmp_path / "mask.tif", outside[None], dtype="uint8")
    with pytest.raises(HsanomalyError, match=r"needs at least 13 valid pixels .*; the raster has 8 "
                                             r"outside its mask$"):
        hsanomaly.detect(synthetic_raster[0], tmp_path / "masked.tif", score="gmm", mask=mask)
    # a raster of fewer valid pixels than a fit needs is told so, whatever the sample
    cube[:, 2:], cube[:, :, 4:] = np.nan, np.nan                     # 8 valid pixels
    with pytest.raises(HsanomalyError, match=r"needs at least 13 valid pixels .*; the raster has "
                                             r"8$"):
        Detector("gmm", sample=6).fit(cube)


def test_a_mixture_that_did_not_converge_is_said(monkeypatch):
    """The command line shows scikit-learn's own warnings only under -v; a mixture whose EM
    stopped before converging is hsanomaly's to say, and said once (the library said it
    twice: scikit-learn's ConvergenceWarning too)."""
    import warnings

    import hsanomaly.scorers.gmm

    from synthetic import synthetic_cube

    monkeypatch.setattr(hsanomaly.scorers.gmm, "EM_ITERATIONS", 1)
    monkeypatch.setattr(hsanomaly.scorers.gmm, "EM_STEP", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Detector("gmm").fit(synthetic_cube()[0])
    assert [str(w.message) for w in caught if "converge" in str(w.message)] == [
        "<array>: the Gaussian mixture did not converge in 1 EM iterations; its scores are "
        "those of the last"]


def test_describe_gives_one_short_line_for_any_exception():
    """The reason in a one-line message: six modules took ``str(err).splitlines()[0]``, which
    raises IndexError inside the handler for an exception without a message (a traceback)."""
    import errno

    from hsanomaly.errors import DESCRIBED, describe

    assert describe(Exception()) == "Exception"
    assert describe(ValueError("\n  \n")) == "ValueError"
    assert describe(ValueError("first\nsecond")) == "first"
    assert describe(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the device"
    assert describe(OSError(errno.EACCES, "Permission denied")) == "permission denied"
    assert describe(OSError("no errno")) == "no errno"
    assert describe(MemoryError()) == "out of memory"
    assert len(describe(ValueError("x" * 1000))) == DESCRIBED
    # past ulimit -n: evaluate's advice was "disk full or a file-size limit?"
    assert describe(OSError(errno.EMFILE, "Too many open files")) == \
        "too many open files (a limit on them, ulimit -n)"


def test_a_crs_error_without_a_message_is_one_line(monkeypatch):
    import rasterio.crs
    from rasterio.errors import CRSError

    from hsanomaly.io.inputs import as_crs

    class Refusing:
        @staticmethod
        def from_user_input(value):
            raise CRSError("")

    monkeypatch.setattr(rasterio.crs, "CRS", Refusing)
    with pytest.raises(HsanomalyError, match=r"^crs=: not a CRS \(CRSError\)$"):
        as_crs("EPSG:4326", "crs=")


@pytest.mark.parametrize("score, option, value, message", [
    ("mlrx", "purge", 0.5, "'purge' must lie in [0, 0.5), got 0.5"),
    ("mlrx", "purge", -0.1, "'purge' must lie in [0, 0.5), got -0.1"),
    ("mlrx", "neighbour_weight", -1, "'neighbour_weight' must be at least 0, got -1"),
])
def test_a_range_is_worded_once_for_every_score(score, option, value, message):
    with pytest.raises(HsanomalyError) as err:
        make_scorer(score, **{option: value})
    assert str(err.value) == message


@pytest.mark.parametrize("check", ["check_left_out", "check_not_negative"])
def test_a_range_check_refuses_nan_where_a_comparison_would_pass_it(check):
    from hsanomaly import options

    with pytest.raises(HsanomalyError, match="got nan"):
        getattr(options, check)("weight", float("nan"))


@pytest.mark.parametrize("call, message", [
    (lambda: Detector("dualcontex"), "unknown score 'dualcontex'; did you mean 'dualcontext'? "
                                     "choose one of rx, "),
    (lambda: Detector("zzz"), "unknown score 'zzz'; choose one of rx, "),
    (lambda: Detector("dualcontext", neighbor_weight=0.5),
     "'neighbor_weight': score 'dualcontext' does not take this option (did you mean "
     "'neighbour_weight'? it takes 'solver', "),
    (lambda: Detector("rx", pca=3), "'pca': score 'rx' does not take this option (it takes no "
                                    "options)"),
    (lambda: Detector("rx", tiles=3), "Detector: no option 'tiles' (did you mean 'tile'?)"),
    (lambda: hsanomaly.train("in.tif", "model", iteration=3),
     "train: no option 'iteration' (did you mean 'iterations'? the options: "),
])
def test_a_near_miss_is_named_with_the_name_meant(call, message):
    with pytest.raises(HsanomalyError) as err:
        call()
    assert str(err.value).startswith(message)


def test_a_misspelt_keyword_of_detect_is_refused_as_such_before_any_work(tmp_path):
    """``overwite=True`` used to be refused as an option of the score, listing the score's
    options: the keyword meant is named instead, and nothing is written."""
    from synthetic import synthetic_cube, write_raster

    cube, _ = synthetic_cube(rows=20, cols=20)
    src = tmp_path / "in.tif"
    write_raster(src, cube)
    with pytest.raises(HsanomalyError, match=r"^detect: no option 'overwite' \(did you mean "
                                             r"'overwrite'\?\)$"):
        hsanomaly.detect(src, tmp_path / "out.tif", score="rx", overwite=True)
    with pytest.raises(HsanomalyError, match=r"^detect_many: no option 'worker' \(did you mean "
                                             r"'workers'\?\)$"):
        hsanomaly.detect_many([src], tmp_path / "many", score="rx", worker=2)
    for score, option, meant in (("anogan", "thread", "threads"), ("anogan", "restars", "restarts"),
                                 ("dualcontext", "prge", "purge")):
        # near misses of a score's options as much as of detect's (threshold, extras, progress)
        with pytest.raises(HsanomalyError, match=rf"^'{option}': score '{score}' does not take "
                                                 rf"this option \(did you mean '{meant}'\? "):
            hsanomaly.detect(src, tmp_path / "out.tif", score=score, **{option: 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


@pytest.mark.parametrize("threads", [1.0, float("nan"), True, 0])
def test_a_gan_scores_thread_count_is_checked_as_every_whole_option(threads):
    """A scorer built directly (no front door checked its options) met runtime's own copy of
    the rule, which took 1.0 and gave a bare ValueError for NaN."""
    from hsanomaly.scorers.gan import ReconScorer

    with pytest.raises(HsanomalyError, match="'threads' must be a whole number of at least 1"):
        ReconScorer("not loaded", threads=threads)
