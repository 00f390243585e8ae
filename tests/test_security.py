"""Who may talk to the servers, and where secrets must never end up."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import httpx
import pytest
from elasticsearch import helpers as es_helpers

from deeplens.samples import jpeg_bytes, sample_photos
from tests.cli import run, run_json, weaviate_client
from tests.test_scan_elasticsearch import es_env  # noqa: F401 - the fixture: an empty Elasticsearch

pytestmark = pytest.mark.weaviate


def test_module_server_with_a_key_refuses_requests_without_it(keyed_modules):
    url, key = keyed_modules
    assert httpx.get(f"{url}/.well-known/ready").status_code == 200  # health probes stay open
    body = {"images": [], "features": ["phash"]}
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"Authorization": key}):
        refused = httpx.post(f"{url}/v1/features", json=body, headers=headers)
        assert refused.status_code == 401 and "DEEPLENS_MODULES_API_KEY" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/meta").status_code == 401
    assert httpx.get(f"{url}/meta", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_the_cli_sends_the_module_server_key(env, keyed_modules, tmp_path):
    url, key = keyed_modules
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "coffee.jpg").write_bytes(jpeg_bytes(sample_photos()["coffee"]))
    # Hash-only: Weaviate, which cannot send the key, never calls this module server.
    env = {**env, "DEEPLENS_MODULES_URL": url, "DEEPLENS_MODULES_API_KEY": key}
    run(env, "schema", "apply", "--hash-only")
    run(env, "storage", "add", "photos", str(folder))
    [summary] = run_json(env, "scan", "photos")
    assert (summary["new"], summary["errors"]) == (1, 0)
    hits = run_json(env, "search", "--image", str(folder / "coffee.jpg"), "--near-dup")["hits"]
    assert hits[0]["path"] == "coffee.jpg"
    assert run_json(env, "status")["modules"]["profile"] == "offline"


@pytest.mark.elasticsearch
def test_secrets_end_up_nowhere(es_env, weaviate, s3_server, sftp_server, tmp_path, caplog):
    """Credentials given by environment variable never reach output, logs, the data dir or the
    indexes (Weaviate's and the Elasticsearch documents the scan writes)."""
    env, es = es_env
    run(env, "es", "setup", "--mode", "precomputed")
    photos = sample_photos()
    s3_root = s3_server.child("secrets").removeprefix("s3://")
    s3 = fsspec.filesystem("s3", skip_instance_cache=True, **s3_server.storage_options)
    s3.pipe({f"{s3_root}/coffee.jpg": jpeg_bytes(photos["coffee"]), f"{s3_root}/broken.jpg": b"\xff\xd8 not a jpeg"})
    sftp_dir = Path(sftp_server.url.split(f":{sftp_server.port}", 1)[1]) / "secrets"  # the server shares this disk
    sftp_dir.mkdir()
    (sftp_dir / "rocket.jpg").write_bytes(jpeg_bytes(photos["rocket"]))
    secrets_used = {
        "DEEPLENS_TEST_S3_KEY": s3_server.options["key"], "DEEPLENS_TEST_S3_SECRET": s3_server.credentials["secret"],
        "DEEPLENS_TEST_SFTP_PASSPHRASE": sftp_server.credentials["passphrase"],
    }
    env = {**env, **secrets_used}
    s3_options = [f"--option=endpoint_url={s3_server.options['endpoint_url']}",
                  "--credentials-env=key=DEEPLENS_TEST_S3_KEY", "--credentials-env=secret=DEEPLENS_TEST_S3_SECRET"]
    sftp_options = [f"--option=username={sftp_server.options['username']}",
                    f"--option=key_filename={sftp_server.options['key_filename']}",
                    "--credentials-env=passphrase=DEEPLENS_TEST_SFTP_PASSPHRASE"]
    outputs = [run(env, "storage", "add", "bucket", s3_server.child("secrets"), *s3_options).output,
               run(env, "storage", "add", "nas", sftp_server.child("secrets"), *sftp_options).output]
    summaries = run_json(env, "scan", "--all")
    assert [(s["new"], s["errors"]) for s in summaries] == [(1, 1), (1, 0)]
    outputs += [run(env, *args).output for args in (["scan", "--errors", "--all"], ["storage", "list", "--json"],
                                                     ["duplicates", "--exact", "--json"], ["stats", "--json"])]
    # A wrong secret fails, and is not repeated back either.
    wrong = run({**env, "DEEPLENS_TEST_S3_SECRET": "wrong-secret-value"}, "scan", "bucket", ok=False)
    assert wrong.exit_code == 1
    outputs.append(wrong.output)
    # A password in a URL is refused before it could be stored, and not echoed.
    in_url = run(env, "storage", "add", "pw", f"sftp://me:url-password-value@127.0.0.1:{sftp_server.port}/x", ok=False)
    assert in_url.exit_code == 1 and "--credentials-env password=" in in_url.output
    outputs.append(in_url.output)

    with weaviate_client(weaviate) as client:
        stored = [json.dumps(o.properties, default=str) for name in client.collections.list_all()
                  for o in client.collections.use(name).iterator()]
    es.indices.refresh(index="deeplens-*")
    documents = [json.dumps(hit) for hit in es_helpers.scan(es, index="deeplens-*")]
    data_dir = Path(env["DEEPLENS_DATA_DIR"])
    files = [p.read_bytes().decode(errors="replace") for p in data_dir.rglob("*") if p.is_file()]
    haystacks = {"CLI output": outputs, "logs": [r.getMessage() for r in caplog.records],
                 "Weaviate objects": stored, "Elasticsearch documents": documents, "data dir": files}
    assert len(stored) >= 4  # two images and two locations, with their last scans and errors
    assert sum('"_index": "deeplens-images' in doc for doc in documents) == 2
    for secret in [*secrets_used.values(), "wrong-secret-value", "url-password-value"]:
        for where, texts in haystacks.items():
            assert not any(secret in text for text in texts), f"a secret is in the {where}"
