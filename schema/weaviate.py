"""Weaviate collections generated from the data model, and `schema apply`.

DeepLensImage: every ImageRecord field as a property; named vectors `semantic` (cosine, HNSW over
8-bit RQ codes, see QUANTIZERS; a collection made before keeps its uncompressed index, as schema
apply changes no existing vector config) and `phash` (hamming, uncompressed). Two vector modes, with the
same properties and named vectors:
- `modules`: both computed by Weaviate's multi2vec-clip module from the `thumbnail` blob, each
  pointed at its own prefix of the DeepLens module server with `inferenceUrl`, so GraphQL
  nearImage/nearText work for anyone who queries Weaviate directly;
- `precomputed`: both self-provided (no vectorizer): the scan worker asks the module server and
  writes them, queries compute theirs. Works on any Weaviate, managed ones included, where
  multi2vec-clip with a custom inference URL is not offered.
`auto` picks `modules` when Weaviate has multi2vec-clip enabled and can reach the module server
(checked by vectorizing one probe image), else `precomputed`, and says why. A hash-only
collection (`deeplens schema apply --hash-only`) has the `phash` vector alone: no embedding model
runs while scanning, for exact and pHash near-duplicates at several times the speed, but no
similarity search. Weaviate cannot store an object without one of its collection's named vectors
(an empty module vector fails with "insert called with nil-vector"), so the choice is made when
the collection is created.
DeepLensLocation: the storage location registry (no vectors).
On a Weaviate cluster every collection is split into one shard per node (Weaviate's default when
it is created: weaviate v1.39.3 usecases/sharding/config/config.go:39-41); a replication factor
above 1 keeps that many copies of each shard on different nodes, so reads and scans go on while a
node is down.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from dataclasses import dataclass
from typing import Literal

import weaviate
import weaviate.classes as wvc
from PIL import Image
from pydantic import BaseModel
from weaviate.exceptions import WeaviateBaseError

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
VectorMode = Literal["modules", "precomputed"]
VECTOR_MODES = ("modules", "precomputed")
CLIP_MODULE = "multi2vec-clip"  # the Weaviate module that calls the module server in `modules` mode
DISTANCES = {SEMANTIC_VECTOR: wvc.config.VectorDistances.COSINE,
             # Hamming on 0/1 floats = number of differing bits; no quantization on 64 dims.
             PHASH_VECTOR: wvc.config.VectorDistances.HAMMING}
# `semantic` is compressed with Weaviate's 8-bit rotational quantization (RQ), from the first
# object: HNSW is built and searched over one byte per dimension, and the 20 best candidates of a
# query are rescored with the stored float vectors, so the distances returned are exact (weaviate
# v1.39.0 entities/vectorindex/hnsw/rq_config.go:21-25, adapters/repos/db/vector/hnsw/index.go:936-937,
# search.go:1013-1014 and 1257-1331). Weaviate compresses nothing unless asked (DEFAULT_QUANTIZATION
# is unset by default: usecases/config/environment.go:593-597). Measured on 20k SYNTHETIC 1280-d
# objects (bench/RESULTS.md, "Vector compression of `semantic`"): Weaviate CPU per insert 33-45 %
# lower, peak RSS 11-21 % lower, recall@10 against brute force 0.9975 (uncompressed 0.9985).
# `phash` stays uncompressed: its 0/1 values are what BQ/RQ would round away.
QUANTIZERS = {SEMANTIC_VECTOR: wvc.config.Configure.VectorIndex.Quantizer.rq(bits=8)}
# How many candidates a `semantic` search keeps at least: Weaviate's dynamic ef is the limit x 8,
# clamped to [dynamicEfMin, dynamicEfMax] (weaviate adapters/repos/db/vector/hnsw/search.go,
# searchTimeEF and autoEfFromK; defaults 100 and 500), so a 10-result search ran with 100. At 1M
# images that lost 3 of 200 photos from their own `search --image` results (the greedy search stayed
# among a million objects unlike them); with 200 all 200 were found and p95 did not move (19.1 ms
# against 19.4: bench/RESULTS.md, "`search --image` at 1M"). `phash` queries found all 200 at 100.
SEARCH_EF_MIN = {SEMANTIC_VECTOR: 200}


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


def image_vectors(modules_url: str, hash_only: bool = False, mode: VectorMode = "modules") -> list:
    names = [PHASH_VECTOR] if hash_only else [SEMANTIC_VECTOR, PHASH_VECTOR]
    vectors = []
    for name in names:
        index = wvc.config.Configure.VectorIndex.hnsw(distance_metric=DISTANCES[name], quantizer=QUANTIZERS.get(name),
                                                      dynamic_ef_min=SEARCH_EF_MIN.get(name))
        if mode == "precomputed":
            vectors.append(wvc.config.Configure.Vectors.self_provided(name=name, vector_index_config=index))
        else:
            vectors.append(wvc.config.Configure.Vectors.multi2vec_clip(
                name=name, image_fields=VECTORIZED_FIELDS, inference_url=f"{modules_url.rstrip('/')}/{name}",
                vector_index_config=index,
            ))
    return vectors


def apply_schema(client: weaviate.WeaviateClient, modules_url: str, hash_only: bool | None = None,
                 vectors: Literal["auto", "modules", "precomputed"] = "auto",
                 replication_factor: int | None = None) -> list[str]:
    """Create missing collections, add missing properties; refuse incompatible ones. Returns what changed.

    hash_only: None keeps an existing image collection as it is (and creates a full one);
    True/False asks for that kind and refuses an existing collection of the other kind.
    vectors: the vector mode of a new image collection; `auto` keeps an existing one's, and for a new
    one checks what Weaviate can do. `modules` fails, saying what to change, when Weaviate cannot.
    replication_factor: copies of each object in new collections; None keeps existing ones as they
    are and creates new ones with Weaviate's default (one copy); a number refuses existing
    collections with another factor."""
    changes = []
    wanted = {
        IMAGE_COLLECTION: properties_of(ImageRecord),
        LOCATION_COLLECTION: properties_of(StorageLocation),
        SKIPPED_COLLECTION: properties_of(SkippedFile),
    }
    replication = copies = None  # asked of the cluster once, when the first collection is missing
    for name, props in wanted.items():
        if not client.collections.exists(name):
            if copies is None:
                replication = _replication(client, replication_factor)
                copies = f" with {replication_factor} copies of each object" if replication else ""
            if name == IMAGE_COLLECTION:
                mode, why = _new_collection_mode(client, modules_url, vectors)
                client.collections.create(name, properties=props, replication_config=replication,
                                          vector_config=image_vectors(modules_url, bool(hash_only), mode))
                changes.append(f"created collection {name}{' (hash-only)' if hash_only else ''}{copies} "
                               f"with {mode} vectors: {why}")
            else:
                client.collections.create(name, properties=props, replication_config=replication)
                changes.append(f"created collection {name}{copies}")
            continue
        collection = client.collections.use(name)
        config = collection.config.get()
        factor = config.replication_config.factor
        if replication_factor is not None and factor != replication_factor:
            raise SchemaConflict(
                f"{name} keeps {factor} copies of each object, not {replication_factor}: "
                "the factor is set when a collection is created, and raising it later needs the new copies made "
                f"first with Weaviate's replica operations. Use --replication-factor {factor} "
                f"(DEEPLENS_WEAVIATE_REPLICATION_FACTOR={factor}), or delete the collection "
                "(this deletes its data) and scan again."
            )
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
        if name == IMAGE_COLLECTION:
            _check_vectors(name, config, modules_url, hash_only, vectors)
    return changes


@dataclass(frozen=True)
class ImageVectors:
    """How the image collection's named vectors are made."""

    hash_only: bool  # no `semantic` vector
    mode: VectorMode


