"""Reading objects: whole, or only their first bytes, with retries of transient failures."""

from __future__ import annotations

import logging
import time

import fsspec

from deeplens.connectors.storage import protocols
from deeplens.connectors.storage.errors import cause_of, classify, fs_error, fs_secrets, scrub

log = logging.getLogger(__name__)


def read_bytes(fs: fsspec.AbstractFileSystem, path: str, retries: int = 3, *, backoff_s: float = 0.5) -> bytes:
    """The bytes of one object.

    Transient failures (connection reset or refused, timeouts, HTTP/S3 5xx and throttling) are
    retried ``retries`` times with exponential backoff (0.5 s, 1 s, 2 s, ...); missing files,
    denied permissions and rejected credentials fail at once. Raises StorageError naming the path.
    """
    return _read(fs, path, None, retries, backoff_s)


def read_head(
    fs: fsspec.AbstractFileSystem, fs_path: str, n: int, retries: int = 3, *, backoff_s: float = 0.5
) -> bytes:
    """The first ``n`` bytes of one object (all of it if it is shorter), in one ranged read: the
    rest is not transferred. Retries and errors as ``read_bytes``.
    """
    if n < 1:
        raise ValueError(f"read_head needs n >= 1, not {n}")
    # A server that ignores the range sends the whole object.
    return _read(fs, fs_path, n, retries, backoff_s)[:n]


def _read(fs: fsspec.AbstractFileSystem, path: str, length: int | None, retries: int, backoff_s: float) -> bytes:
    attempt = 0
    while True:
        try:
            if attempt:
                protocols.reconnect(fs)  # a connection that dropped fails every request on it
            if length is None:
                return fs.cat_file(path)
            return fs.cat_file(path, start=0, end=length)
        except Exception as exc:  # noqa: BLE001 - every library raises its own types
            kind, _ = classify(exc)
            if kind == "range" and length is not None:
                # Stores answer a range beyond the end of a zero-byte object with 416.
                length = None
                continue
            if kind in ("unreachable", "transient") and attempt < retries:
                delay = backoff_s * 2**attempt
                log.warning("Reading %s failed (%s); retry %d of %d in %.1fs",
                            path, scrub(cause_of(exc), fs_secrets(fs)), attempt + 1, retries, delay)
                time.sleep(delay)
                attempt += 1
                continue
            raise fs_error(exc, fs, path, "reading", attempts=attempt + 1) from exc
