"""The embedded default stack: Weaviate (local binary) and the DeepLens module server.

Everything lives in the data dir: Weaviate's data, pid/state and log files, and the internal
ports Weaviate's cluster layer uses (kept stable so its Raft state stays valid across restarts).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from deeplens.config import WEAVIATE_VERSION, Settings
from deeplens.processes import Service, ServiceError, free_port
from deeplens.weaviate_binary import Progress, resolve_weaviate_binary

WEAVIATE_START_TIMEOUT = 120.0
MODULES_START_TIMEOUT = 300.0  # loading CLIP weights on a slow disk takes a while
INTERNAL_PORTS = ("gossip", "data", "raft", "raft_rpc")


@dataclass(frozen=True)
class WeaviatePorts:
    http: int
    grpc: int
    gossip: int
    data: int
    raft: int
    raft_rpc: int


def weaviate_service(
    binary: Path, data_path: Path, run_dir: Path, host: str, ports: WeaviatePorts, modules_url: str, api_key: str
) -> Service:
    if not api_key or "," in api_key:  # Weaviate reads a comma-separated list of keys
        raise ServiceError("The Weaviate API key must be non-empty and hold no comma; set another DEEPLENS_WEAVIATE_API_KEY.")
    env = {
        # Only holders of the key get in, over REST and gRPC alike. Without an authorization
        # module configured, Weaviate lets every authenticated user do everything.
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS": api_key,
        "AUTHENTICATION_APIKEY_USERS": "deeplens",
        "PERSISTENCE_DATA_PATH": str(data_path),
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "multi2vec-clip,img2vec-neural",
        # Collections point each named vector at its own prefix with `inferenceUrl`; these
        # defaults only have to reach the same server.
        "CLIP_INFERENCE_API": modules_url,
        "IMAGE_INFERENCE_API": modules_url,
        "GRPC_PORT": str(ports.grpc),
        "CLUSTER_HOSTNAME": "deeplens",
        "CLUSTER_BIND_ADDR": host,
        "CLUSTER_ADVERTISE_ADDR": host,
        "CLUSTER_GOSSIP_BIND_PORT": str(ports.gossip),
        "CLUSTER_DATA_BIND_PORT": str(ports.data),
        "RAFT_PORT": str(ports.raft),
        "RAFT_INTERNAL_RPC_PORT": str(ports.raft_rpc),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"deeplens:{ports.raft}",
        "GO_PROFILING_DISABLE": "true",
        "DISABLE_TELEMETRY": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        "LOG_FORMAT": "text",
    }
    return Service(
        name="weaviate",
        argv=[str(binary), "--host", host, "--port", str(ports.http), "--scheme", "http"],
        ready_url=f"http://{host}:{ports.http}/v1/.well-known/ready",
        run_dir=run_dir,
        env=env,
        ports=[(host, ports.http), (host, ports.grpc)],
        version=WEAVIATE_VERSION,
    )


def modules_service(
    run_dir: Path, host: str, port: int, profile: str, cache_dir: Path, extra_args: tuple[str, ...] = ()
) -> Service:
    argv = [
        sys.executable, "-m", "deeplens", "--cache-dir", str(cache_dir),
        "serve", "modules", "--host", host, "--port", str(port), "--profile", profile, *extra_args,
    ]
    return Service(
        name="modules",
        argv=argv,
        ready_url=f"http://{host}:{port}/.well-known/ready",
        run_dir=run_dir,
        ports=[(host, port)],
    )


def stored_api_key(path: Path) -> str:
    """The key in `path`, generated on first use; the file is readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # a copied or restored file may have come back readable by others
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        key = secrets.token_urlsafe(32)
        file.write(key + "\n")
    return key


class Stack:
    """The services `deeplens up` starts for one data dir."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.run_dir = settings.data_dir / "run"

    def weaviate_ports(self) -> WeaviatePorts:
        path = self.settings.data_dir / "weaviate-ports.json"
        try:
            internal = json.loads(path.read_text())
        except FileNotFoundError:
            internal = {name: free_port() for name in INTERNAL_PORTS}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(internal, indent=2))
        return WeaviatePorts(
            http=self.settings.weaviate_port, grpc=self.settings.weaviate_grpc_port, **internal
        )

    def modules(self) -> Service:
        extra = ("--random-weights",) if self.settings.random_weights else ()
        return modules_service(
            self.run_dir, self.settings.modules_host, self.settings.modules_port,
            self.settings.profile, self.settings.cache_dir, extra,
        )

    def api_key(self) -> str:
        """DEEPLENS_WEAVIATE_API_KEY, else the key generated into the data dir on the first `up`."""
        if self.settings.weaviate_api_key is not None:
            return self.settings.weaviate_api_key.get_secret_value()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return stored_api_key(self.settings.weaviate_key_path)

    def weaviate(self, progress: Progress = print) -> Service:
        binary = resolve_weaviate_binary(self.settings, progress)
        return weaviate_service(
            binary,
            self.settings.data_dir / "weaviate",
            self.run_dir,
            self.settings.weaviate_host,
            self.weaviate_ports(),
            self.settings.modules_url,
            self.api_key(),
        )

    def recorded_services(self) -> list[Service]:
        """Services this data dir started, rebuilt from their state files (no binary lookup)."""
        services = []
        for state_path in sorted(self.run_dir.glob("*.json")):
            state = json.loads(state_path.read_text())
            services.append(
                Service(name=state["name"], argv=state["argv"], ready_url=state["ready_url"],
                        run_dir=self.run_dir, version=state.get("version", ""))
            )
        return services

    def up(self, progress: Progress = print) -> list[Service]:
        # Weaviate's modules wait for the inference server at start-up, so it goes first.
        plan = [(self.modules(), MODULES_START_TIMEOUT), (self.weaviate(progress), WEAVIATE_START_TIMEOUT)]
        started: list[Service] = []
        try:
            for service, timeout in plan:
                if service.recorded() is not None:
                    progress(f"{service.name}: already running, {service.ready_url}")
                    continue
                service.start()
                started.append(service)
                service.wait_ready(timeout)
                progress(f"{service.name}: started, ready at {service.ready_url}")
        except ServiceError:
            for service in started:  # only what this call started
                service.stop()
            raise
        return [service for service, _ in plan]

    def down(self, progress: Progress = print) -> int:
        stopped = 0
        for service in reversed(self.recorded_services()):
            if service.stop():
                progress(f"{service.name}: stopped")
                stopped += 1
        return stopped
