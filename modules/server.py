"""Run the module server: load the profile's models first (refusing to start without weights),
then serve. Readiness therefore means "models loaded"."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import uvicorn
from PIL import Image

from deeplens.modules.app import create_app
from deeplens.modules.engine import EngineConfig
from deeplens.modules.models import load_semantic_model
from deeplens.modules.routes.common import require_api_key


def serve(
    host: str,
    port: int,
    profile: str,
    device: str,
    random_weights: bool,
    cache_dir: Path,
    clip_checkpoint: Path | None,
    config: EngineConfig,
    max_body_bytes: int,
    torch_threads: int | None,
    api_key: str | None = None,
    json_logs: bool = False,
    runtime: str = "auto",
) -> None:
    """`json_logs`: the caller made the root logger write JSON lines (`deeplens --log-format json`);
    uvicorn's start-up, error and access lines go there too, instead of its own text handlers."""
    if not json_logs:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Pillow's own bomb check (error above twice this) would otherwise cap --max-pixels at ~179M.
    Image.MAX_IMAGE_PIXELS = config.max_pixels
    if torch_threads:
        torch.set_num_threads(torch_threads)
    model = load_semantic_model(profile, device, random_weights, cache_dir, clip_checkpoint, runtime)
    logging.getLogger("deeplens.modules").info(
        "profile %s: %s (%d-d, weights: %s) on %s, runtime %s",
        profile, model.name, model.dim, model.weights, model.device, model.runtime,
    )
    app = create_app(model, profile, config, max_body_bytes)
    if api_key:
        require_api_key(app, api_key)
    # log_config=None: uvicorn leaves logging as the caller set it up, so its loggers propagate
    # to the root logger. Access lines only then: a text log would get one per vectorized image.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=json_logs,
                **({"log_config": None} if json_logs else {}))
