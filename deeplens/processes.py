"""Background service processes with pid and log files, stopped only by whoever recorded them."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ServiceError(RuntimeError):
    """A service could not be started, or died; the message carries the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports free for TCP and UDP (memberlist gossips over both),
    taken below Linux's default ephemeral range (32768-60999) so that outgoing connections do not
    land in the block later."""
    for base in random.sample(range(20000, 32000 - count, 10), 50):
        sockets = []
        try:
            for port in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    sockets.append(socket.socket(socket.AF_INET, kind))
                    sockets[-1].bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise ServiceError(f"No {count} consecutive free ports between 20000 and 32000 on {host}; free some and retry.")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


@dataclass
class Service:
    """One background process: how to start it, how to tell it is ready, where its files go."""

    name: str
    argv: list[str]
    ready_url: str
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: list[tuple[str, int]] = field(default_factory=list)  # (host, port) that must be free
    version: str = ""

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def state_path(self) -> Path:
        return self.run_dir / f"{self.name}.json"

    def recorded(self) -> dict | None:
        """The state file of a process started earlier, if that process still runs."""
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return state if _is_same_process(state) else None

    def is_ready(self, timeout: float = 2.0) -> bool:
        try:
            return httpx.get(self.ready_url, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> dict:
        """Start the process unless this run dir already runs it; returns its state."""
        running = self.recorded()
        if running:
            return running
        for host, port in self.ports:
            if port_in_use(host, port):
                raise ServiceError(
                    f"{self.name}: port {host}:{port} is already taken by another process. "
                    "Stop that process, or choose other ports (see `deeplens up --help`)."
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # The process outlives this CLI on purpose; without this, Popen warns at exit that it still
        # runs (weaviate-client turns all warnings on when imported, so the filter is set here).
        warnings.filterwarnings("ignore", message=r"subprocess \d+ is still running", category=ResourceWarning)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI that started it; killed as a group
            )
        state = {
            "name": self.name,
            "pid": proc.pid,
            "argv": self.argv,
            "ready_url": self.ready_url,
            "started_at": time.time(),
            "version": self.version,
        }
        self.state_path.write_text(json.dumps(state, indent=2))
        self._popen = proc
        return state

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Right after fork the child's cmdline is still ours, so trust our own handle when we have one.
            popen = getattr(self, "_popen", None)
            exited = popen.poll() is not None if popen is not None else self.recorded() is None
            if exited:
                self.stop()
                raise ServiceError(
                    f"{self.name} exited during start-up. Last lines of {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if self.is_ready():
                return
            time.sleep(0.3)
        self.stop()  # never leave a half-started process behind
        raise ServiceError(
            f"{self.name} was not ready at {self.ready_url} after {timeout:.0f}s. "
            f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the process (and its group) if this service started or recorded it; True if it ran."""
        popen = getattr(self, "_popen", None)
        state = self.recorded()
        self.state_path.unlink(missing_ok=True)
        if popen is not None and popen.poll() is None:
            pid = popen.pid
        elif state is not None:
            pid = state["pid"]
        else:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        if popen is not None:
            popen.wait(timeout=5)  # reap our own child
        return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _is_same_process(state: dict) -> bool:
    """The pid still runs the command we recorded (pids get reused after reboots)."""
    try:
        cmdline = Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, KeyError, ProcessLookupError):
        return False
    return _alive(state["pid"]) and cmdline[: len(state["argv"])] == [a.encode() for a in state["argv"]]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
