"""What scan tests are made of: sample images written to storage, what storage and the index hold
(path -> SHA-256, to compare), a scan run as a process in the background, and a service killed
under it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deeplens.processes import Service, port_in_use
from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.schema.weaviate import IMAGE_COLLECTION
from tests.cli import run, weaviate_client
from tests.servers.plugin import StorageServer
from tests.weaviate_server import WeaviateEndpoint


def images(count: int, start: int = 0, changed: bool = False) -> dict[str, bytes]:
    """img{start}.jpg on, each a picture of its own; `changed`: other pictures under the same names."""
    return {f"img{seed:03}.jpg": jpeg_bytes(synthetic_image(1000 * changed + seed, (96, 64)))
            for seed in range(start, start + count)}


def write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def on_disk(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def index_of(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


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
