"""Cleanup throughput: `deeplens plan`, `apply --yes` (quarantine) and `undo` on local disk and on S3.

Starts a private embedded stack (temp data dir, free ports, a hash-only collection: the plan's
near tier then comes from pHashes alone) and, for S3, the SeaweedFS server of the tests
(tests/servers/plugin.py `running_seaweedfs`). Per storage it writes N SYNTHETIC small JPEGs
(deeplens.samples.synthetic_image, 160x120): 80% originals under `photos/`, 20% copies under
`backup/copies/`, of which most are exact copies and 1 in 20 a recompressed (near) one; scans the
location (not timed), then times, each as one CLI process:

  plan     duplicate groups (exact + near) + one listing + one read of every copy (sha256, EXIF, pHash)
  apply    re-verify each copy and its kept one, move it to the quarantine, journal; then the rescan
           of the location that apply runs itself
  undo     every quarantined copy back, verified by sha256; then its rescan

Files/s: plan = copies read (the members of all groups) per second of the command; apply and
undo = files moved per second of moving (their JSON `seconds`, without start-up and rescan).

    .venv/bin/python -m bench.cleanup_throughput                      # 10,000 images, local and S3
    .venv/bin/python -m bench.cleanup_throughput --images 2000 --storages local
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import fsspec

from bench.scan_throughput import deeplens
from deeplens.processes import free_port
from deeplens.samples import jpeg_bytes, synthetic_image

SIZE = (160, 120)
DUPLICATE_SHARE = 0.2
NEAR_EVERY = 20  # one copy in this many is recompressed (near), the others are exact


def library(count: int) -> dict[str, bytes]:
    """`count` files: originals, and DUPLICATE_SHARE of `count` as copies of the first originals."""
    copies = int(count * DUPLICATE_SHARE)
    files = {}
    for seed in range(count - copies):
        files[f"photos/img{seed:06}.jpg"] = jpeg_bytes(synthetic_image(seed, SIZE))
    for seed in range(copies):
        near = seed % NEAR_EVERY == NEAR_EVERY - 1
        data = jpeg_bytes(synthetic_image(seed, SIZE), quality=70) if near else files[f"photos/img{seed:06}.jpg"]
        files[f"backup/copies/img{seed:06}{'-recompressed' if near else ''}.jpg"] = data
    return files


def timed(env: dict, *args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    out = deeplens(env, *args, "--json")
    return time.perf_counter() - started, json.loads(out)


def run_storage(env: dict, name: str, url: str, fs, root: str, files: dict[str, bytes], options: list[str],
                tmp: Path) -> dict:
    started = time.perf_counter()
    # Photos first: the originals are the older files (one batch each; s3fs sends a batch concurrently).
    for folder in ("photos/", "backup/"):
        fs.pipe({f"{root}/{path}": data for path, data in files.items() if path.startswith(folder)})
    upload_s = time.perf_counter() - started
    deeplens({**env}, "storage", "add", name, url, *options)
    scan_s, _ = timed(env, "scan", name)
    plan_file = tmp / f"plan-{name}.json"
    plan_s, plan = timed(env, "plan", "--out", str(plan_file), "--location", name)
    groups = json.loads(plan_file.read_text())["groups"]
    read = sum(1 + len(group["actions"]) for group in groups) + len(plan["left_out"])
    apply_s, applied = timed(env, "apply", str(plan_file), "--yes")
    undo_s, undone = timed(env, "undo", plan["plan_id"])
    if applied["failed"] or applied["skipped"] or undone["failed"] or undone["skipped"]:
        raise SystemExit(f"{name}: apply or undo did not complete: {applied} {undone}")
    return {
        "storage": name, "files": len(files), "upload_s": upload_s, "scan_s": scan_s,
        "plan_s": plan_s, "read": read, "planned": plan["files"], "exact": _tier(plan, "exact"),
        "near": _tier(plan, "near"),
        "apply_s": apply_s, "applied": applied["done"], "apply_acting_s": applied["seconds"],
        "apply_rescan_s": _scan_seconds(applied),
        "undo_s": undo_s, "restored": undone["restored"], "undo_acting_s": undone["seconds"],
        "undo_rescan_s": _scan_seconds(undone),
    }


def _tier(plan: dict, tier: str) -> int:
    return sum(row["files"] for row in plan["rows"] if row["tier"] == tier)


def _scan_seconds(result: dict) -> float:
    return sum(scan.get("seconds", 0.0) for scan in result["scans"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="files per storage (originals + 20%% copies)")
    parser.add_argument("--storages", default="local,s3", help="comma-separated: local, s3")
    args = parser.parse_args()
    storages = args.storages.split(",")
    if set(storages) - {"local", "s3"}:
        parser.error("--storages takes local and s3")

    started = time.perf_counter()
    files = library(args.images)
    print(f"made {len(files)} JPEGs ({sum(map(len, files.values())) / 1e6:.0f} MB) in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory(prefix="deeplens-bench-cleanup-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        env = {
            **os.environ,
            "DEEPLENS_DATA_DIR": str(tmp / "data"),
            "DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{free_port()}",
            "DEEPLENS_WEAVIATE_GRPC_PORT": str(free_port()),
            "DEEPLENS_MODULES_URL": f"http://127.0.0.1:{free_port()}",
        }
        deeplens(env, "up")
        stack.callback(deeplens, env, "down")
        deeplens(env, "schema", "apply", "--hash-only")
        if "local" in storages:
            folder = tmp / "local"
            fs = fsspec.filesystem("file", auto_mkdir=True)
            runs.append(run_storage(env, "local", str(folder), fs, str(folder), files, [], tmp))
            print(f"local: {runs[-1]}", file=sys.stderr)
        if "s3" in storages:
            from tests.servers.plugin import running_seaweedfs

            (tmp / "s3").mkdir()
            _, server = stack.enter_context(running_seaweedfs(tmp / "s3"))
            fs = fsspec.filesystem("s3", **server.storage_options, skip_instance_cache=True)
            url = server.child("bench")
            [secret] = server.credentials.values()
            env["DEEPLENS_BENCH_S3_SECRET"] = secret
            options = [arg for key, value in server.options.items() for arg in ("--option", f"{key}={value}")]
            options += ["--credentials-env", "secret=DEEPLENS_BENCH_S3_SECRET"]
            runs.append(run_storage(env, "s3", url, fs, url.removeprefix("s3://"), files, options, tmp))
            print(f"s3: {runs[-1]}", file=sys.stderr)

    print(f"\ncleanup throughput on {platform.node()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}, "
          f"{args.images} synthetic {SIZE[0]}x{SIZE[1]} JPEGs per storage ({DUPLICATE_SHARE:.0%} copies, 1 in "
          f"{NEAR_EVERY} of them near), hash-only collection; load average at the end {os.getloadavg()[0]:.1f}")
    print("\n| storage | files | copies planned (exact / near) | plan s | plan files/s | apply s: all (moving, "
          "rescan) | apply files/s | undo s: all (moving, rescan) | undo files/s | scan before, s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(f"| {run['storage']} | {run['files']} | {run['planned']} ({run['exact']} / {run['near']}) | "
              f"{run['plan_s']:.1f} | {run['read'] / run['plan_s']:.0f} | "
              f"{run['apply_s']:.1f} ({run['apply_acting_s']:.1f}, {run['apply_rescan_s']:.1f}) | "
              f"{run['applied'] / run['apply_acting_s']:.0f} | "
              f"{run['undo_s']:.1f} ({run['undo_acting_s']:.1f}, {run['undo_rescan_s']:.1f}) | "
              f"{run['restored'] / run['undo_acting_s']:.0f} | {run['scan_s']:.1f} |")
    print("\nplan files/s: copies read (every member of every group) per second of the whole `deeplens plan` "
          "(duplicate groups included); apply and undo files/s: files verified, moved and journaled per second "
          "of moving. `all` is the whole CLI command: start-up, registry, moving, and the rescan it runs.")


if __name__ == "__main__":
    main()
