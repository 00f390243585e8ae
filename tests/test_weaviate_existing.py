"""DeepLens against a Weaviate it did not start: API-key and OIDC settings with clear refusals, TLS
with a private CA, extra headers, the cloud URL form, and the two vector modes. The precomputed mode
runs on a Weaviate with no modules at all (like a managed one) and must give the answers modules
mode gives on the same images. An older Weaviate release runs the same end-to-end checks (marker
`older_weaviate`)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from weaviate.classes.rbac import Permissions

from deeplens.config import OLDEST_TESTED_WEAVIATE, WEAVIATE_VERSION, Settings
from deeplens.processes import free_port
from deeplens.samples import jpeg_bytes, sample_photos, write_demo_locations
from deeplens.schema.weaviate import IMAGE_COLLECTION
from tests.cli import run, run_json, weaviate_client
from tests.conftest import running_modules_server
from tests.weaviate_server import TlsFiles, WeaviateEndpoint, delete_deeplens_collections, running_weaviate

pytestmark = pytest.mark.weaviate


@dataclass(frozen=True)
class ExistingWeaviate:
    endpoint: WeaviateEndpoint  # plain HTTP, for the test's own client
    https_url: str  # the same server over TLS, signed by the private CA
    tls: TlsFiles


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA and a certificate it signed for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DeepLens test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return files


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[ExistingWeaviate]:
    """The pinned Weaviate with no modules enabled, an API key, and TLS signed by a private CA."""
    with running_weaviate(tmp_path_factory.mktemp("existing"), None, tls=tls_files) as own:
        yield ExistingWeaviate(own.endpoint, f"https://127.0.0.1:{own.tls_port}", tls_files)


@pytest.fixture
def existing_env(existing: ExistingWeaviate, modules_url: str, tmp_path: Path) -> dict[str, str]:
    """Settings an operator would use for a secured Weaviate: HTTPS with its CA, the key in a file."""
    delete_deeplens_collections(existing.endpoint)
    key_file = tmp_path / "weaviate-key"
    key_file.write_text(existing.endpoint.api_key + "\n")
    return {
        "DEEPLENS_DATA_DIR": str(tmp_path / "data"),
        "DEEPLENS_WEAVIATE_URL": existing.https_url,
        "DEEPLENS_WEAVIATE_GRPC_PORT": str(existing.endpoint.grpc_port),
        "DEEPLENS_WEAVIATE_CA_FILE": str(existing.tls.ca),
        "DEEPLENS_WEAVIATE_API_KEY_FILE": str(key_file),
        "DEEPLENS_MODULES_URL": modules_url,
    }


def test_wrong_or_missing_credentials_are_refused_with_what_to_set(existing_env, tmp_path):
    no_key = {name: value for name, value in existing_env.items() if name != "DEEPLENS_WEAVIATE_API_KEY_FILE"}
    refused = run(no_key, "stats", ok=False)
    assert refused.exit_code == 1 and "refused a request without an API key" in refused.output
    assert "DEEPLENS_WEAVIATE_API_KEY" in refused.output

    wrong = run({**no_key, "DEEPLENS_WEAVIATE_API_KEY": "not-the-key"}, "stats", ok=False)
    assert wrong.exit_code == 1 and "refused the API key it was given" in wrong.output
    assert "not-the-key" not in wrong.output

    unreadable = run({**no_key, "DEEPLENS_WEAVIATE_API_KEY_FILE": str(tmp_path / "missing")}, "stats", ok=False)
    assert unreadable.exit_code == 1 and "DEEPLENS_WEAVIATE_API_KEY_FILE" in unreadable.output
    assert "cannot be read" in unreadable.output

    # OIDC client credentials go through weaviate-client's Auth classes; this Weaviate has no OIDC.
    oidc = run({**no_key, "DEEPLENS_WEAVIATE_OIDC_CLIENT_SECRET": "a-client-secret"}, "stats", ok=False)
    assert oidc.exit_code == 1 and "refused the OIDC client credentials" in oidc.output
    assert "AUTHENTICATION_OIDC_ENABLED" in oidc.output and "a-client-secret" not in oidc.output
    both = run({**existing_env, "DEEPLENS_WEAVIATE_OIDC_CLIENT_SECRET": "a-client-secret"}, "stats", ok=False)
    assert both.exit_code == 1 and "DeepLens sends one" in both.output

    untrusted = {name: value for name, value in existing_env.items() if name != "DEEPLENS_WEAVIATE_CA_FILE"}
    no_ca = run(untrusted, "stats", ok=False)
    assert no_ca.exit_code == 1 and "DEEPLENS_WEAVIATE_CA_FILE" in no_ca.output

    assert run_json(existing_env, "stats") == {"locations": []}  # the right key, over TLS: in


def test_extra_headers_reach_weaviate_over_http_and_grpc(existing, existing_env):
    """The key sent as a plain header (what an authenticating proxy in front of Weaviate may need):
    Weaviate reads it on REST and on gRPC alike, so both carry the extra headers."""
    env = {name: value for name, value in existing_env.items() if name != "DEEPLENS_WEAVIATE_API_KEY_FILE"}
    env["DEEPLENS_WEAVIATE_HEADERS"] = json.dumps({"Authorization": f"Bearer {existing.endpoint.api_key}"})
    run(env, "schema", "apply", "--vectors", "precomputed")
    assert run_json(env, "stats") == {"locations": []}  # an aggregate, over gRPC


def test_cloud_url_form_gives_the_grpc_address():
    cloud = Settings(weaviate_url="https://abc123.c0.europe-west3.gcp.weaviate.cloud")
    assert (cloud.weaviate_port, cloud.weaviate_secure) == (443, True)
    assert cloud.weaviate_grpc_address == ("grpc-abc123.c0.europe-west3.gcp.weaviate.cloud", 443)
    assert Settings(weaviate_url="https://abc.weaviate.network").weaviate_grpc_address == ("abc.grpc.weaviate.network", 443)
    proxied = Settings(weaviate_url="https://db.example.org", weaviate_grpc_host="grpc.example.org", weaviate_grpc_port=8443)
    assert (proxied.weaviate_port, proxied.weaviate_grpc_address) == (443, ("grpc.example.org", 8443))


def test_modules_mode_is_refused_where_weaviate_cannot_call_the_module_server(env, existing_env):
    missing = run(existing_env, "schema", "apply", "--vectors", "modules", ok=False)
    assert missing.exit_code == 1 and "does not have the multi2vec-clip module enabled" in missing.output
    assert "ENABLE_MODULES" in missing.output and "--vectors precomputed" in missing.output

    # Weaviate has the module, but the module server is not where DEEPLENS_MODULES_URL says.
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = run({**env, "DEEPLENS_MODULES_URL": dead}, "schema", "apply", "--vectors", "modules", ok=False)
    assert unreachable.exit_code == 1 and f"could not vectorize an image through the module server at {dead}/semantic" in unreachable.output
    assert "address Weaviate can reach" in unreachable.output
    auto = run({**env, "DEEPLENS_MODULES_URL": dead}, "schema", "apply")
    assert "created collection DeepLensImage with precomputed vectors: Weaviate has multi2vec-clip but could not" in auto.output
    with weaviate_client_of(env) as client:
        assert [c for c in client.collections.list_all() if c.startswith("DeepLensModuleCheck")] == []


def test_existing_collection_keeps_its_mode(env):
    created = run(env, "schema", "apply").output
    assert "modules vectors: Weaviate has multi2vec-clip and reaches the module server" in created
    # `semantic` is compressed (8-bit RQ, rescored), `phash` is not (schema/weaviate.py QUANTIZERS).
    with weaviate_client_of(env) as client:
        indexes = {name: vector.vector_index_config
                   for name, vector in client.collections.use(IMAGE_COLLECTION).config.get().vector_config.items()}
    assert (indexes["semantic"].quantizer.bits, indexes["semantic"].quantizer.rescore_limit) == (8, 20)
    assert indexes["phash"].quantizer is None
    # `semantic` searches keep at least 200 candidates (schema/weaviate.py SEARCH_EF_MIN), `phash` Weaviate's 100.
    assert (indexes["semantic"].dynamic_ef_min, indexes["phash"].dynamic_ef_min) == (200, 100)
    assert run(env, "schema", "apply", "--vectors", "modules").output.strip() == "Schema is up to date."
    other = run(env, "schema", "apply", "--vectors", "precomputed", ok=False)
    assert other.exit_code == 1 and "exists with modules vectors" in other.output


def answers(env: dict[str, str], root: Path, vectors: str) -> dict:
    """Scan the demo photos into an empty Weaviate in one vector mode; what scan, search and
    duplicates answer, without run-specific fields."""
    locations = write_demo_locations(root) if not (root / "archive").exists() else {
        "archive": root / "archive", "exports": root / "exports"}
    assert f"{vectors} vectors" in run(env, "schema", "apply", "--vectors", vectors).output
    for name, folder in locations.items():
        run(env, "storage", "add", name, str(folder))
    scans = [{key: s[key] for key in ("location", "new", "errors", "skipped_not_images")}
             for s in run_json(env, "scan", "--all")]
    query = str(locations["archive"] / "coffee.jpg")
    return {
        "scan": scans,
        # Byte-identical copies tie; Weaviate returns tied hits in any order. No tie at the third hit.
        "similar": sorted(run_json(env, "search", "--image", query, "--limit", "3")["hits"],
                          key=lambda hit: (round(hit["distance"], 3), hit["uri"])),
        "near_dup": run_json(env, "search", "--image", str(locations["archive"] / "grass.jpg"), "--near-dup")["hits"],
        "exact": run_json(env, "duplicates", "--exact"),
        "near": run_json(env, "duplicates", "--near"),
        "stats": run_json(env, "stats"),
    }


def assert_same(a, b, where: str = "answers") -> None:
    """Equal, but cosine distances to 1e-3: Weaviate's module call and /v1/features embed the same
    thumbnail in batches of different sizes."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-3), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def test_status_reaches_a_weaviate_with_tls_and_a_key_file(existing_env):
    """`deeplens status` asks Weaviate's version with the settings every command uses (the CA file,
    the key file), not as an anonymous plain request."""
    info = json.loads(run(existing_env, "status", "--json").output)
    assert info["weaviate_version"] == WEAVIATE_VERSION and info["weaviate_url"].startswith("https://")
    ca = Path(existing_env["DEEPLENS_WEAVIATE_CA_FILE"])  # a CA file under ~, as every command reads it
    home_env = existing_env | {"HOME": str(ca.parent), "DEEPLENS_WEAVIATE_CA_FILE": f"~/{ca.name}"}
    assert json.loads(run(home_env, "status", "--json").output)["weaviate_version"] == WEAVIATE_VERSION


