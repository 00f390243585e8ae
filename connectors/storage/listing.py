"""Listing a location: every object under its root, filtered, with metadata alike for every protocol."""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import fsspec
import fsspec.asyn

from deeplens.connectors.storage import protocols
from deeplens.connectors.storage.errors import classify, fs_error
from deeplens.connectors.storage.globs import compile_glob, glob_match
from deeplens.connectors.storage.sniffing import IMAGE_EXTENSIONS, extension

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListedObject:
    """One object of a listing, with metadata normalised across protocols.

    ``path``: relative to the location root, posix separators, not percent-encoded.
    ``uri``: the object's URL (``file:///abs/p``, ``s3://bucket/key``, ``sftp://host:port/p``,
    ``smb://host/share/p``, ``gs://``, ``az://container/p``), percent-encoded (RFC 3986, RFC 8089
    for ``file``), so a name with spaces, newlines or control characters stays one printable
    token; ``fsspec_url(uri)`` is what ``fsspec.open`` takes. http(s) URIs are the list's URLs.
    The port appears unless it is the protocol's default. ``fs_path``: the path to pass to
    ``read_bytes`` or ``read_head`` with the file system the listing came from. ``etag``: the
    store's entity tag without surrounding quotes where the store has one (s3, gs, az, http
    servers that send it).
    """

    path: str
    uri: str
    size_bytes: int | None
    modified_at: datetime | None
    etag: str | None
    fs_path: str


def list_objects(
    fs: fsspec.AbstractFileSystem,
    root: str,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    *,
    all_files: bool = False,
) -> Iterator[ListedObject]:
    """Every file under ``root`` (recursively) whose relative path passes the filters.

    ``include``/``exclude``: glob patterns on the relative path (globs.py: ``*``, ``?``, ``**``,
    ``[abc]``; a pattern without ``/`` matches the file name at any depth: ``*.png``, ``.*``).
    With ``include`` given a path must match one of them; it must match no ``exclude``.
    Only image extensions (``IMAGE_EXTENSIONS``, any case) are listed unless ``all_files``: then
    the caller sniffs the content (``sniff_image_type``) to find images by their bytes.
    Objects come in sorted order of their path, as they are listed (see ``_files``): memory does not
    grow with the location, and a listing that fails half-way raises after what it yielded.
    """
    includes = [compile_glob(p) for p in include]
    excludes = [compile_glob(p) for p in exclude]

    def wanted(rel: str) -> bool:
        if not all_files and extension(rel) not in IMAGE_EXTENSIONS:
            return False
        if includes and not any(glob_match(g, rel) for g in includes):
            return False
        return not any(glob_match(g, rel) for g in excludes)

    protocol = protocols.of_fs(fs)
    if protocol is not None and protocol.url_list:
        yield from _list_url_list(fs, root, wanted)
        return
    prefix = root.rstrip("/") + "/" if root not in ("", "/") else "/"
    for full, info in _files(fs, root, protocol):
        rel = _relative(full, root, prefix)
        if not rel or rel.endswith("/") or not wanted(rel):
            continue
        yield _listed(rel, protocols.uri(fs, full), info, full)


def _files(fs: fsspec.AbstractFileSystem, root: str, protocol: protocols.Protocol | None) -> Iterator[tuple[str, dict]]:
    """(full name, info) of every file under ``root``, in path order, streamed: what is held at a
    time is one page of an S3 listing, or the folder being listed and the subfolders still to visit
    of a walk; gs and az list through fsspec's find(), whole (their libraries page only internally).
    A listing that fails half-way raises: the caller must not take the files it did not reach for
    deleted ones."""
    try:
        if protocol is not None and protocol.list_files is not None:
            files = protocol.list_files(fs, root)
        elif getattr(fs, "async_impl", False):
            found = fs.find(root, detail=True, withdirs=False)
            files = ((full, found[full]) for full in sorted(found))
        else:
            files = _walk(fs, root)
        listed_any = False
        for full, info in files:
            if info.get("type", "file") == "file":
                listed_any = True
                yield full, info
        # A flat listing answers a vanished root (an unmounted share, a deleted prefix) with nothing
        # at all; a scanner must not take that for "every image was deleted".
        if not listed_any and not fs.isdir(root):
            raise FileNotFoundError(root)
    except Exception as exc:  # noqa: BLE001 - every library raises its own types
        raise fs_error(exc, fs, root, "listing") from exc


