"""A server process started in its own session, ready once its port accepts, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deeplens.processes import log_tail


@contextmanager
def http_in_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server of this process on a free loopback port, answering with `handler`: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries its log tail."""


def free_port_pair(offset: int = 10000, host: str = "127.0.0.1") -> int:
    """A free port p whose p + offset is free too (SeaweedFS puts gRPC at http + 10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port + offset < 65536 and port_free(port + offset, host):
            return port
    raise ServerStartError(f"no free port pair (p, p+{offset}) on {host}")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """One server: argv, a log file in run_dir; ``own_session`` puts it in its own process group."""

    def __init__(self, name: str, argv: list[str], run_dir: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, own_session: bool = True) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.run_dir = run_dir
        self.env = env or {}
        self.cwd = cwd
        self.own_session = own_session
        self.log_path = run_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after_s = 0.0

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(
                self.argv, env={**os.environ, **self.env}, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session,
            )

    def wait_port(self, host: str, port: int, timeout: float = 30.0) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.popen.returncode} during start-up. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if accepts(host, port):
                self.ready_after_s = time.monotonic() - self.started_at
                return
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"{self.name} did not listen on {host}:{port} within {timeout:.0f}s. "
            f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def fail(self, why: str) -> ServerStartError:
        self.stop()
        return ServerStartError(f"{self.name}: {why}. Last lines of {self.log_path}:\n{log_tail(self.log_path)}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (to the group when it has its own), then SIGKILL; only ever our own PID."""
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        self._signal(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(popen.pid, signal.SIGKILL)
            popen.wait(timeout=5)

    def _signal(self, pid: int, sig: int) -> None:
        try:
            if self.own_session:
                os.killpg(pid, sig)  # its group id is its pid: start_new_session made it a leader
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _connection_inodes(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port, state, inode = int(cols[1].rsplit(":", 1)[1], 16), cols[3], cols[9]
            if local_port == port and state == "01":  # ESTABLISHED
                inodes.add(inode)
    return inodes


def drop_connections(server: ServerProcess, port: int) -> int:
    """SIGKILL the processes that `server` forked to serve connections on `port` (sshd and smbd fork
    one per client): the clients see their connection cut while the server keeps listening.
    Returns how many processes were killed."""
    assert server.popen is not None
    sockets = {f"socket:[{inode}]" for inode in _connection_inodes(port)}
    killed = 0
    for pid in _descendants(server.popen.pid):
        if _open_files(pid) & sockets:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def pause(server: ServerProcess) -> list[int]:
    """SIGSTOP the server and every process it forked: its connections stay open but nothing answers,
    as with a hung server or a link gone dead. Returns the pids, for resume()."""
    assert server.popen is not None
    pids = [server.popen.pid, *_descendants(server.popen.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # exited meanwhile


def _open_files(pid: int) -> set[str]:
    links = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return links  # exited meanwhile
    for fd in fds:
        try:
            links.add(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return links
