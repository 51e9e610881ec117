"""The one retry policy for every model call, local or remote.

Backends only classify their errors (`BackendError.kind`: retry, rate_limited, fatal); this
decides whether to try again, how long to wait (the server's Retry-After when given, else
exponential backoff with jitter) and records each failure as a run event when there is a run.
Three drivers step through `Retrying`, so the rules live in one place: `call_with_retries` (a
synchronous model call: scoring, top-k, batch jobs), the local generation loop in `core.py`
(which skips samples already drawn), and the asyncio path in `remote.py` (one per request).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from workbench.backends.base import BackendError
from workbench.errors import WorkbenchError

T = TypeVar("T")

MAX_RETRIES = 6
# Exponential backoff between attempts (seconds), jittered by 0.5x-1.5x; Retry-After wins when given.
BACKOFF_START_S = 1.0
MAX_BACKOFF_S = 60.0

EventSink = Callable[[dict[str, Any]], None]


def backoff_seconds(error: BackendError, attempt: int) -> float:
    """Seconds before the next attempt: the server's Retry-After when given, else exponential, with jitter."""
    if error.retry_after is not None:
        return error.retry_after + random.uniform(0, 0.25)
    base = min(MAX_BACKOFF_S, BACKOFF_START_S * 2.0 ** attempt)
    return base * (0.5 + random.random())


class Retrying:
    """The attempts of one call: loop over `attempts()`; on a BackendError, `failed(...)` gives the wait or raises."""

    def __init__(self, backend_name: str, record: EventSink | None = None, max_retries: int = MAX_RETRIES) -> None:
        self.backend_name = backend_name
        self.record = record
        self.max_retries = max_retries

    def attempts(self) -> Iterator[int]:
        """Attempt numbers 0..max_retries."""
        yield from range(self.max_retries + 1)

    def failed(self, error: BackendError, attempt: int, sample_indices: list[int] | None = None) -> float:
        """Record a failed attempt; the seconds to wait before the next one, or a WorkbenchError when it is final."""
        last = error.kind == "fatal" or attempt >= self.max_retries
        wait = None if last else backoff_seconds(error, attempt)
        if self.record is not None:
            self.record({"kind": error.kind, "attempt": attempt, "wait_s": wait, "message": str(error),
                         "sample_indices": sample_indices})
        if last:
            tries = "" if error.kind == "fatal" else f" after {attempt + 1} attempts"
            raise WorkbenchError(f"{self.backend_name} backend failed{tries}: {error}")
        return wait or 0.0

    def short_reply(self, attempt: int, asked: int, got: int, pending: list[int]) -> None:
        """Record a reply with fewer choices than asked for (the rest are asked for again)."""
        if self.record is not None:
            self.record({"kind": "short_choices", "attempt": attempt, "sample_indices": pending,
                         "message": f"asked for {asked} choices, got {got}; asking again"})

    def gave_up(self, pending: list[int]) -> WorkbenchError:
        """The error when samples never came back however often they were asked for."""
        return WorkbenchError(f"{self.backend_name} backend: samples {pending} never came back after "
                              f"{self.max_retries + 1} requests")


def call_with_retries(call: Callable[[], T], retrying: Retrying) -> T:
    """Run a synchronous model call (score, top-k, ...) under the retry policy."""
    for attempt in retrying.attempts():
        try:
            return call()
        except BackendError as exc:
            time.sleep(retrying.failed(exc, attempt))
    raise AssertionError("unreachable: the last failed attempt raises")