def _walk(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[tuple[str, dict]]:
    """Every file under ``root`` with its info, listed folder by folder (file, memory, sftp, smb),
    in path order: a folder's entries are sorted by name, a subfolder's as name + "/", and visited
    depth first, which is the order of the full paths as strings.

    Not fsspec's generic find(): its walk leaves out, without a word, every subfolder it cannot
    list (unreadable, gone mid-listing, a dropped connection), even with on_error="raise", which
    it does not pass down. A listing with a hole would make a scan delete the records of every
    file in it, so any folder that cannot be listed fails the whole listing here.
    """
    to_visit: list[tuple[str, str, dict | None]] = [(root, root, None)]  # (sort key, name, info: None for a folder)
    while to_visit:
        _, name, info = to_visit.pop()
        if info is not None:
            yield name, info
            continue
        entries = []
        for info in fs.ls(name, detail=True):
            full = info["name"].rstrip("/")
            if info["type"] != "directory":
                entries.append((full, full, info))
            elif full != name.rstrip("/"):
                entries.append((full + "/", full, None))
        entries.sort(key=lambda entry: entry[0], reverse=True)  # popped from the end: smallest first
        to_visit += entries


def _listed(rel: str, uri: str, info: Mapping[str, Any], fs_path: str) -> ListedObject:
    return ListedObject(
        path=rel, uri=uri, size_bytes=_size(info), modified_at=_modified(info), etag=_etag(info), fs_path=fs_path
    )


def _relative(full: str, root: str, prefix: str) -> str:
    if prefix == "/":
        return full.lstrip("/")
    if full.startswith(prefix):
        return full[len(prefix):]
    # Some stores report names without the leading slash their root has, or vice versa.
    stripped_root, stripped_full = root.strip("/"), full.strip("/")
    if stripped_full.startswith(stripped_root + "/"):
        return stripped_full[len(stripped_root) + 1:]
    return stripped_full


# --------------------------------------------------------------------------------------------
# URL lists (http, https): protocols.py describes the format.

_HTTP_HEAD_BATCH = 32  # HEAD requests in flight at once while listing a URL list


def _list_url_list(
    fs: fsspec.AbstractFileSystem, list_url: str, wanted: Callable[[str], bool]
) -> Iterator[ListedObject]:
    try:
        text = fs.cat_file(list_url).decode("utf-8-sig")
    except Exception as exc:  # noqa: BLE001
        raise fs_error(exc, fs, list_url, "reading the URL list") from exc
    base = list_url.rsplit("/", 1)[0] + "/"
    base_parts = urlsplit(base)
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = _normalise_url(urljoin(list_url, line))
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) == (base_parts.scheme, base_parts.netloc) and unquote(
            parts.path
        ).startswith(unquote(base_parts.path)):
            rel = unquote(parts.path)[len(unquote(base_parts.path)):]
        else:
            rel = parts.netloc + unquote(parts.path)
        if rel and wanted(rel):
            entries.setdefault(rel, url)
    ordered = sorted(entries)
    for start in range(0, len(ordered), _HTTP_HEAD_BATCH):
        batch = ordered[start: start + _HTTP_HEAD_BATCH]
        for rel, info in zip(batch, _http_infos(fs, [entries[rel] for rel in batch])):
            url = entries[rel]
            if isinstance(info, BaseException) and classify(info)[0] == "not_found":
                # A dead link is an object that is gone, as a deleted file is on other protocols.
                log.warning("URL list %s names %s, which does not exist; skipped", list_url, url)
                continue
            if isinstance(info, BaseException):
                raise fs_error(info, fs, url, "reading the size of a listed URL") from info
            yield _listed(rel, url, info, url)


def _http_infos(fs: fsspec.AbstractFileSystem, urls: list[str]) -> list[dict | BaseException]:
    """HEAD (size, Last-Modified, ETag) of each URL, concurrently on fsspec's own event loop."""
    if not getattr(fs, "async_impl", False):
        out: list[dict | BaseException] = []
        for url in urls:
            try:
                out.append(fs.info(url))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    async def gather() -> list:
        return await asyncio.gather(*(fs._info(url) for url in urls), return_exceptions=True)

    return fsspec.asyn.sync(fs.loop, gather)


def _normalise_url(url: str) -> str:
    """Percent-encode what a list may hold raw (spaces, non-ASCII), leave existing escapes alone."""
    parts = urlsplit(url)
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~-._")
    query = quote(parts.query, safe="=&%:@!$'()*+,;/?~-._")
    return parts._replace(path=path, query=query, fragment="").geturl()


# --------------------------------------------------------------------------------------------
# Metadata. Each backend names size, modification time and entity tag its own way. The access
# time that sftp and smb report as "time" is deliberately not a modification time.

_SIZE_KEYS = ("size", "Size", "ContentLength", "content_length", "Content-Length")
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "Last-Modified", "modified", "modify", "created")
_ETAG_KEYS = ("ETag", "etag", "Etag")


def _size(info: Mapping[str, Any]) -> int | None:
    for key in _SIZE_KEYS:
        value = info.get(key)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
    return None


def _modified(info: Mapping[str, Any]) -> datetime | None:
    for key in _MTIME_KEYS:
        value = _as_datetime(info.get(key))
        if value is not None:
            return value
    return None


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            pass
        try:
            return _as_datetime(email.utils.parsedate_to_datetime(value))  # HTTP dates
        except (TypeError, ValueError):
            return None
    return None


def _etag(info: Mapping[str, Any]) -> str | None:
    for key in _ETAG_KEYS:
        value = info.get(key)
        if value:
            value = str(value)
            return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return None
