"""Rendering: completion prompts go raw; chat uses the chat template or, for a base model, the transcript."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError, WorkbenchError
from workbench.registry import load_registry
from workbench.rendering import render, render_transcript


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_completion_prompt_goes_raw_to_every_model(registry):
    for name in ("gemma-3-270m", "smollm2-135m-instruct"):
        rendered = render("Once upon a time,", registry.get(name), registry)
        assert (rendered.mode, rendered.text, rendered.template) == ("completion", "Once upon a time,", "raw")


def test_chat_on_the_base_model_uses_the_transcript_template(registry):
    rendered = render("What is 2+2?", registry.get("gemma-3-270m"), registry, chat=True)
    assert rendered.template == "transcript:plain-dialogue"
    assert rendered.text == "User: What is 2+2?\n\nAssistant:"
    assert "\nUser:" in rendered.extra_stop


def test_transcript_keeps_system_turns_and_prefill(registry):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "My favourite is"},
    ]
    text = render(messages, registry.get("gemma-3-270m"), registry).text
    assert text == (
        "You are terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Name a colour.\n\nAssistant: My favourite is"
    )


def test_chat_on_the_tuned_model_uses_its_chat_template(registry, embedded_models):
    rendered = render("What is 2+2?", registry.get("smollm2-135m-instruct"), registry, chat=True)
    assert rendered.template == "chat-template"
    assert "You are a helpful AI assistant named SmolLM" in rendered.text  # the documented default system prompt
    assert rendered.text.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.extra_stop == ()


def test_chat_template_continues_an_assistant_prefill(registry, embedded_models):
    messages = [{"role": "user", "content": "Pick a number."}, {"role": "assistant", "content": "My number is"}]
    text = render(messages, registry.get("smollm2-135m-instruct"), registry).text
    assert text.endswith("<|im_start|>assistant\nMy number is")


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("   ", "empty"),
        ([], "non-empty list"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user"}], "content"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "only come first"),
    ],
)
def test_bad_prompts_are_clear_errors(registry, prompt, message):
    with pytest.raises(WorkbenchError, match=message):
        render(prompt, registry.get("gemma-3-270m"), registry)


def test_transcript_templates_run_sandboxed():
    with pytest.raises(ConfigError):
        render_transcript(({"role": "user", "content": "x"},), "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError):
        render_transcript(({"role": "user", "content": "x"},), "{{ undefined_variable }}")
