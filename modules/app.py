"""The module server's FastAPI app: one router per HTTP contract (routes/), sharing one engine.

Contracts: Weaviate multi2vec-clip and img2vec-neural, the Elasticsearch `custom` inference
service, and a batch features API for workers; plus health, meta and metrics. Weaviate's pitfalls
are handled for all of them: bodies may come without a Content-Type (routes/common.py), paths are
exact (no slash redirects, set here), every input yields exactly one vector in order, every error
is JSON (routes/common.py).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI

from deeplens.modules.engine import Engine, EngineConfig, default_max_batch
from deeplens.modules.metrics import Metrics
from deeplens.modules.models import SemanticModel
from deeplens.modules.routes import es_inference, features, img2vec_neural, multi2vec_clip, service, verify
from deeplens.modules.routes.common import ServerState, install_observability

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
ROUTERS = (service.router, multi2vec_clip.router, img2vec_neural.router, es_inference.router, features.router,
           verify.router)


def create_app(
    model: SemanticModel,
    profile: str,
    config: EngineConfig | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    config = config or EngineConfig()
    if config.max_batch is None:
        config = replace(config, max_batch=default_max_batch(model.device))
    engine = Engine(model, config, Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        yield
        await engine.stop()

    # Exact paths: "/meta/" answers a JSON 404, not a redirect to "/meta" that a module client may not follow.
    app = FastAPI(title="DeepLens modules", lifespan=lifespan, redirect_slashes=False, docs_url=None, redoc_url=None)
    app.state.server = ServerState(engine, profile, max_body_bytes)
    install_observability(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
