"""Cleanup on the local file system, end to end through the CLI with the real module server and
Weaviate: keep rules, plans, verified apply, quarantine, hard links, undo, folder duplicates,
reclaimable bytes. Remote protocols: tests/test_cleanup_remote.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

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
    assert sorted(snapshot(backup)) == sorted([f"{QUARANTINE}/{plan['id']}.jsonl", "unique.jpg"] + [
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
    # Both paths of a hard link stay indexed, and rescans leave them be: each path is its own record.
    groups = run_json(env, "duplicates", "--exact")["groups"]
    assert sorted(len(g["members"]) for g in groups) == [2, 2, 2]
    for _ in range(2):
        [photos_scan, backup_scan] = run_json(env, "scan", "--all")
        assert [(s["new"], s["changed"], s["deleted"]) for s in (photos_scan, backup_scan)] == [(0, 0, 0)] * 2
    # A hard link takes no bytes of its own: planning again leaves it out, with the reason.
    _, again = plan_of(env, tmp_path, "--tiers", "exact")
    assert again["groups"] == [] and sum("(a hard link)" in e["reason"] for e in again["left_out"]) == 3
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


# ------------------------------------------------------------------------ plan --quarantine URL


def test_quarantine_url_inside_a_location_is_excluded_never_overwrites_and_undo_restores(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup))
    before = snapshot(backup)
    trash = backup / "trash"
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact", "--quarantine", str(trash))
    assert plan["quarantine"] == str(trash)
    folder = trash / plan["id"] / "backup"
    first = plan["groups"][0]["actions"][0]["path"]
    write(folder / first, b"someone else's file")  # already there: that action is skipped, nothing overwritten

    applied = run_json(env, "apply", str(plan_file), "--yes")
    assert applied["done"] == 2 and [s["uri"] for s in applied["skipped"]] == [uri(backup / first)], applied
    assert "never overwrites" in applied["skipped"][0]["reason"]
    assert (folder / first).read_bytes() == b"someone else's file" and (backup / first).exists()
    moved = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))
    assert moved == sorted(a["path"] for g in plan["groups"] for a in g["actions"])
    beside = (trash / plan["id"] / "backup.jsonl").read_text()  # the journal's copy, beside the folder
    assert beside.count('"event": "done"') == 2
    assert not (backup / QUARANTINE / plan["id"]).exists()
    # Scans skip it like the default quarantine: the moved copies are not indexed again.
    [location] = [loc for loc in run_json(env, "storage", "list") if loc["name"] == "backup"]
    assert "trash/**" in location["exclude"]
    assert len(run_json(env, "duplicates", "--exact")["groups"]) == 1
    [rescan] = run_json(env, "scan", "backup")
    assert (rescan["new"], rescan["deleted"]) == (0, 0)

    (folder / first).unlink()  # the blocker goes; undo restores what was moved, from the chosen quarantine
    undone = run_json(env, "undo", plan["id"])
    assert (undone["restored"], undone["skipped"], undone["failed"]) == (2, [], []), undone
    assert {k: v for k, v in snapshot(backup).items() if not k.startswith(("trash/", QUARANTINE))} == before
    assert len(run_json(env, "duplicates", "--exact")["groups"]) == 3


def test_quarantine_url_outside_the_storage_or_in_a_reference_location_is_refused(env, library, tmp_path):
    photos, backup = library
    scanned(env, ("photos", photos), ("backup", backup), reference="photos")
    for url, message in [
        ("s3://bucket/trash", "not on the storage of location 'backup'"),
        ("sftp://127.0.0.1/trash", "not on the storage of location 'backup'"),
        (str(photos / "trash"), "lies in reference location 'photos'"),
        (str(backup), "is the root of location 'backup'"),
    ]:
        refused = run(env, "plan", "--out", str(tmp_path / "plan.json"), "--tiers", "exact", "--quarantine", url,
                      ok=False)
        assert refused.exit_code == 1 and message in refused.output, (url, refused.output)
        assert "choose" in refused.output, "the message names the fix"
    # An edited plan that names such a quarantine is refused before any action.
    plan_file, plan = plan_of(env, tmp_path, "--tiers", "exact")
    before = snapshot(backup)
    plan_file.write_text(json.dumps({**plan, "quarantine": "s3://bucket/trash"}))
    refused = run(env, "apply", str(plan_file), "--yes", ok=False)
    assert "not on the storage of location 'backup'" in refused.output and snapshot(backup) == before


# ----------------------------------------------------------------- EXIF orientation and keep rules


def tagged_jpeg(picture, orientation: int | None, **tags) -> bytes:
    """A JPEG of `picture`'s pixels as stored, with an EXIF Orientation tag (and other tags) as given."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    for tag, value in tags.items():
        exif[{"make": 0x010F, "model": 0x0110}[tag]] = value
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def facts_of(path: Path):
    from deeplens.connectors.cleanup.files import Facts, Place
    from deeplens.schema.models import StorageLocation

    return Facts.read(Place.open(StorageLocation(name="here", url=str(path.parent))), path.name)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_stored_pixels_hash_undoes_each_exif_orientation(tmp_path, orientation):
    from PIL import ImageOps

    from deeplens.connectors.extract import read_exif
    from deeplens.modules.phash import dihedral_hashes, hamming

    picture = synthetic_image(4, (96, 72))
    data = tagged_jpeg(picture, orientation, make="Camera Co", model="X1")
    exif = read_exif(data)
    assert (exif.orientation, exif.camera, exif.fields) == (orientation, "Camera Co X1", 3)
    facts = facts_of(write(tmp_path / "photo.jpg", data))
    stored = dihedral_hashes(picture)["identity"]
    shown = dihedral_hashes(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))["identity"]
    assert hamming(facts.stored_phash, stored) <= 3 and hamming(facts.shown_phash, shown) <= 3


