"""Elasticsearch index and component templates, generated from the data model in schema/models.py.

Field names and types come from the pydantic models (ElasticsearchImage for the images, with the
fields Elasticsearch alone has) through schema/types.py; this module lays out the templates.

Layout in the cluster:
- `deeplens-images` is an alias over `deeplens-images-000001` (so a reindex into a new index with
  other vector dims is an alias swap, not a rename for every client);
- `deeplens-locations` holds the storage location registry;
- `deeplens-duplicate-groups` is the exact-duplicates transform's destination;
- `deeplens-duplicate-copies` is an alias over the latest `deeplens-duplicate-copies-<publish id>`,
  written by `deeplens duplicates --publish` (each publish a new index, then the alias moves);
- `deeplens-failures` receives documents an ingest pipeline could not process.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from deeplens.schema.models import (
    DuplicateCopy, DuplicateGroup, ElasticsearchImage, ImageRecord, IngestFailure, StorageLocation,
)
from deeplens.schema.types import database_type

PREFIX = "deeplens"
IMAGES_ALIAS = f"{PREFIX}-images"
IMAGES_INDEX = f"{PREFIX}-images-000001"
IMAGES_PATTERN = f"{PREFIX}-images-*"
LOCATIONS_INDEX = f"{PREFIX}-locations"
DUPLICATE_GROUPS_INDEX = f"{PREFIX}-duplicate-groups"
DUPLICATE_COPIES_ALIAS = f"{PREFIX}-duplicate-copies"
DUPLICATE_COPIES_PATTERN = f"{DUPLICATE_COPIES_ALIAS}-*"
FAILURES_INDEX = f"{PREFIX}-failures"

# Component / index template names.
SETTINGS_COMPONENT = f"{PREFIX}-settings"
IMAGES_MAPPINGS_COMPONENT = f"{PREFIX}-images-mappings"
IMAGES_TEMPLATE = f"{PREFIX}-images"
LOCATIONS_TEMPLATE = f"{PREFIX}-locations"
DUPLICATE_GROUPS_TEMPLATE = f"{PREFIX}-duplicate-groups"
DUPLICATE_COPIES_TEMPLATE = f"{PREFIX}-duplicate-copies"
FAILURES_TEMPLATE = f"{PREFIX}-failures"

MIN_ES_VERSION = (8, 15)  # dense_vector element_type: bit


def model_properties(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """ES mapping properties for every field of a pydantic model, in declaration order."""
    return {name: database_type(field).elasticsearch for name, field in model.model_fields.items()}


def image_properties(semantic_dims: int) -> dict[str, dict[str, Any]]:
    props = model_properties(ElasticsearchImage)
    props["semantic"]["dims"] = semantic_dims
    return props


# Filled by the ingest pipeline (or left out) when the worker has no value: sending them as null
# would only add nulls to _source.
_ELASTICSEARCH_ONLY = set(ElasticsearchImage.model_fields) - set(ImageRecord.model_fields)


def image_document(record: ImageRecord, semantic: list[float] | None = None) -> dict[str, Any]:
    """The document the scanner indexes for `record`: its fields (the thumbnail included: the
    pipeline drops it unless `es setup --keep-thumbnails`, which duplicate verification needs), the
    pHash again as a bit vector, and the embedding when the worker computed one."""
    image = ElasticsearchImage(**dict(record), phash_bits=record.phash, semantic=semantic)
    empty = {name for name in _ELASTICSEARCH_ONLY | {"thumbnail"} if getattr(image, name) is None}
    return image.model_dump(mode="json", exclude=empty)


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

    images = {
        "index_patterns": [IMAGES_PATTERN],
        "composed_of": [SETTINGS_COMPONENT, IMAGES_MAPPINGS_COMPONENT],
        "priority": 200,
        "_meta": {"managed_by": PREFIX, **(meta or {})},
    }
    if (meta or {}).get("pipeline"):
        images["template"] = {"settings": images_settings(meta["pipeline"])}
    return {
        IMAGES_TEMPLATE: images,
        LOCATIONS_TEMPLATE: simple(LOCATIONS_INDEX, StorageLocation),
        DUPLICATE_GROUPS_TEMPLATE: simple(DUPLICATE_GROUPS_INDEX, DuplicateGroup),
        DUPLICATE_COPIES_TEMPLATE: simple(DUPLICATE_COPIES_PATTERN, DuplicateCopy),
        # A failed document is whatever the pipeline got: keep it in _source, map only the error.
        FAILURES_TEMPLATE: simple(FAILURES_INDEX, IngestFailure, dynamic="false"),
    }


def images_settings(pipeline: str | None) -> dict[str, Any]:
    """Documents that other tools index without naming a pipeline go through DeepLens's too, so every
    document gets `ingested_at`, the transform's sync field (a request's own pipeline still wins)."""
    return {"index": {"default_pipeline": pipeline}}


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
            if name == IMAGES_INDEX:  # template settings apply only to new indices
                es.indices.put_settings(index=name, settings=images_settings((meta or {}).get("pipeline")))
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
