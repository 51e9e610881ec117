"""The remote path: a run's requests to an API backend go out concurrently, each retried on its own.

The network runs on its own event loop in a worker thread, so this works the same from a
terminal and from a notebook cell (whose loop is already running); the store is only written
from the caller's thread, which owns its connection. A model's `deadline_s` bounds the whole
call; the retry policy (retry.py) bounds each request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from workbench.backends.base import Backend, BackendError, GenerationRequest
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.sampler.retry import Retrying
from workbench.store import Store
from workbench.types import Generation, RenderedInput, SampleSlot

Put = Callable[[Any], None]


class CostBudget:
    """max_cost for one call: a request starts only if its worst case still fits under the limit."""

    def __init__(self, limit: float, spent: float, price: Any, prompt_tokens: int, max_tokens: int) -> None:
        self.limit, self.spent, self.reserved = limit, spent, 0.0
        self.price, self.prompt_tokens, self.max_tokens = price, prompt_tokens, max_tokens

    def _worst(self, choices: int) -> float:
        return (self.prompt_tokens * self.price.input + choices * self.max_tokens * self.price.output) / 1e6

    def reserve(self, choices: int, put: Put, indices: list[int]) -> None:
        """Book a request's worst-case cost, or record a max_cost event and refuse."""
        worst = self._worst(choices)
        if self.spent + self.reserved + worst > self.limit:
            message = (f"max_cost ${self.limit:.4f} would be exceeded (spent ${self.spent:.4f}, in flight "
                       f"${self.reserved:.4f}, next request up to ${worst:.4f}); stored samples are kept, raise "
                       "max_cost to continue")
            put(("event", {"kind": "max_cost", "message": message, "sample_indices": indices}))
            raise WorkbenchError(message)
        self.reserved += worst

    def release(self, choices: int) -> None:
        """Give back a request's reservation (it failed)."""
        self.reserved -= self._worst(choices)

    def settle(self, choices: int, generations: list[Generation]) -> None:
        """Replace a request's reservation with what it really cost."""
        self.release(choices)
        for g in generations:
            share = 1.0 / max(1, int((g.raw or {}).get("choices_in_request") or 1))
            self.spent += ((g.prompt_tokens or 0) * share * self.price.input
                           + (g.completion_tokens or 0) * self.price.output) / 1e6


def _capture(call: Callable[[], Any]) -> BaseException | None:
    """Run `call`; return the exception it raised (to re-raise in another thread), or None."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
        return exc
    return None


async def _cancel_when(stop: threading.Event, tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel the requests when the caller's thread asks (Ctrl-C, an error while storing)."""
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()


def draw_remote(backend: Backend, store: Store, run_id: str, request: GenerationRequest, environment_id: str,
                bar: Any, budget: CostBudget | None) -> None:
    """Send the request's slots concurrently; commit each sample in this thread as it arrives."""
    groups = backend.request_groups(request.slots)
    messages: queue.Queue = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(
        target=lambda: messages.put(("finished", _capture(lambda: asyncio.run(
            _all_requests(backend, request.rendered, request.config, groups, messages.put, stop, budget))))),
        name=f"workbench-{backend.spec.name}", daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "generation":
                store.add_generations(run_id, [payload], environment_id)
                bar.update(1)
            elif kind == "event":
                store.add_run_event(run_id, **payload)
            elif kind == "finished":
                if payload is not None:
                    raise payload
                break
    except BaseException:
        stop.set()  # in-flight requests are abandoned; finished samples are already stored
        worker.join(timeout=5)
        while not messages.empty():  # samples that finished while stopping are kept too
            kind, payload = messages.get_nowait()
            if kind == "generation":
                store.add_generations(run_id, [payload], environment_id)
        raise


async def _all_requests(backend: Backend, rendered: RenderedInput, config: SamplingConfig,
                        groups: list[tuple[SampleSlot, ...]], put: Put, stop: threading.Event,
                        budget: CostBudget | None) -> None:
    """All requests of one call, at most `backend.max_concurrency` in flight; the first fatal error stops all."""
    gate = asyncio.Semaphore(backend.max_concurrency)
    deadline = asyncio.timeout(backend.spec.deadline_s)  # None: no deadline
    async with backend.session() as session:
        tasks = [asyncio.ensure_future(_one_request(backend, session, GenerationRequest(rendered, config, slots), put,
                                                    gate, stop, budget)) for slots in groups]
        watcher = asyncio.ensure_future(_cancel_when(stop, tasks))
        try:
            async with deadline:
                await asyncio.gather(*tasks)
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(exc, TimeoutError) and deadline.expired():
                message = (f"model {backend.spec.name!r}: the run passed its deadline_s={backend.spec.deadline_s:g} s; "
                           "stored samples are kept; run the same command to continue (or raise deadline_s in the "
                           "model's registry entry)")
                put(("event", {"kind": "deadline", "message": message}))
                raise WorkbenchError(message) from None
            raise
        finally:
            watcher.cancel()


async def _one_request(backend: Backend, session: Any, request: GenerationRequest, put: Put,
                       gate: asyncio.Semaphore, stop: threading.Event, budget: CostBudget | None) -> None:
    """One request under the retry policy, until every sample it asks for has come back.

    A reply with fewer choices than asked is followed by the same request (same seed, same n), and
    the missing choices are taken by their index, so sample i is what an uninterrupted run draws.
    Only a server that ignores `n` (asked again, it sends no new choice) gets the rest one request each.
    """
    spec = backend.spec
    retrying = Retrying(backend.name, record=lambda event: put(("event", event)),
                        max_retry_after_s=spec.max_retry_after_s, dead_server_s=spec.dead_server_s,
                        server=backend.engine_info().endpoint)
    asked = len(request.slots)
    pending = request.slots
    # Attempts count failures and replies that bring nothing new. A reply with some of the missing
    # choices is progress, not a failure: as each one shrinks what is pending, asking again ends.
    attempt = 0
    while attempt <= retrying.max_retries:
        async with gate:
            if stop.is_set():  # another request failed for good, or the caller stopped
                return
            if budget is not None:
                try:
                    budget.reserve(asked, put, [s.index for s in pending])
                except WorkbenchError:
                    stop.set()
                    raise
            sent_at = time.monotonic()
            try:
                generations = await backend.agenerate(session, request)
            except BackendError as exc:
                if budget is not None:
                    budget.release(asked)
                error: BackendError | None = exc
            else:
                error = None
                if budget is not None:
                    budget.settle(asked, generations)
        if error is None:
            missing = {s.index for s in pending}
            new = [g for g in generations if g.index in missing]
            for generation in new:
                put(("generation", generation))
            pending = tuple(s for s in pending if s.index not in {g.index for g in new})
            if not pending:
                return
            if new:
                retrying.short_reply(attempt, asked, len(generations), [s.index for s in pending])
                continue
            if asked > 1:
                retrying.one_per_request(attempt, asked, [s.index for s in pending])
                await asyncio.gather(*(_one_request(backend, session, GenerationRequest(request.rendered,
                                                                                       request.config, (slot,)),
                                                    put, gate, stop, budget) for slot in pending))
                return
            attempt += 1
            continue
        try:
            wait = retrying.failed(error, attempt, [s.index for s in pending], sent_at)
        except WorkbenchError:
            stop.set()  # no new requests once one has failed for good
            raise
        attempt += 1
        await asyncio.sleep(wait)
    raise retrying.gave_up([s.index for s in pending])
