"""`deeplens dashboards install` and `dashboards export` against a local HTTP server that implements
the parts of Kibana's saved objects import API they use. This tests DeepLens's client and files,
not Kibana: Kibana cannot run here (tests/test_es_containers.py imports into a real one where
Docker is available). What the server checks is read from Kibana's source (elastic/kibana):

- src/core/packages/saved-objects/server-internal/src/routes/import.ts (`registerImportRoute`):
  POST {space prefix}/api/saved_objects/_import, multipart/form-data with a `file` stream whose
  name ends in .ndjson ("Invalid file extension"), query booleans overwrite / createNewCopies /
  compatibilityMode (overwrite with createNewCopies is refused), answer {success, successCount,
  errors, successResults}; a bad request is {error, message, statusCode: 400}.
- src/core/packages/http/server-internal/src/lifecycle_handlers.ts (`createXsrfPostAuthHandler`):
  a POST without a `kbn-xsrf` (or `kbn-version`) header is refused with 400.
- the importer reports an object that exists already, without overwrite, as a `conflict` error
  and a reference to an object neither in the file nor in Kibana as `missing_references`.
- src/platform/plugins/shared/dashboard/server/dashboard_saved_object/schema/v1/v1.ts: dashboard
  attributes, unknown keys forbidden, panelsJSON / optionsJSON / searchSourceJSON as strings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from deeplens.dashboards.assemble import ndjson, source_objects
from deeplens.dashboards.cli import dashboards
from tests.servers.process import http_in_thread

pytestmark = pytest.mark.elasticsearch  # the Elastic half (Kibana), against a local server

IMPORT_PATH = "/api/saved_objects/_import"
DASHBOARD_STRINGS = {"title", "description", "timeFrom", "timeTo", "panelsJSON", "optionsJSON"}
DASHBOARD_KEYS = DASHBOARD_STRINGS | {"kibanaSavedObjectMeta", "timeRestore", "refreshInterval",
                                      "controlGroupInput", "hits", "version"}


class FakeKibana:
    """Saved objects per space, and the import route's checks."""

    def __init__(self, credentials: tuple[str, str] | None = None, importable=("index-pattern", "lens", "dashboard")):
        self.spaces: dict[str, dict[tuple[str, str], dict]] = {}
        self.credentials = credentials
        self.importable = set(importable)
        self.requests: list[dict] = []

    def handle(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict]:
        url = urlsplit(target)
        space, path = "default", url.path
        if path.startswith("/s/"):
            _, _, space, rest = path.split("/", 3)
            path = "/" + rest
        self.requests.append({"method": method, "path": url.path, "space": space})
        if self.credentials:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("authorization") != expected:
                return 401, {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}
        if (method, path) != ("POST", IMPORT_PATH):
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
        if "kbn-xsrf" not in headers and "kbn-version" not in headers:
            return _bad("Request must contain a kbn-xsrf header.")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        flags = {}
        for name in ("overwrite", "createNewCopies", "compatibilityMode"):
            value = query.get(name, "false")
            if value not in ("true", "false"):
                return _bad(f"[request query.{name}]: expected value of type [boolean] but got [string]")
            flags[name] = value == "true"
        if flags["overwrite"] and flags["createNewCopies"]:
            return _bad("[request query]: cannot use [overwrite] with [createNewCopies]")
        file = _multipart_file(headers.get("content-type", ""), body)
        if file is None:
            return _bad("[request body.file]: expected value of type [Stream] but got [undefined]")
        filename, content = file
        if not filename.lower().endswith(".ndjson"):
            return _bad(f"Invalid file extension .{filename.rsplit('.', 1)[-1]}")
        objects = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        return 200, self._import(self.spaces.setdefault(space, {}), objects, flags["overwrite"])

    def _import(self, store: dict, objects: list[dict], overwrite: bool) -> dict:
        # Objects of a type Kibana cannot import are dropped before references are checked.
        in_file = {(o["type"], o["id"]) for o in objects if o["type"] in self.importable}
        errors, results = [], []
        for obj in objects:
            key, title = (obj["type"], obj["id"]), obj["attributes"].get("title")
            error = None
            missing = [r for r in obj.get("references", []) if (r["type"], r["id"]) not in in_file | set(store)]
            if obj["type"] not in self.importable:
                error = {"type": "unsupported_type"}
            elif missing:
                error = {"type": "missing_references", "references": [{"type": r["type"], "id": r["id"]} for r in missing]}
            elif key in store and not overwrite:
                error = {"type": "conflict"}
            elif obj["type"] == "dashboard" and (problem := _dashboard_problem(obj["attributes"])):
                error = {"type": "unknown", "message": problem}
            if error:
                errors.append({"type": obj["type"], "id": obj["id"], "meta": {"title": title}, "error": error})
                continue
            store[key] = obj
            results.append({"type": obj["type"], "id": obj["id"], "meta": {"title": title}})
        return {"success": not errors, "successCount": len(results), "successResults": results, "errors": errors,
                "warnings": []}


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"statusCode": 400, "error": "Bad Request", "message": message}


