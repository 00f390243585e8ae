"""Faults injected mid-scan: a server killed or stopped, a connection cut, a listing that fails half-way,
a full disk.

Each test checks what the user sees (exit status, the cause and the fix) and that a rerun once the
fault is gone leaves the index exactly equal to storage: every file indexed once, with the bytes
it has now, and nothing else."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import fsspec
import pytest
from elasticsearch import Elasticsearch
from elasticsearch import helpers as es_helpers
from fsspec.implementations.local import LocalFileSystem

import deeplens.ingest.bulk
from deeplens.config import Settings
from deeplens.connectors import storage
from deeplens.processes import free_port
from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.schema.elasticsearch import IMAGES_ALIAS
from deeplens.stack import MODULES_START_TIMEOUT, WEAVIATE_START_TIMEOUT, modules_service
from tests.cli import run, run_json
from tests.esnode import harness
from tests.scanning import (count, images, index_of, indexed, killed, on_disk, once_indexed, remote_location,
                            scan_in_background, write)
from tests.servers.plugin import (INSTALL_HINT, StorageServer, openssh_installed, running_seaweedfs, running_smbd,
                                  running_sshd)
from tests.servers.process import ServerProcess, drop_connections, pause, resume
from tests.weaviate_server import running_weaviate

pytestmark = [pytest.mark.faults, pytest.mark.weaviate]


def test_a_listing_that_fails_half_way_deletes_nothing(env, tmp_path, weaviate, monkeypatch):
    folder = tmp_path / "photos"
    write(folder, {f"{sub}/{name}": data for sub, batch in (("a", images(3)), ("b", images(3, 3)))
                   for name, data in batch.items()})
    run(env, "storage", "add", "photos", str(folder))
    run(env, "scan", "photos")
    before = indexed(weaviate, "photos")
    assert before == on_disk(folder)
    (folder / "a" / "img000.jpg").unlink()

    # Folder b cannot be listed (as an unreadable folder, or one on a share that went away).
    real_ls = LocalFileSystem.ls

    def ls(self, path, *args, **kwargs):
        if path.rstrip("/").endswith("/b"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_ls(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "ls", ls)
    failed = run(env, "scan", "photos", ok=False)
    assert failed.exit_code == 1
    assert "permission denied while listing" in failed.stderr and "grant read and list rights" in failed.stderr
    assert "run `deeplens scan photos` again" in failed.stderr
    assert indexed(weaviate, "photos") == before, "the records of the unlisted folder b were kept"

    monkeypatch.undo()
    [rerun] = run_json(env, "scan", "photos")
    assert (rerun["deleted"], rerun["errors"]) == (1, 0)
    assert indexed(weaviate, "photos") == on_disk(folder)


def test_module_server_killed_mid_scan(env, tmp_path, weaviate):
    folder = tmp_path / "many"
    write(folder, images(200))
    port = free_port()
    modules = modules_service(tmp_path / "modules", "127.0.0.1", port, "offline", Settings().cache_dir)
    env = {**env, "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{port}"}  # Weaviate's vectorizer calls it too
    try:
        modules.start()
        modules.wait_ready(MODULES_START_TIMEOUT)
        run(env, "storage", "add", "many", str(folder))
        scan = scan_in_background(env, "many")
        once_indexed(weaviate, scan, 32)
        killed(modules)
        _, stderr = scan.communicate(timeout=120)
        assert scan.returncode == 1, stderr
        assert f"module server at http://127.0.0.1:{port} failed" in stderr and "deeplens status" in stderr
        assert "Traceback" not in stderr
        assert 0 < count(weaviate) < 200

        modules.start()
        modules.wait_ready(MODULES_START_TIMEOUT)
        [rerun] = run_json(env, "scan", "many")
        assert rerun["errors"] == 0 and rerun["new"] + rerun["unchanged"] == 200
        assert indexed(weaviate, "many") == on_disk(folder)
    finally:
        modules.stop()


def test_weaviate_killed_and_restarted_mid_scan(env, tmp_path, modules_url):
    with running_weaviate(tmp_path, modules_url) as own:  # a Weaviate of this test's own, to kill
        service, endpoint = own.service, own.endpoint
        env = {**env, **endpoint.env()}
        folder = tmp_path / "many"
        write(folder, images(20))
        run(env, "storage", "add", "many", str(folder))
        run(env, "scan", "many")
        # The killed scan has new, changed and deleted files to handle.
        write(folder, images(180, 20))
        write(folder, images(5, changed=True))
        (folder / "img019.jpg").unlink()

        scan = scan_in_background(env, "many")
        once_indexed(endpoint, scan, 20 + 32)
        killed(service)
        service.start()
        service.wait_ready(WEAVIATE_START_TIMEOUT)
        _, stderr = scan.communicate(timeout=180)
        # The scan rides out a restart within its retries (the client's and DeepLens', ~30 s); past
        # them it stops, and says so.
        assert scan.returncode == 0 or (f"Weaviate at {endpoint.url} failed" in stderr and "deeplens status" in stderr)
        assert "Traceback" not in stderr

        [rerun] = run_json(env, "scan", "many")
        assert rerun["errors"] == 0
        assert indexed(endpoint, "many") == on_disk(folder)


@pytest.fixture(scope="module")
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, StorageServer]]:
    """An S3 store of this module's own, to stop and start again."""
    with running_seaweedfs(tmp_path_factory.mktemp("own-s3")) as (proc, server):
        yield proc, server


