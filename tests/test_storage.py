"""connectors/storage/ against a real server per protocol (tests/servers/plugin.py): listing,
filters, metadata, reading, and the errors a user sees for each way a location can be wrong."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import fsspec
import pytest
from PIL import Image

from deeplens.connectors import storage
from deeplens.connectors.storage import (
    StorageAuthError,
    StorageConfigError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
    check_reachable,
    list_objects,
    open_location,
    read_bytes,
    read_head,
    sniff_image_type,
)
from deeplens.connectors.storage.globs import compile_glob, glob_match
from deeplens.connectors.storage.sniffing import extension
from deeplens.processes import free_port
from tests.servers.plugin import StorageServer, azurite_connection_string
from tests.servers.process import http_in_thread

PROTOCOLS = ["file", "memory", "s3", "sftp", "smb", "http", "az", "gs"]
SERVER_FIXTURES = {"s3": "s3_server", "sftp": "sftp_server", "smb": "smb_server", "http": "http_server",
                   "az": "azurite_server", "gs": "gcs_server"}
UNICODE_NAME = "Ünïcode ordner/bild mit leerzeichen ü.jpg"
FIXED_MTIME = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def _image(fmt: str, size=(40, 30), color=(200, 30, 60)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


# The tree every protocol gets: images by extension, a unicode + space-laden folder and name,
# a nested folder, an upper-case extension, a zero-byte .jpg, a text file posing as a .jpg,
# a PNG without extension and a plain text file.
TREE: dict[str, bytes] = {
    "a.jpg": _image("JPEG"),
    "b.png": _image("PNG", color=(10, 200, 10)),
    "nested/deeper/c.JPEG": _image("JPEG", size=(64, 48)),
    UNICODE_NAME: _image("JPEG", color=(0, 0, 255)),
    "empty.jpg": b"",
    "fake.jpg": b"this is text, not a JPEG\n",
    "nested/no_extension": _image("PNG", size=(8, 8)),
    "notes.txt": b"not an image\n",
}
IMAGE_PATHS = sorted(p for p in TREE if extension(p) in storage.IMAGE_EXTENSIONS)


@dataclass
class Location:
    """A location holding TREE on one protocol, as `deeplens storage add` would register it."""

    protocol: str
    url: str
    options: dict
    credentials_env: dict[str, str]
    expected_uri: dict[str, str]  # relative path -> URI
    exact_mtime: bool  # the backing files' mtime was set to FIXED_MTIME (local-disk servers)
    uploaded_at: datetime
    server: StorageServer | None = None


def _put_tree(fs: fsspec.AbstractFileSystem, root: str, hierarchical: bool) -> None:
    for rel, data in TREE.items():
        path = f"{root}/{rel}"
        if hierarchical:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)


def _set_mtimes(folder: Path) -> None:
    for rel in TREE:
        os.utime(folder / rel, (FIXED_MTIME.timestamp(), FIXED_MTIME.timestamp()))


@pytest.fixture(scope="module")
def location(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Location]:
    protocol = request.param
    sub = f"tree-{uuid.uuid4().hex[:8]}"
    uploaded_at = datetime.now(timezone.utc)
    with pytest.MonkeyPatch.context() as mp:
        if protocol == "file":
            folder = tmp_path_factory.mktemp("file") / sub
            fs, root = open_location(str(folder), {}, {})
            _put_tree(fs, root, hierarchical=True)
            _set_mtimes(folder)
            uris = {rel: (folder / rel).as_uri() for rel in TREE}
            yield Location(protocol, f"file://{folder}", {}, {}, uris, True, uploaded_at)
            return
        if protocol == "memory":
            fs, root = open_location(f"memory://{sub}", {}, {})
            _put_tree(fs, root, hierarchical=False)
            uris = {rel: f"memory:///{sub}/{quote(rel)}" for rel in TREE}
            yield Location(protocol, f"memory://{sub}", {}, {}, uris, False, uploaded_at)
            fs.rm(root, recursive=True)
            return
        server: StorageServer = request.getfixturevalue(SERVER_FIXTURES[protocol])
        env = {name: f"DEEPLENS_TEST_{protocol.upper()}_{name.upper()}" for name in server.credentials}
        for name, value in server.credentials.items():
            mp.setenv(env[name], value)
        if protocol == "http":
            folder = server.local_dir / sub
            for rel, data in TREE.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            _set_mtimes(folder)
            base = f"{server.url}{sub}/"
            lines = ["# DeepLens test list: relative, absolute, raw and percent-encoded lines", ""]
            for i, rel in enumerate(sorted(TREE)):
                lines.append(quote(rel) if rel == UNICODE_NAME else base + rel if i % 2 else rel)
            lines.append("dead link.jpg")  # a 404 in the list: absent, like a deleted file
            (folder / "list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            uris = {rel: base + quote(rel) for rel in TREE}
            yield Location(protocol, base + "list.txt", {}, env, uris, True, uploaded_at, server)
            return
        url = server.child(sub)
        fs, root = open_location(url, server.storage_options, {})
        _put_tree(fs, root, hierarchical=protocol in ("sftp", "smb"))
        if protocol == "sftp":
            _set_mtimes(Path(root))  # the server shares this machine's disk
            prefix = f"sftp://127.0.0.1:{server.port}{root}"
        elif protocol == "smb":
            _set_mtimes(server.local_dir / sub)
            prefix = f"smb://127.0.0.1:{server.port}/deeplens/{sub}"
        else:
            prefix = url
        uris = {rel: f"{prefix}/{quote(rel)}" for rel in TREE}
        yield Location(protocol, url, server.options, env, uris, protocol in ("sftp", "smb"), uploaded_at, server)


def _open(loc: Location):
    return open_location(loc.url, loc.options, loc.credentials_env)


# ------------------------------------------------------------------------- every protocol


@pytest.mark.storage
@pytest.mark.parametrize("location", PROTOCOLS, indirect=True)
class TestEveryProtocol:
    def test_check_reachable(self, location: Location) -> None:
        fs, root = check_reachable(location.url, location.options, location.credentials_env)
        assert [o.path for o in list_objects(fs, root)] == IMAGE_PATHS

    def test_list_objects_paths_sizes_uris(self, location: Location) -> None:
        fs, root = _open(location)
        listed = list(list_objects(fs, root))
        assert [o.path for o in listed] == IMAGE_PATHS
        for obj in listed:
            assert obj.size_bytes == len(TREE[obj.path]), obj
            assert obj.uri == location.expected_uri[obj.path]

    def test_list_objects_metadata(self, location: Location) -> None:
        fs, root = _open(location)
        for obj in list_objects(fs, root):
            assert obj.modified_at is not None and obj.modified_at.tzinfo is not None, obj
            if location.exact_mtime:
                assert obj.modified_at == FIXED_MTIME, obj
            else:
                assert abs(obj.modified_at - location.uploaded_at) < timedelta(minutes=5), obj
            if location.protocol == "s3":
                assert obj.etag == hashlib.md5(TREE[obj.path]).hexdigest()
            elif location.protocol in ("gs", "az"):
                assert obj.etag  # the store's own tag: a base64 MD5 (gs), an opaque version (az)
            else:
                assert obj.etag is None

    def test_all_files_lists_every_file_for_sniffing(self, location: Location) -> None:
        fs, root = _open(location)
        listed = {o.path: o for o in list_objects(fs, root, all_files=True)}
        assert sorted(listed) == sorted(TREE)
        sniffed = {p: sniff_image_type(read_head(fs, o.fs_path, storage.SNIFF_BYTES)) for p, o in listed.items()}
        assert sniffed == {
            "a.jpg": "jpeg", "b.png": "png", "nested/deeper/c.JPEG": "jpeg", UNICODE_NAME: "jpeg",
            "empty.jpg": None, "fake.jpg": None, "nested/no_extension": "png", "notes.txt": None,
        }

    @pytest.mark.parametrize(("include", "exclude", "expected"), [
        (["nested/**"], [], ["nested/deeper/c.JPEG"]),
        ([], ["*.png", "Ünïcode ordner/**"], ["a.jpg", "empty.jpg", "fake.jpg", "nested/deeper/c.JPEG"]),
        (["**/*.jpg"], ["fake.*", "empty.jpg"], ["a.jpg", UNICODE_NAME]),
        (["*/*/*"], [], ["nested/deeper/c.JPEG"]),
        (["Ünïcode ordner/bild mit*"], [], [UNICODE_NAME]),
    ])
    def test_include_exclude(self, location: Location, include, exclude, expected) -> None:
        fs, root = _open(location)
        assert [o.path for o in list_objects(fs, root, include, exclude)] == sorted(expected)

    def test_read_bytes_exact(self, location: Location) -> None:
        fs, root = _open(location)
        for obj in list_objects(fs, root, all_files=True):
            assert read_bytes(fs, obj.fs_path) == TREE[obj.path], obj.path

    def test_read_head_exact(self, location: Location) -> None:
        fs, root = _open(location)
        for obj in list_objects(fs, root, all_files=True):
            # Not n=1: the http test server (RangeHTTPServer) takes the range 0-0 for "to the end"
            # and sends more bytes than its Content-Length, which aiohttp refuses.
            for n in (2, storage.SNIFF_BYTES, len(TREE[obj.path]) + 1):
                assert read_head(fs, obj.fs_path, n) == TREE[obj.path][:n], (obj.path, n)

    def test_vanished_root_is_an_error_not_an_empty_listing(self, location: Location) -> None:
        fs, root = _open(location)
        with pytest.raises(StorageNotFoundError, match="does not exist"):
            list(list_objects(fs, f"{root}/vanished"))

    def test_read_missing_file_fails_at_once(self, location: Location) -> None:
        fs, root = _open(location)
        obj = next(o for o in list_objects(fs, root) if o.path == "a.jpg")
        # The fs paths of http are URLs, encoded; the others' are raw names. URIs are encoded.
        missing = obj.fs_path.replace("a.jpg", quote("gone ü.jpg") if location.protocol == "http" else "gone ü.jpg")
        for read in (lambda: read_bytes(fs, missing, backoff_s=2.0),
                     lambda: read_head(fs, missing, storage.SNIFF_BYTES, backoff_s=2.0)):
            started = time.monotonic()
            with pytest.raises(StorageNotFoundError) as caught:
                read()
            assert time.monotonic() - started < 2.0  # not retried
            assert str(caught.value).startswith(f"{obj.uri.replace('a.jpg', quote('gone ü.jpg'))}: the file does not exist")


# ------------------------------------------------------------------------- bad input


@pytest.mark.storage
@pytest.mark.parametrize("protocol", ["s3", "sftp", "smb", "http", "az", "gs"])
def test_unreachable_port(protocol: str) -> None:
    port = free_port()  # nothing listens there
    url, options = {
        "s3": ("s3://bucket", {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s"}),
        "sftp": (f"sftp://127.0.0.1:{port}/data", {"username": "u", "password": "p"}),
        "smb": (f"smb://127.0.0.1:{port}/share", {"username": "u", "password": "p"}),
        "http": (f"http://127.0.0.1:{port}/list.txt", {}),
        "az": ("az://container", {"connection_string": azurite_connection_string(port)}),
        "gs": ("gs://bucket", {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}),
    }[protocol]
    with pytest.raises(StorageUnreachableError) as caught:
        check_reachable(url, options, {}, timeout=3)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message and "refused" in message.lower()


@pytest.mark.storage
def test_unknown_host_name() -> None:
    with pytest.raises(StorageUnreachableError, match="could not be resolved"):
        check_reachable("sftp://no-such-host.invalid/data", {"username": "u", "password": "p"}, {})


@pytest.mark.storage
def test_s3_wrong_secret(s3_server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-" + s3_server.credentials["secret"][:8]
    monkeypatch.setenv("DEEPLENS_TEST_WRONG_SECRET", wrong)
    with pytest.raises(StorageAuthError, match="authentication failed") as caught:
        check_reachable(s3_server.url, s3_server.options, {"secret": "DEEPLENS_TEST_WRONG_SECRET"})
    assert "DEEPLENS_TEST_WRONG_SECRET" in str(caught.value) and wrong not in str(caught.value)


@pytest.mark.storage
def test_s3_missing_bucket_and_prefix(s3_server: StorageServer) -> None:
    with pytest.raises(StorageNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        check_reachable("s3://no-such-bucket/images", s3_server.storage_options, {})
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        check_reachable(s3_server.child("no/such/prefix"), s3_server.storage_options, {})


@pytest.mark.storage
def test_sftp_wrong_password(sftp_server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPLENS_TEST_SFTP_PASSWORD", "not-the-password")
    options = {"username": sftp_server.options["username"]}
    with pytest.raises(StorageAuthError, match="authentication failed") as caught:
        check_reachable(sftp_server.url, options, {"password": "DEEPLENS_TEST_SFTP_PASSWORD"})
    assert "not-the-password" not in str(caught.value) and "not-the-password" not in repr(caught.value)


@pytest.mark.storage
def test_sftp_wrong_key_passphrase(sftp_server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPLENS_TEST_SFTP_PASSPHRASE", "not-the-passphrase")
    with pytest.raises(StorageAuthError, match="authentication failed"):
        check_reachable(sftp_server.url, sftp_server.options, {"passphrase": "DEEPLENS_TEST_SFTP_PASSPHRASE"})


@pytest.mark.storage
def test_sftp_missing_path(sftp_server: StorageServer) -> None:
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        check_reachable(sftp_server.child("no such folder"), sftp_server.storage_options, {})


@pytest.mark.storage
def test_smb_wrong_password(smb_server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A good session of the same user is pooled first: the check must still send this password.
    check_reachable(smb_server.url, smb_server.storage_options, {})
    monkeypatch.setenv("DEEPLENS_TEST_SMB_PASSWORD", "not-the-password")
    with pytest.raises(StorageAuthError, match="authentication failed") as caught:
        check_reachable(smb_server.url, smb_server.options, {"password": "DEEPLENS_TEST_SMB_PASSWORD"})
    assert "not-the-password" not in str(caught.value)


@pytest.mark.storage
def test_smb_missing_share_and_folder(smb_server: StorageServer) -> None:
    with pytest.raises(StorageNotFoundError, match="share 'nosuchshare' does not exist"):
        check_reachable(f"smb://127.0.0.1:{smb_server.port}/nosuchshare", smb_server.storage_options, {})
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        check_reachable(smb_server.child("no such folder"), smb_server.storage_options, {})


@pytest.mark.storage
def test_http_missing_list(http_server: StorageServer) -> None:
    with pytest.raises(StorageNotFoundError, match="URL list does not exist"):
        check_reachable(http_server.url + "no-such-list.txt", {}, {})


@pytest.mark.storage
def test_az_wrong_key_and_missing_container(azurite_server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    monkeypatch.setenv("DEEPLENS_TEST_AZ_CONN", azurite_connection_string(azurite_server.port, wrong_key))
    with pytest.raises(StorageAuthError, match="authentication failed") as caught:
        check_reachable(azurite_server.url, {}, {"connection_string": "DEEPLENS_TEST_AZ_CONN"})
    assert wrong_key not in str(caught.value)
    with pytest.raises(StorageNotFoundError, match="container 'no-such-container' does not exist"):
        check_reachable("az://no-such-container", azurite_server.storage_options, {})


@pytest.mark.storage
def test_gs_missing_bucket(gcs_server: StorageServer) -> None:
    with pytest.raises(StorageNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        check_reachable("gs://no-such-bucket", gcs_server.storage_options, {})


def test_missing_credential_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPLENS_TEST_UNSET_SECRET", raising=False)
    for check in (open_location, check_reachable):
        with pytest.raises(StorageConfigError, match="DEEPLENS_TEST_UNSET_SECRET"):
            check("s3://bucket", {"endpoint_url": "http://127.0.0.1:1"}, {"secret": "DEEPLENS_TEST_UNSET_SECRET"})


def test_unknown_protocol_and_missing_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageConfigError, match="Unknown storage protocol 'ftpx'.*Supported: .*s3"):
        check_reachable("ftpx://host/data", {}, {})
    monkeypatch.setitem(__import__("sys").modules, "gcsfs", None)  # as if not installed
    monkeypatch.setitem(__import__("sys").modules, "adlfs", None)
    with pytest.raises(StorageConfigError, match=r"pip install 'deeplens\[gcs\]'"):
        open_location("gs://bucket", {}, {})
    with pytest.raises(StorageConfigError, match=r"pip install 'deeplens\[azure\]'"):
        open_location("az://container", {}, {})


def test_local_missing_path_and_file_root(tmp_path: Path) -> None:
    with pytest.raises(StorageNotFoundError, match="does not exist"):
        check_reachable(str(tmp_path / "nope"), {}, {})
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(StorageConfigError, match="is a file, not a folder"):
        check_reachable(f"file://{tmp_path}/x.jpg", {}, {})


def test_dotted_credential_names_reach_nested_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPLENS_TEST_HTTP_TOKEN", "Bearer t0ken")
    options = {"client_kwargs": {"headers": {"User-Agent": "deeplens"}}}
    fs, root = open_location("https://example.invalid/images/list.txt", options,
                             {"client_kwargs.headers.Authorization": "DEEPLENS_TEST_HTTP_TOKEN"})
    assert fs.client_kwargs["headers"] == {"User-Agent": "deeplens", "Authorization": "Bearer t0ken"}
    assert options == {"client_kwargs": {"headers": {"User-Agent": "deeplens"}}}  # not modified
    assert root == "https://example.invalid/images/list.txt"


def test_secrets_never_in_repr_or_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPLENS_TEST_PW", "hunter2-secret")
    port = free_port()
    with pytest.raises(StorageError) as caught:
        check_reachable(f"sftp://u:inline-pw@127.0.0.1:{port}/x", {}, {"password": "DEEPLENS_TEST_PW"}, timeout=2)
    text = f"{caught.value} {caught.value!r}"
    assert "hunter2-secret" not in text and "inline-pw" not in text


# ------------------------------------------------------------------------- retries


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """A real HTTP server that answers 503 to the first `failures` GETs, 404 for /missing."""

    failures = 0
    gets: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).gets.append(self.path)
        if self.path == "/missing.jpg":
            self.send_error(404)
        elif len(type(self).gets) <= type(self).failures:
            self.send_error(503)
        else:
            body = TREE["a.jpg"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_http() -> Iterator[tuple[str, type[_FlakyHandler]]]:
    handler = type("Flaky", (_FlakyHandler,), {"gets": [], "failures": 2})
    with http_in_thread(handler) as url:
        yield url, handler


@pytest.mark.storage
def test_read_bytes_retries_5xx_but_not_404(flaky_http) -> None:
    base, handler = flaky_http
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    assert read_bytes(fs, f"{base}/a.jpg", retries=3, backoff_s=0.05) == TREE["a.jpg"]
    assert len(handler.gets) == 3  # two 503s, then the image
    handler.gets.clear()
    with pytest.raises(StorageNotFoundError, match="missing.jpg"):
        read_bytes(fs, f"{base}/missing.jpg", retries=3, backoff_s=0.05)
    assert handler.gets == ["/missing.jpg"]
    handler.gets.clear()
    handler.failures = 10
    with pytest.raises(StorageError, match="after 3 attempts.*temporary"):
        read_bytes(fs, f"{base}/a.jpg", retries=2, backoff_s=0.05)
    assert len(handler.gets) == 3


@pytest.mark.storage
def test_read_head_retries_like_read_bytes_and_cuts_an_ignored_range(flaky_http) -> None:
    base, handler = flaky_http
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    # This server ignores Range and sends the whole image: read_head still returns only the head.
    assert read_head(fs, f"{base}/a.jpg", 8, retries=3, backoff_s=0.05) == TREE["a.jpg"][:8]
    assert len(handler.gets) == 3  # two 503s, then the image
    handler.gets.clear()
    with pytest.raises(StorageNotFoundError, match="missing.jpg") as head_error:
        read_head(fs, f"{base}/missing.jpg", 8, retries=3, backoff_s=0.05)
    assert handler.gets == ["/missing.jpg"]
    with pytest.raises(StorageNotFoundError) as bytes_error:
        read_bytes(fs, f"{base}/missing.jpg", retries=3, backoff_s=0.05)
    assert str(head_error.value) == str(bytes_error.value)
    handler.gets.clear()
    handler.failures = 10
    with pytest.raises(StorageError, match="after 3 attempts.*temporary"):
        read_head(fs, f"{base}/a.jpg", 8, retries=2, backoff_s=0.05)
    assert len(handler.gets) == 3


@pytest.mark.parametrize("protocol", ["file", "memory"])
def test_read_head_reads_only_the_head(protocol: str, tmp_path: Path) -> None:
    data = os.urandom(1 << 20) * 32  # 32 MiB
    fs, root = open_location(str(tmp_path) if protocol == "file" else f"memory://head-{uuid.uuid4().hex[:8]}")
    path = f"{root}/big.jpg"
    fs.pipe_file(path, data)
    # Read after listing, as a scan does; for memory:// this also matters: the first look at a
    # piped object (info, or any read) makes its BytesIO copy the bytes it shared with `data`.
    assert [o.size_bytes for o in list_objects(fs, root)] == [len(data)]
    tracemalloc.start()
    try:
        head = read_head(fs, path, storage.SNIFF_BYTES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        fs.rm(root, recursive=True)
    assert head == data[: storage.SNIFF_BYTES]
    assert peak < 1 << 20  # the object was not read into memory


def test_read_head_needs_a_positive_n() -> None:
    fs, root = open_location("memory://head-n")
    with pytest.raises(ValueError, match="n >= 1"):
        read_head(fs, f"{root}/a.jpg", 0)


# ------------------------------------------------------------------------- pure functions

SNIFF_CASES = [
    (_image("JPEG"), "jpeg"), (_image("PNG"), "png"), (_image("GIF"), "gif"), (_image("WEBP"), "webp"),
    (_image("BMP"), "bmp"), (_image("TIFF"), "tiff"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "avif"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "heic"),
    (b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1", "heif"),
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41", None),  # an MP4
    (b"BM but not a bitmap", None), (b"", None), (b"<html>", None), (b"%PDF-1.7", None),
]


@pytest.mark.parametrize(("data", "expected"), SNIFF_CASES)
def test_sniff_image_type(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data[: storage.SNIFF_BYTES]) == expected


@pytest.mark.parametrize(("data", "expected"), SNIFF_CASES)
def test_sniff_from_read_head(data: bytes, expected: str | None) -> None:
    fs, root = open_location(f"memory://sniff-{uuid.uuid4().hex[:8]}")
    fs.pipe_file(f"{root}/object", data)
    try:
        head = read_head(fs, f"{root}/object", storage.SNIFF_BYTES)
    finally:
        fs.rm(root, recursive=True)
    assert head == data[: storage.SNIFF_BYTES]
    assert sniff_image_type(head) == expected


@pytest.mark.parametrize(("fmt", "signature_length"), [
    ("JPEG", 3), ("PNG", 8), ("GIF", 6), ("WEBP", 12), ("BMP", 18), ("TIFF", 4),
])
def test_sniff_needs_only_the_signature(fmt: str, signature_length: int) -> None:
    data = _image(fmt)
    assert sniff_image_type(data[:signature_length]) == fmt.lower()
    assert [sniff_image_type(data[:k]) for k in range(signature_length)] == [None] * signature_length


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("*.jpg", "a.jpg", True), ("*.jpg", "deep/er/a.jpg", True), ("*.jpg", "a.jpeg", False),
    ("nested/*", "nested/a.jpg", True), ("nested/*", "nested/deeper/a.jpg", False),
    ("nested/**", "nested/deeper/a.jpg", True), ("**/a.jpg", "a.jpg", True), ("**/a.jpg", "x/y/a.jpg", True),
    ("a/**/b.jpg", "a/b.jpg", True), ("a/**/b.jpg", "a/x/y/b.jpg", True), ("a/?.jpg", "a/b.jpg", True),
    ("a/?.jpg", "a/bb.jpg", False), ("[ab].jpg", "b.jpg", True), ("[!ab].jpg", "b.jpg", False),
    ("photos 2024/*.jpg", "photos 2024/ü x.jpg", True), ("/top.jpg", "top.jpg", True),
    (".*", ".hidden.jpg", True), ("(x).jpg", "(x).jpg", True),
])
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(compile_glob(pattern), path) is matches
