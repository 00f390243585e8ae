"""Applying a plan: re-verify, act, journal; resumable after a crash.

Before each action both the file and its group's kept copy are checked again against the plan
(exists, same size, same etag or modification time, same sha256 read again, no symlink, not the
same file under two overlapping locations). A file that changed is skipped with the reason; a kept
copy that changed or vanished blocks its whole group, so the last copy is never the one acted on.
Each action is journaled (journal.py) with a `begin` before anything is touched and a `done`
after. Applying a plan again skips what is done and finishes what a crash interrupted, judging by
the files themselves: a quarantined copy that reads back right means the move happened.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deeplens.connectors import storage
from deeplens.connectors.cleanup.files import Place, Refused, move, remove, sha256_of, verify
from deeplens.connectors.cleanup.journal import Journal, journal_path
from deeplens.connectors.cleanup.plan import Plan, PlannedAction, PlannedGroup
from deeplens.schema.models import StorageLocation


@dataclass
class Result:
    journal: Path
    done: int = 0
    already_done: int = 0
    bytes_reclaimed: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"uri", "reason"}
    failed: list[dict] = field(default_factory=list)  # {"uri", "error"}
    locations: set[str] = field(default_factory=set)  # touched: the index of these needs a scan
    journal_problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"journal": str(self.journal), "done": self.done, "already_done": self.already_done,
                "bytes_reclaimed": self.bytes_reclaimed, "skipped": self.skipped, "failed": self.failed,
                "journal_problems": self.journal_problems}


def last_events(events: list[dict], kinds: set[str]) -> dict[tuple[str, str], dict]:
    """The last event of these kinds per (location, path)."""
    last = {}
    for event in events:
        if event["event"] in kinds and "path" in event:
            last[(event["location"], event["path"])] = event
    return last


def apply_plan(plan: Plan, registered: dict[str, StorageLocation], data_dir: Path,
               on_done: Callable[[int], None] = lambda count: None) -> Result:
    places = {name: Place.open(registered[name]) for name in plan.locations}
    acted_in = {action.location for _, action in plan.actions()}
    journal = Journal(journal_path(data_dir, plan.id), plan.id, {name: places[name] for name in acted_in})
    result = Result(journal.path)
    state = last_events(journal.events, {"begin", "done", "undone"})
    journal.write("apply", plan_id=plan.id, actions=len(plan.actions()))
    blocked: dict[int, str] = {}  # group -> why its kept copy cannot be trusted
    try:
        for group, action in plan.actions():
            uri = action.uri
            prior = state.get(action.key, {}).get("event")
            if prior == "done":
                result.already_done += 1
            elif id(group) in blocked:
                _skip(journal, result, action, blocked[id(group)])
            else:
                try:
                    _act(places, plan, group, action, journal, resumed=prior == "begin")
                    result.done += 1
                    result.bytes_reclaimed += action.size_bytes
                    result.locations.add(action.location)
                except _KeptGone as exc:
                    blocked[id(group)] = str(exc)
                    _skip(journal, result, action, str(exc))
                except Refused as exc:
                    _skip(journal, result, action, str(exc))
                except (storage.StorageError, OSError) as exc:
                    journal.write("failed", location=action.location, path=action.path, uri=uri, error=str(exc))
                    result.failed.append({"uri": uri, "error": str(exc)})
                    result.locations.add(action.location)  # it may have got half way
            on_done(1)
    finally:
        result.journal_problems = journal.close()
    return result


class _KeptGone(Refused):
    """The kept copy of a group is not what the plan says: none of the group is touched."""


def _skip(journal: Journal, result: Result, action: PlannedAction, reason: str) -> None:
    journal.write("skipped", location=action.location, path=action.path, uri=action.uri, reason=reason)
    result.skipped.append({"uri": action.uri, "reason": reason})


def _act(places: dict[str, Place], plan: Plan, group: PlannedGroup, action: PlannedAction, journal: Journal,
         resumed: bool) -> None:
    place, kept_place = places[action.location], places[group.keep.location]
    if place.location.reference:
        raise Refused(f"'{action.location}' is a reference location: its files are never touched")
    if place.uri(action.path) == kept_place.uri(group.keep.path):
        raise _KeptGone("the kept copy is this very file, reached through two overlapping locations")
    target = place.quarantine_path(plan.id, action.path) if action.action == "quarantine" else None
    if resumed and _finish(place, kept_place, plan, group, action, target, journal):
        return
    try:
        verify(kept_place, group.keep.path, group.keep)
    except Refused as exc:
        raise _KeptGone(f"kept copy {group.keep.uri}: {exc}; its group is left alone") from None
    data = verify(place, action.path, action)
    if target is not None and place.stat(target) is not None:
        raise Refused(f"{place.uri(target)} exists already; the quarantine never overwrites a file")
    begin = {"location": action.location, "path": action.path, "uri": action.uri, "op": action.action,
             "tier": action.tier, "sha256": action.sha256, "size_bytes": action.size_bytes,
             "modified_at": action.modified_at, "to": target,
             "keep": {"location": group.keep.location, "path": group.keep.path, "sha256": group.keep.sha256}}
    journal.write("begin", **begin)
    if action.action == "quarantine":
        move(place, action.path, target, data, action.sha256)
    elif action.action == "delete":
        remove(place, action.path)
    else:
        _hardlink(kept_place, group.keep.path, place, action.path, plan.id)
    journal.write("done", location=action.location, path=action.path, uri=action.uri, op=action.action, to=target)


def _finish(place: Place, kept_place: Place, plan: Plan, group: PlannedGroup, action: PlannedAction,
            target: str | None, journal: Journal) -> bool:
    """After a crash between `begin` and `done`: True when the files show the action completed
    (then `done` is journaled); False to do it again, after removing what a cut-short copy left."""
    finished = False
    if action.action == "quarantine":
        moved = place.stat(target) is not None and sha256_of(place, target) == action.sha256
        if place.stat(action.path) is None:
            finished = moved
        elif place.stat(target) is not None:
            verify(place, action.path, action)  # the source is intact: the copy is ours, cut short or not
            remove(place, target)
    elif action.action == "delete":
        finished = place.stat(action.path) is None
    else:
        finished = os.path.samefile(kept_place.full(group.keep.path), place.full(action.path))
        leftover = _link_temp(place, action.path, plan.id)
        if os.path.lexists(leftover):
            os.unlink(leftover)
    if finished:
        journal.write("done", location=action.location, path=action.path, uri=action.uri, op=action.action,
                      to=target, recovered=True)
    return finished


def _link_temp(place: Place, path: str, plan_id: str) -> str:
    return f"{place.full(path)}.deeplens-{plan_id}"


def _hardlink(kept_place: Place, kept_path: str, place: Place, path: str, plan_id: str) -> None:
    """Replace the file by a hard link to the kept copy: link beside it, then one rename over it."""
    if place.protocol != "file" or kept_place.protocol != "file":
        raise Refused("hard links exist only on a local file system")
    kept, full = kept_place.full(kept_path), place.full(path)
    if os.path.samefile(kept, full):
        return
    temp = _link_temp(place, path, plan_id)
    place.fs.link(kept, temp)
    os.replace(temp, full)  # atomic: the path always holds one of the two identical files
