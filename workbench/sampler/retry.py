"""The one retry policy for every model call, local or remote.

Backends only classify their errors (`BackendError.kind`: retry, rate_limited, fatal); this
decides whether to try again, how long to wait (the server's Retry-After when given, else
exponential backoff with jitter) and records each failure as a run event when there is a run.
A server cannot stall a run: a Retry-After longer than `max_retry_after_s` stops it with the time
to come back, and a request that gets no reply at all stops it once `dead_server_s` has passed.
Three drivers step through `Retrying`, so the rules live in one place: `call_with_retries` (a
synchronous model call: scoring, top-k, batch jobs), the local generation loop in `core.py`
(which skips samples already drawn), and the asyncio path in `remote.py` (one per request).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from workbench.backends.api_common import NoReply
from workbench.backends.base import BackendError
from workbench.errors import WorkbenchError

T = TypeVar("T")

MAX_RETRIES = 6
# Exponential backoff between attempts (seconds), jittered by 0.5x-1.5x; Retry-After wins when given.
BACKOFF_START_S = 1.0
MAX_BACKOFF_S = 60.0
# The registry's defaults (ModelSpec.max_retry_after_s), for calls made without a model's settings.
MAX_RETRY_AFTER_S = 60.0

EventSink = Callable[[dict[str, Any]], None]


def backoff_seconds(error: BackendError, attempt: int, max_retry_after_s: float = MAX_RETRY_AFTER_S) -> float:
    """Seconds before the next attempt: the server's Retry-After when given (never more than the cap), else
    exponential, with jitter."""
    if error.retry_after is not None:
        return min(max_retry_after_s, error.retry_after + random.uniform(0, 0.25))
    base = min(MAX_BACKOFF_S, BACKOFF_START_S * 2.0 ** attempt)
    return base * (0.5 + random.random())


class Retrying:
    """The attempts of one call: loop over `attempts()`; on a BackendError, `failed(...)` gives the wait or raises.

    `server` names the endpoint in messages; `dead_server_s` (None: no limit) bounds how long one
    request may go on getting no reply at all, counted from the send time of the first such attempt.
    """

    def __init__(self, backend_name: str, record: EventSink | None = None, max_retries: int = MAX_RETRIES,
                 max_retry_after_s: float = MAX_RETRY_AFTER_S, dead_server_s: float | None = None,
                 server: str | None = None) -> None:
        self.backend_name = backend_name
        self.record = record
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self.dead_server_s = dead_server_s
        self.endpoint = server
        self.server = server or f"the {backend_name} server"
        self._no_reply_since: float | None = None

    def attempts(self) -> Iterator[int]:
        """Attempt numbers 0..max_retries."""
        yield from range(self.max_retries + 1)

    def failed(self, error: BackendError, attempt: int, sample_indices: list[int] | None = None,
               sent_at: float | None = None) -> float:
        """Record a failed attempt; the seconds to wait before the next one, or a WorkbenchError when it is final.

        `sent_at` (time.monotonic() when the attempt was sent) lets a run of no-reply failures be timed.
        """
        if error.kind != "fatal" and error.retry_after is not None and error.retry_after > self.max_retry_after_s:
            raise self._stop(error, attempt, sample_indices, "retry_after_too_long", self._retry_after_message(error))
        if isinstance(error, NoReply) and self.dead_server_s is not None:
            since = self._no_reply_since = self._no_reply_since or sent_at or time.monotonic()
            if time.monotonic() - since >= self.dead_server_s:
                raise self._stop(error, attempt, sample_indices, "no_reply", (
                    f"no reply from {self.server} within {self.dead_server_s:g} s ({error}); is the server up? "
                    "stored samples are kept; run the same command to continue (a model that is slow to answer "
                    "needs larger read_timeout_s and dead_server_s in its registry entry)"))
        else:
            self._no_reply_since = None
        last = error.kind == "fatal" or attempt >= self.max_retries
        wait = None if last else backoff_seconds(error, attempt, self.max_retry_after_s)
        if self.record is not None:
            self.record({"kind": error.kind, "attempt": attempt, "wait_s": wait, "message": str(error),
                         "sample_indices": sample_indices})
        if last:
            if error.kind == "fatal":  # the server refused: trying again would not help, the error says why
                raise WorkbenchError(f"{self.backend_name} backend failed: {error}")
            raise WorkbenchError(f"{self.backend_name} backend failed after {attempt + 1} attempts: {error}; "
                                 f"{self._next_step('malformed reply' in str(error))}")
        return wait or 0.0

    def _stop(self, error: BackendError, attempt: int, sample_indices: list[int] | None, kind: str,
              message: str) -> WorkbenchError:
        """Record why the run stops now, without retrying; the error to raise."""
        if self.record is not None:
            self.record({"kind": kind, "attempt": attempt, "wait_s": None, "message": message,
                         "sample_indices": sample_indices})
        return WorkbenchError(f"{self.backend_name} backend: {message}")

    def _retry_after_message(self, error: BackendError) -> str:
        seconds = error.retry_after or 0.0
        until = time_after(seconds)
        if until is None:  # inf, or so far ahead no calendar holds it: the server's value is not a real time
            return (f"{self.server} asks to wait an unreasonable time (Retry-After {seconds:g} s), more than "
                    f"max_retry_after_s={self.max_retry_after_s:g} ({error}); stored samples are kept; run the same "
                    "command later, when the server accepts requests again")
        shown = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:g}"
        return (f"{self.server} asks to wait {shown} s (until {until:%Y-%m-%d %H:%M} UTC), more than "
                f"max_retry_after_s={self.max_retry_after_s:g} ({error}); stored samples are kept; run the same "
                "command after that time (or raise max_retry_after_s in the model's registry entry)")

    def _next_step(self, malformed: bool = False) -> str:
        """What to do once retries have run out: where to look, and that rerunning continues the run."""
        check = f"check the server at {self.endpoint}" if self.endpoint else f"check the {self.backend_name} backend"
        if malformed:
            check += " (replies of the wrong shape can mean the wrong api_dialect in the model's registry entry)"
        return f"{check}; stored samples are kept; run the same command to continue"

    def short_reply(self, attempt: int, asked: int, got: int, pending: list[int]) -> None:
        """Record a reply with fewer choices than asked for (the same request is sent again for the rest)."""
        if self.record is not None:
            self.record({"kind": "short_choices", "attempt": attempt, "sample_indices": pending,
                         "message": f"asked for {asked} choices, got {got}; asking the same again for the rest"})

    def one_per_request(self, attempt: int, asked: int, pending: list[int], ignores_n: bool = True) -> None:
        """Record that the rest of a block goes one request per sample (with one seed per sample): the
        server ignores `n` (asked again, it sent the same one choice), or the block never came back whole."""
        why = ("asked for {asked} choices again and got no new one (the server ignores n)" if ignores_n else
               "asked for {asked} choices {tries} times and the missing ones never came back").format(
                   asked=asked, tries=attempt + 1)
        if self.record is not None:
            self.record({"kind": "one_per_request", "attempt": attempt, "sample_indices": pending,
                         "message": f"{why}; asking for the {len(pending)} missing samples one request each "
                                    "(each with its own seed)"})

    def gave_up(self, pending: list[int]) -> WorkbenchError:
        """The error when samples never came back however often they were asked for."""
        return WorkbenchError(f"{self.backend_name} backend: samples {pending} never came back after "
                              f"{self.max_retries + 1} requests; {self._next_step()}")


def time_after(seconds: float) -> datetime | None:
    """The UTC time `seconds` from now, or None when no calendar date holds it (inf, or past the year 9999)."""
    try:
        return datetime.now(UTC) + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return None


def call_with_retries(call: Callable[[], T], retrying: Retrying) -> T:
    """Run a synchronous model call (score, top-k, ...) under the retry policy."""
    for attempt in retrying.attempts():
        try:
            return call()
        except BackendError as exc:
            time.sleep(retrying.failed(exc, attempt))
    raise AssertionError("unreachable: the last failed attempt raises")
