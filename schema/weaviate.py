"""Weaviate collections generated from the data model, and `schema apply`.

DeepLensImage: every ImageRecord field as a property; named vectors `semantic` (cosine) and
`phash` (hamming), both computed by Weaviate's multi2vec-clip module from the `thumbnail` blob,
each pointed at its own prefix of the DeepLens module server with `inferenceUrl`. A hash-only
collection (`deeplens schema apply --hash-only`) has the `phash` vector alone: no embedding model
runs while scanning, for exact and pHash near-duplicates at several times the speed, but no
similarity search. Weaviate cannot store an object without one of its collection's named vectors
(an empty module vector fails with "insert called with nil-vector"), so the choice is made when
the collection is created.
DeepLensLocation: the storage location registry (no vectors).
"""

from __future__ import annotations

import json

import weaviate
import weaviate.classes as wvc
from pydantic import BaseModel

from deeplens.schema.models import ImageRecord, SkippedFile, StorageLocation, fields
from deeplens.schema.types import database_type, unwrap

IMAGE_COLLECTION = "DeepLensImage"
LOCATION_COLLECTION = "DeepLensLocation"
SKIPPED_COLLECTION = "DeepLensSkippedFile"  # non-images seen by scans (change detection only)
SEMANTIC_VECTOR = "semantic"
PHASH_VECTOR = "phash"
# What both named vectors are computed from.
VECTORIZED_FIELDS = fields(ImageRecord, "thumbnail")
DataType = wvc.config.DataType


class SchemaConflict(RuntimeError):
    """An existing collection cannot hold what DeepLens writes; the message says what differs."""


def properties_of(model: type[BaseModel]) -> list[wvc.config.Property]:
    props = []
    for name, field in model.model_fields.items():
        data_type = DataType(database_type(field).weaviate)
        text = data_type in (DataType.TEXT, DataType.TEXT_ARRAY)
        props.append(
            wvc.config.Property(
                name=name,
                data_type=data_type,
                # Paths, hashes and names are identifiers: match them whole, never split into words.
                tokenization=wvc.config.Tokenization.FIELD if text else None,
                skip_vectorization=True,
                index_searchable=False if text else None,
            )
        )
    return props


def image_vectors(modules_url: str, hash_only: bool = False) -> list:
    modules_url = modules_url.rstrip("/")
    semantic = wvc.config.Configure.Vectors.multi2vec_clip(
        name=SEMANTIC_VECTOR,
        image_fields=VECTORIZED_FIELDS,
        inference_url=f"{modules_url}/semantic",
        vector_index_config=wvc.config.Configure.VectorIndex.hnsw(distance_metric=wvc.config.VectorDistances.COSINE),
    )
    phash = wvc.config.Configure.Vectors.multi2vec_clip(
        name=PHASH_VECTOR,
        image_fields=VECTORIZED_FIELDS,
        inference_url=f"{modules_url}/phash",
        # Hamming on 0/1 floats = number of differing bits; no quantization on 64 dims.
        vector_index_config=wvc.config.Configure.VectorIndex.hnsw(distance_metric=wvc.config.VectorDistances.HAMMING),
    )
    return [phash] if hash_only else [semantic, phash]


def apply_schema(client: weaviate.WeaviateClient, modules_url: str, hash_only: bool | None = None) -> list[str]:
    """Create missing collections, add missing properties; refuse incompatible ones. Returns what changed.

    hash_only: None keeps an existing image collection as it is (and creates a full one);
    True/False asks for that kind and refuses an existing collection of the other kind."""
    changes = []
    wanted = {
        IMAGE_COLLECTION: (properties_of(ImageRecord), image_vectors(modules_url, bool(hash_only))),
        LOCATION_COLLECTION: (properties_of(StorageLocation), None),
        SKIPPED_COLLECTION: (properties_of(SkippedFile), None),
    }
    for name, (props, vectors) in wanted.items():
        if not client.collections.exists(name):
            client.collections.create(name, properties=props, vector_config=vectors)
            changes.append(f"created collection {name}" + (" (hash-only)" if vectors and hash_only else ""))
            continue
        collection = client.collections.use(name)
        config = collection.config.get()
        existing = {prop.name: prop for prop in config.properties}
        for prop in props:
            have = existing.get(prop.name)
            if have is None:
                collection.config.add_property(prop)
                changes.append(f"added property {name}.{prop.name}")
            elif have.data_type.value != prop.dataType.value:
                raise SchemaConflict(
                    f"{name}.{prop.name} is {have.data_type.value} in Weaviate but DeepLens writes "
                    f"{prop.dataType.value}. Migrate or delete the collection (this deletes its data)."
                )
        if vectors:
            _check_vectors(name, config, modules_url, hash_only)
    return changes


def is_hash_only(client: weaviate.WeaviateClient) -> bool:
    """Whether the image collection was created without the `semantic` vector."""
    return SEMANTIC_VECTOR not in (client.collections.use(IMAGE_COLLECTION).config.get().vector_config or {})


class NoSemanticVectors(RuntimeError):
    def __init__(self, what: str):
        super().__init__(
            f"{what} needs semantic vectors, but {IMAGE_COLLECTION} is hash-only (created with "
            "`deeplens schema apply --hash-only`). Use `search --image ... --near-dup` for copies, or "
            "index into a collection created without --hash-only."
        )


def _check_vectors(name: str, config, modules_url: str, hash_only: bool | None) -> None:
    modules_url = modules_url.rstrip("/")
    have = config.vector_config or {}
    if hash_only is not None and (SEMANTIC_VECTOR not in have) != hash_only:
        kind = "hash-only" if SEMANTIC_VECTOR not in have else "a full collection (semantic + phash)"
        raise SchemaConflict(
            f"{name} exists as {kind}; Weaviate cannot add or drop a named vector on stored objects. "
            "Use another Weaviate, or delete the collection (this deletes its data) and scan again."
        )
    expected = {PHASH_VECTOR: ("hamming", f"{modules_url}/phash")}
    if SEMANTIC_VECTOR in have:
        expected[SEMANTIC_VECTOR] = ("cosine", f"{modules_url}/semantic")
    for vector, (distance, url) in expected.items():
        if vector not in have:
            raise SchemaConflict(f"{name} has no named vector '{vector}'; it was created by something else. "
                                 "Use another Weaviate or delete the collection.")
        got_distance = have[vector].vector_index_config.distance_metric.value
        got_url = (have[vector].vectorizer.model or {}).get("inferenceUrl")
        if got_distance != distance:
            raise SchemaConflict(f"{name}.{vector} uses distance {got_distance}, DeepLens needs {distance}.")
        if got_url != url:
            raise SchemaConflict(
                f"{name}.{vector} calls the module server at {got_url}, but DEEPLENS_MODULES_URL gives {url}. "
                f"Set DEEPLENS_MODULES_URL to {got_url.rsplit('/', 1)[0] if got_url else 'the original URL'}, "
                "or recreate the collection."
            )


def to_properties(model: BaseModel) -> dict:
    """A pydantic record as Weaviate properties: dicts as JSON text, datetimes as RFC 3339, None dropped."""
    out = {}
    for name, value in model.model_dump(mode="python").items():
        if value is None:
            continue
        out[name] = json.dumps(value) if isinstance(value, dict) else value
    return out


def from_properties(model: type[BaseModel], properties: dict) -> BaseModel:
    """The inverse of to_properties."""
    values = {}
    for name, field in model.model_fields.items():
        value = properties.get(name)
        if value is not None and unwrap(field.annotation)[0] is dict:
            value = json.loads(value)
        if value is not None:
            values[name] = value
    return model.model_validate(values)

