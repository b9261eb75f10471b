"""Commit, cleanup and fallback paths reached only by a fault: a killed run's commit finished
by the next write when a rename fails or a staged output is gone, a commit where renameat2
cannot swap (a folder renamed over, a failed move put back, a swap that cannot be undone),
the checks after writing, a side file that cannot be removed, a tile store damaged or
unmakeable, and a model bundle tampered with and re-signed (its checksums updated).

Each fault is real (a process killed between its renames, a file removed, truncated, made
immutable or a link) or a low-level call made to fail (``os.replace``, ``os.mkdir``,
renameat2's wrapper). What is checked is what the user sees: the message, the earlier output
intact, nothing half-written left.
"""

import errno
import functools
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import hsanomaly
from hsanomaly.errors import HsanomalyError
from hsanomaly.io import atomic
from hsanomaly.io.checks import HsanomalyWarning

from .conftest import Tree, make_scene, reference, sha256

# --- a killed run's commit, finished by the next write -------------------------------------

KILLED_BETWEEN_RENAMES = """
import os, sys
from pathlib import Path
from hsanomaly.io import atomic

folder = Path(sys.argv[1])
real_replace, real_rename2 = os.replace, atomic._rename2

def rename_then_die(rename, src, dst, *flag):
    done = rename(src, dst, *flag)
    if Path(dst) == folder / "a.txt" and done is not False:
        os._exit(9)                            # a.txt in place, b.txt and model not yet
    return done

atomic.os.replace = lambda src, dst: rename_then_die(real_replace, src, dst)
atomic._rename2 = lambda src, dst, flag: rename_then_die(real_rename2, src, dst, flag)
with atomic.staged() as stage:
    stage.path(folder / "a.txt").write_text("new a")
    stage.path(folder / "b.txt").write_text("new b")
    (stage.directory(folder / "model") / "w").write_text("new model")
"""


def killed_between_renames(folder):
    """Earlier outputs a.txt, b.txt and model/w; a run that replaces all three killed once
    a.txt is in place (its journal left to finish the others)."""
    (folder / "a.txt").write_text("old a")
    (folder / "b.txt").write_text("old b")
    (folder / "model").mkdir()
    (folder / "model" / "w").write_text("old model")
    died = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert died.returncode == 9, died.stderr
    assert [(folder / n).read_text() for n in ("a.txt", "b.txt", "model/w")] == \
        ["new a", "old b", "old model"]


def next_write(folder):
    """Another write in the folder (it finishes the killed run's commit first); its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with atomic.atomic_path(folder / "other.txt") as tmp:
            tmp.write_text("x")
    return " | ".join(str(w.message) for w in caught if issubclass(w.category, HsanomalyWarning))


def fail_renames_to(dst, monkeypatch, code=errno.EIO):
    """``os.replace`` and renameat2's wrapper fail with ``code`` for a rename onto ``dst``."""
    real_replace, real_rename2 = os.replace, atomic._rename2

    def failing(rename, src, to, *flag):
        if Path(to) == Path(dst):
            raise OSError(code, os.strerror(code), str(to))
        return rename(src, to, *flag)

    monkeypatch.setattr(os, "replace", functools.partial(failing, real_replace))
    monkeypatch.setattr(atomic, "_rename2", functools.partial(failing, real_rename2))


def private_folders(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(atomic.TMP_SUFFIX)]


def test_a_rename_that_fails_while_finishing_a_killed_commit_is_said_and_the_rest_finished(
        tmp_path, monkeypatch):
    """Were the failure not caught, the next write (any run in the
    folder) would fail on the killed run's rename and the model would stay half replaced;
    were it not said, the user would take b.txt for the new run's output."""
    killed_between_renames(tmp_path)
    fail_renames_to(tmp_path / "b.txt", monkeypatch)
    said = next_write(tmp_path)
    monkeypatch.undo()
    assert f"{tmp_path / 'b.txt'} (input/output error): a run that was stopped while " \
           "replacing its outputs could not have its own put in their place, so the earlier " \
           "stay there, and the outputs beside them may be that run's" in said
    assert "model: completed, as the run that wrote them" in said
    assert (tmp_path / "b.txt").read_text() == "old b"           # whole, the earlier one
    assert (tmp_path / "model" / "w").read_text() == "new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


