"""Similarity search: the query image is prepared exactly like a scanned one (same thumbnail), then
Weaviate answers: nearImage on `semantic`, or Hamming nearVector on `phash` for near-duplicates."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import fsspec
import httpx
import weaviate
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import WeaviateQueryError

from deeplens.connectors.duplicates import DEFAULT_MAX_DISTANCE
from deeplens.connectors.extract import extract
from deeplens.connectors.retry import retry
from deeplens.modules.phash import hex_to_vector
from deeplens.schema.weaviate import IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, NoSemanticVectors, is_hash_only

RESULT_PROPERTIES = ["location", "uri", "path", "size_bytes", "width", "height", "format"]


def read_query_image(path_or_url: str) -> bytes:
    with fsspec.open(path_or_url, "rb") as handle:  # local path, file://, http(s)://, s3://, ...
        return handle.read()


def _hit(obj, score_name: str, score: float) -> dict:
    return {**{k: obj.properties.get(k) for k in RESULT_PROPERTIES}, score_name: score}


def search_image(
    client: weaviate.WeaviateClient,
    data: bytes,
    modules_url: str,
    limit: int = 10,
    locations: list[str] | None = None,
    near_dup: bool = False,
    max_distance: int = DEFAULT_MAX_DISTANCE,
) -> list[dict]:
    collection = client.collections.use(IMAGE_COLLECTION)
    where = Filter.by_property("location").contains_any(locations) if locations else None
    thumbnail = extract(data).thumbnail
    if not near_dup:
        with _semantic_needed(client, "search --image (similar images)"):
            response = collection.query.near_image(
                near_image=thumbnail, target_vector=SEMANTIC_VECTOR, limit=limit, filters=where,
                return_metadata=MetadataQuery(distance=True), return_properties=RESULT_PROPERTIES,
            )
        return [_hit(obj, "distance", round(obj.metadata.distance, 4)) for obj in response.objects]

    body = {"images": [{"data": thumbnail}], "features": ["dihedral"]}
    with httpx.Client(base_url=modules_url, timeout=60) as modules:
        result = retry(lambda: modules.post("/v1/features", json=body).raise_for_status(), what="module server")

    def query(variant: str):
        return collection.query.near_vector(
            near_vector=hex_to_vector(variant), target_vector=PHASH_VECTOR,
            distance=max_distance, limit=limit, filters=where,
            return_metadata=MetadataQuery(distance=True), return_properties=RESULT_PROPERTIES,
        )

    variants = list(dict.fromkeys(result.json()["results"][0]["phash_dihedral"].values()))
    with ThreadPoolExecutor(len(variants)) as pool:  # eight independent queries: latency of one, not eight
        responses = list(pool.map(query, variants))
    best: dict[str, tuple[int, object]] = {}
    for response in responses:
        for obj in response.objects:
            distance = round(obj.metadata.distance)
            if str(obj.uuid) not in best or distance < best[str(obj.uuid)][0]:
                best[str(obj.uuid)] = (distance, obj)
    ranked = sorted(best.values(), key=lambda item: (item[0], item[1].properties["uri"]))[:limit]
    return [_hit(obj, "hamming_distance", distance) for distance, obj in ranked]


@contextmanager
def _semantic_needed(client: weaviate.WeaviateClient, what: str) -> Iterator[None]:
    """A failed query on a hash-only collection becomes the error that says why; the collection's
    kind is looked up only then, not on every search."""
    try:
        yield
    except WeaviateQueryError:
        if is_hash_only(client):
            raise NoSemanticVectors(what) from None
        raise


def search_text(
    client: weaviate.WeaviateClient, text: str, limit: int = 10, locations: list[str] | None = None
) -> list[dict]:
    collection = client.collections.use(IMAGE_COLLECTION)
    where = Filter.by_property("location").contains_any(locations) if locations else None
    with _semantic_needed(client, "search --text"):
        response = collection.query.near_text(
            query=text, target_vector=SEMANTIC_VECTOR, limit=limit, filters=where,
            return_metadata=MetadataQuery(distance=True), return_properties=RESULT_PROPERTIES,
        )
    return [_hit(obj, "distance", round(obj.metadata.distance, 4)) for obj in response.objects]
