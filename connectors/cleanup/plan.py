"""Cleanup plans: for each duplicate group, the copy to keep and one action per other copy.

A plan is a versioned JSON document that a person can read and edit (drop an action, change one
to `delete`). It records, for every file it names, the facts at planning time: location, path,
URI, size, modification time, etag and sha256. Planning reads every file of every group once:
the sha256 it records is what was on the storage then, not what the last scan saw, and a file
that changed since that scan is left out with the reason. `load` checks an edited plan before
anything happens; apply.py re-verifies each file against these facts before acting.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deeplens.connectors import storage
from deeplens.connectors.cleanup import keep
from deeplens.connectors.cleanup.files import (
    BadQuarantine,
    Facts,
    Place,
    Refused,
    plan_path,
    quarantine_excludes,
    quarantine_of,
)
from deeplens.connectors.queries.grouping import DEFAULT_MAX_DISTANCE, TIERS, Group, Member
from deeplens.connectors.storage.errors import safe_url
from deeplens.modules.phash import hamming
from deeplens.schema.models import StorageLocation, utcnow

PLAN_VERSION = 1
ACTIONS = ("quarantine", "delete", "hardlink")
DEFAULT_TIERS = ("exact", "near")
PLAN_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # it names a folder in every quarantine


class BadPlan(ValueError):
    """The plan file cannot be applied as it is; the message says where and what to fix."""


class PlannedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location: str
    path: str
    uri: str
    size_bytes: int = Field(ge=0)
    modified_at: datetime | None = None
    etag: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _safe_path(self) -> PlannedFile:
        try:
            plan_path(self.path)
        except Refused as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def key(self) -> tuple[str, str]:
        return self.location, self.path


class PlannedAction(PlannedFile):
    action: Literal["quarantine", "delete", "hardlink"]
    tier: Literal["exact", "near", "derived"]


class PlannedGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    keep: PlannedFile
    keep_rule: str = Field(description="the keep rule that chose `keep` over the runner-up")
    actions: list[PlannedAction]


class PlannedLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    reference: bool = False


class LeftOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str
    reason: str


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deeplens_plan: int = Field(description="the plan format version")
    id: str = Field(pattern=PLAN_ID)
    created_at: datetime
    tiers: list[Literal["exact", "near", "derived"]]
    keep_rules: list[str]
    prefer_locations: list[str] = Field(default_factory=list)
    quarantine: str | None = Field(default=None, description="where quarantined files go instead of each location's "
                                   ".deeplens-quarantine/<plan id>/: <quarantine>/<plan id>/<location>/<path>")
    locations: dict[str, PlannedLocation]
    groups: list[PlannedGroup]
    left_out: list[LeftOut] = Field(default_factory=list, description="copies not planned, and why")

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        if self.deeplens_plan != PLAN_VERSION:
            raise ValueError(f"plan format version {self.deeplens_plan}; this DeepLens reads version {PLAN_VERSION}: "
                             "make a new plan with `deeplens plan`")
        seen: dict[tuple[str, str], str] = {}
        for number, group in enumerate(self.groups, 1):
            for f, role in ((group.keep, "kept"), *((a, "acted on") for a in group.actions)):
                if f.location not in self.locations:
                    raise ValueError(f"group {number}: location '{f.location}' is not in the plan's locations")
                if f.key in seen:
                    raise ValueError(f"group {number}: {f.uri} is {role} here and {seen[f.key]} in another group; "
                                     "a file may appear once in a plan")
                seen[f.key] = role
            for action in group.actions:
                if action.action == "hardlink" and action.sha256 != group.keep.sha256:
                    raise ValueError(f"group {number}: hardlink of {action.uri}, which is not an exact copy of "
                                     "the kept file; hard links are for exact copies only")
                if self.locations[action.location].reference:
                    raise ValueError(f"group {number}: {action.uri} is in reference location '{action.location}', "
                                     "whose files are never touched")
        return self

    def actions(self) -> list[tuple[PlannedGroup, PlannedAction]]:
        return [(group, action) for group in self.groups for action in group.actions]


def new_id() -> str:
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def make_plan(
    groups: Sequence[Group],
    locations: dict[str, StorageLocation],
    *,
    tiers: Sequence[str] = DEFAULT_TIERS,
    action: str = "quarantine",
    rules: Sequence[str] = keep.DEFAULT_RULES,
    prefer_locations: Sequence[str] = (),
    quarantine: str | None = None,
    workers: int = 8,
    on_total: Callable[[int], None] = lambda total: None,
    on_done: Callable[[int], None] = lambda count: None,
) -> Plan:
    """Read every file of the groups (one listing per location, one read per file), rank the copies
    of each group by the keep rules, and plan `action` for every other copy of the chosen tiers."""
    members = [m for group in groups for m in group.members]
    places = {name: Place.open(locations[name]) for name in sorted({m.location for m in members})}
    plan_id = new_id()
    if quarantine is not None:
        _check_quarantine(quarantine, plan_id, locations, places)
    listed = {obj.uri: (name, obj) for name, place in places.items()
              for obj in storage.list_objects(place.fs, place.root, place.location.include,
                                              place.location.exclude, all_files=True)}
    on_total(len(members))

    def facts_of(member: Member) -> Facts | str:
        """The member's facts now, or why it cannot be planned."""
        try:
            if member.uri not in listed:
                raise Refused("gone since the last scan (deleted, moved, or excluded)")
            name, obj = listed[member.uri]
            places[name].contained(plan_path(obj.path))
            facts = Facts.read(places[name], obj.path, obj)
            if facts.sha256 != member.content_sha256:
                raise Refused("changed since the last scan: run `deeplens scan` and plan again")
            return facts
        except (Refused, storage.StorageError) as exc:
            return str(exc)
        finally:
            on_done(1)

    if not all(storage.parallel_reads(place.fs) for place in places.values()):
        workers = 1
    with ThreadPoolExecutor(workers) as pool:
        read = dict(zip((m.uuid for m in members), pool.map(facts_of, members)))

    plan = Plan(deeplens_plan=PLAN_VERSION, id=plan_id, created_at=utcnow(), tiers=list(tiers),
                keep_rules=list(rules), prefer_locations=list(prefer_locations),
                quarantine=quarantine,
                locations={name: PlannedLocation(url=safe_url(p.location.url), reference=p.location.reference)
                           for name, p in places.items()},
                groups=[])
    for group in groups:
        _plan_group(plan, group, read, listed, places, action, rules, list(prefer_locations))
    return plan


