"""Turn a prompt into exactly what a model receives.

The rule (DESIGN.md): a completion prompt goes to every model as raw text; a chat prompt uses
the model's chat template when its registry entry has one, else its transcript template, never
silently. The rendered input is stored with every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from jinja2 import StrictUndefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.errors import ConfigError, WorkbenchError
from workbench.registry import ModelSpec, Registry

Message = dict[str, str]
CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class RenderedInput:
    """What a backend receives: raw text (completion) or messages (chat APIs), plus how it was made."""

    mode: Literal["completion", "chat"]
    text: str | None = None
    messages: tuple[Message, ...] | None = None
    # How the text was produced: "raw", "chat-template", or "transcript:<name>".
    template: str = "raw"
    # Stop strings the template asks for (a transcript's next-turn marker).
    extra_stop: tuple[str, ...] = field(default=())

    def cache_fields(self) -> dict[str, Any]:
        """What of the input changes the output: the exact text when there is one, else the messages."""
        if self.text is not None:
            return {"text": self.text}
        return {"messages": list(self.messages or ())}

    def display(self) -> str:
        """A readable one-string version (the text, or the messages as role: content lines)."""
        if self.text is not None:
            return self.text
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages or ())


_SANDBOX = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


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


def render_transcript(messages: tuple[Message, ...], template_source: str) -> str:
    """Write a chat as plain text with a sandboxed Jinja template (no code from files runs)."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = [m for m in messages if m["role"] != "system"]
    ends_with_prefill = turns[-1]["role"] == "assistant"
    try:
        return _SANDBOX.from_string(template_source).render(
            system=system, messages=turns, add_generation_prompt=not ends_with_prefill
        )
    except TemplateError as exc:
        raise ConfigError(f"transcript template failed: {exc}") from None


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


def render(
    prompt: str | list[Message] | tuple[Message, ...],
    model: ModelSpec,
    registry: Registry,
    chat: bool = False,
) -> RenderedInput:
    """Render a prompt for one model: text is a completion unless `chat`; a list of messages is a chat."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise WorkbenchError("the prompt is empty; give some text (or @file)")
        if not chat:
            return render_completion(prompt, model)
        messages = ({"role": "user", "content": prompt},)
    else:
        messages = validate_messages(prompt)

    if model.backend == "anthropic":
        # Chat API: the server applies the model's own template.
        return RenderedInput(mode="chat", messages=messages, template="server-chat-template")
    if model.backend == "openai" and model.kind == "tuned":
        return RenderedInput(mode="chat", messages=messages, template="server-chat-template")

    if model.has_chat_template:
        from workbench.backends.hf import apply_chat_template

        text = apply_chat_template(model, messages)
        return RenderedInput(mode="chat", text=text, messages=messages, template="chat-template")

    template = registry.template(model.transcript_template)
    text = render_transcript(messages, template.template)
    return RenderedInput(
        mode="chat",
        text=text,
        messages=messages,
        template=f"transcript:{model.transcript_template}",
        extra_stop=tuple(template.stop),
    )
