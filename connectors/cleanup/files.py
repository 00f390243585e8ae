"""One file of a cleanup, on any storage: where it is, whether it is still what the plan says, and
moving it without ever overwriting anything.

Paths in a plan are relative to their location's root, as scans record them. A plan is a file a
person may edit, so every path is checked before it is used: no absolute paths, no `..` or empty
segments, no control characters (newlines in object keys), nothing inside the quarantine, and on
file systems with symlinks nothing that resolves outside the location or is a symlink itself.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fsspec

from deeplens.connectors import storage
from deeplens.connectors.extract import read_exif
from deeplens.connectors.storage import protocols
from deeplens.connectors.storage.errors import fs_error, safe_url
from deeplens.connectors.storage.listing import ListedObject, _listed
from deeplens.modules.images import BadImage, open_image
from deeplens.modules.phash import HASH_SIZE, HIGHFREQ_FACTOR, dihedral_hashes
from deeplens.schema.models import StorageLocation

QUARANTINE_DIR = ".deeplens-quarantine"
QUARANTINE_EXCLUDE = f"{QUARANTINE_DIR}/**"  # on every location, so scans never index the quarantine
# Where fsspec's mv is one rename on the server; elsewhere (object stores) it is a copy and a
# delete that nobody verifies in between, so a move is done as copy + verify + delete here.
RENAMES = frozenset({"file", "sftp", "smb"})
# The pHash variant (modules/phash.py DIHEDRAL) that turns a picture as shown back into its pixels
# as stored, per EXIF Orientation: the inverse of the transpose that showing applies (modules/images.py).
STORED_FROM_SHOWN = {1: "identity", 2: "flip_h", 3: "rot180", 4: "flip_v", 5: "transpose", 6: "rot90",
                     7: "transverse", 8: "rot270"}


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


class BadQuarantine(ValueError):
    """A quarantine (plan --quarantine) that cannot take a location's files; the message names the fix."""


def quarantine_of(place: Place, plan_id: str, url: str | None = None) -> Place:
    """Where `place`'s files go under plan `plan_id`: a Place in which each file keeps its relative
    path. By default `.deeplens-quarantine/<plan id>/` at the location's root; with `url` (plan
    --quarantine) `<url>/<plan id>/<location name>/`. `url` is opened with the location's options
    and credentials and must be the same storage, i.e. the same fsspec file system (protocol, server,
    account): a move is then a rename or a copy on that server, and needs no other secret."""
    name = place.location.name
    if url is None:
        return Place(place.location, place.fs, f"{place.root.rstrip('/')}/{QUARANTINE_DIR}/{plan_id}")
    fix = ("choose a folder on the storage of each location acted on, or plan without --quarantine (the "
           "default quarantine, .deeplens-quarantine/ in each location) or one storage at a time (--location)")
    if _protocol_of(url) != place.protocol:
        raise BadQuarantine(f"quarantine {safe_url(url)} is not on the storage of location '{name}' "
                            f"({safe_url(place.location.url)}, {place.protocol}); {fix}")
    try:
        fs, root = storage.open_location(url, place.location.options, place.location.credentials_env)
    except storage.StorageError as exc:
        raise BadQuarantine(f"quarantine {safe_url(url)} for location '{name}': {exc}") from None
    if fs._fs_token != place.fs._fs_token:  # fsspec's identity of a file system: class and options
        raise BadQuarantine(f"quarantine {safe_url(url)} is on another server or account than location '{name}' "
                            f"({safe_url(place.location.url)}); {fix}")
    root = root.rstrip("/")
    if place.protocol == "file" and _device(root) != _device(place.root):
        raise BadQuarantine(f"quarantine {safe_url(url)} is on another file system than location '{name}', so a "
                            f"move there would be a copy; {fix}")
    return Place(place.location, place.fs, f"{root}/{plan_id}/{name}")


def quarantine_excludes(url: str, registered: dict[str, StorageLocation]) -> dict[str, str]:
    """For a quarantine at `url`: the exclude pattern each registered location it lies in needs, so
    that scans skip it as they skip `.deeplens-quarantine/`. BadQuarantine when it would lie in a
    reference location (whose files are never touched) or be a location's root."""
    excludes = {}
    for name, location in registered.items():
        if _protocol_of(location.url) != _protocol_of(url):
            continue
        try:
            place = Place.open(location)
            fs, root = storage.open_location(url, location.options, location.credentials_env)
        except storage.StorageError:
            continue  # not reachable from here: nor can it be scanned from here
        if fs._fs_token != place.fs._fs_token:
            continue
        root, base = root.rstrip("/"), place.root.rstrip("/")
        if root == base:
            raise BadQuarantine(f"quarantine {safe_url(url)} is the root of location '{name}'; choose a folder "
                                "of its own, inside or outside a location")
        if root.startswith(f"{base}/"):
            if location.reference:
                raise BadQuarantine(f"quarantine {safe_url(url)} lies in reference location '{name}', whose files "
                                    "are never touched; choose a folder outside it")
            excludes[name] = f"{root[len(base) + 1:]}/**"
    return excludes


