"""The remote path: a run's requests to an API backend go out concurrently, each retried on its own.

The network runs on its own event loop in a worker thread, so this works the same from a
terminal and from a notebook cell (whose loop is already running); the store is only written
from the caller's thread, which owns its connection. A model's `deadline_s` bounds the whole
call; the retry policy (retry.py) bounds each request.

At server scale (thousands of replies a second) the workbench must not be the bottleneck, so:
`max_concurrency` workers take requests from one lazy list (never a task per request); a
request's samples cross to the storing thread in one hand-off; and the storing thread commits
everything waiting in one transaction before it counts those samples as done.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from workbench.backends.base import Backend, BackendError, GenerationRequest, RequestBlock, request_blocks
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.sampler.retry import Retrying
from workbench.store import Store
from workbench.types import Generation, RenderedInput

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


class Inbox:
    """What the network thread hands to the storing thread, taken all at once.

    One transaction then commits every sample that arrived while the last one was being written,
    and the storing thread wakes once per batch instead of once per sample.
    """

    def __init__(self) -> None:
        self._items: deque[tuple[str, Any]] = deque()  # append and popleft are atomic across threads
        self._ready = threading.Event()

    def put(self, item: tuple[str, Any]) -> None:
        self._items.append(item)
        if not self._ready.is_set():  # appended first, so a taker that cleared the flag still finds it
            self._ready.set()

    def take_all(self, timeout: float) -> list[tuple[str, Any]]:
        """Everything waiting, in order (waits up to `timeout` seconds for the first item)."""
        if not self._ready.wait(timeout):
            return []
        self._ready.clear()
        items = []
        while self._items:
            items.append(self._items.popleft())
        return items


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
    """Send the request's slots in aligned blocks concurrently; commit what arrives in this thread.

    A sample counts as drawn (the progress bar moves) only after its transaction has committed, so
    kill -9 at any moment loses nothing that was reported. Choices of a block beyond the ones asked
    for (indices at or past n) were paid for, so they are stored too and answer a later, larger n.
    """
    blocks = request_blocks(request.slots, backend.choices_per_request)
    inbox = Inbox()
    stop = threading.Event()
    worker = threading.Thread(
        target=lambda: inbox.put(("finished", _capture(lambda: asyncio.run(
            _all_requests(backend, request.rendered, request.config, blocks, inbox.put, stop, budget))))),
        name=f"workbench-{backend.spec.name}", daemon=True)
    worker.start()
    try:
        finished = False
        while not finished:
            finished = _store_items(store, run_id, inbox.take_all(timeout=0.2), environment_id, bar)
    except BaseException:
        stop.set()  # in-flight requests are abandoned; finished samples are already stored
        worker.join(timeout=5)
        # Samples that finished while stopping are kept too.
        _store_items(store, run_id, [item for item in inbox.take_all(timeout=0) if item[0] != "finished"],
                     environment_id, bar)
        raise


def _store_items(store: Store, run_id: str, items: list[tuple[str, Any]], environment_id: str, bar: Any) -> bool:
    """Commit the samples among `items` in one transaction, then record events; True once the network is done."""
    generations = [g for kind, payload in items if kind == "generations" for g in payload[0]]
    if generations:
        store.add_generations(run_id, generations, environment_id)
        bar.update(sum(payload[1] for kind, payload in items if kind == "generations"))
    for kind, payload in items:
        if kind == "event":
            store.add_run_event(run_id, **payload)
    for kind, payload in items:
        if kind == "finished":
            if payload is not None:
                raise payload
            return True
    return False


class WorkList:
    """The requests of one call, handed to workers one at a time.

    Blocks come lazily from the request's slots, so a call's memory does not grow with the number
    of requests it will send; requests added while others are in flight (a server that ignores
    `n` gets the rest one sample per request) go first. Workers stop when nothing is left and no
    request in flight could add more.
    """

    def __init__(self, blocks: Iterator[RequestBlock]) -> None:
        self._blocks = blocks
        self._added: deque[RequestBlock] = deque()
        self._busy = 0
        self._changed = asyncio.Event()
        self.refusal: str | None = None  # why no more requests may start (max_cost), once one was refused

    def refuse(self, reason: str) -> None:
        """Start no more requests (those in flight finish); the call ends with `reason` as its error."""
        self.refusal = self.refusal or reason
        self._changed.set()

    async def take(self) -> RequestBlock | None:
        while True:
            if self.refusal is not None:
                return None
            block = self._added.popleft() if self._added else next(self._blocks, None)
            if block is not None:
                self._busy += 1
                return block
            if self._busy == 0:
                return None
            self._changed.clear()
            await self._changed.wait()

    def add(self, block: RequestBlock) -> None:
        self._added.append(block)
        self._changed.set()

    def done(self) -> None:
        self._busy -= 1
        self._changed.set()


async def _all_requests(backend: Backend, rendered: RenderedInput, config: SamplingConfig,
                        blocks: Iterator[RequestBlock], put: Put, stop: threading.Event,
                        budget: CostBudget | None) -> None:
    """All requests of one call, `backend.max_concurrency` workers; the first fatal error stops all."""
    work = WorkList(blocks)
    server = backend.engine_info().endpoint
    deadline = asyncio.timeout(backend.spec.deadline_s)  # None: no deadline
    async with backend.session() as session:

        async def worker() -> None:
            while not stop.is_set() and (block := await work.take()) is not None:
                try:
                    await _one_request(backend, session, GenerationRequest(rendered, config, block.slots),
                                       block.wanted, put, stop, budget, work, server)
                finally:
                    work.done()

        workers = [asyncio.ensure_future(worker()) for _ in range(backend.max_concurrency)]
        watcher = asyncio.ensure_future(_cancel_when(stop, workers))
        try:
            async with deadline:
                await asyncio.gather(*workers)
            if work.refusal is not None:
                raise WorkbenchError(work.refusal)
        except BaseException as exc:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if isinstance(exc, TimeoutError) and deadline.expired():
                message = (f"model {backend.spec.name!r}: the run passed its deadline_s={backend.spec.deadline_s:g} s; "
                           "stored samples are kept; run the same command to continue (or raise deadline_s in the "
                           "model's registry entry)")
                put(("event", {"kind": "deadline", "message": message}))
                raise WorkbenchError(message) from None
            raise
        finally:
            watcher.cancel()


async def _one_request(backend: Backend, session: Any, request: GenerationRequest, wanted: tuple[int, ...],
                       put: Put, stop: threading.Event, budget: CostBudget | None, work: WorkList,
                       server: str | None) -> None:
    """One block's request under the retry policy, until every wanted sample of it has come back.

    A reply with fewer choices than asked is followed by the same request (same seed, same n), and
    the missing choices are taken by their index, so sample i is what an uninterrupted run draws;
    a reply that brings none of them is retried like a failure. Only a server that ignores `n` (it
    answers one choice, and the same one again) or a block that never comes back whole gets the rest
    one request per sample, with one seed per sample (recorded as a `one_per_request` event).
    """
    spec = backend.spec
    retrying = Retrying(backend.name, record=lambda event: put(("event", event)),
                        max_retry_after_s=spec.max_retry_after_s, dead_server_s=spec.dead_server_s, server=server)
    asked = len(request.slots)
    pending = set(wanted)
    # Choices past the last wanted index are stored too (they were paid for; the store keeps an index
    # it already has). Choices between wanted ones are stored already: a re-asked block discards them.
    spare = {s.index for s in request.slots if s.index > wanted[-1]}
    already = {s.index for s in request.slots if s.index < wanted[-1]} - pending
    # Attempts count failures and replies that bring nothing new. A reply with some of the missing
    # choices is progress, not a failure: as each one shrinks what is pending, asking again ends.
    attempt = 0
    while attempt <= retrying.max_retries:
        if stop.is_set() or work.refusal is not None:  # failed for good, stopped, or out of budget
            return
        if budget is not None:
            try:
                budget.reserve(asked, put, sorted(pending))
            except WorkbenchError as exc:
                work.refuse(str(exc))  # requests in flight still finish and are stored
                return
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
            new = [g for g in generations if g.index in pending]
            extra = [g for g in generations if g.index in spare]
            if new or extra:
                put(("generations", (new + extra, len(new))))
            _report_discarded([g for g in generations if g.index in already], request, put)
            already.clear()
            pending.difference_update(g.index for g in new)
            spare.difference_update(g.index for g in extra)
            if not pending:
                return
            if new:
                retrying.short_reply(attempt, asked, len(generations), sorted(pending))
                continue
            ignores_n = len(generations) <= 1
            if asked > 1 and (ignores_n or attempt >= retrying.max_retries):
                retrying.one_per_request(attempt, asked, sorted(pending), ignores_n)
                for index in sorted(pending):
                    slot = request.slots[index - request.slots[0].index]
                    work.add(RequestBlock((slot,), (index,)))
                return
            error = BackendError(f"{backend.name}: asked for {asked} choices and got {len(generations)}, none of the "
                                 "missing ones", "retry")
        try:
            wait = retrying.failed(error, attempt, sorted(pending), sent_at)
        except WorkbenchError:
            stop.set()  # no new requests once one has failed for good
            raise
        attempt += 1
        await asyncio.sleep(wait)
    raise retrying.gave_up(sorted(pending))


def _report_discarded(discarded: list[Generation], request: GenerationRequest, put: Put) -> None:
    """Record the choices of a re-asked block that were stored already: paid for, not kept, not in the run's cost."""
    if not discarded:
        return
    tokens = sum(g.completion_tokens or 0 for g in discarded)
    first, last = request.slots[0].index, request.slots[-1].index
    put(("event", {"kind": "block_asked_again", "sample_indices": [g.index for g in discarded],
                   "message": f"block {first}-{last} was asked for again for its missing samples; {len(discarded)} "
                              f"choice{'s' if len(discarded) != 1 else ''} already stored discarded ({tokens} "
                              "completion tokens, not in the run's cost)"}))
