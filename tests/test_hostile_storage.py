"""A hostile storage corpus through scan, duplicates and search: odd names, links that loop, empty
files and a decompression bomb give per-file errors or are skipped; nothing crashes, every output
stays valid JSON and one line per entry, and every URI is a URI."""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from deeplens.connectors.storage import fsspec_url
from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.schema.weaviate import IMAGE_COLLECTION
from tests.cli import run, run_json, weaviate_client

pytestmark = pytest.mark.weaviate

CAFE = "café.jpg"
NAMES = {
    "dots": "a..b.jpg",
    "dotdot": "..hidden.jpg",
    "newline": "new\nline.jpg",
    "control": "tab\tand\x1b[31mescape.jpg",
    "nfc": unicodedata.normalize("NFC", CAFE),
    "nfd": unicodedata.normalize("NFD", CAFE),  # another name on Linux: twins that look alike
    "long": "/".join(["d" * 200] * 4) + "/" + "f" * 192 + ".jpg",  # 1000 characters, 255 per segment
}


@pytest.fixture
def hostile(tmp_path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for seed, (key, name) in enumerate(NAMES.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(jpeg_bytes(synthetic_image(0 if key in ("nfc", "nfd") else seed + 1)))
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("1", (12_000, 12_000)).save(folder / "bomb.png")  # 144 MP in a few kB
    (folder / "loop-a.jpg").symlink_to("loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to("loop-a.jpg")
    (folder / "itself").symlink_to(".")
    return folder


def test_hostile_names_and_files(env, weaviate, hostile):
    assert len(NAMES["long"]) == 1000
    run(env, "storage", "add", "hostile", str(hostile))
    [summary] = run_json(env, "scan", "hostile")
    assert (summary["new"], summary["errors"]) == (len(NAMES), 2)

    errors = run_json(env, "scan", "--errors", "hostile")["hostile"]
    assert {e["path"]: ("empty" in e["error"] or "pixels" in e["error"]) for e in errors} == {
        "empty.jpg": True, "bomb.png": True}
    listed = run(env, "scan", "--errors", "hostile").stdout
    assert len(listed.splitlines()) == 3  # a heading and one line per error

    # Exact copies: the NFC/NFD twins are two files, so one group with both, each its own URI.
    [group] = run_json(env, "duplicates", "--exact")["groups"]
    uris = [m["uri"] for m in group["members"]]
    assert sorted(unquote(u.rsplit("/", 1)[1]) for u in uris) == sorted([NAMES["nfc"], NAMES["nfd"]])
    text = run(env, "duplicates", "--exact").stdout
    assert "\x1b" not in text and all(u in text for u in uris)

    # Every URI is printable, percent-encoded, and leads back to its file.
    with weaviate_client(weaviate) as client:
        by_path = {o.properties["path"]: o.properties["uri"]
                   for o in client.collections.use(IMAGE_COLLECTION).iterator(return_properties=["path", "uri"])}
    assert set(by_path) == set(NAMES.values())
    for name, uri in by_path.items():
        assert uri.isprintable() and " " not in uri
        assert Path(fsspec_url(uri).removeprefix("file://")) == hostile / name
    newline_uri = by_path[NAMES["newline"]]
    assert "%0A" in newline_uri
    # A URI from the results works as a query image.
    again = run_json(env, "search", "--image", newline_uri, "--near-dup")["hits"]
    assert again[0]["path"] == NAMES["newline"]
    assert json.loads(run(env, "stats", "--json").stdout)["locations"][0]["images"] == len(NAMES)


def test_json_logs_of_a_scan(env, hostile, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the CLI adds its handler to this process
    monkeypatch.setattr(root, "level", root.level)
    run(env, "storage", "add", "hostile", str(hostile))
    result = run(env, "--log-format", "json", "scan", "hostile")
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    scan_lines = [line for line in lines if line["logger"] == "deeplens.connectors.scan"]
    assert {line["scan_id"] for line in scan_lines} == {scan_lines[0]["scan_id"]}
    assert all(line["location"] == "hostile" for line in scan_lines)
    failed = {line["path"]: line["error"] for line in scan_lines if line["message"].startswith("file not indexed")}
    assert set(failed) == {"empty.jpg", "bomb.png"}
    [finished] = [line for line in scan_lines if line["message"] == "scan finished"]
    assert (finished["new"], finished["errors"]) == (len(NAMES), 2)


def test_a_name_that_is_not_utf8_is_a_per_file_error(env, weaviate, tmp_path):
    # Linux takes any bytes in a name; Weaviate, Elasticsearch and the scan's SQLite store UTF-8 text.
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "fine.jpg").write_bytes(jpeg_bytes(synthetic_image(1)))
    latin1 = bytes(folder) + b"/caf\xe9.jpg"
    with open(latin1, "wb") as file:
        file.write(jpeg_bytes(synthetic_image(2)))
    run(env, "storage", "add", "latin1", str(folder))
    [summary] = run_json(env, "scan", "latin1")
    assert (summary["new"], summary["errors"]) == (1, 1)
    [error] = run_json(env, "scan", "--errors", "latin1")["latin1"]
    assert error["path"] == "caf\\xe9.jpg" and error["uri"].endswith("/caf%E9.jpg")
    assert "not valid UTF-8" in error["error"] and "rename" in error["error"]
    [again] = run_json(env, "scan", "latin1")  # nothing lost, the same error again, nothing else read
    assert (again["new"], again["unchanged"], again["errors"]) == (0, 1, 1)
    run(env, "storage", "remove", "latin1", "--purge")