def test_a_killed_commit_whose_staged_output_is_gone_is_said_to_mix_two_runs(tmp_path):
    """A staged output removed (a cleaner of dot folders) before the
    next write: nothing can complete the killed run, and a.txt is the new run's beside an
    earlier b.txt and model. Unsaid, the user would take the folder for one run's outputs."""
    killed_between_renames(tmp_path)
    (staged_b,) = tmp_path.glob(f".b.txt.*{atomic.TMP_SUFFIX}/b.txt")
    staged_b.unlink()
    said = next_write(tmp_path)
    assert f"{tmp_path / 'b.txt'}: the staged output of a run that was stopped while replacing " \
           "its outputs is gone, so they could not be completed; the outputs beside it may " \
           "come from two runs" in said
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt", "model/w")] == \
        ["new a", "old b", "old model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


def test_a_killed_commits_folder_output_is_finished_without_renameat2_leaving_no_old_copy(
        tmp_path, monkeypatch):
    """``_replace_dir`` with no list of folders moved aside, as the recovery calls it. Where renameat2 cannot swap (an older kernel or C library, a file
    system without RENAME_EXCHANGE), the earlier model is moved aside and must then go: left,
    a hidden copy of every earlier model would pile up beside the outputs."""
    killed_between_renames(tmp_path)
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    said = next_write(tmp_path)
    assert "b.txt, " in said and "model: completed" in said
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt", "model/w")] == \
        ["new a", "new b", "new model"]
    assert sorted(os.listdir(tmp_path / "model")) == ["w"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "model", "other.txt"]


# --- a commit where renameat2 cannot swap -------------------------------------------------

def test_a_new_folder_output_committed_without_renameat2_goes_again_when_the_commit_fails(
        tmp_path, monkeypatch):
    """Without renameat2 a new model folder is renamed into place; a
    later output's failed rename must take it away again, or the message "nothing was
    replaced" would be false and a model of a failed run would lie beside the earlier file."""
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    (tmp_path / "b.txt").write_text("earlier b")
    with pytest.raises(HsanomalyError, match=r"b.txt: cannot replace it \(is a directory\); "
                                             r"nothing was replaced$"):
        with atomic.staged() as stage:
            (stage.directory(tmp_path / "model") / "w").write_text("new model")
            stage.path(tmp_path / "b.txt").write_text("new b")
            (tmp_path / "b.txt").unlink()         # its rename will fail
            (tmp_path / "b.txt").mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
    (tmp_path / "b.txt").rmdir()
    with atomic.staged() as stage:                 # and the plain case: made where none was
        (stage.directory(tmp_path / "model") / "w").write_text("new model")
    assert (tmp_path / "model" / "w").read_text() == "new model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_output_whose_move_fails_without_renameat2_is_put_back(tmp_path, monkeypatch):
    """Without renameat2 the earlier model is moved aside before the new
    one goes in; when that move in fails the earlier one must come back, or the user's model
    is gone (hidden in a dot folder) after a failed run that said nothing was replaced."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w").write_text("old model")
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    real_replace = os.replace

    def fails_into_place(src, dst):
        if Path(dst) == tmp_path / "model" and \
                Path(src).parent.name.endswith(atomic.TMP_SUFFIX):      # the staged folder
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fails_into_place)
    with pytest.raises(HsanomalyError, match=r"model: cannot replace it \(input/output error\); "
                                             r"nothing was replaced$"):
        with atomic.staged() as stage:
            (stage.directory(tmp_path / "model") / "w").write_text("new model")
    monkeypatch.undo()
    assert (tmp_path / "model" / "w").read_text() == "old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.skipif(atomic._renameat2() is None, reason="renameat2 is Linux's")
def test_a_swap_that_cannot_be_undone_is_said_not_claimed_undone(tmp_path, monkeypatch):
    """``_refuse_swap``. A model swapped in by renameat2, then a later
    output's rename fails and renameat2 no longer swaps (ENOSYS, EINVAL from the file system):
    the error must name the model as replaced. Were the refusal a no-op, it would say
    "nothing was replaced" while the model is the failed run's and the earlier one deleted."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w").write_text("old model")
    (tmp_path / "b.txt").write_text("earlier b")
    real_rename2, swaps = atomic._rename2, []

    def swaps_once(src, dst, flag):
        if swaps:
            return False                       # the system cannot swap any more
        swaps.append(dst)
        return real_rename2(src, dst, flag)

    monkeypatch.setattr(atomic, "_rename2", swaps_once)
    with pytest.raises(HsanomalyError) as err:
        with atomic.staged() as stage:
            (stage.directory(tmp_path / "model") / "w").write_text("new model")
            stage.path(tmp_path / "b.txt").write_text("new b")
            (tmp_path / "b.txt").unlink()
            (tmp_path / "b.txt").mkdir()
    assert str(err.value) == (f"{tmp_path / 'b.txt'}: cannot replace it (is a directory); these "
                              "were replaced and could not be put back: "
                              f"{tmp_path / 'model'} (the system cannot swap it back)")
    assert (tmp_path / "model" / "w").read_text() == "new model"       # as said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "model"]