def image_vectors_in_use(client: weaviate.WeaviateClient) -> ImageVectors:
    return _vectors_of(client.collections.use(IMAGE_COLLECTION).config.get())


def _vectors_of(config) -> ImageVectors:
    have = config.vector_config or {}
    phash = have.get(PHASH_VECTOR)
    self_provided = phash is not None and phash.vectorizer.vectorizer == wvc.config.Vectorizers.NONE
    return ImageVectors(hash_only=SEMANTIC_VECTOR not in have, mode="precomputed" if self_provided else "modules")


def _replication(client: weaviate.WeaviateClient, factor: int | None) -> wvc.config.ReplicationConfigCreate | None:
    """The replication of a new collection: None (Weaviate's default, one copy) for a factor of
    None or 1. With more copies, Weaviate's asynchronous replication brings a node that was down
    up to date in the background (on for every factor above 1: weaviate v1.39.3
    adapters/repos/db/index.go:1812-1814), and when one copy holds an object that another deleted,
    the later of the two wins, so a path deleted while a node was down does not come back (that
    strategy is Weaviate's default too, usecases/schema/class.go:741-743; said here for older ones)."""
    if factor is None or factor == 1:
        return None
    nodes = len(client.cluster.nodes())
    if factor > nodes:
        raise SchemaConflict(
            f"A replication factor of {factor} needs at least {factor} Weaviate nodes; this Weaviate has {nodes}. "
            f"Start a cluster (`deeplens up --nodes {factor}` in a new data dir) or lower --replication-factor "
            "(DEEPLENS_WEAVIATE_REPLICATION_FACTOR)."
        )
    return wvc.config.Configure.replication(
        factor=factor, deletion_strategy=wvc.config.ReplicationDeletionStrategy.TIME_BASED_RESOLUTION,
    )


