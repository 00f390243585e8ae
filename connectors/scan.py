"""One scan of one storage location into Weaviate.

list -> compare with what Weaviate holds for the location (the database is the only state: the
images, and the files found not to be images, so those are not read again while unchanged) ->
read each new or changed file once (sha256, EXIF, thumbnail) -> ask the module server for the
pHash and its rotations/mirrors -> batch upsert (deterministic ids, so a killed scan simply runs
again) -> delete what disappeared -> record the summary and the per-file errors on the location.

The upsert carries the `phash` and `semantic` vectors the module server just computed from the
thumbnail (`phash` alone in a hash-only collection), so Weaviate asks for neither; in a `modules`
collection objects written by anyone else get both from Weaviate's modules, in a `precomputed` one
(schema/weaviate.py) only the worker writes them.
"""

from __future__ import annotations

import collections
import logging
import posixpath
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import weaviate
from elastic_transport import TransportError
from weaviate.classes.query import Filter
from weaviate.exceptions import WeaviateBaseError, WeaviateQueryError

from deeplens.connectors import storage
from deeplens.connectors.changes import Changes
from deeplens.connectors.extract import extract
from deeplens.connectors.modules_client import IDENTITY, FeatureError, ModulesClient
from deeplens.connectors.registry import save_location
from deeplens.connectors.retry import retry
from deeplens.connectors.weaviate_client import use_collection
from deeplens.modules.images import BadImage
from deeplens.modules.phash import hex_to_vector
from deeplens.schema.models import ImageRecord, SkippedFile, StorageLocation, fields, image_id, utcnow
from deeplens.schema.elasticsearch import image_document
from deeplens.schema.weaviate import (
    IMAGE_COLLECTION, PHASH_VECTOR, SEMANTIC_VECTOR, SKIPPED_COLLECTION, image_vectors_in_use, to_properties,
)

log = logging.getLogger(__name__)
CHUNK = 32  # images per module call and per Weaviate batch
ONE_QUERY = 10_000  # objects of a location read in one filtered query (Weaviate's default QUERY_MAXIMUM_RESULTS)
READ_AHEAD = 8  # chunks read ahead of the database writes: bounds memory when the writes are slower
WRITERS = 3  # chunks being vectorized and written at once (bench/RESULTS.md: one left the CPU idle)
_SUMMARY_LOCK = threading.Lock()
KEPT_ERRORS = 1000  # per-file errors stored on the location after a scan
DELETE_BATCH = 500  # objects per delete (and per write of skipped files) in Weaviate and Elasticsearch
# What change detection compares; the images and the skipped non-images both have these fields.
CHANGE_FIELDS = fields(SkippedFile, "location", "path", "size_bytes", "modified_at", "etag")


@dataclass
class ScanSummary:
    location: str
    scan_id: str
    listed: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped_not_images: int = 0
    errors: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    finished_at: str = ""
    # Where the time went, in seconds summed over threads: reading runs on `workers` threads, the
    # module calls and database writes on WRITERS threads, all at once.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error_list: list[dict] = field(default_factory=list)

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with _SUMMARY_LOCK:  # stages are timed from several threads at once
                self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - started


@dataclass
class Pending:
    listed: storage.ListedObject
    record: ImageRecord
    semantic: list[float] | None = None  # fetched unless the collection is hash-only


@dataclass
class ElasticsearchTarget:
    """Where the scan also writes. The worker sends the vectors it fetched (both, or the pHash alone
    for a hash-only collection); in inference mode the pipeline asks the module server only for
    what a document arrives without (documents other tools write)."""

    client: object  # elasticsearch.Elasticsearch
    pipeline: str | None


def known_objects(client: weaviate.WeaviateClient, collection_name: str, location: str) -> Iterator[dict]:
    """path, size/mtime/etag of each object a collection holds for the location, streamed. A
    location of at most ONE_QUERY objects comes in one filtered query, so rescanning a small
    location costs what the location holds, not the whole index; a larger one is read by the
    cursor over the collection (Weaviate's cursor takes no filter, and offset paging stops at
    QUERY_MAXIMUM_RESULTS, 10,000 by default), keeping the location's objects."""
    collection = use_collection(client, collection_name)
    mine = Filter.by_property("location").equal(location)
    try:
        found = collection.query.fetch_objects(filters=mine, limit=ONE_QUERY, return_properties=CHANGE_FIELDS).objects
    except WeaviateQueryError:  # a Weaviate whose QUERY_MAXIMUM_RESULTS is set below ONE_QUERY
        found = None
    if found is not None and len(found) < ONE_QUERY:
        yield from (obj.properties for obj in found)
        return
    found = None  # the cursor reads them again
    for obj in collection.iterator(return_properties=CHANGE_FIELDS):
        if obj.properties.get("location") == location:
            yield obj.properties


