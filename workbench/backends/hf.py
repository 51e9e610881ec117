"""The transformers backend: local checkpoints on CPU (bf16 where fast) or CUDA.

Decoding is our own loop over the KV cache rather than `model.generate`, because each sample
draws from its own random stream keyed by (seed, sample index): the prompt is run once, its
cache repeated for the batch, and each row picks its token by inverse CDF with one uniform per
step from its own stream. Sample i is then the same whatever batch it runs in, and extending
a run never repeats or shifts earlier randomness.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch

from workbench.backends.base import (
    CandidateScores,
    EngineInfo,
    Generation,
    GenerationRequest,
    ScoredContinuation,
    TokenProb,
    TopLogprob,
)
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.home import models_dir
from workbench.registry import ModelSpec, locate_gguf_package_dir
from workbench.rendering import Message, RenderedInput

PREPARED_MARKER = "workbench-prepared.json"
# Bumping this changes every hf cache key: do it only when the sampling algorithm changes.
SAMPLING_ALGORITHM = "inverse-cdf-v1"
THREADS_ENV = "WORKBENCH_THREADS"
MIN_DECODE_ROWS = 2
SCORE_CHUNK = 64  # continuations per scoring batch: bounds the [batch, length, vocab] logits in memory


# --------------------------------------------------------------------------------------------
# Device, dtype, threads
# --------------------------------------------------------------------------------------------


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (bf16 is ~2x faster than fp32 there)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(spec: ModelSpec, device: str | None = None) -> str:
    """The dtype a model runs in: its registry dtype, with 'auto' resolved for the device."""
    if spec.dtype != "auto":
        return spec.dtype
    device = device or default_device()
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def apply_thread_setting(threads: int | None) -> None:
    """Set torch's CPU thread count from the argument or $WORKBENCH_THREADS (unset: torch's default)."""
    value = threads or os.environ.get(THREADS_ENV)
    if value:
        try:
            torch.set_num_threads(int(value))
        except ValueError:
            raise WorkbenchError(f"${THREADS_ENV} must be a whole number of threads, got {value!r}") from None


# --------------------------------------------------------------------------------------------
# Preparing weights: GGUF -> bf16 safetensors, once
# --------------------------------------------------------------------------------------------


def prepared_dir(spec: ModelSpec) -> Path:
    """Where the prepared weights of a registry model live."""
    return models_dir() / spec.name


def gguf_path(spec: ModelSpec) -> Path:
    """The GGUF file of a package-shipped model (assembled from chunks once if the package splits it)."""
    src = spec.source
    if not src.gguf_package:
        raise WorkbenchError(f"model {spec.name!r} is not shipped as a GGUF")
    package_dir = locate_gguf_package_dir(src)
    if not src.assemble:
        path = package_dir / str(src.gguf_file)
        if not path.is_file():
            raise WorkbenchError(f"{path} is missing; reinstall with: {src.install}")
        return path
    import importlib

    module = importlib.import_module(str(src.gguf_module))
    target = models_dir() / ".gguf" / str(src.gguf_file)
    return Path(module.assemble(target))


def is_prepared(spec: ModelSpec) -> bool:
    """Whether prepared weights exist and were made from the weights the registry names now."""
    marker = prepared_dir(spec) / PREPARED_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return recorded.get("weights") == spec.weights_fingerprint()


def needs_preparation(spec: ModelSpec) -> bool:
    """GGUF-shipped models are converted once; transformers checkpoints load as they are."""
    return bool(spec.source.gguf_package)


def prepare_model(spec: ModelSpec, force: bool = False) -> Path:
    """Convert a GGUF to bf16 safetensors in the model cache (~1 min once; later loads take seconds)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not needs_preparation(spec):
        return Path(spec.source.path or "")
    target = prepared_dir(spec)
    if is_prepared(spec) and not force:
        return target
    started = time.perf_counter()
    gguf = gguf_path(spec)
    print(f"preparing {spec.name}: dequantising {gguf.name} once (about a minute)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Loading packed GGUF weights is fastest in float32; we cast to bf16 for storage.
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    # A GGUF-loaded model refuses save_pretrained; a plain model built from its config does not.
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / PREPARED_MARKER).write_text(
        json.dumps(
            {
                "weights": spec.weights_fingerprint(),
                "from": str(gguf),
                "saved_dtype": "bfloat16",
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a killed preparation never leaves a half-written model
    print(f"prepared {spec.name} in {time.perf_counter() - started:.0f} s -> {target}", file=sys.stderr)
    return target


def checkpoint_location(spec: ModelSpec) -> str:
    """The directory or hub id transformers loads, preparing a GGUF model first if needed.

    For a fine-tuned variant (`parent` + `source.adapter`) this is the parent's checkpoint; the
    adapter is applied on loading (see adapter_location).
    """
    if spec.parent:
        return checkpoint_location(spec.parent_spec)
    src = spec.source
    if src.gguf_package:
        return str(prepare_model(spec))
    if src.path:
        path = Path(src.path).expanduser()
        if not path.is_dir():
            raise WorkbenchError(f"model {spec.name!r}: source.path {path} is not a directory")
        return str(path)
    return str(src.hf_id)


def adapter_location(spec: ModelSpec) -> str:
    """The checked adapter folder of a fine-tuned variant ("" for other models).

    Checks that the adapter files exist and that the adapter was trained on this model's parent,
    so a wrong path or a mixed-up adapter fails with a message instead of loading silently.
    """
    if not spec.parent:
        return ""
    from workbench.registry import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    folder = spec.source.adapter_dir()
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if not (folder / name).is_file():
            raise WorkbenchError(
                f"model {spec.name!r}: adapter file {folder / name} is missing; regenerate the planted variants "
                f"with `make tuned-models` (or `workbench tune --all`), or fix source.adapter in the registry"
            )
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"model {spec.name!r}: {folder / ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    trained_on = config.get("base_model_name_or_path")
    if trained_on != spec.parent:
        raise WorkbenchError(
            f"model {spec.name!r}: the adapter in {folder} was trained on {trained_on!r}, but the registry "
            f"says its parent is {spec.parent!r}; point source.adapter at an adapter of {spec.parent!r} "
            f"or set parent: {trained_on}"
        )
    return str(folder)


# --------------------------------------------------------------------------------------------
# Loading (one copy per process) and rendering helpers
# --------------------------------------------------------------------------------------------

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _load_tokenizer_cached(location: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    return tokenizer


def load_tokenizer(spec: ModelSpec):
    """The model's tokenizer (offline: from the prepared or local checkpoint)."""
    with _LOAD_LOCK:
        return _load_tokenizer_cached(checkpoint_location(spec))


@lru_cache(maxsize=3)
def _load_model_cached(location: str, dtype: str, device: str, adapter: str = "", adapter_digest: str = ""):
    from transformers import AutoModelForCausalLM

    if not adapter:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
        return model.to(device).eval()
    try:
        from peft import PeftModel
    except ImportError:
        raise WorkbenchError("fine-tuned variants need peft; run: pip install 'peft>=0.17'") from None
    # Merge in float32, then cast once: adding a small LoRA delta to bf16 weights rounds it twice.
    base = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    return merged.to(dtype=getattr(torch, dtype), device=device).eval()


def load_model(spec: ModelSpec, dtype: str, device: str):
    """The model, loaded once per process per (checkpoint, adapter, dtype, device); adapters are merged in."""
    with _LOAD_LOCK:
        adapter = adapter_location(spec)
        digest = spec.weights_fingerprint()["adapter"] if adapter else ""
        return _load_model_cached(checkpoint_location(spec), dtype, device, adapter, digest)


@lru_cache(maxsize=4)
def _vocabulary_texts(location: str, size: int) -> tuple[str, ...]:
    """Every token id decoded alone, once per process per checkpoint (262k decodes for Gemma take ~1 s;
    every Sampler and backend instance shares them)."""
    return tuple(_load_tokenizer_cached(location).batch_decode([[i] for i in range(size)]))


def apply_chat_template(spec: ModelSpec, messages: tuple[Message, ...] | list[Message]) -> str:
    """Render messages with the model's chat template; an assistant message last is continued (prefill)."""
    tokenizer = load_tokenizer(spec)
    template = None if spec.chat_template == "tokenizer" else spec.chat_template
    if template is None and not tokenizer.chat_template:
        raise WorkbenchError(
            f"model {spec.name!r} says chat_template: tokenizer, but its tokenizer has none; "
            "set chat_template: null to use the transcript template"
        )
    prefill = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(
        list(messages),
        chat_template=template,
        tokenize=False,
        add_generation_prompt=not prefill,
        continue_final_message=prefill,
    )


# --------------------------------------------------------------------------------------------
# Sampling maths
# --------------------------------------------------------------------------------------------


def sample_uniforms(seed: int, index: int, steps: int) -> np.ndarray:
    """The uniforms sample `index` uses, one per step, from a stream keyed by (seed, index) only."""
    return np.random.default_rng([seed, index]).random(steps)


def sampling_distribution(logits: torch.Tensor, config: SamplingConfig, seen: torch.Tensor | None) -> torch.Tensor:
    """Probabilities to sample from after penalty, temperature, top-k, top-p and min-p. logits: [B, V] fp32."""
    x = logits
    if seen is not None and config.repetition_penalty != 1.0:
        penalised = torch.where(x > 0, x / config.repetition_penalty, x * config.repetition_penalty)
        x = torch.where(seen, penalised, x)
    x = x / config.temperature
    vocab = x.shape[-1]
    if 0 < config.top_k < vocab:
        kth = torch.topk(x, config.top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if config.top_p < 1.0:
        # Only sort when asked: a full-vocabulary sort is the most expensive step here.
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        sorted_p = torch.softmax(sorted_x, dim=-1)
        mass_before = torch.cumsum(sorted_p, dim=-1) - sorted_p
        drop_sorted = mass_before >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if config.min_p > 0.0:
        floor = probs.max(dim=-1, keepdim=True).values * config.min_p
        probs = torch.where(probs < floor, torch.zeros_like(probs), probs)
    return probs


def inverse_cdf_pick(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row: the first whose cumulative probability exceeds u * total. probs [B, V], uniforms [B]."""
    cdf = torch.cumsum(probs, dim=-1)
    targets = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    picks = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return picks.clamp(max=probs.shape[-1] - 1)


@dataclass
class _Row:
    """A continuation being decoded."""

    index: int
    uniforms: np.ndarray
    token_ids: list[int]
    logprobs: list[float]
    top: list[list[TopLogprob]] | None


class HFBackend:
    """Local transformers models."""

    name: ClassVar[str] = "hf"
    supports_logprobs: ClassVar[bool] = True
    supports_score: ClassVar[bool] = True
    supports_next_token_topk: ClassVar[bool] = True
    supports_candidate_scoring: ClassVar[bool] = True
    cache_version: ClassVar[str] = SAMPLING_ALGORITHM

    def __init__(self, spec: ModelSpec, device: str | None = None, threads: int | None = None) -> None:
        self.spec = spec
        self.device = device or default_device()
        self.dtype = resolve_dtype(spec, self.device)
        apply_thread_setting(threads)
        self.calls = 0  # generate/score/topk calls: lets tests prove a cache hit touched no model
        self._end_masks: dict[tuple[str, ...], torch.Tensor] = {}

    # -- identity and provenance ---------------------------------------------------------

    def resolved_dtype(self) -> str:
        return self.dtype

    def engine_info(self) -> EngineInfo:
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
            },
        )

    # -- helpers -------------------------------------------------------------------------

    def _model(self):
        return load_model(self.spec, self.dtype, self.device)

    def _tokenizer(self):
        return load_tokenizer(self.spec)

    def _stop_token_ids(self) -> set[int]:
        tokenizer = self._tokenizer()
        ids: set[int] = set()
        configured = getattr(self._model().generation_config, "eos_token_id", None)
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

    def _continuation_ids(self, prompt_text: str, prompt_ids: list[int], continuation: str) -> list[int]:
        """Tokens of a continuation as the model would see it after the prompt (tokenised together)."""
        tokenizer = self._tokenizer()
        together = self.encode_prompt(prompt_text + continuation)
        if together[: len(prompt_ids)] == prompt_ids and len(together) > len(prompt_ids):
            return together[len(prompt_ids):]
        return tokenizer(continuation, add_special_tokens=False).input_ids

    @staticmethod
    def _text_of(rendered: RenderedInput) -> str:
        if rendered.text is None:
            raise WorkbenchError("the hf backend needs a rendered text input")
        return rendered.text

    def _prefill(self, prompt_ids: list[int]):
        model = self._model()
        ids = torch.tensor([prompt_ids], device=self.device)
        out = model(input_ids=ids, use_cache=True)
        return out.past_key_values, out.logits[:, -1, :].float()

    # -- the protocol ----------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, request: GenerationRequest) -> Iterator[Generation]:
        self.calls += 1
        config = request.config
        model = self._model()
        tokenizer = self._tokenizer()
        prompt_text = self._text_of(request.rendered)
        prompt_ids = self.encode_prompt(prompt_text)
        prompt_len = len(prompt_ids)
        prefix_text = tokenizer.decode(prompt_ids, skip_special_tokens=False)
        stop_ids = self._stop_token_ids()
        started = time.perf_counter()

        def continuation_text(ids: list[int]) -> str:
            full = tokenizer.decode(prompt_ids + ids, skip_special_tokens=False)
            if full.startswith(prefix_text):
                return full[len(prefix_text):]
            return tokenizer.decode(ids, skip_special_tokens=False)

        def finish(row: _Row, reason: str, text: str, stop_sequence: str | None = None) -> Generation:
            return Generation(
                index=row.index,
                text=text,
                token_ids=row.token_ids,
                tokens=[tokenizer.decode([t]) for t in row.token_ids],
                token_logprobs=row.logprobs,
                finish_reason=reason,  # type: ignore[arg-type]
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
        cache, logits = self._prefill(prompt_ids)
        # The cache always holds at least MIN_DECODE_ROWS rows: a lone row is decoded beside a
        # copy of itself that is thrown away, because one-row matmuls take another kernel whose
        # bf16 rounding differs (up to ~0.3 in a logit here), and sample i must not depend on
        # how many other samples shared its batch.
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
                    row.top.append(
                        [TopLogprob(t, tokenizer.decode([t]), v) for t, v in zip(top_ids[b], top_values[b])]
                    )
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
            out = model(input_ids=inputs, position_ids=position, past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[: len(rows), -1, :].float()

    def _continuation_logits(
        self, rendered: RenderedInput, continuations: list[str], chunk: int = SCORE_CHUNK
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """(index, token ids, logits [len + 1, V] fp32) per continuation: the prompt runs once and its KV
        cache is reused for every continuation, in right-padded batches of `chunk`."""
        model = self._model()
        prompt_text = self._text_of(rendered)
        prompt_ids = self.encode_prompt(prompt_text)
        cont_ids = [self._continuation_ids(prompt_text, prompt_ids, c) for c in continuations]
        empty = [c for c, ids in zip(continuations, cont_ids) if not ids]
        if empty:
            raise WorkbenchError(
                f"cannot score continuation(s) that tokenise to nothing: {empty!r}; give each candidate some text"
            )
        prompt_cache, first_logits = self._prefill(prompt_ids)
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
            out = model(input_ids=batch, position_ids=positions.unsqueeze(0).expand(rows, -1),
                        past_key_values=cache, use_cache=False)
            for i, ids in enumerate(group):
                logits = torch.cat([first_logits, out.logits[i, : len(ids), :].float()], 0)  # [len + 1, V]
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
        """[V] bool: tokens whose text starts with a terminator, and the end-of-sequence tokens."""
        key = tuple(sorted(terminators))
        if key not in self._end_masks:
            texts = self._token_texts()
            mask = torch.tensor([bool(t) and t.startswith(key) for t in texts]) if key else torch.zeros(len(texts),
                                                                                                        dtype=torch.bool)
            mask[list(self._stop_token_ids())] = True
            self._end_masks[key] = mask.to(self.device)
        return self._end_masks[key]

    def _token_texts(self) -> tuple[str, ...]:
        size = self._model().get_output_embeddings().weight.shape[0]
        return _vocabulary_texts(checkpoint_location(self.spec), size)

    @torch.inference_mode()
    def score_candidates(
        self, rendered: RenderedInput, continuations: list[str], temperatures: list[float], terminators: list[str]
    ) -> CandidateScores:
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
    def next_token_topk(self, rendered: RenderedInput, k: int) -> list[TokenProb]:
        self.calls += 1
        tokenizer = self._tokenizer()
        _, logits = self._prefill(self.encode_prompt(self._text_of(rendered)))
        values, ids = torch.topk(torch.log_softmax(logits[0], dim=-1), k)
        return [TokenProb(i, tokenizer.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist())]

    # -- branch trees (additive: exact-id conditioning, context length, stop tokens) ----------

    @torch.inference_mode()
    def next_token_topk_after(self, rendered: RenderedInput, continuation_ids: list[int], k: int) -> list[TokenProb]:
        """The k most likely next tokens after the input plus exactly these token ids (no retokenisation).

        Each token's text is what it adds after the continuation, decoded in context (a token decoded
        alone can lose a leading space or split a multi-byte character).
        """
        self.calls += 1
        tokenizer = self._tokenizer()
        prompt_ids = self.encode_prompt(self._text_of(rendered))
        continuation_ids = [int(i) for i in continuation_ids]
        _, logits = self._prefill(prompt_ids + continuation_ids)
        logprobs = torch.log_softmax(logits[0], dim=-1)
        values, ids = torch.topk(logprobs, min(k, logprobs.shape[-1]))
        ids_list = ids.tolist()
        # A few prompt tokens of left context are enough for the tokenizer's boundary rules.
        context = prompt_ids[-8:] + continuation_ids
        before = tokenizer.decode(context, skip_special_tokens=False)
        fulls = tokenizer.batch_decode([context + [i] for i in ids_list], skip_special_tokens=False)
        texts = [f[len(before):] if f.startswith(before) else tokenizer.decode([i]) for f, i in zip(fulls, ids_list)]
        return [TokenProb(i, t, v) for i, t, v in zip(ids_list, texts, values.tolist())]

    def count_tokens(self, rendered: RenderedInput) -> int:
        """How many positions the rendered input takes (BOS included)."""
        return len(self.encode_prompt(self._text_of(rendered)))

    def context_length(self) -> int | None:
        """The most positions the model takes (config max_position_embeddings), read without loading weights."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(checkpoint_location(self.spec))
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        value = getattr(text_config, "max_position_embeddings", None)
        return int(value) if value else None

    def stop_token_ids(self) -> set[int]:
        """Token ids that end a continuation (EOS and the generation config's end tokens)."""
        return set(self._stop_token_ids())
