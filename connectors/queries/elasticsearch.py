"""The query backend on Elasticsearch: kNN on `phash_bits` (bit vectors: Hamming) and on `semantic`
(cosine), a composite terms aggregation for exact copies, scroll for exports. Documents come from
`deeplens scan` with DEEPLENS_ES_URL set; query images are embedded by the module server."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

from elasticsearch import Elasticsearch, NotFoundError, helpers

from deeplens.connectors.modules_client import ModulesClient
from deeplens.connectors.queries.backend import MEMBER_FIELDS, RESULT_FIELDS, THUMBNAIL_FIELDS, Hit, Indexed, NotAnswered
from deeplens.modules.phash import BITS
from deeplens.schema.elasticsearch import IMAGES_ALIAS

HASHES_PER_PAGE = 1000  # content hashes per page of the composite aggregation
COPIES_PER_HASH = 100  # most members fetched per content hash


class ElasticsearchBackend:
    name = "elasticsearch"

    def __init__(self, es: Elasticsearch, modules: ModulesClient):
        self.es = es
        self.modules = modules

    def hash_only(self) -> bool:
        return self._hash_only

    @cached_property
    def _hash_only(self) -> bool:
        # Scans into a hash-only Weaviate collection send no embeddings to Elasticsearch either.
        return self.es.count(index=IMAGES_ALIAS, query={"exists": {"field": "semantic"}})["count"] == 0

    def images(self, locations: list[str] | None) -> Iterator[tuple[str, dict]]:
        for image_id, properties, _ in self._scroll(locations, MEMBER_FIELDS):
            yield image_id, properties

    def images_with_embeddings(self, locations: list[str] | None) -> Iterator[tuple[str, dict, list[float] | None]]:
        return self._scroll(locations, [*MEMBER_FIELDS, "semantic"])

    def _scroll(self, locations: list[str] | None, source: list[str]) -> Iterator[tuple[str, dict, list[float] | None]]:
        query = {"query": {"bool": {"filter": _location_filter(locations)}}}
        for hit in helpers.scan(self.es, index=IMAGES_ALIAS, query=query, _source=source):
            yield hit["_id"], hit["_source"], hit["_source"].pop("semantic", None)

    def exact_copies(self, locations: list[str] | None) -> list[list[tuple[str, dict]]]:
        copies = []
        after = None
        while True:  # the composite aggregation pages through every content hash
            composite = {"size": HASHES_PER_PAGE, "sources": [{"sha": {"terms": {"field": "content_sha256"}}}]}
            if after:
                composite["after"] = after
            response = self.es.search(
                index=IMAGES_ALIAS, size=0, query={"bool": {"filter": _location_filter(locations)}},
                aggs={"by_sha": {"composite": composite, "aggs": {
                    "members": {"top_hits": {"size": COPIES_PER_HASH, "_source": MEMBER_FIELDS}}}}},
            )
            agg = response["aggregations"]["by_sha"]
            for bucket in agg["buckets"]:
                if bucket["doc_count"] > 1:
                    copies.append([(hit["_id"], hit["_source"]) for hit in bucket["members"]["hits"]["hits"]])
            after = agg.get("after_key")
            if not agg["buckets"] or after is None:
                return copies

    def phash_neighbours(self, phash: str, max_distance: int, limit: int, locations: list[str] | None,
                         properties: list[str] = ()) -> list[Hit]:
        hits = self._knn("phash_bits", phash, limit, locations, list(properties))
        # For bit vectors Elasticsearch scores (bits - hamming) / bits.
        found = [Hit(hit["_id"], round(BITS * (1 - hit["_score"])), hit.get("_source", {})) for hit in hits]
        return [hit for hit in found if hit.distance <= max_distance]

    def semantic_neighbours(self, image_id: str, max_distance: float, limit: int,
                            locations: list[str] | None) -> list[Hit]:
        try:
            vector = self.es.get(index=IMAGES_ALIAS, id=image_id, source_includes=["semantic"])["_source"].get("semantic")
        except NotFoundError:
            return []  # deleted since the export
        if not vector:
            return []
        return [hit for hit in self._semantic_knn(vector, limit, locations, []) if hit.distance <= max_distance]

    def by_uri(self, uris: list[str]) -> dict[str, Indexed]:
        hits = self.es.search(index=IMAGES_ALIAS, query={"terms": {"uri": uris}}, size=len(uris) * 2,
                              source=[*MEMBER_FIELDS, *THUMBNAIL_FIELDS, "semantic"])["hits"]["hits"]
        return {hit["_source"]["uri"]: Indexed(hit["_id"], hit["_source"], hit["_source"].get("semantic")) for hit in hits}

    def thumbnails(self, image_ids: list[str]) -> dict[str, str | None]:
        # Present only when `deeplens es setup --keep-thumbnails` kept them (dropped by default).
        docs = self.es.mget(index=IMAGES_ALIAS, ids=image_ids, source_includes=THUMBNAIL_FIELDS)["docs"]
        return {doc["_id"]: doc.get("_source", {}).get("thumbnail") for doc in docs}

    def similar_to_image(self, thumbnail: str, limit: int, locations: list[str] | None) -> list[Hit]:
        vector = self.modules.features_of(thumbnail, ["semantic"]).semantic
        return self._semantic_knn(vector, limit, locations, RESULT_FIELDS)

    def similar_to_text(self, text: str, limit: int, locations: list[str] | None) -> list[Hit]:
        raise NotAnswered("search --text is answered by Weaviate only (its clip module embeds the text); "
                          "use --backend weaviate")

    def location_totals(self) -> dict[str, tuple[int, int]]:
        response = self.es.search(index=IMAGES_ALIAS, size=0, aggs={"by_location": {
            "terms": {"field": "location", "size": 10_000}, "aggs": {"bytes": {"sum": {"field": "size_bytes"}}}}})
        return {b["key"]: (b["doc_count"], int(b["bytes"]["value"])) for b in response["aggregations"]["by_location"]["buckets"]}

    def _semantic_knn(self, vector: list[float], limit: int, locations, source: list[str]) -> list[Hit]:
        # For cosine Elasticsearch scores (1 + cosine) / 2; DeepLens reports the cosine distance.
        return [Hit(hit["_id"], 2 - 2 * hit["_score"], hit.get("_source", {}))
                for hit in self._knn("semantic", vector, limit, locations, source)]

    def _knn(self, field: str, vector, k: int, locations, source: list[str]) -> list[dict]:
        knn = {"field": field, "query_vector": vector, "k": k, "num_candidates": max(100, 2 * k),
               "filter": _location_filter(locations)}
        return self.es.search(index=IMAGES_ALIAS, knn=knn, size=k, source=source or False)["hits"]["hits"]


def _location_filter(locations: list[str] | None) -> list[dict]:
    return [{"terms": {"location": locations}}] if locations else []