def test_copies_turned_against_their_exif_orientation_are_told_apart(tmp_path):
    from deeplens.connectors.cleanup.plan import turned_against_exif

    picture = synthetic_image(5, (96, 72))
    upright = picture.transpose(Image.Transpose.ROTATE_270)  # what Orientation 6 shows
    files = {
        "camera": tagged_jpeg(picture, 6),  # a phone photo: pixels as the sensor saw them, tag 6
        "lost": tagged_jpeg(picture, None),  # an export that dropped the tag: shown on its side
        "twice": tagged_jpeg(upright, 6),  # pixels turned upright but the tag kept: turned twice
        "baked": tagged_jpeg(upright, 1),  # turned upright and the tag reset: shown like the camera's
    }
    facts = {name: facts_of(write(tmp_path / f"{name}.jpg", data)) for name, data in files.items()}
    assert turned_against_exif(facts) == {"lost", "twice"}
    assert turned_against_exif({k: facts[k] for k in ("lost", "baked")}) == set(), "no tagged copy: no judgement"
    # Orientation 3 (180 degrees) is its own inverse: a copy turned twice and its source each look
    # turned against the other, so neither is a reference and the other rules decide.
    turned = picture.transpose(Image.Transpose.ROTATE_180)
    assert turned_against_exif({"camera": facts_of(write(tmp_path / "c3.jpg", tagged_jpeg(picture, 3))),
                                "twice": facts_of(write(tmp_path / "t3.jpg", tagged_jpeg(turned, 3)))}) == set()


def test_the_plan_keeps_the_camera_original_over_older_copies_turned_against_its_orientation(env, tmp_path):
    picture = synthetic_image(6, (120, 90))
    photos, backup = tmp_path / "photos", tmp_path / "backup"
    write(photos / "phone.jpg", tagged_jpeg(picture, 6, make="Phone", model="P1"))
    write(backup / "exported.jpg", tagged_jpeg(picture, None, make="Phone", model="P1"), age_s=10 ** 6)
    write(backup / "rotated.jpg", tagged_jpeg(picture.transpose(Image.Transpose.ROTATE_270), 6, make="Phone",
                                              model="P1"), age_s=10 ** 6)
    scanned(env, ("photos", photos), ("backup", backup))
    _, plan = plan_of(env, tmp_path)
    [group] = plan["groups"]
    assert group["keep"]["path"] == "phone.jpg" and group["keep_rule"] == "original", group
    assert sorted(a["path"] for a in group["actions"]) == ["exported.jpg", "rotated.jpg"]
    # Without the rule the older copies would win.
    _, plan = plan_of(env, tmp_path, "--keep", "older,shorter")
    assert plan["groups"][0]["keep"]["location"] == "backup"
