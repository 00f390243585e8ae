"""Health, server description and metrics: what orchestrators, `deeplens status` and Prometheus read."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from deeplens.modules.meta import server_meta
from deeplens.modules.routes.common import Server

router = APIRouter()


@router.get("/.well-known/live")
async def live():
    return {"live": True}


@router.get("/.well-known/ready")
async def ready(server: Server):
    if not server.engine.ready:
        return JSONResponse({"ready": False, "error": "models are not loaded yet"}, status_code=503)
    return {"ready": True}


@router.get("/meta")
async def meta(server: Server):
    return server_meta(server.profile, server.engine.model, server.engine.config)


@router.get("/metrics")
async def prometheus(server: Server):
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)
