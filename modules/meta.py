"""What GET /meta, /semantic/meta and /phash/meta return."""

from __future__ import annotations

import platform
from importlib.metadata import version

import PIL
import torch

from deeplens import __version__
from deeplens.modules import phash
from deeplens.modules.models import SemanticModel


def semantic_meta(model: SemanticModel) -> dict:
    return {
        "model": model.name,
        "dimensions": model.dim,
        "weights": model.weights,
        "texts": model.supports_text,
        "device": str(model.device),
        "runtime": model.runtime,  # of both towers (image, and text where the profile has one)
        "dtype": str(model.dtype).removeprefix("torch."),
        "normalised": "l2",
    }


def phash_meta() -> dict:
    return {
        "model": "dct-phash",
        "dimensions": phash.BITS,
        "distance": "hamming",
        "bit_order": "row-major 8x8 low-frequency DCT block; vector[i] is bit i of the hex, most significant first",
        "texts": False,
    }


def server_meta(profile: str, model: SemanticModel, engine_config) -> dict:
    return {
        "name": "deeplens-modules",
        "version": __version__,
        "profile": profile,
        "models": {"semantic": semantic_meta(model), "phash": phash_meta()},
        "batching": {"max_batch": engine_config.max_batch, "max_wait_ms": engine_config.max_wait_ms},
        "decode_threads": engine_config.decode_threads,
        "max_pixels": engine_config.max_pixels,
        "verify_cache": engine_config.verify_cache,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            # From the installed metadata: importing open_clip (timm, its model registry) for its
            # version string alone cost seconds at every start of the offline profile.
            "open_clip": version("open_clip_torch"),
            "onnxruntime": version("onnxruntime"),
            "pillow": PIL.__version__,
        },
    }
