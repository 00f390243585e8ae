"""Session fixtures that start real servers on free loopback ports and stop them afterwards."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deeplens.config import Settings
from deeplens.processes import free_port
from deeplens.stack import (
    MODULES_START_TIMEOUT,
    WEAVIATE_START_TIMEOUT,
    WeaviatePorts,
    modules_service,
    weaviate_service,
)
from deeplens.weaviate_binary import resolve_weaviate_binary

pytest_plugins = ["tests.esnode.plugin"]


@dataclass(frozen=True)
class WeaviateEndpoint:
    host: str
    http_port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


@pytest.fixture(scope="session")
def modules_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real module server process, offline profile with the real shipped MobileNetV2 weights."""
    port = free_port()
    service = modules_service(
        tmp_path_factory.mktemp("modules"), "127.0.0.1", port, "offline", Settings().cache_dir,
        ("--max-wait-ms", "2"),
    )
    service.start()
    try:
        service.wait_ready(MODULES_START_TIMEOUT)
        yield f"http://127.0.0.1:{port}"
    finally:
        service.stop()


@pytest.fixture(scope="session")
def weaviate(tmp_path_factory: pytest.TempPathFactory, modules_url: str) -> Iterator[WeaviateEndpoint]:
    """A real Weaviate: the local binary (default) or, with DEEPLENS_TEST_WEAVIATE=docker, the image."""
    if os.environ.get("DEEPLENS_TEST_WEAVIATE") == "docker":
        yield from _weaviate_container()
        return
    root = tmp_path_factory.mktemp("weaviate")
    binary = resolve_weaviate_binary(Settings(), progress=print)
    ports = WeaviatePorts(**{name: free_port() for name in WeaviatePorts.__dataclass_fields__})
    service = weaviate_service(binary, root / "data", root / "run", "127.0.0.1", ports, modules_url)
    service.start()
    try:
        service.wait_ready(WEAVIATE_START_TIMEOUT)
        yield WeaviateEndpoint("127.0.0.1", ports.http, ports.grpc)
    finally:
        service.stop()


def _weaviate_container() -> Iterator[WeaviateEndpoint]:
    from deeplens.config import WEAVIATE_VERSION

    if shutil.which("docker") is None:
        pytest.skip("DEEPLENS_TEST_WEAVIATE=docker needs a Docker engine; none is installed")
    from testcontainers.weaviate import WeaviateContainer

    with WeaviateContainer(image=f"cr.weaviate.io/semitechnologies/weaviate:{WEAVIATE_VERSION}") as container:
        host = container.get_container_host_ip()
        yield WeaviateEndpoint(host, int(container.get_exposed_port(8080)), int(container.get_exposed_port(50051)))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
