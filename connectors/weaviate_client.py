"""Connecting to the configured Weaviate (embedded, self-hosted or managed) with an error that says what to do.

Credentials: an API key, or OIDC client credentials (weaviate-client's Auth classes), never both;
secrets come from DEEPLENS_* variables or files only. TLS with a private CA: gRPC takes the CA as
channel credentials; weaviate-client's HTTP side trusts only certifi or the SSL_CERT_FILE
environment variable (its httpx clients are built with trust_env; weaviate/config.py,
AdditionalConfig.trust_env), so the process gets a bundle of certifi's roots plus that CA: public
endpoints (an OIDC provider, a module server) stay trusted.

Consistency on a Weaviate cluster whose collections keep several copies of each object
(`--replication-factor`): DeepLens reads and writes at ONE, through `use_collection()`. Weaviate's
defaults are QUORUM for writes and reads by id and ONE for searches (weaviate v1.39.3
adapters/repos/db/index.go:4413-4420, 2602); with two copies QUORUM means both, so one node down
fails every write to a shard with a copy on it. The index is derived from storage and every scan
compares the two again, so a write that reached one copy is enough: Weaviate's asynchronous
replication copies it to the other node once that is back, and until then reads at ONE answer
from the copy that has it. On a single Weaviate (one copy) all levels are the same.

Schema reads are answered by the node asked (SCHEMA_READS): Weaviate proxies `GET /v1/schema[/{class}]`
to the Raft leader unless the `consistency` header says false (default true; weaviate v1.39.3's
swagger, operation schema.objects.get). When the leader had just been killed, such a read waited for
it until the query timeout, so a scan started then hung for ten minutes (tests/test_cluster.py).
DeepLens reads the schema only to learn whether its collections exist and how they are configured,
which every node's copy of the schema answers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import certifi
import grpc
import weaviate
from weaviate.classes.config import ConsistencyLevel
from weaviate.classes.init import AdditionalConfig, Auth, GrpcConfig, Timeout
from weaviate.collections import Collection
from weaviate.exceptions import AuthenticationFailedError, UnexpectedStatusCodeError, WeaviateBaseError

from deeplens.config import Settings

SCHEMA_READS = {"consistency": "false"}  # see the module docstring


class DatabaseUnavailable(RuntimeError):
    pass


def connect(settings: Settings) -> weaviate.WeaviateClient:
    try:
        key, oidc_secret = settings.weaviate_key(), settings.weaviate_oidc_secret()
    except ValueError as exc:  # a secret file that cannot be read
        raise DatabaseUnavailable(str(exc)) from None
    if oidc_secret and (settings.weaviate_api_key or settings.weaviate_api_key_file):
        raise DatabaseUnavailable(
            "Both a Weaviate API key and an OIDC client secret are set; DeepLens sends one. Unset "
            "DEEPLENS_WEAVIATE_API_KEY(_FILE) or DEEPLENS_WEAVIATE_OIDC_CLIENT_SECRET(_FILE)."
        )
    if oidc_secret:
        credentials = Auth.client_credentials(oidc_secret, scope=settings.weaviate_oidc_scope)
    else:
        credentials = Auth.api_key(key) if key else None
    grpc_config = None
    if settings.weaviate_ca_file is not None:
        ca = _read_ca(settings.weaviate_ca_file)
        os.environ["SSL_CERT_FILE"] = str(_bundle_with_public_roots(settings.cache_dir, ca))
        grpc_config = GrpcConfig(credentials=grpc.ssl_channel_credentials(root_certificates=ca))
    grpc_host, grpc_port = settings.weaviate_grpc_address
    try:
        return weaviate.connect_to_custom(
            http_host=settings.weaviate_host,
            http_port=settings.weaviate_port,
            http_secure=settings.weaviate_secure,
            grpc_host=grpc_host,
            grpc_port=grpc_port,
            grpc_secure=settings.weaviate_secure,
            headers={**SCHEMA_READS, **settings.weaviate_headers},
            auth_credentials=credentials,
            additional_config=AdditionalConfig(
                # Grouping a whole collection by content hash takes longer than the 30 s default at 100k images.
                timeout=Timeout(init=30, query=600, insert=120),
                trust_env=settings.weaviate_ca_file is not None,
                grpc_config=grpc_config,
            ),
        )
    except (AuthenticationFailedError, UnexpectedStatusCodeError) as exc:
        if not isinstance(exc, AuthenticationFailedError) and exc.status_code not in (401, 403):
            raise _unreachable(settings, exc) from None
        raise DatabaseUnavailable(_refused(settings, key, oidc_secret, exc)) from None
    except WeaviateBaseError as exc:
        raise _unreachable(settings, exc) from None


def use_collection(client: weaviate.WeaviateClient, name: str) -> Collection:
    """A collection that DeepLens reads and writes at consistency ONE (see the module's docstring)."""
    return client.collections.use(name).with_consistency_level(ConsistencyLevel.ONE)


def _refused(settings: Settings, key: str | None, oidc_secret: str | None, exc: Exception) -> str:
    if oidc_secret:
        return (
            f"Weaviate at {settings.weaviate_url} refused the OIDC client credentials: {str(exc).splitlines()[0]}\n"
            "Check DEEPLENS_WEAVIATE_OIDC_CLIENT_SECRET(_FILE) and DEEPLENS_WEAVIATE_OIDC_SCOPE, and that Weaviate "
            "has OIDC enabled (AUTHENTICATION_OIDC_ENABLED) for that client (AUTHENTICATION_OIDC_CLIENT_ID)."
        )
    sent = "the API key it was given" if key else "a request without an API key"
    return (
        f"Weaviate at {settings.weaviate_url} refused {sent}. Set DEEPLENS_WEAVIATE_API_KEY (or "
        f"--weaviate-api-key, or DEEPLENS_WEAVIATE_API_KEY_FILE) to one of its keys; the embedded stack's key "
        f"is in {settings.weaviate_key_path}."
    )


def _unreachable(settings: Settings, exc: Exception) -> DatabaseUnavailable:
    grpc_host, grpc_port = settings.weaviate_grpc_address
    reason = str(exc).splitlines()[0]
    if "CERTIFICATE_VERIFY_FAILED" in _with_causes(exc):
        fix = ("Its TLS certificate is not signed by a CA this machine trusts: set DEEPLENS_WEAVIATE_CA_FILE "
               "to the CA's PEM file.")
    else:
        fix = ("Start the embedded stack with `deeplens up`, or set DEEPLENS_WEAVIATE_URL (and "
               "DEEPLENS_WEAVIATE_GRPC_HOST / DEEPLENS_WEAVIATE_GRPC_PORT where gRPC is elsewhere) to your Weaviate.")
    return DatabaseUnavailable(
        f"Weaviate is not reachable at {settings.weaviate_url} (gRPC {grpc_host}:{grpc_port}): {reason}\n{fix}"
    )


def _with_causes(exc: BaseException | None) -> str:
    """The exception's text and its causes' (weaviate-client wraps the TLS error of httpx)."""
    texts = []
    while exc is not None and len(texts) < 10:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts).upper()


def _read_ca(path: Path) -> bytes:
    try:
        ca = path.expanduser().read_bytes()
    except OSError as exc:
        raise DatabaseUnavailable(
            f"DEEPLENS_WEAVIATE_CA_FILE={path} cannot be read ({exc.strerror}); point it at a PEM file."
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise DatabaseUnavailable(f"DEEPLENS_WEAVIATE_CA_FILE={path} holds no PEM certificate (-----BEGIN CERTIFICATE-----).")
    return ca


def _bundle_with_public_roots(cache_dir: Path, ca: bytes) -> Path:
    """certifi's roots plus the CA, in a file named by their hash (written once, then reused)."""
    bundle = Path(certifi.where()).read_bytes() + b"\n" + ca
    path = cache_dir / "ca-bundles" / f"{hashlib.sha256(bundle).hexdigest()[:16]}.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(bundle)
        os.replace(temporary, path)  # other processes never read a half-written bundle
    return path
