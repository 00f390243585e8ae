"""The full Elastic stack in containers (testcontainers): Elasticsearch with a trial licence and
Kibana, and a real module server on the host that Elasticsearch's inference endpoints call
(host.docker.internal). Checked: `es setup --mode auto` creates the inference endpoints (ES calls
the module server to validate them), pipelines with _simulate against the fixture pairs in
tests/es_fixtures and on a real thumbnail, the transform's output and its rebuild after deletions,
and the dashboard import. Run them with `make test-containers`; without a reachable Docker engine
they skip and say why."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deeplens.config import Settings
from deeplens.processes import free_port
from deeplens.stack import MODULES_START_TIMEOUT, modules_service

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]

STACK_VERSION = os.environ.get("DEEPLENS_TEST_STACK_VERSION", "8.19.3")
FIXTURES = Path(__file__).parent / "es_fixtures" / "pipeline"


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
            # The module server runs on the host; Linux engines need the name mapped explicitly.
            .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
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
def modules(stack, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A real module server (offline profile) on every interface: its URL from here and from ES."""
    port = free_port()
    service = modules_service(tmp_path_factory.mktemp("modules"), "0.0.0.0", port, "offline", Settings().cache_dir)
    service.start()
    try:
        service.wait_ready(MODULES_START_TIMEOUT)
        yield {"host": f"http://127.0.0.1:{port}", "es": f"http://host.docker.internal:{port}"}
    finally:
        service.stop()


@pytest.fixture(scope="module")
def es(stack, modules):
    from elasticsearch import Elasticsearch

    from deeplens.ingest.setup import module_server_dims, setup

    client = Elasticsearch(stack["es"], request_timeout=60)
    dims, _ = module_server_dims(modules["host"])
    # Creating each endpoint makes ES call the module server with its validation input "how big"
    # (modules/routes/es_inference.py); before it answered that, this setup failed.
    report = setup(client, mode="auto", modules_url=modules["es"], semantic_dims=dims, start_transforms=False)
    assert report.mode == "inference", report
    assert not report.unsupported, report.unsupported
    yield client
    client.close()


def test_inference_endpoints_took_their_dimensions_from_the_module_server(es, modules) -> None:
    meta = httpx.get(f"{modules['host']}/meta").json()["models"]
    for inference_id, dims in (("deeplens-semantic", meta["semantic"]["dimensions"]), ("deeplens-phash", 64)):
        [endpoint] = es.perform_request("GET", f"/_inference/text_embedding/{inference_id}",
                                        headers={"accept": "application/json"})["endpoints"]
        assert endpoint["service_settings"]["dimensions"] == dims
    semantic = es.perform_request("GET", "/_inference/text_embedding/deeplens-semantic",
                                  headers={"accept": "application/json"})["endpoints"][0]
    assert semantic["service_settings"]["similarity"] == "cosine"


def test_an_endpoint_es_cannot_validate_is_a_setup_error_saying_why(es) -> None:
    from deeplens.ingest import resources
    from deeplens.ingest.setup import SetupError, _put_inference_endpoint

    definition = resources.inference_endpoint("deeplens-semantic", "http://modules.invalid:8090")
    definition["inference_id"] = "deeplens-semantic-unreachable"  # leaves the installed endpoints alone
    with pytest.raises(SetupError, match="must reach the module server at http://modules.invalid:8090") as error:
        _put_inference_endpoint(es, definition)
    assert "validation call" in str(error.value)  # Elasticsearch's own reason comes along


def test_inference_pipeline_embeds_a_thumbnail(es, modules) -> None:
    """A document that arrives with its thumbnail and no vectors (inference mode, or another tool)
    gets them from the module server through ES; the same as the scan worker would have sent."""
    import base64

    from deeplens.samples import jpeg_bytes, sample_photos

    thumbnail = base64.b64encode(jpeg_bytes(sample_photos()["coffee"].resize((128, 96)))).decode()
    [features] = httpx.post(f"{modules['host']}/v1/features", timeout=120, json={
        "images": [{"data": thumbnail}], "features": ["phash", "semantic"]}).json()["results"]
    event = {"location": "nas", "uri": "file:///srv/coffee.jpg", "path": "coffee.jpg", "size_bytes": 5,
             "content_sha256": "c" * 64, "indexed_at": "2024-05-01T10:00:00Z", "scan_id": "s", "thumbnail": thumbnail}
    result = es.ingest.simulate(id="deeplens-images-inference", docs=[{"_index": "deeplens-images", "_source": event}])
    [doc] = [d["doc"]["_source"] for d in result["docs"]]
    assert doc["phash"] == doc["phash_bits"] == features["phash"]["hex"]
    np.testing.assert_allclose(doc["semantic"], features["semantic"], atol=1e-5)
    assert "thumbnail" not in doc and "_deeplens" not in doc


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
        return {**data, "phash_bits": "0123456789abcdef"}

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


def test_duplicate_groups_are_rebuilt_after_copies_are_deleted(es) -> None:
    """A continuous transform never revisits a group whose copy was deleted (nothing newer than its
    checkpoint names it); the scan calls rebuild_transforms after deleting or changing documents."""
    from deeplens.ingest import bulk
    from deeplens.ingest.setup import rebuild_transforms
    from deeplens.schema.models import ImageRecord, image_id

    transform_id = "deeplens-duplicate-groups"
    # The installed sync delay is 60 s; a short one lets the first checkpoint see the new documents.
    es.transform.update_transform(transform_id=transform_id, frequency="1s",
                                  sync={"time": {"field": "ingested_at", "delay": "1s"}})
    three, two = "3" * 64, "2" * 64
    paths = {"r3-a.jpg": three, "r3-b.jpg": three, "r3-c.jpg": three, "r2-a.jpg": two, "r2-b.jpg": two}
    records = [ImageRecord(location="rebuild", uri=f"file:///{p}", path=p, folder="", filename=p, extension="jpg",
                           size_bytes=10, content_sha256=sha, scan_id="s").model_dump(mode="json")
               for p, sha in paths.items()]
    assert bulk.index_records(es, records, pipeline="deeplens-images", refresh="wait_for").ok

    def groups_after_rebuild() -> dict[str, dict]:
        time.sleep(2)  # past the sync delay
        assert rebuild_transforms(es) == [transform_id]
        deadline = time.monotonic() + 120
        while es.transform.get_transform_stats(transform_id=transform_id)["transforms"][0]["checkpointing"].get(
                "last", {}).get("checkpoint", 0) < 1:
            assert time.monotonic() < deadline, "no checkpoint in 120 s"
            time.sleep(1)
        es.indices.refresh(index="deeplens-duplicate-groups")
        hits = es.search(index="deeplens-duplicate-groups", query={"terms": {"content_sha256": [three, two]}})
        return {h["_source"]["content_sha256"]: h["_source"] for h in hits["hits"]["hits"]}

    before = groups_after_rebuild()
    assert (before[three]["copies"], before[two]["copies"]) == (3, 2)
    bulk.delete_records(es, [str(image_id("rebuild", p)) for p in ("r3-c.jpg", "r2-b.jpg")])
    after = groups_after_rebuild()
    assert after[three]["copies"] == 2 and after[three]["wasted_bytes"] == 10
    assert two not in after  # one copy left: no longer a group


def test_dashboards_import(stack) -> None:
    from deeplens.dashboards.assemble import source_objects
    from deeplens.dashboards.cli import import_objects

    result = import_objects(stack["kibana"])
    assert result["success"], result
    assert result["successCount"] == len(source_objects())
    again = import_objects(stack["kibana"])  # idempotent
    assert again["success"], again
