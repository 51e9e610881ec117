"""The `anthropic` backend: Claude models through the official `anthropic` SDK (Messages API).

A system prompt goes in `system`; a final assistant message is a prefill the model continues,
which is how a continuation-style probe runs on a chat model (a raw-text prompt is rendered
as an instruction plus the text as prefill, see workbench.prompts.render). The API gives no
logprobs, so the capability flags say so and analysis estimates from samples. It takes no
seed either: repeated samples are independent draws, reproducible only through the store.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from workbench.backends.api_common import (
    classify_sdk_error,
    client_timeout,
    expect_count,
    expect_list,
    expect_object,
    expect_str,
)
from workbench.backends.base import Backend, BackendError, GenerationRequest
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.registry import ModelSpec
from workbench.secrets import key_from_environment
from workbench.types import EngineInfo, Generation, RenderedInput, SampleSlot

STOP_REASONS = {"end_turn": "eos", "max_tokens": "length", "stop_sequence": "stop"}


class AnthropicBackend(Backend):
    """Claude models: messages, system prompt, prefill, stop sequences, temperature, top_p, top_k (no logprobs)."""

    name: ClassVar[str] = "anthropic"
    remote: ClassVar[bool] = True
    cache_version: ClassVar[str] = "anthropic-v1"

    def __init__(self, spec: ModelSpec, concurrency: int | None = None, http_transport: Any = None) -> None:
        super().__init__(spec)
        self.max_concurrency = int(concurrency or spec.max_concurrency)
        # Tests replay documented responses through an httpx mock transport; None means the network.
        self.http_transport = http_transport
        self.calls = 0

    def engine_info(self) -> EngineInfo:
        return EngineInfo(backend="anthropic", endpoint=self.spec.base_url or "https://api.anthropic.com",
                          versions={"anthropic": importlib.metadata.version("anthropic")})

    def _variable(self) -> str:
        return self.spec.api_key_env or "ANTHROPIC_API_KEY"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """An AsyncAnthropic client for the current event loop, with the SDK's own retries off."""
        import anthropic
        import httpx2

        key = key_from_environment(self._variable())
        if not key:
            raise WorkbenchError(f"model {self.spec.name!r} needs an API key: set the environment variable "
                                 f"{self._variable()}")
        http_client = httpx2.AsyncClient(transport=self.http_transport) if self.http_transport is not None else None
        client = anthropic.AsyncAnthropic(api_key=key, base_url=self.spec.base_url, max_retries=0,
                                          timeout=client_timeout(self.spec), http_client=http_client)
        try:
            yield client
        finally:
            await client.close()

    def batch_api(self) -> "AnthropicBatches":
        """Submit and collect this model's batch jobs (cheaper, slower)."""
        return AnthropicBatches(self)

    def estimate_prompt_tokens(self, rendered: RenderedInput) -> int:
        return sum(4 + math.ceil(len(m["content"]) / 4) for m in rendered.messages or ())

    def request_params(self, rendered: RenderedInput, config: SamplingConfig) -> dict[str, Any]:
        """The Messages API parameters for one sample (also what a batch request's `params` holds)."""
        if rendered.messages is None:
            raise BackendError(f"model {self.spec.name!r}: the anthropic backend takes messages", "fatal")
        unsupported = [name for name, used in (("min_p", config.min_p != 0.0),
                                               ("repetition_penalty", config.repetition_penalty != 1.0),
                                               ("top_logprobs", config.top_logprobs != 0)) if used]
        if unsupported:
            raise BackendError(f"model {self.spec.name!r}: the Anthropic API does not take {', '.join(unsupported)}; "
                               "leave them at their defaults", "fatal")
        if config.temperature > 1.0:
            raise BackendError(f"model {self.spec.name!r}: the Anthropic API takes temperature 0-1, got "
                               f"{config.temperature}", "fatal")
        messages = [dict(m) for m in rendered.messages]
        params: dict[str, Any] = {"model": self.spec.api_model, "max_tokens": config.max_tokens}
        if messages[0]["role"] == "system":
            params["system"] = messages.pop(0)["content"]
        if messages and messages[-1]["role"] == "assistant":
            # The API rejects a prefill that ends in whitespace.
            messages[-1]["content"] = messages[-1]["content"].rstrip()
        params["messages"] = messages
        # Sent explicitly: temperature always; top_p and top_k only when they truncate, since
        # newer models reject temperature and top_p together.
        params["temperature"] = config.temperature
        if config.top_p < 1.0:
            params["top_p"] = config.top_p
        if config.top_k > 0:
            params["top_k"] = config.top_k
        if config.stop:
            params["stop_sequences"] = list(config.stop)
        return params

    async def agenerate(self, session: Any, request: GenerationRequest) -> list[Generation]:
        import anthropic

        (slot,) = request.slots
        params = self.request_params(request.rendered, request.config)
        body = {k: v for k, v in params.items() if k not in ("temperature", "top_p", "top_k")}
        extra = {k: v for k, v in params.items() if k in ("temperature", "top_p", "top_k")}
        self.calls += 1
        started = time.perf_counter()
        try:
            # Sampling fields go as extra body fields: this SDK version's signature no longer lists them.
            # The raw JSON, not the SDK's model: parse_message checks its shape (the model would take any).
            response = await session.messages.with_raw_response.create(**body, extra_body=extra)
            message = await response.json()
        except Exception as exc:  # noqa: BLE001 - classified, never swallowed
            raise classify_sdk_error(exc, anthropic, f"{self.spec.name} (messages)",
                                     [key_from_environment(self._variable())], self.spec,
                                     f"check the key in ${self._variable()}") from None
        return [self.parse_message(message, slot, time.perf_counter() - started)]

    def parse_message(self, message: Any, slot: SampleSlot, latency: float | None = None) -> Generation:
        """A Messages API reply as a Generation (the text is the continuation after any prefill).

        Every field is checked first: a reply of the wrong shape raises a retryable BackendError
        naming the field, and nothing of it is kept.
        """
        try:
            message = expect_object(message, "the reply")
            if message.get("type") != "message":
                raise BackendError(f"malformed reply: type is {message.get('type')!r}, not 'message'", "retry")
            texts = []
            for i, block in enumerate(expect_list(message.get("content"), "content")):
                block = expect_object(block, f"content[{i}]")
                if block.get("type") == "text":
                    texts.append(expect_str(block.get("text"), f"content[{i}].text"))
            usage = expect_object(message.get("usage"), "usage", optional=True)
            prompt_tokens = expect_count(usage.get("input_tokens"), "usage.input_tokens")
            completion_tokens = expect_count(usage.get("output_tokens"), "usage.output_tokens")
            reason = expect_str(message.get("stop_reason"), "stop_reason", optional=True)
            stop_sequence = expect_str(message.get("stop_sequence"), "stop_sequence", optional=True)
            about = {name: expect_str(message.get(name), name, optional=True) for name in ("id", "model")}
        except BackendError as exc:
            raise BackendError(f"{self.spec.name}: {exc}", exc.kind) from None
        return Generation(
            index=slot.index,
            text="".join(texts),
            token_ids=None,
            tokens=None,
            token_logprobs=None,
            finish_reason=STOP_REASONS.get(reason or "", "eos"),  # type: ignore[arg-type]
            stop_sequence=stop_sequence,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            raw={**about, "stop_reason": reason, "usage": usage, "choices_in_request": 1},
        )


