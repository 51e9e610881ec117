"""Scoped forward hooks on plain transformers modules: activation capture and steering.

Nothing here re-implements a model: hooks read or replace a module's output, and are always removed
in `finally`, so with no hook active the logits are exactly transformers'. Sites, per block L (0-based):
- residual: the decoder block's output, the residual stream after block L (= output_hidden_states[L + 1]
  for every block but the last, whose hidden state transformers reports after the final norm);
- attention: the block's self-attention module output (before any post-attention norm);
- mlp: the block's MLP output (before any post-feedforward norm).

Steering runs in float32 inside the hook whatever dtype the model runs in (a projection computed in
bf16 would leave bf16 rounding of the whole residual behind), then casts back once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from workbench.errors import WorkbenchError

Site = Literal["residual", "attention", "mlp"]
SITES: tuple[str, ...] = ("residual", "attention", "mlp")
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The one lock of a loaded model: every forward pass of every backend sharing it (steered or not) holds it,
    so one panel's steering hooks are never on the model while another panel's forward pass runs."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(model), threading.RLock())


def decoder_layers(model: Any) -> Any:
    """The model's decoder blocks (Gemma-3, Llama, Qwen, Mistral: model.model.layers; GPT-2 style: transformer.h)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        node = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None and hasattr(node, "__len__") and len(node) > 0:
            return node
    raise WorkbenchError(f"cannot find the decoder blocks of {type(model).__name__} (looked for model.layers and "
                         "transformer.h); activation capture and steering need a decoder that exposes its layers")


def layer_count(model: Any) -> int:
    """How many decoder blocks the model has."""
    return len(decoder_layers(model))


def check_layers(model: Any, layers: list[int] | tuple[int, ...]) -> None:
    """An error naming the valid range when a layer is not a block of this model."""
    count = layer_count(model)
    bad = [layer for layer in layers if not 0 <= layer < count]
    if bad:
        raise WorkbenchError(f"layer(s) {', '.join(map(str, bad))} out of range: this model has blocks 0-{count - 1}")


def site_module(model: Any, layer: int, site: str) -> Any:
    """The module whose output is the site's activation after block `layer`."""
    block = decoder_layers(model)[layer]
    if site == "residual":
        return block
    names = {"attention": ("self_attn", "attn", "attention"), "mlp": ("mlp", "feed_forward")}.get(site)
    if names is None:
        raise WorkbenchError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    for name in names:
        if hasattr(block, name):
            return getattr(block, name)
    raise WorkbenchError(f"block {layer} of {type(model).__name__} has no {site} module ({' or '.join(names)})")


def output_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a module's output (blocks and attention may return tuples)."""
    return output[0] if isinstance(output, tuple) else output


def replace_output(output: Any, tensor: torch.Tensor) -> Any:
    """The module output with its hidden-state tensor replaced."""
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def forward_hooks(hooks: list[tuple[Any, Callable[..., Any]]], prepend: bool = False) -> Iterator[None]:
    """Register (module, hook) forward hooks for the duration of the block; always removed, also on errors."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook, prepend=prepend))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class LayerEdit:
    """What steering does after one block: project `unit` out (ablate) and/or add `added` (float32 [hidden])."""

    unit: torch.Tensor
    added: torch.Tensor | None
    ablate: bool

    def apply(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """hidden [batch, tokens, hidden] edited at the positions where mask [batch, tokens] is True (None: all)."""
        x = hidden.float()
        edited = x
        if self.ablate:
            edited = edited - (edited @ self.unit)[..., None] * self.unit
        if self.added is not None:
            edited = edited + self.added
        if mask is not None:
            edited = torch.where(mask[..., None], edited, x)
        return edited.to(hidden.dtype)


@dataclass(frozen=True)
class SteeringPlan:
    """A steered model's edits per block, and which positions they touch."""

    edits: dict[int, LayerEdit]
    positions: str  # all-but-bos | all | response

    def position_mask(self, input_ids: torch.Tensor, first_position: int, response_from: int | torch.Tensor | None,
                      bos_id: int | None) -> torch.Tensor | None | bool:
        """Where one forward pass over input_ids [batch, tokens] is edited: None (everywhere), False (nowhere)
        or a [batch, tokens] bool mask.

        first_position is the absolute position of the pass's first token (0 for a pass over a whole text,
        the prompt length for a decoding step); response_from is where each row's continuation starts
        (an int, or a [batch] tensor; None when the whole pass is continuation).
        """
        if self.positions == "all":
            return None
        absolute = first_position + torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        if self.positions == "response":
            if response_from is None:
                return None
            start = response_from[:, None] if isinstance(response_from, torch.Tensor) else response_from
            mask = (absolute >= start).expand(input_ids.shape[0], -1)
            return False if not bool(mask.any()) else (None if bool(mask.all()) else mask)
        if first_position > 0 or bos_id is None:
            return None
        mask = ~((absolute == 0) & (input_ids == bos_id))
        return None if bool(mask.all()) else mask

    @contextmanager
    def applied(self, model: Any, mask: torch.Tensor | None | bool) -> Iterator[None]:
        """The steering hooks on `model` for one forward pass (prepended: a capture hook sees the steered stream)."""
        if mask is False or not self.edits:
            yield
            return

        def hook_for(edit: LayerEdit) -> Callable[..., Any]:
            def hook(_module: Any, _inputs: Any, output: Any) -> Any:
                hidden = output_tensor(output)
                step_mask = mask if isinstance(mask, torch.Tensor) and mask.shape == hidden.shape[:2] else None
                return replace_output(output, edit.apply(hidden, step_mask))
            return hook

        hooks = [(site_module(model, layer, "residual"), hook_for(edit)) for layer, edit in self.edits.items()]
        with forward_hooks(hooks, prepend=True):
            yield


def build_plan(operator: str, coefficient: float, vectors: dict[int, torch.Tensor], scales: dict[int, float],
               positions: str) -> SteeringPlan:
    """The edits for a steering: per layer, the unit direction and what is added (coefficient x scale x unit).

    `scales` are the layers' median residual norms (median-norm units) or each vector's own norm (raw units,
    so coefficient x unit x norm = coefficient x the vector as saved).
    """
    edits: dict[int, LayerEdit] = {}
    for layer, vector in vectors.items():
        vector = vector.float()
        norm = float(vector.norm())
        if norm == 0.0:
            raise WorkbenchError(f"the direction's vector at layer {layer} is all zeros; it cannot steer")
        unit = vector / norm
        added = None
        if operator in ("add", "ablate-add") and coefficient != 0.0:
            added = unit * (coefficient * scales[layer])
        ablate = operator in ("ablate", "ablate-add")
        if added is None and not ablate:
            continue  # add 0: no hook at all, so the output is bit-identical to the parent's
        edits[layer] = LayerEdit(unit, added, ablate)
    return SteeringPlan(edits, positions)


__all__ = [
    "SITES",
    "LayerEdit",
    "Site",
    "SteeringPlan",
    "build_plan",
    "check_layers",
    "decoder_layers",
    "forward_hooks",
    "layer_count",
    "model_lock",
    "output_tensor",
    "replace_output",
    "site_module",
]
