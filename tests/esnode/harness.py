"""A real Elasticsearch core node for tests, without Docker.

Elasticsearch's server, its Netty4 HTTP transport and the test framework's
``MockPluginsService`` are published on Maven Central, but the normal launcher
(server-cli) and the distribution are not. So the small Maven project beside this
file (``pom.xml`` + ``src/``) embeds a node in its own JVM (see
``DeepLensTestNode.java`` and /work/shared/ES-NODE.md for the why).

This module:

1. builds that project once into ``$DEEPLENS_CACHE_DIR/es-node/<version>/<hash>/``
   (``esnode.jar`` + ``lib/*.jar``), keyed by the pinned version and a hash of the
   pom and Java sources, so an edit rebuilds and an unchanged tree reuses the cache;
2. starts the node on 127.0.0.1 with an OS-chosen free HTTP port in a temporary
   home directory and waits until the cluster health is at least yellow;
3. stops it: closes its stdin (the launcher shuts down on EOF), then
   terminate/kill as a fallback, and removes the temporary home.

The node has the server core only: no x-pack (so no ``_license``, no inference),
no ingest processors, no painless.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

PROJECT_DIR = Path(__file__).resolve().parent
MAIN_CLASS = "org.elasticsearch.node.DeepLensTestNode"
JVM_OPTS = [
    "-Xms512m",
    "-Xmx1g",
    # Netty would otherwise try to set the processor count a second time and fail.
    "-Des.set.netty.runtime.available.processors=false",
]

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    print(f"[es-node] {msg}", file=sys.stderr, flush=True)


def es_version() -> str:
    """The Elasticsearch version pinned in pom.xml (single source of truth)."""
    m = re.search(r"<es\.version>([^<]+)</es\.version>", (PROJECT_DIR / "pom.xml").read_text())
    if not m:
        raise RuntimeError(f"no <es.version> in {PROJECT_DIR / 'pom.xml'}")
    return m.group(1).strip()


def cache_root() -> Path:
    env = os.environ.get("DEEPLENS_CACHE_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("deeplens"))
    except ImportError:
        return Path.home() / ".cache" / "deeplens"


def _java() -> Optional[str]:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def missing_prerequisites() -> Optional[str]:
    """None when java and mvn are available, else a message with the reason and the fix."""
    missing = [name for name, path in (("java", _java()), ("mvn", shutil.which("mvn"))) if not path]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found: the test Elasticsearch node needs a JDK 17+ and Maven "
        "(Debian: apt-get install -y openjdk-17-jdk-headless maven), or point "
        "DEEPLENS_TEST_ELASTICSEARCH_URL at a running Elasticsearch 8.x"
    )


def _source_hash() -> str:
    """Hash of everything that goes into the build, so edits invalidate the cache."""
    h = hashlib.sha256()
    files = [PROJECT_DIR / "pom.xml"] + sorted(p for p in (PROJECT_DIR / "src").rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(PROJECT_DIR)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(log: Log = _default_log) -> Path:
    """Build the launcher (or reuse the cached build) and return its directory."""
    version = es_version()
    target = cache_root() / "es-node" / version / _source_hash()
    if (target / "esnode.jar").is_file() and (target / "lib").is_dir():
        return target

    mvn = shutil.which("mvn")
    if not mvn:
        raise RuntimeError(missing_prerequisites())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private staging copy: Maven's target/ stays out of the repo, and a
    # concurrent or interrupted build never leaves a half-filled cache entry behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copy2(PROJECT_DIR / "pom.xml", staging / "pom.xml")
        shutil.copytree(PROJECT_DIR / "src", staging / "src")
        log(
            f"building the Elasticsearch {version} test node into {target} "
            "(first run downloads ~80 MB from Maven Central; later runs reuse the cache)..."
        )
        t0 = time.monotonic()
        cmd = [
            mvn, "-q", "-B", "-f", str(staging / "pom.xml"),
            "package", "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'out' / 'lib'}", "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"building the test Elasticsearch node failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                + _tail(proc.stdout + proc.stderr, 60)
            )
        shutil.copy2(staging / "target" / "esnode-1.0.jar", staging / "out" / "esnode.jar")
        try:
            os.rename(staging / "out", target)
        except OSError:
            if not (target / "esnode.jar").is_file():  # lost a race only if the winner finished
                raise
        log(f"built in {time.monotonic() - t0:.0f}s")
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


class ElasticsearchNode:
    """One real single-node Elasticsearch cluster in a child JVM.

    Usage::

        with ElasticsearchNode() as node:
            Elasticsearch(node.url).info()
    """

    def __init__(self, http_port: int = 0, startup_timeout: float = 120.0, log: Log = _default_log,
                 home: Optional[Path] = None):
        self.http_port = http_port  # 0: the OS picks a free port; the launcher reports it
        # A home kept across stop() and start() (and left for the caller to remove), for tests
        # that restart the node with its data, at the URL of its first start; None: a temporary
        # one, removed by stop().
        self.kept_home = home
        self.startup_timeout = startup_timeout
        self.log = log
        self.url: Optional[str] = None
        self.home: Optional[Path] = None
        self.log_file: Optional[Path] = None
        self._proc: Optional[subprocess.Popen] = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "ElasticsearchNode":
        if self._proc is not None:
            raise RuntimeError("node already started")
        java = _java()
        if not java:
            raise RuntimeError(missing_prerequisites())
        build_dir = build(self.log)
        classpath = os.pathsep.join([str(build_dir / "esnode.jar"), str(build_dir / "lib" / "*")])

        self.home = self.kept_home or Path(tempfile.mkdtemp(prefix="deeplens-es-node-"))
        # The log lives outside the node's home so that it survives for error messages.
        self.log_file = self.home.parent / f"{self.home.name}.log"
        t0 = time.monotonic()
        with open(self.log_file, "wb") as log_fh:
            self._proc = subprocess.Popen(
                [java, *JVM_OPTS, "-cp", classpath, MAIN_CLASS, str(self.home), str(self.http_port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_fh,
            )
        atexit.register(self.stop)  # never leave a JVM behind, even if the caller forgets
        try:
            self.url = self._wait_for_ready(t0 + self.startup_timeout)
            self._wait_for_health(t0 + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        if self.kept_home is not None:  # a restart comes back where clients already point
            self.http_port = int(self.url.rsplit(":", 1)[1])
        self.log(f"Elasticsearch {es_version()} up at {self.url} in {time.monotonic() - t0:.1f}s")
        return self

    def stop(self) -> None:
        """Stop the node (idempotent): EOF on stdin, then terminate, then kill."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            finally:
                if proc.stdout:
                    proc.stdout.close()
        if self.home is not None and self.home != self.kept_home:
            shutil.rmtree(self.home, ignore_errors=True)
        self.home = None
        if self.log_file is not None:
            try:
                self.log_file.unlink()
            except OSError:
                pass
            self.log_file = None

    def __enter__(self) -> "ElasticsearchNode":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- startup helpers ------------------------------------------------------------------------

    def _fail(self, reason: str) -> RuntimeError:
        log_tail = ""
        if self.log_file is not None and self.log_file.exists():
            log_tail = _tail(self.log_file.read_text(errors="replace"), 40)
        return RuntimeError(f"test Elasticsearch node: {reason}\n--- node log (tail) ---\n{log_tail}")

    def _wait_for_ready(self, deadline: float) -> str:
        """Read the launcher's stdout until 'READY http://host:port'."""
        assert self._proc is not None and self._proc.stdout is not None
        lines: "queue.Queue[Optional[bytes]]" = queue.Queue()

        def pump(stream=self._proc.stdout) -> None:
            for line in iter(stream.readline, b""):
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"no READY line within {self.startup_timeout:.0f}s")
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                raise self._fail(f"the JVM exited with code {self._proc.wait()} before it was ready")
            text = line.decode(errors="replace").strip()
            if text.startswith("READY "):
                return text.split(" ", 1)[1]

    def _wait_for_health(self, deadline: float) -> None:
        assert self.url is not None
        last_error = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise self._fail("the JVM exited while waiting for cluster health")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=5s", timeout=10
                ) as resp:
                    body = json.load(resp)
                if body.get("status") in ("yellow", "green"):
                    return
                last_error = f"status {body.get('status')}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise self._fail(f"cluster health not yellow within {self.startup_timeout:.0f}s ({last_error})")


if __name__ == "__main__":
    # Manual use: python -m tests.esnode.harness  -> starts a node and waits for Enter.
    with ElasticsearchNode() as node:
        print(node.url, flush=True)
        try:
            input("press Enter to stop\n")
        except EOFError:
            pass
