"""Change detection of one scan on disk: the listing and what the index holds for the location go
into a temporary SQLite database, and what to read, what is unchanged and what is gone come back
from SQL joins in path order. Memory is SQLite's page cache (at most CACHE_KIB) and a batch of rows
at any location size; the disk holds the listed paths, URIs and metadata and the index's records
(about 170 bytes per object: bench/RESULTS.md).

SQLite makes the file in its temporary directory (SQLITE_TMPDIR or TMPDIR, else /var/tmp, /usr/tmp,
/tmp) and unlinks it as soon as it is open, so nothing is left behind, even by a killed scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from deeplens.connectors.storage import ListedObject

CACHE_KIB = 16 * 1024  # SQLite's page cache: what the spill may hold in memory
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# The listed object `l` is unchanged against the indexed record `k`: the same etag and size where
# both have an etag, else the same size and modification time (Weaviate keeps milliseconds).
_UNCHANGED = """l.size IS k.size AND CASE
    WHEN l.etag IS NOT NULL AND k.etag IS NOT NULL THEN l.etag = k.etag
    WHEN l.mtime_us IS NULL OR k.mtime_us IS NULL THEN l.mtime_us IS k.mtime_us
    ELSE abs(l.mtime_us - k.mtime_us) < 1000 END"""
# Unchanged images and unchanged non-images (skipped files) are not read again.
_STILL_SKIPPED = f"EXISTS (SELECT 1 FROM skipped k WHERE k.path = l.path AND {_UNCHANGED})"
_NEW_OR_CHANGED = f"NOT EXISTS (SELECT 1 FROM images k WHERE k.path = l.path AND {_UNCHANGED})"
_TODO = f"NOT {_STILL_SKIPPED} AND {_NEW_OR_CHANGED}"
_LISTED_COLUMNS = "l.path, l.uri, l.size, l.mtime_us, l.etag, l.fs_path"


class Changes:
    """One scan's listing against the index: `listed` (the storage), `images` and `skipped` (what
    Weaviate holds for the location in DeepLensImage and DeepLensSkippedFile), `not_images` (files
    this scan found not to be images). SQLite orders text by its UTF-8 bytes, which is Python's
    order of the strings. Use it from one thread, as a context manager: closing frees the file."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a private temporary file, deleted on close
        self._db.executescript(f"""
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -{CACHE_KIB};
            CREATE TABLE listed (path TEXT PRIMARY KEY, uri TEXT, size INTEGER, mtime_us INTEGER,
                                 etag TEXT, fs_path TEXT) WITHOUT ROWID;
            CREATE TABLE images (path TEXT PRIMARY KEY, size INTEGER, mtime_us INTEGER, etag TEXT) WITHOUT ROWID;
            CREATE TABLE skipped (path TEXT PRIMARY KEY, size INTEGER, mtime_us INTEGER, etag TEXT) WITHOUT ROWID;
            CREATE TABLE not_images (path TEXT PRIMARY KEY) WITHOUT ROWID;
        """)

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def add_listed(self, objects: Iterable[ListedObject]) -> int:
        """Stores the listing as it streams in; returns how many objects it held. A path listed
        twice keeps its last entry."""
        rows = ((o.path, o.uri, o.size_bytes, _microseconds(o.modified_at), o.etag or None, o.fs_path)
                for o in objects)
        self._insert("INSERT OR REPLACE INTO listed VALUES (?, ?, ?, ?, ?, ?)", rows)
        return self._count("SELECT count(*) FROM listed")

    def add_indexed(self, table: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Stores records (path, size_bytes, modified_at, etag) of `images` or `skipped`."""
        if table not in ("images", "skipped"):
            raise ValueError(f"no table {table!r}: use 'images' or 'skipped'")
        rows = ((r["path"], r.get("size_bytes"), _microseconds(r.get("modified_at")), r.get("etag") or None)
                for r in records)
        self._insert(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?)", rows)

    def add_not_images(self, paths: Iterable[str]) -> None:
        self._insert("INSERT OR IGNORE INTO not_images VALUES (?)", ((p,) for p in paths))

    def counts(self) -> tuple[int, int]:
        """(to read, still skipped) among the listed objects, in one pass: CASE stops at the first
        match, so each lookup runs at most once per object."""
        found = dict(self._db.execute(f"""SELECT CASE WHEN {_STILL_SKIPPED} THEN 'skipped'
                                                      WHEN {_NEW_OR_CHANGED} THEN 'todo' END AS kind, count(*)
                                           FROM listed l GROUP BY kind"""))
        return found.get("todo", 0), found.get("skipped", 0)

    def count_not_images(self) -> int:
        return self._count("SELECT count(*) FROM not_images")

    def todo(self) -> Iterator[ListedObject]:
        """Listed objects that are new or changed, in path order."""
        return map(_listed, self._db.execute(f"SELECT {_LISTED_COLUMNS} FROM listed l WHERE {_TODO} ORDER BY l.path"))

    def indexed(self, path: str) -> bool:
        """Whether the index holds an image at `path` (so storing it again is a change, not new)."""
        return self._db.execute("SELECT 1 FROM images WHERE path = ?", (path,)).fetchone() is not None

    def gone(self) -> Iterator[str]:
        """Indexed images that were not listed, or that this scan found not to be images."""
        return self._paths("""SELECT path FROM images k
                              WHERE NOT EXISTS (SELECT 1 FROM listed l WHERE l.path = k.path)
                                 OR EXISTS (SELECT 1 FROM not_images n WHERE n.path = k.path) ORDER BY path""")

    def not_images(self) -> Iterator[ListedObject]:
        return map(_listed, self._db.execute(
            f"SELECT {_LISTED_COLUMNS} FROM not_images n JOIN listed l ON l.path = n.path ORDER BY n.path"))

    def no_longer_skipped(self) -> Iterator[str]:
        """Skipped files that were deleted, changed into images, or changed and not read again."""
        return self._paths(f"""SELECT path FROM skipped k
                               WHERE NOT EXISTS (SELECT 1 FROM listed l WHERE l.path = k.path AND {_UNCHANGED})
                                 AND NOT EXISTS (SELECT 1 FROM not_images n WHERE n.path = k.path) ORDER BY path""")

    def _insert(self, sql: str, rows: Iterable[tuple]) -> None:
        self._db.executemany(sql, rows)  # takes the rows one at a time from the iterator: nothing held
        self._db.commit()

    def _count(self, sql: str) -> int:
        return self._db.execute(sql).fetchone()[0]

    def _paths(self, sql: str) -> Iterator[str]:
        return (path for (path,) in self._db.execute(sql))


def _microseconds(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - _EPOCH) // _MICROSECOND


def _listed(row: tuple) -> ListedObject:
    path, uri, size, mtime_us, etag, fs_path = row
    modified = None if mtime_us is None else _EPOCH + mtime_us * _MICROSECOND
    return ListedObject(path=path, uri=uri, size_bytes=size, modified_at=modified, etag=etag, fs_path=fs_path)
