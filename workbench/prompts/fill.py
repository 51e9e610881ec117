"""Fill a library prompt's templates: its variables, one grid choice, a perturbation's segue and a framing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from workbench.errors import WorkbenchError
from workbench.prompts.answers import choice_label
from workbench.prompts.sandbox import RenderLimitError, render_template
from workbench.prompts.schema import CHOICES_SLOT, OPTIONS_SLOT, SEGUE_SLOT, LibraryPrompt
from workbench.types import Message


@dataclass(frozen=True)
class FilledPrompt:
    """A library prompt with its templates filled: raw text or messages, before any model template."""

    kind: Literal["completion", "chat"]
    text: str | None
    messages: tuple[Message, ...] | None
    ref: str  # collection/prompt-id with the choices made, e.g. personas/x?framing=chat


class PromptChoices(TypedDict, total=False):
    """How a library prompt is filled: its variables, a segue (perturbation) and a framing; None = the default."""

    variables: dict[str, Any] | None
    perturbation: str | None
    framing: str | None


def fill(
    prompt: LibraryPrompt,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
) -> FilledPrompt:
    """Fill a prompt's templates (or a framing's) with its variables, a grid choice and a segue.

    Each template renders within the render limits (workbench.prompts.limits); breaching one is a
    RenderLimitError that names the prompt's file.
    """
    try:
        return _fill(prompt, variables, perturbation, framing)
    except RenderLimitError as exc:
        raise RenderLimitError(f"{prompt.path}: {exc}") from None


def _fill(
    prompt: LibraryPrompt,
    variables: dict[str, Any] | None,
    perturbation: str | None,
    framing: str | None,
) -> FilledPrompt:
    spec = prompt.spec
    values: dict[str, Any] = {**spec.variables}
    chosen = dict(variables or {})
    for name, value in chosen.items():
        if name in spec.grid and value not in spec.grid[name]:
            raise WorkbenchError(f"{prompt.ref}: {name}={value!r} is not one of its grid values {spec.grid[name]}")
    chosen = {**{name: grid_values[0] for name, grid_values in spec.grid.items()}, **chosen}  # first variant
    values.update(chosen)
    if spec.options:
        values.update(_option_values(prompt, chosen.get(OPTIONS_SLOT)))
    elif OPTIONS_SLOT in chosen:
        raise WorkbenchError(f"{prompt.ref}: has no options to reorder")
    if perturbation is not None and perturbation not in spec.perturbations:
        offered = ", ".join(spec.perturbations) or "none"
        raise WorkbenchError(f"{prompt.ref}: no perturbation {perturbation!r} (this prompt offers: {offered})")
    values[SEGUE_SLOT] = spec.perturbations[perturbation] if perturbation else ""

    qualifiers = [f"{k}={v}" for k, v in sorted(chosen.items())]
    if perturbation:
        qualifiers.append(f"perturbation={perturbation}")
    if framing:
        qualifiers.append(f"framing={framing}")
    ref = prompt.ref + ("?" + "&".join(qualifiers) if qualifiers else "")

    if framing:
        try:
            body = prompt.framing(framing).body_for(spec.multiple_choice)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{prompt.ref}: framing {framing}: {exc}") from None
        kind, text_source, message_sources = body.kind, body.text, body.messages
        # A framing sees the prompt's own filled text as {{ prompt }} too.
        if spec.text is not None:
            values.setdefault("prompt", render_template(spec.text, values, f"{prompt.ref}: text").strip())
        where = f"{prompt.ref}: framing {framing}"
    else:
        kind, text_source, message_sources = spec.kind, spec.text, spec.messages
        where = prompt.ref
    if kind == "completion":
        return FilledPrompt("completion", render_template(text_source or "", values, where), None, ref)
    messages = tuple(
        {"role": m.role, "content": render_template(m.content, values, f"{where}: messages.{i}")}
        for i, m in enumerate(message_sources or [])
    )
    return FilledPrompt("chat", None, messages, ref)


def _option_values(prompt: LibraryPrompt, order: Any) -> dict[str, Any]:
    """{{ options }} and the {{ choices }} block of a multiple-choice item; `order` may reorder its options
    (the same options in another order: a position-bias control)."""
    options = list(prompt.spec.options)
    if order is not None:
        if not isinstance(order, list | tuple) or sorted(map(str, order)) != sorted(options):
            raise WorkbenchError(f"{prompt.ref}: options={order!r} must be its options in some order: {options}")
        options = list(order)
    block = "\n".join(f" {choice_label(i)} {text}" for i, text in enumerate(options))
    return {OPTIONS_SLOT: options, CHOICES_SLOT: block}
