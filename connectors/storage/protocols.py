"""What differs per storage protocol, in one table: adding a protocol means adding one entry here.

Protocols and their URLs (options are passed to the fsspec file system as keyword arguments):

=========  ==========================================  ============================================
protocol   URL                                         typical options / credentials_env
=========  ==========================================  ============================================
file       ``file:///abs/dir`` or a bare path          -
memory     ``memory:///dir``                           -
s3         ``s3://bucket/prefix``                      ``endpoint_url`` (S3-compatible stores),
                                                       ``client_kwargs``; ``key``, ``secret``
sftp       ``sftp://user@host:port/abs/dir``           ``username``, ``key_filename``, ``timeout``;
                                                       ``password`` or ``passphrase`` (paramiko)
smb        ``smb://host:port/share/dir``               ``username``, ``timeout``; ``password``
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

Everything here speaks fsspec and raises the libraries' own exceptions; locations.py and
errors.py turn those into StorageErrors.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import fsspec
import fsspec.asyn

# (scheme as written in the URL, URL, storage options) -> (file system, root path inside it)
Opener = Callable[[str, str, dict[str, Any]], tuple[fsspec.AbstractFileSystem, str]]
# SFTP and SMB: seconds to connect, and to wait for each answer (the libraries' default is to wait
# forever for an answer); the location's `timeout` option overrides it.
SERVER_TIMEOUT = 30


def _open_registered(scheme: str, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system fsspec registers for the scheme; a fresh one, so that options always apply."""
    fs = fsspec.filesystem(scheme, skip_instance_cache=True, **options)
    return fs, type(fs)._strip_protocol(url)