def _check_quarantine(url: str, plan_id: str, registered: dict[str, StorageLocation],
                      places: dict[str, Place]) -> None:
    """BadPlan unless a quarantine at `url` can take the files of every location that may be acted
    on (any but reference ones), and lies in no reference location: said before anything is read."""
    try:
        quarantine_excludes(url, registered)
        for place in places.values():
            if not place.location.reference:
                quarantine_of(place, plan_id, url)
    except BadQuarantine as exc:
        raise BadPlan(str(exc)) from None


def _plan_group(plan: Plan, group: Group, read: dict, listed: dict, places: dict, action: str,
                rules: Sequence[str], prefer: list[str]) -> None:
    def left(member: Member, reason: str) -> None:
        plan.left_out.append(LeftOut(uri=member.uri, reason=reason))

    usable = [m for m in group.members if isinstance(read[m.uuid], Facts)]
    turned = turned_against_exif({m.uuid: read[m.uuid] for m in usable})

    def candidate(member: Member) -> keep.Candidate:
        facts = read[member.uuid]
        return keep.Candidate.of(member, reference=places[member.location].location.reference,
                                 preferred=prefer.index(member.location) if member.location in prefer else None,
                                 modified_at=facts.modified_at, exif_fields=facts.exif_fields,
                                 size_bytes=facts.size_bytes, turned=member.uuid in turned,
                                 **({"format": facts.format} if facts.format else {}))

    for member in group.members:
        if not isinstance(read[member.uuid], Facts):
            left(member, read[member.uuid])
    matched_against = group.members[0]
    if matched_against not in usable and group.kind != "exact":
        # Tiers describe each copy's match with that one: without it they say nothing.
        for member in usable:
            left(member, f"the copy this group was matched against ({matched_against.uri}) cannot be used; "
                         "scan again and plan again")
        return
    # The kept copy is never a derived one (its tier says it is a crop, border, ... of another).
    keepable = [m for m in usable if m.tier != "derived"]
    if len(usable) < 2 or not keepable:
        for member in usable:
            left(member, "no other usable copy in its group")
        return
    ranked = sorted(keepable, key=lambda m: keep.order_key(candidate(m), rules))
    kept = ranked[0]
    kept_facts: Facts = read[kept.uuid]
    others = [m for m in usable if m is not kept]
    runner_up = min(others, key=lambda m: keep.order_key(candidate(m), rules))

    def planned(member: Member) -> dict:
        facts: Facts = read[member.uuid]
        return {"location": member.location, "path": listed[member.uri][1].path, "uri": member.uri,
                "size_bytes": facts.size_bytes, "modified_at": facts.modified_at, "etag": facts.etag,
                "sha256": facts.sha256}

    actions = []
    for member in others:
        facts: Facts = read[member.uuid]
        tier = "exact" if facts.sha256 == kept_facts.sha256 else "derived" if member.tier == "derived" else "near"
        if tier not in plan.tiers:
            continue
        if places[member.location].location.reference:
            left(member, f"in reference location '{member.location}': never touched")
        elif action == "hardlink" and (tier != "exact" or not _one_local_fs(places, kept, member)):
            left(member, "hardlink needs an exact copy on the same local file system as the kept copy")
        elif _same_local_file(places, listed, kept, member):
            left(member, f"the same file as the kept {kept.uri} (a hard link): it takes no bytes of its own")
        elif tier == "derived" and keep.content_key(candidate(member), rules) < keep.content_key(candidate(kept), rules):
            # By what the files hold (pixels, format, age, EXIF, size) this copy comes first: the
            # tier says the two are related, not which one was made from the other.
            left(member, f"a derived copy that the keep rules rank above the kept {kept.uri}: it may be the source")
        else:
            actions.append(PlannedAction(**planned(member), action=action, tier=tier))
    if actions:
        plan.groups.append(PlannedGroup(kind=group.kind, keep=PlannedFile(**planned(kept)),
                                        keep_rule=keep.deciding_rule(candidate(kept), candidate(runner_up), rules),
                                        actions=actions))


