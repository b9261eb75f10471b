"""The library inside other programs (a web service, a notebook, a pipeline): calls in threads,
the caller's warning filters and torch random state, and exceptions of the caller's callback."""

import json
import threading
import time
import traceback
import warnings
from pathlib import Path

import pytest

import hsanomaly
from hsanomaly.errors import ignoring

TRAINING = dict(iterations=4, batch=32, critic_steps=2, threads=1)


def test_overlapping_ignored_warnings_leave_the_callers_filters_as_they_were():
    """``catch_warnings`` puts back the filter list it saved: blocks that overlap in threads
    (entered A, B; left A, B) left B's filter for good, and dropped one the caller set
    meanwhile (the threads audit's F2)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)     # the caller's, kept
    before = list(warnings.filters)
    first, second = ignoring(RuntimeWarning), ignoring(UserWarning, "a library's")
    first.__enter__()
    second.__enter__()
    warnings.simplefilter("error", BytesWarning)               # the caller's, set meanwhile
    first.__exit__(None, None, None)
    with pytest.raises(UserWarning, match="not this one"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            warnings.warn("not this one")
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("a library's notice")                   # still ignored: B is in
        warnings.warn("the caller's own", RuntimeWarning)     # no longer: A has left
    assert [str(w.message) for w in seen] == ["the caller's own"]
    second.__exit__(None, None, None)
    assert warnings.filters[0][:3] == ("error", None, BytesWarning)
    assert list(warnings.filters[1:]) == before
    with ignoring(RuntimeWarning), ignoring(RuntimeWarning):  # a filter each, taken out
        assert len(warnings.filters) == len(before) + 3        # by each
    warnings.filterwarnings("ignore", category=RuntimeWarning)     # the caller's, equal
    with ignoring(RuntimeWarning):
        pass
    assert warnings.filters[0][:3] == ("ignore", None, RuntimeWarning)   # not taken for ours
    warnings.filters.pop(0)
    assert list(warnings.filters[1:]) == before


def test_the_package_never_saves_and_restores_the_warning_filters():
    """Every warning the library hides goes through ``errors.ignoring`` (which uses
    ``catch_warnings`` only where filters are per context, and so safe)."""
    root = Path(hsanomaly.__file__).parent
    users = [str(path.relative_to(root)) for path in root.rglob("*.py")
             if "catch_warnings(" in path.read_text()]
    assert users == ["errors.py"]


def test_a_block_puts_its_filter_first_whatever_the_caller_set_meanwhile():
    """The caller's ``simplefilter("error")`` set while one block hid a warning: a second
    block sharing the first one's filter left it behind the caller's, and raised (the
    review's F9); a caller's ``resetwarnings`` dropped a filter whose place the block then
    took out of the list by its old index (the re-review's F2)."""
    with warnings.catch_warnings():
        with ignoring(RuntimeWarning):
            warnings.simplefilter("error", RuntimeWarning)
            with ignoring(RuntimeWarning):
                warnings.warn("hidden", RuntimeWarning)          # not raised
        with pytest.raises(RuntimeWarning):                      # the blocks over: the
            warnings.warn("the caller's error", RuntimeWarning)  # caller's filter again
    with warnings.catch_warnings():
        with ignoring(RuntimeWarning):
            warnings.resetwarnings()
            warnings.simplefilter("error", UserWarning)
        assert warnings.filters[0][:3] == ("error", None, UserWarning)


def test_trainings_in_threads_give_the_models_they_give_alone(synthetic_raster, tmp_path,
                                                            monkeypatch):
    """torch seeds a network's weights from its one process-wide generator: a training that
    seeded it while another was building its networks gave that one weights of its own seed
    (the threads audit's F1)."""
    torch = pytest.importorskip("torch")
    import hsanomaly.training.networks as networks

    path = synthetic_raster[0]

    def files(bundle):
        return json.loads((Path(bundle.path) / "model.json").read_text())["files"]

    alone = [files(hsanomaly.train([path], tmp_path / f"alone{seed}", seed=seed, **TRAINING))
             for seed in (1, 2)]
    entered, second_in = [], threading.Event()

    class Interleaved(networks.Generator):
        """The first training to build waits (2 s at most) for the other to be building
        too, and then builds while that one waits half a second."""
        def __init__(self, *args, **kwargs):
            entered.append(True)
            if len(entered) == 1:
                second_in.wait(2.0)
            else:
                second_in.set()
                time.sleep(0.5)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(networks, "Generator", Interleaved)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    results = {}

    def run(seed):
        results[seed] = files(hsanomaly.train([path], tmp_path / f"thread{seed}", seed=seed,
                                              **TRAINING))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(entered) == 2 and [results[1], results[2]] == alone
    assert torch.equal(torch.random.get_rng_state(), state)   # the caller's, untouched


class ClientGone(BrokenPipeError):
    """What a web service's progress callback raises when its client has gone."""


def _hang_up(fraction, message):
    if fraction > 0.3:
        raise ClientGone(32, "Broken pipe")


def _assert_the_callers_own(err):
    assert isinstance(err.value, ClientGone)
    frames = [frame.name for frame in traceback.extract_tb(err.value.__traceback__)]
    assert "_hang_up" in frames


def test_an_os_error_of_the_callers_callback_reaches_the_caller_as_it_is(synthetic_raster,
                                                                         tmp_path):
    """A callback's BrokenPipeError became "<heatmap>: broken pipe; the finished tiles are
    kept": the output blamed, the caller's ``except BrokenPipeError`` passed by and its
    traceback gone (the threads audit's F3); a batch went on to its next raster."""
    path = synthetic_raster[0]
    with pytest.raises(ClientGone) as err:
        hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", tile=16, callback=_hang_up)
    _assert_the_callers_own(err)
    assert not (tmp_path / "heat.tif").exists()
    result = hsanomaly.detect(path, tmp_path / "heat.tif", score="rx", tile=16, resume=True)
    assert result.tiles_resumed > 0                    # kept, as for an interrupt

    second = tmp_path / "second.tif"
    second.write_bytes(Path(path).read_bytes())
    with pytest.raises(ClientGone) as err:
        hsanomaly.detect_many([path, second], tmp_path / "batch", score="rx", tile=16,
                              callback=_hang_up)
    _assert_the_callers_own(err)
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == [
        f"{Path(path).stem}_rx.tif.partial"]           # the second raster never started


def test_an_error_of_the_callers_callback_in_training_reaches_the_caller(synthetic_raster,
                                                                        tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(ClientGone) as err:
        hsanomaly.train([synthetic_raster[0]], tmp_path / "model", callback=_hang_up,
                        **TRAINING)
    _assert_the_callers_own(err)
    assert not (tmp_path / "model").exists()