def scan(
    client: weaviate.WeaviateClient,
    location: StorageLocation,
    modules_url: str,
    on_total: Callable[[int], None] = lambda total: None,
    on_done: Callable[[int], None] = lambda count: None,
    workers: int = 8,
    elasticsearch: ElasticsearchTarget | None = None,
) -> ScanSummary:
    """Scans the location. Its change detection lives in a temporary SQLite file (changes.py), so
    memory does not grow with the location; the file goes when the scan ends, however it ends."""
    with Changes() as changes:
        return _scan(changes, client, location, modules_url, on_total, on_done, workers, elasticsearch)


def _scan(changes: Changes, client, location, modules_url, on_total, on_done, workers, elasticsearch) -> ScanSummary:
    started = time.monotonic()
    summary = ScanSummary(location=location.name, scan_id=uuid.uuid4().hex)
    context = {"scan_id": summary.scan_id, "location": location.name}  # on every log line of this scan
    log.info("scan started", extra=context)
    fs, root = storage.open_location(location.url, location.options, location.credentials_env)
    # The whole listing first: one that fails half-way stops the scan before anything is deleted.
    summary.listed = changes.add_listed(_utf8_names(
        storage.list_objects(fs, root, location.include, location.exclude, all_files=True), summary))
    changes.add_indexed("images", known_objects(client, IMAGE_COLLECTION, location.name))
    changes.add_indexed("skipped", known_objects(client, SKIPPED_COLLECTION, location.name))
    # Unchanged images and unchanged non-images are not read again.
    todo_total, still_skipped = changes.counts()
    summary.unchanged = summary.listed - todo_total - still_skipped
    on_total(todo_total)

    # The worker fetches the embedding with the pHashes, 32 thumbnails per module call, unless the
    # collection is hash-only: then no embedding model runs at all. A `modules` collection gets it
    # too: Weaviate would otherwise ask /semantic/vectorize once per image, and the module server
    # would decode and trim each thumbnail a second time (bench/RESULTS.md: ~2 CPU ms per image of
    # 23). Elasticsearch in inference mode gets it as well, so its pipeline embeds nothing.
    semantic = not image_vectors_in_use(client).hash_only
    collection = use_collection(client, IMAGE_COLLECTION)
    def store(chunk: list) -> tuple[int, list[Pending], list[str], int]:
        """One chunk: features from the module server, then the Weaviate (and ES) writes; runs on a
        writer thread, so Weaviate stores one chunk while the next one's features are fetched."""
        pending, chunk_not_images = [], []
        for obj, outcome in chunk:
            if isinstance(outcome, ImageRecord):
                pending.append(Pending(obj, outcome))
            elif outcome is None:
                chunk_not_images.append(obj.path)
            else:
                _record_error(summary, obj, outcome)
        with summary.timing("module_features"):
            _add_features(modules, pending, summary, semantic=semantic)
        stored = [p for p in pending if p.record.phash]
        if elasticsearch is not None:
            # Elasticsearch first: the next scan compares storage with Weaviate only, so a file
            # goes into Weaviate once it is in Elasticsearch too, and one that failed there (or a
            # chunk lost when Elasticsearch stopped) is read again by the next scan.
            with summary.timing("elasticsearch"):
                stored = _index_elasticsearch(elasticsearch, stored, summary)
        with summary.timing("weaviate"):
            stored = _upsert(collection, stored, summary)
        return len(chunk), stored, chunk_not_images, sum(p.record.size_bytes for p in pending)

    with (
        ModulesClient(modules_url) as modules,
        ThreadPoolExecutor(workers if storage.parallel_reads(fs) else 1) as readers,
        ThreadPoolExecutor(WRITERS) as writers,
    ):
        reads = _bounded_map(readers, lambda obj: (obj, _read(fs, location, summary, obj)), changes.todo(),
                             READ_AHEAD * CHUNK)
        try:
            for count, stored, chunk_not_images, bytes_read in _bounded_map(writers, store, _chunks(reads, CHUNK), WRITERS):
                changes.add_not_images(chunk_not_images)  # ignored, and forgotten if indexed before
                summary.bytes_read += bytes_read
                for p in stored:
                    if changes.indexed(p.listed.path):
                        summary.changed += 1
                    else:
                        summary.new += 1
                on_done(count)
        except BaseException as exc:
            # The store, the module server or Weaviate failed: the scan stops before deleting
            # anything, and the queued reads and writes are dropped instead of failing one by one.
            log.error("scan stopped: %s", exc, extra=context)
            for pool in (readers, writers):
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    summary.skipped_not_images = changes.count_not_images() + still_skipped
    for gone in _chunks(changes.gone(), DELETE_BATCH):
        if elasticsearch is not None:
            from deeplens.ingest.bulk import delete_records

            # Before Weaviate, for the same reason: what a failed delete leaves, the next scan deletes.
            retry(lambda: delete_records(elasticsearch.client, [str(image_id(location.name, path)) for path in gone]),
                  what="Elasticsearch", errors=(TransportError,))
        summary.deleted += _delete(collection, location.name, gone)
    _remember_skipped(client, location.name, changes.not_images())
    _delete(use_collection(client, SKIPPED_COLLECTION), location.name, changes.no_longer_skipped())
    summary.seconds = round(time.monotonic() - started, 3)
    indexed = summary.new + summary.changed
    summary.images_per_second = round(indexed / summary.seconds, 2) if summary.seconds else 0.0
    summary.stage_seconds = {stage: round(seconds, 3) for stage, seconds in summary.stage_seconds.items()}
    summary.finished_at = utcnow().isoformat()
    location.last_scan = asdict(summary)
    save_location(client, location)
    counts = ("listed", "new", "changed", "unchanged", "deleted", "skipped_not_images", "errors", "seconds")
    log.info("scan finished", extra=context | {name: getattr(summary, name) for name in counts})
    return summary


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """pool.map, in order, with at most `window` results waiting: Executor.map submits everything
    at once and would hold every thumbnail in memory when the database is the slower side."""
    pending: collections.deque = collections.deque()
    for item in items:
        if len(pending) >= window:
            yield pending.popleft().result()
        pending.append(pool.submit(fn, item))
    while pending:
        yield pending.popleft().result()


