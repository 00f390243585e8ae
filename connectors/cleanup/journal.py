"""The journal of a plan's actions: JSON lines, one event each.

The copy in the data dir (`<data dir>/journals/<plan id>.jsonl`) is the one apply and undo trust:
each event is appended and fsync'd, a `begin` before an action touches anything and a `done` after
it, so after a crash (kill -9) the next apply or undo knows which action may be half done and
looks at the files to finish or revert it. A copy of each location's events lies beside its
quarantine folder (`.deeplens-quarantine/<plan id>.jsonl` next to `.deeplens-quarantine/<plan id>/`,
outside it, so no quarantined file can have its name), for whoever finds the quarantine without
the data dir; object stores cannot append, so it is rewritten, at most once a second and at the
end, from lines kept per location as events come. Events hold location names, paths, URIs and
hashes: never options or credentials.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from deeplens.connectors.cleanup.files import Place
from deeplens.connectors.storage.errors import fs_error
from deeplens.schema.models import utcnow

REMOTE_EVERY_S = 1.0


def journal_path(data_dir: Path, plan_id: str) -> Path:
    return data_dir / "journals" / f"{plan_id}.jsonl"


def read(path: Path) -> list[dict]:
    """The events of a journal. A last line cut short by a crash is ignored: its action was not
    started (a `begin` is complete before anything is touched)."""
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class Journal:
    def __init__(self, path: Path, plan_id: str, quarantines: dict[str, Place]):
        """quarantines: location name -> its quarantine folder (files.quarantine_of), beside which
        that location's copy of the journal is kept."""
        self.path = path
        self.plan_id = plan_id
        self.quarantines = quarantines
        path.parent.mkdir(parents=True, exist_ok=True)
        self.events: list[dict] = []
        self._lines: dict[str, list[str]] = {name: [] for name in quarantines}  # serialized once, per copy
        self._dirty: set[str] = set()
        for event in read(path) if path.exists() else []:
            self._add(event, _line(event))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._flushed = 0.0
        self._lock = threading.Lock()

    def _add(self, event: dict, line: str) -> None:
        self.events.append(event)
        for name in [event["location"]] if "location" in event else self.quarantines:
            if name in self._lines:
                self._lines[name].append(line)
                self._dirty.add(name)

    def write(self, event: str, **fields) -> dict:
        """Append one event (thread-safe: apply and undo act from several threads)."""
        record = {"event": event, "at": utcnow().isoformat(), **fields}
        line = _line(record)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._add(record, line)
            if time.monotonic() - self._flushed >= REMOTE_EVERY_S:
                self.flush_remote()
        return record

    def flush_remote(self) -> list[str]:
        """Rewrite the copies beside the quarantines; returns the problems (a copy is a convenience,
        the data dir's journal is the record, so a failure here stops nothing)."""
        problems = []
        for name in sorted(self._dirty):
            quarantine = self.quarantines[name]
            target = f"{quarantine.root}.jsonl"
            try:
                quarantine.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                quarantine.fs.pipe_file(target, ("\n".join(self._lines[name]) + "\n").encode())
            except Exception as exc:  # noqa: BLE001 - every library raises its own types
                problems.append(str(fs_error(exc, quarantine.fs, target, "writing the journal copy")))
        self._dirty.clear()
        self._flushed = time.monotonic()
        return problems

    def close(self) -> list[str]:
        problems = self.flush_remote()
        self._file.close()
        return problems


def _line(event: dict) -> str:
    return json.dumps(event, default=str, ensure_ascii=False)
