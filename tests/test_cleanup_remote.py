"""Cleanup on remote storage against the real local servers (S3: SeaweedFS, SFTP: sshd, SMB:
samba): apply + undo restore every file byte for byte, credentials never reach a plan or journal,
and a kill -9 in the middle of apply loses and duplicates nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from deeplens.samples import jpeg_bytes, synthetic_image
from tests.cli import run, run_json

pytestmark = [pytest.mark.weaviate, pytest.mark.storage]

QUARANTINE = ".deeplens-quarantine"


def remote(server, folder: str):
    url = server.child(folder)
    fs, _, [root] = fsspec.get_fs_token_paths(url, storage_options=server.storage_options)
    return url, fs, root


def upload(fs, root: str, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        fs.makedirs(f"{root}/{path}".rsplit("/", 1)[0], exist_ok=True)  # SMB and SFTP need folders
        fs.pipe(f"{root}/{path}", data)


def snapshot(fs, root: str) -> dict[str, bytes]:
    prefix = root.rstrip("/") + "/"
    found = [p for p in fs.find(root) if QUARANTINE not in p]
    return {p[len(prefix):] if p.startswith(prefix) else p.split(root.strip("/") + "/", 1)[1]: fs.cat_file(p)
            for p in sorted(found)}


def add(env, server, name: str, url: str) -> dict:
    [secret] = server.credentials.values()
    args = ["storage", "add", name, url]
    for key, value in server.options.items():
        args += ["--option", f"{key}={value}"]
    for key in server.credentials:
        args += ["--credentials-env", f"{key}=DEEPLENS_TEST_SECRET"]
    env = {**env, "DEEPLENS_TEST_SECRET": secret}
    run(env, *args)
    return env


def library(count: int) -> dict[str, bytes]:
    """`count` originals and a byte-identical copy of each, one with a non-ASCII name."""
    files = {}
    for seed in range(count):
        data = jpeg_bytes(synthetic_image(seed, (48, 36)))
        files[f"photos/img{seed}.jpg"] = data
        files[f"backup/2024/img{seed} kopie ü.jpg"] = data
    return files


def scanned_library(env, server, folder: str, count: int) -> tuple[dict, object, str, dict[str, bytes]]:
    """`count` photos and their copies uploaded to `folder` on the server, registered as location
    'remote' and scanned: (env, file system, root, the files as uploaded)."""
    url, fs, root = remote(server, folder)
    upload(fs, root, library(count))
    env = add(env, server, "remote", url)
    # Concurrent reads through one paramiko session hang the scan (reported); the plan reads SFTP serially.
    run(env, "scan", "remote", *(["--workers", "1"] if server.protocol == "sftp" else []))
    return env, fs, root, snapshot(fs, root)


@pytest.mark.parametrize("server_fixture", ["s3_server", "sftp_server", "smb_server"])
def test_apply_and_undo_round_trip_byte_for_byte(env, server_fixture, request, tmp_path):
    server = request.getfixturevalue(server_fixture)
    env, fs, root, before = scanned_library(env, server, f"cleanup-{server_fixture}", 3)
    plan_file = tmp_path / "plan.json"
    # The photos are older (uploaded first) only by milliseconds: say which copies to keep.
    run(env, "plan", "--out", str(plan_file), "--tiers", "exact", "--keep", "shorter")
    plan = json.loads(plan_file.read_text())
    assert {g["keep"]["path"] for g in plan["groups"]} == {f"photos/img{s}.jpg" for s in range(3)}

    applied = run_json(env, "apply", str(plan_file), "--yes")
    assert (applied["done"], applied["skipped"], applied["failed"]) == (3, [], []), applied
    quarantine = f"{root}/{QUARANTINE}/{plan['id']}"
    assert sorted(snapshot(fs, root)) == [f"photos/img{s}.jpg" for s in range(3)]
    for s in range(3):
        assert fs.cat_file(f"{quarantine}/backup/2024/img{s} kopie ü.jpg") == before[f"photos/img{s}.jpg"]
    beside = fs.cat_file(f"{quarantine}.jsonl").decode()
    assert beside.count('"event": "done"') == 3
    secret = next(iter(server.credentials.values()))
    for text in (plan_file.read_text(), Path(applied["journal"]).read_text(), beside):
        assert secret not in text
    assert run_json(env, "duplicates", "--exact")["groups"] == []

    undone = run_json(env, "undo", str(applied["journal"]))
    assert (undone["restored"], undone["skipped"], undone["failed"]) == (3, [], []), undone
    assert snapshot(fs, root) == before
    assert len(run_json(env, "duplicates", "--exact")["groups"]) == 3


def test_kill_9_during_apply_then_apply_again_then_undo_restores_everything(env, s3_server, tmp_path):
    env, fs, root, before = scanned_library(env, s3_server, "cleanup-kill", 40)
    plan_file = tmp_path / "plan.json"
    run(env, "plan", "--out", str(plan_file), "--tiers", "exact", "--keep", "shorter")
    plan = json.loads(plan_file.read_text())
    journal = Path(env["DEEPLENS_DATA_DIR"]) / "journals" / f"{plan['id']}.jsonl"

    # A real process, killed with SIGKILL once a few actions are done: no cleanup code runs.
    process = subprocess.Popen([sys.executable, "-m", "deeplens", "apply", str(plan_file), "--yes"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count('"event": "done"') >= 5:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done_before = journal.read_text().count('"event": "done"')
    assert 5 <= done_before < 40, "the kill came in the middle of the apply"

    resumed = run_json(env, "apply", str(plan_file), "--yes")
    assert resumed["failed"] == [] and resumed["skipped"] == []
    assert resumed["done"] + resumed["already_done"] == 40
    left = snapshot(fs, root)
    assert sorted(left) == sorted(f"photos/img{s}.jpg" for s in range(40))
    quarantined = fs.find(f"{root}/{QUARANTINE}/{plan['id']}/backup")
    assert len(quarantined) == 40, "every copy is quarantined exactly once"

    undone = run_json(env, "undo", plan["id"])
    assert undone["failed"] == [] and undone["skipped"] == [] and undone["restored"] == 40
    assert snapshot(fs, root) == before
    # Only folder markers may stay behind (SeaweedFS keeps directories): no file is left in the quarantine.
    assert [p for p in fs.find(f"{root}/{QUARANTINE}/{plan['id']}/backup") if p.endswith(".jpg")] == []


def test_quarantine_url_on_the_same_s3_store_round_trips_and_other_storage_is_refused(env, s3_server, tmp_path):
    env, fs, root, before = scanned_library(env, s3_server, "cleanup-custom-q", 2)
    plan_file = tmp_path / "plan.json"
    refused = run(env, "plan", "--out", str(plan_file), "--tiers", "exact", "--quarantine", str(tmp_path / "trash"),
                  ok=False)
    assert "not on the storage of location 'remote'" in refused.output and not plan_file.exists()

    trash_url, _, trash = remote(s3_server, "trash-of-cleanup-custom-q")  # beside the location, on the same store
    run(env, "plan", "--out", str(plan_file), "--tiers", "exact", "--keep", "shorter", "--quarantine", trash_url)
    plan = json.loads(plan_file.read_text())
    applied = run_json(env, "apply", str(plan_file), "--yes")
    assert (applied["done"], applied["skipped"], applied["failed"]) == (2, [], []), applied
    folder = f"{trash}/{plan['id']}/remote"
    for s in range(2):
        assert fs.cat_file(f"{folder}/backup/2024/img{s} kopie ü.jpg") == before[f"photos/img{s}.jpg"]
    assert sorted(snapshot(fs, root)) == ["photos/img0.jpg", "photos/img1.jpg"]
    beside = fs.cat_file(f"{folder}.jsonl").decode()
    assert beside.count('"event": "done"') == 2 and next(iter(s3_server.credentials.values())) not in beside

    undone = run_json(env, "undo", plan["id"])
    assert (undone["restored"], undone["skipped"], undone["failed"]) == (2, [], []), undone
    assert snapshot(fs, root) == before
    assert [p for p in fs.find(folder) if p.endswith(".jpg")] == []
