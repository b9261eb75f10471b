"""Rasters read over HTTP (GDAL's /vsicurl/), from a server on this machine that states ETag and
Last-Modified as S3 or nginx do: a change anywhere in the file is seen, a signed URL's secrets
are never recorded, and one file signed anew is the same input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

import hsanomaly
from hsanomaly.io.gdal import dataset_stem, safe_stem, served_as, without_secrets

from synthetic import synthetic_cube


@pytest.fixture
def served(tmp_path, request):
    """(the folder served, its URL), by a server in a process of its own: rasterio holds the
    GIL while GDAL waits for an answer, which a thread of this process could never give.
    Parametrized indirectly: "failing" or "restless", a server that fails part way or states
    new headers in every answer (http_server.py)."""
    root = tmp_path / "www"
    root.mkdir()
    mode = [str(request.param)] if hasattr(request, "param") else []
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("http_server.py")),
                               str(root), *mode], stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        yield root, f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def _write(path, cube):
    with rasterio.open(path, "w", driver="GTiff", width=cube.shape[2], height=cube.shape[1],
                       count=cube.shape[0], dtype="float32", tiled=True, blockxsize=32,
                       blockysize=32) as ds:
        ds.write(cube)


def test_a_change_the_pixel_sample_misses_is_seen_by_what_the_server_states(served, tmp_path):
    """A finished heatmap of a URL was kept after the file on the server changed where the
    fingerprint's pixel sample (first, middle and last tiles) does not look."""
    root, url = served
    cube, _ = synthetic_cube(rows=96, cols=96)
    _write(root / "scene.tif", cube)
    many = tmp_path / "many"
    src = f"{url}/scene.tif?se=2026-12-01&sig=SECRET%2Fone"
    first, = hsanomaly.detect_many([src], many, score="rx", tile=32)
    assert first.status == "scored" and first.dst == str(many / "scene_rx.tif")
    assert served_as(src)["etag"] and "last-modified" in served_as(src)
    with rasterio.open(first.dst) as ds:
        assert "SECRET" not in repr(ds.tags()) and ds.tags()["HSANOMALY_INPUT"] == "scene.tif"
    # signed anew, the same file is the same input, kept
    again, = hsanomaly.detect_many([f"{url}/scene.tif?se=2026-12-02&sig=other"], many,
                                   score="rx", tile=32)
    assert again.status == "skipped"
    cube[:, 10, 40] += 50.0            # tile 1 of 9: outside the pixel sample
    _write(root / "scene.tif", cube)
    changed, = hsanomaly.detect_many([src], many, score="rx", tile=32)
    assert changed.status == "scored"
    with rasterio.open(changed.dst) as ds:
        assert np.argmax(ds.read(1)) == 10 * 96 + 40


@pytest.mark.parametrize("served", ["failing"], indirect=True)
def test_a_server_that_fails_part_way_is_not_called_a_corrupt_file(served, tmp_path):
    root, url = served
    cube, _ = synthetic_cube(rows=96, cols=96)
    _write(root / "scene.tif", cube)
    with pytest.raises(hsanomaly.HsanomalyError, match=r"^http://127.0.0.1:\d+/scene.tif\?v=2: "
                       r"cannot read pixels: the server or the network failed, or the file is "
                       r"truncated or corrupt; try again later \((?!.*SECRET)"):
        hsanomaly.detect(f"{url}/scene.tif?v=2&sig=SECRET", tmp_path / "heat.tif", score="rx",
                         tile=32)
    assert not (tmp_path / "heat.tif").exists()


