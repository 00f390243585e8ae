"""A Weaviate of a test's own (the real binary, on free loopback ports), and emptying a database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import weaviate
from weaviate.classes.init import Auth

from deeplens.config import WEAVIATE_VERSION, Settings
from deeplens.processes import Service, free_port
from deeplens.schema.weaviate import IMAGE_COLLECTION, LOCATION_COLLECTION, SKIPPED_COLLECTION
from deeplens.stack import WEAVIATE_START_TIMEOUT, WeaviatePorts, weaviate_service
from deeplens.weaviate_binary import resolve_weaviate_binary

DEEPLENS_COLLECTIONS = (IMAGE_COLLECTION, LOCATION_COLLECTION, SKIPPED_COLLECTION)


@dataclass(frozen=True)
class WeaviateEndpoint:
    host: str
    http_port: int
    grpc_port: int
    api_key: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def env(self) -> dict[str, str]:
        """The DEEPLENS_* settings that point the CLI at this Weaviate."""
        return {"DEEPLENS_WEAVIATE_URL": self.url, "DEEPLENS_WEAVIATE_GRPC_PORT": str(self.grpc_port),
                "DEEPLENS_WEAVIATE_API_KEY": self.api_key}


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


@dataclass(frozen=True)
class RunningWeaviate:
    service: Service  # to kill and start again
    endpoint: WeaviateEndpoint  # plain HTTP
    tls_port: int | None  # HTTPS, where started with tls


@contextmanager
def running_weaviate(root: Path, modules_url: str | None, *, version: str = WEAVIATE_VERSION,
                     tls: TlsFiles | None = None, env: dict[str, str] | None = None,
                     api_key: str | None = None) -> Iterator[RunningWeaviate]:
    """A real Weaviate of `version` with API-key authentication, keeping its data in root/weaviate and
    its log and state in root/run (where `deeplens up` keeps them for the data dir root).
    modules_url None: no modules at all; tls: HTTPS on a port of its own besides plain HTTP, and gRPC
    over TLS only; env: more of Weaviate's settings."""
    api_key = api_key or secrets.token_urlsafe(16)
    binary = resolve_weaviate_binary(Settings(), progress=print, version=version)
    ports = WeaviatePorts(**{name: free_port() for name in WeaviatePorts.__dataclass_fields__})
    service = weaviate_service(binary, root / "weaviate", root / "run", "127.0.0.1", ports,
                               modules_url or "http://127.0.0.1:1", api_key)
    service.version = version
    if modules_url is None:  # what a Weaviate that offers no custom-URL modules looks like
        for name in ("ENABLE_MODULES", "CLIP_INFERENCE_API", "IMAGE_INFERENCE_API"):
            del service.env[name]
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        service.argv += ["--scheme", "https", "--tls-host", "127.0.0.1", "--tls-port", str(tls_port),
                         "--tls-certificate", str(tls.certificate), "--tls-key", str(tls.key)]
        service.env.update(GRPC_CERT_FILE=str(tls.certificate), GRPC_KEY_FILE=str(tls.key))
    service.env.update(env or {})
    service.start()
    try:
        service.wait_ready(WEAVIATE_START_TIMEOUT)
        yield RunningWeaviate(service, WeaviateEndpoint("127.0.0.1", ports.http, ports.grpc, api_key), tls_port)
    finally:
        service.stop()


def delete_deeplens_collections(endpoint: WeaviateEndpoint) -> None:
    """An empty DeepLens database on `endpoint`."""
    # Deleting is REST only; skipping the client's gRPC check reaches a Weaviate whose gRPC is TLS-only too.
    with weaviate.connect_to_local(host=endpoint.host, port=endpoint.http_port, grpc_port=endpoint.grpc_port,
                                   auth_credentials=Auth.api_key(endpoint.api_key), skip_init_checks=True) as client:
        for name in DEEPLENS_COLLECTIONS:
            client.collections.delete(name)
