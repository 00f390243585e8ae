"""The full Elastic stack in containers (testcontainers): Elasticsearch with a trial licence and
Kibana. Pipelines are checked with _simulate against the fixture pairs in tests/es_fixtures,
the transform's output, and the dashboard import. Skipped, with the reason, without Docker."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]

STACK_VERSION = os.environ.get("DEEPLENS_TEST_STACK_VERSION", "8.19.3")
FIXTURES = Path(__file__).parent / "es_fixtures" / "pipeline"
DIMS = 2


def _docker_reason() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no client library, no socket, no daemon
        return f"needs a Docker engine for the Elasticsearch/Kibana containers: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    with Network() as network:
        es = (
            DockerContainer(f"docker.elastic.co/elasticsearch/elasticsearch:{STACK_VERSION}")
            .with_network(network)
            .with_network_aliases("elasticsearch")
            .with_env("discovery.type", "single-node")
            .with_env("xpack.security.enabled", "false")
            .with_env("xpack.license.self_generated.type", "trial")
            .with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g")
            .with_exposed_ports(9200)
        )
        kibana = (
            DockerContainer(f"docker.elastic.co/kibana/kibana:{STACK_VERSION}")
            .with_network(network)
            .with_env("ELASTICSEARCH_HOSTS", "http://elasticsearch:9200")
            .with_exposed_ports(5601)
        )
        with es, kibana:
            es_url = f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}"
            kibana_url = f"http://{kibana.get_container_host_ip()}:{kibana.get_exposed_port(5601)}"
            _wait(f"{es_url}/_cluster/health?wait_for_status=yellow", 180)
            _wait(f"{kibana_url}/api/status", 300, lambda r: r.json()["status"]["overall"]["level"] == "available")
            yield {"es": es_url, "kibana": kibana_url}


def _wait(url: str, timeout: float, ready=lambda response: True) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=10)
            if response.status_code == 200 and ready(response):
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready in {timeout}s")
        time.sleep(2)


@pytest.fixture(scope="module")
def es(stack):
    from elasticsearch import Elasticsearch

    from deeplens.ingest.setup import setup

    client = Elasticsearch(stack["es"], request_timeout=60)
    # The module server is not reachable from the container; endpoints are created all the same
    # (the custom service does not call the URL at creation) and the fixtures never reach them.
    report = setup(client, mode="auto", modules_url="http://modules.invalid:8090", semantic_dims=DIMS, start_transforms=False)
    assert report.mode == "inference", report
    assert not report.unsupported, report.unsupported
    yield client
    client.close()


def _pairs() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("test-*.json") if not p.name.endswith("-expected.json"))


@pytest.mark.parametrize("fixture", _pairs(), ids=lambda p: p.stem)
def test_pipeline_fixture_pair(es, fixture: Path) -> None:
    case = json.loads(fixture.read_text())
    expected = json.loads(fixture.with_name(fixture.stem + "-expected.json").read_text())
    result = es.ingest.simulate(id=case["pipeline"], docs=[{"_index": "deeplens-images", "_source": e} for e in case["events"]])
    docs = [d["doc"]["_source"] for d in result["docs"]]
    for doc in docs:
        for field in expected.get("dynamic_fields", []):
            assert field in doc
            doc.pop(field)
    assert docs == expected["expected"]


def test_failure_is_routed_to_failures_index(es) -> None:
    result = es.ingest.simulate(
        id="deeplens-images", docs=[{"_index": "deeplens-images", "_id": "x", "_source": {"location": "nas"}}]
    )
    [doc] = result["docs"]
    assert doc["doc"]["_index"] == "deeplens-failures"
    assert "path" in doc["doc"]["_source"]["error_message"]


def test_transform_output(es) -> None:
    from deeplens.ingest import bulk
    from deeplens.schema.models import ImageRecord

    def record(location: str, path: str, sha: str, size: int) -> dict:
        data = ImageRecord(location=location, uri=f"file:///{path}", path=path, folder="", filename=path,
                           extension="jpg", size_bytes=size, content_sha256=sha, scan_id="s").model_dump(mode="json")
        return {**data, "semantic": [1.0, 0.0], "phash_bits": "0123456789abcdef"}

    records = [record("nas", "a.jpg", "a" * 64, 100), record("s3", "b.jpg", "a" * 64, 100),
               record("nas", "c.jpg", "a" * 64, 100), record("nas", "d.jpg", "d" * 64, 50)]
    result = bulk.index_records(es, records, pipeline="deeplens-images", refresh="wait_for")
    assert result.ok, result.errors
    # The installed transform is continuous (60 s sync delay, 5 min frequency); a batch copy of
    # the same pivot shows its output now.
    from deeplens.ingest import resources

    body = resources.transform("deeplens-duplicate-groups")["body"]
    body.pop("sync"), body.pop("frequency")
    body["dest"] = {"index": "deeplens-duplicate-groups-batch"}
    es.transform.put_transform(transform_id="deeplens-duplicate-groups-batch", **body)
    es.transform.start_transform(transform_id="deeplens-duplicate-groups-batch")
    deadline = time.monotonic() + 120
    while es.transform.get_transform_stats(transform_id="deeplens-duplicate-groups-batch")["transforms"][0]["state"] != "stopped":
        assert time.monotonic() < deadline, "batch transform did not finish in 120 s"
        time.sleep(1)
    es.indices.refresh(index="deeplens-duplicate-groups-batch")
    hits = es.search(index="deeplens-duplicate-groups-batch")["hits"]["hits"]
    [group] = [h["_source"] for h in hits]
    assert group["content_sha256"] == "a" * 64
    assert group["copies"] == 3 and group["wasted_bytes"] == 200 and group["total_bytes"] == 300
    assert group["locations"] == ["nas", "s3"] and group["location_count"] == 2
    assert group["sample_paths"] == ["nas:a.jpg", "nas:c.jpg", "s3:b.jpg"]


def test_dashboards_import(stack) -> None:
    from deeplens.dashboards.assemble import source_objects
    from deeplens.dashboards.cli import import_objects

    result = import_objects(stack["kibana"])
    assert result["success"], result
    assert result["successCount"] == len(source_objects())
    again = import_objects(stack["kibana"])  # idempotent
    assert again["success"], again
