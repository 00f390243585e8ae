"""One command for a GPU machine: where the clip profile's limit lies, from JPEG bytes to vectors.

Measures, in one run and on the same images:
  decode      JPEG decode (draft mode, as the server does) + resize, on all CPU cores
  preprocess  decode + the model's preprocessing (what the server's decode pool does per image)
  model       the model alone on ready tensors already on the device, fp16 on CUDA
  end-to-end  JPEG bytes -> vectors through the server's Engine (decode pool + dynamic batcher)
at batch sizes 64..512, and prints a table. The slowest of decode/preprocess/model bounds
end-to-end; compare them to see whether CPUs or the GPU limit a deployment.

    python bench/gpu_modules.py                      # clip profile, CUDA, real weights if cached
    python bench/gpu_modules.py --random-weights     # no hub access: same architecture, flagged
    python bench/gpu_modules.py --tiny               # CPU smoke run with tiny sizes (plumbing check)

Weights do not change the speed of a model, so --random-weights figures are valid timings; the
output says so anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from deeplens.modules.engine import Engine, EngineConfig
from deeplens.modules.images import open_image
from deeplens.modules.profiles import PROFILES
from deeplens.modules.metrics import Metrics
from deeplens.modules.models import WeightsMissing, load_semantic_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera", "brick")


def make_jpegs(unique: int, total: int, longest_side: int) -> list[bytes]:
    """`unique` distinct JPEGs of real photos, repeated up to `total` (decoding cost is the same)."""
    distinct = []
    for index in range(unique):
        image = Image.fromarray(getattr(skimage.data, PHOTOS[index % len(PHOTOS)])()).convert("RGB")
        shift = index // len(PHOTOS)
        image = image.crop((shift, shift, image.width - shift, image.height - shift))
        scale = longest_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        distinct.append(buffer.getvalue())
    return [distinct[i % unique] for i in range(total)]


def rate_of(count: int, run) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="clip")
    parser.add_argument("--random-weights", action="store_true", help="untrained weights of the same architecture (flagged)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batches", default="64,128,256,512", help="batch sizes, comma-separated")
    parser.add_argument("--images", type=int, default=4096, help="images per measurement")
    parser.add_argument("--size", type=int, default=1024, help="longest side of the JPEGs (a typical photo thumbnail is 256)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="decode threads (default: all cores)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where open_clip weights are cached")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: batches 4,8, 32 images, 256 px")
    args = parser.parse_args()
    if args.tiny:
        args.device, args.batches, args.images, args.size = "cpu", "4,8", 32, 256
    batches = [int(b) for b in args.batches.split(",")]

    try:
        model = load_semantic_model(args.profile, args.device, args.random_weights, args.cache_dir)
    except WeightsMissing as exc:
        sys.exit(f"{exc}\n(timings only? add --random-weights: same architecture, same speed)")
    device = model.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        gpu = torch.cuda.get_device_name(device)
    else:
        gpu = "none (CPU run)"
    print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), GPU: {gpu}")
    print(f"torch {torch.__version__}, model {model.name} ({model.dim}-d), runtime {model.runtime}, "
          f"dtype {str(model.dtype).removeprefix('torch.')}, weights: {model.weights}")
    if args.random_weights:
        print("!!! RANDOM WEIGHTS: vectors are meaningless; timings are those of the real architecture !!!")
    print(f"images: {args.images} JPEGs of {args.size} px (real photos), {args.threads} decode threads\n")

    jpegs = make_jpegs(min(64, args.images), args.images, args.size)
    pool = ThreadPoolExecutor(args.threads)  # Pillow and torch release the GIL while they work
    draft = max(model.input_size, 64)

    def decode(data: bytes):
        return open_image(data, draft_to=draft).image.resize((model.input_size, model.input_size), Image.Resampling.BILINEAR)

    def preprocess(data: bytes):
        return model.preprocess(open_image(data, draft_to=draft).image)

    rows: list[tuple[str, str, float]] = []
    list(pool.map(decode, jpegs[: args.threads * 2]))  # warm-up
    rows.append(("decode (CPU, all cores)", "-", rate_of(len(jpegs), lambda: list(pool.map(decode, jpegs)))))
    tensors: list[torch.Tensor] = []
    rows.append(("decode + preprocess (CPU)", "-", rate_of(len(jpegs), lambda: tensors.extend(pool.map(preprocess, jpegs)))))

    for batch in batches:
        on_device = torch.stack([tensors[i % len(tensors)] for i in range(batch)]).to(device, dtype=model.dtype)
        with torch.inference_mode():
            for _ in range(3):  # warm-up (cudnn autotuning, allocator)
                model.image_forward(on_device)
            sync(device)
            steps = max(2, args.images // batch)

            def run_model():
                for _ in range(steps):
                    model.image_forward(on_device)
                sync(device)

            rows.append((f"model only ({device.type})", str(batch), rate_of(steps * batch, run_model)))

    for batch in batches:
        config = EngineConfig(max_batch=batch, max_wait_ms=5.0, decode_threads=args.threads)

        async def end_to_end() -> float:
            engine = Engine(model, config, Metrics())
            await engine.start()

            async def one(data: bytes):
                [analysis] = await engine.analyse_all([data], frozenset({"semantic"}))
                if isinstance(analysis, BaseException):
                    raise analysis
                return (await engine.embed([analysis]))[0]

            await asyncio.gather(*(one(d) for d in jpegs[: batch * 2]))  # warm-up
            started = time.perf_counter()
            vectors = await asyncio.gather(*(one(d) for d in jpegs))  # every image in flight, like many clients
            elapsed = time.perf_counter() - started
            await engine.stop()
            assert len(vectors) == len(jpegs) and abs(float(np.linalg.norm(vectors[0])) - 1) < 1e-2
            return len(jpegs) / elapsed

        rows.append(("end-to-end JPEG -> vector", str(batch), asyncio.run(end_to_end())))

    pool.shutdown()
    print("| stage | batch | images/s |")
    print("|---|---|---|")
    for stage, batch, rate in rows:
        print(f"| {stage} | {batch} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
