"""The Elasticsearch `custom` inference service contract (ingest/inference/*.yml point here).

Creating a `text_embedding` endpoint makes Elasticsearch call this route once with the text
input ["how big"] before it accepts the endpoint, and set the endpoint's dimensions from the
length of the answer (x-pack/plugin/inference/.../validation/SimpleServiceIntegrationValidator.java,
`TEST_INPUT = List.of("how big")`, and TextEmbeddingModelValidator.java `postValidate` ->
`updateModelWithEmbeddingDetails`; the validators have no switch but a node setting meant for
upgrade tests). That text is not base64 (it has a space), so it can never be a thumbnail: the
route answers exactly that probe with a unit vector of the model's dimensions, which every
profile can do, image-only ones included. Any other input that is not an image is still a 400.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from deeplens.modules import phash
from deeplens.modules.routes.common import ApiError, Server, decode_all, image_vectors, read_body, vectors_json

router = APIRouter()

ES_VALIDATION_INPUT = "how big"  # Elasticsearch's probe (SimpleServiceIntegrationValidator.TEST_INPUT)


class EsEmbeddingsRequest(BaseModel):
    input: list[str] | str


@router.post("/v1/es/{model_name}/embeddings")
async def es_embeddings(model_name: str, request: Request, server: Server):
    if model_name not in ("semantic", "phash"):
        raise ApiError(404, f"unknown model '{model_name}'; use /v1/es/semantic/embeddings or /v1/es/phash/embeddings")
    body = await read_body(request, EsEmbeddingsRequest)
    inputs = [body.input] if isinstance(body.input, str) else body.input
    if inputs == [ES_VALIDATION_INPUT]:
        dims = server.engine.model.dim if model_name == "semantic" else phash.BITS
        return {"data": [{"embedding": [1.0] + [0.0] * (dims - 1)}]}
    vectors = await image_vectors(server, decode_all(inputs, "input"), "input", model_name)
    return vectors_json({"data": [{"embedding": vector} for vector in vectors]})
