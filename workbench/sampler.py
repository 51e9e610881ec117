"""The Sampler: rendering, cache lookup, batching, retries, seeds, progress and the store.

Backends only translate requests; everything a run needs to be reproducible and resumable
happens here, the same for every backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import queue
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

import pandas as pd
from tqdm.auto import tqdm

from workbench import __version__
from workbench.backends import create_backend
from workbench.backends.base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    SampleSlot,
    ScoredContinuation,
    TokenProb,
)
from workbench.config import SamplingConfig, make_config
from workbench.errors import WorkbenchError
from workbench.registry import ModelSpec, Registry, load_registry
from workbench.rendering import Message, RenderedInput, render
from workbench.store import RunRecord, Store

if TYPE_CHECKING:
    from workbench.pricing import CostEstimate, Usage
    from workbench.prompts import Library, LibraryPrompt

# Text (a completion, or a user message with chat=True), messages, or a library prompt.
PromptInput = Union[str, list[Message], "LibraryPrompt"]

DEFAULT_BATCH_SIZE = 32
MAX_RETRIES = 6
# Exponential backoff between attempts (seconds), jittered by 0.5x-1.5x; Retry-After wins when given.
BACKOFF_START_S = 1.0
MAX_BACKOFF_S = 60.0


@dataclass
class SampleRun:
    """The outcome of one `Sampler.sample` call."""

    run_id: str
    model: str
    rendered: RenderedInput
    config: SamplingConfig
    seed: int
    n: int
    drawn: int  # samples this call asked the backend for (cache misses)
    samples: pd.DataFrame  # indices 0..n-1, one row per sample

    @property
    def cached(self) -> int:
        """Samples that came from the store."""
        return self.n - self.drawn

    @property
    def texts(self) -> list[str]:
        """The continuation texts in index order."""
        return list(self.samples["text"])


@dataclass
class RunPlan:
    """A sample call, decided: the model, its backend, exactly what it receives, and the run row."""

    spec: ModelSpec
    backend: Backend
    rendered: RenderedInput
    config: SamplingConfig
    seed: int
    n: int
    record: RunRecord


def _backoff(error: BackendError, attempt: int) -> float:
    """Seconds before the next attempt: the server's Retry-After when given, else exponential, with jitter."""
    if error.retry_after is not None:
        return error.retry_after + random.uniform(0, 0.25)
    base = min(MAX_BACKOFF_S, BACKOFF_START_S * 2.0 ** attempt)
    return base * (0.5 + random.random())


def _capture(call: Callable[[], Any]) -> BaseException | None:
    """Run `call`; return the exception it raised (to re-raise in another thread), or None."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
        return exc
    return None


async def _cancel_when(stop: threading.Event, tasks: list["asyncio.Future[Any]"]) -> None:
    """Cancel the requests when the caller's thread asks (Ctrl-C, an error while storing)."""
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()


class _Budget:
    """max_cost for one call: a request starts only if its worst case still fits under the limit."""

    def __init__(self, limit: float, spent: float, price: Any, prompt_tokens: int, max_tokens: int) -> None:
        self.limit, self.spent, self.reserved = limit, spent, 0.0
        self.price, self.prompt_tokens, self.max_tokens = price, prompt_tokens, max_tokens

    def _worst(self, choices: int) -> float:
        return (self.prompt_tokens * self.price.input + choices * self.max_tokens * self.price.output) / 1e6

    def reserve(self, choices: int, put: Callable[[Any], None], indices: list[int]) -> None:
        worst = self._worst(choices)
        if self.spent + self.reserved + worst > self.limit:
            message = (f"max_cost ${self.limit:.4f} would be exceeded (spent ${self.spent:.4f}, in flight "
                       f"${self.reserved:.4f}, next request up to ${worst:.4f}); stored samples are kept, raise "
                       "max_cost to continue")
            put(("event", {"kind": "max_cost", "message": message, "sample_indices": indices}))
            raise WorkbenchError(message)
        self.reserved += worst

    def release(self, choices: int) -> None:
        self.reserved -= self._worst(choices)

    def settle(self, choices: int, generations: list[Generation]) -> None:
        self.release(choices)
        for g in generations:
            share = 1.0 / max(1, int((g.raw or {}).get("choices_in_request") or 1))
            self.spent += ((g.prompt_tokens or 0) * share * self.price.input
                           + (g.completion_tokens or 0) * self.price.output) / 1e6


