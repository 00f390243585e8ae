"""Opening a location: its URL, options and credentials become an fsspec file system and a root."""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.utils import infer_storage_options

from deeplens.connectors.storage import protocols
from deeplens.connectors.storage.errors import (
    StorageConfigError,
    StorageError,
    StorageUnreachableError,
    chain,
    class_names,
    inline_secrets,
    safe_url,
    storage_error,
)
from deeplens.connectors.storage.protocols import Protocol


def open_location(
    url: str, options: Mapping[str, Any] | None = None, credentials_env: Mapping[str, str] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system of a location and the root path inside it.

    Options in the URL (host, port, user) are merged with ``options``; ``options`` win.
    """
    return _open(_resolve(url, options or {}, credentials_env or {}))


def check_reachable(
    url: str,
    options: Mapping[str, Any] | None = None,
    credentials_env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open the location and read its root once; raise StorageError with the cause and the fix.

    Distinguishes: unknown protocol or missing extra, missing credential env var, unreachable
    host/port (refused, DNS, timeout), rejected credentials, missing bucket/share/container/path.
    Returns what ``open_location`` returns.
    """
    target = _resolve(url, options or {}, credentials_env or {})
    if target.endpoint is not None:
        _probe_tcp(target, timeout)
    if target.protocol.login is not None:
        host, port = target.endpoint  # type: ignore[misc]
        try:
            target.protocol.login(host, port, target.storage_options, timeout)
        except Exception as exc:  # noqa: BLE001 - every library raises its own types
            raise _error(exc, target, None, "logging in") from exc
    fs, root = _open(target)
    try:
        if target.protocol.check_root is not None:
            target.protocol.check_root(fs, root)
        else:
            fs.ls(root, detail=False)
            if not fs.isdir(root):
                raise StorageConfigError(
                    f"{target.display}: {root!r} is a file, not a folder. A location is a folder "
                    "(or bucket/share/container); point the URL at the folder that holds the images."
                )
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _error(exc, target, root, "reading the location root") from exc
    return fs, root


@dataclass(frozen=True)
class _Target:
    """What we know about a location while opening it; never printed with its secrets."""

    url: str
    protocol: Protocol
    scheme: str  # as written in the URL (https stays https)
    storage_options: dict[str, Any]
    secrets: tuple[str, ...]
    env_names: tuple[str, ...]
    endpoint: tuple[str, int] | None  # what the TCP probe connects to
    display: str  # the URL without user info, for messages

    def __repr__(self) -> str:  # the options hold secrets
        return f"_Target({self.display!r})"


def _resolve(url: str, options: Mapping[str, Any], credentials_env: Mapping[str, str]) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise StorageConfigError("A storage URL is required, e.g. s3://bucket/prefix or /data/images.")
    url = url.strip()
    if "://" in url and urlsplit(url).password:
        raise StorageConfigError(
            f"{safe_url(url)}: the URL holds a password, which would be stored with the location and shown by "
            "`deeplens storage list`. Remove it from the URL and pass it with --credentials-env password=ENV_VAR."
        )
    written, _ = fsspec.core.split_protocol(url)
    scheme = (written or "file").lower()
    protocol = protocols.by_scheme(scheme)
    if protocol is None:
        raise StorageConfigError(
            f"Unknown storage protocol {scheme!r} in {safe_url(url)}. Supported: {', '.join(protocols.SCHEMES)}."
        )
    if protocol.extra is not None:
        module, extra = protocol.extra
        for name, value in protocol.import_env.items():
            os.environ.setdefault(name, value)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise StorageConfigError(
                f"The {scheme}:// protocol needs the optional package {module!r}: pip install 'deeplens[{extra}]'"
            ) from exc

    storage_options = dict(options)
    secrets: list[str] = []
    for option, env_name in credentials_env.items():
        value = os.environ.get(env_name)
        if value is None or value == "":
            raise StorageConfigError(
                f"The credential {option!r} of {safe_url(url)} comes from the environment variable "
                f"{env_name}, which is not set. Set {env_name} in the environment of the process "
                "that reads this location (worker or CLI)."
            )
        _set_dotted(storage_options, option, value)
        secrets.append(value)
    secrets.extend(inline_secrets(storage_options))
    if protocol.server is not None:
        from_url = infer_storage_options(url)
        for key in ("host", "port", "username"):  # never a password: refused above
            if from_url.get(key) not in (None, "") and key not in storage_options:
                storage_options[key] = from_url[key]
        if not storage_options.get("host"):
            raise StorageConfigError(f"{safe_url(url)} names no host: use {protocol.name}://host[:port]/path.")
        storage_options["port"] = int(storage_options.get("port") or protocol.default_port)
        if "timeout" in storage_options:  # `storage add --option timeout=N` gives text
            try:
                storage_options["timeout"] = float(storage_options["timeout"])
            except (TypeError, ValueError):
                raise StorageConfigError(
                    f"{safe_url(url)}: the option timeout={storage_options['timeout']!r} is not a number of seconds."
                ) from None
    return _Target(
        url=url,
        protocol=protocol,
        scheme=scheme,
        storage_options=storage_options,
        secrets=tuple(s for s in secrets if s),
        env_names=tuple(credentials_env.values()),
        endpoint=_endpoint(protocol, url, storage_options),
        display=safe_url(url),
    )


def _open(target: _Target) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, root = target.protocol.open(target.scheme, target.url, dict(target.storage_options))
    except Exception as exc:  # noqa: BLE001
        raise _error(exc, target, None, "connecting") from exc
    if not target.protocol.url_list:
        root = root.rstrip("/") or "/"
    if target.protocol.top_level is not None and not root.strip("/"):
        hint = target.protocol.top_level_hint.format(scheme=target.scheme)
        raise StorageConfigError(f"{target.display} names no {hint}.")
    return fs, root


def _endpoint(protocol: Protocol, url: str, options: Mapping[str, Any]) -> tuple[str, int] | None:
    """The host and port a TCP probe should reach, where one is known without a cloud default."""
    if protocol.server is not None:
        return str(options["host"]), options["port"]
    endpoint = protocol.endpoint(url, options) if protocol.endpoint is not None else None
    if not endpoint:
        return None
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _probe_tcp(target: _Target, timeout: float) -> None:
    host, port = target.endpoint  # type: ignore[misc]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror as exc:
        raise StorageUnreachableError(
            f"{target.display}: the host name {host!r} could not be resolved (DNS: {exc.strerror}). "
            "Check the host name in the URL or options."
        ) from exc
    except (TimeoutError, socket.timeout) as exc:
        raise StorageUnreachableError(
            f"{target.display}: the server {host}:{port} is unreachable: no answer within {timeout:.0f}s. "
            "Check host and port, and that no firewall drops the connection."
        ) from exc
    except OSError as exc:
        raise StorageUnreachableError(
            f"{target.display}: the server {host}:{port} is unreachable: "
            f"{exc.strerror or exc}. Check that the server runs and that host and port are right."
        ) from exc


def _set_dotted(options: dict[str, Any], dotted: str, value: str) -> None:
    """``client_kwargs.headers.Authorization`` sets options["client_kwargs"]["headers"][...]."""
    *parents, leaf = dotted.split(".")
    node = options
    for name in parents:
        child = node.get(name)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[name] = child
        node = child
    node[leaf] = value


def _error(exc: BaseException, target: _Target, path: str | None, action: str) -> StorageError:
    where = target.display if path is None or path in target.display else f"{target.display} ({path})"
    return storage_error(
        exc,
        where=where,
        path=path,
        action=action,
        secrets=target.secrets,
        missing=_missing(target.protocol, path, exc),
        host=f"{target.endpoint[0]}:{target.endpoint[1]}" if target.endpoint else None,
        env_names=target.env_names,
    )


def _missing(protocol: Protocol, path: str | None, exc: BaseException) -> str | None:
    """What does not exist, where the protocol can tell better than "the path"."""
    if protocol.url_list:
        return "the URL list"
    if protocol.top_level is None:
        return None
    top, *below = (path or "").strip("/").split("/")
    said = " ".join(f"{' '.join(class_names(e))} {e}" for e in chain(exc)).lower()
    return f"the {protocol.top_level} {top!r}" if not below or protocol.top_level_gone in said else None
