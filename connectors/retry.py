"""Retries with exponential backoff for transient database and module-server errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")
TRANSIENT_HTTP = (httpx.TransportError, httpx.HTTPStatusError)


def retry(call: Callable[[], T], what: str, attempts: int = 4, errors: tuple = TRANSIENT_HTTP, base_delay: float = 0.5) -> T:
    for attempt in range(attempts):
        try:
            return call()
        except errors as exc:
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code < 500:
                raise  # a 4xx will not get better by asking again
            if attempt == attempts - 1:
                raise RuntimeError(f"{what} failed after {attempts} attempts: {exc}") from exc
            time.sleep(base_delay * 2**attempt)
    raise AssertionError("unreachable")
