"""What the routes call: decoding in a thread pool, pHash per image, batched semantic embeddings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from deeplens.modules import phash
from deeplens.modules.batching import DynamicBatcher
from deeplens.modules.images import DEFAULT_MAX_PIXELS, BadImage, content_box, open_image
from deeplens.modules.metrics import Metrics
from deeplens.modules.models import SemanticModel
from deeplens.modules.verify import KeypointCache, Keypoints, Verification, verify

# JPEGs decode at a reduced scale (1/2 .. 1/8) that keeps both sides >= this many pixels.
# One size for every feature set: the decode scale changes the pHash by a bit or two, and the same
# image must get the same pHash from /phash/vectorize, /v1/es/phash and /v1/features.
MIN_DRAFT_SIZE = 64


def default_max_batch(device: torch.device) -> int:
    """Most images per model call unless told: a GPU wants big batches; on CPU, MobileNetV2 (channels
    last) runs 78 / 98 / 57 images/s at batches of 4 / 8 / 32 on 2 cores (bigger batches fall out of
    the caches), and ViT-B-32 is flat from 8 up (bench/RESULTS.md)."""
    return 32 if device.type == "cuda" else 8


@dataclass
class EngineConfig:
    max_batch: int | None = None  # None: default_max_batch of the model's device
    # 0: a lone request runs at once; requests that arrive while the model is busy form the next
    # batch anyway. A wait above 0 only adds latency at low load (measured in bench/RESULTS.md).
    max_wait_ms: float = 0.0
    decode_threads: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Images whose verification features are kept (about 50 KB each): a grouping run asks for each
    # image in several calls, and its client orders the pairs so that they come back close together.
    verify_cache: int = 4096


@dataclass
class Analysis:
    """What one image yields, before the semantic model runs."""

    phash_bits: np.ndarray | None = None
    dihedral: dict[str, str] | None = None
    pixels: torch.Tensor | None = None  # preprocessed for the semantic model
    info: dict | None = None


class Engine:
    def __init__(self, model: SemanticModel, config: EngineConfig, metrics: Metrics):
        self.model = model
        self.config = config
        self.metrics = metrics
        self.decode_pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        # One thread runs the model: torch parallelises inside a call, callers queue for it.
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.draft_size = max(model.input_size, MIN_DRAFT_SIZE)
        self.keypoints = KeypointCache(config.verify_cache)
        self.batcher = DynamicBatcher(
            self._embed_batch,
            self.model_thread,
            max_batch=config.max_batch,
            max_wait=config.max_wait_ms / 1000,
            on_batch=metrics.batch_size.observe,
        )

    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self.batcher.running

    def _embed_batch(self, pixels: list[torch.Tensor]) -> list[np.ndarray]:
        return list(self.model.embed_images(pixels))

    def _analyse(self, data: bytes, features: frozenset[str]) -> Analysis:
        decoded = open_image(data, self.config.max_pixels, draft_to=self.draft_size)
        # Hashes and embeddings describe the picture, not the bars a letterboxed copy added. The
        # hashes take the grey image the trim reads: converting to grey is per pixel, so its crop is
        # the grey image of the cropped picture, and each image is converted once instead of twice.
        gray = decoded.image.convert("L")
        box = content_box(gray)
        result = Analysis()
        content_gray = gray.crop(box) if features & {"phash", "dihedral"} else None
        if "phash" in features:
            result.phash_bits = phash.phash_bits(content_gray)
        if "dihedral" in features:
            result.dihedral = phash.dihedral_hashes(content_gray)
        if "semantic" in features:
            result.pixels = self.model.preprocess(decoded.image.crop(box))
        if "info" in features:
            result.info = {"width": decoded.width, "height": decoded.height, "format": decoded.format}
        return result

    def _analyse_or_bad(self, data: bytes, features: frozenset[str]) -> Analysis | BadImage:
        try:
            return self._analyse(data, features)
        except BadImage as exc:
            self.metrics.errors.labels(kind="bad_image").inc()
            return exc

    async def analyse_all(self, images: list[bytes], features: frozenset[str]) -> list[Analysis | BadImage]:
        """One result per image, in order, in runs (_in_runs); a bad image yields its BadImage
        instead of failing all."""
        return await self._in_runs(lambda data: self._analyse_or_bad(data, features), images)

    async def verify_all(self, images: list[bytes | BadImage], pairs: list[tuple[int, int]],
                         mirror: bool = True) -> list[Verification | BadImage]:
        """Geometric verification of each pair of images (indexes into `images`; an image that
        could not even be received is its BadImage) on the decode threads: each image's features
        once, then the pairs; a pair with an unreadable image yields its BadImage."""
        def prepare(data: bytes | BadImage) -> Keypoints | BaseException:
            if isinstance(data, BadImage):
                return data
            try:
                found, cached = self.keypoints.get(data, self.config.max_pixels)
            except Exception as exc:  # noqa: BLE001 - the image's own result; bad_image raises what is not a BadImage
                return exc
            self.metrics.verify_features.labels(source="cache" if cached else "computed").inc()
            return found

        keypoints = await self._in_runs(prepare, images)

        def one(pair: tuple[int, int]) -> Verification | BadImage:
            a, b = pair
            bad = next((k for k in (keypoints[a], keypoints[b]) if isinstance(k, BaseException)), None)
            if bad is not None:
                return bad
            return verify(keypoints[a], keypoints[b], mirror)

        return await self._in_runs(one, pairs)

    async def _in_runs(self, work: Callable, items: list) -> list:
        """work(item) for each item, in order, each decode thread taking a run of the items: a task
        per item woke the event loop more often than matching a pair of different images costs (a
        fifth of the module server's CPU in duplicate grouping, bench/RESULTS.md)."""
        loop = asyncio.get_running_loop()
        run = max(1, -(-len(items) // self.config.decode_threads))
        parts = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, _each, work, items[start:start + run])
                                       for start in range(0, len(items), run)))
        return [result for part in parts for result in part]

    async def embed(self, analyses: list[Analysis]) -> list[np.ndarray]:
        return await self.batcher.submit([a.pixels for a in analyses]) if analyses else []

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        # Texts are rare next to images; one call per request on the model thread is enough.
        return await loop.run_in_executor(self.model_thread, self.model.embed_texts, texts)


def _each(work: Callable, items: list) -> list:
    return [work(item) for item in items]
