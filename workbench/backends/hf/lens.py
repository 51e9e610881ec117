"""The hf backend's activation lens: forward passes with a steered model's hooks, capture, text logprobs.

Mixed into HFBackend. Every forward pass of a loaded model (steered or not, from any backend that shares
its weights) runs under that model's lock, with this backend's steering hooks on for that pass only:
two panels steering one model differently never see each other's hooks.

Batches here are right-padded: under causal attention every pad comes after every real token, so no
attention mask or position shift is needed and each row equals a one-at-a-time pass.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.backends.hf.hooks import (
    SteeringPlan,
    build_plan,
    check_layers,
    forward_hooks,
    layer_count,
    model_lock,
    output_tensor,
    site_module,
)
from workbench.backends.hf.passes import forward_pass
from workbench.direction_files import direction_content_hash, load_direction
from workbench.errors import WorkbenchError
from workbench.types import Activations, TextLogprobs, TokenLogprob

POSITIONS = ("last", "prompt-mean", "response-mean", "every")
# The fixed text whose median residual norm per layer is the unit of steering coefficients (median-norm units).
# Changing it changes what every coefficient means: bump steering_spec.NORM_REFERENCE_VERSION with it.
NORM_REFERENCE_TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. On weekdays the reading room "
    "is quiet, and most visitors come to borrow novels, look up old newspapers or use the computers by the "
    "window. In the autumn the staff put together a small exhibition about the history of the town: maps of "
    "the harbour, photographs of the first railway station and letters written by the families who built the "
    "mill on the river. Children's story time is on Saturday, and the café next door sells tea and soup."
)
_NORMS: dict[tuple[str, int], float] = {}
# text_logprobs and next_token_logprobs read a text as if the model had written it: with steering on
# `response` positions, every token after the first is steered (else the damage guards of a response-only
# steering would always read 0 while its continuations fall apart).
GUARD_RESPONSE_FROM = 1


class ActivationMethods:
    """Capture, text logprobs and steered forward passes for HFBackend (which supplies these attributes)."""

    spec: Any
    device: str
    calls: int

    if TYPE_CHECKING:  # supplied by HFBackend; declared only for type checkers so nothing is shadowed
        def _scoring_model(self) -> Any: ...
        def _tokenizer(self) -> Any: ...
        def encode_prompt(self, text: str) -> list[int]: ...
        def _continuation_ids(self, prompt_text: str, prompt_ids: list[int], continuation: str) -> list[int]: ...

    # -- steering ------------------------------------------------------------------------

    def _steering_plan(self, model: Any) -> SteeringPlan | None:
        """This model's steering edits on a loaded model (None when it is not steered).

        Built once per (loaded model, direction content): a direction file replaced in the same session
        (extract --overwrite) gives a new identity and so must give new vectors, never the old ones."""
        steering = self.spec.steering
        if steering is None:
            return None
        plans = self.__dict__.setdefault("_plans", {})
        key = (id(model), direction_content_hash(steering.direction))
        if key not in plans:
            direction = load_direction(steering.direction)
            check_layers(model, steering.layers)
            hidden = model.get_input_embeddings().weight.shape[1]
            if direction.hidden_size != hidden:
                raise WorkbenchError(
                    f"model {self.spec.name!r}: direction {steering.direction!r} has {direction.hidden_size} "
                    f"dimensions (made on {direction.metadata.get('model', '?')}) but {steering.parent!r} has {hidden}")
            vectors = {layer: torch.from_numpy(direction.vector(layer)).to(self.device) for layer in steering.layers}
            if steering.units == "median-norm":
                scales = self.residual_norm_medians(list(steering.layers))
            else:
                scales = {layer: float(vector.norm()) for layer, vector in vectors.items()}
            plans.clear()  # one direction content at a time: an overwritten direction's plans go
            plans[(id(model), direction.content_hash)] = build_plan(
                steering.operator, steering.coefficient, vectors, scales, steering.positions)
            key = (id(model), direction.content_hash)
        return plans[key]

    def _bos_id(self) -> int | None:
        tokenizer = self._tokenizer()
        return tokenizer.bos_token_id if tokenizer.bos_token else None

    def _pass(self, model: Any, cache: Any, first_position: int, response_from: int | torch.Tensor | None,
              **inputs: Any) -> tuple[Any, Any]:
        """One forward pass under the model's lock, with this model's steering hooks (if any) on for it alone."""
        plan = self._steering_plan(model)
        with model_lock(model):
            if plan is None:
                return forward_pass(model, cache, **inputs)
            mask = plan.position_mask(inputs["input_ids"], first_position, response_from, self._bos_id())
            with plan.applied(model, mask):
                return forward_pass(model, cache, **inputs)

    @torch.inference_mode()
    def residual_norm_medians(self, layers: list[int]) -> dict[int, float]:
        """Each layer's median residual norm (over the reference text's tokens but BOS), unsteered, in float32."""
        key = json.dumps(self.spec.weights_fingerprint(), sort_keys=True)
        missing = [layer for layer in layers if (key, layer) not in _NORMS]
        if missing:
            model = self._scoring_model()
            check_layers(model, missing)
            ids = torch.tensor([self.encode_prompt(NORM_REFERENCE_TEXT)], device=self.device)
            seen: dict[int, torch.Tensor] = {}
            hooks = [(site_module(model, layer, "residual"), _recorder(seen, layer)) for layer in missing]
            with model_lock(model), forward_hooks(hooks):
                forward_pass(model, None, input_ids=ids, use_cache=False)  # no steering: the parent's own norms
            skip = 1 if self._bos_id() is not None and int(ids[0, 0]) == self._bos_id() else 0
            for layer in missing:
                _NORMS[(key, layer)] = float(seen[layer][0, skip:].norm(dim=-1).median())
        return {layer: _NORMS[(key, layer)] for layer in layers}

    def layer_count(self) -> int:
        """How many decoder blocks the model has."""
        return layer_count(self._scoring_model())

    def token_row(self, token: str, matrix: str) -> np.ndarray:
        """The embedding or unembedding row of a text that is exactly one token of this model (float32)."""
        ids = self._tokenizer()(token, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise WorkbenchError(f"{token!r} is {len(ids)} tokens for {self.spec.name!r}, not one; pick a text that is "
                                 "a single token (mind the leading space: ' wedding')")
        model = self._scoring_model()
        table = model.get_input_embeddings() if matrix == "embedding" else model.get_output_embeddings()
        if table is None:
            raise WorkbenchError(f"model {self.spec.name!r} has no {matrix} matrix")
        return table.weight[ids[0]].detach().float().cpu().numpy().copy()

    # -- batched passes over texts -----------------------------------------------------------

    def _batches(self, rows: list[list[int]], batch_size: int):
        """(start, [batch, width] right-padded ids, lengths) over rows in order."""
        pad = self._tokenizer().pad_token_id or 0
        for start in range(0, len(rows), batch_size):
            group = rows[start:start + batch_size]
            width = max(len(r) for r in group)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in group], device=self.device)
            yield start, ids, [len(r) for r in group]

    @torch.inference_mode()
    def capture(self, items: list[tuple[str, str]], layers: list[int], site: str, positions: str,
                batch_size: int) -> Activations:
        """Activations at `site` after each block in `layers` for (prompt, response) texts, in float32.

        positions: last (the prompt's last token), prompt-mean (mean over prompt tokens but BOS),
        response-mean (mean over the response's tokens), every (one row per token).
        """
        self.calls += 1
        if positions not in POSITIONS:
            raise WorkbenchError(f"unknown position policy {positions!r}; choose one of {', '.join(POSITIONS)}")
        model = self._scoring_model()
        check_layers(model, layers)
        tokenizer = self._tokenizer()
        rows, prompt_lengths = [], []
        for i, (prompt, response) in enumerate(items):
            prompt_ids = self.encode_prompt(prompt)
            response_ids = self._continuation_ids(prompt, prompt_ids, response) if response else []
            if positions == "response-mean" and not response_ids:
                raise WorkbenchError(f"item {i} has no response text; mean over response needs one")
            rows.append(prompt_ids + response_ids)
            prompt_lengths.append(len(prompt_ids))
        bos = self._bos_id()
        out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        item_index: list[int] = []
        token_index: list[int] = []
        for start, ids, lengths in self._batches(rows, batch_size):
            seen: dict[int, torch.Tensor] = {}
            hooks = [(site_module(model, layer, site), _recorder(seen, layer)) for layer in layers]
            response_from = torch.tensor(prompt_lengths[start:start + len(lengths)], device=self.device)
            with model_lock(model), forward_hooks(hooks):  # the lock first: no other pass may fire our recorders
                self._pass(model, None, 0, response_from, input_ids=ids, use_cache=False)
            for b, length in enumerate(lengths):
                n_prompt = prompt_lengths[start + b]
                skip = 1 if bos is not None and rows[start + b][0] == bos and n_prompt > 1 else 0
                picks = {"last": [n_prompt - 1], "prompt-mean": list(range(skip, n_prompt)),
                         "response-mean": list(range(n_prompt, length)), "every": list(range(length))}[positions]
                for layer in layers:
                    values = seen[layer][b, picks]
                    pooled = values.mean(0, keepdim=True) if positions.endswith("-mean") else values
                    out[layer].append(pooled.cpu().numpy())
                count = len(picks) if positions == "every" else 1
                item_index += [start + b] * count
                token_index += picks if positions in ("every", "last") else [-1]
        tokens = [[tokenizer.decode([t]) for t in row] for row in rows]
        return Activations(list(layers), site, positions, {layer: np.concatenate(out[layer]) for layer in layers},
                           np.array(item_index), np.array(token_index), tokens, batch_size, prompt_lengths)

    @torch.inference_mode()
    def text_logprobs(self, texts: list[str], batch_size: int) -> list[list[float]]:
        """Each text's token logprobs under this model (steered if it is), every token after the first."""
        self.calls += 1
        model = self._scoring_model()
        rows = [self.encode_prompt(text) for text in texts]
        result: list[list[float]] = []
        for _, ids, lengths in self._batches(rows, batch_size):
            logits, _ = self._pass(model, None, 0, GUARD_RESPONSE_FROM, input_ids=ids, use_cache=False)
            logprobs = torch.log_softmax(logits.float()[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            result += [logprobs[b, : length - 1].tolist() for b, length in enumerate(lengths)]
        return result

    @torch.inference_mode()
    def read_text(self, prompt: str, text: str, top_k: int, full: bool) -> TextLogprobs:
        """Per-token logprobs of `text` after `prompt` (one float32 pass; steering on the text as a response),
        the top-k alternatives at each token, and with `full` the whole distributions [tokens, vocabulary]."""
        self.calls += 1
        model = self._scoring_model()
        tokenizer = self._tokenizer()
        prompt_ids = self.encode_prompt(prompt)
        ids = self._continuation_ids(prompt, prompt_ids, text)
        if not ids:
            raise WorkbenchError("the text tokenised to nothing; give some text")
        logits, _ = self._pass(model, None, 0, len(prompt_ids), use_cache=False,
                               input_ids=torch.tensor([prompt_ids + ids], device=self.device))
        logprobs = torch.log_softmax(logits[0, len(prompt_ids) - 1: -1].float(), dim=-1)  # [len(ids), V]
        picked = logprobs.gather(-1, torch.tensor(ids, device=self.device)[:, None])[:, 0].tolist()
        values, top_ids = torch.topk(logprobs, top_k, dim=-1)
        top = [[TokenLogprob(int(t), tokenizer.decode([int(t)]), float(v)) for t, v in zip(row_ids, row_values)]
               for row_ids, row_values in zip(top_ids.tolist(), values.tolist(), strict=True)]
        pieces, spans = token_offsets(tokenizer, prompt_ids, ids, text)
        return TextLogprobs(ids, pieces, spans, picked, top, logprobs.cpu().numpy() if full else None)

    @torch.inference_mode()
    def next_token_logprobs(self, texts: list[str], batch_size: int) -> np.ndarray:
        """[texts, vocabulary] float32 log-probabilities of the next token after each text (steered if it is)."""
        self.calls += 1
        model = self._scoring_model()
        rows = [self.encode_prompt(text) for text in texts]
        result = []
        for _, ids, lengths in self._batches(rows, batch_size):
            logits, _ = self._pass(model, None, 0, GUARD_RESPONSE_FROM, input_ids=ids, use_cache=False)
            last = logits[torch.arange(len(lengths)), torch.tensor(lengths) - 1].float()
            result.append(torch.log_softmax(last, dim=-1).cpu().numpy())
        return np.concatenate(result)


def token_offsets(tokenizer: Any, prefix_ids: list[int], ids: list[int],
                  text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Each token's text and [start, end) span in `text`, decoded in context (a token decoded alone can lose a
    leading space or split a multi-byte character); spans are clipped to the text."""
    prefix_ids = prefix_ids[-8:]  # a few tokens of left context are enough for the tokenizer's boundary rules
    before = tokenizer.decode(prefix_ids, skip_special_tokens=False)
    pieces, spans, previous = [], [], 0
    for i in range(len(ids)):
        decoded = tokenizer.decode(prefix_ids + ids[: i + 1], skip_special_tokens=False)
        end = len(decoded) - len(before) if decoded.startswith(before) else previous
        end = max(previous, min(end, len(text)))
        pieces.append(text[previous:end])
        spans.append((previous, end))
        previous = end
    return pieces, spans


def _recorder(seen: dict[int, torch.Tensor], layer: int):
    """A forward hook that keeps the module's output (float32) under `layer`."""
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        seen[layer] = output_tensor(output).detach().float()
    return hook


__all__ = ["NORM_REFERENCE_TEXT", "POSITIONS", "ActivationMethods"]
