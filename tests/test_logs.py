"""`--log-format json` (DEEPLENS_LOG_FORMAT=json) for the module server: every line it writes on
stderr is one JSON object, uvicorn's own start-up, access and shutdown lines included."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import running_modules_server


def test_module_server_writes_json_lines_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLENS_LOG_FORMAT", "json")  # the server process inherits it
    with running_modules_server(tmp_path) as url:
        assert httpx.get(f"{url}/meta").status_code == 200
        assert httpx.post(f"{url}/v1/features", content=b"not json").status_code == 400
    log = (tmp_path / "modules.log").read_text()  # its stdout and stderr, after a header line of the launcher
    lines = [line for line in log.splitlines() if line and not line.startswith("--- starting modules:")]

    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    loggers = {entry["logger"] for entry in entries}
    assert {"deeplens.modules", "uvicorn.error"} <= loggers, loggers  # the profile line; start-up and shutdown
    assert any("Uvicorn running on" in entry["message"] for entry in entries)
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access"
              and entry["path"] != "/.well-known/ready"]  # the launcher's readiness probes
    assert [(e["method"], e["path"], e["status"]) for e in access] == [("GET", "/meta", 200),
                                                                       ("POST", "/v1/features", 400)]
    assert all(entry["level"] == "info" and entry["time"] for entry in access)
    assert all("color_message" not in entry for entry in entries)