def cache_key(identity: dict[str, Any], rendered: RenderedInput, config: SamplingConfig, seed: int) -> str:
    """The key of a cache cell: model identity, rendered input, output-changing config, seed."""
    blob = json.dumps(
        {"model": identity, "input": rendered.cache_fields(), "config": config.cache_fields(), "seed": seed},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class Sampler:
    """Draws samples through backends, answering from the store whenever it can."""

    def __init__(
        self,
        store: Store | str | Path | None = None,
        registry: Registry | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
        **backend_settings: Any,
    ) -> None:
        if batch_size < 1:
            raise WorkbenchError(f"batch_size must be at least 1, got {batch_size}")
        self.store = store if isinstance(store, Store) else Store(store)
        self.registry = registry or load_registry()
        self.batch_size = batch_size
        self.progress = progress
        self.backend_settings = backend_settings
        self._backends: dict[str, Backend] = {}
        self._library: Library | None = None

    def with_store(self, store: Store | str | Path | None = None) -> "Sampler":
        """A Sampler on its own store connection (default: this store's file) sharing this one's registry,
        library and loaded backends: what a worker thread uses, since a SQLite connection belongs to one thread."""
        other = Sampler(store if store is not None else self.store.path, self.registry, self.batch_size,
                        self.progress, **self.backend_settings)
        other._backends = self._backends  # one loaded model per process, whichever thread loaded it
        other._library = self._library
        return other

    # -- models --------------------------------------------------------------------------

    def model(self, name: str | ModelSpec) -> ModelSpec:
        """The registry entry for a name (or the spec itself)."""
        return name if isinstance(name, ModelSpec) else self.registry.get(name)

    def backend(self, name: str | ModelSpec) -> Backend:
        """The backend instance for a model, created once per Sampler."""
        spec = self.model(name)
        if spec.name not in self._backends:
            self._backends[spec.name] = create_backend(spec, **self.backend_settings)
        return self._backends[spec.name]

    def identity(self, name: str | ModelSpec) -> dict[str, Any]:
        """The model identity that goes into cache keys (dtype resolved, sampling algorithm included)."""
        spec = self.model(name)
        backend = self.backend(spec)
        identity = spec.identity(backend.resolved_dtype())
        identity["algorithm"] = getattr(backend, "cache_version", None)
        return identity

    @property
    def library(self) -> "Library":
        """The prompt library (prompts/ plus $WORKBENCH_PROMPTS), loaded on first use."""
        if self._library is None:
            from workbench.prompts import load_library

            self._library = load_library()
        return self._library

    def render(
        self,
        prompt: PromptInput,
        model: str | ModelSpec,
        chat: bool = False,
        variables: dict[str, Any] | None = None,
        perturbation: str | None = None,
        framing: str | None = None,
    ) -> RenderedInput:
        """Exactly what `model` receives for `prompt` (text, messages, or a library prompt with its choices)."""
        from workbench.prompts import LibraryPrompt
        from workbench.prompts import render as render_library_prompt

        spec = self.model(model)
        if isinstance(prompt, LibraryPrompt):
            return render_library_prompt(prompt, spec, self.registry, variables, perturbation, framing)
        if variables or perturbation or framing:
            raise WorkbenchError("variables, perturbation and framing apply to library prompts only")
        return render(prompt, spec, self.registry, chat=chat)

    # -- sampling ------------------------------------------------------------------------

    def plan(
        self,
        model: str | ModelSpec,
        prompt: PromptInput | RenderedInput,
        n: int,
        config: SamplingConfig | None = None,
        seed: int = 0,
        chat: bool = False,
        variables: dict[str, Any] | None = None,
        perturbation: str | None = None,
        framing: str | None = None,
        prompt_ref: str | None = None,
        tags: list[str] | None = None,
        **config_fields: Any,
    ) -> "RunPlan":
        """What a `sample` call with these arguments decides before touching the store: rendering, config, run row."""
        from workbench.prompts import LibraryPrompt, fill

        if not isinstance(n, int) or n < 1:
            raise WorkbenchError(f"n must be a whole number of at least 1, got {n!r}")
        if not isinstance(seed, int) or seed < 0:
            raise WorkbenchError(f"seed must be a non-negative whole number, got {seed!r}")
        spec = self.model(model)
        if config is None:
            suggested = prompt.spec.sampling if isinstance(prompt, LibraryPrompt) else {}
            config = make_config(**{**suggested, **{k: v for k, v in config_fields.items() if v is not None}})
        elif config_fields:
            config = make_config(**{**config.model_dump(), **config_fields})
        if isinstance(prompt, LibraryPrompt):
            prompt_ref = prompt_ref or fill(prompt, variables, perturbation, framing).ref
        if isinstance(prompt, RenderedInput):
            rendered = prompt
        else:
            rendered = self.render(prompt, spec, chat, variables, perturbation, framing)
        if rendered.extra_stop:
            config = config.with_extra_stops(rendered.extra_stop)
        backend = self.backend(spec)
        identity = self.identity(spec)
        key = cache_key(identity, rendered, config, seed)
        record = RunRecord(
            cache_key=key,
            model=spec.name,
            model_identity=identity,
            model_kind=spec.kind,
            model_family=spec.family,
            backend=spec.backend,
            endpoint=spec.base_url,
            dtype=identity.get("dtype"),
            input_mode=rendered.mode,
            input_text=rendered.text,
            input_messages=list(rendered.messages) if rendered.messages else None,
            template=rendered.template,
            prompt_ref=prompt_ref,
            config=config.model_dump(mode="json"),
            seed=seed,
            tags=tags or [],
        )
        return RunPlan(spec, backend, rendered, config, seed, n, record)

    def sample(
        self,
        model: str | ModelSpec,
        prompt: PromptInput | RenderedInput,
        n: int,
        config: SamplingConfig | None = None,
        seed: int = 0,
        chat: bool = False,
        variables: dict[str, Any] | None = None,
        perturbation: str | None = None,
        framing: str | None = None,
        prompt_ref: str | None = None,
        tags: list[str] | None = None,
        max_cost: float | None = None,
        **config_fields: Any,
    ) -> SampleRun:
        """n samples of `prompt` from `model`; only indices missing from the store are drawn.

        `prompt` is text (a completion, or a user message with chat=True), a list of messages,
        or a library prompt (`sampler.library.get("collection/id")`) with its variables,
        perturbation and framing; a library prompt's suggested sampling fields apply unless
        `config` or explicit fields say otherwise. `max_cost` (US dollars, API models) stops
        before a request could take the run's total cost past it; what was drawn stays stored.
        """
        plan = self.plan(model, prompt, n, config, seed, chat, variables, perturbation, framing, prompt_ref, tags,
                         **config_fields)
        spec, backend, rendered, config = plan.spec, plan.backend, plan.rendered, plan.config
        run_id = self.store.ensure_run(plan.record)
        missing = sorted(set(range(n)) - self.store.sample_indices(run_id))
        if missing:
            environment_id = self.environment_id(backend)
            bar = tqdm(total=len(missing), desc=f"{spec.name}", unit="sample", disable=not self.progress,
                       leave=False)
            try:
                if getattr(backend, "remote", False):
                    self._draw_remote(backend, spec, run_id, rendered, config, seed, missing, environment_id, bar,
                                      max_cost)
                else:
                    for start in range(0, len(missing), self.batch_size):
                        slots = tuple(SampleSlot(seed, i) for i in missing[start:start + self.batch_size])
                        request = GenerationRequest(rendered, config, slots)
                        for generation in self._generate_with_retries(backend, request):
                            self.store.add_generations(run_id, [generation], environment_id)
                            bar.update(1)
            finally:
                bar.close()
        samples = self.store.samples(run_id, n)
        return SampleRun(run_id, spec.name, rendered, config, seed, n, len(missing), samples)

    def environment_id(self, backend: Backend) -> str:
        """The stored description of what writes samples now: library versions, backend, device, endpoint."""
        info = backend.engine_info()
        return self.store.ensure_environment(
            {"workbench": __version__, "backend": info.backend, "device": info.device, "endpoint": info.endpoint,
             **info.versions}
        )

    def estimate(
        self,
        model: str | ModelSpec,
        prompt: PromptInput | RenderedInput,
        n: int,
        config: SamplingConfig | None = None,
        seed: int = 0,
        chat: bool = False,
        variables: dict[str, Any] | None = None,
        perturbation: str | None = None,
        framing: str | None = None,
        batch: bool = False,
        **config_fields: Any,
    ) -> "CostEstimate":
        """What `sample` with the same arguments would send and cost (an upper bound); nothing is sent or stored."""
        from workbench.pricing import CostEstimate, estimate_cost, load_prices, price_of

        plan = self.plan(model, prompt, n, config, seed, chat, variables, perturbation, framing, **config_fields)
        run_id = self.store.find_run(plan.record.cache_key)
        stored = self.store.sample_indices(run_id) if run_id else set()
        missing = tuple(SampleSlot(seed, i) for i in range(n) if i not in stored)
        cached = n - len(missing)
        backend = plan.backend
        if getattr(backend, "remote", False):
            requests = len(backend.request_groups(missing)) if missing else 0
            prompt_tokens = backend.estimate_prompt_tokens(plan.rendered)
            note = "Prompt tokens are estimated at ~4 characters per token."
        else:
            requests = math.ceil(len(missing) / self.batch_size) if missing else 0
            prompt_tokens = len(plan.rendered.display()) // 4
            note = "Runs locally: no cost."
        table = load_prices()
        max_completion = len(missing) * plan.config.max_tokens
        cost = estimate_cost(price_of(plan.spec, table), requests, prompt_tokens, max_completion, batch, table.batch)
        return CostEstimate(plan.spec.name, n, cached, requests, prompt_tokens, max_completion, cost, note)

    def run_usage(self, run_id: str) -> "Usage":
        """Tokens and cost of a stored run (prices from prices.yaml and yours)."""
        from workbench.pricing import load_prices, price_of, usage_of_samples

        run = self.store.run(run_id)
        table = load_prices()
        try:
            price = price_of(self.model(run["model"]), table)
        except WorkbenchError:  # the model left the registry: price by the stored API name
            price = table.lookup(run["model_identity"].get("api_model") or run["model"])
        return usage_of_samples(self.store.samples(run["id"]), price, table.batch)

    def _generate_with_retries(self, backend: Backend, request: GenerationRequest) -> Iterator[Generation]:
        """The local retry loop: backends classify errors, this waits with backoff and jitter."""
        done: set[int] = set()
        for attempt in range(MAX_RETRIES + 1):
            pending = tuple(s for s in request.slots if s.index not in done)
            if not pending:
                return
            try:
                for generation in backend.generate(GenerationRequest(request.rendered, request.config, pending)):
                    done.add(generation.index)
                    yield generation
                return
            except BackendError as exc:
                if exc.kind == "fatal" or attempt == MAX_RETRIES:
                    raise WorkbenchError(f"{backend.name} backend failed: {exc}") from None
                time.sleep(_backoff(exc, attempt))

    # -- the remote path: concurrent requests, one retry loop per request -----------------

    def _draw_remote(self, backend: Any, spec: ModelSpec, run_id: str, rendered: RenderedInput,
                     config: SamplingConfig, seed: int, missing: list[int], environment_id: str, bar: Any,
                     max_cost: float | None) -> None:
        """Send the missing samples' requests concurrently; commit each sample here as it arrives.

        The network runs on its own event loop in a worker thread, so this works the same from a
        terminal and from a notebook cell (whose loop is already running); the store is only
        written from this thread, which owns its connection.
        """
        from workbench.pricing import load_prices, price_of

        budget = None
        if max_cost is not None:
            table = load_prices()
            price = price_of(spec, table)
            if price is None:
                raise WorkbenchError(f"model {spec.name!r} has no price, so max_cost cannot be enforced; add "
                                     f"{spec.api_model!r} to $WORKBENCH_HOME/prices.yaml")
            budget = _Budget(max_cost, self.run_usage(run_id).cost_usd or 0.0, price,
                             backend.estimate_prompt_tokens(rendered), config.max_tokens)
        groups = backend.request_groups(tuple(SampleSlot(seed, i) for i in missing))
        messages: queue.Queue = queue.Queue()
        stop = threading.Event()
        worker = threading.Thread(
            target=lambda: messages.put(("finished", _capture(lambda: asyncio.run(
                self._remote_requests(backend, rendered, config, groups, messages.put, stop, budget))))),
            name=f"workbench-{spec.name}", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    kind, payload = messages.get(timeout=0.2)
                except queue.Empty:
                    continue
                if kind == "generation":
                    self.store.add_generations(run_id, [payload], environment_id)
                    bar.update(1)
                elif kind == "event":
                    self.store.add_run_event(run_id, **payload)
                elif kind == "finished":
                    if payload is not None:
                        raise payload
                    break
        except BaseException:
            stop.set()  # in-flight requests are abandoned; finished samples are already stored
            worker.join(timeout=5)
            # Samples that finished while stopping are kept too.
            while not messages.empty():
                kind, payload = messages.get_nowait()
                if kind == "generation":
                    self.store.add_generations(run_id, [payload], environment_id)
            raise

    async def _remote_requests(self, backend: Any, rendered: RenderedInput, config: SamplingConfig,
                               groups: list[tuple[SampleSlot, ...]], put: Callable[[Any], None],
                               stop: threading.Event, budget: "_Budget | None") -> None:
        """All requests of one call, at most `backend.max_concurrency` in flight; the first fatal error stops all."""
        gate = asyncio.Semaphore(backend.max_concurrency)
        async with backend.session() as session:
            tasks = [asyncio.ensure_future(self._request_with_retries(backend, session, rendered, config, slots, put,
                                                                      gate, stop, budget)) for slots in groups]
            watcher = asyncio.ensure_future(_cancel_when(stop, tasks))
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                watcher.cancel()

    async def _request_with_retries(self, backend: Any, session: Any, rendered: RenderedInput,
                                    config: SamplingConfig, slots: tuple[SampleSlot, ...], put: Callable[[Any], None],
                                    gate: asyncio.Semaphore, stop: threading.Event, budget: "_Budget | None") -> None:
        """One request's retry loop: backoff with jitter, Retry-After honoured, short replies asked again."""
        pending = slots
        for attempt in range(MAX_RETRIES + 1):
            async with gate:
                if stop.is_set():  # another request failed for good, or the caller stopped
                    return
                if budget is not None:
                    try:
                        budget.reserve(len(pending), put, [s.index for s in pending])
                    except WorkbenchError:
                        stop.set()
                        raise
                try:
                    generations = await backend.agenerate(session, GenerationRequest(rendered, config, pending))
                except BackendError as exc:
                    if budget is not None:
                        budget.release(len(pending))
                    error = exc
                else:
                    error = None
                    if budget is not None:
                        budget.settle(len(pending), generations)
            if error is None:
                for generation in generations:
                    put(("generation", generation))
                done = {g.index for g in generations}
                pending = tuple(s for s in pending if s.index not in done)
                if not pending:
                    return
                put(("event", {"kind": "short_choices", "attempt": attempt, "sample_indices": [s.index for s in pending],
                               "message": f"asked for {len(done) + len(pending)} choices, got {len(done)}; asking again"}))
                continue
            last = error.kind == "fatal" or attempt == MAX_RETRIES
            wait = None if last else _backoff(error, attempt)
            put(("event", {"kind": error.kind, "attempt": attempt, "wait_s": wait, "message": str(error),
                           "sample_indices": [s.index for s in pending]}))
            if last:
                stop.set()  # no new requests once one has failed for good
                tries = "" if error.kind == "fatal" else f" after {attempt + 1} attempts"
                raise WorkbenchError(f"{backend.name} backend failed{tries}: {error}")
            await asyncio.sleep(wait or 0.0)
        raise WorkbenchError(f"{backend.name} backend: samples {[s.index for s in pending]} never came back "
                             f"after {MAX_RETRIES + 1} requests")

    def compare(
        self,
        models: list[str],
        prompt: PromptInput,
        n: int,
        config: SamplingConfig | None = None,
        seed: int = 0,
        chat: bool = False,
        variables: dict[str, Any] | None = None,
        perturbation: str | None = None,
        framing: str | None = None,
        **config_fields: Any,
    ) -> list[SampleRun]:
        """The same prompt on several models (each rendered for its own model), same config and seed."""
        if not models:
            raise WorkbenchError("give at least one model")
        return [
            self.sample(m, prompt, n, config, seed=seed, chat=chat, variables=variables, perturbation=perturbation,
                        framing=framing, **config_fields)
            for m in models
        ]

    # -- scoring -------------------------------------------------------------------------

    def _prepared_call(self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, chat: bool,
                       choices: dict[str, Any], capability: str, missing: str) -> tuple[Backend, RenderedInput]:
        """The model's backend, checked for a capability, and the rendered prompt."""
        spec = self.model(model)
        backend = self.backend(spec)
        if not getattr(backend, capability, False):
            raise WorkbenchError(f"model {spec.name!r} ({spec.backend}) {missing}")
        rendered = prompt if isinstance(prompt, RenderedInput) else self.render(prompt, spec, chat, **choices)
        return backend, rendered

    def score(
        self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, continuations: list[str],
        chat: bool = False, **choices: Any,
    ) -> list[ScoredContinuation]:
        """Logprob of each continuation right after the rendered prompt (choices: variables, perturbation, framing)."""
        backend, rendered = self._prepared_call(model, prompt, chat, choices, "supports_score",
                                                "cannot score given continuations exactly")
        return backend.score(rendered, continuations)

    def next_token_topk(
        self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, k: int = 10, chat: bool = False,
        **choices: Any,
    ) -> list[TokenProb]:
        """The k most likely next tokens after the rendered prompt."""
        backend, rendered = self._prepared_call(model, prompt, chat, choices, "supports_next_token_topk",
                                                "gives no next-token distribution")
        return backend.next_token_topk(rendered, k)
