"""End to end: storage locations on the local file system, the real module server and Weaviate,
driven through the `deeplens` CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from deeplens.modules.phash import hex_to_bits
from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos, synthetic_image
from deeplens.schema.weaviate import IMAGE_COLLECTION
from tests.cli import run, run_json, uri, weaviate_client

pytestmark = pytest.mark.weaviate


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.fixture
def two_locations(tmp_path, photos):
    archive, exports = tmp_path / "archive", tmp_path / "exports dir ünïcode"
    archive.mkdir()
    (exports / "edited").mkdir(parents=True)
    originals = ["astronaut", "coffee", "rocket", "hubble_deep_field", "coins", "brick", "china", "colorwheel"]
    for name in originals:
        (archive / f"{name}.jpg").write_bytes(jpeg_bytes(photos[name]))
    (exports / "astronaut copy ü.jpg").write_bytes((archive / "astronaut.jpg").read_bytes())
    edits = {"coffee": "recompress", "rocket": "rot90", "hubble_deep_field": "mirror", "coins": "resize",
             "brick": "crop", "china": "border"}
    for name, edit in edits.items():
        source = Image.open(archive / f"{name}.jpg").convert("RGB")
        (exports / "edited" / f"{name}-{edit}.jpg").write_bytes(jpeg_bytes(TRANSFORMS[edit](source)))
    (exports / "flower.jpg").write_bytes(jpeg_bytes(photos["flower"]))  # unrelated to everything
    return archive, exports, edits


def test_scan_then_rescan_detects_new_changed_unchanged_deleted(env, two_locations):
    archive, exports, edits = two_locations
    run(env, "storage", "add", "archive", str(archive))
    run(env, "storage", "add", "exports", f"file://{exports}")
    assert [loc["name"] for loc in run_json(env, "storage", "list")] == ["archive", "exports"]

    [first] = run_json(env, "scan", "archive")
    assert (first["new"], first["changed"], first["unchanged"], first["errors"]) == (8, 0, 0, 0)
    [second] = run_json(env, "scan", "archive")
    assert (second["new"], second["changed"], second["unchanged"]) == (0, 0, 8)

    (archive / "coins.jpg").write_bytes(jpeg_bytes(Image.open(archive / "coins.jpg").rotate(180)))
    os.utime(archive / "coins.jpg", (time.time() + 5, time.time() + 5))
    (archive / "brick.jpg").unlink()
    [third] = run_json(env, "scan", "archive")
    assert (third["new"], third["changed"], third["unchanged"], third["deleted"]) == (0, 1, 6, 1)
    stats = run_json(env, "stats")["locations"]
    assert stats == [{"location": "archive", "images": 7, "bytes": sum(p.stat().st_size for p in archive.iterdir()),
                      "duplicate_bytes": 0}]


def test_exact_and_near_duplicates_across_locations(env, two_locations):
    archive, exports, edits = two_locations
    run(env, "storage", "add", "archive", str(archive))
    run(env, "storage", "add", "exports", str(exports))
    run(env, "scan", "--all")

    exact = run_json(env, "duplicates", "--exact")
    [group] = exact["groups"]
    size = (archive / "astronaut.jpg").stat().st_size
    assert group["kind"] == "exact" and group["wasted_bytes"] == size == exact["total_wasted_bytes"]
    assert {m["uri"] for m in group["members"]} == {
        uri(archive / "astronaut.jpg"), uri(exports / "astronaut copy ü.jpg")
    }

    near = run_json(env, "duplicates", "--near")
    by_original = {}
    for g in near["groups"]:
        uris = {m["uri"] for m in g["members"]}
        names = [Path(m["uri"]).stem for m in g["members"] if "/archive/" in m["uri"]]
        assert len(names) == 1, f"a group mixes unrelated originals: {uris}"
        by_original[names[0].split(".")[0]] = g
        assert g["wasted_bytes"] == sum(m["size_bytes"] for m in g["members"]) - g["members"][0]["size_bytes"]
    assert set(by_original) == {"astronaut", *edits}, "every edited copy is found next to its original"
    assert by_original["astronaut"]["kind"] == "exact"
    assert not any("flower" in m["uri"] for g in near["groups"] for m in g["members"])
    assert near["total_wasted_bytes"] == sum(g["wasted_bytes"] for g in near["groups"])

    # Tiers: each copy says how it matches the kept original, with the evidence.
    tiers = {unquote(Path(m["uri"]).name): (m["tier"], m["evidence"]) for g in near["groups"] for m in g["members"]}
    assert tiers["astronaut copy ü.jpg"][0] == "exact"
    for name in ("coffee-recompress.jpg", "rocket-rot90.jpg", "hubble_deep_field-mirror.jpg", "coins-resize.jpg"):
        assert tiers[name][0] == "near" and tiers[name][1]["hamming"] <= 8, (name, tiers[name])
    tier, evidence = tiers["brick-crop.jpg"]  # found by the embedding, confirmed by verification
    assert tier == "derived" and evidence["verification"]["verified"] and evidence["cosine"] <= 0.08, evidence
    assert evidence["verification"]["scale"] > 1  # the crop shows part of the original, enlarged
    tier, evidence = tiers["china-border.jpg"]  # its pHash matches once the border is trimmed
    assert tier == "derived" and evidence["hamming"] <= 8, evidence
    assert {tiers[f"{name}.jpg"][0] for name in ["astronaut", *edits]} == {"kept"}  # the originals are kept
    assert near["unverified"] == []

    # explain: the same verdicts for one pair at a time, with the reasons.
    crop = run_json(env, "explain", uri(archive / "brick.jpg"), uri(exports / "edited" / "brick-crop.jpg"))
    assert crop["tier"] == "derived" and crop["evidence"]["verification"]["inliers"] >= 15
    unrelated = run_json(env, "explain", uri(archive / "coffee.jpg"), uri(exports / "flower.jpg"))
    assert unrelated["tier"] in ("different", "similar") and not unrelated["evidence"]["verification"]["verified"]
    missing = run(env, "explain", uri(archive / "coffee.jpg"), uri(archive / "nowhere.jpg"), ok=False)
    assert missing.exit_code == 1 and "not in the index" in missing.output

    # --csv: one row per member, the same groups in the same order, the kept copy marked.
    rows = list(csv.DictReader(io.StringIO(run(env, "duplicates", "--near", "--csv").stdout)))
    assert [(int(r["group"]), r["uri"], r["kept"] == "True", r["tier"], int(r["size_bytes"]), int(r["distance"]),
             r["kind"], int(r["group_wasted_bytes"])) for r in rows] == [
        (number, m["uri"], index == 0, m["tier"], m["size_bytes"], m["distance"], g["kind"], g["wasted_bytes"])
        for number, g in enumerate(near["groups"], 1) for index, m in enumerate(g["members"])
    ]


def test_search_by_image_and_near_duplicates(env, two_locations):
    archive, exports, edits = two_locations
    run(env, "storage", "add", "archive", str(archive))
    run(env, "storage", "add", "exports", str(exports))
    run(env, "scan", "--all")

    rotated = exports / "edited" / "rocket-rot90.jpg"
    near = run_json(env, "search", "--image", str(archive / "rocket.jpg"), "--near-dup")["hits"]
    assert [h["uri"] for h in near[:2]] == [uri(archive / "rocket.jpg"), uri(rotated)]
    assert near[0]["hamming_distance"] == 0 and near[1]["hamming_distance"] <= 10
    assert all("coffee" not in h["uri"] for h in near)

    similar = run_json(env, "search", "--image", str(archive / "coffee.jpg"), "--limit", "3")["hits"]
    assert similar[0]["uri"] == uri(archive / "coffee.jpg")
    assert similar[1]["uri"] == uri(exports / "edited" / "coffee-recompress.jpg")
    only_exports = run_json(env, "search", "--image", str(archive / "coffee.jpg"), "--location", "exports")["hits"]
    assert only_exports[0]["location"] == "exports"


def test_text_search_on_the_offline_profile_says_what_to_do(env, two_locations):
    archive, _, _ = two_locations
    run(env, "storage", "add", "archive", str(archive))
    run(env, "scan", "archive")
    result = run(env, "search", "--text", "a rocket", ok=False)
    assert result.exit_code == 1
    assert "text search needs the clip profile" in result.output


def test_bad_files_are_recorded_and_nothing_else_is_lost(env, tmp_path, photos):
    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(jpeg_bytes(photos["coffee"]))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(photos["rocket"])[:2000])
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("plain text with an image extension")
    (folder / "no-extension").write_bytes(jpeg_bytes(photos["moon"]))  # a JPEG, found by content
    Image.new("RGB", (9000, 8000)).save(folder / "huge.png")  # 72 MP: over the pixel limit

    run(env, "storage", "add", "messy", str(folder))
    [summary] = run_json(env, "scan", "messy")
    assert summary["new"] == 2 and summary["skipped_not_images"] == 1 and summary["errors"] == 4
    errors = {Path(e["path"]).name: e["error"] for e in run_json(env, "scan", "--errors", "messy")["messy"]}
    assert set(errors) == {"empty.jpg", "truncated.jpg", "fake.png", "huge.png"}
    assert "empty" in errors["empty.jpg"] and "truncated" in errors["truncated.jpg"]
    assert "not an image" in errors["fake.png"] and "pixels" in errors["huge.png"]
    listed = run(env, "scan", "--errors", "messy").stdout
    assert "truncated.jpg" in listed


def test_an_unchanged_non_image_is_not_read_again(env, tmp_path, photos):
    folder = tmp_path / "mixed"
    folder.mkdir()
    picture = jpeg_bytes(photos["coffee"])
    notes = folder / "notes.dat"
    notes.write_bytes(b"x" * len(picture))
    run(env, "storage", "add", "mixed", str(folder))
    [first] = run_json(env, "scan", "mixed")
    assert (first["new"], first["skipped_not_images"]) == (0, 1)

    # Same size and time but now a JPEG: a scan that read the file again would index it.
    stat = notes.stat()
    notes.write_bytes(picture)
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    [second] = run_json(env, "scan", "mixed")
    assert (second["new"], second["skipped_not_images"], second["unchanged"]) == (0, 1, 0)

    # Once it changes, it is read, indexed, and no longer remembered as a non-image.
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    [third] = run_json(env, "scan", "mixed")
    assert (third["new"], third["skipped_not_images"]) == (1, 0)
    [fourth] = run_json(env, "scan", "mixed")
    assert (fourth["new"], fourth["unchanged"], fourth["skipped_not_images"]) == (0, 1, 0)


def test_unreachable_location_is_refused_with_the_reason(env, tmp_path):
    result = run(env, "storage", "add", "gone", str(tmp_path / "does-not-exist"), ok=False)
    assert result.exit_code != 0 and "does-not-exist" in result.output
    assert run_json(env, "storage", "list") == []


def settled_count(images, quiet_seconds: float = 3.0) -> int:
    """The object count once Weaviate has finished the batches a killed scan left in flight (it
    completes requests it already received): unchanged for quiet_seconds."""
    count, since = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = images.aggregate.over_all(total_count=True).total_count
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return count
        time.sleep(0.25)
    raise AssertionError("Weaviate's object count did not settle within 60 s")


def test_killed_scan_resumes_without_losses_or_duplicates(env, tmp_path, weaviate):
    folder = tmp_path / "many"
    folder.mkdir()
    for seed in range(150):
        (folder / f"img{seed:03}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed)))
    run(env, "storage", "add", "many", str(folder))
    scan = subprocess.Popen([sys.executable, "-m", "deeplens", "scan", "many", "--workers", "2"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with weaviate_client(weaviate) as client:
        images = client.collections.use(IMAGE_COLLECTION)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and scan.poll() is None:
            if images.aggregate.over_all(total_count=True).total_count >= 32:
                break
            time.sleep(0.05)
        scan.send_signal(signal.SIGKILL)
        scan.wait()
        partial = settled_count(images)
        assert 0 < partial < 150, "the scan was killed midway"
        [resumed] = run_json(env, "scan", "many")
        assert resumed["new"] == 150 - partial and resumed["unchanged"] == partial and resumed["errors"] == 0
        assert images.aggregate.over_all(total_count=True).total_count == 150
        paths = [o.properties["path"] for o in images.iterator(return_properties=["path"])]
        assert sorted(paths) == sorted(p.name for p in folder.iterdir())


def module_calls(modules_url: str) -> dict[str, float]:
    """Requests the module server answered, per route (from its Prometheus metrics)."""
    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{modules_url}/metrics").text):
        for sample in family.samples:
            if sample.name == "deeplens_requests_total":
                route = sample.labels["route"]
                calls[route] = calls.get(route, 0) + sample.value
    return calls


def test_hash_only_collection_finds_copies_without_the_embedding_model(env, two_locations, weaviate, modules_url):
    archive, exports, edits = two_locations
    assert "created collection DeepLensImage (hash-only)" in run(env, "schema", "apply", "--hash-only").stdout
    assert run(env, "schema", "apply").stdout.strip() == "Schema is up to date."  # an existing kind is kept
    run(env, "storage", "add", "archive", str(archive))
    run(env, "storage", "add", "exports", str(exports))
    before = module_calls(modules_url)
    summaries = run_json(env, "scan", "--all")
    after = module_calls(modules_url)
    assert [(s["new"], s["errors"]) for s in summaries] == [(8, 0), (8, 0)]
    stages = summaries[0]["stage_seconds"]  # where the time went, reported per stage (values not checked)
    assert set(stages) == {"read", "decode_thumbnail", "module_features", "weaviate"}
    # The scanner brings the pHash vector, and there is no semantic vector: Weaviate calls no module.
    for route in ("/semantic/vectorize", "/phash/vectorize"):
        assert after.get(route, 0) == before.get(route, 0), route

    with weaviate_client(weaviate) as client:
        images = client.collections.use(IMAGE_COLLECTION)
        stored = images.query.fetch_objects(limit=20, include_vector=True, return_properties=["phash", "thumbnail"]).objects
        assert len(stored) == 16
        for obj in stored:
            assert set(obj.vector) == {"phash"}
            assert obj.vector["phash"] == hex_to_bits(obj.properties["phash"]).astype(float).tolist()
        # What the scanner sent is what Weaviate's own phash module makes of the stored thumbnail.
        sample = stored[0]
        [itself] = images.query.near_image(sample.properties["thumbnail"], target_vector="phash", distance=0.5,
                                          return_properties=[]).objects
        assert itself.uuid == sample.uuid

    result = run(env, "duplicates", "--near", "--json")
    assert "Hash-only index: near duplicates by pHash" in result.stderr
    near = json.loads(result.stdout)
    originals = set()
    for group in near["groups"]:
        names = [Path(m["uri"]).stem for m in group["members"] if "/archive/" in m["uri"]]
        assert len(names) == 1, f"a group mixes unrelated originals: {group}"
        originals.add(names[0])
    # pHash alone: recompressed, resized, turned and mirrored copies (crops and borders need embeddings).
    assert {"astronaut", "coffee", "rocket", "hubble_deep_field", "coins"} <= originals
    assert run_json(env, "duplicates", "--exact")["total_wasted_bytes"] == (archive / "astronaut.jpg").stat().st_size
    hits = run_json(env, "search", "--image", str(archive / "rocket.jpg"), "--near-dup")["hits"]
    assert [h["uri"] for h in hits[:2]] == [uri(archive / "rocket.jpg"), uri(exports / "edited" / "rocket-rot90.jpg")]

    for args in (["--image", str(archive / "rocket.jpg")], ["--text", "a rocket"]):
        result = run(env, "search", *args, ok=False)
        assert result.exit_code == 1 and "hash-only" in result.output and "--near-dup" in result.output


def test_hash_only_is_refused_for_an_existing_full_collection(env):
    run(env, "schema", "apply")
    result = run(env, "schema", "apply", "--hash-only", ok=False)
    assert result.exit_code == 1 and "exists as a full collection" in result.output and "delete" in result.output


def test_change_detection_reads_a_location_in_one_query_or_by_the_cursor_alike(env, two_locations, weaviate,
                                                                                monkeypatch):
    """What the index holds for a location, read by one filtered query (a location of up to
    ONE_QUERY objects: its rescan costs what it holds, not the whole index) or by the cursor over
    the collection (a larger one): the same answer, and only that location's objects."""
    from deeplens.connectors import scan as scanning

    archive, exports, _ = two_locations
    for name, folder in (("archive", archive), ("exports", exports)):
        run(env, "storage", "add", name, str(folder))
    run(env, "scan", "--all")
    with weaviate_client(weaviate) as client:
        by_query = {p["path"]: p for p in scanning.known_objects(client, IMAGE_COLLECTION, "archive")}
        monkeypatch.setattr(scanning, "ONE_QUERY", 3)  # archive holds 8 images: the cursor reads them
        by_cursor = {p["path"]: p for p in scanning.known_objects(client, IMAGE_COLLECTION, "archive")}
    assert by_query == by_cursor
    assert sorted(by_query) == sorted(p.name for p in archive.iterdir())
    assert {props["location"] for props in by_query.values()} == {"archive"}
    rescan = run_json(env, "scan", "archive")[0]  # the cursor path, as for a large location
    assert (rescan["unchanged"], rescan["new"], rescan["deleted"]) == (8, 0, 0)
