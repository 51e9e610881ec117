"""What the API backends share: per-sample seeds, error classification, and running a coroutine
from synchronous code whether or not an event loop is already running (a notebook cell)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from workbench.backends.base import BackendError
from workbench.secrets import scrub_text

T = TypeVar("T")

# HTTP statuses worth retrying: timeouts, conflicts, rate limits, server errors, overload (529).
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


def derive_seed(seed: int, index: int, count: int = 1) -> int:
    """The API seed of sample `index` of a run (or of a request for `count` choices starting there).

    A hash, not seed + index, so runs with neighbouring seeds never share a sample's seed.
    """
    digest = hashlib.sha256(f"workbench-api-seed:{seed}:{index}:{count}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if the server said."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify_sdk_error(exc: BaseException, sdk: Any, what: str, secrets: list[str | None],
                       timeout_s: float, fix_hint: str) -> BackendError:
    """Turn an openai/anthropic SDK exception (both share one shape) into a classified BackendError.

    Messages pass through `scrub_text`: servers echo parts of a wrong key back in auth errors.
    """
    def clean(message: str) -> str:
        return scrub_text(message, secrets)

    if isinstance(exc, sdk.APITimeoutError):
        return BackendError(f"{what}: no reply within {timeout_s:g} s", "retry")
    if isinstance(exc, sdk.APIConnectionError):
        return BackendError(f"{what}: connection failed or dropped ({clean(str(exc.__cause__ or exc))})", "retry")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        detail = clean(_error_detail(exc))
        if status == 429:
            return BackendError(f"{what}: rate limited (429) {detail}", "rate_limited",
                                retry_after_seconds(exc.response.headers))
        if status in RETRY_STATUSES:
            return BackendError(f"{what}: server error {status} {detail}", "retry",
                                retry_after_seconds(exc.response.headers))
        if status in (401, 403):
            return BackendError(f"{what}: authentication failed ({status}) {detail}; {fix_hint}", "fatal")
        return BackendError(f"{what}: the server refused the request ({status}) {detail}", "fatal")
    if isinstance(exc, (json.JSONDecodeError, getattr(sdk, "APIResponseValidationError", ()), KeyError,
                        TypeError, ValueError, AttributeError)):
        # A 200 whose body is not the documented shape: a proxy or server glitch, worth one more try.
        return BackendError(f"{what}: malformed reply ({clean(type(exc).__name__ + ': ' + str(exc))[:300]})", "retry")
    return BackendError(f"{what}: {clean(type(exc).__name__ + ': ' + str(exc))}", "fatal")


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        return f"({str(message)[:300]})"
    return f"({str(getattr(exc, 'message', exc))[:300]})"


def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code.

    Inside a running event loop (a Jupyter cell) `asyncio.run` is not allowed, so the coroutine
    then runs on its own loop in a worker thread and this call waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-async") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()  # type: ignore[arg-type]
