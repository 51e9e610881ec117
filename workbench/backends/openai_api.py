"""The `openai` backend: the OpenAI API and any OpenAI-compatible server (vLLM, llama.cpp).

Raw text (completion prompts, and chats written as transcripts for base models) goes to the
legacy completions endpoint; messages go to chat completions. Every sampling field is sent
explicitly, because servers have their own defaults (llama.cpp: temperature 0.8, top_k 40,
repeat_penalty 1.1). The number of choices that came back is checked, never assumed. A backend
only translates; the Sampler owns concurrency, retries and the store.
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
    derive_seed,
    expect_count,
    expect_list,
    expect_object,
    expect_str,
    run_sync,
)
from workbench.backends.base import Backend, BackendError, GenerationRequest, request_blocks
from workbench.backends.openai_reply import choices_by_index, finish_reason
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.registry import ModelSpec
from workbench.secrets import key_from_environment
from workbench.types import EngineInfo, Generation, RenderedInput, SampleSlot, ScoredContinuation, TokenLogprob

# The OpenAI API takes at most 4 stop strings and 5 completion logprobs (20 for chat).
OPENAI_MAX_STOP = 4
MAX_COMPLETION_LOGPROBS = {"openai": 5, "vllm": 20, "llama.cpp": 20}
# Placeholder key for local servers that check none (the SDK insists on one).
NO_KEY = "no-key-needed"


class OpenAIBackend(Backend):
    """OpenAI API / vLLM / llama.cpp through the official `openai` SDK."""

    name: ClassVar[str] = "openai"
    remote: ClassVar[bool] = True
    cache_version: ClassVar[str] = "openai-v1"

    def __init__(self, spec: ModelSpec, **settings: Any) -> None:
        super().__init__(spec)
        self.dialect = spec.dialect
        self.max_concurrency = int(settings.get("concurrency") or spec.max_concurrency)
        self.choices_per_request = spec.choices_per_request
        self.supports_logprobs = spec.logprobs
        self.supports_next_token_topk = spec.logprobs
        # Exact scoring of a given continuation: llama.cpp only, one request per token with a
        # logit_bias that forces the token (its reported logprob is the unbiased one). Its `echo`
        # logprobs are shifted by one for models without a BOS token, and the OpenAI API reports
        # biased logprobs, so neither gives an exact score.
        self.supports_score = self.dialect == "llama.cpp" and spec.logprobs and spec.has_completions_endpoint
        self.calls = 0  # requests sent (tests count them)

    # -- identity and provenance ---------------------------------------------------------

    def engine_info(self) -> EngineInfo:
        return EngineInfo(backend="openai", endpoint=self.spec.base_url or "https://api.openai.com/v1",
                          versions={"openai": importlib.metadata.version("openai"), "dialect": self.dialect})

    def _key(self) -> str | None:
        return key_from_environment(self.spec.api_key_env)

    def _secrets(self) -> list[str | None]:
        return [self._key()]

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """An AsyncOpenAI client for the current event loop, with the SDK's own retries off."""
        import openai

        key = self._key()
        if not key:
            if self.spec.base_url is None:
                variable = self.spec.api_key_env or "OPENAI_API_KEY"
                raise WorkbenchError(
                    f"model {self.spec.name!r} needs an API key: set the environment variable {variable} "
                    f"(and api_key_env: {variable} in its registry entry)"
                )
            key = NO_KEY
        # The Sampler's loop retries (and records each retry); the SDK must not retry silently.
        client = openai.AsyncOpenAI(api_key=key, base_url=self.spec.base_url, max_retries=0,
                                    timeout=client_timeout(self.spec))
        try:
            yield client
        finally:
            await client.close()

    # -- requests ------------------------------------------------------------------------

    def batch_api(self) -> "OpenAIBatches":
        """Submit and collect this model's batch jobs (cheaper, slower)."""
        return OpenAIBatches(self)

    def estimate_prompt_tokens(self, rendered: RenderedInput) -> int:
        # About 4 characters per token in English text, plus a few tokens per chat message.
        if rendered.text is not None:
            return max(1, math.ceil(len(rendered.text) / 4))
        return sum(4 + math.ceil(len(m["content"]) / 4) for m in rendered.messages or ())

    def _sampling_fields(self, config: SamplingConfig) -> dict[str, Any]:
        """Every sampling field, under the names this server takes."""
        body: dict[str, Any] = {"temperature": config.temperature, "top_p": config.top_p,
                                "max_tokens": config.max_tokens}
        if config.stop:
            body["stop"] = list(config.stop)
        if self.dialect == "openai":
            unsupported = {"top_k": config.top_k != 0, "min_p": config.min_p != 0.0,
                           "repetition_penalty": config.repetition_penalty != 1.0}
            asked = [name for name, used in unsupported.items() if used]
            if asked:
                raise BackendError(
                    f"model {self.spec.name!r}: the OpenAI API does not take {', '.join(asked)}; leave them at "
                    "their defaults, or set api_dialect: vllm / llama.cpp if the server accepts them", "fatal")
            if len(config.stop) > OPENAI_MAX_STOP:
                raise BackendError(f"model {self.spec.name!r}: the OpenAI API takes at most {OPENAI_MAX_STOP} "
                                   f"stop strings, got {len(config.stop)}", "fatal")
            # Not sent for the OpenAI API: presence/frequency penalties stay at their documented 0.
            return body
        # vLLM and llama.cpp: top_k 0 / -1 means off in both; penalties have different names.
        body["top_k"] = config.top_k if config.top_k > 0 else (-1 if self.dialect == "vllm" else 0)
        body["min_p"] = config.min_p
        if self.dialect == "vllm":
            body["repetition_penalty"] = config.repetition_penalty
        else:
            body["repeat_penalty"] = config.repetition_penalty
            body["frequency_penalty"] = 0.0
            body["presence_penalty"] = 0.0
        return body

    def request_body(self, rendered: RenderedInput, config: SamplingConfig, slots: tuple[SampleSlot, ...]
                     ) -> tuple[str, dict[str, Any]]:
        """The endpoint path and the full JSON body for `slots` (also what a batch file line holds)."""
        body: dict[str, Any] = {"model": self.spec.api_model, **self._sampling_fields(config), "n": len(slots)}
        first = slots[0]
        body["seed"] = derive_seed(first.seed, first.index, len(slots))
        if rendered.text is not None:
            if not self.spec.has_completions_endpoint:
                raise BackendError(f"model {self.spec.name!r}: raw text needs a completions endpoint, which this "
                                   "server does not have; send a chat prompt", "fatal")
            body["prompt"] = rendered.text
            if self.supports_logprobs:
                body["logprobs"] = max(1, min(config.top_logprobs, MAX_COMPLETION_LOGPROBS[self.dialect]))
            return "/completions", body
        body["messages"] = [dict(m) for m in rendered.messages or ()]
        if self.supports_logprobs:
            # llama.cpp returns no logprobs for logprobs=True without top_logprobs.
            body["logprobs"] = True
            body["top_logprobs"] = max(1, config.top_logprobs)
        return "/chat/completions", body

    async def _post(self, client: Any, path: str, body: dict[str, Any]) -> Any:
        """The reply's JSON as it came (`parse_reply` checks its shape: the SDK's models would take any)."""
        import openai

        self.calls += 1
        try:
            return await client.post(path, body=body, cast_to=object)
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            raise classify_sdk_error(exc, openai, f"{self.spec.name} ({path})", self._secrets(), self.spec,
                                     f"check the key in ${self.spec.api_key_env or 'OPENAI_API_KEY'}") from None

    async def agenerate(self, session: Any, request: GenerationRequest) -> list[Generation]:
        """Ask for len(slots) choices; a server may return fewer (llama.cpp ignores `n`): the Sampler asks again."""
        path, body = self.request_body(request.rendered, request.config, request.slots)
        started = time.perf_counter()
        reply = await self._post(session, path, body)
        return self.parse_reply(reply, request.config, request.slots, time.perf_counter() - started)

    def parse_reply(self, reply: Any, config: SamplingConfig, slots: tuple[SampleSlot, ...],
                    latency: float | None = None) -> list[Generation]:
        """A completions or chat reply as Generations, each choice for the slot its `index` names.

        Every field is checked first: a reply of the wrong shape (a server or proxy bug) raises a
        retryable BackendError naming the field, and nothing of it is kept.
        """
        try:
            reply = expect_object(reply, "the reply")
            usage = expect_object(reply.get("usage"), "usage", optional=True)
            prompt_tokens = expect_count(usage.get("prompt_tokens"), "usage.prompt_tokens")
            total_completion = expect_count(usage.get("completion_tokens"), "usage.completion_tokens")
            about = {name: expect_str(reply.get(name), name, optional=True)
                     for name in ("id", "model", "system_fingerprint")}
            choices = choices_by_index(expect_list(reply.get("choices"), "choices"), len(slots), config.top_logprobs)
        except BackendError as exc:
            raise BackendError(f"{self.spec.name}: {exc}", exc.kind) from None
        out = []
        for index, choice in sorted(choices.items()):
            completion_tokens = len(choice.tokens) if choice.tokens is not None else (
                None if total_completion is None else round(total_completion / max(1, len(choices))))
            finish, stop_sequence = finish_reason(choice, config)
            out.append(Generation(
                index=slots[index].index,
                text=choice.text,
                token_ids=None,  # OpenAI-compatible servers report token strings, not ids
                tokens=choice.tokens,
                token_logprobs=choice.logprobs,
                finish_reason=finish,
                stop_sequence=stop_sequence,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_s=latency,
                top_logprobs=choice.top,
                raw={
                    **about,
                    "usage": usage,
                    "choices_in_request": len(choices),
                    "asked_choices": len(slots),
                    "finish_reason": choice.finish_reason,
                    "stop_reason": choice.stop_reason,
                    "seed": derive_seed(slots[0].seed, slots[0].index, len(slots)),
                },
            ))
        return out

    # -- scoring and next-token distributions ---------------------------------------------

    def next_token_topk(self, rendered: RenderedInput, k: int) -> list[TokenLogprob]:
        """The k most likely next tokens, from the server's top logprobs at the first position."""
        if not self.supports_next_token_topk:
            raise WorkbenchError(f"model {self.spec.name!r} returns no logprobs (logprobs: false in its entry)")
        config = SamplingConfig(max_tokens=1, top_logprobs=min(k, 20))
        limit = MAX_COMPLETION_LOGPROBS[self.dialect] if rendered.text is not None else 20
        if k > limit:
            raise WorkbenchError(f"model {self.spec.name!r}: this server gives at most {limit} top logprobs, "
                                 f"asked for {k}")

        async def ask() -> list[Generation]:
            async with self.session() as client:
                path, body = self.request_body(rendered, config, (SampleSlot(0, 0),))
                return self.parse_reply(await self._post(client, path, body), config, (SampleSlot(0, 0),))

        generation = run_sync(ask)[0]
        if not generation.top_logprobs:
            raise WorkbenchError(f"model {self.spec.name!r}: the server returned no top logprobs")
        first = sorted(generation.top_logprobs[0], key=lambda t: -t.logprob)[:k]
        return [TokenLogprob(None, t.token, t.logprob) for t in first]

    def score(self, rendered: RenderedInput, continuations: list[str]) -> list[ScoredContinuation]:
        """Exact logprobs of given continuations (llama.cpp): each token forced in turn by logit_bias."""
        if not self.supports_score:
            raise WorkbenchError(
                f"model {self.spec.name!r} ({self.dialect}) has no exact scoring method: only llama.cpp servers "
                "are scored exactly (one request per token with logit_bias); use sampled estimates instead")
        if rendered.text is None:
            raise WorkbenchError("scoring on an OpenAI-compatible server needs a text prompt (a completion, or a "
                                 "chat written as a transcript by a base model's entry)")
        return run_sync(lambda: self._score_all(rendered.text or "", continuations))

    async def _score_all(self, prompt: str, continuations: list[str]) -> list[ScoredContinuation]:
        # llama-cpp-python's completions take text only, so each forced step sends the prompt plus
        # the continuation's tokens so far as text, after checking that the server tokenises that
        # text back into exactly those tokens (otherwise the score would be of another sequence).
        async with self.session() as client:
            prompt_ids = await self._extras(client, "tokenize", {"input": prompt}, "tokens")
            results = []
            for continuation in continuations:
                full = await self._extras(client, "tokenize", {"input": prompt + continuation}, "tokens")
                if full[: len(prompt_ids)] != prompt_ids:
                    raise WorkbenchError(
                        f"the continuation {continuation!r} changes how the end of the prompt is tokenised; "
                        "move the boundary (e.g. start the continuation with a space)")
                ids = full[len(prompt_ids):]
                logprobs = []
                for j, token_id in enumerate(ids):
                    prefix = ""
                    if j:
                        prefix = await self._extras(client, "detokenize", {"tokens": ids[:j]}, "text")
                        check = await self._extras(client, "tokenize", {"input": prompt + prefix}, "tokens")
                        if check != prompt_ids + ids[:j]:
                            raise WorkbenchError(
                                f"cannot score {continuation!r} exactly on this server: its first {j} tokens do "
                                "not survive a round trip through text")
                    body = {"model": self.spec.api_model, "prompt": prompt + prefix, "max_tokens": 1,
                            "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0,
                            "logprobs": 1, "logit_bias": {str(token_id): 100.0}, "seed": 0}
                    forced = self.parse_reply(await self._post(client, "/completions", body),
                                              SamplingConfig(max_tokens=1), (SampleSlot(0, 0),))
                    if not (forced and forced[0].token_logprobs):
                        raise BackendError(f"{self.spec.name}: malformed reply: no logprob for a forced token",
                                           "retry")
                    logprobs.append(forced[0].token_logprobs[0])
                results.append(ScoredContinuation(continuation, ids, logprobs))
            return results

    async def _extras(self, client: Any, name: str, body: dict[str, Any], field: str) -> Any:
        """llama-cpp-python's /extras/tokenize and /extras/detokenize (token ids with the model's BOS, if any)."""
        import httpx2

        url = str(client.base_url).rstrip("/")
        url = url[: -len("/v1")] if url.endswith("/v1") else url
        async with httpx2.AsyncClient(timeout=client_timeout(self.spec)) as http:
            reply = await http.post(f"{url}/extras/{name}", json={**body, "model": self.spec.api_model})
        if reply.status_code != 200:
            raise WorkbenchError(f"model {self.spec.name!r}: the server has no /extras/{name} "
                                 f"({reply.status_code}); exact scoring needs llama-cpp-python's server")
        where = f"/extras/{name}.{field}"
        try:
            value = expect_object(reply.json(), f"/extras/{name}").get(field)
            if field == "text":
                return expect_str(value, where)
            ids = expect_list(value, where)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise BackendError(f"malformed reply: {where} holds something other than token ids", "retry")
            return ids
        except ValueError:  # not JSON
            raise BackendError(f"{self.spec.name}: malformed reply from /extras/{name} (not JSON)", "retry") from None
        except BackendError as exc:
            raise BackendError(f"{self.spec.name}: {exc}", exc.kind) from None