def failing_after(monkeypatch, calls: int, fault, module=storage, name: str = "read_bytes") -> None:
    """Inject `fault(first argument)` once, after `calls` calls of `module.name` (by default: after
    `calls` files of the scan were read)."""
    real, done, lock = getattr(module, name), [], threading.Lock()

    def failing(first, *args, **kwargs):
        with lock:
            done.append(first)
            if len(done) == calls + 1:
                fault(first)
        return real(first, *args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def test_s3_stopped_mid_listing_and_mid_read(env, weaviate, own_s3, monkeypatch):
    proc, server = own_s3
    # Each attempt fails at once while the server is down; DeepLens' own retries still apply.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **server.storage_options)
    root = server.child("photos").removeprefix("s3://")
    files = images(12)
    fs.pipe({f"{root}/{name}": data for name, data in files.items()})
    env = remote_location(env, server, "photos")
    run(env, "scan", "photos")
    before = indexed(weaviate, "photos")
    assert before == index_of(files)
    files |= images(12, 12) | {"img000.jpg": jpeg_bytes(synthetic_image(999, (96, 64)))}
    fs.pipe({f"{root}/{name}": data for name, data in files.items()})
    fs.rm(f"{root}/img001.jpg")
    del files["img001.jpg"]

    def crash(_fs=None) -> None:
        """SIGKILL: all of SeaweedFS goes at once (SIGTERM leaves its S3 gateway answering 500s a while)."""
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.stop()  # reaps it

    def restart() -> None:
        proc.start()
        proc.wait_port("127.0.0.1", server.port, timeout=60)
        deadline = time.monotonic() + 60
        while not _answers(fs, root):
            assert time.monotonic() < deadline, "SeaweedFS did not serve again within 60 s"
            time.sleep(0.2)

    real_list = storage.list_objects

    def list_after_stop(*args, **kwargs):
        crash()
        yield from real_list(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(storage, "list_objects", list_after_stop)
        failed = run(env, "scan", "photos", ok=False)
    assert failed.exit_code == 1 and "is unreachable" in failed.stderr and "Check that the server runs" in failed.stderr
    assert indexed(weaviate, "photos") == before
    restart()

    with monkeypatch.context() as patch:
        failing_after(patch, 4, crash)
        failed = run(env, "scan", "photos", "--workers", "2", ok=False)
    # Refused (unreachable) or cut mid-transfer (a temporary error), depending on the moment.
    assert failed.exit_code == 1 and "after 4 attempts" in failed.stderr, failed.stderr
    assert "img001.jpg" in indexed(weaviate, "photos"), "nothing is deleted by a scan that stopped"
    restart()

    [rerun] = run_json(env, "scan", "photos")
    assert (rerun["errors"], rerun["deleted"]) == (0, 1)
    assert indexed(weaviate, "photos") == index_of(files)


def _answers(fs, root: str) -> bool:
    """Whether SeaweedFS serves `root` again: lists it and reads an object. After a SIGKILL its
    listing comes back before its volume server has registered again, and reads answer
    InternalError a while longer."""
    try:
        fs.invalidate_cache()
        names = fs.ls(root)
        if names:
            fs.cat_file(names[0])
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


@pytest.fixture(scope="module")
def own_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, StorageServer, Path]]:
    """An sshd of this module's own, whose connections are cut: (process, server, its data dir)."""
    if not openssh_installed():
        pytest.skip(f"OpenSSH sshd is not installed: {INSTALL_HINT}")
    root = tmp_path_factory.mktemp("own-sftp")
    (root / "data").mkdir()
    with running_sshd(root, root / "data", secrets.token_hex(12)) as (proc, server):
        yield proc, server, root / "data"


