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
    weaviate_url: str = "http://127.0.0.1:8080"
    weaviate_grpc_port: int = 50051
    weaviate_bin: Path | None = Field(default=None, description="Use this weaviate-server binary.")
    weaviate_api_key: SecretStr | None = Field(
        default=None, description="Weaviate API key; unset: the key `deeplens up` generated in the data dir, if any."
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
    def weaviate_key_path(self) -> Path:
        """Where `deeplens up` keeps the API key of the Weaviate it starts (mode 0600)."""
        return self.data_dir / "weaviate-api-key"

    def weaviate_key(self) -> str | None:
        """The key to send to Weaviate: DEEPLENS_WEAVIATE_API_KEY, else the embedded stack's key."""
        if self.weaviate_api_key is not None:
            return self.weaviate_api_key.get_secret_value()
        try:
            return self.weaviate_key_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def weaviate_host(self) -> str:
        return urlsplit(self.weaviate_url).hostname or "127.0.0.1"

    @property
    def weaviate_port(self) -> int:
        return urlsplit(self.weaviate_url).port or 8080

    @property
    def modules_host(self) -> str:
        return urlsplit(self.modules_url).hostname or "127.0.0.1"

    @property
    def modules_port(self) -> int:
        return urlsplit(self.modules_url).port or 8090
