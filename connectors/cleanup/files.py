"""One file of a cleanup, on any storage: where it is, whether it is still what the plan says, and
moving it without ever overwriting anything.

Paths in a plan are relative to their location's root, as scans record them. A plan is a file a
person may edit, so every path is checked before it is used: no absolute paths, no `..` or empty
segments, no control characters (newlines in object keys), nothing inside the quarantine, and on
file systems with symlinks nothing that resolves outside the location or is a symlink itself.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fsspec
from PIL import Image

from deeplens.connectors import storage
from deeplens.connectors.storage import protocols
from deeplens.connectors.storage.errors import fs_error
from deeplens.connectors.storage.listing import ListedObject, _listed
from deeplens.schema.models import StorageLocation

QUARANTINE_DIR = ".deeplens-quarantine"
QUARANTINE_EXCLUDE = f"{QUARANTINE_DIR}/**"  # on every location, so scans never index the quarantine
# Where fsspec's mv is one rename on the server; elsewhere (object stores) it is a copy and a
# delete that nobody verifies in between, so a move is done as copy + verify + delete here.
RENAMES = frozenset({"file", "sftp", "smb"})
EXIF_IFD = 0x8769


def with_quarantine_excluded(location: StorageLocation) -> StorageLocation:
    """The location with the exclude pattern that keeps scans out of its quarantine."""
    if QUARANTINE_EXCLUDE not in location.exclude:
        location.exclude = [*location.exclude, QUARANTINE_EXCLUDE]
    return location


class Refused(Exception):
    """A file the cleanup will not touch; the message is the reason, shown and journaled."""


def check_path(path: str) -> str:
    """The path, if it is a plain relative path inside a location; Refused otherwise."""
    if not isinstance(path, str) or not path:
        raise Refused("empty path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise Refused(f"path {path!r} holds control characters (a newline?)")
    if path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        raise Refused(f"path {path!r} is absolute or has backslashes; plan paths are relative with '/'")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise Refused(f"path {path!r} has an empty, '.' or '..' segment")
    return path


def plan_path(path: str) -> str:
    """A path a plan may act on or keep: safe (check_path) and not inside the quarantine."""
    if check_path(path).split("/", 1)[0] == QUARANTINE_DIR:
        raise Refused(f"path {path!r} is inside the quarantine")
    return path


@dataclass
class Place:
    """An opened location: its file system and root."""

    location: StorageLocation
    fs: fsspec.AbstractFileSystem
    root: str

    @classmethod
    def open(cls, location: StorageLocation) -> Place:
        fs, root = storage.open_location(location.url, location.options, location.credentials_env)
        return cls(location, fs, root)

    @property
    def protocol(self) -> str:
        found = protocols.of_fs(self.fs)
        return found.name if found else str(self.fs.protocol)

    def full(self, path: str) -> str:
        return f"{self.root.rstrip('/')}/{check_path(path)}"

    def quarantine_path(self, plan_id: str, path: str) -> str:
        return f"{QUARANTINE_DIR}/{plan_id}/{check_path(path)}"

    def uri(self, path: str) -> str:
        return protocols.uri(self.fs, self.full(path))

    def contained(self, path: str) -> str:
        """The full path, after checking that it neither is nor passes through a symlink: a link
        could lead out of the location, or make two "copies" one file."""
        full = self.full(path)
        if self.protocol == "file":
            if os.path.realpath(full) != os.path.normpath(full):
                raise Refused(f"{path!r} is a symlink or lies under one ({os.path.realpath(full)})")
        elif self.protocol == "sftp":
            resolved = self.fs.ftp.normalize(full)  # the server's realpath
            if resolved != posixpath.normpath(full):
                raise Refused(f"{path!r} is a symlink or lies under one ({resolved})")
        return full

    def stat(self, path: str) -> ListedObject | None:
        """Size, modification time and etag now, normalised as a listing does; None when gone."""
        full = self.full(path)
        try:
            info = self.fs.info(full)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - every library raises its own types
            error = fs_error(exc, self.fs, full, "checking")
            if isinstance(error, storage.StorageNotFoundError):
                return None
            raise error from exc
        if info.get("type", "file") != "file":
            raise Refused(f"{path!r} is not a file any more ({info.get('type')})")
        return _listed(path, self.uri(path), info, full)

    def read(self, path: str) -> bytes:
        return storage.read_bytes(self.fs, self.full(path))


@dataclass(frozen=True)
class Facts:
    """What a plan records of a file, and what apply compares again."""

    size_bytes: int
    modified_at: datetime | None
    etag: str | None
    sha256: str
    format: str | None = None
    exif_fields: int | None = None

    @classmethod
    def read(cls, place: Place, path: str, listed: ListedObject | None = None) -> Facts:
        """Stat and read the file now (listed: a stat already taken, from the listing)."""
        listed = listed or place.stat(path)
        if listed is None:
            raise Refused("the file is gone (deleted or moved since it was listed)")
        data = place.read(path)
        return cls(
            size_bytes=len(data),
            modified_at=listed.modified_at,
            etag=listed.etag,
            sha256=hashlib.sha256(data).hexdigest(),
            format=storage.sniff_image_type(data[:storage.SNIFF_BYTES]),
            exif_fields=_exif_fields(data),
        )


def _exif_fields(data: bytes) -> int | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = Image.open(io.BytesIO(data)).getexif()
            return len(exif) + len(exif.get_ifd(EXIF_IFD))
    except Exception:  # noqa: BLE001 - EXIF only ranks copies; a broken block counts as none
        return None


def verify(place: Place, path: str, recorded: Any) -> bytes:
    """The file's bytes, if it is still what the plan recorded (`recorded`: size_bytes,
    modified_at, etag, sha256): exists, same size, same etag (or, without one, modification time),
    same sha256 read again. Refused with the reason otherwise."""
    place.contained(path)
    now = place.stat(path)
    if now is None:
        raise Refused("gone since planning (deleted or moved)")
    if now.size_bytes is not None and now.size_bytes != recorded.size_bytes:
        raise Refused(f"changed since planning: {now.size_bytes} bytes, the plan says {recorded.size_bytes}")
    if recorded.etag and now.etag and now.etag != recorded.etag:
        raise Refused(f"changed since planning: etag {now.etag}, the plan says {recorded.etag}")
    if not recorded.etag and recorded.modified_at and now.modified_at \
            and abs((now.modified_at - recorded.modified_at).total_seconds()) >= 0.001:
        raise Refused(f"changed since planning: modified {now.modified_at.isoformat()}, "
                      f"the plan says {recorded.modified_at.isoformat()}")
    data = place.read(path)
    if hashlib.sha256(data).hexdigest() != recorded.sha256:
        raise Refused("changed since planning: its sha256 differs")
    return data


def sha256_of(place: Place, path: str) -> str | None:
    """The sha256 of the file now; None when it does not exist."""
    if place.stat(path) is None:
        return None
    return hashlib.sha256(place.read(path)).hexdigest()


def move(place: Place, source: str, target: str, data: bytes, sha256: str) -> None:
    """Move `source` to `target` (both relative), never overwriting: by one rename where the protocol
    has one, else copy, verify the copy's sha256, then delete the source. `data` are the source's
    verified bytes. A target that exists is refused before anything happens."""
    if place.stat(target) is not None:
        raise Refused(f"{target!r} exists already; the quarantine never overwrites a file")
    src, dst = place.full(source), place.full(target)
    parent = posixpath.dirname(dst)
    try:
        place.fs.makedirs(parent, exist_ok=True)
        if place.protocol in RENAMES:
            place.fs.mv(src, dst)
        else:
            place.fs.pipe_file(dst, data)
    except Exception as exc:  # noqa: BLE001
        raise fs_error(exc, place.fs, dst, f"moving {src} to") from exc
    if place.protocol not in RENAMES:
        copied = sha256_of(place, target)
        if copied != sha256:
            raise Refused(f"the copy at {target!r} does not read back the same (sha256 {copied}); the source stays")
        remove(place, source)


def remove(place: Place, path: str) -> None:
    full = place.full(path)
    try:
        place.fs.rm_file(full)
    except Exception as exc:  # noqa: BLE001
        raise fs_error(exc, place.fs, full, "deleting") from exc
