"""Applying a plan: re-verify, act, journal; resumable after a crash.

Before each action both the file and its group's kept copy are checked again against the plan
(exists, same size, same etag or modification time, no symlink, not the same file under two
overlapping locations; the file's sha256 read again, the kept copy's once per group). A file that
changed is skipped with the reason; a kept copy that changed or vanished blocks its whole group,
so the last copy is never the one acted on.
Each action is journaled (journal.py) with a `begin` before anything is touched and a `done`
after. Applying a plan again skips what is done and finishes what a crash interrupted, judging by
the files themselves: a quarantined copy that reads back right means the move happened.
Groups are independent (a file appears once in a plan), so several are applied at once; the
actions of one group run in order, so a kept copy found changed stops the rest of its group.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deeplens.connectors import storage
from deeplens.connectors.cleanup.files import (
    BadQuarantine,
    Place,
    Refused,
    move,
    quarantine_of,
    remove,
    sha256_of,
    verify,
)
from deeplens.connectors.cleanup.journal import Journal, journal_path
from deeplens.connectors.cleanup.plan import BadPlan, Plan, PlannedAction, PlannedGroup
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
    seconds: float = 0.0  # acting, without the rescan the CLI runs afterwards

    def as_json(self) -> dict:
        return {"journal": str(self.journal), "seconds": round(self.seconds, 3), "done": self.done, "already_done": self.already_done,
                "bytes_reclaimed": self.bytes_reclaimed, "skipped": self.skipped, "failed": self.failed,
                "journal_problems": self.journal_problems}


def last_events(events: list[dict], kinds: set[str]) -> dict[tuple[str, str], dict]:
    """The last event of these kinds per (location, path)."""
    last = {}
    for event in events:
        if event["event"] in kinds and "path" in event:
            last[(event["location"], event["path"])] = event
    return last


def apply_plan(plan: Plan, registered: dict[str, StorageLocation], data_dir: Path, workers: int = 8,
               on_done: Callable[[int], None] = lambda count: None) -> Result:
    """Groups are applied concurrently (`workers`; one at a time where a protocol takes no parallel
    reads), the actions of one group in order. BadPlan before any action when a location's
    quarantine cannot be used (plan --quarantine)."""
    places = {name: Place.open(registered[name]) for name in plan.locations}
    quarantines = _quarantines(plan, places)
    journal = Journal(journal_path(data_dir, plan.id), plan.id, quarantines)
    run = _Run(plan, places, quarantines, journal, Result(journal.path), on_done)
    started = time.monotonic()
    state = last_events(journal.events, {"begin", "done", "undone"})
    journal.write("apply", plan_id=plan.id, actions=len(plan.actions()))
    if not all(storage.parallel_reads(place.fs) for place in places.values()):
        workers = 1
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda group: run.apply_group(group, state), plan.groups))
    finally:
        run.result.journal_problems = journal.close()
        run.result.seconds = time.monotonic() - started
    return run.result


def _quarantines(plan: Plan, places: dict[str, Place]) -> dict[str, Place]:
    """The quarantine folder of every location acted on (for delete and hardlink actions it holds
    only the journal's copy, so it is the default one there)."""
    quarantining = {action.location for _, action in plan.actions() if action.action == "quarantine"}
    try:
        return {name: quarantine_of(places[name], plan.id, plan.quarantine if name in quarantining else None)
                for name in sorted({action.location for _, action in plan.actions()})}
    except BadQuarantine as exc:
        raise BadPlan(f"{exc}; then make a new plan") from None


class _KeptGone(Refused):
    """The kept copy of a group is not what the plan says: none of the group is touched."""


@dataclass
class _Run:
    plan: Plan
    places: dict[str, Place]
    quarantines: dict[str, Place]
    journal: Journal  # thread-safe
    result: Result
    on_done: Callable[[int], None]
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards result

    def apply_group(self, group: PlannedGroup, state: dict) -> None:
        blocked = None  # why the group's kept copy cannot be trusted
        kept_hashed = False
        for action in group.actions:
            prior = state.get(action.key, {}).get("event")
            if prior == "done":
                with self.lock:
                    self.result.already_done += 1
            elif blocked:
                self._skip(action, blocked)
            else:
                try:
                    kept_hashed |= self.act(group, action, resumed=prior == "begin", hash_kept=not kept_hashed)
                    with self.lock:
                        self.result.done += 1
                        self.result.bytes_reclaimed += action.size_bytes
                        self.result.locations.add(action.location)
                except _KeptGone as exc:
                    blocked = str(exc)
                    self._skip(action, blocked)
                except Refused as exc:
                    self._skip(action, str(exc))
                except (storage.StorageError, OSError) as exc:
                    self.journal.write("failed", location=action.location, path=action.path, uri=action.uri,
                                       error=str(exc))
                    with self.lock:
                        self.result.failed.append({"uri": action.uri, "error": str(exc)})
                        self.result.locations.add(action.location)  # it may have got half way
            self.on_done(1)

    def _skip(self, action: PlannedAction, reason: str) -> None:
        self.journal.write("skipped", location=action.location, path=action.path, uri=action.uri, reason=reason)
        with self.lock:
            self.result.skipped.append({"uri": action.uri, "reason": reason})

    def act(self, group: PlannedGroup, action: PlannedAction, resumed: bool, hash_kept: bool) -> bool:
        """Do one action; True when the kept copy's sha256 was read again for it."""
        place, kept_place = self.places[action.location], self.places[group.keep.location]
        if place.location.reference:
            raise Refused(f"'{action.location}' is a reference location: its files are never touched")
        if place.uri(action.path) == kept_place.uri(group.keep.path):
            raise _KeptGone("the kept copy is this very file, reached through two overlapping locations")
        quarantine = self.quarantines[action.location] if action.action == "quarantine" else None
        if resumed and self._finish(group, action, quarantine):
            return False
        try:
            # Size, etag or modification time before every action; the sha256 once per group: a
            # change that keeps all three is not one that happens between two actions of one apply.
            verify(kept_place, group.keep.path, group.keep, reread=hash_kept)
        except Refused as exc:
            raise _KeptGone(f"kept copy {group.keep.uri}: {exc}; its group is left alone") from None
        data = verify(place, action.path, action)
        if quarantine is not None and quarantine.stat(action.path) is not None:
            raise Refused(f"{quarantine.uri(action.path)} exists already; the quarantine never overwrites a file")
        self.journal.write(
            "begin", location=action.location, path=action.path, uri=action.uri, op=action.action, tier=action.tier,
            sha256=action.sha256, size_bytes=action.size_bytes, modified_at=action.modified_at,
            to=quarantine.uri(action.path) if quarantine else None, quarantine=self.plan.quarantine,
            keep={"location": group.keep.location, "path": group.keep.path, "sha256": group.keep.sha256})
        if quarantine is not None:
            move(place, action.path, quarantine, action.path, data, action.sha256)
        elif action.action == "delete":
            remove(place, action.path)
        else:
            _hardlink(kept_place, group.keep.path, place, action.path, self.plan.id)
        self._done(action)
        return hash_kept

    def _done(self, action: PlannedAction, **recovered) -> None:
        self.journal.write("done", location=action.location, path=action.path, uri=action.uri, op=action.action,
                           **recovered)

    def _finish(self, group: PlannedGroup, action: PlannedAction, quarantine: Place | None) -> bool:
        """After a crash between `begin` and `done`: True when the files show the action completed
        (then `done` is journaled); False to do it again, after removing what a cut-short copy left."""
        place, kept_place = self.places[action.location], self.places[group.keep.location]
        finished = False
        if quarantine is not None:
            copied = quarantine.stat(action.path) is not None
            moved = copied and sha256_of(quarantine, action.path) == action.sha256
            if place.stat(action.path) is None:
                finished = moved
            elif copied:
                verify(place, action.path, action)  # the source is intact: the copy is ours, cut short or not
                remove(quarantine, action.path)
        elif action.action == "delete":
            finished = place.stat(action.path) is None
        else:
            finished = os.path.samefile(kept_place.full(group.keep.path), place.full(action.path))
            leftover = _link_temp(place, action.path, self.plan.id)
            if os.path.lexists(leftover):
                os.unlink(leftover)
        if finished:
            self._done(action, recovered=True)
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
