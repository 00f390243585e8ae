"""What every contract's routes share: the server's state (as a FastAPI dependency), reading JSON
bodies, decoding base64 images, and the JSON error body that every failure gets.

Weaviate's Go client sends JSON without a Content-Type and reads any non-JSON error as garbage,
so bodies are parsed here whatever their headers say, and every error handler answers JSON.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deeplens.modules.engine import Engine
from deeplens.modules.images import BadImage, decode_base64
from deeplens.modules.metrics import Metrics
from deeplens.modules.models import TextNotSupported

Body = TypeVar("Body", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind or f"http_{status}"  # label of the errors metric


@dataclass
class ServerState:
    engine: Engine
    profile: str
    max_body_bytes: int

    @property
    def metrics(self) -> Metrics:
        return self.engine.metrics


def server_state(request: Request) -> ServerState:
    return request.app.state.server


Server = Annotated[ServerState, Depends(server_state)]


async def read_body(request: Request, schema: type[Body]) -> Body:
    """The body as `schema`, read as JSON whatever the Content-Type, within the server's size limit.

    Routes call this rather than declaring a pydantic body parameter, so that the limit holds while
    the body streams in and validation errors carry this server's messages."""
    limit = server_state(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body is over the {limit:,}-byte limit")
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


def vectors_json(payload: dict) -> Response:
    """An answer that carries embeddings, written by orjson (numpy arrays too): FastAPI's
    jsonable_encoder walks every float and, with json.dumps, took ~2.5 CPU ms per 1280-d vector.
    The numbers are the same as json's (shortest round-trip repr of the float64 values)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def decode_all(images: list[str], field: str) -> list[bytes]:
    """Every base64 image of a request, or a 400 naming the first bad one as field[index]."""
    out = []
    for index, text in enumerate(images):
        try:
            out.append(decode_base64(text))
        except BadImage as exc:
            raise ApiError(400, f"{field}[{index}]: {exc}") from None
    return out


def decode_each(images: list[str]) -> list[bytes | BadImage]:
    """Every base64 image of a request, or the BadImage that says why it is not one, for the
    contracts that answer each image on its own."""
    out: list[bytes | BadImage] = []
    for text in images:
        try:
            out.append(decode_base64(text))
        except BadImage as exc:
            out.append(exc)
    return out


def bad_image(result: object) -> BadImage | None:
    """A per-image result that failed on its input; any other exception is the server's own and is raised."""
    if isinstance(result, BadImage):
        return result
    if isinstance(result, BaseException):
        raise result
    return None


async def image_vectors(
    server: ServerState, images: list[bytes], field: str, kind: Literal["semantic", "phash"]
) -> list[list[float]]:
    """One vector per image, in order, for the contracts that fail a whole request on one bad image."""
    engine = server.engine
    analyses = await engine.analyse_all(images, frozenset({kind}))
    for index, analysis in enumerate(analyses):
        if isinstance(analysis, BadImage):
            raise ApiError(400, f"{field}[{index}]: {analysis}")
    server.metrics.images.labels(route=kind).inc(len(analyses))
    if kind == "phash":
        return [a.phash_bits.astype(float).tolist() for a in analyses]
    return [vector.tolist() for vector in await engine.embed(analyses)]


def install_observability(app: FastAPI) -> None:
    """Request metrics for every route, and a JSON error body (counted by kind) for every failure."""

    def count_error(request: Request, kind: str) -> None:
        server_state(request).metrics.errors.labels(kind=kind).inc()

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = route.path if route is not None else "unmatched"
        metrics = server_state(request).metrics
        metrics.requests.labels(route=label, status=str(response.status_code)).inc()
        metrics.latency.labels(route=label).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        count_error(request, exc.kind)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(BadImage)
    async def bad_image(request: Request, exc: BadImage):
        count_error(request, "http_400")
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(TextNotSupported)
    async def text_not_supported(request: Request, exc: TextNotSupported):
        count_error(request, "text_not_supported")
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        count_error(request, f"http_{exc.status_code}")
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        count_error(request, "internal")
        return JSONResponse({"error": f"internal error in the module server: {type(exc).__name__}: {exc}"}, status_code=500)


def require_api_key(app: FastAPI, key: str) -> None:
    """Refuse every request without `Authorization: Bearer <key>`, except the health probes under
    /.well-known/ (orchestrators, `deeplens up`, and Weaviate's modules at start-up call them bare)."""
    expected = f"Bearer {key}".encode()

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        given = request.headers.get("authorization", "").encode()
        if request.url.path.startswith("/.well-known/") or hmac.compare_digest(given, expected):
            return await call_next(request)
        server_state(request).metrics.errors.labels(kind="http_401").inc()
        return JSONResponse(
            {"error": "this module server requires `Authorization: Bearer <key>`: set DEEPLENS_MODULES_API_KEY "
                      "to its key in the environment of the caller"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
