"""Settings shared by every DeepLens command: environment variables DEEPLENS_* or CLI options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deeplens.modules.profiles import DEFAULT_PROFILE, get_profile

# The one place the Weaviate version is pinned. v1.39.3 is the newest 1.39 release whose
# dependencies are all served by the Go module proxy (1.39.4+ need sroar versions it lacks).
WEAVIATE_VERSION = "1.39.3"
# The oldest release tested (tests/test_weaviate_existing.py, marker older_weaviate): the oldest the Go
# module proxy serves that builds with Go 1.26.
OLDEST_TESTED_WEAVIATE = "1.35.2"
# Host names of Weaviate Cloud clusters, whose gRPC API has a host of its own.
WEAVIATE_CLOUD_DOMAINS = (".weaviate.cloud", ".weaviate.network")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPLENS_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("deeplens")),
        description="State of the embedded stack (Weaviate data, pid and log files).",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("deeplens")),
        description="Built or downloaded binaries and weights, shared by all data dirs.",
    )
    weaviate_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Weaviate's HTTP URL; a Weaviate Cloud URL (https://<cluster>.weaviate.cloud) implies its gRPC address.",
    )
    weaviate_grpc_host: str | None = Field(
        default=None, description="gRPC host when it is not the HTTP host (a proxy, a separate ingress)."
    )
    weaviate_grpc_port: int = Field(default=50051, description="gRPC port (443 for a Weaviate Cloud URL unless set).")
    weaviate_bin: Path | None = Field(default=None, description="Use this weaviate-server binary.")
    weaviate_api_key: SecretStr | None = Field(
        default=None, description="Weaviate API key; unset: the key `deeplens up` generated in the data dir, if any."
    )
    weaviate_api_key_file: Path | None = Field(default=None, description="A file holding the Weaviate API key.")
    weaviate_oidc_client_secret: SecretStr | None = Field(
        default=None, description="OIDC client-credentials secret (the client id comes from Weaviate's OIDC settings)."
    )
    weaviate_oidc_client_secret_file: Path | None = Field(default=None, description="A file holding that secret.")
    weaviate_oidc_scope: str | None = Field(default=None, description="OIDC scopes, space-separated.")
    weaviate_ca_file: Path | None = Field(default=None, description="CA file (PEM) for a Weaviate with TLS.")
    weaviate_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers (and gRPC metadata) for Weaviate, as a JSON object."
    )
    weaviate_replication_factor: int | None = Field(
        default=None, ge=1,
        description="Copies of each object that new DeepLens collections keep on a Weaviate cluster "
                    "(unset: Weaviate's default, one).",
    )
    es_url: str | None = None
    es_api_key: SecretStr | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: Path | None = Field(default=None, description="CA file for an Elasticsearch with TLS.")
    modules_url: str = "http://127.0.0.1:8090"
    modules_api_key: SecretStr | None = Field(
        default=None, description="Bearer key the module server requires on every route but /.well-known/*."
    )
    profile: str = Field(
        default=DEFAULT_PROFILE, description="Model profile of the module server `deeplens up` starts."
    )
    random_weights: bool = Field(default=False, description="Untrained weights (plumbing tests only).")
    log_format: Literal["text", "json"] = Field(default="text", description="Log lines as text or as JSON objects.")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, name: str) -> str:
        return get_profile(name).name

    @property
    def weaviate_data_path(self) -> Path:
        """Where the single Weaviate that `deeplens up` starts keeps its data."""
        return self.data_dir / "weaviate"

    @property
    def weaviate_key_path(self) -> Path:
        """Where `deeplens up` keeps the API key of the Weaviate it starts (mode 0600)."""
        return self.data_dir / "weaviate-api-key"

    def weaviate_key(self) -> str | None:
        """The key to send to Weaviate: DEEPLENS_WEAVIATE_API_KEY, else DEEPLENS_WEAVIATE_API_KEY_FILE,
        else the embedded stack's key."""
        explicit = _secret(self.weaviate_api_key, self.weaviate_api_key_file, "DEEPLENS_WEAVIATE_API_KEY_FILE")
        if explicit is not None:
            return explicit
        try:
            return self.weaviate_key_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def weaviate_oidc_secret(self) -> str | None:
        return _secret(self.weaviate_oidc_client_secret, self.weaviate_oidc_client_secret_file,
                       "DEEPLENS_WEAVIATE_OIDC_CLIENT_SECRET_FILE")

    @property
    def weaviate_host(self) -> str:
        return urlsplit(self.weaviate_url).hostname or "127.0.0.1"

    @property
    def weaviate_secure(self) -> bool:
        return urlsplit(self.weaviate_url).scheme == "https"

    @property
    def weaviate_port(self) -> int:
        return urlsplit(self.weaviate_url).port or (443 if self.weaviate_secure else 8080)

    @property
    def weaviate_cloud(self) -> bool:
        return self.weaviate_host.endswith(WEAVIATE_CLOUD_DOMAINS)

    @property
    def weaviate_grpc_address(self) -> tuple[str, int]:
        """(host, port) of Weaviate's gRPC API. A Weaviate Cloud cluster serves it on 443 of a host
        of its own, named the way weaviate-client's connect_to_weaviate_cloud names it
        (weaviate/connect/helpers.py, __parse_weaviate_cloud_cluster_url)."""
        host, port = self.weaviate_grpc_host, self.weaviate_grpc_port
        if self.weaviate_cloud:
            if host is None:
                ident, domain = self.weaviate_host.split(".", 1)
                host = f"{ident}.grpc.{domain}" if domain == "weaviate.network" else f"grpc-{self.weaviate_host}"
            if "weaviate_grpc_port" not in self.model_fields_set:
                port = 443
        return host or self.weaviate_host, port

    @property
    def modules_host(self) -> str:
        return urlsplit(self.modules_url).hostname or "127.0.0.1"

    @property
    def modules_port(self) -> int:
        return urlsplit(self.modules_url).port or 8090


def _secret(value: SecretStr | None, path: Path | None, file_variable: str) -> str | None:
    """A secret given directly, else read from a file (a mounted Kubernetes or Docker secret)."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        return path.expanduser().read_text().strip() or None
    except OSError as exc:
        raise ValueError(f"{file_variable}={path} cannot be read ({exc.strerror}); point it at the secret's file.") from None