@pytest.fixture(scope="module")
def own_smb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, StorageServer, Path]]:
    """An smbd of this module's own, whose connections are cut: (process, server, its share's folder)."""
    with running_smbd(tmp_path_factory.mktemp("own-smb")) as (proc, server):
        yield proc, server, server.local_dir


@pytest.mark.parametrize("protocol", ["sftp", "smb"])
def test_connection_dropped_mid_read(env, weaviate, protocol, request, monkeypatch):
    """SFTP and SMB keep one connection per scan: one that drops is opened again; a server that
    stopped stops the scan."""
    proc, server, share = request.getfixturevalue(f"own_{protocol}")
    folder = share / "photos"
    write(folder, images(12))
    env = remote_location(env, server, "photos")

    # The connection serving the scan is cut while it reads: the retry opens a new one.
    cut: list[int] = []
    with monkeypatch.context() as patch:
        failing_after(patch, 4, lambda _fs: cut.append(drop_connections(proc, server.port)))
        [summary] = run_json(env, "scan", "photos")
    errors = run(env, "scan", "--errors", "photos").output
    assert cut[0] > 0 and (summary["new"], summary["errors"]) == (12, 0), errors
    assert indexed(weaviate, "photos") == on_disk(folder)

    # The stopped scan has new, changed and deleted files to handle.
    write(folder, images(12, 12) | {"img000.jpg": jpeg_bytes(synthetic_image(999, (96, 64)))})
    (folder / "img001.jpg").unlink()

    def stop(_fs) -> None:
        drop_connections(proc, server.port)  # sshd's per-connection children leave its process group
        proc.stop()

    with monkeypatch.context() as patch:
        failing_after(patch, 4, stop)
        failed = run(env, "scan", "photos", ok=False)
    assert failed.exit_code == 1 and "is unreachable after 4 attempts" in failed.stderr, failed.stderr
    assert "Check that the server runs" in failed.stderr and "run `deeplens scan photos` again" in failed.stderr
    assert "img001.jpg" in indexed(weaviate, "photos"), "nothing is deleted by a scan that stopped"
    proc.start()
    proc.wait_port("127.0.0.1", server.port)

    [rerun] = run_json(env, "scan", "photos")
    assert (rerun["errors"], rerun["deleted"]) == (0, 1)
    assert indexed(weaviate, "photos") == on_disk(folder)


