"""Session fixtures that start real servers on free loopback ports and stop them afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deeplens.config import Settings
from deeplens.processes import free_port
from deeplens.stack import MODULES_START_TIMEOUT, modules_service
from tests.weaviate_server import WeaviateEndpoint, delete_deeplens_collections, running_weaviate

pytest_plugins = ["tests.esnode.plugin", "tests.servers.plugin"]


@contextmanager
def running_modules_server(run_dir: Path, *extra_args: str, profile: str = "offline") -> Iterator[str]:
    """A real module server process (by default the offline profile, the real shipped MobileNetV2 weights)."""
    port = free_port()
    service = modules_service(run_dir, "127.0.0.1", port, profile, Settings().cache_dir, extra_args)
    service.start()
    try:
        service.wait_ready(MODULES_START_TIMEOUT)
        yield f"http://127.0.0.1:{port}"
    finally:
        service.stop()


@pytest.fixture(scope="session")
def modules_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_modules_server(tmp_path_factory.mktemp("modules")) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A module server started with DEEPLENS_MODULES_API_KEY set: (url, key)."""
    key = secrets.token_urlsafe(16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPLENS_MODULES_API_KEY", key)  # the server process inherits it
        with running_modules_server(tmp_path_factory.mktemp("keyed-modules")) as url:
            patch.delenv("DEEPLENS_MODULES_API_KEY")
            yield url, key


@pytest.fixture(scope="session")
def weaviate(tmp_path_factory: pytest.TempPathFactory, modules_url: str) -> Iterator[WeaviateEndpoint]:
    """A real Weaviate: the local binary (default) or, with DEEPLENS_TEST_WEAVIATE=docker, the image.
    Like the embedded stack's, it refuses requests without its API key."""
    api_key = secrets.token_urlsafe(16)
    if os.environ.get("DEEPLENS_TEST_WEAVIATE") == "docker":
        yield from _weaviate_container(modules_url, api_key)
        return
    with running_weaviate(tmp_path_factory.mktemp("weaviate"), modules_url, api_key=api_key) as own:
        yield own.endpoint


def _weaviate_container(modules_url: str, api_key: str) -> Iterator[WeaviateEndpoint]:
    from deeplens.config import WEAVIATE_VERSION

    try:  # the engine itself must answer, as `make test-containers` checks: a docker binary alone is not enough
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no client library, no socket, no daemon
        pytest.skip(f"DEEPLENS_TEST_WEAVIATE=docker needs a reachable Docker engine (start it or set DOCKER_HOST): "
                    f"{type(exc).__name__}: {exc}")
    from testcontainers.weaviate import WeaviateContainer

    # The container reaches the module server on the host through host networking.
    env = {"ENABLE_MODULES": "multi2vec-clip,img2vec-neural", "CLIP_INFERENCE_API": modules_url,
           "IMAGE_INFERENCE_API": modules_url, "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
           "AUTHENTICATION_APIKEY_ENABLED": "true", "AUTHENTICATION_APIKEY_ALLOWED_KEYS": api_key,
           "AUTHENTICATION_APIKEY_USERS": "deeplens"}
    container = WeaviateContainer(image=f"cr.weaviate.io/semitechnologies/weaviate:{WEAVIATE_VERSION}", env_vars=env)
    # Untested here (no Docker engine on these machines): host networking, so Weaviate's own ports.
    with container.with_kwargs(network_mode="host"):
        yield WeaviateEndpoint("127.0.0.1", 8080, 50051, api_key)


@pytest.fixture
def env(weaviate: WeaviateEndpoint, modules_url: str, tmp_path) -> dict[str, str]:
    """DEEPLENS_* settings pointing at the test servers, with an empty database."""
    delete_deeplens_collections(weaviate)
    return {
        "DEEPLENS_DATA_DIR": str(tmp_path / "data"),
        **weaviate.env(),
        "DEEPLENS_MODULES_URL": modules_url,
    }