class NoSemanticVectors(RuntimeError):
    def __init__(self, what: str):
        super().__init__(
            f"{what} needs semantic vectors, but {IMAGE_COLLECTION} is hash-only (created with "
            "`deeplens schema apply --hash-only`). Use `search --image ... --near-dup` for copies, or "
            "index into a collection created without --hash-only."
        )


def _new_collection_mode(client: weaviate.WeaviateClient, modules_url: str, vectors: str) -> tuple[VectorMode, str]:
    """The mode of a new image collection and why it was chosen."""
    if vectors == "precomputed":
        return "precomputed", "asked for"
    problem = modules_problem(client, modules_url)
    if problem is None:
        return "modules", f"Weaviate has {CLIP_MODULE} and reaches the module server"
    if vectors == "modules":
        raise SchemaConflict(f"{problem}\nOr run `deeplens schema apply --vectors precomputed`: the scan then "
                             "writes both vectors itself, on any Weaviate.")
    return "precomputed", problem


def modules_problem(client: weaviate.WeaviateClient, modules_url: str) -> str | None:
    """None when Weaviate can compute the vectors by calling the module server at modules_url (its
    GET /v1/meta lists multi2vec-clip, and a probe collection vectorizes one image through it);
    else what is wrong and what to change."""
    url = f"{modules_url.rstrip('/')}/{SEMANTIC_VECTOR}"
    enabled = sorted(client.get_meta().get("modules") or {})
    if CLIP_MODULE not in enabled:
        return (f"Weaviate does not have the {CLIP_MODULE} module enabled (enabled: {', '.join(enabled) or 'none'}). "
                f"On a self-hosted Weaviate add {CLIP_MODULE} to ENABLE_MODULES (docs/operators.md); a managed "
                "Weaviate does not offer it with a custom inference URL.")
    probe = f"DeepLensModuleCheck{uuid.uuid4().hex[:8]}"
    try:
        collection = client.collections.create(
            probe, properties=properties_of(_Probe),
            vector_config=[wvc.config.Configure.Vectors.multi2vec_clip(
                name=SEMANTIC_VECTOR, image_fields=VECTORIZED_FIELDS, inference_url=url)],
        )
        collection.data.insert({"thumbnail": _probe_image()})
    except WeaviateBaseError as exc:
        return (f"Weaviate has {CLIP_MODULE} but could not vectorize an image through the module server at {url}: "
                f"{_first_line(exc)}\nWeaviate calls that URL itself: set DEEPLENS_MODULES_URL to an address "
                "Weaviate can reach (127.0.0.1 is Weaviate's own host; in Docker or Kubernetes the module server's "
                "service name), open the network path, and run the module server without DEEPLENS_MODULES_API_KEY "
                "(Weaviate cannot send it).")
    finally:
        client.collections.delete(probe)
    return None


class _Probe(BaseModel):
    thumbnail: str | None = None


def _probe_image() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 120, 150)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def _first_line(exc: Exception) -> str:
    return (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]


def _check_vectors(name: str, config, modules_url: str, hash_only: bool | None, vectors: str) -> None:
    modules_url = modules_url.rstrip("/")
    have = config.vector_config or {}
    found = _vectors_of(config)
    if hash_only is not None and found.hash_only != hash_only:
        kind = "hash-only" if found.hash_only else "a full collection (semantic + phash)"
        raise SchemaConflict(
            f"{name} exists as {kind}; Weaviate cannot add or drop a named vector on stored objects. "
            "Use another Weaviate, or delete the collection (this deletes its data) and scan again."
        )
    if vectors in VECTOR_MODES and vectors != found.mode:
        raise SchemaConflict(
            f"{name} exists with {found.mode} vectors; Weaviate cannot change how a named vector is made. "
            f"Use --vectors {found.mode} (or auto), or delete the collection (this deletes its data) and scan again."
        )
    for vector in [PHASH_VECTOR] if found.hash_only else [SEMANTIC_VECTOR, PHASH_VECTOR]:
        if vector not in have:
            raise SchemaConflict(f"{name} has no named vector '{vector}'; it was created by something else. "
                                 "Use another Weaviate or delete the collection.")
        distance = DISTANCES[vector].value
        got_distance = have[vector].vector_index_config.distance_metric.value
        if got_distance != distance:
            raise SchemaConflict(f"{name}.{vector} uses distance {got_distance}, DeepLens needs {distance}.")
        if found.mode == "precomputed":
            continue
        url = f"{modules_url}/{vector}"
        got_url = (have[vector].vectorizer.model or {}).get("inferenceUrl")
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

