"""Elasticsearch index and component templates, generated from the data model in schema/models.py.

Field names come from the pydantic models; this module only decides ES types. The few fields
that exist in Elasticsearch alone (the vectors, the ingest timestamp, the near-duplicate group)
are listed in `ES_ONLY_IMAGE_FIELDS` with the reason each one exists.

Layout in the cluster:
- `deeplens-images` is an alias over `deeplens-images-000001` (so a reindex into a new index with
  other vector dims is an alias swap, not a rename for every client);
- `deeplens-locations` holds the storage location registry;
- `deeplens-duplicate-groups` is the exact-duplicates transform's destination;
- `deeplens-failures` receives documents an ingest pipeline could not process.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from deeplens.schema.models import ImageRecord, StorageLocation

PREFIX = "deeplens"
IMAGES_ALIAS = f"{PREFIX}-images"
IMAGES_INDEX = f"{PREFIX}-images-000001"
IMAGES_PATTERN = f"{PREFIX}-images-*"
LOCATIONS_INDEX = f"{PREFIX}-locations"
DUPLICATE_GROUPS_INDEX = f"{PREFIX}-duplicate-groups"
FAILURES_INDEX = f"{PREFIX}-failures"

# Component / index template names.
SETTINGS_COMPONENT = f"{PREFIX}-settings"
IMAGES_MAPPINGS_COMPONENT = f"{PREFIX}-images-mappings"
IMAGES_TEMPLATE = f"{PREFIX}-images"
LOCATIONS_TEMPLATE = f"{PREFIX}-locations"
DUPLICATE_GROUPS_TEMPLATE = f"{PREFIX}-duplicate-groups"
FAILURES_TEMPLATE = f"{PREFIX}-failures"

PHASH_BITS = 64
SEMANTIC_DIMS = {"offline": 1280, "clip": 512}  # MobileNetV2 pooled features, open_clip ViT-B-32
MIN_ES_VERSION = (8, 15)  # dense_vector element_type: bit

# Fields only Elasticsearch documents carry (Weaviate keeps the vectors as named vectors).
ES_ONLY_IMAGE_FIELDS: dict[str, dict[str, Any]] = {
    # The embedding of the active model profile; dims depend on the profile.
    "semantic": {"type": "dense_vector", "index": True, "similarity": "cosine"},
    # The 64-bit pHash as a bit vector: kNN ranks by Hamming distance (ES >= 8.15).
    "phash_bits": {"type": "dense_vector", "element_type": "bit", "dims": PHASH_BITS, "index": True},
    # When the ingest pipeline saw the document (indexed_at is when the scanner read the file).
    "ingested_at": {"type": "date"},
    # Near-duplicate group id written by the duplicates job.
    "duplicate_group": {"type": "keyword"},
}


class DuplicateGroup(BaseModel):
    """One document of `deeplens-duplicate-groups`: an exact-duplicate group (same content_sha256)."""

    content_sha256: str
    copies: int
    size_bytes: int  # the size of one copy (all copies are byte-identical)
    total_bytes: int
    wasted_bytes: int  # total minus the one copy that would be kept
    location_count: int
    locations: list[str]
    sample_paths: list[str]
    first_indexed_at: datetime | None = None
    last_indexed_at: datetime | None = None


class IngestFailure(BaseModel):
    """One document of `deeplens-failures`: what a pipeline could not process, and why."""

    failed_index: str
    failed_id: str | None = None
    failed_pipeline: str | None = None
    error_message: str
    error_processor_type: str | None = None
    error_processor_tag: str | None = None
    location: str | None = None
    path: str | None = None
    failed_at: datetime


def _es_type(annotation: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    if extra and extra.get("blob"):
        # Base64 JPEG for display only: kept in _source, never indexed (or dropped by the pipeline).
        return {"type": "binary", "doc_values": False}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        [inner] = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _es_type(inner, extra)
    if origin is typing.Annotated:
        return _es_type(typing.get_args(annotation)[0], extra)
    if origin is list:
        return _es_type(typing.get_args(annotation)[0], extra)  # ES fields are multi-valued already
    if origin is dict:
        return {"type": "object", "enabled": False}  # kept in _source, not searchable
    if annotation is str:
        return {"type": "keyword", "ignore_above": 4096}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "long"}
    if annotation is float:
        return {"type": "double"}
    if annotation is datetime:
        return {"type": "date"}
    raise TypeError(f"no Elasticsearch type for {annotation!r}; add one in schema/elasticsearch.py")


def model_properties(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """ES mapping properties for every field of a pydantic model, in declaration order."""
    props = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else None
        props[name] = _es_type(field.annotation, extra)
    return props


def image_properties(semantic_dims: int) -> dict[str, dict[str, Any]]:
    props = model_properties(ImageRecord)
    props.update({name: dict(spec) for name, spec in ES_ONLY_IMAGE_FIELDS.items()})
    props["semantic"]["dims"] = semantic_dims
    return props


def settings_component() -> dict[str, Any]:
    return {"template": {"settings": {"index": {"number_of_shards": 1}}}, "_meta": {"managed_by": PREFIX}}


def images_mappings_component(semantic_dims: int) -> dict[str, Any]:
    return {
        "template": {"mappings": {"dynamic": "strict", "properties": image_properties(semantic_dims)}},
        "_meta": {"managed_by": PREFIX, "semantic_dims": semantic_dims},
    }


def index_templates(meta: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Composable index templates by name. `meta` lands in the images template's _meta
    (setup records the ingest mode and pipeline there so workers can read it back)."""

    def simple(pattern: str, model: type[BaseModel], dynamic: str = "strict") -> dict[str, Any]:
        return {
            "index_patterns": [pattern],
            "composed_of": [SETTINGS_COMPONENT],
            "priority": 200,
            "template": {"mappings": {"dynamic": dynamic, "properties": model_properties(model)}},
            "_meta": {"managed_by": PREFIX},
        }

    return {
        IMAGES_TEMPLATE: {
            "index_patterns": [IMAGES_PATTERN],
            "composed_of": [SETTINGS_COMPONENT, IMAGES_MAPPINGS_COMPONENT],
            "priority": 200,
            "_meta": {"managed_by": PREFIX, **(meta or {})},
        },
        LOCATIONS_TEMPLATE: simple(LOCATIONS_INDEX, StorageLocation),
        DUPLICATE_GROUPS_TEMPLATE: simple(DUPLICATE_GROUPS_INDEX, DuplicateGroup),
        # A failed document is whatever the pipeline got: keep it in _source, map only the error.
        FAILURES_TEMPLATE: {
            **simple(FAILURES_INDEX, IngestFailure, dynamic="false"),
        },
    }


