"""Turn a prompt into exactly what a model receives: `render_for_model` is the one function that does it.

The rule: a completion prompt goes to every model as raw text; a chat prompt uses the model's
chat template when its registry entry has one, else its transcript template, never silently. A
library prompt is filled first (variables, perturbation, framing) and its kind decides which.
The rendered input is stored with every sample.

Applying a model's own chat template needs its tokenizer, which only a backend has; the library
never imports a backend, so the caller (the Sampler) passes the template in as `chat_template`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from workbench.errors import ConfigError, WorkbenchError
from workbench.prompts.fill import fill
from workbench.prompts.sandbox import render_template
from workbench.prompts.schema import LibraryPrompt
from workbench.registry import ModelSpec, Registry
from workbench.types import CHAT_ROLES, Message, RenderedInput

# Messages -> the text the model reads (a backend's apply_chat_template, bound to one model).
ChatTemplate = Callable[[tuple[Message, ...]], str]


def validate_messages(messages: Any) -> tuple[Message, ...]:
    """Check a chat: a list of {role, content} with known roles and a system message only first."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise WorkbenchError("a chat prompt needs a non-empty list of messages with 'role' and 'content'")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise WorkbenchError(f"message {i}: expected {{'role': ..., 'content': ...}}, got {m!r}")
        if m["role"] not in CHAT_ROLES:
            raise WorkbenchError(f"message {i}: role {m['role']!r} is not one of {', '.join(CHAT_ROLES)}")
        if m["role"] == "system" and i != 0:
            raise WorkbenchError(f"message {i}: a system message may only come first")
        if not isinstance(m["content"], str):
            raise WorkbenchError(f"message {i}: content must be text")
        checked.append({"role": m["role"], "content": m["content"]})
    if all(m["role"] == "system" for m in checked):
        raise WorkbenchError("a chat prompt needs at least one user or assistant message")
    return tuple(checked)


def render_transcript(messages: tuple[Message, ...], template_source: str, where: str = "transcript template") -> str:
    """Write a chat as plain text with a sandboxed Jinja template (no code from files runs); a failure is a
    one-line ConfigError that starts with `where` (which template, from which file)."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = [m for m in messages if m["role"] != "system"]
    ends_with_prefill = turns[-1]["role"] == "assistant"
    values = {"system": system, "messages": turns, "add_generation_prompt": not ends_with_prefill}
    try:  # within the render limits, like every template (workbench.prompts.limits)
        return render_template(template_source, values, where)
    except ConfigError:
        raise
    except WorkbenchError as exc:
        raise ConfigError(str(exc)) from None


def render_completion(text: str, model: ModelSpec) -> RenderedInput:
    """A raw-text prompt for one model: the text itself, or for a chat-only API an explicit prefill."""
    if model.backend == "anthropic":
        # A chat model continues a document when the document is the start of its own reply.
        # The Messages API rejects a final assistant turn that ends in whitespace, so it is cut
        # (and the cut text is what is stored).
        messages = (
            {"role": "user", "content": model.continuation_instruction},
            {"role": "assistant", "content": text.rstrip()},
        )
        return RenderedInput(mode="completion", messages=messages, template="prefill-continuation")
    if model.backend == "openai" and not model.has_completions_endpoint:
        raise WorkbenchError(
            f"model {model.name!r} is served through chat only (no completions endpoint), so it cannot continue "
            "raw text; send a chat prompt (--chat), or set completions_endpoint: true in its registry entry "
            "if the server has /v1/completions"
        )
    return RenderedInput(mode="completion", text=text, template="raw")


def _render_chat(
    messages: tuple[Message, ...], model: ModelSpec, registry: Registry, chat_template: ChatTemplate | None
) -> RenderedInput:
    if model.backend == "anthropic":
        # Chat API: the server applies the model's own template.
        return RenderedInput(mode="chat", messages=messages, template="server-chat-template")
    if model.backend == "openai" and model.kind == "tuned":
        return RenderedInput(mode="chat", messages=messages, template="server-chat-template")

    if model.has_chat_template:
        if chat_template is None:
            raise WorkbenchError(
                f"model {model.name!r} renders chats with its own chat template, so rendering a chat for it "
                "needs a chat_template (the model's backend applies it: use Sampler.render, or pass "
                "chat_template=...)"
            )
        text = chat_template(messages)
        return RenderedInput(mode="chat", text=text, messages=messages, template="chat-template")

    template = registry.template(model.transcript_template)
    where = f"transcript template {model.transcript_template!r}" + (f" in {template.defined_in}"
                                                                     if template.defined_in else "")
    text = render_transcript(messages, template.template, where)
    return RenderedInput(
        mode="chat",
        text=text,
        messages=messages,
        template=f"transcript:{model.transcript_template}",
        extra_stop=tuple(template.stop),
    )


def render_for_model(
    prompt: str | Sequence[Message] | LibraryPrompt,
    spec: ModelSpec,
    registry: Registry,
    *,
    chat: bool = False,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
    chat_template: ChatTemplate | None = None,
) -> RenderedInput:
    """Exactly what the model `spec` receives for a prompt: text, a list of messages, or a library prompt.

    Text is a completion unless `chat`; messages are a chat. A library prompt is filled with
    `variables`, `perturbation` and `framing` and its (or the framing's) kind decides, so `chat` does
    not apply to it. `chat_template` applies the model's own chat template; it is needed for chats
    on models whose registry entry has one.
    """
    if isinstance(prompt, LibraryPrompt):
        filled = fill(prompt, variables, perturbation, framing)
        if filled.kind == "completion":
            return render_completion(filled.text or "", spec)
        return _render_chat(validate_messages(list(filled.messages or ())), spec, registry, chat_template)
    if variables or perturbation or framing:
        raise WorkbenchError("variables, perturbation and framing apply to library prompts only")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise WorkbenchError("the prompt is empty; give some text (or @file)")
        if not chat:
            return render_completion(prompt, spec)
        return _render_chat(({"role": "user", "content": prompt},), spec, registry, chat_template)
    return _render_chat(validate_messages(prompt), spec, registry, chat_template)