# -- the Batch API ------------------------------------------------------------------------------

BATCH_TERMINAL = {"completed", "failed", "expired", "cancelled"}


def batch_custom_id(slots: tuple[SampleSlot, ...]) -> str:
    """A batch line's id: the sample indices it draws (the run is stored with the batch)."""
    return "i" + ".".join(str(s.index) for s in slots)


def indices_of_custom_id(custom_id: str) -> list[int]:
    """The sample indices a batch line's id names."""
    return [int(part) for part in custom_id[1:].split(".")]


class OpenAIBatches:
    """Submit and collect OpenAI Batch API jobs for one model (used by workbench.sampler.batches)."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend

    async def submit(self, client: Any, rendered: RenderedInput, config: SamplingConfig,
                     slots: tuple[SampleSlot, ...]) -> tuple[str, str, dict[str, Any]]:
        """Upload the JSONL of requests and create the batch: (batch id, status, info)."""
        import json

        lines, endpoint = [], ""
        for block in request_blocks(slots, self.backend.choices_per_request):
            path, body = self.backend.request_body(rendered, config, block.slots)
            endpoint = "/v1" + path
            lines.append(json.dumps({"custom_id": batch_custom_id(block.slots), "method": "POST", "url": endpoint,
                                     "body": body}))
        data = ("\n".join(lines) + "\n").encode()
        upload = await client.files.create(file=("workbench-batch.jsonl", data), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h")
        return batch.id, batch.status, {"input_file_id": upload.id, "endpoint": endpoint, "requests": len(lines)}

    async def poll(self, client: Any, batch_id: str, config: SamplingConfig, seed: int
                   ) -> tuple[str, bool, list[Generation], dict[str, Any]]:
        """(status, finished, the generations it produced, info); results are read once the batch is done."""
        import json

        batch = await client.batches.retrieve(batch_id)
        info = {"request_counts": batch.request_counts.model_dump() if batch.request_counts else None,
                "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id}
        if batch.status not in BATCH_TERMINAL:
            return batch.status, False, [], info
        generations: list[Generation] = []
        errors: list[str] = []
        if batch.output_file_id:
            content = await client.files.content(batch.output_file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                slots = tuple(SampleSlot(seed, i) for i in indices_of_custom_id(entry["custom_id"]))
                response = entry.get("response") or {}
                if entry.get("error") or response.get("status_code") != 200:
                    errors.append(f"{entry['custom_id']}: {entry.get('error') or response.get('status_code')}")
                    continue
                for generation in self.backend.parse_reply(response["body"], config, slots):
                    generation.raw = {**(generation.raw or {}), "batch": True, "batch_id": batch_id}
                    generations.append(generation)
        info["errors"] = errors[:20]
        return batch.status, True, generations, info
