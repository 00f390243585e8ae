"""Log output of every DeepLens process: text (Python's default) or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

# Attributes every LogRecord has; whatever else a record carries came as `extra=` and is a field
# (but uvicorn's `color_message`: the message again, with terminal colours).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
# The arguments of uvicorn's access lines (uvicorn/protocols/http/h11_impl.py), as fields to filter on.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **{key: value for key, value in vars(record).items() if key not in _STANDARD},
        }
        access = record.args if record.name == "uvicorn.access" else None
        if isinstance(access, tuple) and len(access) == len(_ACCESS_FIELDS):
            entry.update(zip(_ACCESS_FIELDS, access))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class JsonHandler(logging.StreamHandler):
    """JSON lines on whatever sys.stderr is when a record comes (click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ sets it; sys.stderr is read at each record instead


def configure(log_format: str) -> None:
    """`json`: INFO and above from every logger, one JSON object per line on stderr. `text`: as
    Python does without configuration (warnings and errors on stderr)."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if not any(isinstance(handler, JsonHandler) for handler in root.handlers):
        root.addHandler(JsonHandler())
    root.setLevel(logging.INFO)