def test_precomputed_on_a_weaviate_without_modules_answers_like_modules_mode(env, existing_env, tmp_path):
    photos = tmp_path / "photos"
    with_modules = answers(env, photos, "modules")
    precomputed = answers(existing_env, photos, "precomputed")
    assert with_modules["scan"][0]["new"] >= 10 and with_modules["near"]["groups"], with_modules
    assert_same(precomputed, with_modules)
    # The offline profile has no text tower: the module server's refusal and fix, as in modules mode.
    text = run(existing_env, "search", "--text", "a cup of coffee", ok=False)
    assert text.exit_code == 1 and "text search needs the clip profile" in text.output


def test_text_search_on_a_precomputed_collection_embeds_the_text_on_the_module_server(existing, existing_env, tmp_path):
    """With a text profile (clip; random weights: this checks the plumbing, not the ranking) the
    query text is embedded by the module server and sent as nearVector: each hit's distance is
    the cosine distance between the server's text vector and the object's stored vector."""
    with running_modules_server(tmp_path / "clip", "--random-weights", profile="clip") as clip_url:
        env = {**existing_env, "DEEPLENS_MODULES_URL": clip_url}
        photos = write_demo_locations(tmp_path / "photos")
        run(env, "schema", "apply", "--vectors", "precomputed")
        run(env, "storage", "add", "archive", str(photos["archive"]))
        run(env, "scan", "archive")
        hits = run_json(env, "search", "--text", "a cup of coffee", "--limit", "3")["hits"]
        text_vector = np.array(httpx.post(f"{clip_url}/semantic/vectorize",
                                          json={"texts": ["a cup of coffee"]}).json()["textVectors"][0])
    assert len(hits) == 3 and [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    endpoint = existing.endpoint  # plain HTTP beside the HTTPS port
    stored = httpx.get(f"http://{endpoint.host}:{endpoint.http_port}/v1/objects",
                       params={"class": IMAGE_COLLECTION, "include": "vector", "limit": 100},
                       headers={"Authorization": f"Bearer {endpoint.api_key}"}).raise_for_status().json()["objects"]
    semantic = {o["properties"]["uri"]: np.array(o["vectors"]["semantic"]) for o in stored}
    for hit in hits:
        vector = semantic[hit["uri"]]
        cosine = float(text_vector @ vector / np.linalg.norm(text_vector) / np.linalg.norm(vector))
        assert hit["distance"] == pytest.approx(1 - cosine, abs=1e-4)


def test_a_role_on_the_deeplens_collections_is_all_deeplens_needs(modules_url, tmp_path):
    """Weaviate with RBAC: DeepLens's user with no role is refused with what to grant; with the
    role of docs/operators.md (collections and data on DeepLens*) it scans, searches and groups,
    including the module check's probe collection."""
    admin_key, deeplens_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    rbac = {"AUTHENTICATION_APIKEY_ALLOWED_KEYS": f"{admin_key},{deeplens_key}",
            "AUTHENTICATION_APIKEY_USERS": "admin,deeplens",
            "AUTHORIZATION_RBAC_ENABLED": "true", "AUTHORIZATION_RBAC_ROOT_USERS": "admin"}
    with running_weaviate(tmp_path / "rbac", modules_url, env=rbac, api_key=admin_key) as own:
        admin = own.endpoint
        env = {"DEEPLENS_DATA_DIR": str(tmp_path / "data"), "DEEPLENS_WEAVIATE_URL": admin.url,
               "DEEPLENS_WEAVIATE_GRPC_PORT": str(admin.grpc_port), "DEEPLENS_WEAVIATE_API_KEY": deeplens_key,
               "DEEPLENS_MODULES_URL": modules_url}
        refused = run(env, "stats", ok=False)
        assert refused.exit_code == 1 and "insufficient permissions" in refused.output
        assert "DeepLens*" in refused.output and "docs/operators.md" in refused.output

        with weaviate_client(admin) as client:  # as in docs/operators.md, section Authorization
            client.roles.create(role_name="deeplens", permissions=[
                *Permissions.collections(collection="DeepLens*", create_collection=True, read_config=True,
                                         update_config=True, delete_collection=True),
                *Permissions.data(collection="DeepLens*", create=True, read=True, update=True, delete=True),
            ])
            client.users.db.assign_roles(user_id="deeplens", role_names=["deeplens"])
        photos = tmp_path / "photos"
        photos.mkdir()
        samples = sample_photos()
        for name in ("coffee", "rocket"):
            (photos / f"{name}.jpg").write_bytes(jpeg_bytes(samples[name]))
        (photos / "coffee copy.jpg").write_bytes((photos / "coffee.jpg").read_bytes())
        assert "with modules vectors" in run(env, "schema", "apply").output  # the probe collection too
        run(env, "storage", "add", "photos", str(photos))
        [summary] = run_json(env, "scan", "photos")
        assert (summary["new"], summary["errors"]) == (3, 0)
        assert run_json(env, "search", "--image", str(photos / "rocket.jpg"))["hits"][0]["path"] == "rocket.jpg"
        [group] = run_json(env, "duplicates", "--exact")["groups"]
        assert {m["uri"].rsplit("/", 1)[1] for m in group["members"]} == {"coffee.jpg", "coffee%20copy.jpg"}


def weaviate_client_of(env: dict[str, str]):
    port = int(env["DEEPLENS_WEAVIATE_URL"].rsplit(":", 1)[1])
    return weaviate_client(WeaviateEndpoint("127.0.0.1", port, int(env["DEEPLENS_WEAVIATE_GRPC_PORT"]),
                                            env["DEEPLENS_WEAVIATE_API_KEY"]))


@pytest.mark.older_weaviate
@pytest.mark.slow
# `make test` builds the release first (`deeplens provision --oldest-tested`); run on its own on a
# fresh machine, the test builds it (about ten minutes on 2 cores).
@pytest.mark.timeout(2400)
def test_older_weaviate_release_answers_like_the_pinned_one(env, modules_url, tmp_path):
    """Weaviate 1.35 (built from source by the same provisioning as the pinned one on first use)
    runs both vector modes with the answers the pinned release gives."""
    photos = tmp_path / "photos"
    pinned = answers(env, photos, "modules")
    with running_weaviate(tmp_path / "older", modules_url, version=OLDEST_TESTED_WEAVIATE) as own:
        endpoint = own.endpoint
        older_env = {**env, **endpoint.env()}
        with weaviate_client(endpoint) as client:
            assert client.get_meta()["version"] == OLDEST_TESTED_WEAVIATE
        assert_same(answers(older_env, photos, "modules"), pinned)
        delete_deeplens_collections(endpoint)
        assert_same(answers(older_env, photos, "precomputed"), pinned)
