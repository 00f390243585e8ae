"""`deeplens es setup` and bulk indexing against a real Elasticsearch core node (tests/esnode):
templates apply, what a core node lacks is reported, and kNN plus the exact-duplicate
aggregation work on documents indexed through deeplens.ingest.bulk."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from deeplens.config import Settings
from deeplens.ingest import bulk
from deeplens.ingest.cli import es as es_group
from deeplens.ingest.setup import SetupError, configured_pipeline, setup
from deeplens.modules.profiles import OFFLINE
from deeplens.processes import free_port
from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import ImageRecord

pytestmark = pytest.mark.elasticsearch

DIMS = 8
CORE_NODE = not os.environ.get("DEEPLENS_TEST_ELASTICSEARCH_URL")


@pytest.fixture(scope="module")
def es(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    client = Elasticsearch(elasticsearch_url, request_timeout=30)
    yield client
    for index in schema.indices():
        client.indices.delete(index=index, ignore_unavailable=True)
    for name in schema.index_templates():
        client.options(ignore_status=404).indices.delete_index_template(name=name)
    for name in schema.component_templates(DIMS):
        client.options(ignore_status=404).cluster.delete_component_template(name=name)
    client.close()


@pytest.fixture(scope="module")
def installed(es: Elasticsearch, elasticsearch_url: str):
    settings = Settings(es_url=elasticsearch_url)
    result = CliRunner().invoke(
        es_group, ["setup", "--mode", "precomputed", "--semantic-dims", str(DIMS)], obj=settings
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_setup_reports_what_a_core_node_cannot_do(installed: str) -> None:
    if not CORE_NODE:
        pytest.skip("documents the embedded core node")
    assert "mode precomputed" in installed.lower()
    assert "unsupported: pipeline deeplens-images not installed: ingest processors missing" in installed
    for processor in ("grok", "lowercase", "remove", "set"):
        assert processor in installed
    assert "unsupported: transform deeplens-duplicate-groups not installed" in installed
    assert "pipeline none" in installed


def test_setup_is_idempotent(es: Elasticsearch, installed: str) -> None:
    again = setup(es, mode="precomputed", semantic_dims=DIMS)
    assert f"index {schema.IMAGES_INDEX} (exists)" in again.done


def test_setup_refuses_other_dims(es: Elasticsearch, installed: str) -> None:
    with pytest.raises(SetupError, match=f"holds {DIMS}-d semantic vectors"):
        setup(es, mode="precomputed", semantic_dims=DIMS * 2)
    # The refused attempt left the component template alone.
    component = es.cluster.get_component_template(name=schema.IMAGES_MAPPINGS_COMPONENT)
    mappings = component["component_templates"][0]["component_template"]["template"]["mappings"]
    assert mappings["properties"]["semantic"]["dims"] == DIMS


def test_setup_takes_the_dims_from_the_module_server(elasticsearch_url: str, modules_url: str, installed: str) -> None:
    settings = Settings(es_url=elasticsearch_url, modules_url=modules_url)
    result = CliRunner().invoke(es_group, ["setup", "--mode", "precomputed"], obj=settings)
    # The index was made for DIMS-d vectors; the module server (offline profile) reports its own.
    assert result.exit_code == 1, result.output
    assert f"holds {DIMS}-d semantic vectors, not {OFFLINE.dims}" in result.output


def test_setup_without_a_module_server_says_how_to_fix_it(elasticsearch_url: str) -> None:
    settings = Settings(es_url=elasticsearch_url, modules_url=f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(es_group, ["setup", "--mode", "precomputed"], obj=settings)
    assert result.exit_code == 1, result.output
    assert "cannot read the embedding dimensions from the module server" in result.output
    assert "deeplens up" in result.output and "--semantic-dims" in result.output


def test_auto_mode_without_license_api_picks_precomputed(es: Elasticsearch, installed: str) -> None:
    if not CORE_NODE:
        pytest.skip("documents the embedded core node")
    report = setup(es, mode="auto", semantic_dims=DIMS)
    assert report.mode == "precomputed"
    assert any("no _license API" in note and "no inference API" in note for note in report.notes)
    with pytest.raises(SetupError, match="--mode inference is not possible"):
        setup(es, mode="inference", semantic_dims=DIMS)


def test_templates_apply_generated_mapping(es: Elasticsearch, installed: str) -> None:
    props = es.indices.get_mapping(index=schema.IMAGES_ALIAS)[schema.IMAGES_INDEX]["mappings"]["properties"]
    assert set(ImageRecord.model_fields) <= set(props)
    assert props["semantic"] == {"type": "dense_vector", "dims": DIMS, "index": True, "similarity": "cosine",
                                 **{k: v for k, v in props["semantic"].items() if k == "index_options"}}
    assert props["phash_bits"]["element_type"] == "bit" and props["phash_bits"]["dims"] == 64
    assert props["content_sha256"]["type"] == "keyword"
    assert props["size_bytes"]["type"] == "long"
    assert props["indexed_at"]["type"] == "date"
    assert props["thumbnail"]["type"] == "binary"
    groups = es.indices.get_mapping(index=schema.DUPLICATE_GROUPS_INDEX)[schema.DUPLICATE_GROUPS_INDEX]
    assert groups["mappings"]["properties"]["wasted_bytes"]["type"] == "long"
    assert es.indices.exists(index=schema.LOCATIONS_INDEX)
    assert configured_pipeline(es) is None  # no ingest processors: index without a pipeline


def _record(name: str, location: str, sha: str, size: int, vector: list[float], phash: int) -> dict:
    hex_hash = f"{phash:016x}"
    record = ImageRecord(
        location=location, uri=f"file:///{location}/{name}", path=f"photos/{name}", folder="photos",
        filename=name, extension="jpg", size_bytes=size, content_sha256=sha, phash=hex_hash,
        scan_id="scan-1", thumbnail="aGVsbG8=",
    ).model_dump(mode="json")
    return {**record, "semantic": vector, "phash_bits": hex_hash}


def test_bulk_then_knn_and_duplicate_aggregation(es: Elasticsearch, installed: str) -> None:
    rng = random.Random(7)
    base = rng.getrandbits(64)
    records = [
        _record("cat.jpg", "nas", "a" * 64, 1000, [1, 0, 0, 0, 0, 0, 0, 0], base),
        _record("cat-copy.jpg", "s3", "a" * 64, 1000, [1, 0, 0, 0, 0, 0, 0, 0], base),
        _record("cat-near.jpg", "nas", "b" * 64, 900, [0.9, 0.1, 0, 0, 0, 0, 0, 0], base ^ 0b101),
        _record("dog.jpg", "nas", "c" * 64, 800, [0, 0, 1, 0, 0, 0, 0, 0], ~base & (2**64 - 1)),
    ]
    bad = {**_record("bad.jpg", "nas", "d" * 64, 1, [0] * 7 + [1], base), "semantic": [1, 2]}  # wrong dims
    result = bulk.index_records(es, records + [bad], pipeline=configured_pipeline(es), refresh="wait_for")
    assert result.indexed == 4
    [error] = result.errors
    assert error.path == "photos/bad.jpg" and error.status == 400 and "dimension" in error.error

    # Re-indexing the same records is an upsert (deterministic ids), not new documents.
    assert bulk.index_records(es, records, pipeline=None, refresh="wait_for").ok
    assert es.count(index=schema.IMAGES_ALIAS)["count"] == 4

    semantic = es.search(
        index=schema.IMAGES_ALIAS,
        knn={"field": "semantic", "query_vector": [0, 0, 1, 0, 0, 0, 0, 0], "k": 2, "num_candidates": 10},
        source=["filename"],
    )
    assert semantic["hits"]["hits"][0]["_source"]["filename"] == "dog.jpg"
    near = es.search(
        index=schema.IMAGES_ALIAS,
        knn={"field": "phash_bits", "query_vector": f"{base:016x}", "k": 4, "num_candidates": 10},
        source=["filename"],
    )
    names = [hit["_source"]["filename"] for hit in near["hits"]["hits"]]
    assert set(names[:2]) == {"cat.jpg", "cat-copy.jpg"} and names[2] == "cat-near.jpg"

    dups = es.search(
        index=schema.IMAGES_ALIAS,
        size=0,
        aggs={"groups": {"terms": {"field": "content_sha256", "min_doc_count": 2},
                         "aggs": {"size": {"max": {"field": "size_bytes"}},
                                  "locations": {"terms": {"field": "location"}}}}},
    )
    [group] = dups["aggregations"]["groups"]["buckets"]
    assert group["key"] == "a" * 64 and group["doc_count"] == 2
    assert (group["doc_count"] - 1) * group["size"]["value"] == 1000  # wasted bytes
    assert {b["key"] for b in group["locations"]["buckets"]} == {"nas", "s3"}
