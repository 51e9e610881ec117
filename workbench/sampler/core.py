"""The Sampler: rendering, cache lookup, batching, retries, seeds, progress and the store.

Backends only translate requests; everything a run needs to be reproducible and resumable
happens here, the same for every backend. Analysis, experiments and the faces reach models only
through the Sampler's public methods.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm
from typing_extensions import Unpack

from workbench.backends import create_backend
from workbench.backends.base import ACTIVATIONS_MISSING, Backend, BackendError, GenerationRequest, blocks_needed
from workbench.config import MAX_SAMPLES_PER_CALL, MAX_SEED, SamplingConfig, SamplingOverrides, make_config
from workbench.errors import WorkbenchError
from workbench.prompts import LibraryPrompt, PromptChoices, fill, render_for_model
from workbench.registry import ModelSpec, Registry, load_registry
from workbench.sampler.activations import ActivationQueries
from workbench.sampler.queries import ModelQueries
from workbench.sampler.remote import CostBudget, draw_remote
from workbench.sampler.retry import EventSink, Retrying
from workbench.store import RunRecord, Store
from workbench.store.keys import cache_key  # re-exported: workbench.sampler.cache_key
from workbench.types import Capabilities, Generation, Message, RenderedInput, SampleSlot
from workbench.version import __version__

if TYPE_CHECKING:
    from workbench.pricing import CostEstimate, Usage
    from workbench.prompts import Library

# Text (a completion, or a user message with chat=True), messages, or a library prompt.
PromptInput = str | list[Message] | LibraryPrompt

DEFAULT_BATCH_SIZE = 32


class SampleOptions(SamplingOverrides, PromptChoices, total=False):
    """The keyword options `plan`, `sample`, `estimate` and `compare` share (besides the sampling fields)."""

    seed: int  # sample i's randomness derives from (seed, i) only; part of the cache key
    chat: bool  # text is sent as a user message (the model's chat template, or its transcript template)
    prompt_ref: str | None  # what the run row names as its prompt (default: the library address)
    tags: list[str] | None  # labels stored with the run


_RUN_OPTIONS = ("seed", "chat", "variables", "perturbation", "framing", "prompt_ref", "tags")


@dataclass
class SampleRun:
    """The outcome of one `Sampler.sample` call; its samples are read from the store when first asked for."""

    run_id: str
    model: str
    rendered: RenderedInput
    config: SamplingConfig
    seed: int
    n: int
    drawn: int  # samples this call asked the backend for (cache misses)
    # Reads the frame (a plain function, so copying or `asdict` of a SampleRun never copies a connection).
    read_samples: Callable[[], pd.DataFrame] = field(repr=False, compare=False)
    _samples: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def cached(self) -> int:
        """Samples that came from the store."""
        return self.n - self.drawn

    @property
    def samples(self) -> pd.DataFrame:
        """Indices 0..n-1, one row per sample (built on first use, so a call that only draws holds no frame)."""
        if self._samples is None:
            self._samples = self.read_samples()
        return self._samples

    @property
    def texts(self) -> list[str]:
        """The continuation texts in index order."""
        return list(self.samples["text"])

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (joblib, multiprocessing) with its frame read, and without the store's connection.
        state = dict(self.__dict__)
        state["_samples"], state["read_samples"] = self.samples, None
        return state


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


class Sampler(ActivationQueries, ModelQueries):
    """Draws samples through backends, answering from the store whenever it can.

    A context manager: `with Sampler() as sampler:` closes its store connection at the end.
    """

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

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the store connection (loaded models stay cached in the process)."""
        self.store.close()

    def with_store(self, store: Store | str | Path | None = None) -> Sampler:
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
        """The backend instance for a model, created once per Sampler (for the Sampler and backend tests)."""
        spec = self.model(name)
        if spec.name not in self._backends:
            backend = create_backend(spec, **self.backend_settings)
            if spec.steering is not None and not backend.capabilities().activations:
                raise WorkbenchError(f"model {spec.name!r} is steered, but its parent {spec.steering.parent!r} "
                                     f"({spec.backend}) cannot {ACTIVATIONS_MISSING}")
            self._backends[spec.name] = backend
        return self._backends[spec.name]

    def capabilities(self, name: str | ModelSpec) -> Capabilities:
        """What a model's backend can do beyond sampling (exact scoring, top-k, token ids, ...)."""
        return self.backend(name).capabilities()

    def identity(self, name: str | ModelSpec) -> dict[str, Any]:
        """The model identity that goes into cache keys (dtype resolved, sampling algorithm included)."""
        spec = self.model(name)
        backend = self.backend(spec)
        identity = spec.identity(backend.resolved_dtype())
        identity["algorithm"] = backend.cache_version
        return identity

    @property
    def library(self) -> Library:
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
        spec = self.model(model)
        chat_template = self.backend(spec).apply_chat_template if spec.has_chat_template else None
        return render_for_model(prompt, spec, self.registry, chat=chat, variables=variables,
                                perturbation=perturbation, framing=framing, chat_template=chat_template)

    # -- sampling ------------------------------------------------------------------------

    def plan(self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, n: int,
             config: SamplingConfig | None = None, **options: Unpack[SampleOptions]) -> RunPlan:
        """What a `sample` call with these arguments decides before touching the store: rendering, config, run row."""
        seed, chat = options.get("seed", 0), options.get("chat", False)
        variables, perturbation, framing = options.get("variables"), options.get("perturbation"), options.get("framing")
        prompt_ref, tags = options.get("prompt_ref"), options.get("tags")
        overrides = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise WorkbenchError(f"n must be a whole number of at least 1, got {n!r}")
        if n > MAX_SAMPLES_PER_CALL:
            raise WorkbenchError(f"n={n} is more than one call may ask for (at most {MAX_SAMPLES_PER_CALL}); "
                                 "split the run into several seeds")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            raise WorkbenchError(f"seed must be a whole number from 0 to {MAX_SEED} (2**63-1), got {seed!r}")
        spec = self.model(model)
        given = {k: v for k, v in overrides.items() if v is not None}
        if config is None:
            suggested = prompt.spec.sampling if isinstance(prompt, LibraryPrompt) else {}
            config = make_config(**{**suggested, **given})
        elif given:
            config = make_config(**{**config.model_dump(), **given})
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
        record = RunRecord(
            cache_key=cache_key(identity, rendered, config, seed),
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

    def sample(self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, n: int,
               config: SamplingConfig | None = None, max_cost: float | None = None,
               **options: Unpack[SampleOptions]) -> SampleRun:
        """n samples of `prompt` from `model`; only indices missing from the store are drawn.

        `prompt` is text (a completion, or a user message with chat=True), a list of messages,
        or a library prompt (`sampler.library.get("collection/id")`) with its variables,
        perturbation and framing; a library prompt's suggested sampling fields apply unless
        `config` or explicit fields say otherwise. `max_cost` (US dollars, API models) stops
        before a request could take the run's total cost past it; what was drawn stays stored.
        """
        plan = self.plan(model, prompt, n, config, **options)
        run_id = self.store.ensure_run(plan.record)
        stored = self.store.sample_indices(run_id, below=n)
        missing = [i for i in range(n) if i not in stored]
        if missing:
            self._draw(plan, run_id, missing, max_cost)
        store = self.store
        return SampleRun(run_id, plan.spec.name, plan.rendered, plan.config, plan.seed, n, len(missing),
                         lambda: store.samples_from_any_thread(run_id, n))

    def stored_run(self, run_id: str) -> SampleRun:
        """A stored run (id or unique prefix) as a SampleRun of all its samples, without loading its model."""
        run = self.store.run(run_id)
        messages = tuple(run["input_messages"]) if run["input_messages"] else None
        rendered = RenderedInput(run["input_mode"], run["input_text"], messages, run["template"])
        n = self.store.count_samples(run["id"])
        store, found = self.store, run["id"]
        return SampleRun(found, run["model"], rendered, SamplingConfig.model_validate(run["config"]), run["seed"], n,
                         0, lambda: store.samples_from_any_thread(found))

    def _draw(self, plan: RunPlan, run_id: str, missing: list[int], max_cost: float | None) -> None:
        """Draw the missing indices of a run, storing each sample as it arrives."""
        backend = plan.backend
        environment_id = self.environment_id(backend)
        bar = tqdm(total=len(missing), desc=f"{plan.spec.name}", unit="sample", disable=not self.progress,
                   leave=False)
        try:
            if backend.remote:
                request = GenerationRequest(plan.rendered, plan.config,
                                            tuple(SampleSlot(plan.seed, i) for i in missing))
                draw_remote(backend, self.store, run_id, request, environment_id, bar,
                            self._budget(plan, run_id, max_cost))
                return
            record = self._event_sink(run_id)
            for start in range(0, len(missing), self.batch_size):
                slots = tuple(SampleSlot(plan.seed, i) for i in missing[start:start + self.batch_size])
                for generation in self._generate_with_retries(backend, GenerationRequest(plan.rendered, plan.config,
                                                                                         slots), record):
                    self.store.add_generations(run_id, [generation], environment_id)
                    bar.update(1)
        finally:
            bar.close()

    def _event_sink(self, run_id: str) -> EventSink:
        return lambda event: self.store.add_run_event(run_id, **event)

    def _budget(self, plan: RunPlan, run_id: str, max_cost: float | None) -> CostBudget | None:
        if max_cost is None:
            return None
        from workbench.pricing import load_prices, price_of

        price = price_of(plan.spec, load_prices())
        if price is None:
            raise WorkbenchError(f"model {plan.spec.name!r} has no price, so max_cost cannot be enforced; add "
                                 f"{plan.spec.api_model!r} to $WORKBENCH_HOME/prices.yaml")
        return CostBudget(max_cost, self.run_usage(run_id).cost_usd or 0.0, price,
                          plan.backend.estimate_prompt_tokens(plan.rendered), plan.config.max_tokens)

    def _generate_with_retries(self, backend: Backend, request: GenerationRequest,
                               record: EventSink | None) -> Iterator[Generation]:
        """A local backend's generations under the retry policy; finished samples are not drawn again."""
        retrying = Retrying(backend.name, record)
        done: set[int] = set()
        for attempt in retrying.attempts():
            pending = tuple(s for s in request.slots if s.index not in done)
            if not pending:
                return
            try:
                for generation in backend.generate(GenerationRequest(request.rendered, request.config, pending)):
                    done.add(generation.index)
                    yield generation
                return
            except BackendError as exc:
                time.sleep(retrying.failed(exc, attempt, [s.index for s in pending if s.index not in done]))

    def environment_id(self, backend: Backend) -> str:
        """The stored description of what writes samples now: library versions, backend, device, endpoint."""
        info = backend.engine_info()
        return self.store.ensure_environment(
            {"workbench": __version__, "backend": info.backend, "device": info.device, "endpoint": info.endpoint,
             **info.versions}
        )

    def estimate(self, model: str | ModelSpec, prompt: PromptInput | RenderedInput, n: int,
                 config: SamplingConfig | None = None, batch: bool = False,
                 **options: Unpack[SampleOptions]) -> CostEstimate:
        """What `sample` with the same arguments would send and cost (an upper bound); nothing is sent or stored."""
        from workbench.pricing import CostEstimate, estimate_cost, load_prices, price_of

        plan = self.plan(model, prompt, n, config, **options)
        run_id = self.store.find_run(plan.record.cache_key)
        stored = self.store.sample_indices(run_id, below=n) if run_id else set()
        # Counted, not listed: a dry run answers at once for any n (10^7 slots took 20-45 s and 2 GB).
        missing = n - len(stored)
        backend = plan.backend
        if backend.remote:
            requests = blocks_needed(n, stored, backend.choices_per_request)
            prompt_tokens = backend.estimate_prompt_tokens(plan.rendered)
            note = "Prompt tokens are estimated at ~4 characters per token."
        else:
            requests = math.ceil(missing / self.batch_size)
            prompt_tokens = len(plan.rendered.display()) // 4
            note = "Runs locally: no cost."
        table = load_prices()
        # A remote request asks for its whole block of choices, whichever of them are missing.
        choices = requests * backend.choices_per_request if backend.remote else missing
        max_completion = choices * plan.config.max_tokens
        cost = estimate_cost(price_of(plan.spec, table), requests, prompt_tokens, max_completion, batch, table.batch)
        return CostEstimate(plan.spec.name, n, n - missing, requests, prompt_tokens, max_completion, cost, note)

    def run_usage(self, run_id: str) -> Usage:
        """Tokens and cost of a stored run (prices from prices.yaml and yours)."""
        from workbench.pricing import load_prices, price_of, usage_of_samples

        run = self.store.run(run_id)
        table = load_prices()
        try:
            price = price_of(self.model(run["model"]), table)
        except WorkbenchError:  # the model left the registry: price by the stored API name
            price = table.lookup(run["model_identity"].get("api_model") or run["model"])
        return usage_of_samples(self.store.samples(run["id"]), price, table.batch)

    def compare(self, models: list[str], prompt: PromptInput, n: int, config: SamplingConfig | None = None,
                **options: Unpack[SampleOptions]) -> list[SampleRun]:
        """The same prompt on several models (each rendered for its own model), same config and seed."""
        if not models:
            raise WorkbenchError("give at least one model")
        return [self.sample(m, prompt, n, config, **options) for m in models]
