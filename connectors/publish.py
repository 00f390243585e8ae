"""`deeplens duplicates --publish`: the groups `duplicates` found, written to Elasticsearch for
Kibana as one document per copy a cleanup would remove (schema.models.DuplicateCopy), so the
dashboard can sum wasted bytes per location and folder for exact, near and derived copies alike
(the transform behind `deeplens-duplicate-groups` sees exact copies only).

Each publish writes a new index and moves the `deeplens-duplicate-copies` alias to it, deleting the
previous one in the same step (ingest/bulk.py replace_index): Kibana never counts a copy twice.
Paths and folders come from the images' documents in `deeplens-images` (grouping reads only what it
compares), so every grouped image must be there: scans write it when DEEPLENS_ES_URL is set.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from deeplens.connectors.queries.grouping import Group
from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import DuplicateCopy, ImageRecord, fields, utcnow

PATH_FIELDS = fields(ImageRecord, "path", "folder")
IDS_PER_REQUEST = 1000

if TYPE_CHECKING:  # the client itself is imported where the CLI connects (connectors/cli/common.py)
    from elasticsearch import Elasticsearch


class PublishError(RuntimeError):
    """A publish Elasticsearch is not ready for, or refused; the message says why and what to do."""


@dataclass
class Published:
    alias: str  # what Kibana reads
    index: str  # the new index behind the alias
    replaced: list[str]  # the indices the publish deleted
    copies: int
    wasted_bytes: int


def check_ready(es: Elasticsearch) -> None:
    """Fails before the (possibly long) grouping when `es setup` has not installed the template."""
    if not es.indices.exists_index_template(name=schema.DUPLICATE_COPIES_TEMPLATE):
        raise PublishError(f"no index template {schema.DUPLICATE_COPIES_TEMPLATE} in Elasticsearch: run "
                           "`deeplens es setup` (again, after an upgrade), then publish")


def copy_documents(groups: list[Group], paths: dict[str, dict], publish_id: str,
                   published_at: datetime) -> list[DuplicateCopy]:
    """One document per member after the kept copy (the first), with the `path` and `folder` of
    each image by id in `paths`."""
    documents = []
    for group in groups:
        kept = group.members[0]
        for copy in group.members[1:]:
            documents.append(DuplicateCopy(
                group_id=kept.uuid, group_kind=group.kind, tier=copy.tier, location=copy.location,
                folder=paths[copy.uuid]["folder"], path=paths[copy.uuid]["path"], uri=copy.uri,
                size_bytes=copy.size_bytes, distance=copy.distance, kept_location=kept.location,
                kept_path=paths[kept.uuid]["path"], kept_uri=kept.uri, cross_location=copy.location != kept.location,
                publish_id=publish_id, published_at=published_at,
            ))
    return documents


def image_paths(es: Elasticsearch, groups: list[Group]) -> dict[str, dict]:
    """`path` and `folder` of every grouped image, by id, from `deeplens-images`."""
    members = {m.uuid: m for group in groups for m in group.members}
    ids = list(members)
    found = {}
    for start in range(0, len(ids), IDS_PER_REQUEST):
        answer = es.mget(index=schema.IMAGES_ALIAS, ids=ids[start:start + IDS_PER_REQUEST], source_includes=PATH_FIELDS)
        found.update({doc["_id"]: doc["_source"] for doc in answer["docs"] if doc.get("found")})
    missing = [members[uuid].uri for uuid in ids if uuid not in found]
    if missing:
        raise PublishError(f"{len(missing)} of the {len(ids)} grouped images are not in Elasticsearch's "
                           f"{schema.IMAGES_ALIAS} (first: {missing[0]}): scan their locations with DEEPLENS_ES_URL "
                           "set, then publish again")
    return found


def publish(es: Elasticsearch, groups: list[Group]) -> Published:
    """Replace the published copies with those of `groups` (the caller checked `check_ready` first,
    before the grouping, which may take long)."""
    from deeplens.ingest.bulk import IndexingError, replace_index

    published_at = utcnow()
    # Index names are lowercase; the random part keeps two publishes in one second apart.
    publish_id = f"{published_at:%Y%m%dt%H%M%Sz}-{secrets.token_hex(3)}"
    documents = copy_documents(groups, image_paths(es, groups), publish_id, published_at)
    try:
        index, replaced = replace_index(es, schema.DUPLICATE_COPIES_ALIAS, publish_id,
                                        [document.model_dump(mode="json") for document in documents])
    except IndexingError as exc:
        raise PublishError(str(exc)) from None
    return Published(schema.DUPLICATE_COPIES_ALIAS, index, replaced, len(documents),
                     sum(document.size_bytes for document in documents))
