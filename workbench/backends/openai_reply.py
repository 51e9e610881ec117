"""The shape of an OpenAI-compatible completions or chat reply, checked field by field.

A server or proxy can send valid JSON of the wrong shape (a text that is an object, a logprob
that is a string, usage that is a string). Every field a Generation takes is checked here, so
nothing malformed reaches the store: a bad field raises a retryable BackendError that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.backends.api_common import (
    expect_list,
    expect_logprob,
    expect_object,
    expect_str,
    malformed,
)
from workbench.backends.base import BackendError
from workbench.config import SamplingConfig
from workbench.types import TokenLogprob


@dataclass
class ParsedChoice:
    """One choice of a reply, its shape checked."""

    text: str
    tokens: list[str] | None
    logprobs: list[float] | None
    top: list[list[TokenLogprob]] | None
    finish_reason: str | None
    stop_reason: str | int | None
    reports_stop_reason: bool  # vLLM sends stop_reason (null for EOS); others leave it out


def choices_by_index(choices: list[Any], asked: int, top_k: int) -> dict[int, ParsedChoice]:
    """The reply's choices by their `index` (position in the request), each checked.

    A refilled request keeps only the choices it still needs, so each must land on the slot its
    index names, not on the next free one.
    """
    out: dict[int, ParsedChoice] = {}
    for position, choice in enumerate(choices):
        where = f"choices[{position}]"
        choice = expect_object(choice, where)
        index = choice.get("index")
        index = position if index is None else index
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < asked:
            raise malformed(f"{where}.index", index, f"a whole number from 0 to {asked - 1}")
        if index in out:
            raise BackendError(f"malformed reply: {where}.index {index} appears twice", "retry")
        out[index] = _parse_choice(choice, where, top_k)
    return out


def _parse_choice(choice: dict[str, Any], where: str, top_k: int) -> ParsedChoice:
    """Text, token strings, token logprobs and (when asked) top alternatives, for either endpoint."""
    finish_reason = expect_str(choice.get("finish_reason"), f"{where}.finish_reason", optional=True)
    stop_reason = choice.get("stop_reason")  # vLLM: the stop string, or the stop token's id
    if isinstance(stop_reason, bool) or not isinstance(stop_reason, (str, int, type(None))):
        raise malformed(f"{where}.stop_reason", stop_reason, "a string, a token id or null")
    logprobs = expect_object(choice.get("logprobs"), f"{where}.logprobs", optional=True)
    if choice.get("message") is not None:  # chat
        message = expect_object(choice["message"], f"{where}.message")
        text = expect_str(message.get("content"), f"{where}.message.content", optional=True) or ""
        tokens, values, top = _chat_logprobs(logprobs, f"{where}.logprobs", top_k)
    else:
        if choice.get("text") is None:
            raise BackendError(f"malformed reply: {where} has neither text nor message", "retry")
        text = expect_str(choice["text"], f"{where}.text")
        tokens, values, top = _completion_logprobs(logprobs, f"{where}.logprobs", top_k)
    return ParsedChoice(text, tokens, values, top, finish_reason, stop_reason, "stop_reason" in choice)


TokenDetails = tuple[list[str] | None, list[float] | None, list[list[TokenLogprob]] | None]


def _chat_logprobs(logprobs: dict[str, Any], where: str, top_k: int) -> TokenDetails:
    """Chat logprobs: `content`, one entry per token with its own `top_logprobs` list."""
    content = expect_list(logprobs.get("content"), f"{where}.content", optional=True)
    if not content:
        return None, None, None
    tokens, values, top = [], [], []
    for j, entry in enumerate(content):
        at = f"{where}.content[{j}]"
        entry = expect_object(entry, at)
        tokens.append(expect_str(entry.get("token"), f"{at}.token"))
        values.append(expect_logprob(entry.get("logprob"), f"{at}.logprob"))
        alternatives = expect_list(entry.get("top_logprobs"), f"{at}.top_logprobs", optional=True)
        top.append([_alternative(alt, f"{at}.top_logprobs[{k}]") for k, alt in enumerate(alternatives)][:top_k])
    return tokens, values, (top if top_k else None)


def _alternative(entry: Any, where: str) -> TokenLogprob:
    entry = expect_object(entry, where)
    return TokenLogprob(None, expect_str(entry.get("token"), f"{where}.token"),
                        expect_logprob(entry.get("logprob"), f"{where}.logprob"))


def _completion_logprobs(logprobs: dict[str, Any], where: str, top_k: int) -> TokenDetails:
    """Completion logprobs: parallel `tokens` and `token_logprobs` lists, `top_logprobs` as token -> logprob maps."""
    if logprobs.get("tokens") is None:
        return None, None, None
    tokens = [expect_str(t, f"{where}.tokens[{j}]") for j, t in enumerate(expect_list(logprobs["tokens"],
                                                                                      f"{where}.tokens"))]
    given = expect_list(logprobs.get("token_logprobs"), f"{where}.token_logprobs")
    values = [expect_logprob(v, f"{where}.token_logprobs[{j}]") for j, v in enumerate(given)]
    if len(values) != len(tokens):
        raise BackendError(f"malformed reply: {where} has {len(values)} logprobs for {len(tokens)} tokens", "retry")
    alternatives = expect_list(logprobs.get("top_logprobs"), f"{where}.top_logprobs", optional=True)
    if not (top_k and alternatives):
        return tokens, values, None
    top = []
    for j, position in enumerate(alternatives):
        at = f"{where}.top_logprobs[{j}]"
        pairs = expect_object(position, at, optional=True).items()
        top.append(sorted((TokenLogprob(None, token, expect_logprob(value, f"{at}[{token!r}]"))
                           for token, value in pairs), key=lambda t: -t.logprob)[:top_k])
    return tokens, values, top


def finish_reason(choice: ParsedChoice, config: SamplingConfig) -> tuple[str, str | None]:
    """Map the server's finish reason to eos | stop | length.

    Servers say "stop" both for an end-of-sequence token and for a stop string; vLLM tells them
    apart in `stop_reason` (the string, or None for EOS). Without it, "stop" counts as a stop
    string when some were asked for, else as EOS; the raw reason is stored with the sample.
    """
    if choice.finish_reason == "length":
        return "length", None
    if isinstance(choice.stop_reason, str):
        return "stop", choice.stop_reason
    if choice.finish_reason == "stop" and config.stop and not choice.reports_stop_reason:
        return "stop", None
    return "eos", None
