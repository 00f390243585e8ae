"""Weaviate's multi2vec-clip module contract, twice: each named vector's inferenceUrl points at one
prefix (/semantic or /phash), and Weaviate calls {inferenceUrl}/meta and {inferenceUrl}/vectorize."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules.meta import phash_meta, semantic_meta
from deeplens.modules.routes.common import ApiError, Server, decode_all, image_vectors, read_body, vectors_json

router = APIRouter()


class VectorizeRequest(BaseModel):
    texts: list[str] | None = None
    images: list[str] | None = None


@router.get("/semantic/meta")
async def semantic_meta_route(server: Server):
    return semantic_meta(server.engine.model)


@router.get("/phash/meta")
async def phash_meta_route():
    return phash_meta()


@router.post("/semantic/vectorize")
async def semantic_vectorize(request: Request, server: Server):
    body = await read_body(request, VectorizeRequest)
    texts, images = body.texts or [], decode_all(body.images or [], "images")
    text_vectors = (await server.engine.embed_texts(texts)).tolist() if texts else []
    return vectors_json({"textVectors": text_vectors,
                         "imageVectors": await image_vectors(server, images, "images", "semantic")})


@router.post("/phash/vectorize")
async def phash_vectorize(request: Request, server: Server):
    body = await read_body(request, VectorizeRequest)
    if body.texts:
        raise ApiError(422, "the phash module hashes images only; texts cannot be hashed (use /semantic for text)")
    images = decode_all(body.images or [], "images")
    return {"textVectors": [], "imageVectors": await image_vectors(server, images, "images", "phash")}
