"""Weaviate's img2vec-neural module contract: one image in, its semantic vector out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules.routes.common import Server, decode_all, image_vectors, read_body

router = APIRouter()


class Img2VecRequest(BaseModel):
    id: str = ""
    image: str


@router.post("/vectors")
async def img2vec(request: Request, server: Server):
    body = await read_body(request, Img2VecRequest)
    [vector] = await image_vectors(server, decode_all([body.image], "image"), "image", "semantic")
    return {"id": body.id, "vector": vector, "dim": len(vector)}
