"""Memory and time of a scan's listing and change detection as a location grows to a million objects.

Writes SYNTHETIC zero-byte `.jpg` files (folders of 1,000, one fixed modification time) on local disk,
and zero-byte S3 objects in the SeaweedFS server of the tests (tests/servers/plugin.py), then, per
size, in a fresh process: lists the location (`list_objects`) into the change set of a scan
(connectors/changes.py) with an index half filled (half the files indexed unchanged, a tenth changed,
a twentieth indexed but gone from storage; records as `known_objects` yields them, made up here so
that a million need no Weaviate), and reads back everything a scan reads: what to read, what is gone.
Files are not read (they would fail to decode): that part of a scan holds a bounded window anyway.

    .venv/bin/python -m bench.listing_memory                       # 10k, 100k, 1M local; 20k, 50k S3
    .venv/bin/python -m bench.listing_memory --sizes 10000 --s3-sizes 0 --flat 100000

Columns: seconds of listing + change detection, the process's peak RSS during them (VmHWM, reset once
the store is connected) and its growth over the RSS then, the peak of Python allocations
(tracemalloc; SQLite's page cache is not in it and is at most CACHE_KIB), and the spill file's size
(freed when the scan ends).
`--flat N` adds a location of N files in one folder: a walk holds one folder's listing at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

from bench.procstats import proc_status

FIXED_MTIME = 1_700_000_000  # every local file's modification time, so the index can hold it unchanged
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # the S3 ETag of a zero-byte object
FOLDER = 1000  # files per folder
SCRAMBLE = 1_000_003
SECRET_ENV = "DEEPLENS_BENCH_S3_SECRET"  # how the S3 secret reaches the measuring process


def relative(i: int, flat: bool) -> str:
    return f"f{i:07d}.jpg" if flat else f"d{i // FOLDER:04d}/f{i:07d}.jpg"


def make_local(root: Path, count: int, flat: bool) -> float:
    started = time.perf_counter()
    for i in range(count):
        path = root / relative(i, flat)
        if i % FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        os.utime(fd, (FIXED_MTIME, FIXED_MTIME))
        os.close(fd)
    return time.perf_counter() - started


def index_records(count: int, flat: bool, etag: str | None):
    """What `known_objects` would yield for the location: half unchanged, a tenth changed (another
    size), a twentieth of files that are not in storage; in a scrambled order, as Weaviate's cursor
    yields them (by id, a hash of the path), without holding them to shuffle."""
    moment = datetime.fromtimestamp(FIXED_MTIME, tz=timezone.utc)
    unchanged, changed, gone = count // 2, count // 10, count // 20
    total = unchanged + changed + gone
    for step in range(total):
        k = step * SCRAMBLE % total  # a permutation of range(total): SCRAMBLE is a prime that divides no total here
        i = k if k < unchanged + changed else count + k - unchanged - changed
        yield {"path": relative(i, flat), "size_bytes": int(unchanged <= k < unchanged + changed),
               "modified_at": moment, "etag": etag}


def measure(url: str, options: dict, count: int, flat: bool, traced: bool) -> dict:
    """Listing + change detection in this process, as `scan` does them."""
    from deeplens.connectors import storage
    from deeplens.connectors.changes import Changes

    fs, root = storage.open_location(url, options, {"secret": SECRET_ENV} if SECRET_ENV in os.environ else {})
    fs.isdir(root)  # connected first: the client's own memory (botocore's models) is not the listing's
    # The peak so far is the start-up's (botocore parsing its models briefly takes 50-90 MiB more):
    # reset it to the RSS now (Linux >= 4.0), so the peak below is the listing's.
    Path("/proc/self/clear_refs").write_text("5")
    baseline = proc_status(os.getpid())["VmRSS"]
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    with Changes() as changes:
        listed = changes.add_listed(storage.list_objects(fs, root, all_files=True))
        changes.add_indexed("images", index_records(count, flat, EMPTY_MD5 if url.startswith("s3://") else None))
        changes.add_indexed("skipped", [])
        todo_total, still_skipped = changes.counts()
        todo = sum(1 for _ in changes.todo())
        gone = sum(1 for _ in changes.gone())
        no_longer_skipped = sum(1 for _ in changes.no_longer_skipped())
        spill = changes._db.execute("PRAGMA page_count").fetchone()[0] * changes._db.execute(
            "PRAGMA page_size").fetchone()[0]
    seconds = time.perf_counter() - started
    assert todo == todo_total and still_skipped == no_longer_skipped == 0
    return {"objects": listed, "todo": todo, "gone": gone, "seconds": seconds,
            "rss_baseline": baseline, "rss_peak": proc_status(os.getpid())["VmHWM"],
            "traced_peak": tracemalloc.get_traced_memory()[1] / 2**20 if traced else None, "spill": spill / 2**20}


def run_measure(url: str, options: dict, env: dict, count: int, flat: bool, traced: bool) -> dict:
    """One measurement in a fresh process, so that its peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.listing_memory", "--measure", url, "--options", json.dumps(options),
         "--count", str(count), *(["--flat-layout"] if flat else []), *(["--traced"] if traced else [])],
        capture_output=True, text=True, env=os.environ | env, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def row(kind: str, made: float, result: dict, traced: dict) -> str:
    growth = result["rss_peak"] - result["rss_baseline"]
    return (f"| {kind} | {result['objects']:,} | {made:.0f} | {result['seconds']:.1f} | {result['rss_peak']:.0f} | "
            f"{growth:.0f} | {traced['traced_peak']:.1f} | {result['spill']:.0f} | {result['todo']:,} | {result['gone']:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="local files per location")
    parser.add_argument("--s3-sizes", default="20000,50000", help="S3 keys per location (0: none)")
    parser.add_argument("--flat", type=int, default=0, help="also a local location of N files in one folder")
    parser.add_argument("--dir", default=None, help="where the local files go (default: a temporary folder)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flat-layout", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, json.loads(args.options), args.count, args.flat_layout, args.traced)))
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| storage | objects | made in s | listing + change detection s | peak RSS MiB | RSS growth MiB "
          "| Python peak MiB (tracemalloc) | spill file MiB | to read | gone |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        local = [(int(n), False) for n in args.sizes.split(",") if int(n)] + ([(args.flat, True)] if args.flat else [])
        for count, flat in local:
            root = Path(tmp) / f"{'flat' if flat else 'tree'}-{count}"
            made = make_local(root, count, flat)
            url = root.as_uri()
            result = run_measure(url, {}, {}, count, flat, traced=False)
            traced = run_measure(url, {}, {}, count, flat, traced=True)  # slower: its time is not shown
            print(row("local, one folder" if flat else "local", made, result, traced), flush=True)
            shutil.rmtree(root)
        s3_sizes = [int(n) for n in args.s3_sizes.split(",") if int(n)]
        if s3_sizes:
            from tests.servers.plugin import running_seaweedfs
            import s3fs

            (Path(tmp) / "s3").mkdir()
            with running_seaweedfs(Path(tmp) / "s3") as (_, server):
                fs = s3fs.S3FileSystem(**server.storage_options, skip_instance_cache=True)
                for count in s3_sizes:
                    started = time.perf_counter()
                    fs.pipe({f"deeplens-test/n{count}/{relative(i, False)}": b"" for i in range(count)}, batch_size=256)
                    made = time.perf_counter() - started
                    url = f"{server.url}/n{count}"
                    env = {SECRET_ENV: server.credentials["secret"]}
                    result = run_measure(url, server.options, env, count, False, traced=False)
                    traced = run_measure(url, server.options, env, count, False, traced=True)
                    print(row("S3 (SeaweedFS)", made, result, traced), flush=True)


if __name__ == "__main__":
    main()
