"""Chat templates rendered within the render limits, in an environment set up like transformers'.

transformers renders a chat template (a registry's inline one or a checkpoint's own) in jinja's
immutable sandbox with no limit on time or size. Before a backend hands a template to
transformers, it renders it once here, in the limited sandbox (workbench.guarded.jinja) with what
transformers' environment has (transformers.utils.chat_template_utils, `_compile_jinja_template`):
trim_blocks and lstrip_blocks, the loop controls, the `{% generation %}` tag, the globals
raise_exception and strftime_now, and its tojson filter; and with the variables transformers passes
(messages, tools, documents, add_generation_prompt and the tokenizer's special tokens). A template
that would run or grow past the limits is refused before transformers ever sees it.

The environment may be looser than transformers' (jinja's own `dict` and `namespace` rather than
its restricted ones) but never stricter, so a template transformers renders also renders here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser

from workbench.guarded.jinja import LimitedSandbox, json_within_limits, render_source
from workbench.guarded.limits import RenderLimits

# transformers appends this to the final message when continuing it, and cuts the text there.
CONTINUE_FINAL_MESSAGE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: transformers marks the assistant's text with it (to mask
    tokens in training); here it only renders its body, which the sandbox limits like any other."""

    tags = {"generation"}

    def parse(self, parser: Parser) -> nodes.Node:
        """The body up to `{% endgeneration %}`, rendered where the tag stands."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(format: str) -> str:  # transformers' name, which a template may pass by keyword
    return datetime.now().strftime(format)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """transformers' tojson (json.dumps with its options, no HTML escaping), within the render limits."""
    return json_within_limits(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                              sort_keys=sort_keys)


def _chat_sandbox() -> LimitedSandbox:
    environment = LimitedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment


CHAT_SANDBOX = _chat_sandbox()


def render_like_transformers(
    template: str,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = False,
    continue_final_message: bool = False,
    special_tokens: dict[str, Any] | None = None,
    limits: RenderLimits | None = None,
) -> str:
    """Render a chat template as transformers' `apply_chat_template(..., tokenize=False)` would, within `limits`.

    Jinja's errors, and LimitBreach for a spent budget, pass through (see render_source). With
    `continue_final_message` the final message gets transformers' tag and the text is cut there.
    """
    chat = [dict(message) for message in messages]
    if continue_final_message and chat and isinstance(chat[-1].get("content"), str):
        chat[-1]["content"] += CONTINUE_FINAL_MESSAGE_TAG
    variables = {**(special_tokens or {}), "messages": chat, "tools": None, "documents": None,
                 "add_generation_prompt": add_generation_prompt}
    text = render_source(template, variables, limits, environment=CHAT_SANDBOX)
    if continue_final_message and CONTINUE_FINAL_MESSAGE_TAG.strip() in text:
        cut = text.rindex(CONTINUE_FINAL_MESSAGE_TAG.strip())
        tagged = text[cut:cut + len(CONTINUE_FINAL_MESSAGE_TAG)] == CONTINUE_FINAL_MESSAGE_TAG
        text = text[:cut] if tagged else text[:cut].rstrip()
    return text
