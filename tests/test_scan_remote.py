"""Scanning remote storage end to end: real S3 (SeaweedFS), SMB (samba) and SFTP (sshd) servers, the real
module server and Weaviate, credentials passed by environment variable name only."""

from __future__ import annotations

from urllib.parse import unquote

import fsspec
import pytest

from deeplens.samples import jpeg_bytes, sample_photos
from tests.cli import run, run_json

pytestmark = [pytest.mark.weaviate, pytest.mark.storage]


def _upload(server, folder: str) -> str:
    url = server.child(folder)
    fs, _, [root] = fsspec.get_fs_token_paths(url, storage_options=server.storage_options)
    photos = sample_photos()
    fs.makedirs(f"{root}/copies", exist_ok=True)  # SMB needs folders; object stores ignore this
    for name in ("coffee", "rocket"):
        fs.pipe(f"{root}/{name}.jpg", jpeg_bytes(photos[name]))
    fs.pipe(f"{root}/copies/rocket ü copy.jpg", jpeg_bytes(photos["rocket"]))
    return url


def _add_args(server, name: str, url: str, secret_env: str) -> list[str]:
    args = ["storage", "add", name, url]
    for key, value in server.options.items():
        args += ["--option", f"{key}={value}"]
    for key in server.credentials:
        args += ["--credentials-env", f"{key}={secret_env}"]
    return args


@pytest.mark.parametrize("server_fixture", ["s3_server", "smb_server", "sftp_server"])
def test_scan_remote_location_and_find_its_copies(env, server_fixture, request):
    server = request.getfixturevalue(server_fixture)
    url = _upload(server, f"scan-{server_fixture}")
    [secret] = server.credentials.values()
    env = {**env, "DEEPLENS_TEST_SECRET": secret}
    run(env, *_add_args(server, "remote", url, "DEEPLENS_TEST_SECRET"))
    listed = run(env, "storage", "list", "--json").stdout
    assert secret not in listed and "DEEPLENS_TEST_SECRET" in listed  # the name is stored, never the value

    [summary] = run_json(env, "scan", "remote")
    assert (summary["new"], summary["errors"]) == (3, 0)
    [group] = run_json(env, "duplicates", "--exact")["groups"]
    prefix = url.split("://", 1)[0] + "://"
    assert sorted(unquote(m["uri"].rsplit("/", 1)[-1]) for m in group["members"]) == ["rocket ü copy.jpg", "rocket.jpg"]
    assert all(m["uri"].startswith(prefix) for m in group["members"])
    [again] = run_json(env, "scan", "remote")
    assert again["unchanged"] == 3 and again["new"] == 0


@pytest.mark.parametrize("server_fixture", ["s3_server", "smb_server"])
def test_wrong_or_missing_credentials_are_refused_clearly(env, server_fixture, request):
    server = request.getfixturevalue(server_fixture)
    url = _upload(server, f"auth-{server_fixture}")
    wrong = run({**env, "DEEPLENS_TEST_SECRET": "not-the-secret"},
                *_add_args(server, "remote", url, "DEEPLENS_TEST_SECRET"), ok=False)
    assert wrong.exit_code == 1 and "not-the-secret" not in wrong.output
    assert "authentication" in wrong.output.lower() or "credentials" in wrong.output.lower()
    missing = run(env, *_add_args(server, "remote", url, "DEEPLENS_TEST_UNSET_SECRET"), ok=False)
    assert missing.exit_code == 1 and "DEEPLENS_TEST_UNSET_SECRET" in missing.output
    assert run_json(env, "storage", "list") == []