def test_a_member_of_a_signed_remote_archive_is_itself_and_seen_to_change(served, tmp_path):
    """GDAL's name of a member of a signed remote zip lost everything after the "?" (the member
    too), so two members were one input: the second was "finished" with the first's heatmap;
    and the member's fingerprint asked its own headers, which are none, not the zip's."""
    import zipfile

    root, url = served
    cube, _ = synthetic_cube(rows=96, cols=96)
    for name, data in (("m1", cube), ("m2", cube + np.float32(0.5))):
        _write(tmp_path / f"{name}.tif", data)
    with zipfile.ZipFile(root / "a.zip", "w") as z:
        for name in ("m1", "m2"):
            z.write(tmp_path / f"{name}.tif", f"{name}.tif")
    many = tmp_path / "many"
    member = f"/vsizip/{{/vsicurl/{url}/a.zip?sig=SECRET}}/NAME.tif"
    items = [hsanomaly.detect_many([member.replace("NAME", name)], many, score="rx", tile=32)[0]
             for name in ("m1", "m2")]
    assert [(Path(i.dst).name, i.status) for i in items] == [("m1_rx.tif", "scored"),
                                                             ("m2_rx.tif", "scored")]
    cube[:, 10, 40] += 50.0                 # outside the pixel sample; the zip's ETag changes
    _write(tmp_path / "m1.tif", cube)
    with zipfile.ZipFile(root / "a.zip", "w") as z:
        for name in ("m1", "m2"):
            z.write(tmp_path / f"{name}.tif", f"{name}.tif")
    again, = hsanomaly.detect_many([member.replace("NAME", "m1")], many, score="rx", tile=32)
    assert again.status == "scored"


@pytest.mark.parametrize("served", ["restless"], indirect=True)
def test_a_server_stating_new_headers_in_every_answer_is_not_a_changed_input(served, tmp_path):
    """Between runs new headers only score a raster again; within one they failed every run
    as "changed while it was scored", its tiles discarded."""
    root, url = served
    cube, _ = synthetic_cube(rows=96, cols=96)
    _write(root / "scene.tif", cube)
    result = hsanomaly.detect(f"{url}/scene.tif", tmp_path / "heat.tif", score="rx", tile=32)
    assert result.tiles == 9


def test_a_signed_url_that_cannot_be_read_is_named_without_its_secrets(served, tmp_path):
    _, url = served
    with pytest.raises(hsanomaly.HsanomalyError, match=r"/missing.tif\?v=2: not a raster") as err:
        hsanomaly.detect(f"{url}/missing.tif?v=2&sig=SECRET", tmp_path / "heat.tif", score="rx")
    assert "SECRET" not in str(err.value)


def test_a_signed_urls_secrets_and_credentials_are_left_out_of_its_name():
    assert without_secrets("https://u:pw@host/d/a.tif?X-Amz-Signature=s&X-Amz-Date=d&v=2#x") \
        == "https://host/d/a.tif?v=2"
    assert without_secrets("/vsicurl/https://host/a.tif?sv=1&sig=s&se=e&sp=r") == \
        "/vsicurl/https://host/a.tif"
    assert without_secrets("/data/a?b.tif") == "/data/a?b.tif"
    assert dataset_stem("https://host/d/scene.tif?token=abc.def") == "scene"
    assert dataset_stem("zip:///data/s.zip!in/scene.tif") == "scene"
    # a Detector's quick model copies its scene under this name: any file system takes it
    assert safe_stem("/d/" + "é" * 200 + " x.tif") == "x" and len(safe_stem("a" * 300)) == 100
    assert safe_stem("<array>") == "array" and safe_stem("<>") == "scene"
    assert served_as("/data/scene.tif") == {}


def test_a_signed_urls_secrets_are_left_out_of_what_a_run_shows(served, tmp_path):
    """The progress and stage lines (-v into a log) named the input with its signature."""
    root, url = served
    cube, _ = synthetic_cube(rows=64, cols=64)
    _write(root / "scene.tif", cube)
    run = subprocess.run([sys.executable, "-m", "hsanomaly", "detect", "-v",
                          f"{url}/scene.tif?v=2&sig=SECRET", str(tmp_path / "heat.tif"),
                          "--score", "rx", "--tile", "32", "--polygons", str(tmp_path / "t.gpkg"),
                          "--far", "0.01"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "fitting rx on" in run.stderr and "/scene.tif?v=2" in run.stderr
    assert "SECRET" not in run.stdout + run.stderr
