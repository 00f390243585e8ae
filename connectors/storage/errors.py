"""StorageError and its kinds, and turning the exceptions of every storage library into them.

Libraries raise their own types and wrap each other's (s3fs turns a botocore
SignatureDoesNotMatch into a bare PermissionError), so an exception is classified by its whole
chain: class names, store error codes, HTTP statuses and errnos. Messages say what went wrong
and what to do next, and never hold a secret.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fsspec

from deeplens.connectors.storage import protocols


class StorageError(Exception):
    """A storage location cannot be used; the message says why and what to do next."""


class StorageConfigError(StorageError):
    """The location itself is wrong: unknown protocol, missing env var, missing extra, bad URL."""


class StorageUnreachableError(StorageError):
    """The server does not answer: connection refused, unknown host name, timeout."""


class StorageTransientError(StorageError):
    """The server failed in a way that may pass: connection reset, timeout, 5xx, throttling."""


class StorageAuthError(StorageError):
    """The server rejected the credentials."""


class StorageNotFoundError(StorageError):
    """The bucket, share, container, folder or file does not exist."""


class StoragePermissionError(StorageError):
    """The credentials are accepted but may not read this path."""


# --------------------------------------------------------------------------------------------
# Classifying


def class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


_AUTH_CODES = {
    "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
    "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AuthenticationFailed", "InvalidSecurity",
}
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "ContainerNotFound", "BlobNotFound", "ResourceNotFound", "404"}
_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
    "RequestTimeTooSkewed", "ServerBusy", "OperationTimedOut", "500", "502", "503", "504",
}

_AUTH_CLASSES = {
    "AuthenticationException", "BadAuthenticationType", "PasswordRequiredException", "LogonFailure",
    "SMBAuthenticationError", "ClientAuthenticationError", "AccountDisabled", "PasswordExpired",
    "AccountRestriction", "NoCredentialsError", "PartialCredentialsError",
}
_NOT_FOUND_CLASSES = {"ResourceNotFoundError", "ObjectNameNotFound", "ObjectPathNotFound", "FileNotFoundError",
                      "NoSuchFile", "BadNetworkName"}
_UNREACHABLE_CLASSES = {"ConnectionRefusedError", "NoValidConnectionsError", "EndpointConnectionError",
                        "ClientConnectorError", "ServiceRequestError", "ConnectTimeoutError", "ConnectTimeout",
                        "gaierror"}
_TRANSIENT_CLASSES = {"ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError", "TimeoutError",
                      "ServerDisconnectedError", "ClientPayloadError", "ClientOSError", "ServerTimeoutError",
                      "ReadTimeoutError", "IncompleteReadError", "ResponseStreamingError", "SMBConnectionClosed",
                      "EOFError", "ServiceResponseError", "IncompleteRead"}

# When a chain holds several findings, the most specific one wins.
_PRIORITY = ("auth", "not_found", "range", "unreachable", "transient", "permission")

# paramiko's words for a private key it cannot load, mostly a wrong passphrase.
_BAD_KEY = re.compile(r"invalid key|encrypted|decrypt|passphrase|could not deserialize", re.IGNORECASE)


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, cause): kind is auth, not_found, range, unreachable, transient, permission or other."""
    found: dict[str, str] = {}
    for e in chain(exc):
        kind = _kind_of(e)
        if kind is not None:
            bad_share = "BadNetworkName" in class_names(e)
            found.setdefault(kind, "the share does not exist on this server" if bad_share else cause_of(e))
    for kind in _PRIORITY:
        if kind in found:
            return kind, found[kind]
    return "other", cause_of(exc)


def _kind_of(e: BaseException) -> str | None:
    names = class_names(e)
    code = _error_code(e)
    text = str(e)
    # An HTTP status, where the error carries one (SMB errors carry 32-bit NTSTATUS codes instead).
    statuses = (getattr(e, name, None) for name in ("status", "status_code", "code"))
    status = next((v for v in statuses if isinstance(v, int) and 100 <= v <= 599), None)
    err_no = getattr(e, "errno", None)
    if code == "InvalidRange" or status == 416 or "range is not satisfiable" in text:
        return "range"
    if (names & _AUTH_CLASSES or code in _AUTH_CODES or status == 401
            or "failed to authenticate" in text  # Azure/Azurite: a wrong account key
            or ("SSHException" in names and _BAD_KEY.search(text))):
        return "auth"
    if names & _NOT_FOUND_CLASSES or code in _NOT_FOUND_CODES or status == 404 or err_no == errno.ENOENT:
        return "not_found"
    if (names & _UNREACHABLE_CLASSES or err_no in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
            or (isinstance(e, ValueError) and "Failed to connect to" in text)
            # smbprotocol, on a server that stopped answering requests (protocols._bound_smb_requests)
            or ("SMBException" in names and "exceeded while waiting for a message id" in text)
            # paramiko, when the server accepted the connection but never answered the handshake
            or ("SSHException" in names and text == "No existing session")):
        return "unreachable"
    if (names & _TRANSIENT_CLASSES or code in _TRANSIENT_CODES
            or (status is not None and (status >= 500 or status in (408, 429)))
            # EBADF: a socket that another thread closed when its connection dropped (smbprotocol)
            or err_no in (errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.ECONNABORTED, errno.EBADF)
            or ("SSHException" in names and any(w in text.lower() for w in ("closed", "dropped", "eof", "reset")))
            or text == "Socket is closed"  # paramiko, on a connection that was closed under it
            # smbprotocol, on a connection that stopped answering while threads sent requests on it
            or ("SMBException" in names and "credits are available" in text)):
        return "transient"
    if names & {"AccessDenied", "PermissionError"} or code in {"AccessDenied", "AuthorizationFailure", "403"} \
            or status == 403 or err_no in (errno.EACCES, errno.EPERM):
        return "permission"
    return None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    code = getattr(exc, "error_code", None)  # azure HttpResponseError
    return str(code) if code else None