def _read(fs, location: StorageLocation, summary: ScanSummary, obj: storage.ListedObject):
    """ImageRecord, None for a file that is not an image, or the exception to record."""
    extension = storage.extension(obj.path)
    try:
        with summary.timing("read"):
            # A file without an image extension is sniffed from its first bytes before it is read whole.
            if extension not in storage.IMAGE_EXTENSIONS:
                head = storage.read_head(fs, obj.fs_path, storage.SNIFF_BYTES)
                if head and storage.sniff_image_type(head) is None:
                    return None
            data = storage.read_bytes(fs, obj.fs_path)
        if not data:
            raise BadImage("file is empty (zero bytes)")
        with summary.timing("decode_thumbnail"):
            facts = extract(data)
    except (storage.StorageUnreachableError, storage.StorageTransientError):
        raise  # still failing after retries: the store is down, not this file, so the scan stops
    except (storage.StorageError, BadImage) as exc:
        return exc
    folder, filename = posixpath.split(obj.path)
    return ImageRecord(
        location=location.name,
        uri=obj.uri,
        path=obj.path,
        folder=folder,
        filename=filename,
        extension=extension,
        size_bytes=len(data),
        modified_at=obj.modified_at,
        etag=obj.etag,
        content_sha256=facts.content_sha256,
        width=facts.width,
        height=facts.height,
        format=facts.format,
        taken_at=facts.taken_at,
        camera=facts.camera,
        has_border=facts.has_border,
        thumbnail=facts.thumbnail,
        scan_id=summary.scan_id,
    )


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _utf8_names(objects: Iterable[storage.ListedObject], summary: ScanSummary) -> Iterator[storage.ListedObject]:
    """The listed objects whose names are UTF-8; each other one is a per-file error. Linux allows
    any bytes in a name (Python keeps the others as surrogate escapes), but Weaviate, Elasticsearch
    and the scan's SQLite file store text as UTF-8, so such a name cannot be indexed as it is."""
    for obj in objects:
        try:
            obj.path.encode("utf-8")
        except UnicodeEncodeError:
            printable = obj.path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            _record_errors(summary, [{"path": printable, "uri": obj.uri, "error": (
                "the file name is not valid UTF-8 (its other bytes shown as \\x..), so it cannot be stored as text; "
                "rename it to UTF-8 (e.g. `convmv -f latin1 -t utf-8 --notest FILE`) and scan again")}])
            continue
        yield obj


