"""Throughput and latency of the module server over HTTP, the way Weaviate calls it.

Starts `deeplens serve modules` as a subprocess on a free port, sends JPEGs (real photos from
scikit-image's samples, resized to typical sizes) one image per request to /phash/vectorize and
/semantic/vectorize at several concurrencies, and prints images/s and latency percentiles. For
context it also prints the in-process JPEG decode limit (decode + resize on all cores).

    .venv/bin/python bench/modules_throughput.py                 # offline profile (MobileNetV2)
    .venv/bin/python bench/modules_throughput.py --profile clip --random-weights
    .venv/bin/python bench/modules_throughput.py --runtimes auto,torch --endpoints semantic   # both runtimes

The client runs on the same machine as the server and takes CPU from it; on a small machine the
figures are a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import skimage.data
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from deeplens.modules.images import open_image
from deeplens.modules.profiles import PROFILES
from deeplens.processes import free_port

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera", "brick")
MODEL_INPUT = 224  # both profiles' models read 224x224; the server draft-decodes JPEGs to >= this


def make_jpegs(count: int, longest_side: int, quality: int = 90) -> list[bytes]:
    """`count` JPEGs of real photos with the given longest side (distinct crops, so no two are equal)."""
    out = []
    for index in range(count):
        image = Image.fromarray(getattr(skimage.data, PHOTOS[index % len(PHOTOS)])()).convert("RGB")
        shift = index // len(PHOTOS)  # a different crop per round keeps every file unique
        image = image.crop((shift, shift, image.width - shift, image.height - shift))
        scale = longest_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def start_server(args: argparse.Namespace, runtime: str, port: int, log_path: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "deeplens", "serve", "modules", "--host", "127.0.0.1", "--port", str(port),
            "--profile", args.profile, "--runtime", runtime, "--max-wait-ms", str(args.max_wait_ms)]
    if args.max_batch:
        argv += ["--max-batch", str(args.max_batch)]
    if args.random_weights:
        argv.append("--random-weights")
    if args.device:
        argv += ["--device", args.device]
    log = open(log_path, "w")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the module server exited during start-up:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/.well-known/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    sys.exit(f"the module server was not ready within 300 s:\n{log_path.read_text()[-3000:]}")


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    return values.get("deeplens_batch_size_count", 0.0), values.get("deeplens_batch_size_sum", 0.0)


async def run_load(url: str, path: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every body once with `concurrency` requests in flight; returns (seconds, latencies)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []

    async def worker(http: httpx.AsyncClient):
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            response = await http.post(path, content=body)  # no Content-Type, like Weaviate
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def decode_limit(jpegs: list[bytes], threads: int) -> float:
    """Images/s for JPEG decode (draft mode, as the server does) + resize to the model input."""

    def one(data: bytes) -> None:
        open_image(data, draft_to=MODEL_INPUT).image.resize((MODEL_INPUT, MODEL_INPUT), Image.Resampling.BILINEAR)

    with ThreadPoolExecutor(threads) as pool:  # Pillow releases the GIL while decoding
        list(pool.map(one, jpegs[: threads * 2]))  # warm-up
        started = time.perf_counter()
        list(pool.map(one, jpegs))
        return len(jpegs) / (time.perf_counter() - started)


def measure(args: argparse.Namespace, runtime_option: str, bodies: dict[int, list[bytes]]) -> list[tuple]:
    """One server with `--runtime runtime_option`: a row per (endpoint, size, concurrency)."""
    sizes = list(bodies)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(args, runtime_option, port, Path(tmp) / "modules.log")
        url = f"http://127.0.0.1:{port}"
        try:
            meta = httpx.get(f"{url}/meta").json()
            semantic = meta["models"]["semantic"]
            runtime = f"{semantic['runtime']} on {semantic['device']}"
            print(f"model: {semantic['model']} ({runtime}), weights: {semantic['weights']}; "
                  f"batching: {meta['batching']}\n")
            for endpoint in args.endpoints.split(","):
                path = f"/{endpoint}/vectorize"
                asyncio.run(run_load(url, path, bodies[sizes[0]][:8], 4))  # warm-up
                for size in sizes:
                    for concurrency in concurrencies:
                        batches_before = batch_stats(url)
                        seconds, latencies = asyncio.run(run_load(url, path, bodies[size], concurrency))
                        batches_after = batch_stats(url)
                        calls = batches_after[0] - batches_before[0]
                        mean_batch = (batches_after[1] - batches_before[1]) / calls if calls else float("nan")
                        p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
                        rows.append((runtime, path, f"{size}px", concurrency, len(latencies) / seconds, p50, p95, p99,
                                     mean_batch))
                        print(f"  done: {path} {size}px c={concurrency}", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="offline")
    parser.add_argument("--random-weights", action="store_true", help="untrained weights (needed for clip without the model hub)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument("--images", type=int, default=96, help="requests per (endpoint, size, concurrency) row")
    parser.add_argument("--sizes", default="1024,256", help="longest side of the JPEGs, comma-separated")
    parser.add_argument("--concurrency", default="1,8,32", help="requests in flight, comma-separated")
    parser.add_argument("--endpoints", default="phash,semantic")
    parser.add_argument("--max-batch", type=int, default=None, help="default: the server's (8 on CPU, 32 on CUDA)")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--runtimes", default="auto", help="comma-separated `serve modules --runtime` values, one server each")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    cores = os.cpu_count() or 1
    print(f"machine: {platform.machine()}, {cores} CPU cores, {platform.platform()}; python {platform.python_version()}")
    print(f"server: profile {args.profile}{' (RANDOM WEIGHTS)' if args.random_weights else ''}, "
          f"max wait {args.max_wait_ms} ms; {args.images} requests of 1 image per row\n")
    jpegs = {size: make_jpegs(args.images, size) for size in sizes}
    bodies = {size: [json.dumps({"images": [base64.b64encode(j).decode()]}).encode() for j in jpegs[size]] for size in sizes}

    rows = [row for runtime in args.runtimes.split(",") for row in measure(args, runtime, bodies)]

    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    header = ("runtime", "endpoint", "jpeg", "conc", "images/s", "p50 ms", "p95 ms", "p99 ms", "mean batch")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for runtime, path, size, conc, rate, p50, p95, p99, mean_batch in rows:
        batch = f"{mean_batch:.1f}" if mean_batch == mean_batch else "-"
        print(f"| {runtime} | {path} | {size} | {conc} | {rate:.1f} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {batch} |")
    print(f"\nJPEG decode limit in-process (draft decode + resize to {MODEL_INPUT}px, {cores} threads):")
    for size in sizes:
        print(f"  {size}px: {decode_limit(jpegs[size] * 2, cores):.0f} images/s")


if __name__ == "__main__":
    main()
