"""The embedded stack: a real Weaviate from the local binary, `deeplens up/status/down`, provisioning errors."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import grpc
import httpx
import pytest
import weaviate.classes as wvc
from weaviate.proto.v1.v6300.v1 import search_get_pb2, weaviate_pb2_grpc

from deeplens.config import Settings
from deeplens.weaviate_binary import WeaviateUnavailable, resolve_weaviate_binary
from tests.cli import deeplens, stack_env, weaviate_client


@pytest.mark.weaviate
def test_weaviate_collection_insert_and_query_over_rest_and_grpc(weaviate):
    with weaviate_client(weaviate) as client:
        client.collections.delete("StackProbe")
        probes = client.collections.create(
            "StackProbe",
            properties=[wvc.config.Property(name="label", data_type=wvc.config.DataType.TEXT)],
            vector_config=wvc.config.Configure.Vectors.self_provided(),
        )
        # REST: single inserts; gRPC: batch insert and all queries.
        probes.data.insert({"label": "north"}, vector=[1.0, 0.0, 0.0])
        probes.data.insert_many(
            [
                wvc.data.DataObject(properties={"label": "east"}, vector=[0.0, 1.0, 0.0]),
                wvc.data.DataObject(properties={"label": "up"}, vector=[0.0, 0.0, 1.0]),
            ]
        )
        assert probes.aggregate.over_all(total_count=True).total_count == 3
        nearest = probes.query.near_vector([0.1, 0.9, 0.0], limit=1).objects
        assert [obj.properties["label"] for obj in nearest] == ["east"]
        assert "StackProbe" in client.collections.list_all()
        client.collections.delete("StackProbe")


@pytest.mark.weaviate
def test_up_status_down_round_trip_in_separate_data_dirs(tmp_path):
    first, second = stack_env(tmp_path / "a"), stack_env(tmp_path / "b")
    up = deeplens("up", env=first)
    assert up.returncode == 0, up.stderr
    try:
        key_file = tmp_path / "a" / "weaviate-api-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        _only_key_holders_get_in(first, key_file.read_text().strip())
        status = json.loads(deeplens("status", "--json", env=first).stdout)
        [weaviate_row] = [row for row in status["services"] if row["name"] == "weaviate"]
        assert weaviate_row["ready"] and weaviate_row["pid"]
        assert status["weaviate_version"]

        again = deeplens("up", env=first)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        status_again = json.loads(deeplens("status", "--json", env=first).stdout)
        assert [r["pid"] for r in status_again["services"]] == [r["pid"] for r in status["services"]]

        # Another data dir sees nothing of the first stack and cannot stop it.
        other = deeplens("down", env=second)
        assert "Nothing was running" in other.stdout
        assert json.loads(deeplens("status", "--json", env=first).stdout)["services"][0]["ready"]
    finally:
        down = deeplens("down", env=first)
    assert down.returncode == 0 and "weaviate: stopped" in down.stdout
    assert not Path(f"/proc/{weaviate_row['pid']}").exists() or _is_zombie(weaviate_row["pid"])
    after = json.loads(deeplens("status", "--json", env=first).stdout)
    assert after["services"] == [] and after["weaviate_version"] is None


def _only_key_holders_get_in(env: dict[str, str], key: str) -> None:
    """Anonymous REST and gRPC requests are refused; with the key, both work."""
    url, grpc_port = env["DEEPLENS_WEAVIATE_URL"], env["DEEPLENS_WEAVIATE_GRPC_PORT"]
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{url}/v1/schema").status_code == 401
    created = httpx.post(f"{url}/v1/schema", json={"class": "Probe", "vectorizer": "none"}, headers=bearer)
    assert created.status_code == 200, created.text
    search = search_get_pb2.SearchRequest(collection="Probe", limit=1, uses_123_api=True, uses_125_api=True,
                                          uses_127_api=True)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = weaviate_pb2_grpc.WeaviateStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Search(search, timeout=10)
        assert "unauthorized" in refused.value.details()  # Weaviate answers status UNKNOWN
        assert list(stub.Search(search, metadata=[("authorization", f"Bearer {key}")], timeout=10).results) == []


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


@pytest.mark.weaviate
def test_up_fails_clearly_when_the_port_is_taken(tmp_path):
    env = stack_env(tmp_path / "data")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        env["DEEPLENS_WEAVIATE_URL"] = f"http://127.0.0.1:{taken}"
        up = deeplens("up", env=env)
    assert up.returncode == 1
    assert "already taken" in up.stderr and str(taken) in up.stderr
    assert json.loads(deeplens("status", "--json", env=env).stdout)["services"] == []


def test_up_shows_the_log_tail_when_weaviate_dies(tmp_path):
    broken = tmp_path / "weaviate-server"
    broken.write_text("#!/bin/sh\necho 'fatal: cannot open persistence path' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    env = {**stack_env(tmp_path / "data"), "DEEPLENS_WEAVIATE_BIN": str(broken)}
    up = deeplens("up", env=env)
    assert up.returncode == 1
    assert "exited during start-up" in up.stderr and "cannot open persistence path" in up.stderr


def test_weaviate_bin_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(WeaviateUnavailable, match="DEEPLENS_WEAVIATE_BIN=.*not an executable"):
        resolve_weaviate_binary(Settings(weaviate_bin=tmp_path / "missing", cache_dir=tmp_path))


def test_no_go_and_no_network_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `go` anywhere
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the download cannot reach the network
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(WeaviateUnavailable) as error:
        resolve_weaviate_binary(Settings(cache_dir=tmp_path / "cache"), progress=lambda _: None)
    message = str(error.value)
    assert "no `go` on PATH" in message
    assert "embedded download failed" in message
    assert "install Go >= 1.26" in message and "DEEPLENS_WEAVIATE_BIN" in message


def test_too_old_go_is_reported(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old_go = bin_dir / "go"
    old_go.write_text("#!/bin/sh\n[ \"$1 $2\" = 'env GOVERSION' ] && echo go1.21.5\n")
    old_go.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(WeaviateUnavailable, match=r"Go 1\.21 is on PATH but building Weaviate .* needs Go >= 1\.26"):
        resolve_weaviate_binary(Settings(cache_dir=tmp_path / "cache"), progress=lambda _: None)


def test_version_flag():
    result = deeplens("--version", env=dict(os.environ))
    assert result.returncode == 0 and "deeplens" in result.stdout
