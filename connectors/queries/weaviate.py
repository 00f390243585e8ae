"""The query backend on Weaviate: Hamming nearVector on the `phash` named vector, cosine
nearObject/nearImage/nearText on `semantic` (Weaviate calls the module server for query images and
texts), a cursor for exports and counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import weaviate
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.query import Filter, MetadataQuery, Metrics
from weaviate.exceptions import WeaviateQueryError

from deeplens.connectors.queries.backend import MEMBER_FIELDS, RESULT_FIELDS, THUMBNAIL_FIELDS, Hit, Indexed
from deeplens.modules.phash import hex_to_vector
from deeplens.schema.weaviate import IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, NoSemanticVectors, is_hash_only

SHAS_PER_QUERY = 100  # content hashes (or ids) per query of exact_copies (and thumbnails)


class WeaviateBackend:
    name = "weaviate"

    def __init__(self, client: weaviate.WeaviateClient):
        self.client = client
        self.collection = client.collections.use(IMAGE_COLLECTION)

    def hash_only(self) -> bool:
        return is_hash_only(self.client)

    def images(self, locations: list[str] | None) -> Iterator[tuple[str, dict]]:
        # Weaviate's cursor takes no filter, and offset paging stops at QUERY_MAXIMUM_RESULTS.
        for obj in self.collection.iterator(return_properties=MEMBER_FIELDS):
            if not locations or obj.properties["location"] in locations:
                yield str(obj.uuid), obj.properties

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
        with self._semantic_needed("search --image (similar images)"):
            response = self.collection.query.near_image(
                near_image=thumbnail, target_vector=SEMANTIC_VECTOR, limit=limit, filters=_location_filter(locations),
                return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS,
            )
        return _hits(response)

    def similar_to_text(self, text: str, limit: int, locations: list[str] | None) -> list[Hit]:
        with self._semantic_needed("search --text"):
            response = self.collection.query.near_text(
                query=text, target_vector=SEMANTIC_VECTOR, limit=limit, filters=_location_filter(locations),
                return_metadata=MetadataQuery(distance=True), return_properties=RESULT_FIELDS,
            )
        return _hits(response)

    def location_totals(self) -> dict[str, tuple[int, int]]:
        per_location = self.collection.aggregate.over_all(
            group_by=GroupByAggregate(prop="location"),
            return_metrics=Metrics("size_bytes").integer(sum_=True, count=True),
            total_count=True,
        )
        return {g.grouped_by.value: (g.total_count, g.properties["size_bytes"].sum_ or 0) for g in per_location.groups}

    @contextmanager
    def _semantic_needed(self, what: str) -> Iterator[None]:
        """A failed query on a hash-only collection becomes the error that says why; the collection's
        kind is looked up only then, not on every search."""
        try:
            yield
        except WeaviateQueryError:
            if self.hash_only():
                raise NoSemanticVectors(what) from None
            raise


def _location_filter(locations: list[str] | None):
    return Filter.by_property("location").contains_any(locations) if locations else None


def _hits(response) -> list[Hit]:
    return [Hit(str(obj.uuid), obj.metadata.distance, obj.properties) for obj in response.objects]