def _protocol_of(url: str) -> str | None:
    found = protocols.by_scheme((fsspec.core.split_protocol(url)[0] or "file").lower())
    return found.name if found else None


def _device(path: str) -> int:
    """The device of a local path, or of its nearest existing parent (the quarantine is made later)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.stat(path).st_dev


@dataclass(frozen=True)
class Facts:
    """What a plan records of a file, and what apply compares again; plus what the keep rules
    compare (format, EXIF) and the pHashes that tell a copy turned against its EXIF orientation."""

    size_bytes: int
    modified_at: datetime | None
    etag: str | None
    sha256: str
    format: str | None = None
    exif_fields: int | None = None
    orientation: int | None = None  # EXIF Orientation, None when untagged
    shown_phash: str | None = None  # the picture as shown (Orientation applied)
    stored_phash: str | None = None  # the pixels as stored

    @classmethod
    def read(cls, place: Place, path: str, listed: ListedObject | None = None) -> Facts:
        """Stat and read the file now (listed: a stat already taken, from the listing)."""
        listed = listed or place.stat(path)
        if listed is None:
            raise Refused("the file is gone (deleted or moved since it was listed)")
        data = place.read(path)
        exif = read_exif(data)
        shown_phash, stored_phash = _orientation_hashes(data, exif.orientation)
        return cls(
            size_bytes=len(data),
            modified_at=listed.modified_at,
            etag=listed.etag,
            sha256=hashlib.sha256(data).hexdigest(),
            format=storage.sniff_image_type(data[:storage.SNIFF_BYTES]),
            exif_fields=exif.fields,
            orientation=exif.orientation,
            shown_phash=shown_phash,
            stored_phash=stored_phash,
        )


def _orientation_hashes(data: bytes, orientation: int | None) -> tuple[str | None, str | None]:
    """The pHash of the picture as shown and of its pixels as stored (one small decode: JPEG
    decodes at 1/8 scale); (None, None) for what does not decode."""
    try:
        shown = open_image(data, draft_to=HASH_SIZE * HIGHFREQ_FACTOR).image
    except BadImage:
        return None, None
    hashes = dihedral_hashes(shown)
    return hashes["identity"], hashes[STORED_FROM_SHOWN[orientation or 1]]


def verify(place: Place, path: str, recorded: Any, reread: bool = True) -> bytes | None:
    """The file's bytes, if it is still what the plan recorded (`recorded`: size_bytes,
    modified_at, etag, sha256): exists, same size, same etag (or, without one, modification time),
    same sha256 read again (reread=False: not read; returns None). Refused with the reason otherwise."""
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
    if not reread:
        return None
    data = place.read(path)
    if hashlib.sha256(data).hexdigest() != recorded.sha256:
        raise Refused("changed since planning: its sha256 differs")
    return data


def sha256_of(place: Place, path: str) -> str | None:
    """The sha256 of the file now; None when it does not exist."""
    if place.stat(path) is None:
        return None
    return hashlib.sha256(place.read(path)).hexdigest()


def move(place: Place, source: str, to: Place, target: str, data: bytes, sha256: str) -> None:
    """Move `source` in `place` to `target` in `to` (relative paths; `to` is on the same file system,
    see quarantine_of), never overwriting: by one rename where the protocol has one, else copy,
    verify the copy's sha256, then delete the source. `data` are the source's verified bytes. A
    target that exists is refused before anything happens."""
    if to.stat(target) is not None:
        raise Refused(f"{to.uri(target)} exists already; the quarantine never overwrites a file")
    src, dst = place.full(source), to.full(target)
    try:
        to.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
        if place.protocol in RENAMES:
            place.fs.mv(src, dst)
        else:
            to.fs.pipe_file(dst, data)
    except Exception as exc:  # noqa: BLE001
        raise fs_error(exc, place.fs, dst, f"moving {src} to") from exc
    if place.protocol not in RENAMES:
        copied = sha256_of(to, target)
        if copied != sha256:
            raise Refused(f"the copy at {to.uri(target)} does not read back the same (sha256 {copied}); "
                          "the source stays")
        remove(place, source)


def remove(place: Place, path: str) -> None:
    full = place.full(path)
    try:
        place.fs.rm_file(full)
    except Exception as exc:  # noqa: BLE001
        raise fs_error(exc, place.fs, full, "deleting") from exc