def turned_against_exif(copies: dict[str, Facts]) -> set[str]:
    """The copies (ids) whose pixels are turned against their EXIF orientation, judged against a
    copy that carries an Orientation tag (a camera original): they are shown turned from it, and
    their pixels are either its pixels as stored (the tag was lost: an export that strips EXIF) or
    its picture as shown (the pixels were turned to show upright, but the tag was kept: shown
    turned twice). A correctly re-oriented copy is shown like the tagged one and is not flagged.
    A tagged copy that is itself turned against another is no reference; with a 180-degree or
    mirror tag both copies of such a pair look turned against each other, and the other rules decide."""

    def same(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and hamming(a, b) <= DEFAULT_MAX_DISTANCE

    def turned_from(copy: Facts, tagged: Facts) -> bool:
        return copy.shown_phash is not None and tagged.shown_phash is not None \
            and not same(copy.shown_phash, tagged.shown_phash) \
            and (same(copy.stored_phash, tagged.stored_phash) or same(copy.stored_phash, tagged.shown_phash))

    def turned_against(references: dict[str, Facts]) -> set[str]:
        return {uuid for uuid, facts in copies.items()
                if any(turned_from(facts, ref) for other, ref in references.items() if other != uuid)}

    tagged = {uuid: facts for uuid, facts in copies.items() if facts.orientation not in (None, 1)}
    suspect = turned_against(tagged)
    return turned_against({uuid: facts for uuid, facts in tagged.items() if uuid not in suspect})


def _same_local_file(places: dict, listed: dict, a: Member, b: Member) -> bool:
    pa, pb = places[a.location], places[b.location]
    return pa.protocol == pb.protocol == "file" and os.path.samefile(pa.full(listed[a.uri][1].path),
                                                                     pb.full(listed[b.uri][1].path))


def _one_local_fs(places: dict, a: Member, b: Member) -> bool:
    pa, pb = places[a.location], places[b.location]
    if pa.protocol != "file" or pb.protocol != "file":
        return False
    return os.stat(pa.root).st_dev == os.stat(pb.root).st_dev


def summary(plan: Plan) -> dict:
    """Files and bytes to reclaim, per location and tier, and in total."""
    rows: dict[tuple[str, str], dict] = {}
    for _, action in plan.actions():
        row = rows.setdefault((action.location, action.tier),
                              {"location": action.location, "tier": action.tier, "files": 0, "bytes": 0})
        row["files"] += 1
        row["bytes"] += action.size_bytes
    return {
        "plan_id": plan.id,
        "groups": len(plan.groups),
        "files": sum(r["files"] for r in rows.values()),
        "bytes": sum(r["bytes"] for r in rows.values()),
        "left_out": len(plan.left_out),
        "rows": sorted(rows.values(), key=lambda r: (r["location"], TIERS.index(r["tier"]))),
    }


def save(plan: Plan, path: Path) -> None:
    path.write_text(plan.model_dump_json(indent=2) + "\n")


def load(path: Path, registered: dict[str, StorageLocation]) -> Plan:
    """The plan at `path`, checked against itself and against the registered locations, before any
    action: BadPlan says what is wrong and how to fix it."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise BadPlan(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadPlan(f"{path} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                      "fix the edit or make a new plan with `deeplens plan --out`") from None
    if not isinstance(raw, dict) or "deeplens_plan" not in raw:
        raise BadPlan(f"{path} is not a DeepLens plan (no 'deeplens_plan' version); make one with `deeplens plan --out`")
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'plan'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadPlan(f"{path} is not a valid plan: {problems}. Fix the edit or make a new plan with "
                      "`deeplens plan --out`") from None
    for name, planned in plan.locations.items():
        if name not in registered:
            raise BadPlan(f"{path} names location '{name}', which is not registered (see `deeplens storage list`); "
                          "register it again or make a new plan")
        if safe_url(registered[name].url) != planned.url:
            raise BadPlan(f"location '{name}' is now {safe_url(registered[name].url)}, the plan was made for "
                          f"{planned.url}; make a new plan")
        if registered[name].reference and any(a.location == name for _, a in plan.actions()):
            raise BadPlan(f"'{name}' is a reference location now: its files are never touched; make a new plan")
    unknown = [rule for rule in plan.keep_rules if rule not in keep.RULES]
    if unknown:
        raise BadPlan(f"{path}: unknown keep rule {', '.join(unknown)}")
    return plan
