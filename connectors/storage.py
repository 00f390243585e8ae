"""Storage locations through fsspec: open, check, list and read, alike for every protocol.

A storage location is an fsspec URL plus fsspec options (no second abstraction over fsspec).
Secrets never live in the options: ``credentials_env`` maps an fsspec option name to the NAME
of an environment variable that holds the secret, e.g. ``{"secret": "S3_SECRET"}``; the value
is read when the location is opened and is scrubbed from every error message this module raises.

Protocols and their URLs (options are passed to the fsspec file system as keyword arguments):

=========  ==========================================  ============================================
protocol   URL                                         typical options / credentials_env
=========  ==========================================  ============================================
file       ``file:///abs/dir`` or a bare path          -
memory     ``memory:///dir``                           -
s3         ``s3://bucket/prefix``                      ``endpoint_url`` (S3-compatible stores),
                                                       ``client_kwargs``; ``key``, ``secret``
sftp       ``sftp://user@host:port/abs/dir``           ``username``, ``key_filename``;
                                                       ``password`` or ``passphrase`` (paramiko)
smb        ``smb://host:port/share/dir``               ``username``; ``password``
http(s)    ``https://host/path/list.txt``: a URL list  ``client_kwargs``; secrets through dotted
                                                       names, e.g. ``client_kwargs.headers.Authorization``
gs         ``gs://bucket/prefix``                      ``endpoint_url``, ``project``; ``token``
                                                       (extra: ``pip install 'deeplens[gcs]'``)
az/abfs    ``az://container/prefix``                   ``account_name``; ``account_key`` or
                                                       ``connection_string`` (``deeplens[azure]``)
=========  ==========================================  ============================================

HTTP semantics: an http(s) location is a plain-text *URL list*: one image URL per line, absolute
or relative to the list's own URL; blank lines and lines starting with ``#`` are ignored. A
listed object's ``path`` is its URL path relative to the folder of the list (percent-decoded),
or ``host[:port]/path`` for a URL outside that folder. A listed URL that answers 404 is skipped
(like a deleted file), other failures fail the listing. Lists work with any static web server,
CDN or object store website, unlike directory index pages, whose HTML differs per server.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import fsspec
import fsspec.asyn
from fsspec.utils import infer_storage_options

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif"}
)
# How many leading bytes sniff_image_type needs to tell every supported format apart.
SNIFF_BYTES = 64

# Default ports, for connection checks and for leaving the port out of URIs.
_DEFAULT_PORTS = {"sftp": 22, "smb": 445, "http": 80, "https": 443}
_PROTOCOL_ALIASES = {
    "file": "file",
    "local": "file",
    "memory": "memory",
    "s3": "s3",
    "s3a": "s3",
    "sftp": "sftp",
    "ssh": "sftp",
    "smb": "smb",
    "http": "http",
    "https": "http",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
}
_EXTRAS = {"gs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}


class StorageError(Exception):
    """A storage location cannot be used; the message says why and what to do next."""


class StorageConfigError(StorageError):
    """The location itself is wrong: unknown protocol, missing env var, missing extra, bad URL."""


class StorageUnreachableError(StorageError):
    """The server does not answer: connection refused, unknown host name, timeout."""


class StorageAuthError(StorageError):
    """The server rejected the credentials."""


class StorageNotFoundError(StorageError):
    """The bucket, share, container, folder or file does not exist."""


class StoragePermissionError(StorageError):
    """The credentials are accepted but may not read this path."""


@dataclass(frozen=True)
class ListedObject:
    """One object of a listing, with metadata normalised across protocols.

    ``path``: relative to the location root, posix separators, not percent-encoded.
    ``uri``: the object's fsspec URL (``file:///abs/p``, ``s3://bucket/key``,
    ``sftp://host:port/p``, ``smb://host/share/p``, ``gs://``, ``az://container/p``), not
    percent-encoded so that ``fsspec.open(uri)`` finds it, except http(s), which are real URLs.
    The port appears unless it is the protocol's default. ``fs_path``: the path to pass to
    ``read_bytes`` with the file system the listing came from. ``etag``: the store's entity tag
    without surrounding quotes where the store has one (s3, gs, az, http servers that send it).
    """

    path: str
    uri: str
    size_bytes: int | None
    modified_at: datetime | None
    etag: str | None
    fs_path: str


# --------------------------------------------------------------------------------------------
# Opening a location


def open_location(
    url: str, options: Mapping[str, Any] | None = None, credentials_env: Mapping[str, str] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system of a location and the root path inside it.

    Options in the URL (host, port, user) are merged with ``options``; ``options`` win.
    """
    return _open(_resolve(url, options or {}, credentials_env or {}))


