"""The transformers backend: local checkpoints on CPU (bf16 where fast) or CUDA.

Decoding is our own loop over the KV cache rather than `model.generate`, because each sample
draws from its own random stream keyed by (seed, sample index): the prompt is run once, its
cache repeated for the batch, and each row picks its token by inverse CDF with one uniform per
step from its own stream (see sampling.py).

Exact scoring (score, score_candidates, next-token top-k) always runs in float32, whatever dtype
sampling runs in: bf16 rounding alone moved exact answer probabilities by up to 5.5e-3 between
two equivalent computations, more than an "exact" distribution may. Where sampling runs in another
dtype, a float32 copy of the model is loaded for scoring (once per process, on first use).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from jinja2 import TemplateError

from workbench.backends.base import Backend, GenerationRequest
from workbench.backends.hf import weights
from workbench.backends.hf.lens import ActivationMethods
from workbench.backends.hf.sampling import (
    SAMPLING_ALGORITHM,
    end_token_mask,
    inverse_cdf_pick,
    sample_uniforms,
    sampling_distribution,
)
from workbench.direction_files import direction_content_hash
from workbench.errors import ConfigError, WorkbenchError
from workbench.guarded.chat_template import render_like_transformers
from workbench.guarded.limits import LimitBreach
from workbench.home import user_registry_path
from workbench.registry import ModelSpec
from workbench.types import (
    CandidateScores,
    EngineInfo,
    FinishReason,
    Generation,
    Message,
    RenderedInput,
    ScoredContinuation,
    TokenLogprob,
)

# Decoding always runs at least this many rows. CPU matmul kernels round differently by row count:
# measured on a 2-core AVX2 EPYC in float32, a row's output is bit-identical for every count from 4
# to 512, but differs at 1 and at 2-3 (bf16 differs at 1). Padding small batches to 4 rows keeps
# sample i independent of how many other samples share its batch, so a resumed run continues with
# the texts an uninterrupted one would have drawn.
MIN_DECODE_ROWS = 4
SCORE_CHUNK = 64  # continuations per scoring batch: bounds the [batch, length, vocab] logits in memory
SCORING_DTYPE = "float32"  # exact scoring's dtype, whatever the sampling dtype (see the module docstring)
END_MASKS_KEPT = 256  # answer-end masks kept per backend ([V] bools each: 262 KB for Gemma)
LOG = logging.getLogger("workbench.backends.hf")


@dataclass
class _Row:
    """A continuation being decoded."""

    index: int
    uniforms: np.ndarray
    token_ids: list[int]
    logprobs: list[float]
    top: list[list[TokenLogprob]] | None


class HFBackend(ActivationMethods, Backend):
    """Local transformers models (capture and steering: see lens.py)."""

    name: ClassVar[str] = "hf"
    cache_version: ClassVar[str | None] = SAMPLING_ALGORITHM
    supports_logprobs = True
    supports_score = True
    supports_next_token_topk = True
    supports_candidate_scoring = True
    supports_token_ids = True
    supports_activations = True
    scoring_dtype = SCORING_DTYPE

    def __init__(self, spec: ModelSpec, device: str | None = None, threads: int | None = None) -> None:
        super().__init__(spec)
        # A steered model loads, prepares and tokenises exactly as its parent: one copy of the weights for both.
        self.weights_spec = spec.unsteered
        self.device = device or weights.default_device()
        self.dtype = weights.resolve_dtype(spec, self.device)
        weights.apply_thread_setting(threads)
        self.calls = 0  # generate/score/topk calls: lets tests prove a cache hit touched no model
        self._end_masks: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    # -- identity, provenance, preparation ---------------------------------------------------

    def resolved_dtype(self) -> str:
        """The dtype the weights run in (the registry's, 'auto' resolved for this device)."""
        return self.dtype

    def engine_info(self) -> EngineInfo:
        """Backend, dtype, device and the library versions that shape the samples."""
        import transformers

        return EngineInfo(
            backend=self.name,
            dtype=self.dtype,
            device=self.device,
            endpoint=None,
            versions={
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "sampling_algorithm": SAMPLING_ALGORITHM,
                "torch_threads": str(torch.get_num_threads()),
                # Provenance names the direction (the cache key holds its content hash only).
                **({"steering": f"{self.spec.steering.describe()}; direction content "
                                f"{direction_content_hash(self.spec.steering.direction)}"}
                   if self.spec.steering is not None else {}),
            },
        )

    def context_length(self) -> int | None:
        """The most positions the model takes (config max_position_embeddings), read without loading weights."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(weights.checkpoint_location(self.weights_spec))
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        value = getattr(text_config, "max_position_embeddings", None)
        return int(value) if value else None

    def is_prepared(self) -> bool:
        """Whether the weights load fast as they are (a transformers checkpoint, or a GGUF converted once)."""
        return not weights.needs_preparation(self.weights_spec) or weights.is_prepared(self.weights_spec)

    def prepare(self, force: bool = False) -> str:
        """Convert a GGUF-shipped model to bf16 safetensors once; a one-line status."""
        return weights.prepare_status(self.weights_spec, force=force)

    def apply_chat_template(self, messages: tuple[Message, ...]) -> str:
        """Render messages with the model's chat template; an assistant message last is continued (prefill)."""
        tokenizer = self._tokenizer()
        template = None if self.spec.chat_template == "tokenizer" else self.spec.chat_template
        if template is None and not tokenizer.chat_template:
            raise WorkbenchError(
                f"model {self.spec.name!r} says chat_template: tokenizer, but its tokenizer has none; "
                "set chat_template: null to use the transcript template"
            )
        prefill = messages[-1]["role"] == "assistant"
        _render_within_limits(self.spec, tokenizer, template, messages, prefill)
        try:
            return tokenizer.apply_chat_template(
                list(messages),
                chat_template=template,
                tokenize=False,
                add_generation_prompt=not prefill,
                continue_final_message=prefill,
            )
        except (TemplateError, TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
            # transformers renders in jinja2's sandbox: what it refuses (SecurityError), a template that does not
            # parse, reads what is not there or raises (raise_exception) is the template's fault, not a bug here.
            raise ConfigError(chat_template_failure(self.spec, exc)) from None

    # -- helpers -------------------------------------------------------------------------

    def _model(self) -> Any:
        """The model sampling runs on (in `self.dtype`)."""
        return weights.load_model(self.weights_spec, self.dtype, self.device)

    def _scoring_model(self) -> Any:
        """The model exact scoring runs on: float32 (the sampling model itself when that is float32)."""
        return weights.load_model(self.weights_spec, self.scoring_dtype, self.device)

    def _tokenizer(self) -> Any:
        return weights.load_tokenizer(self.weights_spec)

    def stop_token_ids(self) -> set[int]:
        """Token ids that end a continuation (EOS and the generation config's end tokens)."""
        tokenizer = self._tokenizer()
        ids: set[int] = set()
        configured = getattr(weights.generation_config(self.weights_spec), "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return ids

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a rendered input; the tokenizer's BOS is added unless the text already has it."""
        tokenizer = self._tokenizer()
        has_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
        ids = tokenizer(text, add_special_tokens=not has_bos).input_ids
        if not ids:
            raise WorkbenchError("the prompt tokenised to nothing; give some text")
        return ids

    def count_tokens(self, rendered: RenderedInput) -> int:
        """How many positions the rendered input takes (BOS included)."""
        return len(self.encode_prompt(self._text_of(rendered)))

    def _continuation_ids(self, prompt_text: str, prompt_ids: list[int], continuation: str) -> list[int]:
        """Tokens of a continuation as the model would see it after the prompt (tokenised together)."""
        together = self.encode_prompt(prompt_text + continuation)
        if together[: len(prompt_ids)] == prompt_ids and len(together) > len(prompt_ids):
            return together[len(prompt_ids):]
        return self._tokenizer()(continuation, add_special_tokens=False).input_ids

    @staticmethod
    def _text_of(rendered: RenderedInput) -> str:
        if rendered.text is None:
            raise WorkbenchError("the hf backend needs a rendered text input")
        return rendered.text

    def _prefill(self, model: Any, prompt_ids: list[int], response_from: int | None = None) -> tuple[Any, torch.Tensor]:
        """Run the prompt once: its KV cache and the logits [1, V] (fp32) of the next token.

        response_from: where a continuation given as token ids starts inside prompt_ids (steering's
        `response` positions touch only those); default: all of it is prompt."""
        response_from = len(prompt_ids) if response_from is None else response_from
        logits, cache = self._pass(model, None, 0, response_from,
                                   input_ids=torch.tensor([prompt_ids], device=self.device), use_cache=True)
        return cache, logits[:, -1, :].float()

    # -- sampling --------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, request: GenerationRequest) -> Iterator[Generation]:
        """Yield each continuation as soon as it ends; sample i depends only on (seed, i)."""
        self.calls += 1
        config = request.config
        model = self._model()
        tokenizer = self._tokenizer()
        prompt_text = self._text_of(request.rendered)
        prompt_ids = self.encode_prompt(prompt_text)
        prompt_len = len(prompt_ids)
        prefix_text = tokenizer.decode(prompt_ids, skip_special_tokens=False)
        stop_ids = self.stop_token_ids()
        started = time.perf_counter()

        def continuation_text(ids: list[int]) -> str:
            full = tokenizer.decode(prompt_ids + ids, skip_special_tokens=False)
            if full.startswith(prefix_text):
                return full[len(prefix_text):]
            return tokenizer.decode(ids, skip_special_tokens=False)

        def finish(row: _Row, reason: FinishReason, text: str, stop_sequence: str | None = None) -> Generation:
            return Generation(
                index=row.index,
                text=text,
                token_ids=row.token_ids,
                tokens=[tokenizer.decode([t]) for t in row.token_ids],
                token_logprobs=row.logprobs,
                finish_reason=reason,
                prompt_tokens=prompt_len,
                completion_tokens=len(row.token_ids),
                latency_s=time.perf_counter() - started,
                top_logprobs=row.top,
                stop_sequence=stop_sequence,
            )

        rows = [
            _Row(s.index, sample_uniforms(s.seed, s.index, config.max_tokens), [], [],
                 [] if config.top_logprobs else None)
            for s in request.slots
        ]
        cache, logits = self._prefill(model, prompt_ids)
        # The cache always holds at least MIN_DECODE_ROWS rows (copies that are thrown away), so
        # that sample i does not depend on how many other samples shared its batch.
        cache.batch_repeat_interleave(max(len(rows), MIN_DECODE_ROWS))
        logits = logits.expand(len(rows), -1)
        vocab = logits.shape[-1]
        seen = None
        if config.repetition_penalty != 1.0 and not config.greedy:
            seen = torch.zeros(len(rows), vocab, dtype=torch.bool, device=self.device)
            seen[:, prompt_ids] = True

        for step in range(config.max_tokens):
            true_logprobs = torch.log_softmax(logits, dim=-1)  # [B, V]: temperature 1, no truncation
            if config.greedy:
                scores = logits
                if config.repetition_penalty != 1.0:
                    scores = sampling_distribution(logits, config.model_copy(update={"temperature": 1.0}), seen)
                picks = scores.argmax(dim=-1)
            else:
                probs = sampling_distribution(logits, config, seen)
                uniforms = torch.from_numpy(np.array([r.uniforms[step] for r in rows]))
                picks = inverse_cdf_pick(probs, uniforms.to(self.device))
            picked_logprobs = true_logprobs.gather(-1, picks.unsqueeze(-1)).squeeze(-1)
            if config.top_logprobs:
                top_values, top_ids = torch.topk(true_logprobs, config.top_logprobs, dim=-1)
                top_values, top_ids = top_values.tolist(), top_ids.tolist()
            picks_list, lp_list = picks.tolist(), picked_logprobs.tolist()

            keep: list[int] = []
            for b, row in enumerate(rows):
                token = picks_list[b]
                row.token_ids.append(token)
                row.logprobs.append(lp_list[b])
                if row.top is not None:
                    row.top.append([TokenLogprob(t, tokenizer.decode([t]), v)
                                    for t, v in zip(top_ids[b], top_values[b], strict=True)])
                if token in stop_ids:
                    yield finish(row, "eos", continuation_text(row.token_ids[:-1]))
                    continue
                if config.stop:
                    text = continuation_text(row.token_ids)
                    hits = [(text.find(s), s) for s in config.stop if s in text]
                    if hits:
                        position, matched = min(hits)
                        yield finish(row, "stop", text[:position], matched)
                        continue
                if step == config.max_tokens - 1:
                    yield finish(row, "length", continuation_text(row.token_ids))
                    continue
                keep.append(b)
            if not keep:
                return
            if len(keep) < len(rows):
                # Finished rows leave the batch so the tail of long runs gets cheaper.
                index = torch.tensor(keep, device=self.device)
                picks = picks[index]
                if seen is not None:
                    seen = seen[index]
                rows = [rows[b] for b in keep]
                padded = keep + [keep[0]] * (MIN_DECODE_ROWS - len(keep))
                cache.batch_select_indices(torch.tensor(padded, device=self.device))
            if seen is not None:
                seen[torch.arange(len(rows)), picks] = True
            width = max(len(rows), MIN_DECODE_ROWS)
            inputs = torch.cat([picks, picks[:1].expand(width - len(rows))]).unsqueeze(-1)
            position = torch.full((width, 1), prompt_len + step, device=self.device)
            step_logits, cache = self._pass(model, cache, prompt_len + step, prompt_len,
                                            input_ids=inputs, position_ids=position, use_cache=True)
            logits = step_logits[: len(rows), -1, :].float()

    # -- scoring ---------------------------------------------------------------------------

    def _continuation_logits(
        self, rendered: RenderedInput, continuations: list[str], chunk: int = SCORE_CHUNK
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """(index, token ids, logits [len + 1, V] fp32) per continuation: the prompt runs once (in float32) and
        its KV cache is reused for every continuation, in right-padded batches of `chunk`."""
        model = self._scoring_model()
        prompt_text = self._text_of(rendered)
        prompt_ids = self.encode_prompt(prompt_text)
        cont_ids = [self._continuation_ids(prompt_text, prompt_ids, c) for c in continuations]
        empty = [c for c, ids in zip(continuations, cont_ids, strict=True) if not ids]
        if empty:
            raise WorkbenchError(
                f"cannot score continuation(s) that tokenise to nothing: {empty!r}; give each candidate some text"
            )
        prompt_cache, first_logits = self._prefill(model, prompt_ids)
        for start in range(0, len(cont_ids), chunk):
            group = cont_ids[start:start + chunk]
            width = max(len(ids) for ids in group)
            rows = max(len(group), MIN_DECODE_ROWS)
            padded = [ids + [ids[-1]] * (width - len(ids)) for ids in group]
            padded += [padded[0]] * (rows - len(group))
            batch = torch.tensor(padded, device=self.device)
            cache = copy.deepcopy(prompt_cache)
            cache.batch_repeat_interleave(rows)
            positions = torch.arange(len(prompt_ids), len(prompt_ids) + width, device=self.device)
            # Right padding needs no mask: under causal attention, pads come after every real token.
            batch_logits, _ = self._pass(model, cache, len(prompt_ids), len(prompt_ids), input_ids=batch,
                                       position_ids=positions.unsqueeze(0).expand(rows, -1), use_cache=False)
            for i, ids in enumerate(group):
                logits = torch.cat([first_logits, batch_logits[i, : len(ids), :].float()], 0)  # [len + 1, V]
                yield start + i, ids, logits

    @torch.inference_mode()
    def score(self, rendered: RenderedInput, continuations: list[str]) -> list[ScoredContinuation]:
        """Logprobs (T=1) of each continuation's tokens; the prompt runs once for all of them."""
        self.calls += 1
        results: list[ScoredContinuation | None] = [None] * len(continuations)
        for i, ids, logits in self._continuation_logits(rendered, continuations):
            logprobs = torch.log_softmax(logits[:-1], dim=-1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
            results[i] = ScoredContinuation(continuations[i], ids, logprobs.tolist())
        return [r for r in results if r is not None]

    def answer_end_mask(self, terminators: list[str]) -> torch.Tensor:
        """[V] bool on this device: tokens whose text starts with a terminator, and the end-of-sequence tokens."""
        key = tuple(sorted(terminators))
        if key in self._end_masks:
            self._end_masks.move_to_end(key)
        else:
            size = self._scoring_model().get_output_embeddings().weight.shape[0]
            texts = weights.vocabulary_texts(self.weights_spec, size)
            self._end_masks[key] = end_token_mask(texts, key, self.stop_token_ids()).to(self.device)
            if len(self._end_masks) > END_MASKS_KEPT:
                self._end_masks.popitem(last=False)
        return self._end_masks[key]

    @torch.inference_mode()
    def score_candidates(
        self, rendered: RenderedInput, continuations: list[str], temperatures: list[float], terminators: list[str]
    ) -> CandidateScores:
        """Tempered logprobs of each continuation and of an answer ending right after it, in one batched pass."""
        self.calls += 1
        if not temperatures or any(t <= 0 for t in temperatures):
            raise WorkbenchError(f"exact scoring needs temperatures above 0, got {temperatures}")
        end_mask = self.answer_end_mask(terminators)
        logprobs = [[0.0] * len(continuations) for _ in temperatures]
        end_logprobs = [[0.0] * len(continuations) for _ in temperatures]
        token_ids: list[list[int]] = [[] for _ in continuations]
        for i, ids, logits in self._continuation_logits(rendered, continuations):
            token_ids[i] = ids
            index = torch.tensor(ids)[:, None]
            for t, temperature in enumerate(temperatures):
                tempered = torch.log_softmax(logits / temperature, dim=-1)  # full vocabulary at every position
                logprobs[t][i] = float(tempered[:-1].gather(-1, index).sum())
                end_logprobs[t][i] = float(torch.logsumexp(tempered[-1][end_mask], dim=0))
        return CandidateScores(list(continuations), token_ids, list(temperatures), logprobs, end_logprobs)

    @torch.inference_mode()
    def next_token_topk(self, rendered: RenderedInput, k: int) -> list[TokenLogprob]:
        """The k most likely next tokens after the input, each decoded alone."""
        self.calls += 1
        tokenizer = self._tokenizer()
        _, logits = self._prefill(self._scoring_model(), self.encode_prompt(self._text_of(rendered)))
        values, ids = torch.topk(torch.log_softmax(logits[0], dim=-1), k)
        return [TokenLogprob(i, tokenizer.decode([i]), v)
                for i, v in zip(ids.tolist(), values.tolist(), strict=True)]

    @torch.inference_mode()
    def next_token_topk_after(self, rendered: RenderedInput, continuation_ids: list[int], k: int) -> list[TokenLogprob]:
        """The k most likely next tokens after the input plus exactly these token ids (no retokenisation).

        Each token's text is what it adds after the continuation, decoded in context (a token decoded
        alone can lose a leading space or split a multi-byte character).
        """
        self.calls += 1
        tokenizer = self._tokenizer()
        prompt_ids = self.encode_prompt(self._text_of(rendered))
        continuation_ids = [int(i) for i in continuation_ids]
        _, logits = self._prefill(self._scoring_model(), prompt_ids + continuation_ids, len(prompt_ids))
        logprobs = torch.log_softmax(logits[0], dim=-1)
        values, ids = torch.topk(logprobs, min(k, logprobs.shape[-1]))
        ids_list = ids.tolist()
        # A few prompt tokens of left context are enough for the tokenizer's boundary rules.
        context = prompt_ids[-8:] + continuation_ids
        before = tokenizer.decode(context, skip_special_tokens=False)
        fulls = tokenizer.batch_decode([context + [i] for i in ids_list], skip_special_tokens=False)
        texts = [f[len(before):] if f.startswith(before) else tokenizer.decode([i])
                 for f, i in zip(fulls, ids_list, strict=True)]
        return [TokenLogprob(i, t, v) for i, t, v in zip(ids_list, texts, values.tolist(), strict=True)]


def _render_within_limits(spec: ModelSpec, tokenizer: Any, template: str | None, messages: tuple[Message, ...],
                          prefill: bool) -> None:
    """Render the chat template once within the render limits, as transformers (which has none) would.

    A registry's template and a checkpoint's own are both untrusted: one that would run or grow past
    the limits is refused here, before transformers renders it; transformers' text is still the one used.
    """
    try:
        render_like_transformers(tokenizer.get_chat_template(template), list(messages),
                                 add_generation_prompt=not prefill, continue_final_message=prefill,
                                 special_tokens=tokenizer.special_tokens_map)
    except (LimitBreach, MemoryError) as exc:
        what = ("its tokenizer's chat template (chat_template: tokenizer)" if template is None
                else f"its chat_template in {user_registry_path()}")
        limit = str(exc) if isinstance(exc, LimitBreach) else "the template ran out of memory; make it build less"
        raise ConfigError(f"model {spec.name!r}: {what}: {limit}") from None
    except (TemplateError, TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError) as exc:
        # The template's own fault (raise_exception, a syntax error, a missing key, endless recursion): transformers,
        # whose environment this one copies, would fail on it too.
        raise ConfigError(chat_template_failure(spec, exc)) from None
    except Exception as exc:  # noqa: BLE001
        # Not the template's fault but a gap between this environment and transformers' (never expected): fall back
        # to transformers, which reports any error of its own, and say that this render ran without the limits.
        LOG.warning("model %r: the chat template could not be checked within the render limits (%s: %s); "
                    "transformers renders it without them", spec.name, type(exc).__name__, exc)


def chat_template_failure(spec: ModelSpec, exc: Exception) -> str:
    """One line for a chat template that failed to render: the model, the field, the error and what to do."""
    error = " ".join(f"{type(exc).__name__}: {exc}".split())
    if spec.chat_template == "tokenizer":
        return (f"model {spec.name!r}: the checkpoint's own chat template (chat_template: tokenizer) failed to render "
                f"these messages ({error}); set chat_template to an inline template, or null for the transcript "
                f"template, in {user_registry_path()}")
    return (f"model {spec.name!r}: its chat_template failed to render ({error}); fix chat_template in "
            f"{user_registry_path()} (or set it to 'tokenizer' for the checkpoint's own template, or null for the "
            "transcript template)")
