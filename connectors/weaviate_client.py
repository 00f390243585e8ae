"""Connecting to the configured Weaviate with an error that says what to do."""

from __future__ import annotations

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.exceptions import AuthenticationFailedError, UnexpectedStatusCodeError, WeaviateBaseError

from deeplens.config import Settings


class DatabaseUnavailable(RuntimeError):
    pass


def connect(settings: Settings) -> weaviate.WeaviateClient:
    key = settings.weaviate_key()
    try:
        return weaviate.connect_to_custom(
            http_host=settings.weaviate_host,
            http_port=settings.weaviate_port,
            http_secure=settings.weaviate_url.startswith("https"),
            grpc_host=settings.weaviate_host,
            grpc_port=settings.weaviate_grpc_port,
            grpc_secure=settings.weaviate_url.startswith("https"),
            auth_credentials=Auth.api_key(key) if key else None,
            # Grouping a whole collection by content hash takes longer than the 30 s default at 100k images.
            additional_config=AdditionalConfig(timeout=Timeout(init=30, query=600, insert=120)),
        )
    except (AuthenticationFailedError, UnexpectedStatusCodeError) as exc:
        if not isinstance(exc, AuthenticationFailedError) and exc.status_code not in (401, 403):
            raise _unreachable(settings, exc) from None
        sent = "the API key it was given" if key else "a request without an API key"
        raise DatabaseUnavailable(
            f"Weaviate at {settings.weaviate_url} refused {sent}. Set DEEPLENS_WEAVIATE_API_KEY (or "
            f"--weaviate-api-key) to one of its keys; the embedded stack's key is in {settings.weaviate_key_path}."
        ) from None
    except WeaviateBaseError as exc:
        raise _unreachable(settings, exc) from None


def _unreachable(settings: Settings, exc: Exception) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"Weaviate is not reachable at {settings.weaviate_url} (gRPC port {settings.weaviate_grpc_port}): "
        f"{str(exc).splitlines()[0]}\nStart the embedded stack with `deeplens up`, or set "
        "DEEPLENS_WEAVIATE_URL / DEEPLENS_WEAVIATE_GRPC_PORT to your Weaviate."
    )