def check_reachable(
    url: str,
    options: Mapping[str, Any] | None = None,
    credentials_env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open the location and read its root once; raise StorageError with the cause and the fix.

    Distinguishes: unknown protocol or missing extra, missing credential env var, unreachable
    host/port (refused, DNS, timeout), rejected credentials, missing bucket/share/container/path.
    Returns what ``open_location`` returns.
    """
    target = _resolve(url, options or {}, credentials_env or {})
    if target.endpoint is not None:
        _probe_tcp(target, timeout)
    if target.protocol == "smb":
        _check_smb_login(target, timeout)
    fs, root = _open(target)
    try:
        if target.protocol == "http":
            fs.info(root)  # the URL list itself
        elif target.protocol == "s3":
            # One key of a listing, not a HEAD (S3 answers HEAD with a bare 403 for a wrong secret
            # and for a denied read alike; a listing names the cause), and not a whole ls, which
            # pages through every key of a big flat prefix.
            bucket, _, prefix = root.partition("/")
            page = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
            if prefix and not page.get("KeyCount"):
                raise FileNotFoundError(root)
        else:
            fs.ls(root, detail=False)
            if not fs.isdir(root):
                raise StorageConfigError(
                    f"{target.display}: {root!r} is a file, not a folder. A location is a folder "
                    "(or bucket/share/container); point the URL at the folder that holds the images."
                )
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - every library raises its own types
        raise _storage_error(exc, target=target, path=root, action="reading the location root") from exc
    return fs, root


@dataclass(frozen=True)
class _Target:
    """What we know about a location while opening it; never printed with its secrets."""

    url: str
    protocol: str  # canonical: a key of _PROTOCOL_ALIASES' values
    fs_protocol: str  # as written in the URL (https stays https)
    storage_options: dict[str, Any]
    secrets: tuple[str, ...]
    env_names: tuple[str, ...]
    endpoint: tuple[str, int] | None  # what the TCP probe connects to
    display: str  # the URL without user info, for messages

    def __repr__(self) -> str:  # the options hold secrets
        return f"_Target({self.display!r})"


def _resolve(url: str, options: Mapping[str, Any], credentials_env: Mapping[str, str]) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise StorageConfigError("A storage URL is required, e.g. s3://bucket/prefix or /data/images.")
    url = url.strip()
    written, _ = fsspec.core.split_protocol(url)
    written = (written or "file").lower()
    protocol = _PROTOCOL_ALIASES.get(written)
    if protocol is None:
        raise StorageConfigError(
            f"Unknown storage protocol {written!r} in {_safe_url(url)}. Supported: "
            f"{', '.join(sorted(set(_PROTOCOL_ALIASES)))}."
        )
    if protocol in _EXTRAS:
        module, extra = _EXTRAS[protocol]
        try:
            if protocol == "gs":
                # gcsfs otherwise probes a gRPC API per bucket that emulators and many proxies lack,
                # and waits 60 s for it; an explicit user setting still wins.
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            __import__(module)
        except ImportError as exc:
            raise StorageConfigError(
                f"The {written}:// protocol needs the optional package {module!r}: "
                f"pip install 'deeplens[{extra}]'"
            ) from exc

    storage_options = dict(options)
    secrets: list[str] = []
    for option, env_name in credentials_env.items():
        value = os.environ.get(env_name)
        if value is None or value == "":
            raise StorageConfigError(
                f"The credential {option!r} of {_safe_url(url)} comes from the environment variable "
                f"{env_name}, which is not set. Set {env_name} in the environment of the process "
                "that reads this location (worker or CLI)."
            )
        _set_dotted(storage_options, option, value)
        secrets.append(value)
    secrets.extend(_inline_secrets(storage_options))
    if protocol in ("sftp", "smb"):
        from_url = infer_storage_options(url)
        for key in ("host", "port", "username", "password"):
            if from_url.get(key) not in (None, "") and key not in storage_options:
                storage_options[key] = from_url[key]
        if from_url.get("password"):
            secrets.append(str(from_url["password"]))
        if not storage_options.get("host"):
            raise StorageConfigError(f"{_safe_url(url)} names no host: use {protocol}://host[:port]/path.")
    return _Target(
        url=url,
        protocol=protocol,
        fs_protocol=written,
        storage_options=storage_options,
        secrets=tuple(s for s in secrets if s),
        env_names=tuple(credentials_env.values()),
        endpoint=_endpoint(protocol, url, storage_options),
        display=_safe_url(url),
    )


def _open(target: _Target) -> tuple[fsspec.AbstractFileSystem, str]:
    opts = dict(target.storage_options)
    try:
        if target.protocol == "file":
            from fsspec.implementations.local import LocalFileSystem

            fs = LocalFileSystem()
            _, path = fsspec.core.split_protocol(target.url)
            root = fs._strip_protocol(os.path.expanduser(path))
        elif target.protocol == "sftp":
            # Always paramiko's implementation: installing sshfs re-registers "sftp" with other options.
            from fsspec.implementations.sftp import SFTPFileSystem

            host = opts.pop("host")
            opts["port"] = int(opts.get("port") or 22)
            opts.setdefault("timeout", 30)  # paramiko's connect timeout; its default waits forever
            if opts.get("password") or opts.get("key_filename") or opts.get("pkey"):
                # Explicit credentials: do not silently try the worker's own keys or agent instead.
                opts.setdefault("look_for_keys", False)
                opts.setdefault("allow_agent", False)
            fs = SFTPFileSystem(host, skip_instance_cache=True, **opts)
            root = SFTPFileSystem._strip_protocol(target.url) or "/"
        elif target.protocol == "smb":
            if opts.get("port") is not None:
                opts["port"] = int(opts["port"])
            fs = fsspec.filesystem("smb", skip_instance_cache=True, **opts)
            root = type(fs)._strip_protocol(target.url)
        elif target.protocol == "http":
            fs = fsspec.filesystem(target.fs_protocol, skip_instance_cache=True, **opts)
            root = target.url
        else:
            fs = fsspec.filesystem(target.fs_protocol, skip_instance_cache=True, **opts)
            root = type(fs)._strip_protocol(target.url)
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(exc, target=target, path=None, action="connecting") from exc
    if target.protocol != "http":
        root = root.rstrip("/") or "/"
    if target.protocol in ("s3", "gs", "az") and not root.strip("/"):
        raise StorageConfigError(
            f"{target.display} names no bucket/container: use {target.fs_protocol}://BUCKET[/prefix]."
        )
    if target.protocol == "smb" and not root.strip("/"):
        raise StorageConfigError(f"{target.display} names no share: use smb://host[:port]/SHARE[/folder].")
    return fs, root


def _endpoint(protocol: str, url: str, opts: Mapping[str, Any]) -> tuple[str, int] | None:
    """The host and port a TCP probe should reach, where one is known without a cloud default."""
    if protocol in ("sftp", "smb"):
        return str(opts["host"]), int(opts.get("port") or _DEFAULT_PORTS[protocol])
    if protocol == "http":
        return _host_port(url)
    if protocol == "s3":
        endpoint = opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
        return _host_port(endpoint) if endpoint else None
    if protocol == "gs":
        endpoint = opts.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
        return _host_port(endpoint) if endpoint else None
    if protocol == "az":
        conn = str(opts.get("connection_string") or "")
        match = re.search(r"BlobEndpoint=([^;]+)", conn, re.IGNORECASE)
        endpoint = match.group(1) if match else opts.get("account_url")
        return _host_port(endpoint) if endpoint else None
    return None


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def _probe_tcp(target: _Target, timeout: float) -> None:
    host, port = target.endpoint  # type: ignore[misc]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror as exc:
        raise StorageUnreachableError(
            f"{target.display}: the host name {host!r} could not be resolved (DNS: {exc.strerror}). "
            "Check the host name in the URL or options."
        ) from exc
    except (TimeoutError, socket.timeout) as exc:
        raise StorageUnreachableError(
            f"{target.display}: the server {host}:{port} is unreachable: no answer within {timeout:.0f}s. "
            "Check host and port, and that no firewall drops the connection."
        ) from exc
    except OSError as exc:
        raise StorageUnreachableError(
            f"{target.display}: the server {host}:{port} is unreachable: "
            f"{exc.strerror or exc}. Check that the server runs and that host and port are right."
        ) from exc


def _check_smb_login(target: _Target, timeout: float) -> None:
    """Log in on a private connection: smbclient's shared pool would reuse an earlier session of
    the same user without ever sending this password."""
    import smbclient

    opts = target.storage_options
    host, port = target.endpoint  # type: ignore[misc]
    cache: dict = {}
    try:
        smbclient.register_session(
            host,
            username=opts.get("username"),
            password=opts.get("password"),
            port=port,
            encrypt=opts.get("encrypt"),
            connection_timeout=int(timeout),
            connection_cache=cache,
        )
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(exc, target=target, path=None, action="logging in") from exc
    finally:
        try:
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)
        except Exception:  # noqa: BLE001 - closing a probe connection must not hide the result
            pass


def _set_dotted(options: dict[str, Any], dotted: str, value: str) -> None:
    """``client_kwargs.headers.Authorization`` sets options["client_kwargs"]["headers"][...]."""
    *parents, leaf = dotted.split(".")
    node = options
    for name in parents:
        child = node.get(name)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[name] = child
        node = child
    node[leaf] = value


_SECRET_OPTION = re.compile(r"secret|password|passphrase|token|_key$|connection_string|sas|credential", re.IGNORECASE)


_NOT_SECRET_VALUES = {"anon", "google_default", "cloud", "cache", "browser"}


def _inline_secrets(options: Mapping[str, Any]) -> list[str]:
    """Secret-looking values written straight into the options, to scrub them from messages too."""
    found = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found.extend(_inline_secrets(value))
        elif (isinstance(value, str) and len(value) >= 4 and _SECRET_OPTION.search(name)
              and name != "key_filename" and value not in _NOT_SECRET_VALUES):
            found.append(value)
    return found


def _safe_url(url: str) -> str:
    """The URL without a password in its user info."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


# --------------------------------------------------------------------------------------------
# Listing


def list_objects(
    fs: fsspec.AbstractFileSystem,
    root: str,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    *,
    all_files: bool = False,
) -> Iterator[ListedObject]:
    """Every file under ``root`` (recursively) whose relative path passes the filters.

    ``include``/``exclude``: glob patterns on the relative path. ``*`` and ``?`` stay within one
    path segment, ``**`` spans any number of segments (``**/`` also matches none), ``[abc]`` as in
    fnmatch; a pattern without ``/`` matches the file name at any depth (``*.png``, ``.*``).
    With ``include`` given a path must match one of them; it must match no ``exclude``.
    Only image extensions (``IMAGE_EXTENSIONS``, any case) are listed unless ``all_files``: then
    the caller sniffs the content (``sniff_image_type``) to find images by their bytes.
    Objects come in sorted order of their path.
    """
    includes = [_compile_glob(p) for p in include]
    excludes = [_compile_glob(p) for p in exclude]

    def wanted(rel: str) -> bool:
        if not all_files and _extension(rel) not in IMAGE_EXTENSIONS:
            return False
        if includes and not any(_glob_match(g, rel) for g in includes):
            return False
        return not any(_glob_match(g, rel) for g in excludes)

    if _is_http(fs):
        yield from _list_url_file(fs, root, wanted)
        return
    try:
        found = fs.find(root, detail=True, withdirs=False)
        # find() answers a vanished root (an unmounted share, a deleted prefix) with nothing at all;
        # a scanner must not take that for "every image was deleted".
        if not found and not fs.isdir(root):
            raise FileNotFoundError(root)
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(exc, path=root, action="listing", fs=fs) from exc
    prefix = root.rstrip("/") + "/" if root not in ("", "/") else "/"
    for full in sorted(found):
        info = found[full]
        if info.get("type", "file") != "file":
            continue
        rel = _relative(full, root, prefix)
        if not rel or rel.endswith("/") or not wanted(rel):
            continue
        yield ListedObject(
            path=rel,
            uri=_uri(fs, full),
            size_bytes=_size(info),
            modified_at=_modified(info),
            etag=_etag(info),
            fs_path=full,
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


def _list_url_file(fs: fsspec.AbstractFileSystem, list_url: str, wanted) -> Iterator[ListedObject]:
    try:
        text = fs.cat_file(list_url).decode("utf-8-sig")
    except Exception as exc:  # noqa: BLE001
        raise _storage_error(exc, path=list_url, action="reading the URL list", fs=fs) from exc
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
            if isinstance(info, BaseException) and _classify(info)[0] == "not_found":
                # A dead link is an object that is gone, as a deleted file is on other protocols.
                log.warning("URL list %s names %s, which does not exist; skipped", list_url, url)
                continue
            if isinstance(info, BaseException):
                raise _storage_error(info, path=url, action="reading the size of a listed URL", fs=fs) from info
            yield ListedObject(
                path=rel, uri=url, size_bytes=_size(info), modified_at=_modified(info), etag=_etag(info), fs_path=url
            )


_HTTP_HEAD_BATCH = 32  # HEAD requests in flight at once while listing a URL list


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


def _is_http(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "http" in protocols or "https" in protocols


def _uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols:
        return "file://" + path
    if "sftp" in protocols or "ssh" in protocols:
        return f"sftp://{_netloc(fs.host, getattr(fs, 'ssh_kwargs', {}).get('port'), 22)}{path}"
    if "smb" in protocols:
        return f"smb://{_netloc(fs.host, fs.port, 445)}{path}"
    if "s3" in protocols:
        return "s3://" + path.lstrip("/")
    if "gs" in protocols or "gcs" in protocols:
        return "gs://" + path.lstrip("/")
    if "abfs" in protocols or "az" in protocols:
        return "az://" + path.lstrip("/")
    if "memory" in protocols:
        return "memory://" + path
    return fs.unstrip_protocol(path)


def _netloc(host: str, port: int | None, default: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port in (None, default) else f"{host}:{port}"


# Each backend names size, modification time and entity tag its own way. The access time that
# sftp and smb report as "time" is deliberately not a modification time.
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


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""


@lru_cache(maxsize=256)
def _compile_glob(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A glob as a regex over the relative path; the flag says: match the file name only."""
    pattern = pattern.strip()
    name_only = "/" not in pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1: i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1: end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL), name_only


def _glob_match(compiled: tuple[re.Pattern[str], bool], rel: str) -> bool:
    regex, name_only = compiled
    return regex.match(rel.rsplit("/", 1)[-1] if name_only else rel) is not None


def sniff_image_type(first_bytes: bytes) -> str | None:
    """The image format its leading bytes announce ("jpeg", "png", "gif", "webp", "bmp", "tiff",
    "heic", "heif", "avif"), or None. Give it at least ``SNIFF_BYTES`` bytes where the file has them.
    """
    b = bytes(first_bytes[:SNIFF_BYTES])
    if b.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return "webp"
    if b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if b[:2] == b"BM" and len(b) >= 18 and int.from_bytes(b[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if b[4:8] == b"ftyp" and len(b) >= 12:
        box_end = min(len(b), max(16, int.from_bytes(b[0:4], "big")))
        brands = {b[8:12]} | {b[i: i + 4] for i in range(16, box_end - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "avif"
        if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}:
            return "heic"
        if brands & {b"mif1", b"msf1"}:
            return "heif"
    return None


# --------------------------------------------------------------------------------------------
# Reading


def read_bytes(
    fs: fsspec.AbstractFileSystem,
    path: str,
    retries: int = 3,
    *,
    length: int | None = None,
    backoff_s: float = 0.5,
) -> bytes:
    """The bytes of one object (the first ``length`` only, if given).

    Transient failures (connection reset or refused, timeouts, HTTP/S3 5xx and throttling) are
    retried ``retries`` times with exponential backoff (0.5 s, 1 s, 2 s, ...); missing files,
    denied permissions and rejected credentials fail at once. Raises StorageError naming the path.
    """
    attempt = 0
    while True:
        try:
            if length is None:
                return fs.cat_file(path)
            return fs.cat_file(path, start=0, end=length)
        except Exception as exc:  # noqa: BLE001
            kind, _ = _classify(exc)
            if kind == "range" and length is not None:
                # Stores answer a range beyond the end of a zero-byte object with 416.
                length = None
                continue
            if kind in ("unreachable", "transient") and attempt < retries:
                delay = backoff_s * 2**attempt
                log.warning("Reading %s failed (%s); retry %d of %d in %.1fs",
                            path, _scrub(_cause(exc), _fs_secrets(fs)), attempt + 1, retries, delay)
                time.sleep(delay)
                attempt += 1
                continue
            raise _storage_error(exc, path=path, action="reading", fs=fs, attempts=attempt + 1) from exc


# --------------------------------------------------------------------------------------------
# Turning library exceptions into errors that say what to do


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


_AUTH_CODES = {
    "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
    "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AuthenticationFailed", "InvalidSecurity",
}
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "ContainerNotFound", "BlobNotFound", "ResourceNotFound", "404"}
_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
    "RequestTimeTooSkewed", "ServerBusy", "OperationTimedOut", "500", "502", "503", "504",
}


_PRIORITY = ("auth", "not_found", "range", "unreachable", "transient", "permission")


def _classify(exc: BaseException) -> tuple[str, str]:
    """(kind, cause): kind is unreachable, auth, not_found, permission, transient or other.

    Libraries wrap each other's errors (s3fs turns a botocore SignatureDoesNotMatch into a bare
    PermissionError), so the whole chain is read and the most specific finding wins.
    """
    found: dict[str, str] = {}
    for e in _chain(exc):
        kind = _kind_of(e)
        if kind is not None:
            bad_share = "BadNetworkName" in _class_names(e)
            found.setdefault(kind, "the share does not exist on this server" if bad_share else _cause(e))
    for kind in _PRIORITY:
        if kind in found:
            return kind, found[kind]
    return "other", _cause(exc)


_AUTH_CLASSES = {
    "AuthenticationException", "BadAuthenticationType", "PasswordRequiredException", "LogonFailure",
    "SMBAuthenticationError", "ClientAuthenticationError", "AccountDisabled", "PasswordExpired",
    "AccountRestriction", "NoCredentialsError", "PartialCredentialsError",
}
_NOT_FOUND_CLASSES = {"ResourceNotFoundError", "ObjectNameNotFound", "ObjectPathNotFound", "FileNotFoundError",
                      "NoSuchFile", "BadNetworkName"}
_UNREACHABLE_CLASSES = {"ConnectionRefusedError", "NoValidConnectionsError", "EndpointConnectionError",
                        "ClientConnectorError", "ServiceRequestError", "ConnectTimeoutError", "ConnectTimeout",
                        "gaierror"}
_TRANSIENT_CLASSES = {"ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError", "TimeoutError",
                      "ServerDisconnectedError", "ClientPayloadError", "ClientOSError", "ServerTimeoutError",
                      "ReadTimeoutError", "IncompleteReadError", "ResponseStreamingError", "SMBConnectionClosed",
                      "EOFError", "ServiceResponseError", "IncompleteRead"}


# paramiko's words for a private key it cannot load, mostly a wrong passphrase.
_BAD_KEY = re.compile(r"invalid key|encrypted|decrypt|passphrase|could not deserialize", re.IGNORECASE)


def _kind_of(e: BaseException) -> str | None:
    names = _class_names(e)
    code = _error_code(e)
    text = str(e)
    # An HTTP status, where the error carries one (SMB errors carry 32-bit NTSTATUS codes instead).
    statuses = (getattr(e, name, None) for name in ("status", "status_code", "code"))
    status = next((v for v in statuses if isinstance(v, int) and 100 <= v <= 599), None)
    err_no = getattr(e, "errno", None)
    if code == "InvalidRange" or status == 416 or "range is not satisfiable" in text:
        return "range"
    if (names & _AUTH_CLASSES or code in _AUTH_CODES or status == 401
            or "failed to authenticate" in text  # Azure/Azurite: a wrong account key
            or ("SSHException" in names and _BAD_KEY.search(text))):
        return "auth"
    if names & _NOT_FOUND_CLASSES or code in _NOT_FOUND_CODES or status == 404 or err_no == errno.ENOENT:
        return "not_found"
    if (names & _UNREACHABLE_CLASSES or err_no in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
            or (isinstance(e, ValueError) and "Failed to connect to" in text)):
        return "unreachable"
    if (names & _TRANSIENT_CLASSES or code in _TRANSIENT_CODES
            or (status is not None and (status >= 500 or status in (408, 429)))
            or err_no in (errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.ECONNABORTED)
            or ("SSHException" in names and any(w in text.lower() for w in ("closed", "dropped", "eof", "reset")))):
        return "transient"
    if names & {"AccessDenied", "PermissionError"} or code in {"AccessDenied", "AuthorizationFailure", "403"} \
            or status == 403 or err_no in (errno.EACCES, errno.EPERM):
        return "permission"
    return None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    code = getattr(exc, "error_code", None)  # azure HttpResponseError
    return str(code) if code else None


def _cause(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0].rstrip(".")
    if "SSHException" in _class_names(exc) and _BAD_KEY.search(text):
        text = f"the private key could not be loaded ({text}): wrong passphrase, or not a private key file"
    code = next((line for line in lines[1:] if line.startswith("ErrorCode:")), None)  # Azure
    if code:
        text = f"{text} ({code})"
    return text if len(text) <= 300 else text[:297] + "..."


def _storage_error(
    exc: BaseException,
    *,
    path: str | None,
    action: str,
    target: _Target | None = None,
    fs: fsspec.AbstractFileSystem | None = None,
    attempts: int = 1,
) -> StorageError:
    kind, cause = _classify(exc)
    where = target.display if target is not None else ""
    if path is not None:
        shown = path if fs is None else _uri(fs, path) if not _is_http(fs) else path
        where = f"{where} ({shown})" if where and shown not in where else where or shown
    host = f"{target.endpoint[0]}:{target.endpoint[1]}" if target is not None and target.endpoint else None
    env_hint = (
        f" (from the environment variable{'s' if len(target.env_names) > 1 else ''} "
        f"{', '.join(target.env_names)})" if target is not None and target.env_names else ""
    )
    retried = f" after {attempts} attempts" if attempts > 1 else ""
    if kind == "auth":
        err: StorageError = StorageAuthError(
            f"{where}: authentication failed{' at ' + host if host else ''}: {cause}. Check the user name or "
            f"access key, and the password, key file, passphrase or secret{env_hint}."
        )
    elif kind == "not_found":
        what = _missing_what(target, path, exc)
        detail = "" if path and cause.strip("/") in path else f" ({cause})"
        if action == "reading":
            message = f"{where}: the file does not exist{detail}; deleted or moved since it was listed?"
        else:
            message = f"{where}: {what} does not exist{detail}. Check the URL; create it first if needed."
        err = StorageNotFoundError(message)
    elif kind == "unreachable":
        err = StorageUnreachableError(
            f"{where}: the server{' ' + host if host else ''} is unreachable{retried}: {cause}. "
            "Check that the server runs and that host and port are right."
        )
    elif kind == "permission":
        err = StoragePermissionError(
            f"{where}: permission denied while {action}: {cause}. The credentials{env_hint} are not allowed "
            "to read this path; grant read and list rights, or use other credentials."
        )
    elif kind == "transient":
        err = StorageError(f"{where}: {action} failed{retried} with a temporary error: {cause}. Try again later.")
    else:
        err = StorageError(f"{where}: {action} failed: {type(exc).__name__}: {cause}")
    secrets = target.secrets if target is not None else _fs_secrets(fs)
    return type(err)(_scrub(str(err), secrets))


def _missing_what(target: _Target | None, path: str | None, exc: BaseException) -> str:
    protocol = target.protocol if target is not None else None
    parts = (path or "").strip("/").split("/")
    cause = " ".join(str(e) for e in _chain(exc))
    if protocol == "smb" and (len(parts) == 1 or any("BadNetworkName" in _class_names(e) for e in _chain(exc))):
        return f"the share {parts[0]!r}"
    if protocol in ("s3", "gs") and (len(parts) == 1 or "bucket" in cause.lower()):
        return f"the bucket {parts[0]!r}"
    if protocol == "az" and (len(parts) == 1 or "container" in cause.lower()):
        return f"the container {parts[0]!r}"
    if protocol == "http":
        return "the URL list"
    return f"the path {path!r}" if path else "the location"


def _fs_secrets(fs: fsspec.AbstractFileSystem | None) -> tuple[str, ...]:
    if fs is None:
        return ()
    return tuple(_inline_secrets(getattr(fs, "storage_options", {}) or {}))


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