# --- checks after writing -----------------------------------------------------------------

def test_an_empty_written_file_replaces_nothing(tmp_path):
    """``non_empty``, every ``atomic_path``'s default check. A writer that
    wrote nothing (a failure it swallowed) would replace the earlier output with an empty
    file and succeed."""
    (tmp_path / "results.csv").write_text("earlier")
    with pytest.raises(HsanomalyError, match=r"^.*results.csv: the written file is empty; "
                                             r"nothing was replaced$") as err:
        with atomic.atomic_path(tmp_path / "results.csv"):
            pass
    assert str(err.value).startswith(str(tmp_path / "results.csv"))    # not its temporary
    assert (tmp_path / "results.csv").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


@pytest.mark.parametrize("how", ["never made", "made a link"])
def test_a_writer_that_produced_no_output_replaces_nothing(tmp_path, how):
    """A writer left to make its file (a GeoPackage's) that made none,
    or left a link there: without the check the commit fails on a missing file with an
    OSError of a temporary path, or renames a link over the user's output."""
    (tmp_path / "targets.gpkg").write_text("earlier")
    (tmp_path / "victim.txt").write_text("not yours")
    with pytest.raises(HsanomalyError) as err:
        with atomic.atomic_path(tmp_path / "targets.gpkg", create=False) as tmp:
            if how == "made a link":
                os.symlink(tmp_path / "victim.txt", tmp)
    assert str(err.value) == (f"{tmp_path / 'targets.gpkg'}: the writer produced no output; "
                              "nothing was replaced")
    assert (tmp_path / "targets.gpkg").read_text() == "earlier"
    assert not (tmp_path / "targets.gpkg").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.gpkg", "victim.txt"]


def test_a_heatmap_written_in_another_size_replaces_nothing(tmp_path, scene, earlier,
                                                           monkeypatch):
    """``raster_check``. A heatmap written one column wider than its
    input (a writer's bug) would be committed and misplace every score on the map."""
    from hsanomaly.engine import run

    real_profile = run.heatmap_profile
    monkeypatch.setattr(run, "heatmap_profile", lambda source, bands: {
        **real_profile(source, bands), "width": source.width + 1})
    tree = Tree(tmp_path)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True)
    assert str(err.value).startswith(f"{earlier}: written as 51x40x1, expected 50x40x1")
    assert str(err.value).endswith("nothing was replaced")
    tree.assert_unchanged(new=["heat.tif.partial/"])    # the tiles kept for a rerun, if any


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0,
                    reason="chattr +i needs root and chattr")
def test_an_earlier_side_file_that_cannot_be_removed_is_said(tmp_path, scene, earlier):
    """The earlier heatmap's .aux.xml (nodata, statistics) cannot be
    moved or removed (immutable): the new heatmap goes in, and the user must be told, as a
    GIS would lay the earlier statistics over it."""
    aux = Path(f"{earlier}.aux.xml")
    aux.write_text("<PAMDataset><Metadata><MDI key='old'>1</MDI></Metadata></PAMDataset>")
    before = sha256(earlier)
    if subprocess.run(["chattr", "+i", str(aux)], capture_output=True).returncode != 0:
        pytest.skip("this file system takes no immutable flag")
    try:
        with pytest.warns(HsanomalyWarning) as caught:
            hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True)
    finally:
        subprocess.run(["chattr", "-i", str(aux)], check=True)
    said = " | ".join(str(w.message) for w in caught)
    assert f"{aux}: cannot remove it (operation not permitted); it describes the earlier " \
           "output, so remove it by hand" in said
    assert sha256(earlier) != before and aux.exists()
    assert earlier.read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not private_folders(tmp_path) and not (tmp_path / "heat.tif.partial").exists()


# --- the tile store -----------------------------------------------------------------------

