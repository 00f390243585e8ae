"""The rules of change detection (connectors/changes.py), one case each: what a scan reads, counts as
unchanged, deletes and forgets, from a listing and the index's records. End to end through real
scans: tests/test_change_detection.py."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from deeplens.connectors.changes import Changes
from deeplens.connectors.storage import ListedObject

THEN = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)  # Weaviate keeps milliseconds


def listed(path: str, size: int | None = 10, modified: datetime | None = THEN, etag: str | None = None) -> ListedObject:
    return ListedObject(path=path, uri=f"file:///root/{path}", size_bytes=size, modified_at=modified, etag=etag,
                        fs_path=f"/root/{path}")


def record(path: str, size: int | None = 10, modified: datetime | None = THEN, etag: str | None = None) -> dict:
    return {"location": "here", "path": path, "size_bytes": size, "modified_at": modified, "etag": etag}


def test_what_is_read_unchanged_deleted_and_forgotten():
    listing = [
        listed("same.jpg"),
        listed("within a millisecond.jpg", modified=THEN + timedelta(microseconds=900)),
        listed("touched.jpg", modified=THEN + timedelta(milliseconds=2)),
        listed("grown.jpg", size=11),
        listed("same etag, new time.jpg", modified=THEN + timedelta(days=1), etag="abc"),
        listed("new etag.jpg", etag="def"),
        listed("etag on one side.jpg", etag="abc"),
        listed("no time.jpg", modified=None),
        listed("no time either.jpg", modified=None),
        listed("new.jpg"),
        listed("notes.txt"),
        listed("notes changed.txt", size=99),
        listed("was a picture.bin", size=5),
    ]
    images = [record("same.jpg"), record("within a millisecond.jpg"), record("touched.jpg"), record("grown.jpg"),
              record("same etag, new time.jpg", etag="abc"), record("new etag.jpg", etag="abc"),
              record("etag on one side.jpg"), record("no time.jpg"), record("no time either.jpg", modified=None),
              record("was a picture.bin"), record("deleted.jpg")]
    skipped = [record("notes.txt"), record("notes changed.txt"), record("deleted.txt")]
    with Changes() as changes:
        assert changes.add_listed(listing + [listing[0]]) == len(listing)  # a path listed twice counts once
        changes.add_indexed("images", images)
        changes.add_indexed("skipped", skipped)

        todo = [obj.path for obj in changes.todo()]
        # Unchanged: the same size and time (to the millisecond), or the same etag where both have one.
        assert todo == sorted(["touched.jpg", "grown.jpg", "new etag.jpg", "no time.jpg", "new.jpg",
                               "notes changed.txt", "was a picture.bin"])
        assert changes.counts() == (len(todo), 1)  # 1 still skipped: notes.txt
        assert [obj for obj in changes.todo() if obj.path == "touched.jpg"] == [listing[2]]  # read back whole
        assert changes.indexed("grown.jpg") and not changes.indexed("new.jpg")

        # The scan reads them: two turn out not to be images.
        changes.add_not_images(["notes changed.txt", "was a picture.bin"])
        assert changes.count_not_images() == 2
        assert list(changes.gone()) == ["deleted.jpg", "was a picture.bin"]
        assert [obj.path for obj in changes.not_images()] == ["notes changed.txt", "was a picture.bin"]
        assert list(changes.no_longer_skipped()) == ["deleted.txt"]


def test_paths_come_back_in_python_string_order():
    names = ["b.jpg", "a/z.jpg", "a.jpg", "a b.jpg", "Z.jpg", "é.jpg", "e\u0301.jpg", "日本.jpg", "a-b/c.jpg"]
    with Changes() as changes:
        changes.add_listed(listed(name) for name in names)
        assert [obj.path for obj in changes.todo()] == sorted(names)


def test_the_file_goes_with_the_change_set():
    with Changes() as changes:
        changes.add_listed([listed("a.jpg")])
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        changes.counts()
    with Changes() as changes, pytest.raises(ValueError, match="no table 'known'"):
        changes.add_indexed("known", [])
