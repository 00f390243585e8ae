"""The data model: the only place a field name is spelled. Weaviate properties and Elasticsearch
mappings are generated from these pydantic models (types in schema/types.py); the scanner fills
them, and code that names fields in a query spells them through `fields`."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

# Fixed namespace so ids are the same on every machine: UUIDv5(location, path).
DEEPLENS_NAMESPACE = uuid.UUID("5b0f3a8e-8f1c-5d6e-9a51-0d1e7c2a4b10")
LOCATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def image_id(location: str, path: str) -> uuid.UUID:
    """Deterministic object id: re-indexing a file is an upsert, never a second object."""
    return uuid.uuid5(DEEPLENS_NAMESPACE, f"{location}\0{path}")


def location_id(name: str) -> uuid.UUID:
    return uuid.uuid5(DEEPLENS_NAMESPACE, f"location\0{name}")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def fields(model: type[BaseModel], *names: str) -> list[str]:
    """`names` as a list, each checked to be a field of `model`. A module that builds its query field
    lists with this at import time fails to import on a misspelled or removed field, instead of
    querying for a field that never matches."""
    unknown = [name for name in names if name not in model.model_fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no field {', '.join(map(repr, unknown))}")
    return list(names)


class StorageLocation(BaseModel):
    """A registered storage location. Secrets are never stored: only the names of env vars."""

    name: str
    url: str = Field(description="fsspec URL, e.g. file:///data/photos, s3://bucket/prefix, sftp://host/path")
    options: dict[str, str] = Field(default_factory=dict, description="non-secret fsspec options")
    include: list[str] = Field(default_factory=list, description="glob patterns on relative paths")
    exclude: list[str] = Field(default_factory=list)
    credentials_env: dict[str, str] = Field(
        default_factory=dict, description="fsspec option -> name of the environment variable holding it"
    )
    reference: bool = Field(default=False, description="a reference location: cleanups keep its files, never touch them")
    added_at: datetime = Field(default_factory=utcnow)
    last_scan: dict[str, Any] | None = Field(default=None, description="summary and errors of the last scan")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not LOCATION_NAME.match(name):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 63), starting with a letter or digit")
        return name


class ImageRecord(BaseModel):
    """One indexed image. `thumbnail` is what Weaviate's modules vectorize (named vectors
    `semantic` and `phash`); the hashes here are properties for grouping and display."""

    location: str
    uri: str
    path: str
    folder: str
    filename: str
    extension: str
    size_bytes: int
    modified_at: datetime | None = None
    etag: str | None = None
    content_sha256: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: datetime | None = None
    camera: str | None = None
    has_border: bool | None = Field(default=None, description="a uniform margin around the picture (letterbox, frame)")
    phash: str | None = Field(default=None, description="64-bit DCT pHash, 16 hex digits")
    phash_dihedral: list[str] = Field(
        default_factory=list, description="pHash of the 8 rotations/mirrors, for rotation-proof near-duplicate search"
    )
    thumbnail: Annotated[str | None, Field(json_schema_extra={"blob": True})] = None  # base64 JPEG
    indexed_at: datetime = Field(default_factory=utcnow)
    scan_id: str

    @property
    def id(self) -> uuid.UUID:
        return image_id(self.location, self.path)


PHASH_BITS = 64  # the DCT pHash of modules/phash.py (16 hex digits)


class ElasticsearchImage(ImageRecord):
    """One document of `deeplens-images`: the record plus what Elasticsearch alone stores (Weaviate
    keeps the vectors as named vectors and has no ingest pipeline)."""

    semantic: list[float] | None = Field(
        default=None,
        description="embedding of the active model profile",
        # dims depend on the profile: the mapping gets them at setup.
        json_schema_extra={"elasticsearch": {"type": "dense_vector", "index": True, "similarity": "cosine"}},
    )
    phash_bits: str | None = Field(
        default=None,
        description="the pHash again, as a bit vector: kNN ranks by Hamming distance (ES >= 8.15)",
        json_schema_extra={
            "elasticsearch": {"type": "dense_vector", "element_type": "bit", "dims": PHASH_BITS, "index": True}
        },
    )
    ingested_at: datetime | None = Field(
        default=None, description="when the ingest pipeline saw the document (indexed_at: when the scanner read the file)"
    )


class SkippedFile(BaseModel):
    """A listed file that is not an image. Its size, modification time and etag are remembered so
    that later scans do not read it again while it is unchanged."""

    location: str
    path: str
    size_bytes: int | None = None
    modified_at: datetime | None = None
    etag: str | None = None


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


class DuplicateCopy(BaseModel):
    """One document of `deeplens-duplicate-copies`: a copy that a cleanup would remove, from the
    groups `deeplens duplicates --publish` computed (exact, near and derived alike). Its size is
    what it wastes, charged to its own location and folder; the kept copy is its group's centre.
    The document id is the copy's image id."""

    group_id: str = Field(description="the kept copy's image id: the same in every publish while that copy is kept")
    group_kind: str = Field(description="the group's loosest tier: exact, near or derived")
    tier: str = Field(description="how this copy matches the kept copy: exact, near or derived")
    location: str
    folder: str
    path: str
    uri: str
    size_bytes: int = Field(description="the copy's size: the bytes that removing it frees")
    distance: int = Field(description="pHash bits from the kept copy, after the best rotation/mirror")
    kept_location: str
    kept_path: str
    kept_uri: str
    cross_location: bool = Field(description="the kept copy lies in another location")
    publish_id: str
    published_at: datetime


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

