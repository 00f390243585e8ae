"""Geometric verification of image pairs (modules/verify.py), for the duplicate grouping of
DeepLens's own workers. Images are sent once and pairs name them by index, so an image that is
part of many candidate pairs is decoded and its features found once; pairs run in parallel on the
decode threads. A pair with an unreadable image is an error in its own result."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules.images import BadImage
from deeplens.modules.routes.common import ApiError, Server, bad_image, decode_each, read_body

router = APIRouter()


class VerifyRequest(BaseModel):
    images: list[str]  # base64 image bytes
    pairs: list[tuple[int, int]]  # indexes into images: is the second a copy of the first?
    mirror: bool = True  # also try the second mirrored when the fit fails


@router.post("/v1/verify")
async def verify_pairs(request: Request, server: Server):
    body = await read_body(request, VerifyRequest)
    for a, b in body.pairs:
        if not (0 <= a < len(body.images) and 0 <= b < len(body.images)):
            raise ApiError(422, f"pair [{a}, {b}] names an image that is not in `images` ({len(body.images)} given)")
    images = decode_each(body.images)  # a bad one is reported in the result of each pair that uses it
    verdicts = await server.engine.verify_all(images, body.pairs, body.mirror)
    results = [{"error": str(error)} if (error := bad_image(verdict)) else verdict.as_json() for verdict in verdicts]
    server.metrics.images.labels(route="verify").inc(sum(not isinstance(i, BadImage) for i in images))
    return {"results": results}
