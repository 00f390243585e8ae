"""`deeplens duplicates --publish` against the real Elasticsearch core node (tests/esnode) and the
real Weaviate: the documents of `deeplens-duplicate-copies` are the copies of the groups
`duplicates` prints (same kept copies, tiers and bytes, per location as `stats` charges them), and
a later publish replaces the earlier one instead of adding to it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from deeplens.connectors.queries.stats import RECLAIMED_TIERS
from deeplens.ingest import bulk
from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos
from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import DuplicateCopy, utcnow
from tests.cli import run, run_json, uri
from tests.test_scan_elasticsearch import es_env  # noqa: F401 (the fixture: empty Elasticsearch and Weaviate)

pytestmark = [pytest.mark.weaviate, pytest.mark.elasticsearch]


def _photo_locations(root: Path) -> dict[str, Path]:
    """Two locations: an exact copy of one photo in the other location, a resized copy (near) and a
    crop (derived) in other folders, and a photo without copies."""
    photos = sample_photos()
    brick = photos["brick"].convert("RGB")
    files = {
        "nas/trips/rocket.jpg": jpeg_bytes(photos["rocket"]),
        "nas/trips/coffee.jpg": jpeg_bytes(photos["coffee"]),
        "nas/edits/coffee-small.jpg": jpeg_bytes(TRANSFORMS["resize"](photos["coffee"])),
        "nas/trips/brick.jpg": jpeg_bytes(brick),
        "nas/trips/astronaut.jpg": jpeg_bytes(photos["astronaut"]),
        "backup/old/brick-crop.jpg": jpeg_bytes(TRANSFORMS["crop"](brick)),
    }
    files["backup/old/rocket.jpg"] = files["nas/trips/rocket.jpg"]
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {"nas": root / "nas", "backup": root / "backup"}


def _published(es) -> list[dict]:
    """The documents behind the alias, after checking it points at exactly one index."""
    [index] = es.indices.get_alias(name=schema.DUPLICATE_COPIES_ALIAS)
    assert list(es.indices.get(index=schema.DUPLICATE_COPIES_PATTERN)) == [index]  # the replaced ones are gone
    hits = es.search(index=schema.DUPLICATE_COPIES_ALIAS, size=1000, query={"match_all": {}})["hits"]["hits"]
    assert all(hit["_index"] == index for hit in hits)
    return [DuplicateCopy.model_validate(hit["_source"]).model_dump(mode="json") for hit in hits]


def _copies(duplicates: dict) -> set[tuple]:
    """(kept uri, copy uri, tier, size, distance, group kind) of every copy `duplicates --json` lists."""
    return {(g["members"][0]["uri"], m["uri"], m["tier"], m["size_bytes"], m["distance"], g["kind"])
            for g in duplicates["groups"] for m in g["members"][1:]}


def _documents(documents: list[dict]) -> set[tuple]:
    return {(d["kept_uri"], d["uri"], d["tier"], d["size_bytes"], d["distance"], d["group_kind"]) for d in documents}


def _bytes_per_location(documents: list[dict], tiers: tuple[str, ...]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for document in documents:
        if document["tier"] in tiers:
            totals[document["location"]] += document["size_bytes"]
    return dict(totals)


def _charged(stats: dict, column: str) -> dict[str, int]:
    return {row["location"]: row[column] for row in stats["locations"] if row[column]}


def test_publish_writes_every_copy_and_a_later_publish_replaces_it(es_env, tmp_path):  # noqa: F811
    env, es = es_env
    folders = _photo_locations(tmp_path)
    run(env, "es", "setup", "--mode", "precomputed")
    for name, folder in folders.items():
        run(env, "storage", "add", name, str(folder))
    run_json(env, "scan", *folders)
    es.indices.refresh(index=schema.IMAGES_ALIAS)

    near = run_json(env, "duplicates", "--near", "--backend", "elasticsearch", "--publish")
    published = near.pop("published")
    assert near == run_json(env, "duplicates", "--near", "--backend", "elasticsearch")  # publishing changes no answer
    documents = _published(es)
    assert published["alias"] == schema.DUPLICATE_COPIES_ALIAS and published["replaced"] == []
    assert published["copies"] == len(documents) == 3
    assert published["wasted_bytes"] == near["total_wasted_bytes"] == sum(d["size_bytes"] for d in documents)
    assert {d["tier"] for d in documents} == {"exact", "near", "derived"}
    assert _documents(documents) == _copies(near)
    # The bytes a cleanup of exact and near copies reclaims, per location, as `stats --near` charges them.
    stats = run_json(env, "stats", "--near", "--backend", "elasticsearch")
    assert _bytes_per_location(documents, RECLAIMED_TIERS) == _charged(stats, "near_duplicate_bytes")
    by_uri = {d["uri"]: d for d in documents}
    rocket = by_uri[uri(folders["backup"] / "old" / "rocket.jpg")]
    assert (rocket["location"], rocket["folder"], rocket["path"], rocket["tier"]) == ("backup", "old", "old/rocket.jpg",
                                                                                      "exact")
    assert (rocket["kept_location"], rocket["kept_path"], rocket["cross_location"]) == ("nas", "trips/rocket.jpg", True)
    small = by_uri[uri(folders["nas"] / "edits" / "coffee-small.jpg")]
    assert (small["folder"], small["tier"], small["kept_path"]) == ("edits", "near", "trips/coffee.jpg")
    assert not small["cross_location"]
    assert len({d["publish_id"] for d in documents}) == 1

    # An exact publish: the exact copies only, as `stats` charges them.
    exact = run_json(env, "duplicates", "--exact", "--publish")
    assert exact.pop("published")["replaced"] == [published["index"]]
    exact_documents = _published(es)
    assert _documents(exact_documents) == _copies(exact) and len(exact_documents) == 1
    assert _bytes_per_location(exact_documents, ("exact",)) == _charged(run_json(env, "stats"), "duplicate_bytes")

    # A copy deleted and rescanned: the next publish (from Weaviate this time) no longer counts it.
    (folders["backup"] / "old" / "rocket.jpg").unlink()
    run_json(env, "scan", "backup")
    es.indices.refresh(index=schema.IMAGES_ALIAS)
    again = run_json(env, "duplicates", "--near", "--publish")
    assert again.pop("published")["copies"] == 2
    documents = _published(es)
    assert _documents(documents) == _copies(again) and {d["tier"] for d in documents} == {"near", "derived"}
    assert rocket["uri"] not in {d["uri"] for d in documents}
    assert _bytes_per_location(documents, RECLAIMED_TIERS) == _charged(run_json(env, "stats", "--near"),
                                                                       "near_duplicate_bytes")


def test_publish_refuses_what_it_cannot_do_and_says_why(es_env, tmp_path):  # noqa: F811
    env, es = es_env
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "coffee.jpg").write_bytes(jpeg_bytes(sample_photos()["coffee"]))
    (folder / "coffee copy.jpg").write_bytes((folder / "coffee.jpg").read_bytes())
    no_url = {k: v for k, v in env.items() if k != "DEEPLENS_ES_URL"}
    run(no_url, "storage", "add", "photos", str(folder))
    run_json(no_url, "scan", "photos")  # into Weaviate only

    result = run(no_url, "duplicates", "--publish", ok=False)
    assert result.exit_code == 1 and "DEEPLENS_ES_URL" in result.output
    result = run(env, "duplicates", "--publish", ok=False)
    assert result.exit_code == 1 and "run `deeplens es setup`" in result.output
    for narrowed in (("--location", "photos"), ("--folders",)):
        result = run(env, "duplicates", "--publish", *narrowed, ok=False)
        assert result.exit_code == 2 and "leave out --folders and --location" in result.output

    run(env, "es", "setup", "--mode", "precomputed")
    result = run(env, "duplicates", "--publish", ok=False)  # Weaviate has the images, Elasticsearch does not
    assert result.exit_code == 1 and "2 of the 2 grouped images are not in Elasticsearch" in result.output
    assert "scan their locations with DEEPLENS_ES_URL set" in result.output
    assert not es.indices.exists_alias(name=schema.DUPLICATE_COPIES_ALIAS)


def test_a_refused_document_leaves_the_published_copies_as_they_were(es_env):  # noqa: F811
    _, es = es_env
    schema.install(es, semantic_dims=8)
    copy = DuplicateCopy(
        group_id="kept-id", group_kind="near", tier="near", location="nas", folder="a", path="a/b.jpg",
        uri="file:///nas/a/b.jpg", size_bytes=10, distance=2, kept_location="nas", kept_path="a/c.jpg",
        kept_uri="file:///nas/a/c.jpg", cross_location=False, publish_id="first", published_at=utcnow(),
    ).model_dump(mode="json")
    first, _ = bulk.replace_index(es, schema.DUPLICATE_COPIES_ALIAS, "first", [copy])
    unmapped = copy | {"path": "a/d.jpg", "cosine": 0.1}  # the template's mapping is strict
    with pytest.raises(bulk.IndexingError, match=r"refused 1 of 2 documents \(nas:a/d\.jpg: strict_dynamic_mapping"):
        bulk.replace_index(es, schema.DUPLICATE_COPIES_ALIAS, "second", [copy, unmapped])
    assert list(es.indices.get_alias(name=schema.DUPLICATE_COPIES_ALIAS)) == [first]
    assert [d["path"] for d in _published(es)] == ["a/b.jpg"]
