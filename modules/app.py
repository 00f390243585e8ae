"""HTTP routes of the module server. Contracts: Weaviate multi2vec-clip and img2vec-neural,
the Elasticsearch `custom` inference service, and a batch features API for workers.

Weaviate's pitfalls are handled here: bodies may come without a Content-Type, paths are exact
(no slash redirects), every input yields exactly one vector in order, every error is JSON.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deeplens.modules import phash
from deeplens.modules.engine import Engine, EngineConfig, default_max_batch
from deeplens.modules.images import BadImage, decode_base64
from deeplens.modules.meta import phash_meta, semantic_meta, server_meta
from deeplens.modules.metrics import Metrics
from deeplens.modules.models import SemanticModel, TextNotSupported

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind or f"http_{status}"  # label of the errors metric


class VectorizeRequest(BaseModel):  # multi2vec-clip
    texts: list[str] | None = None
    images: list[str] | None = None


class Img2VecRequest(BaseModel):  # img2vec-neural
    id: str = ""
    image: str


class FeatureItem(BaseModel):
    id: str | None = None
    data: str  # base64 image bytes


class FeaturesRequest(BaseModel):
    images: list[FeatureItem]
    features: list[Literal["phash", "dihedral", "semantic", "info"]] = ["phash", "semantic", "info"]


class EsEmbeddingsRequest(BaseModel):  # Elasticsearch `custom` inference service
    input: list[str] | str


def create_app(
    model: SemanticModel,
    profile: str,
    config: EngineConfig | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    config = config or EngineConfig()
    if config.max_batch is None:
        config = replace(config, max_batch=default_max_batch(model.device))
    metrics = Metrics()
    engine = Engine(model, config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        yield
        await engine.stop()

    app = FastAPI(title="DeepLens modules", lifespan=lifespan, redirect_slashes=False, docs_url=None, redoc_url=None)
    app.state.engine = engine

    async def read_body(request: Request, schema: type[BaseModel]) -> BaseModel:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise ApiError(413, f"request body of {int(declared):,} bytes is over the {max_body_bytes:,}-byte limit")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    raise ApiError(413, f"request body is over the {max_body_bytes:,}-byte limit")
        except ClientDisconnect:  # a caller that gave up (e.g. Weaviate's timeout) is not a server fault
            raise ApiError(400, "the client closed the connection before sending the whole body", "client_disconnect") from None
        try:
            payload = json.loads(body or b"null")  # any Content-Type, or none, is read as JSON
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        except RecursionError:  # e.g. "[[[[..." nested deeper than the parser's stack
            raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
        try:
            return schema.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise ApiError(422, f"request does not match the {schema.__name__} contract: {problems}") from None

    def decode_all(images: list[str], field: str) -> list[bytes]:
        out = []
        for index, text in enumerate(images):
            try:
                out.append(decode_base64(text))
            except BadImage as exc:
                raise ApiError(400, f"{field}[{index}]: {exc}") from None
        return out

    async def image_vectors(images: list[bytes], field: str, kind: Literal["semantic", "phash"]) -> list[list[float]]:
        analyses = await engine.analyse_all(images, frozenset({kind}))
        for index, analysis in enumerate(analyses):
            if isinstance(analysis, BadImage):
                raise ApiError(400, f"{field}[{index}]: {analysis}")
            if isinstance(analysis, BaseException):
                raise analysis
        metrics.images.labels(route=kind).inc(len(analyses))
        if kind == "phash":
            return [a.phash_bits.astype(float).tolist() for a in analyses]
        return [vector.tolist() for vector in await engine.embed(analyses)]

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = route.path if route is not None else "unmatched"
        metrics.requests.labels(route=label, status=str(response.status_code)).inc()
        metrics.latency.labels(route=label).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        metrics.errors.labels(kind=exc.kind).inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(BadImage)
    async def bad_image(request: Request, exc: BadImage):
        metrics.errors.labels(kind="http_400").inc()
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(TextNotSupported)
    async def text_not_supported(request: Request, exc: TextNotSupported):
        metrics.errors.labels(kind="text_not_supported").inc()
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        metrics.errors.labels(kind=f"http_{exc.status_code}").inc()
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        metrics.errors.labels(kind="internal").inc()
        return JSONResponse({"error": f"internal error in the module server: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/.well-known/live")
    async def live():
        return {"live": True}

    @app.get("/.well-known/ready")
    async def ready():
        if not engine.ready:
            return JSONResponse({"ready": False, "error": "models are not loaded yet"}, status_code=503)
        return {"ready": True}

    @app.get("/meta")
    async def meta():
        return server_meta(profile, model, config)

    @app.get("/semantic/meta")
    async def semantic_meta_route():
        return semantic_meta(model)

    @app.get("/phash/meta")
    async def phash_meta_route():
        return phash_meta()

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/semantic/vectorize")
    async def semantic_vectorize(request: Request):
        body = await read_body(request, VectorizeRequest)
        texts, images = body.texts or [], decode_all(body.images or [], "images")
        text_vectors = (await engine.embed_texts(texts)).tolist() if texts else []
        return {"textVectors": text_vectors, "imageVectors": await image_vectors(images, "images", "semantic")}

    @app.post("/phash/vectorize")
    async def phash_vectorize(request: Request):
        body = await read_body(request, VectorizeRequest)
        if body.texts:
            raise ApiError(422, "the phash module hashes images only; texts cannot be hashed (use /semantic for text)")
        images = decode_all(body.images or [], "images")
        return {"textVectors": [], "imageVectors": await image_vectors(images, "images", "phash")}

    @app.post("/vectors")
    async def img2vec(request: Request):
        body = await read_body(request, Img2VecRequest)
        [vector] = await image_vectors(decode_all([body.image], "image"), "image", "semantic")
        return {"id": body.id, "vector": vector, "dim": len(vector)}

    @app.post("/v1/features")
    async def features(request: Request):
        body = await read_body(request, FeaturesRequest)
        wanted = frozenset(body.features)
        results: list[dict] = [{"id": item.id} for item in body.images]
        decoded: list[tuple[int, bytes]] = []
        for index, item in enumerate(body.images):
            try:
                decoded.append((index, decode_base64(item.data)))
            except BadImage as exc:
                results[index]["error"] = str(exc)
        analyses = await engine.analyse_all([data for _, data in decoded], wanted)
        good = []
        for (index, _), analysis in zip(decoded, analyses):
            if isinstance(analysis, BaseException):
                if not isinstance(analysis, BadImage):
                    raise analysis
                results[index]["error"] = str(analysis)
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
            vectors = await engine.embed([analysis for _, analysis in good])
            for (index, _), vector in zip(good, vectors):
                results[index]["semantic"] = vector.tolist()
        metrics.images.labels(route="features").inc(len(good))
        return {"results": results, "features": sorted(wanted)}

    @app.post("/v1/es/{model_name}/embeddings")
    async def es_embeddings(model_name: str, request: Request):
        if model_name not in ("semantic", "phash"):
            raise ApiError(404, f"unknown model '{model_name}'; use /v1/es/semantic/embeddings or /v1/es/phash/embeddings")
        body = await read_body(request, EsEmbeddingsRequest)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        vectors = await image_vectors(decode_all(inputs, "input"), "input", model_name)
        return {"data": [{"embedding": vector} for vector in vectors]}

    return app
