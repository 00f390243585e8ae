"""Cleanup on the local file system, end to end through the CLI with the real module server and
Weaviate: keep rules, plans, verified apply, quarantine, hard links, undo, folder duplicates,
reclaimable bytes. Remote protocols: tests/test_cleanup_remote.py."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deeplens.connectors.cleanup import keep
from deeplens.samples import TRANSFORMS, jpeg_bytes, synthetic_image
from tests.cli import run, run_json, uri

pytestmark = pytest.mark.weaviate

QUARANTINE = ".deeplens-quarantine"


def image(seed: int, edit: str | None = None, size=(96, 72)) -> bytes:
    picture = synthetic_image(seed, size)
    return jpeg_bytes(TRANSFORMS[edit](picture) if edit else picture)


def write(path: Path, data: bytes, age_s: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ keep rules


def candidate(uri: str, **facts) -> keep.Candidate:
    return keep.Candidate(uri=uri, **({"pixels": 100, "size_bytes": 1000} | facts))


def best(*candidates: keep.Candidate, rules=keep.DEFAULT_RULES) -> str:
    return min(candidates, key=lambda c: keep.order_key(c, rules)).uri


def test_default_keep_rules_keep_the_source():
    old, new = datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert best(candidate("a/border.jpg", pixels=200, tier="derived"), candidate("b/orig.jpg")) == "b/orig.jpg"
    assert best(candidate("x/copy.jpg"), candidate("y/ref.jpg", reference=True)) == "y/ref.jpg"
    assert best(candidate("small.png", pixels=50, format="png"), candidate("big.jpg", pixels=60)) == "big.jpg"
    assert best(candidate("a.jpg", format="jpeg"), candidate("a.png", format="png")) == "a.png"
    assert best(candidate("new.jpg", modified_at=new), candidate("old.jpg", modified_at=old)) == "old.jpg"
    assert best(candidate("unknown.jpg"), candidate("known.jpg", modified_at=new)) == "known.jpg"
    assert best(candidate("bare.jpg", exif_fields=0), candidate("camera.jpg", exif_fields=12)) == "camera.jpg"
    assert best(candidate("backup/old/a copy.jpg"), candidate("a.jpg")) == "a.jpg"
    # --prefer-location ranks right after reference locations, before every other rule.
    preferred = candidate("keep/here.jpg", pixels=10, preferred=0)
    assert best(candidate("more/pixels.jpg", pixels=999), preferred) == "keep/here.jpg"
    assert best(preferred, candidate("ref.jpg", reference=True)) == "ref.jpg"
    # --keep changes the order; the rule that decided is named.
    rules = keep.parse_rules("shorter,pixels")
    assert best(candidate("long/name.jpg", pixels=999), candidate("a.jpg"), rules=rules) == "a.jpg"
    assert keep.deciding_rule(candidate("old.jpg", modified_at=old), candidate("new.jpg", modified_at=new)) == "older"


def test_unknown_keep_rules_name_the_rules():
    with pytest.raises(keep.BadRules, match="unknown keep rule 'biggest'.*pixels \\(more pixels\\)"):
        keep.parse_rules("pixels,biggest")


# --------------------------------------------------------------------------------- local round trip


@pytest.fixture
def library(tmp_path):
    """Two locations: photos (originals, older) and backup (a copy of each, an edit, a unique file)."""
    photos, backup = tmp_path / "photos", tmp_path / "backup"
    for seed in range(3):
        write(photos / "2021" / f"img{seed}.jpg", image(seed), age_s=3600)
        write(backup / "old" / f"img{seed} copy.jpg", (photos / "2021" / f"img{seed}.jpg").read_bytes())
    write(backup / "edited" / "img0-recompress.jpg", image(0, "recompress"))
    write(backup / "unique.jpg", image(9))
    return photos, backup


def scanned(env, *locations: tuple[str, Path], reference: str | None = None) -> None:
    for name, folder in locations:
        run(env, "storage", "add", name, str(folder), *(["--reference"] if name == reference else []))
    run(env, "scan", "--all")


def test_plan_apply_undo_round_trip_on_local_files(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup))
    before = {**snapshot(photos), **{f"b/{k}": v for k, v in snapshot(backup).items()}}
    plan_file = tmp_path / "plan.json"

    facts = run_json(env, "plan", "--out", str(plan_file))
    plan = json.loads(plan_file.read_text())
    assert plan["deeplens_plan"] == 1 and facts["plan_id"] == plan["id"]
    kept = {g["keep"]["uri"] for g in plan["groups"]}
    assert kept == {uri(photos / "2021" / f"img{seed}.jpg") for seed in range(3)}, "the older originals are kept"
    acted = {a["uri"]: a for g in plan["groups"] for a in g["actions"]}
    assert set(acted) == {uri(backup / "old" / f"img{s} copy.jpg") for s in range(3)} | {
        uri(backup / "edited" / "img0-recompress.jpg")}
    assert {a["tier"] for a in acted.values()} == {"exact", "near"}
    for action in acted.values():
        assert action["action"] == "quarantine" and len(action["sha256"]) == 64 and action["modified_at"]
    assert facts["files"] == 4 and facts["bytes"] == sum(a["size_bytes"] for a in acted.values())
    assert {(r["location"], r["tier"], r["files"]) for r in facts["rows"]} == {("backup", "exact", 3), ("backup", "near", 1)}

    dry = run(env, "apply", str(plan_file))
    assert "Nothing was changed" in dry.stdout and snapshot(backup) == {k[2:]: v for k, v in before.items() if k[:2] == "b/"}

    applied = run_json(env, "apply", str(plan_file), "--yes")
    assert (applied["done"], applied["skipped"], applied["failed"]) == (4, [], [])
    assert applied["bytes_reclaimed"] == facts["bytes"]
    assert sorted(snapshot(backup)) == sorted([f"{QUARANTINE}/{plan['id']}/journal.jsonl", "unique.jpg"] + [
        f"{QUARANTINE}/{plan['id']}/{a['path']}" for a in acted.values()])
    journal = Path(applied["journal"])
    assert journal.parent == Path(env["DEEPLENS_DATA_DIR"]) / "journals"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["event"] for e in events].count("begin") == 4 and [e["event"] for e in events].count("done") == 4
    # The index follows: the quarantined copies are gone from duplicates and stats, and stay gone.
    assert run_json(env, "duplicates", "--exact")["groups"] == []
    [again] = [s for s in run_json(env, "scan", "backup")]
    assert (again["new"], again["deleted"]) == (0, 0)
    assert run_json(env, "apply", str(plan_file), "--yes")["already_done"] == 4

    undone = run_json(env, "undo", str(journal))
    assert (undone["restored"], undone["skipped"], undone["failed"]) == (4, [], [])
    after = {**snapshot(photos), **{f"b/{k}": v for k, v in snapshot(backup).items() if not k.startswith(QUARANTINE)}}
    assert after == before, "undo restores every file byte for byte"
    assert len(run_json(env, "duplicates", "--exact")["groups"]) == 3
    assert run_json(env, "undo", plan["id"])["already_in_place"] == 4, "undo is idempotent"


def plan_of(env, tmp_path, *args: str) -> tuple[Path, dict]:
    plan_file = tmp_path / "plan.json"
    run(env, "plan", "--out", str(plan_file), *args)
    return plan_file, json.loads(plan_file.read_text())


def test_changed_moved_deleted_files_are_skipped_and_a_vanished_kept_copy_blocks_its_group(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup))
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact")
    copies = {a["path"]: backup / a["path"] for g in plan["groups"] for a in g["actions"]}
    uris = {backup / a["path"]: a["uri"] for g in plan["groups"] for a in g["actions"]}
    changed, moved, deleted = (copies[f"old/img{s} copy.jpg"] for s in range(3))
    changed.write_bytes(changed.read_bytes()[:-2] + b"\xff\xd9")  # same size, other bytes
    os.utime(changed, (time.time() - 3600, time.time() - 3600))
    moved.rename(moved.with_name("moved.jpg"))
    deleted.unlink()
    result = run_json(env, "apply", str(plan_file), "--yes")
    reasons = {s["uri"]: s["reason"] for s in result["skipped"]}
    assert result["done"] == 0 and len(reasons) == 3, result
    assert "changed since planning" in reasons[uris[changed]]
    assert "gone since planning" in reasons[uris[moved]] and "gone since planning" in reasons[uris[deleted]]

    # A kept copy that vanished blocks its whole group: nothing of it is touched.
    (backup / "old" / "img1 again.jpg").write_bytes((photos / "2021" / "img1.jpg").read_bytes())
    moved.with_name("moved.jpg").rename(moved)
    run(env, "scan", "--all")
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact")
    [group] = [g for g in plan["groups"] if g["keep"]["path"] == "2021/img1.jpg"]
    assert len(group["actions"]) == 2
    (photos / "2021" / "img1.jpg").unlink()
    result = run_json(env, "apply", str(plan_file), "--yes")
    blocked = [s for s in result["skipped"] if "kept copy" in s["reason"]]
    assert len(blocked) == 2 and all("gone since planning" in s["reason"] for s in blocked)
    assert (backup / "old" / "img1 again.jpg").exists() and (backup / "old" / "img1 copy.jpg").exists()


def test_hostile_paths_and_symlinks_are_refused_and_the_quarantine_never_overwrites(env, library, tmp_path):
    photos, backup = library
    outside = write(tmp_path / "outside" / "secret.jpg", (photos / "2021" / "img2.jpg").read_bytes())
    (backup / "link.jpg").symlink_to(outside)
    scanned(env, ("photos", photos), ("backup", backup))
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact")
    assert all(f["path"] != "link.jpg" for g in plan["groups"] for f in (g["keep"], *g["actions"]))

    pristine = plan_file.read_text()
    for hostile in ["../outside/secret.jpg", "/etc/passwd", "old/img0 copy.jpg\nrm -rf", "old/../../x.jpg",
                    f"{QUARANTINE}/x/old/img0 copy.jpg"]:
        edited = json.loads(pristine)
        edited["groups"][0]["actions"][0]["path"] = hostile
        plan_file.write_text(json.dumps(edited))
        refused = run(env, "apply", str(plan_file), "--yes", ok=False)
        assert refused.exit_code == 1 and "not a valid plan" in refused.output and "path" in refused.output, hostile
    assert (outside.parent / "secret.jpg").exists() and not (backup / QUARANTINE).exists()

    # An edited plan that points at the symlink: refused at apply time, the link and its target stay.
    edited = json.loads(pristine)
    action = edited["groups"][0]["actions"][0]
    action.update(path="link.jpg", uri=uri(backup / "link.jpg"), sha256=hashlib.sha256(outside.read_bytes()).hexdigest(),
                  size_bytes=outside.stat().st_size, modified_at=None, etag=None)
    edited["groups"][0]["keep"] = next(g["keep"] for g in json.loads(pristine)["groups"] if g["keep"]["path"].endswith("img2.jpg"))
    edited["groups"] = edited["groups"][:1]
    edited["groups"][0]["actions"] = [action]
    plan_file.write_text(json.dumps(edited))
    result = run_json(env, "apply", str(plan_file), "--yes")
    assert result["done"] == 0 and "symlink" in result["skipped"][0]["reason"]
    assert (backup / "link.jpg").is_symlink() and outside.exists()

    # The quarantine never overwrites: a file already at the target makes the action skip.
    plan_file.write_text(pristine)
    first = json.loads(pristine)["groups"][0]["actions"][0]
    blocker = write(backup / QUARANTINE / json.loads(pristine)["id"] / first["path"], b"someone else's file")
    result = run_json(env, "apply", str(plan_file), "--yes")
    assert any("never overwrites" in s["reason"] for s in result["skipped"])
    assert blocker.read_bytes() == b"someone else's file" and (backup / first["path"]).exists()


def test_reference_locations_are_kept_and_never_touched(env, library, tmp_path):
    photos, backup = library
    for copy in (backup / "old").iterdir():  # make the backup copies the older ones
        os.utime(copy, (time.time() - 10 ** 6, time.time() - 10 ** 6))
    scanned(env, ("photos", photos), ("backup", backup), reference="backup")
    assert [loc["reference"] for loc in run_json(env, "storage", "list")] == [True, False]
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact")
    assert {g["keep"]["location"] for g in plan["groups"]} == {"backup"}
    assert {a["location"] for g in plan["groups"] for a in g["actions"]} == {"photos"}
    assert plan["locations"]["backup"]["reference"] is True

    edited = json.loads(plan_file.read_text())
    group = edited["groups"][0]
    group["keep"], group["actions"][0] = ({k: v for k, v in group["actions"][0].items() if k not in ("action", "tier")},
                                          {**group["keep"], "action": "quarantine", "tier": "exact"})
    plan_file.write_text(json.dumps(edited))
    before = snapshot(backup)
    refused = run(env, "apply", str(plan_file), "--yes", ok=False)
    assert "reference location 'backup'" in refused.output and snapshot(backup) == before


BAD_EDITS = [
    (lambda p: p.update(deeplens_plan=99), "version 99"),
    (lambda p: p["locations"].update(elsewhere={"url": "/nowhere"}), "'elsewhere', which is not registered"),
    (lambda p: p["locations"]["backup"].update(url="/moved"), "make a new plan"),
    (lambda p: p["groups"][0]["actions"][0].pop("sha256"), "sha256"),
    (lambda p: p["groups"][0]["actions"][0].update(sha256="abc"), "sha256"),
    (lambda p: p["groups"][0]["actions"][0].update(action="shred"), "action"),
    (lambda p: p["groups"][0]["actions"].append(dict(p["groups"][0]["keep"], action="delete", tier="exact")),
     "may appear once"),
    (lambda p: p["groups"][0]["actions"][0].update(action="hardlink", sha256="0" * 64), "exact copies only"),
]


def test_bad_plan_files_are_rejected_before_any_action(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup))
    plan_file, _ = plan_of(env, tmp_path, "--tiers", "exact")
    pristine = plan_file.read_text()
    before = snapshot(backup)
    for edit, message in BAD_EDITS:
        plan = json.loads(pristine)
        edit(plan)
        plan_file.write_text(json.dumps(plan))
        refused = run(env, "apply", str(plan_file), "--yes", ok=False)
        assert refused.exit_code == 1 and message in refused.output, refused.output
    assert snapshot(backup) == before and not (Path(env["DEEPLENS_DATA_DIR"]) / "journals").exists()


def test_not_json_and_not_a_plan_are_rejected(env, tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text("{ not json")
    assert "is not JSON" in run(env, "apply", str(bad), "--yes", ok=False).output
    bad.write_text('{"groups": []}')
    assert "not a DeepLens plan" in run(env, "apply", str(bad), "--yes", ok=False).output


def test_hardlink_exact_copies_and_undo_makes_them_independent_again(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup))
    before = snapshot(backup)
    mtimes = {p: p.stat().st_mtime for p in (backup / "old").iterdir()}
    plan_file, plan = plan_of(env, tmp_path, "--action", "hardlink")
    assert {a["action"] for g in plan["groups"] for a in g["actions"]} == {"hardlink"}
    assert any("hardlink needs an exact copy" in e["reason"] for e in plan["left_out"])  # the recompressed edit
    assert run_json(env, "apply", str(plan_file), "--yes")["done"] == 3
    for seed in range(3):
        assert os.path.samefile(photos / "2021" / f"img{seed}.jpg", backup / "old" / f"img{seed} copy.jpg")
    assert run_json(env, "undo", plan["id"])["restored"] == 3
    assert {k: v for k, v in snapshot(backup).items() if not k.startswith(QUARANTINE)} == before
    for path, mtime in mtimes.items():
        assert not os.path.samefile(path, photos / "2021" / path.name.replace(" copy", ""))
        assert abs(path.stat().st_mtime - mtime) < 0.01


# ------------------------------------------------------------- the demo's photos: originals survive


def test_on_the_demo_photos_the_plan_keeps_the_originals_and_folders_and_stats_agree(env, tmp_path):
    from deeplens.samples import write_demo_locations

    folders = write_demo_locations(tmp_path / "demo")
    scanned(env, *folders.items())
    plan_file, plan = plan_of(env, tmp_path)
    kept = {g["keep"]["uri"].rsplit("/", 1)[1]: g for g in plan["groups"]}
    assert plan["groups"] and all(g["keep"]["location"] == "archive" for g in plan["groups"]), sorted(kept)
    acted = {a["uri"] for g in plan["groups"] for a in g["actions"]}
    assert all("/exports/" in u for u in acted) and {a["tier"] for g in plan["groups"] for a in g["actions"]} <= {"exact", "near"}

    stats = {row["location"]: row for row in run_json(env, "stats", "--near")["locations"]}
    exports = stats["exports"]
    assert exports["near_duplicate_bytes"] >= exports["duplicate_bytes"] > 0
    assert stats["archive"]["duplicate_bytes"] == 0

    pairs = run_json(env, "duplicates", "--folders", "--min-overlap", "0.25")["folders"]
    [pair] = [p for p in pairs if {p["a"]["location"], p["b"]["location"]} == {"archive", "exports"}
              and p["b"]["folder"].endswith("/same")]
    assert (pair["shared"], pair["unique_a"], pair["unique_b"], pair["overlap"]) == (3, 7, 0, 0.3)
    assert pair["reclaimable_bytes"] == sum(p.stat().st_size for p in (folders["exports"] / "same").iterdir())
