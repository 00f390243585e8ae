"""Undoing what a journal records: quarantined files back where they were, hard links back to
independent files, each verified by its sha256. Idempotent: a file already back in place is
counted and left alone, so undo can run again after a crash or after a partial undo. Like apply,
it judges by the files: an action cut short by a crash is reverted as far as it got.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from deeplens.connectors import storage
from deeplens.connectors.cleanup.apply import last_events
from deeplens.connectors.cleanup.files import BadQuarantine, Place, Refused, move, quarantine_of, remove, sha256_of
from deeplens.connectors.cleanup.journal import Journal, read
from deeplens.schema.models import StorageLocation


class BadJournal(ValueError):
    """Not a journal this DeepLens can undo; the message says why."""


@dataclass
class Result:
    journal: Path
    restored: int = 0
    already_in_place: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"uri", "reason"}
    failed: list[dict] = field(default_factory=list)
    locations: set[str] = field(default_factory=set)
    journal_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0  # acting, without the rescan the CLI runs afterwards

    def as_json(self) -> dict:
        return {"journal": str(self.journal), "seconds": round(self.seconds, 3), "restored": self.restored, "already_in_place": self.already_in_place,
                "skipped": self.skipped, "failed": self.failed, "journal_problems": self.journal_problems}


def undo_journal(path: Path, registered: dict[str, StorageLocation], workers: int = 8,
                 on_done: Callable[[int], None] = lambda count: None) -> Result:
    try:
        events = read(path)
    except OSError as exc:
        raise BadJournal(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    plan_id = next((e["plan_id"] for e in events if e.get("event") == "apply"), None)
    if plan_id is None:
        raise BadJournal(f"{path} is not a DeepLens journal (no apply event); journals are in "
                         "<data dir>/journals/ and beside each quarantine")
    # Every action ever begun, undone before or not: the files tell what is left to do.
    begun = last_events(events, {"begin"})
    acted_in = {location for location, _ in begun}
    kept_in = {event["keep"]["location"] for event in begun.values() if event["op"] == "hardlink"}
    unknown = sorted((acted_in | kept_in) - set(registered))
    if unknown:
        raise BadJournal(f"the journal names location(s) {', '.join(unknown)}, not registered now; register them "
                         "again with the same URL (`deeplens storage add`) and undo again")
    places = {name: Place.open(registered[name]) for name in sorted(acted_in | kept_in)}
    # Each location's quarantine as apply had it (plan --quarantine, recorded in each begin event).
    custom = {location: event.get("quarantine") for (location, _), event in begun.items()
              if event["op"] == "quarantine"}
    try:
        quarantines = {name: quarantine_of(places[name], plan_id, custom.get(name)) for name in acted_in}
    except BadQuarantine as exc:
        raise BadJournal(f"{exc}; the journal's files are there, so undo needs it") from None
    journal = Journal(path, plan_id, quarantines)
    started = time.monotonic()
    result = Result(path)
    lock = threading.Lock()  # guards result
    journal.write("undo", plan_id=plan_id, actions=len(begun))

    def undo_one(item: tuple[tuple[str, str], dict]) -> None:
        (location, file_path), event = item
        uri = event["uri"]
        try:
            restored = _undo(places[location], event, places, quarantines[location])
            journal.write("undone", location=location, path=file_path, uri=uri, op=event["op"], already=not restored)
            with lock:
                result.restored += restored
                result.already_in_place += not restored
                result.locations.add(location)
        except Refused as exc:
            journal.write("undo-skipped", location=location, path=file_path, uri=uri, reason=str(exc))
            with lock:
                result.skipped.append({"uri": uri, "reason": str(exc)})
        except (storage.StorageError, OSError) as exc:
            journal.write("undo-failed", location=location, path=file_path, uri=uri, error=str(exc))
            with lock:
                result.failed.append({"uri": uri, "error": str(exc)})
        on_done(1)

    if not all(storage.parallel_reads(place.fs) for place in places.values()):
        workers = 1
    try:
        with ThreadPoolExecutor(workers) as pool:  # each file is its own: any order, in parallel
            list(pool.map(undo_one, begun.items()))
    finally:
        result.journal_problems = journal.close()
        result.seconds = time.monotonic() - started
    return result


def _undo(place: Place, event: dict, places: dict[str, Place], quarantine: Place) -> bool:
    """Put one file back; True when something was restored, False when it already was in place."""
    path, sha256 = event["path"], event["sha256"]
    if event["op"] == "quarantine":
        return _unquarantine(place, path, quarantine, sha256)
    if event["op"] == "hardlink":
        keep = event["keep"]
        return _unlink(places[keep["location"]], keep["path"], place, path, sha256, event.get("modified_at"))
    if sha256_of(place, path) == sha256:  # a delete cut short by a crash
        return False
    raise Refused("deleted for good (action delete): nothing to restore")


def _unquarantine(place: Place, path: str, quarantine: Place, sha256: str) -> bool:
    here = sha256_of(place, path)
    data = quarantine.read(path) if quarantine.stat(path) is not None else None  # read once: moved from memory
    if data is None:
        if here == sha256:
            return False
        if here is None:
            raise Refused(f"neither the file nor its quarantined copy {quarantine.uri(path)} exists")
        raise Refused("another file is at this path now; nothing was overwritten")
    if here is not None:
        if here != sha256:
            raise Refused(f"another file is at this path now; the quarantined copy stays at {quarantine.uri(path)}")
        # Back in place already (a copy-based move cut short): the quarantine holds a spare copy.
        remove(quarantine, path)
        return False
    there = hashlib.sha256(data).hexdigest()
    if there != sha256:
        raise Refused(f"the quarantined copy {quarantine.uri(path)} changed (sha256 {there}); left where it is")
    move(quarantine, path, place, path, data, sha256)  # a rename, or a copy whose sha256 it checks
    return True


def _unlink(kept_place: Place, kept_path: str, place: Place, path: str, sha256: str, modified_at) -> bool:
    """Make the hard link an independent file again, with the original's modification time."""
    full, kept = place.full(path), kept_place.full(kept_path)
    if not os.path.exists(kept):
        raise Refused(f"the kept copy {kept_place.uri(kept_path)} is gone; its bytes were the only ones")
    if os.path.exists(full) and not os.path.samefile(full, kept):
        if sha256_of(place, path) == sha256:
            return False
        raise Refused("another file is at this path now; nothing was overwritten")
    data = kept_place.read(kept_path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise Refused("the kept copy no longer has the bytes this file had; left linked")
    temp = f"{full}.deeplens-undo"
    place.fs.pipe_file(temp, data)
    if modified_at:
        stamp = datetime.fromisoformat(modified_at).timestamp()
        os.utime(temp, (stamp, stamp))
    os.replace(temp, full)
    return True