class AnthropicBatches:
    """Submit and collect Anthropic Message Batches for one model (used by workbench.sampler.batches)."""

    def __init__(self, backend: AnthropicBackend) -> None:
        self.backend = backend

    async def submit(self, client: Any, rendered: RenderedInput, config: SamplingConfig,
                     slots: tuple[SampleSlot, ...]) -> tuple[str, str, dict[str, Any]]:
        """Create the batch, one request per sample: (batch id, status, info)."""
        params = self.backend.request_params(rendered, config)
        requests = [{"custom_id": f"i{slot.index}", "params": params} for slot in slots]
        batch = await client.messages.batches.create(requests=requests)
        return batch.id, batch.processing_status, {"requests": len(requests)}

    async def poll(self, client: Any, batch_id: str, config: SamplingConfig, seed: int
                   ) -> tuple[str, bool, list[Generation], dict[str, Any]]:
        """(status, finished, the generations it produced, info); results are read once it has ended."""
        batch = await client.messages.batches.retrieve(batch_id)
        info: dict[str, Any] = {"request_counts": batch.request_counts.model_dump()}
        if batch.processing_status != "ended":
            return batch.processing_status, False, [], info
        generations: list[Generation] = []
        errors: list[str] = []
        async for entry in await client.messages.batches.results(batch_id):
            index = int(entry.custom_id[1:])
            result = entry.result
            if result.type != "succeeded":
                errors.append(f"{entry.custom_id}: {result.type}")
                continue
            generation = self.backend.parse_message(result.message.model_dump(), SampleSlot(seed, index))
            generation.raw = {**(generation.raw or {}), "batch": True, "batch_id": batch_id}
            generations.append(generation)
        info["errors"] = errors[:20]
        return "ended", True, generations, info
