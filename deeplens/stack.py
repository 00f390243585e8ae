"""The embedded default stack: Weaviate (local binary) and the DeepLens module server.

Everything lives in the data dir: Weaviate's data, pid/state and log files, and the internal
ports Weaviate's cluster layer uses (kept stable so its Raft state stays valid across restarts).
`up --nodes N` starts N Weaviate nodes on this host as one cluster instead of one Weaviate.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from deeplens.config import WEAVIATE_VERSION, Settings
from deeplens.processes import Service, ServiceError, free_port, free_port_block
from deeplens.weaviate_binary import Progress, resolve_weaviate_binary

WEAVIATE_START_TIMEOUT = 120.0
MODULES_START_TIMEOUT = 300.0  # loading CLIP weights on a slow disk takes a while
INTERNAL_PORTS = ("gossip", "data", "raft", "raft_rpc")
NODE_PORT_SPACING = 10  # node i's internal ports start at the block's first port + 10 i


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


def cluster_ports(http: int, grpc: int, internal_base: int, nodes: int) -> list[WeaviatePorts]:
    """The ports of each node of a cluster on one host: HTTP and gRPC count up from the first
    node's (8080, 8081, ... and 50051, 50052, ... by default); the internal ones sit in a block of
    ten per node. On one host (CLUSTER_IN_LOCALHOST) Weaviate finds a peer's Raft RPC port at its
    Raft port + 1 (weaviate v1.39.3 cluster/resolver/rpc.go:39-53) and, when a peer has published
    none, its data port at its gossip port + 1 (usecases/cluster/state.go:144-149)."""
    ports = []
    for index in range(nodes):
        base = internal_base + NODE_PORT_SPACING * index
        ports.append(WeaviatePorts(http=http + index, grpc=grpc + index, gossip=base, data=base + 1,
                                   raft=base + 2, raft_rpc=base + 3))
    return ports


def free_cluster_client_ports(nodes: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """The first node's HTTP and gRPC ports for a cluster on free ports: cluster_ports counts both up
    by node, so all 2 * nodes of them come from one free block (HTTP first, then gRPC)."""
    base = free_port_block(2 * nodes, host)
    return base, base + nodes


def weaviate_cluster(
    binary: Path, data_dir: Path, run_dir: Path, host: str, nodes: list[WeaviatePorts], modules_url: str, api_key: str
) -> list[Service]:
    """One service per node: each a single-node Weaviate (same key, modules and settings) with
    Weaviate's own clustering settings on top. Names of the variables: weaviate v1.39.3
    usecases/config/environment.go:2081 (CLUSTER_HOSTNAME), 2085 (CLUSTER_JOIN), 2106
    (CLUSTER_IN_LOCALHOST), 1583 (RAFT_JOIN), 1598 (RAFT_BOOTSTRAP_EXPECT)."""
    names = [f"node{index}" for index in range(len(nodes))]
    raft_join = ",".join(f"{name}:{ports.raft}" for name, ports in zip(names, nodes))
    services = []
    for index, (name, ports) in enumerate(zip(names, nodes)):
        node = weaviate_service(binary, data_dir / f"weaviate-{name}", run_dir, host, ports, modules_url, api_key)
        env = {
            **node.env,
            "CLUSTER_HOSTNAME": name,
            # Peers on one host: memberlist's local timings, and peer ports looked up per node
            # (from RAFT_JOIN) instead of one port shared by all hosts.
            "CLUSTER_IN_LOCALHOST": "true",
            "RAFT_JOIN": raft_join,
            "RAFT_BOOTSTRAP_EXPECT": str(len(nodes)),
            # Copies are compared every 5 s instead of every 30 s (environment.go:1174;
            # adapters/repos/db/shard_async_replication.go:54): cheap over loopback, and a node
            # that was down has caught up within seconds of being back.
            "ASYNC_REPLICATION_FREQUENCY": "5s",
            # Data requests look collections up in this node's copy of the schema (Raft keeps one on
            # every node) instead of asking the Raft leader each time (Weaviate's default, LeaderOnly:
            # usecases/config/runtime/collection_retrieval_strategy.go:17-21, configure_api.go:732-738),
            # so they go on while a killed leader is replaced, or a loaded host holds an election.
            "COLLECTION_RETRIEVAL_STRATEGY": "LocalOnly",
        }
        if index:
            # The others join the first node's gossip; they keep retrying it while the cluster is
            # short of a member (usecases/cluster/state.go:320-327), so a restarted first node is found again.
            env["CLUSTER_JOIN"] = f"{host}:{nodes[0].gossip}"
        internal = [(host, getattr(ports, port)) for port in INTERNAL_PORTS]
        services.append(replace(node, name=f"weaviate-{name}", env=env, ports=node.ports + internal))
    return services


def start_together(services: list[Service], timeout: float, progress: Progress, started: list[Service]) -> None:
    """Starts those of `services` not running yet, all at once, then waits for each to be ready;
    appends what it started to `started` (for the caller to stop if anything fails)."""
    starting = []
    for service in services:
        if service.recorded() is not None:
            progress(f"{service.name}: already running, {service.ready_url}")
            continue
        service.start()
        started.append(service)
        starting.append(service)
    for service in starting:
        service.wait_ready(timeout)
        progress(f"{service.name}: started, ready at {service.ready_url}")


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
            self.settings.weaviate_data_path,
            self.run_dir,
            self.settings.weaviate_host,
            self.weaviate_ports(),
            self.settings.modules_url,
            self.api_key(),
        )

    @property
    def cluster_path(self) -> Path:
        return self.settings.data_dir / "weaviate-cluster.json"

    def cluster_record(self) -> dict | None:
        """What `up --nodes` recorded of the cluster in this data dir (nodes, internal_base); None: no cluster."""
        try:
            return json.loads(self.cluster_path.read_text())
        except FileNotFoundError:
            return None

    def weaviate_nodes(self, nodes: int | None, progress: Progress = print) -> list[Service]:
        """The Weaviate services of this data dir: one Weaviate, or the nodes of its cluster.
        nodes: None keeps what the data dir holds (one Weaviate when it holds nothing yet)."""
        record = self.cluster_record()
        if record is None and nodes in (None, 1):
            return [self.weaviate(progress)]
        ports = self.cluster_node_ports(nodes or record["nodes"], record)
        binary = resolve_weaviate_binary(self.settings, progress)
        return weaviate_cluster(binary, self.settings.data_dir, self.run_dir, self.settings.weaviate_host, ports,
                                self.settings.modules_url, self.api_key())

    def cluster_node_ports(self, nodes: int, record: dict | None = None) -> list[WeaviatePorts]:
        """The ports of the cluster's nodes; the first call records the cluster in the data dir,
        later ones refuse another number of nodes. record: cluster_record(), where already read."""
        record = record or self.cluster_record()
        if record is None:
            if self.settings.weaviate_data_path.exists():
                raise ServiceError(
                    f"The data dir {self.settings.data_dir} holds a single-node Weaviate; its data cannot move "
                    "into a cluster. Start the cluster in a new data dir (--data-dir), then scan into it."
                )
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            record = {"nodes": nodes, "internal_base": free_port_block(NODE_PORT_SPACING * nodes)}
            self.cluster_path.write_text(json.dumps(record, indent=2))
        elif nodes != record["nodes"]:
            recorded = record["nodes"]
            raise ServiceError(
                f"The data dir {self.settings.data_dir} holds a {recorded}-node Weaviate cluster; its Raft "
                f"membership was fixed when it first started. Run `deeplens up --nodes {recorded}` (or `deeplens up`), "
                "or start a cluster of another size in a new data dir (--data-dir)."
            )
        return cluster_ports(self.settings.weaviate_port, self.settings.weaviate_grpc_port, record["internal_base"], nodes)

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

    def up(self, progress: Progress = print, nodes: int | None = None) -> list[Service]:
        # Weaviate's modules wait for the inference server at start-up, so it goes first. The nodes
        # of a cluster start together: each is ready only once the Raft cluster has formed.
        plan = [(MODULES_START_TIMEOUT, [self.modules()]),
                (WEAVIATE_START_TIMEOUT, self.weaviate_nodes(nodes, progress))]
        started: list[Service] = []
        try:
            for timeout, services in plan:
                start_together(services, timeout, progress, started)
        except ServiceError:
            for service in started:  # only what this call started
                service.stop()
            raise
        return [service for _, services in plan for service in services]

    def down(self, progress: Progress = print) -> int:
        stopped = 0
        for service in reversed(self.recorded_services()):
            if service.stop():
                progress(f"{service.name}: stopped")
                stopped += 1
        return stopped
