"""The Sampler: rendering, cache lookup, batching, retries, seeds, progress and the store.

Backends only translate requests; everything a run needs to be reproducible and resumable
happens here, the same for every backend.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

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
    from workbench.prompts import Library, LibraryPrompt

# Text (a completion, or a user message with chat=True), messages, or a library prompt.
PromptInput = Union[str, list[Message], "LibraryPrompt"]

DEFAULT_BATCH_SIZE = 32
MAX_RETRIES = 6


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
        **config_fields: Any,
    ) -> SampleRun:
        """n samples of `prompt` from `model`; only indices missing from the store are drawn.

        `prompt` is text (a completion, or a user message with chat=True), a list of messages,
        or a library prompt (`sampler.library.get("collection/id")`) with its variables,
        perturbation and framing; a library prompt's suggested sampling fields apply unless
        `config` or explicit fields say otherwise.
        """
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
        info = backend.engine_info()
        run_id = self.store.ensure_run(
            RunRecord(
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
        )
        missing = sorted(set(range(n)) - self.store.sample_indices(run_id))
        if missing:
            environment_id = self.store.ensure_environment(
                {"workbench": __version__, "backend": info.backend, "device": info.device, **info.versions}
            )
            bar = tqdm(total=len(missing), desc=f"{spec.name}", unit="sample", disable=not self.progress,
                       leave=False)
            try:
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

    def _generate_with_retries(self, backend: Backend, request: GenerationRequest) -> Iterator[Generation]:
        """The one retry loop: backends classify errors, this waits with backoff and jitter."""
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
                wait = exc.retry_after if exc.retry_after is not None else min(60.0, 2.0 ** attempt)
                time.sleep(wait * (0.5 + random.random()))

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
