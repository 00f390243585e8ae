"""The data model: the only place a field name is spelled. Weaviate properties (and ES mappings)
are generated from these pydantic models; the scanner fills them."""

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
    phash: str | None = Field(default=None, description="64-bit DCT pHash, 16 hex digits")
    phash_dihedral: list[str] = Field(
        default_factory=list, description="pHash of the 8 rotations/mirrors, for rotation-proof near-duplicate search"
    )
    phash_bands: list[str] = Field(default_factory=list, description="'<band>:<hex>' pieces of the pHash")
    thumbnail: Annotated[str | None, Field(json_schema_extra={"blob": True})] = None  # base64 JPEG
    indexed_at: datetime = Field(default_factory=utcnow)
    scan_id: str

    @property
    def id(self) -> uuid.UUID:
        return image_id(self.location, self.path)


PHASH_BANDS = 4  # 16-bit bands: copies within Hamming distance 3 share one for sure


def phash_bands(phash_hex: str) -> list[str]:
    width = len(phash_hex) // PHASH_BANDS
    return [f"{band}:{phash_hex[band * width:(band + 1) * width]}" for band in range(PHASH_BANDS)]
