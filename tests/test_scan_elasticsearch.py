"""`deeplens scan` with DEEPLENS_ES_URL set writes the same records to Elasticsearch (precomputed
mode: the worker sends finished vectors), against the real core node and the real Weaviate."""

from __future__ import annotations

import json

import pytest
from elasticsearch import Elasticsearch
from PIL import Image

from deeplens.samples import TRANSFORMS, jpeg_bytes, sample_photos, write_demo_locations
from deeplens.schema.elasticsearch import IMAGES_ALIAS
from tests.cli import run, run_json, uri

pytestmark = [pytest.mark.weaviate, pytest.mark.elasticsearch]


@pytest.fixture
def es_env(env, elasticsearch_url):
    es = Elasticsearch(elasticsearch_url)
    for index in es.indices.get(index="deeplens-*", expand_wildcards="all"):  # wildcard deletes are refused
        es.indices.delete(index=index)
    es.options(ignore_status=404).indices.delete_index_template(name="deeplens-*")
    return {**env, "DEEPLENS_ES_URL": elasticsearch_url}, es


def test_scan_writes_documents_with_vectors_and_removes_deleted_files(es_env, tmp_path):
    env, es = es_env
    photos = sample_photos()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "rocket"):
        (folder / f"{name}.jpg").write_bytes(jpeg_bytes(photos[name]))
    (folder / "rocket copy.jpg").write_bytes((folder / "rocket.jpg").read_bytes())

    run(env, "es", "setup", "--mode", "precomputed")
    run(env, "storage", "add", "photos", str(folder))
    [summary] = run_json(env, "scan", "photos")
    assert summary["new"] == 4 and summary["errors"] == 0
    es.indices.refresh(index=IMAGES_ALIAS)
    assert es.count(index=IMAGES_ALIAS)["count"] == 4

    coffee = es.search(index=IMAGES_ALIAS, query={"term": {"filename": "coffee.jpg"}}, source=["semantic", "phash"])
    doc = coffee["hits"]["hits"][0]["_source"]
    assert len(doc["semantic"]) == 1280 and len(doc["phash"]) == 16
    knn = es.search(index=IMAGES_ALIAS, knn={"field": "semantic", "query_vector": doc["semantic"], "k": 2,
                                             "num_candidates": 10}, source=["filename"])
    assert knn["hits"]["hits"][0]["_source"]["filename"] == "coffee.jpg"
    by_hash = es.search(index=IMAGES_ALIAS, knn={"field": "phash_bits", "query_vector": doc["phash"], "k": 1,
                                                 "num_candidates": 10}, source=["filename"])
    assert by_hash["hits"]["hits"][0]["_source"]["filename"] == "coffee.jpg"

    groups = es.search(index=IMAGES_ALIAS, size=0, aggs={"copies": {"terms": {"field": "content_sha256", "min_doc_count": 2}}})
    [group] = groups["aggregations"]["copies"]["buckets"]
    assert group["doc_count"] == 2

    # The CLI answers the same questions from Elasticsearch.
    exact = run_json(env, "duplicates", "--exact", "--backend", "elasticsearch")
    [es_group] = exact["groups"]
    assert {m["uri"] for m in es_group["members"]} == {uri(folder / "rocket.jpg"), uri(folder / "rocket copy.jpg")}
    assert exact == run_json(env, "duplicates", "--exact")  # the same answer as Weaviate's
    near = run_json(env, "duplicates", "--near", "--backend", "elasticsearch")
    assert [g["kind"] for g in near["groups"]] == ["exact"] and near["total_wasted_bytes"] == exact["total_wasted_bytes"]
    hits = run_json(env, "search", "--image", str(folder / "coffee.jpg"), "--backend", "elasticsearch")["hits"]
    assert hits[0]["uri"] == uri(folder / "coffee.jpg") and hits[0]["distance"] < 0.01
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(jpeg_bytes(photos["coffee"].transpose(Image.Transpose.ROTATE_90)))
    near_hits = run_json(env, "search", "--image", str(turned), "--near-dup", "--backend", "elasticsearch")["hits"]
    assert near_hits[0]["uri"] == uri(folder / "coffee.jpg") and near_hits[0]["hamming_distance"] <= 4

    (folder / "rocket copy.jpg").unlink()
    [again] = run_json(env, "scan", "photos")
    assert again["deleted"] == 1
    es.indices.refresh(index=IMAGES_ALIAS)
    assert es.count(index=IMAGES_ALIAS)["count"] == 3


def test_scan_without_es_setup_says_what_to_run(es_env, tmp_path):
    env, _ = es_env
    folder = tmp_path / "photos"
    folder.mkdir()
    run(env, "storage", "add", "photos", str(folder))
    result = run(env, "scan", "photos", ok=False)
    assert result.exit_code == 1 and "deeplens es setup" in result.output