@pytest.fixture
def fresh_smb(tmp_path) -> Iterator[tuple[ServerProcess, StorageServer, Path]]:
    """An smbd of this test's own: smbclient keeps one connection per server and process, with the
    timeout of the location that opened it first, so a server other tests used keeps theirs."""
    (tmp_path / "smb").mkdir()
    with running_smbd(tmp_path / "smb") as (proc, server):
        yield proc, server, server.local_dir


@pytest.mark.parametrize(("server_fixture", "cause"), [
    ("own_sftp", "No existing session"),  # paramiko: the new connection's handshake got no answer
    ("fresh_smb", "Connection timeout of 2.0 seconds exceeded"),
])
def test_a_server_that_stops_answering_stops_the_scan(env, weaviate, server_fixture, cause, request, monkeypatch):
    """A server that keeps its connections open but answers nothing (hung, or the link went dead):
    paramiko and smbprotocol would wait for ever; each request now waits the location's `timeout`
    option, the reads are retried, and the scan stops with the cause instead of hanging."""
    proc, server, share = request.getfixturevalue(server_fixture)
    folder = share / "stalled"
    write(folder, images(8))
    env = remote_location(env, replace(server, options={**server.options, "timeout": "2"}), "stalled")
    paused: list[list[int]] = []
    try:
        with monkeypatch.context() as patch:
            failing_after(patch, 3, lambda _fs: paused.append(pause(proc)))
            started = time.monotonic()
            failed = run(env, "scan", "stalled", ok=False)
        assert paused and time.monotonic() - started < 60, "the scan waited past its timeouts"
    finally:
        for pids in paused:
            resume(pids)
    assert failed.exit_code == 1 and "is unreachable after 4 attempts" in failed.stderr, failed.stderr
    assert cause in failed.stderr and "run `deeplens scan stalled` again" in failed.stderr, failed.stderr

    # With SMB, the requests that timed out opened their files once the server answered again, on a
    # connection this process still holds: the files stay open there, and the rerun reads them all the same.
    [rerun] = run_json(env, "scan", "stalled")
    assert rerun["errors"] == 0, run(env, "scan", "--errors", "stalled").output
    assert indexed(weaviate, "stalled") == on_disk(folder)


@pytest.fixture
def own_elasticsearch(tmp_path) -> Iterator[harness.ElasticsearchNode]:
    """An Elasticsearch node of this test's own, whose data outlives a stop and a start."""
    reason = harness.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    node = harness.ElasticsearchNode(home=tmp_path / "es-home")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def in_elasticsearch(es: Elasticsearch, location: str) -> dict[str, str]:
    """path -> content_sha256 of the documents Elasticsearch holds for the location; a path twice fails."""
    es.indices.refresh(index=IMAGES_ALIAS)
    query = {"query": {"term": {"location": location}}, "_source": ["path", "content_sha256"]}
    docs = [hit["_source"] for hit in es_helpers.scan(es, index=IMAGES_ALIAS, query=query)]
    by_path = {doc["path"]: doc["content_sha256"] for doc in docs}
    assert len(by_path) == len(docs), "a path is indexed twice"
    return by_path


@pytest.mark.slow
@pytest.mark.elasticsearch
def test_elasticsearch_stopped_mid_bulk(env, tmp_path, weaviate, own_elasticsearch, monkeypatch):
    node = own_elasticsearch
    es = Elasticsearch(node.url)
    env = {**env, "DEEPLENS_ES_URL": node.url}
    folder = tmp_path / "many"
    write(folder, images(20))
    run(env, "es", "setup", "--mode", "precomputed")
    run(env, "storage", "add", "many", str(folder))
    run(env, "scan", "many")
    # The stopped scan has new, changed and deleted files to handle.
    write(folder, images(60, 20) | images(5, changed=True))
    (folder / "img019.jpg").unlink()

    with monkeypatch.context() as patch:  # stopped once the first chunk of the scan is in
        failing_after(patch, 1, lambda _es: node.stop(), module=deeplens.ingest.bulk, name="index_records")
        failed = run(env, "scan", "many", ok=False)
    assert failed.exit_code == 1, failed.output
    assert f"Elasticsearch at {node.url} failed" in failed.stderr and "after 4 attempts" in failed.stderr
    assert "Check that it runs" in failed.stderr and "Traceback" not in failed.stderr
    assert "img019.jpg" in indexed(weaviate, "many"), "nothing is deleted by a scan that stopped"

    node.start()  # at the same URL (a kept home keeps its port), with the same data
    [rerun] = run_json(env, "scan", "many")
    assert (rerun["errors"], rerun["deleted"]) == (0, 1)
    assert indexed(weaviate, "many") == on_disk(folder)
    assert in_elasticsearch(es, "many") == on_disk(folder)


