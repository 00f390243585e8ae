"""What a database must answer for DeepLens's queries. Grouping, search and stats (the other modules
of this package) are written once against this interface; queries/weaviate.py and
queries/elasticsearch.py answer it. A new database is one more class with these methods.

Ids are the deterministic image ids (schema.models.image_id) as strings, the same in every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from deeplens.schema.models import ImageRecord, fields

# What grouping reads of every image, and what a search hit shows.
MEMBER_FIELDS = fields(ImageRecord, "location", "uri", "size_bytes", "width", "height", "content_sha256",
                       "has_border", "modified_at", "phash", "phash_dihedral")
RESULT_FIELDS = fields(ImageRecord, "location", "uri", "path", "size_bytes", "width", "height", "format")
THUMBNAIL_FIELDS = fields(ImageRecord, "thumbnail")  # what geometric verification compares


@dataclass(frozen=True)
class Hit:
    id: str
    distance: float  # Hamming bits for pHash queries, cosine distance for semantic ones
    properties: dict = field(default_factory=dict)  # the fields asked for, if any


@dataclass(frozen=True)
class Indexed:
    """One image as the index holds it, for `explain`."""

    id: str
    properties: dict  # MEMBER_FIELDS and THUMBNAIL_FIELDS
    semantic: list[float] | None


class NotAnswered(RuntimeError):
    """This backend cannot answer the question; the message says why and what to use instead."""


class Backend(Protocol):
    name: str

    def hash_only(self) -> bool:
        """Whether the index holds pHashes but no semantic embeddings."""

    def images(self, locations: list[str] | None) -> Iterator[tuple[str, dict]]:
        """(id, MEMBER_FIELDS) of every image in the locations (all when None), over a cursor."""

    def images_with_embeddings(self, locations: list[str] | None) -> Iterator[tuple[str, dict, list[float] | None]]:
        """(id, MEMBER_FIELDS, semantic embedding or None) of every image in the locations, over a cursor;
        asked for only where the collection has `semantic` (not hash-only)."""

    def exact_copies(self, locations: list[str] | None) -> list[list[tuple[str, dict]]]:
        """(id, MEMBER_FIELDS) of the images of every content hash held more than once, per hash."""

    def phash_neighbours(self, phash: str, max_distance: int, limit: int, locations: list[str] | None,
                         properties: list[str] = ()) -> list[Hit]:
        """Images whose pHash is within max_distance bits of `phash`, nearest first."""

    def semantic_neighbours(self, image_id: str, max_distance: float, limit: int,
                            locations: list[str] | None) -> list[Hit]:
        """Images whose embedding is within max_distance (cosine) of the stored image's."""

    def by_uri(self, uris: list[str]) -> dict[str, Indexed]:
        """The indexed images with these URIs: id, MEMBER_FIELDS and thumbnail, semantic vector."""

    def thumbnails(self, image_ids: list[str]) -> dict[str, str | None]:
        """The stored thumbnail (base64 JPEG) of each image; None where the index keeps none."""

    def similar_to_image(self, thumbnail: str, limit: int, locations: list[str] | None) -> list[Hit]:
        """Nearest images by embedding to a query thumbnail (base64 JPEG), with RESULT_FIELDS."""

    def similar_to_text(self, text: str, limit: int, locations: list[str] | None) -> list[Hit]:
        """Nearest images by embedding to a text, with RESULT_FIELDS."""

    def location_totals(self) -> dict[str, tuple[int, int]]:
        """location -> (images, bytes)."""
