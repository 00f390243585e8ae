"""Connecting to the configured Weaviate with an error that says what to do."""

from __future__ import annotations

import weaviate
from weaviate.classes.init import AdditionalConfig, Timeout
from weaviate.exceptions import WeaviateBaseError

from deeplens.config import Settings


class DatabaseUnavailable(RuntimeError):
    pass


def connect(settings: Settings) -> weaviate.WeaviateClient:
    try:
        return weaviate.connect_to_custom(
            http_host=settings.weaviate_host,
            http_port=settings.weaviate_port,
            http_secure=settings.weaviate_url.startswith("https"),
            grpc_host=settings.weaviate_host,
            grpc_port=settings.weaviate_grpc_port,
            grpc_secure=settings.weaviate_url.startswith("https"),
            # Grouping a whole collection by content hash takes longer than the 30 s default at 100k images.
            additional_config=AdditionalConfig(timeout=Timeout(init=30, query=600, insert=120)),
        )
    except WeaviateBaseError as exc:
        raise DatabaseUnavailable(
            f"Weaviate is not reachable at {settings.weaviate_url} (gRPC port {settings.weaviate_grpc_port}): "
            f"{str(exc).splitlines()[0]}\nStart the embedded stack with `deeplens up`, or set "
            "DEEPLENS_WEAVIATE_URL / DEEPLENS_WEAVIATE_GRPC_PORT to your Weaviate."
        ) from None
