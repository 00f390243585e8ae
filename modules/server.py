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
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Pillow's own bomb check (error above twice this) would otherwise cap --max-pixels at ~179M.
    Image.MAX_IMAGE_PIXELS = config.max_pixels
    if torch_threads:
        torch.set_num_threads(torch_threads)
    model = load_semantic_model(profile, device, random_weights, cache_dir, clip_checkpoint)
    logging.getLogger("deeplens.modules").info(
        "profile %s: %s (%d-d, weights: %s) on %s", profile, model.name, model.dim, model.weights, model.device
    )
    app = create_app(model, profile, config, max_body_bytes)
    if api_key:
        require_api_key(app, api_key)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
