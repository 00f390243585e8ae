"""One Weaviate against a 3-node cluster on the same host: what scans, rescans and duplicate
grouping take, and the memory of the Weaviate processes.

For each node count, starts a private embedded stack (`deeplens up --nodes N`, temp data dir; the
cluster's collections with DEEPLENS_WEAVIATE_REPLICATION_FACTOR=2), scans N synthetic JPEGs with
`deeplens scan`, scans them again (nothing changed), and runs `duplicates --near`, each as the real
CLI, timed from start to exit. On one host the nodes share its cores, so this shows what the
cluster costs, not what more machines would gain.

    .venv/bin/python -m bench.cluster_scan --images 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from bench.neardup.run import PrivateStack
from bench.procstats import proc_status, stack_pids
from bench.query_latency import machine_load
from deeplens.samples import jpeg_bytes, synthetic_image
from deeplens.stack import free_cluster_client_ports

REPLICATION_FACTOR = 2


def timed(stack: PrivateStack, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = stack(*args)
    return time.perf_counter() - started, out


def run(nodes: int, folder: Path, root: Path) -> dict:
    data_dir = root / f"data-{nodes}"
    stack = PrivateStack(data_dir)
    http, grpc = free_cluster_client_ports(nodes)  # every node's, not only the first's
    stack.env |= {"DEEPLENS_WEAVIATE_URL": f"http://127.0.0.1:{http}", "DEEPLENS_WEAVIATE_GRPC_PORT": str(grpc)}
    if nodes > 1:
        stack.env["DEEPLENS_WEAVIATE_REPLICATION_FACTOR"] = str(REPLICATION_FACTOR)
    stack("up", "--nodes", str(nodes))
    try:
        stack("storage", "add", "photos", str(folder))
        scan_s, out = timed(stack, "scan", "photos", "--json")
        [summary] = json.loads(out)
        assert summary["errors"] == 0, summary
        rescan_s, _ = timed(stack, "scan", "photos")
        near_s, out = timed(stack, "duplicates", "--near", "--json")
        return {
            "nodes": nodes, "images": summary["new"], "scan_s": scan_s, "rescan_s": rescan_s, "near_s": near_s,
            "groups": len(json.loads(out)["groups"]),
            "weaviate_rss_mib": sum(proc_status(pid).get("VmRSS", 0) for name, pid in stack_pids(data_dir).items()
                                    if name.startswith("weaviate")), **machine_load(),
        }
    finally:
        stack("down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--nodes", default="1,3", help="node counts to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deeplens-cluster-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for seed in range(args.images):
            (folder / f"img{seed:05}.jpg").write_bytes(jpeg_bytes(synthetic_image(seed)))
        rows = [run(int(nodes), folder, Path(tmp)) for nodes in args.nodes.split(",")]
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; {args.images} synthetic 320x240 JPEGs; "
          f"cluster collections with {REPLICATION_FACTOR} copies")
    print("| nodes | scan s | images/min | rescan s | duplicates --near s | groups | Weaviate RSS MiB | load1 | CPU PSI avg60 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['nodes']} | {row['scan_s']:.1f} | {row['images'] / row['scan_s'] * 60:,.0f} | {row['rescan_s']:.1f} "
              f"| {row['near_s']:.1f} | {row['groups']} | {row['weaviate_rss_mib']:,.0f} | {row['loadavg1']:.1f} "
              f"| {row.get('cpu_pressure_avg60', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
