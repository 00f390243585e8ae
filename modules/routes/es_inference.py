"""The Elasticsearch `custom` inference service contract (ingest/inference/*.yml point here)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules.routes.common import ApiError, Server, decode_all, image_vectors, read_body

router = APIRouter()


class EsEmbeddingsRequest(BaseModel):
    input: list[str] | str


@router.post("/v1/es/{model_name}/embeddings")
async def es_embeddings(model_name: str, request: Request, server: Server):
    if model_name not in ("semantic", "phash"):
        raise ApiError(404, f"unknown model '{model_name}'; use /v1/es/semantic/embeddings or /v1/es/phash/embeddings")
    body = await read_body(request, EsEmbeddingsRequest)
    inputs = [body.input] if isinstance(body.input, str) else body.input
    vectors = await image_vectors(server, decode_all(inputs, "input"), "input", model_name)
    return {"data": [{"embedding": vector} for vector in vectors]}
