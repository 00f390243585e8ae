"""The same questions answered by Elasticsearch (`--backend elasticsearch`): kNN on `semantic`
(cosine) and on `phash_bits` (bit vectors: Hamming), terms aggregations for exact copies.
Documents come from `deeplens scan` with DEEPLENS_ES_URL set (precomputed mode)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from elasticsearch import Elasticsearch, helpers

from deeplens.connectors.duplicates import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_SEMANTIC_DISTANCE,
    NEIGHBOURS,
    Group,
    keep_order,
    member_of,
    phash_distance,
    star_groups,
    turned_copies,
)
from deeplens.connectors.extract import extract
from deeplens.connectors.retry import retry
from deeplens.modules.phash import BITS
from deeplens.schema.elasticsearch import IMAGES_ALIAS

RESULT_FIELDS = ["location", "uri", "path", "size_bytes", "width", "height", "format"]
MEMBER_FIELDS = ["location", "uri", "size_bytes", "width", "height", "content_sha256", "phash", "phash_dihedral"]


def _location_filter(locations: list[str] | None) -> list[dict]:
    return [{"terms": {"location": locations}}] if locations else []


def _hamming(score: float) -> int:
    # For bit vectors Elasticsearch scores (bits - hamming) / bits.
    return round(BITS * (1 - score))


def _cosine_distance(score: float) -> float:
    # For cosine Elasticsearch scores (1 + cosine) / 2.
    return 1 - (2 * score - 1)


def _features(modules_url: str, data: bytes, features: list[str]) -> dict:
    body = {"images": [{"data": extract(data).thumbnail}], "features": features}
    with httpx.Client(base_url=modules_url, timeout=60) as modules:
        response = retry(lambda: modules.post("/v1/features", json=body).raise_for_status(), what="module server")
    result = response.json()["results"][0]
    if "error" in result:
        raise ValueError(result["error"])
    return result


def _knn(es: Elasticsearch, field: str, vector, k: int, locations, source) -> list[dict]:
    knn = {"field": field, "query_vector": vector, "k": k, "num_candidates": max(100, 2 * k),
           "filter": _location_filter(locations)}
    return es.search(index=IMAGES_ALIAS, knn=knn, size=k, source=source)["hits"]["hits"]


def search_image(es: Elasticsearch, data: bytes, modules_url: str, limit: int = 10,
                 locations: list[str] | None = None, near_dup: bool = False,
                 max_distance: int = DEFAULT_MAX_DISTANCE) -> list[dict]:
    if not near_dup:
        vector = _features(modules_url, data, ["semantic"])["semantic"]
        hits = _knn(es, "semantic", vector, limit, locations, RESULT_FIELDS)
        return [{**hit["_source"], "distance": round(_cosine_distance(hit["_score"]), 4)} for hit in hits]
    best: dict[str, tuple[int, dict]] = {}
    for variant in dict.fromkeys(_features(modules_url, data, ["dihedral"])["phash_dihedral"].values()):
        for hit in _knn(es, "phash_bits", variant, limit, locations, RESULT_FIELDS):
            distance = _hamming(hit["_score"])
            if distance <= max_distance and (hit["_id"] not in best or distance < best[hit["_id"]][0]):
                best[hit["_id"]] = (distance, hit["_source"])
    ranked = sorted(best.values(), key=lambda item: (item[0], item[1]["uri"]))[:limit]
    return [{**source, "hamming_distance": distance} for distance, source in ranked]


def exact_groups(es: Elasticsearch, locations: list[str] | None = None) -> list[Group]:
    groups = []
    after = None
    while True:  # composite aggregation pages through every content hash
        composite = {"size": 1000, "sources": [{"sha": {"terms": {"field": "content_sha256"}}}]}
        if after:
            composite["after"] = after
        response = es.search(
            index=IMAGES_ALIAS, size=0, query={"bool": {"filter": _location_filter(locations)}},
            aggs={"by_sha": {"composite": composite, "aggs": {
                "members": {"top_hits": {"size": 100, "_source": MEMBER_FIELDS}}}}},
        )
        agg = response["aggregations"]["by_sha"]
        for bucket in agg["buckets"]:
            if bucket["doc_count"] > 1:
                members = [member_of(hit["_id"], hit["_source"]) for hit in bucket["members"]["hits"]["hits"]]
                groups.append(Group("exact", sorted(members, key=keep_order)))
        after = agg.get("after_key")
        if not agg["buckets"] or after is None:
            break
    return sorted(groups, key=lambda g: -g.wasted_bytes)


def near_groups(es: Elasticsearch, max_distance: int = DEFAULT_MAX_DISTANCE,
                max_semantic_distance: float = DEFAULT_MAX_SEMANTIC_DISTANCE, locations: list[str] | None = None,
                on_total: Callable[[int], None] = lambda total: None,
                on_done: Callable[[int], None] = lambda count: None) -> list[Group]:
    query = {"bool": {"filter": _location_filter(locations)}}
    docs = {hit["_id"]: hit["_source"] for hit in helpers.scan(
        es, index=IMAGES_ALIAS, query={"query": query}, _source=[*MEMBER_FIELDS, "semantic"])}
    images = {doc_id: member_of(doc_id, source) for doc_id, source in docs.items()}
    on_total(len(images))
    hashes = {doc_id: source.get("phash_dihedral") or [source["phash"]] for doc_id, source in docs.items()}
    graph = turned_copies(hashes, max_distance)
    for doc_id, source in docs.items():
        found = graph.setdefault(doc_id, {})
        for variant in hashes[doc_id][:1]:  # the image as it is; turned copies are matched above
            for hit in _knn(es, "phash_bits", variant, NEIGHBOURS, locations, False):
                distance = _hamming(hit["_score"])
                if hit["_id"] != doc_id and distance <= max_distance:
                    found[hit["_id"]] = min(found.get(hit["_id"], BITS), distance)
        if max_semantic_distance > 0 and source.get("semantic"):
            for hit in _knn(es, "semantic", source["semantic"], NEIGHBOURS, locations, False):
                other = hit["_id"]
                if other != doc_id and other not in found and _cosine_distance(hit["_score"]) <= max_semantic_distance:
                    found[other] = phash_distance(source["phash"], docs[other].get("phash_dihedral") or [docs[other]["phash"]])
        on_done(1)
    return star_groups(images, graph)