def _record_error(summary: ScanSummary, obj: storage.ListedObject, error: Exception) -> None:
    _record_errors(summary, [{"path": obj.path, "uri": obj.uri, "error": str(error)}])


def _record_errors(summary: ScanSummary, errors: list[dict]) -> None:
    with _SUMMARY_LOCK:  # writer threads record errors at once
        summary.errors += len(errors)
        # Kept on the location, up to KEPT_ERRORS; every error is counted and logged.
        summary.error_list.extend(errors[:KEPT_ERRORS - len(summary.error_list)])
    for error in errors:
        log.info("file not indexed: %s", error["error"],
                 extra={"scan_id": summary.scan_id, "location": summary.location, "path": error["path"],
                        "uri": error["uri"], "error": error["error"]})


def _add_features(modules: ModulesClient, pending: list[Pending], summary: ScanSummary, semantic: bool) -> None:
    """pHash and its dihedral variants of each thumbnail (and the embedding unless hash-only),
    from the module server: the same bytes Weaviate's modules vectorize, so everything agrees."""
    # The identity variant is the pHash itself: asking for "phash" too would hash every image twice.
    results = modules.features([p.record.thumbnail for p in pending], ["dihedral", *(["semantic"] if semantic else [])])
    for p, result in zip(pending, results):
        if isinstance(result, FeatureError):
            _record_error(summary, p.listed, result)
            continue
        p.record.phash = result.dihedral[IDENTITY]
        p.record.phash_dihedral = list(result.dihedral.values())
        p.semantic = result.semantic


def _index_elasticsearch(target: ElasticsearchTarget, stored: list[Pending], summary: ScanSummary) -> list[Pending]:
    from deeplens.ingest.bulk import index_records

    if not stored:
        return []
    documents = [image_document(p.record, p.semantic) for p in stored]
    # A bulk request is an upsert by id: sending it again after a failure is safe.
    result = retry(lambda: index_records(target.client, documents, target.pipeline),
                   what="Elasticsearch", errors=(TransportError,))
    uris = {p.record.path: p.listed.uri for p in stored}
    _record_errors(summary, [{"path": e.path, "uri": uris.get(e.path, ""), "error": f"Elasticsearch: {e.error}"}
                             for e in result.errors])
    failed = {error.path for error in result.errors}
    return [p for p in stored if p.record.path not in failed]


def _upsert(collection, pending: list[Pending], summary: ScanSummary) -> list[Pending]:
    """Batch upsert; returns what was stored, records the rest as errors."""
    if not pending:
        return []
    objects = [
        weaviate.classes.data.DataObject(
            properties=to_properties(p.record),
            uuid=p.record.id,
            vector={PHASH_VECTOR: hex_to_vector(p.record.phash), **({SEMANTIC_VECTOR: p.semantic} if p.semantic else {})},
        )
        for p in pending
    ]
    result = retry(lambda: collection.data.insert_many(objects), what="Weaviate", errors=(WeaviateBaseError,))
    for index, error in result.errors.items():
        _record_error(summary, pending[index].listed, RuntimeError(f"Weaviate: {error.message}"))
    return [p for index, p in enumerate(pending) if index not in result.errors]


def _remember_skipped(client: weaviate.WeaviateClient, location: str,
                      objects: Iterable[storage.ListedObject]) -> None:
    collection = use_collection(client, SKIPPED_COLLECTION)
    for chunk in _chunks(objects, DELETE_BATCH):
        batch = [
            weaviate.classes.data.DataObject(
                properties=to_properties(SkippedFile(location=location, path=obj.path, size_bytes=obj.size_bytes,
                                                     modified_at=obj.modified_at, etag=obj.etag)),
                uuid=image_id(location, obj.path),
            )
            for obj in chunk
        ]
        retry(lambda: collection.data.insert_many(batch), what="Weaviate", errors=(WeaviateBaseError,))


def _delete(collection, location: str, paths: Iterable[str]) -> int:
    deleted = 0
    for chunk in _chunks(paths, DELETE_BATCH):
        ids = [image_id(location, path) for path in chunk]
        result = retry(
            lambda: collection.data.delete_many(where=Filter.by_id().contains_any(ids)),
            what="Weaviate", errors=(WeaviateBaseError,),
        )
        deleted += result.successful
    return deleted
