"""Geometric verification of image pairs (modules/verify.py), for the duplicate grouping of
DeepLens's own workers: the images are here already decoded cheaply, and pairs run in parallel on
the decode threads. A pair with an unreadable image is an error in its own result."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules.images import BadImage, decode_base64
from deeplens.modules.routes.common import Server, read_body

router = APIRouter()


class Pair(BaseModel):
    a: str  # base64 image bytes
    b: str


class VerifyRequest(BaseModel):
    pairs: list[Pair]


@router.post("/v1/verify")
async def verify_pairs(request: Request, server: Server):
    body = await read_body(request, VerifyRequest)
    results: list[dict] = [{} for _ in body.pairs]
    decoded: list[tuple[int, tuple[bytes, bytes]]] = []
    for index, pair in enumerate(body.pairs):
        try:
            decoded.append((index, (decode_base64(pair.a), decode_base64(pair.b))))
        except BadImage as exc:
            results[index]["error"] = str(exc)
    verdicts = await server.engine.verify_all([images for _, images in decoded])
    for (index, _), verdict in zip(decoded, verdicts):
        if isinstance(verdict, BaseException):
            if not isinstance(verdict, BadImage):
                raise verdict
            results[index]["error"] = str(verdict)
        else:
            results[index] = verdict.as_json()
    server.metrics.images.labels(route="verify").inc(2 * len(decoded))
    return {"results": results}
