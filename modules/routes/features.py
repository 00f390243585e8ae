"""The batch features API that DeepLens's own workers call: several features per image in one
round trip, and a bad image is an error in its own result rather than a failed request."""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules import phash
from deeplens.modules.images import BadImage
from deeplens.modules.routes.common import Server, bad_image, decode_each, read_body, vectors_json

router = APIRouter()


class FeatureItem(BaseModel):
    id: str | None = None
    data: str  # base64 image bytes


class FeaturesRequest(BaseModel):
    images: list[FeatureItem]
    features: list[Literal["phash", "dihedral", "semantic", "info"]] = ["phash", "semantic", "info"]


@router.post("/v1/features")
async def features(request: Request, server: Server):
    body = await read_body(request, FeaturesRequest)
    wanted = frozenset(body.features)
    results: list[dict] = [{"id": item.id} for item in body.images]
    decoded: list[tuple[int, bytes]] = []
    for index, data in enumerate(decode_each([item.data for item in body.images])):
        if isinstance(data, BadImage):
            results[index]["error"] = str(data)
        else:
            decoded.append((index, data))
    analyses = await server.engine.analyse_all([data for _, data in decoded], wanted)
    good = []
    for (index, _), analysis in zip(decoded, analyses):
        if error := bad_image(analysis):
            results[index]["error"] = str(error)
            continue
        good.append((index, analysis))
        if analysis.phash_bits is not None:
            bits = analysis.phash_bits
            results[index]["phash"] = {"hex": phash.bits_to_hex(bits), "bits": bits.tolist()}
        if analysis.dihedral is not None:
            results[index]["phash_dihedral"] = analysis.dihedral
        if analysis.info is not None:
            results[index].update(analysis.info)
    if "semantic" in wanted:
        vectors = await server.engine.embed([analysis for _, analysis in good])
        for (index, _), vector in zip(good, vectors):
            # float64: the same numbers in the JSON as the float32 values' tolist() gave before.
            results[index]["semantic"] = vector.astype(np.float64)
    server.metrics.images.labels(route="features").inc(len(good))
    return vectors_json({"results": results, "features": sorted(wanted)})
