"""A real 3-node Weaviate cluster on loopback (three weaviate-server processes, Weaviate's own
clustering), DeepLens collections sharded over it with two copies of each object.

Scans, search and duplicates give the answers a single Weaviate gives, and a node killed during a
scan loses nothing: the index equals storage, every file once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from deeplens.config import Settings
from deeplens.processes import Service
from deeplens.samples import write_demo_locations
from deeplens.schema.weaviate import IMAGE_COLLECTION
from deeplens.stack import WEAVIATE_START_TIMEOUT, Stack, free_cluster_client_ports, start_together
from tests.cli import run, run_json, weaviate_client
from tests.scanning import count, images, indexed, killed, on_disk, once_indexed, scan_in_background, write
from tests.weaviate_server import DEEPLENS_COLLECTIONS, WeaviateEndpoint, delete_deeplens_collections

pytestmark = [pytest.mark.weaviate, pytest.mark.slow]

NODES = 3


@dataclass(frozen=True)
class Cluster:
    nodes: list[Service]
    endpoints: list[WeaviateEndpoint]  # DeepLens talks to the first
    settings: Settings


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, modules_url: str) -> Iterator[Cluster]:
    """Three Weaviate nodes of one cluster, as `deeplens up --nodes 3` starts them (with the
    session's module server instead of a new one)."""
    http, grpc = free_cluster_client_ports(NODES)
    settings = Settings(data_dir=tmp_path_factory.mktemp("cluster") / "data", weaviate_url=f"http://127.0.0.1:{http}",
                        weaviate_grpc_port=grpc, modules_url=modules_url)
    stack = Stack(settings)
    nodes = stack.weaviate_nodes(NODES)
    endpoints = [WeaviateEndpoint("127.0.0.1", node.http, node.grpc, stack.api_key())
                 for node in stack.cluster_node_ports(NODES)]
    try:
        start_together(nodes, WEAVIATE_START_TIMEOUT, progress=lambda line: None, started=[])
        yield Cluster(nodes, endpoints, settings)
    finally:
        stack.down()


@pytest.fixture
def cluster_env(cluster: Cluster) -> dict[str, str]:
    """DEEPLENS_* settings for the cluster (its key from the data dir; two copies of each object),
    with an empty database."""
    delete_deeplens_collections(cluster.endpoints[0])
    return {
        "DEEPLENS_DATA_DIR": str(cluster.settings.data_dir),
        "DEEPLENS_WEAVIATE_URL": cluster.settings.weaviate_url,
        "DEEPLENS_WEAVIATE_GRPC_PORT": str(cluster.settings.weaviate_grpc_port),
        "DEEPLENS_MODULES_URL": cluster.settings.modules_url,
        "DEEPLENS_WEAVIATE_REPLICATION_FACTOR": "2",
    }


def test_status_shows_every_node_ready(cluster_env):
    services = run_json(cluster_env, "status")["services"]
    assert [(row["name"], row["ready"]) for row in services] == [(f"weaviate-node{index}", True)
                                                                 for index in range(NODES)]


def test_a_data_dir_keeps_its_number_of_nodes(tmp_path):
    three = Settings(data_dir=tmp_path / "three")
    Stack(three).cluster_node_ports(3)  # what a first `up --nodes 3` records
    refused = run({"DEEPLENS_DATA_DIR": str(three.data_dir)}, "up", "--nodes", "2", ok=False)
    assert refused.exit_code == 1
    assert "holds a 3-node Weaviate cluster" in refused.output and "deeplens up --nodes 3" in refused.output
    single = tmp_path / "single"
    (single / "weaviate").mkdir(parents=True)  # what `up` of one Weaviate leaves
    refused = run({"DEEPLENS_DATA_DIR": str(single)}, "up", "--nodes", "3", ok=False)
    assert refused.exit_code == 1 and "holds a single-node Weaviate" in refused.output
    assert not (single / "run").exists(), "nothing was started"


def shard_nodes(endpoint: WeaviateEndpoint, collection: str) -> dict[str, set[str]]:
    """shard -> the nodes holding a copy of it, from Weaviate's own node report."""
    with weaviate_client(endpoint) as client:
        nodes = client.cluster.nodes(collection, output="verbose")
    return {shard.name: {node.name for node in nodes for held in node.shards if held.name == shard.name}
            for node in nodes for shard in node.shards}


def by_distance(hits: list[dict]) -> list[dict]:
    """Hits in a defined order: equal distances (copies of one image) come back in any order."""
    return sorted(hits, key=lambda hit: (hit.get("distance"), hit.get("hamming_distance"), hit["uri"]))


def answers(env: dict[str, str], archive, exports) -> dict:
    """What a user sees after scanning the demo locations: duplicates, search, stats."""
    run(env, "storage", "add", "archive", str(archive))
    run(env, "storage", "add", "exports", str(exports))
    scans = run_json(env, "scan", "--all")
    query = str(archive / "astronaut.jpg")
    return {
        "scans": [(scan["location"], scan["new"], scan["errors"]) for scan in scans],
        "exact": run_json(env, "duplicates", "--exact"),
        "near": run_json(env, "duplicates", "--near"),
        "search": by_distance(run_json(env, "search", "--image", query, "--limit", "8")["hits"]),
        "near_dup": by_distance(run_json(env, "search", "--image", query, "--near-dup")["hits"]),
        "stats": run_json(env, "stats"),
    }


def test_scan_search_and_duplicates_answer_as_on_one_node(cluster, cluster_env, env, tmp_path):
    first = cluster.endpoints[0]
    locations = write_demo_locations(tmp_path / "demo")
    on_cluster = answers(cluster_env, locations["archive"], locations["exports"])
    assert on_cluster == answers(env, locations["archive"], locations["exports"])
    assert on_cluster["exact"]["groups"] and on_cluster["near"]["groups"] and on_cluster["search"]

    everywhere = {f"node{index}" for index in range(NODES)}
    with weaviate_client(first) as client:
        for name in DEEPLENS_COLLECTIONS:
            config = client.collections.use(name).config.get()
            assert (config.replication_config.factor, config.sharding_config.desired_count) == (2, NODES)
            shards = shard_nodes(first, name)
            assert len(shards) == NODES and all(len(held) == 2 for held in shards.values()), (name, shards)
            assert set().union(*shards.values()) == everywhere, (name, shards)
        # Each image once, though two copies of it are stored.
        images_indexed = sum(new for _, new, _ in on_cluster["scans"])
        assert count(first) == images_indexed


def test_replication_factor_is_checked(cluster_env):
    too_many = run(cluster_env, "schema", "apply", "--replication-factor", "4", ok=False)
    assert too_many.exit_code == 1
    assert "needs at least 4 Weaviate nodes; this Weaviate has 3" in too_many.output
    assert "deeplens up --nodes 4" in too_many.output
    assert "with 2 copies of each object" in run(cluster_env, "schema", "apply").stdout
    other = run(cluster_env, "schema", "apply", "--replication-factor", "3", ok=False)
    assert other.exit_code == 1
    assert f"{IMAGE_COLLECTION} keeps 2 copies of each object, not 3" in other.output
    assert "--replication-factor 2" in other.output


def caught_up(endpoint: WeaviateEndpoint, location: str, expected: dict[str, str], timeout: float = 120) -> None:
    """Wait until reads through a node that was down show `expected`: a node reads its own copies
    first, and Weaviate's asynchronous replication brings them up to date in the background."""
    deadline = time.monotonic() + timeout
    while (found := indexed(endpoint, location)) != expected:
        missing, extra = expected.items() - found.items(), found.items() - expected.items()
        assert time.monotonic() < deadline, f"not caught up after {timeout:.0f} s: missing {missing}, extra {extra}"
        time.sleep(1)


def raft_leader(endpoint: WeaviateEndpoint) -> str:
    """The name of the node that leads the cluster's Raft (schema) log, as the cluster reports it."""
    answer = httpx.get(f"{endpoint.url}/v1/cluster/statistics", timeout=10,
                       headers={"Authorization": f"Bearer {endpoint.api_key}"}).raise_for_status().json()
    return next(node["name"] for node in answer["statistics"] if node["raft"]["state"] == "Leader")


def test_a_node_killed_mid_scan_loses_nothing(cluster, cluster_env, tmp_path):
    nodes, endpoints = cluster.nodes, cluster.endpoints
    first = endpoints[0]  # the node DeepLens talks to
    folder = tmp_path / "many"
    write(folder, images(100))
    run(cluster_env, "storage", "add", "many", str(folder))
    # The Raft leader where it is not node 0: a schema read then waited for the dead leader until the
    # query timeout (connectors/weaviate_client.py, SCHEMA_READS); otherwise the last node.
    leader = int(raft_leader(first).removeprefix("node"))
    victim = leader if leader != 0 else NODES - 1
    scan = scan_in_background(cluster_env, "many")
    once_indexed(first, scan, 32)
    killed(nodes[victim])
    try:
        stdout, stderr = scan.communicate(timeout=180)
        assert scan.returncode == 0 and "could not be indexed" not in stdout + stderr, stdout + stderr[-2000:]
        # With the node still down: every file readable from the two nodes left, once.
        assert indexed(first, "many") == on_disk(folder)
        # Files deleted and changed while it is down.
        for name in sorted(on_disk(folder))[:10]:
            (folder / name).unlink()
        write(folder, images(5, 10, changed=True))
        [rescan] = run_json(cluster_env, "scan", "many")
        assert (rescan["new"], rescan["changed"], rescan["deleted"], rescan["errors"]) == (0, 5, 10, 0)
        assert indexed(first, "many") == on_disk(folder)
    finally:
        nodes[victim].start()
        nodes[victim].wait_ready(WEAVIATE_START_TIMEOUT)
    # Back: it gets what it missed, and what was deleted meanwhile does not come back.
    caught_up(endpoints[victim], "many", on_disk(folder))
    [after] = run_json(cluster_env, "scan", "many")
    assert (after["new"], after["changed"], after["deleted"], after["errors"]) == (0, 0, 0, 0)
    assert indexed(first, "many") == on_disk(folder)