def _multipart_file(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    if not content_type.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_filename() or "", part.get_payload(decode=True)
    return None


def _dashboard_problem(attributes: dict) -> str | None:
    unknown = set(attributes) - DASHBOARD_KEYS
    if unknown:
        return f"[attributes]: definition for these keys is missing: {sorted(unknown)}"
    for key in sorted(DASHBOARD_STRINGS & set(attributes)):
        if not isinstance(attributes[key], str):
            return f"[attributes.{key}]: expected value of type [string]"
    meta = attributes.get("kibanaSavedObjectMeta", {})
    if not isinstance(meta.get("searchSourceJSON", ""), str):
        return "[attributes.kibanaSavedObjectMeta.searchSourceJSON]: expected value of type [string]"
    if "timeRestore" in attributes and not isinstance(attributes["timeRestore"], bool):
        return "[attributes.timeRestore]: expected value of type [boolean]"
    return None


@pytest.fixture
def kibana() -> Iterator[tuple[str, FakeKibana]]:
    yield from _serve(FakeKibana())


def _serve(fake: FakeKibana) -> Iterator[tuple[str, FakeKibana]]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, payload = fake.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    with http_in_thread(Handler) as url:
        yield url, fake


def _install(url: str, *args: str):
    env = {f"DEEPLENS_KIBANA_{name}": None for name in ("URL", "USERNAME", "PASSWORD")}
    return CliRunner().invoke(dashboards, ["install", "--kibana-url", url, *args], env=env)


def test_install_imports_every_object_and_is_idempotent(kibana) -> None:
    url, fake = kibana
    first = _install(url)
    assert first.exit_code == 0, first.output
    expected = {(o["type"], o["id"]) for o in source_objects()}
    assert set(fake.spaces["default"]) == expected
    assert f"Imported {len(expected)} saved objects" in first.output
    assert "/app/dashboards#/view/deeplens-duplicate-analysis" in first.output
    again = _install(url)  # overwrite=true: DeepLens's own objects are replaced, never a conflict
    assert again.exit_code == 0, again.output
    stored = fake.spaces["default"][("dashboard", "deeplens-duplicate-analysis")]["attributes"]
    assert json.loads(stored["panelsJSON"]) and stored["timeRestore"] is True


def test_install_into_a_space(kibana) -> None:
    url, fake = kibana
    result = _install(url, "--space", "photos")
    assert result.exit_code == 0, result.output
    assert fake.requests[-1]["path"] == f"/s/photos{IMPORT_PATH}"
    assert set(fake.spaces) == {"photos"}


def test_install_sends_credentials() -> None:
    for url, fake in _serve(FakeKibana(credentials=("elastic", "s3cret"))):
        refused = _install(url)
        assert refused.exit_code != 0 and "Kibana answered 401" in refused.output
        result = _install(url, "--username", "elastic", "--password", "s3cret")
        assert result.exit_code == 0, result.output
        assert len(fake.spaces["default"]) == len(source_objects())


def test_install_reports_the_objects_kibana_refused() -> None:
    for url, fake in _serve(FakeKibana(importable=("index-pattern", "dashboard"))):  # e.g. no Lens
        result = _install(url)
        assert result.exit_code != 0
        assert "failed on: lens/deeplens-" in result.output and "unsupported_type" in result.output
        assert "missing_references" in result.output  # the dashboard points at the refused Lens objects


def test_install_without_kibana_says_so() -> None:
    result = _install("http://127.0.0.1:9")
    assert result.exit_code != 0 and "cannot reach Kibana at http://127.0.0.1:9" in result.output


def test_export_writes_a_file_the_import_api_takes(kibana, tmp_path) -> None:
    url, fake = kibana
    output = tmp_path / "deeplens.ndjson"
    result = CliRunner().invoke(dashboards, ["export", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_text() == ndjson()
    # As Stack Management > Saved objects > Import sends it.
    with output.open("rb") as file:
        answer = httpx.post(f"{url}{IMPORT_PATH}", headers={"kbn-xsrf": "true"},
                            files={"file": (output.name, file, "application/ndjson")}).json()
    assert answer["success"] and answer["successCount"] == len(source_objects())
    with output.open("rb") as file:  # a second import without overwrite conflicts, as in Kibana
        conflicts = httpx.post(f"{url}{IMPORT_PATH}", headers={"kbn-xsrf": "true"},
                               files={"file": (output.name, file, "application/ndjson")}).json()
    assert {e["error"]["type"] for e in conflicts["errors"]} == {"conflict"}


def test_the_fake_refuses_what_kibana_refuses(kibana) -> None:
    """The server's own checks, so the tests above would notice a client that broke them."""
    url, _ = kibana
    files = {"file": ("deeplens.ndjson", ndjson().encode(), "application/ndjson")}
    assert httpx.post(f"{url}{IMPORT_PATH}", files=files).status_code == 400  # no kbn-xsrf
    wrong_name = httpx.post(f"{url}{IMPORT_PATH}", headers={"kbn-xsrf": "x"},
                            files={"file": ("deeplens.json", b"{}", "application/json")})
    assert wrong_name.json()["message"] == "Invalid file extension .json"
    both = httpx.post(f"{url}{IMPORT_PATH}", params={"overwrite": "true", "createNewCopies": "true"},
                      headers={"kbn-xsrf": "x"}, files=files)
    assert both.status_code == 400 and "cannot use [overwrite] with [createNewCopies]" in both.json()["message"]
    assert httpx.post(f"{url}{IMPORT_PATH}", headers={"kbn-xsrf": "x"}, files=files).json()["success"]
    unstringified = [o for o in source_objects() if o["type"] == "dashboard"]  # panelsJSON still a list
    raw = "".join(json.dumps(o) + "\n" for o in unstringified)
    answer = httpx.post(f"{url}{IMPORT_PATH}", params={"overwrite": "true"}, headers={"kbn-xsrf": "x"},
                        files={"file": ("raw.ndjson", raw.encode(), "application/ndjson")}).json()
    [error] = answer["errors"]
    assert error["error"]["type"] == "unknown" and error["error"]["message"].startswith("[attributes.optionsJSON]")
