"""The query backend on Weaviate: Hamming nearVector on the `phash` named vector, cosine
nearObject/nearImage/nearText on `semantic` (in a `modules` collection Weaviate calls the module
server for query images and texts; in a `precomputed` one the query's embedding comes from the
module server, /v1/features for an image and /semantic/vectorize for a text, and is sent as
nearVector), a cursor for exports and counts."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import weaviate
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.query import Filter, MetadataQuery, Metrics

from deeplens.connectors.modules_client import FeatureError, ModulesClient
from deeplens.connectors.queries.backend import (
    MEMBER_FIELDS, RESULT_FIELDS, THUMBNAIL_FIELDS, Hit, Indexed, NotAnswered,
)
from deeplens.connectors.weaviate_client import use_collection
from deeplens.modules.phash import hex_to_vector
from deeplens.schema.weaviate import (
    IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, ImageVectors, NoSemanticVectors, image_vectors_in_use,
)

SHAS_PER_QUERY = 100  # content hashes (or ids) per query of exact_copies (and thumbnails)


class WeaviateBackend:
    name = "weaviate"

    def __init__(self, client: weaviate.WeaviateClient, modules: ModulesClient):
        self.client = client
        self.modules = modules  # embeds query images for a precomputed collection
        self.collection = use_collection(client, IMAGE_COLLECTION)

    @cached_property
    def vectors(self) -> ImageVectors:
        return image_vectors_in_use(self.client)

    def hash_only(self) -> bool:
        return self.vectors.hash_only

    def images(self, locations: list[str] | None) -> Iterator[tuple[str, dict]]:
        for uuid, properties, _ in self._cursor(locations, embeddings=False):
            yield uuid, properties

    def images_with_embeddings(self, locations: list[str] | None) -> Iterator[tuple[str, dict, list[float] | None]]:
        return self._cursor(locations, embeddings=True)  # asked for only where `semantic` exists (grouping)

    def _cursor(self, locations: list[str] | None, embeddings: bool) -> Iterator[tuple[str, dict, list[float] | None]]:
        # Weaviate's cursor takes no filter, and offset paging stops at QUERY_MAXIMUM_RESULTS.
        vectors = [SEMANTIC_VECTOR] if embeddings else False
        for obj in self.collection.iterator(return_properties=MEMBER_FIELDS, include_vector=vectors):
            if not locations or obj.properties["location"] in locations:
                yield str(obj.uuid), obj.properties, (obj.vector or {}).get(SEMANTIC_VECTOR)

    def exact_copies(self, locations: list[str] | None) -> list[list[tuple[str, dict]]]:
        """Content hashes counted over a cursor of the one property, then the members of those held
        more than once: Aggregate groupBy returns every group, singletons included, and took 369 s
        at 100k images against 4.5 s for the cursor (bench/RESULTS.md)."""
        counts: dict[str, int] = {}
        for obj in self.collection.iterator(return_properties=["content_sha256", "location"]):
            if not locations or obj.properties["location"] in locations:
                sha = obj.properties["content_sha256"]
                counts[sha] = counts.get(sha, 0) + 1
        shas = [sha for sha, count in counts.items() if count > 1]
        copies: dict[str, list[tuple[str, dict]]] = {sha: [] for sha in shas}
        where = _location_filter(locations)
        for start in range(0, len(shas), SHAS_PER_QUERY):
            sha_filter = Filter.by_property("content_sha256").contains_any(shas[start:start + SHAS_PER_QUERY])
            response = self.collection.query.fetch_objects(
                filters=sha_filter & where if where else sha_filter, limit=10_000, return_properties=MEMBER_FIELDS
            )
            for obj in response.objects:
                copies[obj.properties["content_sha256"]].append((str(obj.uuid), obj.properties))
        return list(copies.values())

    def phash_neighbours(self, phash: str, max_distance: int, limit: int, locations: list[str] | None,
                         properties: list[str] = ()) -> list[Hit]:
        response = self.collection.query.near_vector(
            near_vector=hex_to_vector(phash), target_vector=PHASH_VECTOR, distance=max_distance, limit=limit,
            filters=_location_filter(locations), return_metadata=MetadataQuery(distance=True),
            return_properties=list(properties),
        )
        return _hits(response)

    def semantic_neighbours(self, image_id: str, max_distance: float, limit: int,
                            locations: list[str] | None) -> list[Hit]:
        response = self.collection.query.near_object(
            near_object=image_id, target_vector=SEMANTIC_VECTOR, distance=max_distance, limit=limit,
            filters=_location_filter(locations), return_metadata=MetadataQuery(distance=True), return_properties=[],
        )
        return _hits(response)

    def by_uri(self, uris: list[str]) -> dict[str, Indexed]:
        response = self.collection.query.fetch_objects(
            filters=Filter.by_property("uri").contains_any(uris), limit=len(uris) * 2,
            return_properties=MEMBER_FIELDS + THUMBNAIL_FIELDS, include_vector=True,
        )
        return {obj.properties["uri"]: Indexed(str(obj.uuid), obj.properties, (obj.vector or {}).get(SEMANTIC_VECTOR))
                for obj in response.objects}

    def thumbnails(self, image_ids: list[str]) -> dict[str, str | None]:
        found = dict.fromkeys(image_ids)
        for start in range(0, len(image_ids), SHAS_PER_QUERY):
            response = self.collection.query.fetch_objects(
                filters=Filter.by_id().contains_any(image_ids[start:start + SHAS_PER_QUERY]),
                limit=SHAS_PER_QUERY, return_properties=THUMBNAIL_FIELDS,
            )
            found.update({str(obj.uuid): obj.properties.get("thumbnail") for obj in response.objects})
        return found

    def similar_to_image(self, thumbnail: str, limit: int, locations: list[str] | None) -> list[Hit]:
        if self.hash_only():
            raise NoSemanticVectors("search --image (similar images)")
        query = _semantic_query(limit, locations)
        if self.vectors.mode == "precomputed":
            embedding = self.modules.features_of(thumbnail, ["semantic"]).semantic
            return _hits(self.collection.query.near_vector(near_vector=embedding, **query))
        return _hits(self.collection.query.near_image(near_image=thumbnail, **query))

    def similar_to_text(self, text: str, limit: int, locations: list[str] | None) -> list[Hit]:
        if self.hash_only():
            raise NoSemanticVectors("search --text")
        if self.vectors.mode == "precomputed":
            try:
                embedding = self.modules.embed_text(text)
            except FeatureError as exc:
                raise NotAnswered(str(exc)) from None
            return _hits(self.collection.query.near_vector(near_vector=embedding, **_semantic_query(limit, locations)))
        return _hits(self.collection.query.near_text(query=text, **_semantic_query(limit, locations)))

    def location_totals(self) -> dict[str, tuple[int, int]]:
        per_location = self.collection.aggregate.over_all(
            group_by=GroupByAggregate(prop="location"),
            return_metrics=Metrics("size_bytes").integer(sum_=True, count=True),
            total_count=True,
        )
        return {g.grouped_by.value: (g.total_count, g.properties["size_bytes"].sum_ or 0) for g in per_location.groups}


def _semantic_query(limit: int, locations: list[str] | None) -> dict:
    return dict(target_vector=SEMANTIC_VECTOR, limit=limit, filters=_location_filter(locations),
                return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS)


def _location_filter(locations: list[str] | None):
    return Filter.by_property("location").contains_any(locations) if locations else None


def _hits(response) -> list[Hit]:
    return [Hit(str(obj.uuid), obj.metadata.distance, obj.properties) for obj in response.objects]