def test_a_pair_that_cannot_be_verified_is_reported_never_grouped(es_env, tmp_path):
    """An index without thumbnails (Elasticsearch's default pipeline drops them unless `es setup
    --keep-thumbnails`; the test node runs no ingest pipelines, so the test drops one itself)
    cannot verify a crop: the pair is reported with the reason, never grouped."""
    env, es = es_env
    photos = sample_photos()
    folder = tmp_path / "photos"
    folder.mkdir()
    original = photos["brick"].convert("RGB")
    (folder / "brick.jpg").write_bytes(jpeg_bytes(original))
    (folder / "brick-crop.jpg").write_bytes(jpeg_bytes(TRANSFORMS["crop"](original)))
    run(env, "es", "setup", "--mode", "precomputed")
    run(env, "storage", "add", "photos", str(folder))
    run_json(env, "scan", "photos")
    es.indices.refresh(index=IMAGES_ALIAS)
    [crop] = es.search(index=IMAGES_ALIAS, query={"term": {"filename": "brick-crop.jpg"}})["hits"]["hits"]
    es.index(index=crop["_index"], id=crop["_id"], document={k: v for k, v in crop["_source"].items() if k != "thumbnail"},
             refresh=True)
    near = run_json(env, "duplicates", "--near", "--backend", "elasticsearch")
    assert near["groups"] == [] and near["total_wasted_bytes"] == 0
    [pair] = near["unverified"]
    assert {pair["a"], pair["b"]} == {uri(folder / "brick.jpg"), uri(folder / "brick-crop.jpg")}
    assert "--keep-thumbnails" in pair["reason"] and pair["evidence"]["cosine"] <= 0.16
    # Weaviate keeps thumbnails: there the same pair is verified and grouped.
    [group] = run_json(env, "duplicates", "--near")["groups"]
    assert [m["tier"] for m in group["members"]] == ["kept", "derived"]


def test_weaviate_and_elasticsearch_give_the_same_groups_and_stats(es_env, tmp_path):
    """One grouping core, two backends: the same scanned images give the same answers."""
    env, es = es_env
    folders = write_demo_locations(tmp_path / "demo")
    # Verification of derived copies compares thumbnails, which Elasticsearch keeps only when asked.
    run(env, "es", "setup", "--mode", "precomputed", "--keep-thumbnails")
    for name, folder in folders.items():
        run(env, "storage", "add", name, str(folder))
    summaries = run_json(env, "scan", *folders)
    es.indices.refresh(index=IMAGES_ALIAS)
    assert sum(s["new"] for s in summaries) == es.count(index=IMAGES_ALIAS)["count"] > 0

    near = run_json(env, "duplicates", "--near")
    assert len(near["groups"]) == 10 and all(len(g["members"]) >= 2 for g in near["groups"])  # one per original
    es_near = run_json(env, "duplicates", "--near", "--backend", "elasticsearch")
    # Elasticsearch scores kNN on int8-quantized vectors (its default index_options for dense_vector),
    # so its cosine distances differ in the third decimal; everything else is the same.
    assert _without_cosines(es_near) == _without_cosines(near)
    assert all(abs(a - b) < 0.005 for a, b in zip(_cosines(es_near), _cosines(near), strict=True))
    assert run_json(env, "duplicates", "--exact", "--backend", "elasticsearch") == run_json(env, "duplicates", "--exact")
    stats = run_json(env, "stats")
    assert [row["location"] for row in stats["locations"]] == ["archive", "exports"]
    assert run_json(env, "stats", "--backend", "elasticsearch") == stats

    for query in sorted(folders["archive"].glob("*.jpg"))[:2]:
        near_dup = run_json(env, "search", "--image", str(query), "--near-dup")["hits"]
        assert near_dup and run_json(env, "search", "--image", str(query), "--near-dup", "--backend", "elasticsearch")["hits"] == near_dup
        similar = run_json(env, "search", "--image", str(query))["hits"]
        es_similar = run_json(env, "search", "--image", str(query), "--backend", "elasticsearch")["hits"]
        # The query and its byte-identical copy tie at the top (either order); Elasticsearch's int8
        # kNN moves distances in the third decimal, so the tail of the ten may differ by an image.
        assert {h["uri"] for h in es_similar[:2]} == {h["uri"] for h in similar[:2]}
        distances, es_distances = ({h["uri"]: h["distance"] for h in hits} for hits in (similar, es_similar))
        common = distances.keys() & es_distances.keys()
        assert len(common) >= len(similar) - 1
        assert all(abs(distances[uri] - es_distances[uri]) < 0.005 for uri in common)


def _members(duplicates: dict):
    return [m for group in duplicates["groups"] for m in group["members"]]


def _cosines(duplicates: dict) -> list[float]:
    return [m["evidence"].get("cosine") for m in _members(duplicates) if m["evidence"] and "cosine" in m["evidence"]]


def _without_cosines(duplicates: dict) -> dict:
    copy = json.loads(json.dumps(duplicates))
    for member in _members(copy):
        (member["evidence"] or {}).pop("cosine", None)
    return copy
