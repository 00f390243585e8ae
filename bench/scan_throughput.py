"""End-to-end scan throughput: local JPEGs -> module server + Weaviate, and where the time goes.

For each mode, starts a private embedded stack (temp data dir, free ports), scans N synthetic
photos-like JPEGs with `deeplens scan`, and prints images/s, images/min and a breakdown:
  - worker stages from the scan summary (`stage_seconds`: read and decode+thumbnail summed over
    the reader threads; module features and Weaviate writes summed over the writer threads);
  - module server time per route from its /metrics (sum of request seconds, requests, images),
    which shows what Weaviate's own module calls cost (`/semantic/vectorize`);
  - CPU seconds and peak memory of each process (scan CLI, module server, Weaviate) from /proc, and
    CPU ms per image: on a machine shared with other work the wall-clock rate moves with the load,
    the CPU an image costs much less, and 60,000 * cores / (total CPU ms per image) is the rate
    the scan would reach with every core busy on it.
Modes: `full` (named vectors semantic + phash; Weaviate asks the module server for `semantic`, one
image per request), `precomputed` (`schema apply --vectors precomputed`: the scan fetches
`semantic` with the pHashes, 32 images per `/v1/features` call) and `hash-only` (`schema apply
--hash-only`: the phash vector alone). `--runtimes auto,torch` runs each mode once per module server runtime
(`serve modules --runtime`: auto is ONNX Runtime on CPU). `--imagededup` times imagededup's PHash
and CNN (MobileNetV2, the offline profile's weights) `encode_images` on the same files for
comparison: hashes/embeddings in memory, no database. Bounded: N images per size, one scan per
mode and runtime.

    .venv/bin/python -m bench.scan_throughput --images 1000 --modes full,hash-only
    .venv/bin/python -m bench.scan_throughput --images 2000 --modes full --runtimes auto,torch
    .venv/bin/python -m bench.scan_throughput --images 1000,10000 --imagededup
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

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.procstats import cpu_seconds, proc_status, stack_pids
from deeplens.processes import free_port
from deeplens.samples import jpeg_bytes, synthetic_image

# mode -> `schema apply` options (`full`: the collection the first scan creates)
SCHEMA_OPTIONS = {"precomputed": ("--vectors", "precomputed"), "hash-only": ("--hash-only",)}
# route -> the label of its images counter (modules/routes/)
MODULE_ROUTES = {"/v1/features": "features", "/semantic/vectorize": "semantic", "/phash/vectorize": "phash"}


def deeplens(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "deeplens", *args], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"deeplens {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def module_metrics(modules_url: str) -> dict[str, dict[str, float]]:
    """route -> {seconds, requests, images} from the module server's Prometheus text."""
    out: dict[str, dict[str, float]] = {route: {"seconds": 0.0, "requests": 0.0, "images": 0.0} for route in MODULE_ROUTES}
    text = httpx.get(f"{modules_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("route")
            if sample.name == "deeplens_request_seconds_sum" and label in out:
                out[label]["seconds"] += sample.value
            elif sample.name == "deeplens_request_seconds_count" and label in out:
                out[label]["requests"] += sample.value
            elif sample.name == "deeplens_images_total":
                for route, images_label in MODULE_ROUTES.items():
                    if label == images_label:
                        out[route]["images"] += sample.value
    return out


def write_photos(folder: Path, count: int, size: tuple[int, int]) -> float:
    folder.mkdir()
    for seed in range(count):
        (folder / f"img{seed:06}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed, size)))
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def run_imagededup(method_name: str, photos: Path) -> dict:
    """Seconds of imagededup's encode_images on the folder (its own worker processes: all cores)."""
    if method_name == "PHash":
        from imagededup.methods import PHash

        method = PHash(verbose=False)
    else:
        from bench.neardup.run import imagededup_cnn_method

        method = imagededup_cnn_method()
    started = time.perf_counter()
    encodings = method.encode_images(image_dir=photos)
    return {"mode": f"imagededup {method_name} encode_images (no database)", "images": len(encodings),
            "seconds": time.perf_counter() - started}


def run_mode(root: Path, mode: str, runtime: str, photos: Path, args) -> dict:
    env = {
        **os.environ,
        "DEEPLENS_DATA_DIR": str(root / f"data-{mode}-{runtime}-{photos.name}"),
        "DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
        "DEEPLENS_WEAVIATE_GRPC_PORT": str(free_port()),
        "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{free_port()}",
        "DEEPLENS_PROFILE": args.profile,
        "DEEPLENS_RANDOM_WEIGHTS": "true" if args.random_weights else "false",
        "DEEPLENS_MODULES_RUNTIME": runtime,  # read by `serve modules --runtime`
    }
    deeplens(env, "up")
    try:
        semantic = httpx.get(f"{env['DEEPLENS_MODULES_URL']}/meta", timeout=10).json()["models"]["semantic"]
        pids = stack_pids(Path(env["DEEPLENS_DATA_DIR"]))
        if mode in SCHEMA_OPTIONS:
            deeplens(env, "schema", "apply", *SCHEMA_OPTIONS[mode])
        deeplens(env, "storage", "add", "bench", str(photos))
        before_metrics = module_metrics(env["DEEPLENS_MODULES_URL"])
        before_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            scan = subprocess.Popen(
                [sys.executable, "-m", "deeplens", "scan", "bench", "--workers", str(args.workers), "--json"],
                env=env, stdout=out, stderr=err, text=True,
            )
            # wait4: the CPU time and peak memory of this one child, whatever else ran before it.
            _, status, usage = os.wait4(scan.pid, 0)
            scan.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - started
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if scan.returncode:
            raise SystemExit(f"deeplens scan failed:\n{stderr}")
        cpu = {name: cpu_seconds(pid) - before_cpu[name] for name, pid in pids.items()}
        cpu["scan"] = usage.ru_utime + usage.ru_stime
        memory = {name: proc_status(pid).get("VmHWM", 0.0) for name, pid in pids.items()}
        memory["scan"] = usage.ru_maxrss / 1024
        after_metrics = module_metrics(env["DEEPLENS_MODULES_URL"])
    finally:
        deeplens(env, "down")
    [summary] = json.loads(stdout)
    modules = {
        route: {key: after_metrics[route][key] - before_metrics[route][key] for key in after_metrics[route]}
        for route in MODULE_ROUTES
    }
    return {"mode": f"{mode} ({semantic['runtime']} on {semantic['device']})", "summary": summary,
            "seconds": seconds, "cpu": cpu, "memory": memory, "modules": modules}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="1000", help="comma-separated counts, e.g. 1000,10000")
    parser.add_argument("--modes", default="full,hash-only", help="comma-separated: full, precomputed, hash-only")
    parser.add_argument("--size", default="1024x768", help="JPEG size WxH")
    parser.add_argument("--profile", choices=["offline", "clip"], default="offline")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runtimes", default="auto",
                        help="comma-separated module server runtimes (serve modules --runtime): auto, torch, onnx")
    parser.add_argument("--imagededup", action="store_true", help="also time imagededup PHash and CNN on the same files")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    modes = args.modes.split(",")
    unknown = set(modes) - {"full", *SCHEMA_OPTIONS}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")

    runs = []
    with tempfile.TemporaryDirectory(prefix="deeplens-bench-") as tmp:
        root = Path(tmp)
        for count in map(int, args.images.split(",")):
            photos = root / f"photos-{count}"
            started = time.perf_counter()
            megabytes = write_photos(photos, count, (width, height))
            print(f"wrote {count} JPEGs ({megabytes:.0f} MB) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            for mode in modes:
                for runtime in args.runtimes.split(","):
                    run = run_mode(root, mode, runtime, photos, args) | {"count": count, "megabytes": megabytes}
                    print(f"{run['mode']} {count}: {run['seconds']:.1f} s", file=sys.stderr)
                    runs.append(run)
            for method_name in ("PHash", "CNN") if args.imagededup else ():
                run = run_imagededup(method_name, photos) | {"count": count, "megabytes": megabytes}
                print(f"{run['mode']} {count}: {run['seconds']:.1f} s", file=sys.stderr)
                runs.append(run)

    print(f"\nscan throughput on {platform.node()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}, "
          f"profile {args.profile}{' (random weights)' if args.random_weights else ''}, {args.size} JPEGs, "
          f"--workers {args.workers}; load average at the end {os.getloadavg()[0]:.1f}")
    print("\n| mode | images | MB | errors | seconds | images/s | images/min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        images, errors = (run["summary"]["new"], run["summary"]["errors"]) if "summary" in run else (run["images"], "-")
        rate = images / run["seconds"]
        print(f"| {run['mode']} | {images} | {run['megabytes']:.0f} | {errors} | {run['seconds']:.1f} | "
              f"{rate:.1f} | {rate * 60:.0f} |")

    print("\nWhere the time goes (seconds; worker stages summed over threads; module routes: time the "
          "server spent answering, requests, images; CPU seconds and peak RSS in MB per process):\n")
    header = ["mode", "images", "read", "decode+thumbnail", "module features (HTTP)", "Weaviate writes",
              *[f"module {route}" for route in MODULE_ROUTES], "CPU scan", "CPU modules", "CPU Weaviate",
              "peak MB scan / modules / Weaviate"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for run in (run for run in runs if "summary" in run):
        stages = run["summary"].get("stage_seconds", {})
        cells = [run["mode"], str(run["summary"]["new"])]
        cells += [f"{stages.get(key, 0):.1f}" for key in ("read", "decode_thumbnail", "module_features", "weaviate")]
        for route in MODULE_ROUTES:
            m = run["modules"][route]
            cells.append(f"{m['seconds']:.1f} ({m['requests']:.0f} req, {m['images']:.0f} img)" if m["requests"] else "-")
        cells += [f"{run['cpu'][name]:.1f}" for name in ("scan", "modules", "weaviate")]
        cells.append(" / ".join(f"{run['memory'][name]:.0f}" for name in ("scan", "modules", "weaviate")))
        print("| " + " | ".join(cells) + " |")

    print("\nCPU ms per image (the whole scan command, start-up included) and the rate that CPU allows "
          f"with all {os.cpu_count()} cores busy:\n")
    print("| mode | images | scan | modules | Weaviate | total | images/min if CPU-bound |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in (run for run in runs if "summary" in run):
        images = max(run["summary"]["new"], 1)
        per_image = {name: 1000 * run["cpu"][name] / images for name in ("scan", "modules", "weaviate")}
        total = sum(per_image.values())
        print(f"| {run['mode']} | {images} | " + " | ".join(f"{ms:.2f}" for ms in per_image.values())
              + f" | {total:.2f} | {60_000 * os.cpu_count() / total:.0f} |")


if __name__ == "__main__":
    main()
