"""Bulk indexing of image records: what the scanner calls to push documents into Elasticsearch.

Ids are the data model's deterministic ids (UUIDv5 of location and path), so re-indexing a file
is an upsert. Rejections for load (429) are retried with backoff; every other per-document
error is returned, one entry per document, never raised in the middle of a batch. A document the
pipeline routed to `deeplens-failures` counts as failed too. `replace_index` writes a whole set
anew behind an alias (`deeplens duplicates --publish`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from elasticsearch import Elasticsearch, helpers

from deeplens.schema import elasticsearch as schema
from deeplens.schema.models import image_id


@dataclass
class DocumentError:
    id: str
    location: str | None
    path: str | None
    status: int
    error: str


@dataclass
class BulkResult:
    indexed: int = 0
    errors: list[DocumentError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _actions(records: Iterable[dict[str, Any]], index: str, pipeline: str | None):
    for record in records:
        doc = dict(record)
        doc_id = doc.pop("_id", None) or str(image_id(doc["location"], doc["path"]))
        action = {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc}
        if pipeline:
            action["pipeline"] = pipeline
        yield action


def describe_error(error: Any) -> str:
    """An Elasticsearch error object ({type, reason, caused_by}) as one line."""
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        return f"{reason} (caused by {describe_error(cause)})" if cause else reason
    return str(error)


def index_records(
    es: Elasticsearch,
    records: list[dict[str, Any]],
    pipeline: str | None,
    index: str = schema.IMAGES_ALIAS,
    chunk_size: int = 200,
    max_retries: int = 5,
    refresh: bool | str = False,
) -> BulkResult:
    """Index `records` (schema.image_document of each ImageRecord) through `pipeline` (None: no
    pipeline, e.g. on a node without ingest processors). Returns counts and per-document errors."""
    actions = list(_actions(records, index, pipeline))
    by_id = {action["_id"]: action["_source"] for action in actions}
    result = BulkResult()
    stream = helpers.streaming_bulk(
        es,
        actions,
        chunk_size=chunk_size,
        max_retries=max_retries,  # retries 429 rejections with exponential backoff
        initial_backoff=1,
        raise_on_error=False,
        raise_on_exception=False,
        refresh=refresh,
    )
    for ok, item in stream:
        [(_, info)] = item.items()
        doc = by_id.get(info.get("_id"), {})
        if ok and info.get("_index") == schema.FAILURES_INDEX:
            ok, info = False, {**info, "status": 422, "error": "the ingest pipeline failed; see deeplens-failures"}
        if ok:
            result.indexed += 1
            continue
        result.errors.append(
            DocumentError(
                id=str(info.get("_id")),
                location=doc.get("location"),
                path=doc.get("path"),
                status=int(info.get("status", 0)),
                error=describe_error(info.get("error", info.get("exception", "unknown error"))),
            )
        )
    return result


class IndexingError(RuntimeError):
    """Documents a new index refused; the message names the first few and what is left as it was."""


def replace_index(es: Elasticsearch, alias: str, suffix: str, records: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Index `records` into a new index `{alias}-{suffix}` (mappings from the index template for
    `{alias}-*`), then point `alias` at it and delete the indices it replaces, in one alias update:
    Elasticsearch applies those actions atomically, so a reader of the alias sees the previous set or
    the new one, never both and never a half-written one. (A delete-by-query of the previous set
    would need the reindex module, which a core node lacks.) Returns the new index and the ones removed.
    When a document is refused, the new index is deleted and the alias left as it was."""
    index = f"{alias}-{suffix}"
    es.indices.create(index=index)
    result = index_records(es, records, pipeline=None, index=index)
    if not result.ok:
        es.indices.delete(index=index)
        first = "; ".join(f"{e.location}:{e.path}: {e.error}" for e in result.errors[:3])
        raise IndexingError(f"{index} refused {len(result.errors)} of {len(records)} documents ({first}); "
                            f"{alias} is left as it was")
    es.indices.refresh(index=index)
    # Every earlier index of the alias's pattern, also one a failed or interrupted run left behind.
    replaced = sorted(name for name in es.indices.get(index=f"{alias}-*", expand_wildcards="all") if name != index)
    es.indices.update_aliases(actions=[{"add": {"index": index, "alias": alias}},
                                       *({"remove_index": {"index": name}} for name in replaced)])
    return index, replaced


def delete_records(es: Elasticsearch, ids: list[str], index: str = schema.IMAGES_ALIAS) -> int:
    """Delete documents by id with bulk deletes (delete-by-query lives in a module a core node lacks).
    Returns how many existed."""
    actions = ({"_op_type": "delete", "_index": index, "_id": doc_id} for doc_id in ids)
    deleted = 0
    for ok, item in helpers.streaming_bulk(es, actions, raise_on_error=False, refresh=True):
        deleted += ok and item["delete"].get("result") == "deleted"
    return deleted