def _open_local(scheme: str, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    from fsspec.implementations.local import LocalFileSystem

    fs = LocalFileSystem()
    _, path = fsspec.core.split_protocol(url)
    return fs, fs._strip_protocol(os.path.expanduser(path))


def _open_sftp(scheme: str, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    # Always paramiko's implementation: installing sshfs re-registers "sftp" with other options.
    from fsspec.implementations.sftp import SFTPFileSystem

    host = options.pop("host")
    options.setdefault("timeout", SERVER_TIMEOUT)
    if options.get("password") or options.get("key_filename") or options.get("pkey"):
        # Explicit credentials: do not silently try the worker's own keys or agent instead.
        options.setdefault("look_for_keys", False)
        options.setdefault("allow_agent", False)
    fs = SFTPFileSystem(host, skip_instance_cache=True, **options)
    _limit_sftp_waits(fs)
    return fs, SFTPFileSystem._strip_protocol(url) or "/"


def _limit_sftp_waits(fs: fsspec.AbstractFileSystem) -> None:
    # paramiko waits forever for the answer to a request on a connection that silently went away
    # (no FIN, no RST); with a timeout the read fails, is retried, and the scan stops, not hangs.
    fs.ftp.get_channel().settimeout(fs.ssh_kwargs["timeout"])


def _reconnect_sftp(fs: fsspec.AbstractFileSystem) -> None:
    """A new SSH connection and SFTP session: paramiko never reopens one that dropped."""
    fs.client.close()
    fs._connect()
    _limit_sftp_waits(fs)


def _open_smb(scheme: str, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    from fsspec.implementations.smb import SMBFileSystem

    _bound_smb_requests()
    options.setdefault("timeout", SERVER_TIMEOUT)
    # Open files without locking others out (smbclient's default locks a file until it is closed):
    # a scan must not block the share's users, nor fail on a file one of them has open.
    options.setdefault("share_access", "rwd")
    opening = threading.Lock()

    class LoggingInSMBFileSystem(SMBFileSystem):
        """smbclient replaces a connection that dropped by itself, but logs in with only the
        credentials of the call at hand, and fsspec passes them at its first login only: without
        them here, every read after a dropped connection fails as an anonymous login.

        Files are opened one thread at a time (and read in parallel): threads that replace the same
        connection at once race in smbprotocol, and a session set up before the new connection's
        negotiation finished waits forever for an answer the server never sends."""

        def _open(self, path, mode="rb", block_size=-1, autocommit=True, cache_options=None, **kwargs):
            with opening:
                return super()._open(path, mode, block_size, autocommit, cache_options, username=self.username,
                                     password=self.password, encrypt=self.encrypt, connection_timeout=self.timeout,
                                     **kwargs)

    fs = LoggingInSMBFileSystem(skip_instance_cache=True, **options)
    return fs, SMBFileSystem._strip_protocol(url)


def _open_url_list(scheme: str, url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, _ = _open_registered(scheme, url, options)
    return fs, url


def _check_s3_root(fs: fsspec.AbstractFileSystem, root: str) -> None:
    # One key of a listing, not a HEAD (S3 answers HEAD with a bare 403 for a wrong secret and for
    # a denied read alike; a listing names the cause), and not a whole ls, which pages through
    # every key of a big flat prefix.
    bucket, _, prefix = root.partition("/")
    page = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    if prefix and not page.get("KeyCount"):
        raise FileNotFoundError(root)


def _check_url_list(fs: fsspec.AbstractFileSystem, root: str) -> None:
    fs.info(root)  # the URL list itself


@functools.cache
def _bound_smb_requests() -> None:
    """smbprotocol waits for the answer to a request without limit (`Connection.receive`'s timeout
    defaults to None), so a server that stops answering without closing the connection (a hung
    smbd, a link gone dead) would hang a scan forever. smbclient makes its connections with the
    `Connection` its `_pool` module imported (smbclient/_pool.py `register_session`, smbclient
    1.17); that name is replaced, once per process, by a subclass whose requests wait at most the
    connect timeout they were opened with: the `timeout` option of the location that opened the
    connection (smbclient keeps one per server and process, so the first location to reach a server
    sets it). The request then fails with "Connection timeout of N seconds exceeded", which is
    retried and then stops the scan."""
    import smbclient._pool
    from smbprotocol.connection import Connection

    class BoundedConnection(Connection):
        request_timeout: float | None = None

        def connect(self, dialect=None, timeout=60, preferred_encryption_algos=None, preferred_signing_algos=None):
            self.request_timeout = timeout
            return super().connect(dialect, timeout, preferred_encryption_algos, preferred_signing_algos)

        def receive(self, request, wait=True, timeout=None, resolve_symlinks=True):
            return super().receive(request, wait, self.request_timeout if timeout is None else timeout, resolve_symlinks)

    smbclient._pool.Connection = BoundedConnection


def _smb_login(host: str, port: int, options: Mapping[str, Any], timeout: float) -> None:
    """Log in on a private connection: smbclient's shared pool would reuse an earlier session of
    the same user without ever sending this password."""
    import smbclient

    _bound_smb_requests()
    cache: dict = {}
    try:
        smbclient.register_session(
            host,
            username=options.get("username"),
            password=options.get("password"),
            port=port,
            encrypt=options.get("encrypt"),
            connection_timeout=int(timeout),
            connection_cache=cache,
        )
    finally:
        try:
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)
        except Exception:  # noqa: BLE001 - closing a probe connection must not hide the result
            pass


def _az_endpoint(url: str, options: Mapping[str, Any]) -> str | None:
    match = re.search(r"BlobEndpoint=([^;]+)", str(options.get("connection_string") or ""), re.IGNORECASE)
    return match.group(1) if match else options.get("account_url")


_S3_PAGE = 1000  # keys per ListObjectsV2 request: the most S3 answers at once


def _s3_pages(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[tuple[str, dict]]:
    """Every object under ``root``, flat, one page at a time on fsspec's event loop. S3 lists keys
    in UTF-8 binary order, which is path order. s3fs has no public paged listing: its find() holds
    the whole listing (twice, with its directory cache), so this drives ``_iterdir``, the paginated
    lister under its ls() and find(); each page is retried like any other request."""
    bucket, key, _ = fs.split_path(root)
    pages = fs._iterdir(bucket, delimiter="", prefix=key.rstrip("/") + "/" if key else "")

    async def next_page() -> list[dict]:
        page = []
        try:
            while len(page) < _S3_PAGE:
                page.append(await pages.__anext__())
        except StopAsyncIteration:
            pass
        return page

    while page := fsspec.asyn.sync(fs.loop, next_page):
        for info in page:
            yield info["name"], info


@dataclass(frozen=True)
class Protocol:
    """One storage protocol: what it needs beyond fsspec's own handling of its URLs."""

    # Canonical name: the scheme of listed objects' URIs, and the word in messages.
    name: str
    # Other URL schemes and fsspec protocol names that mean this protocol.
    aliases: tuple[str, ...] = ()
    # (module, extra): the optional package it needs, and the deeplens extra that installs it.
    extra: tuple[str, str] | None = None
    # Environment defaults set before that module is imported; an explicit user setting wins.
    import_env: Mapping[str, str] = field(default_factory=dict)
    # Builds the file system and the root path inside it.
    open: Opener = _open_registered
    # Set for protocols that talk to one server named by the URL (user:password@host:port) or the
    # options: the host and port an open file system talks to. Such URLs must name a host.
    server: Callable[[fsspec.AbstractFileSystem], tuple[str, int | None]] | None = None
    # The port of that server where neither URL nor options name one; left out of URIs.
    default_port: int | None = None
    # For the other protocols: the URL of the server to probe before the first request, where
    # it is known without a cloud default.
    endpoint: Callable[[str, Mapping[str, Any]], str | None] | None = None
    # What the first path segment names ("bucket", "share", "container"); a URL must name one.
    top_level: str | None = None
    # The rest of "URL names no ...": what is missing and the URL form that has it.
    top_level_hint: str = ""
    # A word (lower case) in the class names or messages of an error that says the top level
    # itself is missing, however deep the path that was asked for.
    top_level_gone: str = ""
    # Proves that the location root can be read; None: list it and require a folder.
    check_root: Callable[[fsspec.AbstractFileSystem, str], None] | None = None
    # Logs in on its own before the first request, where the file system would hide a bad password.
    login: Callable[[str, int, Mapping[str, Any], float], None] | None = None
    # The location is a URL list (see above): its root is the list's URL, its paths are URLs.
    url_list: bool = False
    # Whether one open file system serves reads from several threads at once: fsspec's sftp file
    # system shares one paramiko SFTP session, whose reads time out when threads use it together.
    parallel_reads: bool = True
    # Opens the file system's connection again before a read is retried, for file systems that
    # keep one connection, on which every request fails once it dropped.
    reconnect: Callable[[fsspec.AbstractFileSystem], None] | None = None
    # Lists every file under a root, (full name, info) in path order, holding one page at a time;
    # None: fsspec's find() for the async stores, a folder-by-folder walk for the others (listing.py).
    list_files: Callable[[fsspec.AbstractFileSystem, str], Iterator[tuple[str, dict]]] | None = None


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("file", aliases=("local",), open=_open_local),
    Protocol("memory"),
    Protocol(
        "s3",
        aliases=("s3a",),
        endpoint=lambda url, opts: opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url"),
        top_level="bucket",
        top_level_hint="bucket/container: use {scheme}://BUCKET[/prefix]",
        top_level_gone="bucket",
        check_root=_check_s3_root,
        list_files=_s3_pages,
    ),
    Protocol(
        "sftp",
        aliases=("ssh",),
        open=_open_sftp,
        server=lambda fs: (fs.host, getattr(fs, "ssh_kwargs", {}).get("port")),
        default_port=22,
        parallel_reads=False,
        reconnect=_reconnect_sftp,
    ),
    Protocol(
        "smb",
        open=_open_smb,
        server=lambda fs: (fs.host, fs.port),
        default_port=445,
        top_level="share",
        top_level_hint="share: use smb://host[:port]/SHARE[/folder]",
        top_level_gone="badnetworkname",  # smbprotocol's BadNetworkName
        login=_smb_login,
    ),
    Protocol(
        "http",
        aliases=("https",),
        open=_open_url_list,
        endpoint=lambda url, opts: url,
        check_root=_check_url_list,
        url_list=True,
    ),
    Protocol(
        "gs",
        aliases=("gcs",),
        extra=("gcsfs", "gcs"),
        # gcsfs otherwise probes a gRPC API per bucket that emulators and many proxies lack, and
        # waits 60 s for it.
        import_env={"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
        endpoint=lambda url, opts: opts.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST"),
        top_level="bucket",
        top_level_hint="bucket/container: use {scheme}://BUCKET[/prefix]",
        top_level_gone="bucket",
    ),
    Protocol(
        "az",
        aliases=("abfs", "abfss"),
        extra=("adlfs", "azure"),
        endpoint=_az_endpoint,
        top_level="container",
        top_level_hint="bucket/container: use {scheme}://BUCKET[/prefix]",
        top_level_gone="container",
    ),
)

_BY_SCHEME = {scheme: p for p in PROTOCOLS for scheme in (p.name, *p.aliases)}
SCHEMES = tuple(sorted(_BY_SCHEME))


def by_scheme(scheme: str) -> Protocol | None:
    return _BY_SCHEME.get(scheme)


def of_fs(fs: fsspec.AbstractFileSystem) -> Protocol | None:
    """The protocol of an open file system; None for one this table does not know."""
    names = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return next((_BY_SCHEME[name] for name in names if name in _BY_SCHEME), None)


def parallel_reads(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = of_fs(fs)
    return protocol is None or protocol.parallel_reads


def reconnect(fs: fsspec.AbstractFileSystem) -> None:
    protocol = of_fs(fs)
    if protocol is not None and protocol.reconnect is not None:
        protocol.reconnect(fs)


def uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL of ``path`` in ``fs``, as ListedObject.uri documents it."""
    protocol = of_fs(fs)
    if protocol is None:
        return fs.unstrip_protocol(path)
    if protocol.url_list:
        return path
    if protocol.server is not None:
        host, port = protocol.server(fs)
        host = f"[{host}]" if ":" in host else host
        netloc = host if port in (None, protocol.default_port) else f"{host}:{port}"
        return f"{protocol.name}://{netloc}{_encode(path)}"
    if protocol.top_level is not None:  # a bucket store: the path starts with the bucket
        return f"{protocol.name}://{_encode(path.lstrip('/'))}"
    return f"{protocol.name}://{_encode(path)}"


def _encode(path: str) -> str:
    """Percent-encoded as RFC 3986 paths and RFC 8089 file URIs are, as ``Path.as_uri()`` does: every
    byte of the UTF-8 name but unreserved characters and "/" (names that are not UTF-8, which Linux
    allows, keep their bytes through surrogate escapes)."""
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")


def fsspec_url(uri_or_path: str) -> str:
    """What fsspec opens for a ListedObject.uri: the URI percent-decoded. Local paths, http(s)
    URLs (fsspec takes those encoded) and unknown schemes come back as they are."""
    scheme, sep, rest = uri_or_path.partition("://")
    protocol = by_scheme(scheme.lower()) if sep else None
    if protocol is None or protocol.url_list:
        return uri_or_path
    return f"{scheme}://{unquote(rest, errors='surrogateescape')}"