def cause_of(exc: BaseException) -> str:
    """The first line of an exception's message, made readable and short."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0].rstrip(".")
    if "SSHException" in class_names(exc) and _BAD_KEY.search(text):
        text = f"the private key could not be loaded ({text}): wrong passphrase, or not a private key file"
    code = next((line for line in lines[1:] if line.startswith("ErrorCode:")), None)  # Azure
    if code:
        text = f"{text} ({code})"
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------
# Messages


def storage_error(
    exc: BaseException,
    *,
    where: str,
    path: str | None,
    action: str,
    secrets: Iterable[str],
    missing: str | None = None,
    host: str | None = None,
    env_names: tuple[str, ...] = (),
    attempts: int = 1,
) -> StorageError:
    """The StorageError for ``exc``, raised while ``action`` on ``path`` of ``where``.

    ``missing`` names what does not exist if the store says so (default: the path);
    ``host`` is the server's host:port; ``env_names`` the variables the credentials came from.
    """
    kind, cause = classify(exc)
    env_hint = (
        f" (from the environment variable{'s' if len(env_names) > 1 else ''} {', '.join(env_names)})"
        if env_names else ""
    )
    retried = f" after {attempts} attempts" if attempts > 1 else ""
    if kind == "auth":
        err: StorageError = StorageAuthError(
            f"{where}: authentication failed{' at ' + host if host else ''}: {cause}. Check the user name or "
            f"access key, and the password, key file, passphrase or secret{env_hint}."
        )
    elif kind == "not_found":
        detail = "" if path and cause.strip("/") in path else f" ({cause})"
        if action == "reading":
            message = f"{where}: the file does not exist{detail}; deleted or moved since it was listed?"
        else:
            what = missing or (f"the path {path!r}" if path else "the location")
            message = f"{where}: {what} does not exist{detail}. Check the URL; create it first if needed."
        err = StorageNotFoundError(message)
    elif kind == "unreachable":
        err = StorageUnreachableError(
            f"{where}: the server{' ' + host if host else ''} is unreachable{retried}: {cause}. "
            "Check that the server runs and that host and port are right."
        )
    elif kind == "permission":
        err = StoragePermissionError(
            f"{where}: permission denied while {action}: {cause}. The credentials{env_hint} are not allowed "
            "to read this path; grant read and list rights, or use other credentials."
        )
    elif kind == "transient":
        err = StorageTransientError(f"{where}: {action} failed{retried} with a temporary error: {cause}. Try again later.")
    else:
        err = StorageError(f"{where}: {action} failed: {type(exc).__name__}: {cause}")
    return type(err)(scrub(str(err), secrets))


def fs_error(
    exc: BaseException, fs: fsspec.AbstractFileSystem, path: str, action: str, attempts: int = 1
) -> StorageError:
    """The StorageError for ``exc``, raised while ``action`` on ``path`` of an open file system."""
    return storage_error(
        exc, where=protocols.uri(fs, path), path=path, action=action, secrets=fs_secrets(fs), attempts=attempts
    )


# --------------------------------------------------------------------------------------------
# Secrets

# Option names whose values are secrets, for every protocol alike: options nest (client_kwargs)
# and a name means a secret wherever it appears (s3 and gs ``token``, az ``sas_token``, ...).
_SECRET_OPTION = re.compile(r"secret|password|passphrase|token|_key$|connection_string|sas|credential", re.IGNORECASE)
# gcsfs ``token`` values that name a way to log in rather than hold a secret.
_NOT_SECRET_VALUES = {"anon", "google_default", "cloud", "cache", "browser"}


def inline_secrets(options: Mapping[str, Any]) -> list[str]:
    """Secret-looking values written straight into the options, to scrub them from messages too."""
    found = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found.extend(inline_secrets(value))
        elif (isinstance(value, str) and len(value) >= 4 and _SECRET_OPTION.search(name)
              and name != "key_filename" and value not in _NOT_SECRET_VALUES):
            found.append(value)
    return found


def fs_secrets(fs: fsspec.AbstractFileSystem) -> list[str]:
    """The secrets among the options an open file system was made with."""
    return inline_secrets(getattr(fs, "storage_options", {}) or {})


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def safe_url(url: str) -> str:
    """The URL without a password in its user info."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)
