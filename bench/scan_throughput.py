"""End-to-end scan throughput: local JPEGs -> module server + Weaviate (both named vectors).

Starts a private embedded stack (temp data dir, free ports), writes N synthetic photos-like JPEGs,
scans them with `deeplens scan`, and prints images/s and images/min. Bounded: N images, one scan.

    .venv/bin/python bench/scan_throughput.py --images 1000 --profile offline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deeplens.processes import free_port
from deeplens.samples import jpeg_bytes, synthetic_image


def deeplens(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "deeplens", *args], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"deeplens {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="1024x768", help="JPEG size WxH")
    parser.add_argument("--profile", choices=["offline", "clip"], default="offline")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="deeplens-bench-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "DEEPLENS_DATA_DIR": str(root / "data"),
            "DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
            "DEEPLENS_WEAVIATE_GRPC_PORT": str(free_port()),
            "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{free_port()}",
            "DEEPLENS_PROFILE": args.profile,
            "DEEPLENS_RANDOM_WEIGHTS": "true" if args.random_weights else "false",
        }
        photos = root / "photos"
        photos.mkdir()
        for seed in range(args.images):
            (photos / f"img{seed:06}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed, (width, height))))
        total_mb = sum(p.stat().st_size for p in photos.iterdir()) / 1e6
        deeplens(env, "up")
        try:
            deeplens(env, "storage", "add", "bench", str(photos))
            started = time.perf_counter()
            [summary] = json.loads(deeplens(env, "scan", "bench", "--workers", str(args.workers), "--json"))
            seconds = time.perf_counter() - started
        finally:
            deeplens(env, "down")

    rate = summary["new"] / seconds
    print(f"\nscan throughput on {platform.node()} ({os.cpu_count()} cores), profile {args.profile}"
          f"{' (random weights)' if args.random_weights else ''}")
    print("| images | size | MB | errors | seconds | images/s | images/min |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    print(f"| {summary['new']} | {args.size} | {total_mb:.0f} | {summary['errors']} | {seconds:.1f} | {rate:.1f} | {rate * 60:.0f} |")


if __name__ == "__main__":
    main()
