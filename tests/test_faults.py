"""Faults injected mid-scan: a server killed, a connection cut, a listing that fails half-way.

Each test checks what the user sees (exit status, the cause and the fix) and that a rerun once the
fault is gone leaves the index exactly equal to storage: every file indexed once, with the bytes
it has now, and nothing else."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from deeplens.config import Settings
from deeplens.connectors import storage
from deeplens.processes import Service, free_port, port_in_use
from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.schema.weaviate import IMAGE_COLLECTION
from deeplens.stack import MODULES_START_TIMEOUT, WEAVIATE_START_TIMEOUT, WeaviatePorts, modules_service, weaviate_service
from deeplens.weaviate_binary import resolve_weaviate_binary
from tests.cli import run, run_json, weaviate_client
from tests.conftest import WeaviateEndpoint
from tests.servers.plugin import StorageServer, running_seaweedfs
from tests.servers.process import ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.weaviate]


def images(count: int, start: int = 0) -> dict[str, bytes]:
    return {f"img{seed:03}.jpg": jpeg_bytes(synthetic_image(seed, (96, 64))) for seed in range(start, start + count)}


def write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def on_disk(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def indexed(endpoint: WeaviateEndpoint, location: str) -> dict[str, str]:
    """path -> content_sha256 of what the index holds for the location; a path twice fails."""
    with weaviate_client(endpoint) as client:
        rows = [o.properties for o in client.collections.use(IMAGE_COLLECTION).iterator(
            return_properties=["location", "path", "content_sha256"])]
    mine = [(row["path"], row["content_sha256"]) for row in rows if row["location"] == location]
    assert len(mine) == len(dict(mine)), "a path is indexed twice"
    return dict(mine)


def count(endpoint: WeaviateEndpoint) -> int:
    with weaviate_client(endpoint) as client:
        return client.collections.use(IMAGE_COLLECTION).aggregate.over_all(total_count=True).total_count


def scan_in_background(env: dict[str, str], name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deeplens", "scan", name, "--workers", "2"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def once_indexed(endpoint: WeaviateEndpoint, scan: subprocess.Popen, at_least: int) -> None:
    """Wait until the scan has stored its first chunks (and still runs)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and scan.poll() is None:
        if count(endpoint) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"the scan ended or stalled before {at_least} images were stored: {scan.communicate()}")


def killed(service: Service) -> None:
    """SIGKILL a service's process group, and wait until its ports are free: a killed process
    lets go of its sockets only once all of its threads are gone."""
    os.killpg(service.recorded()["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(port_in_use(host, port) for host, port in service.ports):
        assert time.monotonic() < deadline, f"{service.name} still holds its ports 20 s after SIGKILL"
        time.sleep(0.05)


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


@pytest.fixture
def own_weaviate(tmp_path, modules_url) -> Iterator[tuple]:
    """A Weaviate of this test's own, to kill: (service, endpoint)."""
    ports = WeaviatePorts(**{name: free_port() for name in WeaviatePorts.__dataclass_fields__})
    endpoint = WeaviateEndpoint("127.0.0.1", ports.http, ports.grpc, "fault-test-key")
    service = weaviate_service(resolve_weaviate_binary(Settings()), tmp_path / "weaviate", tmp_path / "run",
                               "127.0.0.1", ports, modules_url, endpoint.api_key)
    service.start()
    try:
        service.wait_ready(WEAVIATE_START_TIMEOUT)
        yield service, endpoint
    finally:
        service.stop()


def test_weaviate_killed_and_restarted_mid_scan(env, tmp_path, own_weaviate):
    service, endpoint = own_weaviate
    env = {**env, "DEEPLENS_WEAVIATE_URL": endpoint.url, "DEEPLENS_WEAVIATE_GRPC_PORT": str(endpoint.grpc_port),
           "DEEPLENS_WEAVIATE_API_KEY": endpoint.api_key}
    folder = tmp_path / "many"
    write(folder, images(20))
    run(env, "storage", "add", "many", str(folder))
    run(env, "scan", "many")
    # The killed scan has new, changed and deleted files to handle.
    write(folder, images(180, 20))
    write(folder, {f"img{seed:03}.jpg": jpeg_bytes(synthetic_image(1000 + seed, (96, 64))) for seed in range(5)})
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


def index_of(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def remote_location(env: dict[str, str], server: StorageServer, name: str) -> dict[str, str]:
    """Registers `name` at the server's sub-location `name`; the env with its secrets."""
    env = {**env, **{f"DEEPLENS_TEST_{key.upper()}": value for key, value in server.credentials.items()}}
    args = ["storage", "add", name, server.child(name)]
    for key, value in server.options.items():
        args += ["--option", f"{key}={value}"]
    for key in server.credentials:
        args += ["--credentials-env", f"{key}=DEEPLENS_TEST_{key.upper()}"]
    run(env, *args)
    return env


def failing_after(monkeypatch, reads: int, fault) -> None:
    """Inject `fault(fs)` once, after `reads` files of the scan were read."""
    real, done, lock = storage.read_bytes, [], threading.Lock()

    def read_bytes(fs, path, *args, **kwargs):
        with lock:
            done.append(path)
            if len(done) == reads + 1:
                fault(fs)
        return real(fs, path, *args, **kwargs)

    monkeypatch.setattr(storage, "read_bytes", read_bytes)


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
    try:
        fs.invalidate_cache()
        fs.ls(root)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False

