"""What the API backends share: per-sample seeds, timeouts, error classification, checking the
shape of a reply, and running a coroutine from synchronous code whether or not an event loop is
already running (a notebook cell)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from workbench.backends.base import BackendError
from workbench.registry import ModelSpec
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
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if the server said.

    A value that is no time at all (inf, 1e400, nan) counts as too long to wait: math.inf, which is
    above any `max_retry_after_s`, so the run stops with a message instead of waiting forever.
    """
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return _wait(float(millis) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return _wait(float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return _wait(when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _wait(seconds: float) -> float:
    """A wait the server asked for: at least 0; math.inf when it is not a finite number."""
    return max(0.0, seconds) if math.isfinite(seconds) else math.inf


class NoReply(BackendError):
    """A request that got no reply at all (a timeout, a refused or dropped connection): retried, but only
    until the model's `dead_server_s` has passed, since a server that is down never answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "retry")


def client_timeout(spec: ModelSpec) -> Any:
    """The SDK clients' timeouts: connecting, then the longest silence while sending or waiting for the reply."""
    import httpx2

    read = spec.read_timeout_s
    return httpx2.Timeout(connect=spec.connect_timeout_s, read=read, write=read, pool=read)


def classify_sdk_error(exc: BaseException, sdk: Any, what: str, secrets: list[str | None],
                       spec: ModelSpec, fix_hint: str) -> BackendError:
    """Turn an openai/anthropic SDK exception (both share one shape) into a classified BackendError.

    Messages pass through `scrub_text` (servers echo parts of a wrong key back in auth errors) and
    are made one line (a server's text may hold line breaks).
    """
    import httpx2

    def clean(message: str) -> str:
        return " ".join(scrub_text(message, secrets).split())

    if isinstance(exc, sdk.APITimeoutError):
        if isinstance(exc.__cause__, httpx2.ConnectTimeout):
            return NoReply(f"{what}: could not connect within {spec.connect_timeout_s:g} s (connect_timeout_s)")
        return NoReply(f"{what}: no reply within {spec.read_timeout_s:g} s (read_timeout_s)")
    if isinstance(exc, sdk.APIConnectionError):
        return NoReply(f"{what}: connection failed or dropped ({clean(str(exc.__cause__ or exc))})")
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


# -- the shape of a reply ---------------------------------------------------------------------------
# A server or proxy can send valid JSON of the wrong shape. Every field a Generation takes is checked
# here, so nothing malformed reaches the store; a malformed reply is retried like a server error.


def malformed(where: str, value: Any, expected: str) -> BackendError:
    """The retryable error for a reply field of the wrong type, naming the field ("choices[0].text")."""
    return BackendError(f"malformed reply: {where} is {json_kind(value)} (expected {expected})", "retry")


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("an object", "a string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number" if math.isfinite(value) else f"a non-finite number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def expect_object(value: Any, where: str, optional: bool = False) -> dict[str, Any]:
    """`value` if it is a JSON object (or, when optional, null: then {})."""
    if optional and value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed(where, value, "an object")
    return value


def expect_list(value: Any, where: str, optional: bool = False) -> list[Any]:
    """`value` if it is a JSON array (or, when optional, null: then [])."""
    if optional and value is None:
        return []
    if not isinstance(value, list):
        raise malformed(where, value, "an array")
    return value


def expect_str(value: Any, where: str, optional: bool = False) -> Any:
    """`value` if it is a string (or, when optional, null)."""
    if not (isinstance(value, str) or (optional and value is None)):
        raise malformed(where, value, "a string" + (" or null" if optional else ""))
    return value


def expect_count(value: Any, where: str) -> int | None:
    """A token count: a whole number of at least 0, or null."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise malformed(where, value, "a whole number of at least 0 or null")
    return value


def expect_logprob(value: Any, where: str) -> float:
    """A finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise malformed(where, value, "a finite number")
    return float(value)


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
