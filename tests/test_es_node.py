"""Real tests against a real Elasticsearch node (tests/esnode): what DeepLens relies on.

They use the official Python client unpatched, so they also prove that the embedded
node speaks to it like a distribution does (product header, GET /, error shapes).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import BadRequestError, Elasticsearch, helpers

pytestmark = pytest.mark.elasticsearch

FLOAT_DIMS = 8
BIT_DIMS = 64  # 8 bytes per vector

# Exact duplicates share content_sha256 (and therefore size_bytes).
DUP_SHA = "d" * 64
DUP_SIZE = 1000


def _bits_hex(value: int) -> str:
    """A 64-bit integer as the 16-char hex string Elasticsearch accepts for bit vectors."""
    return value.to_bytes(BIT_DIMS // 8, "big").hex()


def _bits_int8(value: int) -> list[int]:
    """The same 64 bits as a signed-byte array (the other accepted encoding)."""
    return [b - 256 if b > 127 else b for b in value.to_bytes(BIT_DIMS // 8, "big")]


def _flip(value: int, positions: list[int]) -> int:
    for p in positions:
        value ^= 1 << p
    return value


_rng = random.Random(1234)
BASE_HASH = _rng.getrandbits(BIT_DIMS)
NEAR_HASH = _flip(BASE_HASH, [5])  # Hamming distance 1
FAR_HASH = _flip(BASE_HASH, _rng.sample(range(BIT_DIMS), 20))  # Hamming distance 20
OTHER_HASH = BASE_HASH ^ ((1 << BIT_DIMS) - 1)  # every bit flipped: distance 64

DOCS = [
    # id, float embedding, bit hash, sha256, size
    ("cat", [1, 0, 0, 0, 0, 0, 0, 0], NEAR_HASH, DUP_SHA, DUP_SIZE),
    ("cat-copy", [1, 0, 0, 0, 0, 0, 0, 0], NEAR_HASH, DUP_SHA, DUP_SIZE),
    ("cat-copy-2", [1, 0, 0, 0, 0, 0, 0, 0], NEAR_HASH, DUP_SHA, DUP_SIZE),
    ("cat-edited", [0.7, 0.7, 0, 0, 0, 0, 0, 0], FAR_HASH, "e" * 64, 1200),
    ("dog", [0, 0, 1, 0, 0, 0, 0, 0], OTHER_HASH, "f" * 64, 900),
    ("car", [0, 0, 0, 0, 0, 0, 1, 1], OTHER_HASH, "a" * 64, 800),
]


@pytest.fixture(scope="module")
def es(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    client = Elasticsearch(elasticsearch_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def images_index(es: Elasticsearch) -> Iterator[str]:
    """A composable template + an index it applies to, filled via helpers.bulk."""
    prefix = f"deeplens-test-{uuid.uuid4().hex[:8]}"
    template, index = f"{prefix}-template", f"{prefix}-images"
    es.indices.put_index_template(
        name=template,
        index_patterns=[f"{prefix}-*"],
        template={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "path": {"type": "keyword"},
                    "content_sha256": {"type": "keyword"},
                    "size_bytes": {"type": "long"},
                    "embedding": {
                        "type": "dense_vector",
                        "dims": FLOAT_DIMS,
                        "index": True,
                        "similarity": "cosine",
                    },
                    "phash": {"type": "dense_vector", "element_type": "bit", "dims": BIT_DIMS, "index": True},
                }
            },
        },
    )
    try:
        actions = [
            {
                "_index": index,
                "_id": doc_id,
                "path": f"/photos/{doc_id}.jpg",
                "embedding": vec,
                "phash": _bits_hex(bits),
                "content_sha256": sha,
                "size_bytes": size,
            }
            for doc_id, vec, bits, sha, size in DOCS
        ]
        ok, errors = helpers.bulk(es, actions, refresh="wait_for")
        assert ok == len(DOCS) and not errors
        yield index
    finally:
        # By exact name: 8.x refuses wildcard deletes (action.destructive_requires_name).
        es.indices.delete(index=index, ignore_unavailable=True)
        es.indices.delete_index_template(name=template)


def test_info_and_ping_with_product_header(es: Elasticsearch) -> None:
    # info() raises UnsupportedProductError unless the server sends X-Elastic-Product.
    info = es.info()
    assert info.meta.headers.get("X-Elastic-Product") == "Elasticsearch"
    assert info["tagline"] == "You Know, for Search"
    assert info["cluster_uuid"] and info["name"]
    assert int(info["version"]["number"].split(".")[0]) >= 8
    if not os.environ.get("DEEPLENS_TEST_ELASTICSEARCH_URL"):
        from tests.esnode.harness import es_version

        assert info["version"]["number"] == es_version()
        assert info["cluster_name"] == "deeplens-test"
    assert es.ping() is True


def test_template_applies_mapping(es: Elasticsearch, images_index: str) -> None:
    props = es.indices.get_mapping(index=images_index)[images_index]["mappings"]["properties"]
    assert props["embedding"]["type"] == "dense_vector"
    assert props["embedding"]["similarity"] == "cosine"
    assert props["phash"]["element_type"] == "bit"
    assert props["phash"]["dims"] == BIT_DIMS
    assert props["content_sha256"]["type"] == "keyword"
    assert es.count(index=images_index)["count"] == len(DOCS)


def test_knn_float_cosine_returns_nearest_first(es: Elasticsearch, images_index: str) -> None:
    resp = es.search(
        index=images_index,
        knn={"field": "embedding", "query_vector": [0, 0, 0.9, 0.1, 0, 0, 0, 0], "k": 3, "num_candidates": 10},
        source=False,
    )
    ids = [hit["_id"] for hit in resp["hits"]["hits"]]
    assert ids[0] == "dog"
    assert len(ids) == 3


def test_knn_bit_hamming_ranks_fewer_flipped_bits_higher(es: Elasticsearch, images_index: str) -> None:
    # Query with the int8 encoding while the docs were indexed as hex: both must agree.
    resp = es.search(
        index=images_index,
        knn={"field": "phash", "query_vector": _bits_int8(BASE_HASH), "k": 6, "num_candidates": 10},
        source=False,
    )
    hits = resp["hits"]["hits"]
    ids = [hit["_id"] for hit in hits]
    scores = {hit["_id"]: hit["_score"] for hit in hits}
    near = {"cat", "cat-copy", "cat-copy-2"}  # 1 flipped bit
    assert set(ids[:3]) == near
    assert ids[3] == "cat-edited"  # 20 flipped bits
    assert scores["cat"] > scores["cat-edited"] > scores["dog"]
    # The same query as a hex string gives the same ranking.
    resp_hex = es.search(
        index=images_index,
        knn={"field": "phash", "query_vector": _bits_hex(BASE_HASH), "k": 6, "num_candidates": 10},
        source=False,
    )
    assert [h["_id"] for h in resp_hex["hits"]["hits"]][3] == "cat-edited"


def test_terms_aggregation_finds_exact_duplicate_group(es: Elasticsearch, images_index: str) -> None:
    resp = es.search(
        index=images_index,
        size=0,
        aggs={
            "dups": {
                "terms": {"field": "content_sha256", "min_doc_count": 2, "size": 100},
                "aggs": {
                    "bytes": {"sum": {"field": "size_bytes"}},
                    "paths": {"top_hits": {"size": 10, "_source": ["path"], "sort": [{"path": "asc"}]}},
                },
            }
        },
    )
    buckets = resp["aggregations"]["dups"]["buckets"]
    assert [b["key"] for b in buckets] == [DUP_SHA]
    assert buckets[0]["doc_count"] == 3
    assert buckets[0]["bytes"]["value"] == 3 * DUP_SIZE
    paths = [h["_source"]["path"] for h in buckets[0]["paths"]["hits"]["hits"]]
    assert paths == ["/photos/cat-copy-2.jpg", "/photos/cat-copy.jpg", "/photos/cat.jpg"]


@pytest.mark.skipif(
    bool(os.environ.get("DEEPLENS_TEST_ELASTICSEARCH_URL")),
    reason="documents the embedded core node; a full distribution has x-pack and a _license API",
)
def test_no_license_api_means_no_inference(es: Elasticsearch) -> None:
    # The core node has no x-pack: GET _license is not a route, so it is parsed as
    # "get index _license" and rejected with a 400. DeepLens' setup must read this
    # as "no inference API" rather than as a crash.
    with pytest.raises(BadRequestError) as excinfo:
        es.license.get()
    assert excinfo.value.meta.status == 400
    assert excinfo.value.error == "invalid_index_name_exception"
    assert "_license" in str(excinfo.value)