def component_templates(semantic_dims: int) -> dict[str, dict[str, Any]]:
    return {SETTINGS_COMPONENT: settings_component(), IMAGES_MAPPINGS_COMPONENT: images_mappings_component(semantic_dims)}


def indices() -> dict[str, dict[str, Any]]:
    """Concrete indices setup creates (their mappings come from the templates)."""
    return {
        IMAGES_INDEX: {"aliases": {IMAGES_ALIAS: {"is_write_index": True}}},
        LOCATIONS_INDEX: {},
        DUPLICATE_GROUPS_INDEX: {},
        FAILURES_INDEX: {},
    }


def install(es, semantic_dims: int, meta: dict[str, Any] | None = None) -> list[str]:
    """Put the templates and create missing indices; idempotent. Returns lines saying what it did.

    Raises ValueError when an existing images index has other `semantic` dims than asked for,
    since a dense_vector's dims cannot change in place."""
    if es.indices.exists(index=IMAGES_INDEX):
        existing = semantic_dims_of(es)
        if existing is not None and existing != semantic_dims:
            raise ValueError(
                f"index {IMAGES_INDEX} holds {existing}-d semantic vectors, not {semantic_dims}: "
                f"use --semantic-dims {existing}, or reindex into a new deeplens-images-* index "
                f"and move the {IMAGES_ALIAS} alias"
            )
    done = []
    for name, body in component_templates(semantic_dims).items():
        es.cluster.put_component_template(name=name, **body)
        done.append(f"component template {name}")
    for name, body in index_templates(meta).items():
        es.indices.put_index_template(name=name, **body)
        done.append(f"index template {name}")
    for name, body in indices().items():
        if es.indices.exists(index=name):
            done.append(f"index {name} (exists)")
            continue
        es.indices.create(index=name, **body)
        done.append(f"index {name} (created)")
    return done


def semantic_dims_of(es) -> int | None:
    mapping = es.indices.get_mapping(index=IMAGES_INDEX)
    for index in mapping.values():
        dims = index["mappings"].get("properties", {}).get("semantic", {}).get("dims")
        if dims is not None:
            return int(dims)
    return None