def test_a_tile_damaged_before_assembly_is_named_and_the_rerun_scores_it_again(tmp_path, scene,
                                                                               earlier):
    """A tile damaged after it was scored (a disk error, another program)
    would be assembled into the heatmap as garbage, or end in a zipfile traceback; the
    earlier heatmap must stay and --resume must score that tile again."""
    store = tmp_path / "heat.tif.partial"

    def damage_last(fraction, message):
        if fraction >= 1.0:
            tile = store / "tile_0000005.npz"
            tile.write_bytes(tile.read_bytes()[:100])

    before = sha256(earlier)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True,
                         callback=damage_last)
    assert str(err.value).startswith(f"{store / 'tile_0000005.npz'}: tile damaged or of the "
                                     "wrong shape; ")
    assert str(err.value).endswith(", which scores it again")
    assert sha256(earlier) == before and not private_folders(tmp_path)
    assert len(list(store.glob("tile_*.npz"))) == 12
    hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True, resume=True)
    assert earlier.read_bytes() == reference(scene, tmp_path / "ref.tif")
    assert not store.exists()


def test_a_link_made_at_the_tile_stores_name_during_the_run_is_refused(tmp_path, scene, earlier,
                                                                       monkeypatch):
    """A link made at heat.tif.partial after the run's checks (another
    program, a race): followed, the tiles (and a later removal of the store) would go into
    the folder it points to."""
    from hsanomaly.engine import run

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_check = run.check_unlocked

    def then_link(*args, **kwargs):
        real_check(*args, **kwargs)
        os.symlink(elsewhere, tmp_path / "heat.tif.partial")

    monkeypatch.setattr(run, "check_unlocked", then_link)
    tree = Tree(tmp_path)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True)
    assert str(err.value) == (f"{tmp_path / 'heat.tif.partial'}: the tile store's name is taken "
                              "by a symbolic link or a file; remove it or choose another output")
    tree.assert_unchanged(new=["heat.tif.partial"])
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("fails", ["its folder", "its manifest"])
def test_a_tile_store_that_cannot_be_made_is_one_line_and_leaves_nothing(tmp_path, scene,
                                                                         earlier, monkeypatch,
                                                                         fails):
    """The store's folder or its manifest cannot be written
    (a full disk): the run must say so in one line, and leave no store without a manifest,
    which a later --resume would not take for an interrupted run and a later run would
    refuse as files that are not hsanomaly tiles."""
    real_mkdir, real_replace = os.mkdir, os.replace

    def no_room(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def mkdir(path, *args, **kwargs):
        if fails == "its folder" and str(path).endswith(".partial"):
            no_room(path)
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if fails == "its manifest" and Path(dst).name == "manifest.json":
            no_room(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)
    tree = Tree(tmp_path)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(scene, earlier, score="rx", tile=16, overwrite=True)
    monkeypatch.undo()
    assert str(err.value) == (f"{tmp_path / 'heat.tif.partial'}: cannot create the tile store "
                              "(no space left on the device)")
    tree.assert_unchanged()


# --- a tampered model bundle --------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle of a 2-iteration training on a 12-band scene (window 1, latent 4, a codebook)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("trained")
    scene = make_scene(folder / "scene.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "collapsed ... in 2 iterations"
        hsanomaly.train(scene, folder / "model", iterations=2, threads=1, progress=False)
    return folder / "model"


@pytest.fixture
def bundle(trained, tmp_path):
    return Path(shutil.copytree(trained, tmp_path / "model"))


def resign(bundle, meta=None, **networks):
    """Rewrite the bundle as a thorough tamperer (or a tool that re-exports and re-hashes)
    would: ``networks`` ({file: onnx model}) saved, the embedded metadata set from ``meta``
    (default model.json's) in every network given or, with ``meta``, in both, the sha256s in
    model.json updated."""
    import onnx

    from hsanomaly.io.digest import file_sha256
    from hsanomaly.model.bundle import METADATA_KEY, embedded_metadata

    old = json.loads((bundle / "model.json").read_text())
    meta = meta or old
    if meta is not old:
        networks = {name: networks.get(name) or onnx.load(bundle / name)
                    for name in ("generator.onnx", "critic.onnx")}
        for model in networks.values():
            for entry in model.metadata_props:
                if entry.key == METADATA_KEY:
                    entry.value = embedded_metadata(meta)
    for name, model in networks.items():
        onnx.save(model, bundle / name)
        meta["files"][name] = file_sha256(bundle / name)
    (bundle / "model.json").write_text(json.dumps(meta, indent=1))


def refused(scene, bundle, heat, said):
    """detect with the bundle: one line naming the bundle and ``said``; ``heat`` as it was."""
    tree = Tree(heat.parent)
    with pytest.raises(HsanomalyError) as err:
        hsanomaly.detect(scene, heat, score="critic", model=bundle, tile=16, overwrite=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{bundle}: ") and said in message, message
    tree.assert_unchanged()


@pytest.mark.parametrize("key, value, said", [
    ("bands_in", 0, "model.json: bands_in must be a positive integer, got 0"),
    ("latent_dim", True, "model.json: latent_dim must be a positive integer, got True"),
    ("window", 2, "model.json: window must be odd, got 2"),
    ("latent_dim", 70_000, "model.json: latent_dim is 70,000, beyond what any model holds "
                           "(65,536)")])
def test_a_bundle_whose_model_json_gives_impossible_sizes_is_refused(tmp_path, scene, earlier,
                                                                     bundle, key, value, said):
    """Sizes edited in model.json: a window of 2 (no centre
    pixel) or a latent size of 70,000 would build batches of gigabytes, a zero or a boolean
    end in a traceback deep in a run, not refused as the bundle loads."""
    meta = json.loads((bundle / "model.json").read_text())
    meta[key] = value
    (bundle / "model.json").write_text(json.dumps(meta))
    refused(scene, bundle, earlier, said)


def test_a_bundle_whose_network_is_larger_than_any_onnx_is_refused_unread(tmp_path, scene,
                                                                          earlier, bundle):
    """A generator.onnx over 2 GiB (no ONNX network is: protobuf's limit)
    would be read whole into memory and hashed before anything said it is no network."""
    with open(bundle / "generator.onnx", "r+b") as file:
        file.truncate(2**31 + 2**20)                   # sparse: nothing is written
    refused(scene, bundle, earlier, "generator.onnx holds 2.0 GiB, more than an ONNX network "
                                    "can (2 GiB)")


@pytest.mark.parametrize("edit, said", [
    (lambda book: book.pop("seed"), "model.json: codebook must give size, scale, seed, "
                                    "jacobian_step, arrays"),
    (lambda book: book.update(seed="0"), "model.json: codebook seed must be a number, got '0'")],
    ids=["seed_missing", "seed_text"])
def test_a_bundle_whose_codebook_settings_are_incomplete_is_refused(tmp_path, scene, earlier,
                                                                    bundle, edit, said):
    """A codebook without its seed, or with a seed of text,
    re-signed into the networks: it would load and then end a run in a KeyError or a
    TypeError (or, worse, be compared unequal and rebuilt every run)."""
    meta = json.loads((bundle / "model.json").read_text())
    edit(meta["codebook"])
    resign(bundle, meta)
    refused(scene, bundle, earlier, said)


def test_a_network_without_hsanomaly_metadata_is_refused(tmp_path, scene, earlier, bundle):
    """A network re-exported or optimised by another tool loses the
    metadata that ties it to model.json: taken as it is, any network with the right tensor
    names would score under the bundle's preprocessing."""
    import onnx

    model = onnx.load(bundle / "generator.onnx")
    del model.metadata_props[:]
    resign(bundle, **{"generator.onnx": model})
    refused(scene, bundle, earlier, "generator.onnx carries no hsanomaly metadata")


def _generator_of_fixed_batch(bundle):
    """The bundle's generator replaced by one of its inputs and outputs that reshapes its
    result to a batch of three, whatever it is given (signed with the bundle's metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    meta = json.loads((bundle / "model.json").read_text())
    latent, bands, window = meta["latent_dim"], meta["bands"], meta["window"]
    weights = numpy_helper.from_array(np.ones((latent, bands * window ** 2), np.float32), "w")
    shape = numpy_helper.from_array(np.array([3, bands, window, window], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "w"], ["h"]),
         helper.make_node("Reshape", ["h", "shape"], ["x"])], "generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", bands, window, window])],
        [weights, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    original = onnx.load(bundle / "generator.onnx")
    model.metadata_props.extend(original.metadata_props)
    return model


def test_a_network_that_does_not_run_on_a_batch_of_two_is_refused(tmp_path, scene, earlier,
                                                                   bundle):
    """A generator of the right signature that fails on any batch but its
    own: it loaded, then failed in onnxruntime's words in the middle of a run's tiles."""
    resign(bundle, **{"generator.onnx": _generator_of_fixed_batch(bundle)})
    refused(scene, bundle, earlier, "generator.onnx does not run on a batch of two (")


def test_a_network_whose_tensors_are_named_otherwise_is_refused(tmp_path, scene, earlier, bundle):
    """A generator whose input is named "noise", not "z" (re-exported by
    hand): fed by name, it would fail in every tile of a run."""
    model = _generator_of_fixed_batch(bundle)
    model.graph.input[0].name = "noise"
    model.graph.node[0].input[0] = "noise"
    resign(bundle, **{"generator.onnx": model})
    refused(scene, bundle, earlier, "generator.onnx has tensors [('noise', [None, 4])], "
                                    "expected [('z', [None, 4])]")
