"""What the benchmarks read about the stack's processes: their pids, CPU time and memory (from /proc)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def stack_pids(data_dir: Path) -> dict[str, int]:
    """name -> pid of the processes `deeplens up` started for this data dir."""
    return {p.stem: json.loads(p.read_text())["pid"] for p in sorted((data_dir / "run").glob("*.json"))}


def proc_status(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS in MB from /proc/<pid>/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    except FileNotFoundError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_mb(path: Path) -> float:
    """What the files under path take on disk (du), in MB."""
    return sum(f.stat().st_blocks for f in path.rglob("*") if f.is_file()) * 512 / 2**20