@pytest.fixture
def small_data_dir(tmp_path) -> Iterator[Path]:
    """A data dir on a 64 MiB tmpfs, to fill up (we run as root, also in CI)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(data_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip()}); needs root")
    try:
        yield data_dir
    finally:
        subprocess.run(["umount", "--lazy", str(data_dir)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` up to its last byte; returns the filler to delete."""
    filler = folder / "filler"
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(b"\0" * 1024 * 1024)
                file.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_disk_full_on_the_data_dir(env, tmp_path, small_data_dir, modules_url):
    # Weaviate's data where `deeplens up` keeps it for this data dir: small_data_dir / "weaviate".
    with running_weaviate(small_data_dir, modules_url) as own:
        endpoint = own.endpoint
        env = {**env, "DEEPLENS_DATA_DIR": str(small_data_dir), **endpoint.env()}
        folder = tmp_path / "photos"
        write(folder, images(10))
        run(env, "storage", "add", "photos", str(folder))
        run(env, "scan", "photos")
        filler = fill(small_data_dir)
        write(folder, images(40, 10))
        (folder / "img000.jpg").unlink()

        failed = run(env, "scan", "photos", ok=False)
        assert failed.exit_code == 1, failed.output
        assert f"no space left on the disk of {small_data_dir / 'weaviate'}" in failed.stderr
        assert "Free space there, or move the data dir" in failed.stderr and "DEEPLENS_DATA_DIR" in failed.stderr
        assert "Traceback" not in failed.stderr
        assert "img000.jpg" in indexed(endpoint, "photos"), "nothing is deleted by a scan that stopped"

        filler.unlink()
        [rerun] = run_json(env, "scan", "photos")
        assert (rerun["errors"], rerun["deleted"]) == (0, 1)
        assert indexed(endpoint, "photos") == on_disk(folder)


def test_a_weaviate_timeout_is_blamed_on_weaviate_not_the_module_server():
    # weaviate-client's HTTP side is httpx too: its timeout is a WeaviateTimeoutError raised from an
    # httpx.ReadTimeout (weaviate/connect/v4.py:699-700), and must not read as the module server failing.
    import click
    import httpx
    from weaviate.exceptions import WeaviateTimeoutError

    from deeplens.connectors.cli.scan import _stopped

    def raised(make) -> Exception:
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the chain is what is under test
            return exc
        raise AssertionError("nothing raised")

    def weaviate_timeout():
        try:
            raise httpx.ReadTimeout("timed out")
        except httpx.ReadTimeout as exc:
            raise WeaviateTimeoutError("The request to Weaviate timed out while awaiting a response.") from exc

    def modules_refused():
        raise httpx.ConnectError("[Errno 111] Connection refused")

    settings = Settings(weaviate_url="http://127.0.0.1:8080", modules_url="http://127.0.0.1:8090")
    with click.Context(click.Command("scan"), obj=settings):
        assert "Weaviate at http://127.0.0.1:8080 failed" in _stopped("photos", raised(weaviate_timeout))
        assert "module server at http://127.0.0.1:8090 failed" in _stopped("photos", raised(modules_refused))
