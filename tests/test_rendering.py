"""Rendering: completion prompts go raw; chat uses the chat template or, for a base model, the transcript."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from workbench.errors import ConfigError, WorkbenchError
from workbench.prompts import load_library, render_for_model, render_transcript
from workbench.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_completion_prompt_goes_raw_to_every_model(registry):
    for name in ("gemma-3-270m", "smollm2-135m-instruct"):
        rendered = render_for_model("Once upon a time,", registry.get(name), registry)
        assert (rendered.mode, rendered.text, rendered.template) == ("completion", "Once upon a time,", "raw")


def test_chat_on_the_base_model_uses_the_transcript_template(registry):
    rendered = render_for_model("What is 2+2?", registry.get("gemma-3-270m"), registry, chat=True)
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
    text = render_for_model(messages, registry.get("gemma-3-270m"), registry).text
    assert text == (
        "You are terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Name a colour.\n\nAssistant: My favourite is"
    )


def test_a_chat_template_model_uses_the_callable_it_is_given(registry):
    seen = []

    def chat_template(messages):
        seen.append(messages)
        return "<chat>" + "|".join(m["content"] for m in messages)

    rendered = render_for_model("What is 2+2?", registry.get("smollm2-135m-instruct"), registry, chat=True,
                                chat_template=chat_template)
    assert seen == [({"role": "user", "content": "What is 2+2?"},)]
    assert (rendered.mode, rendered.template, rendered.text) == ("chat", "chat-template", "<chat>What is 2+2?")
    assert rendered.messages == seen[0] and rendered.extra_stop == ()


def test_a_chat_template_model_without_the_callable_is_a_clear_error(registry):
    with pytest.raises(WorkbenchError, match="needs a chat_template"):
        render_for_model("What is 2+2?", registry.get("smollm2-135m-instruct"), registry, chat=True)


def test_library_prompts_are_filled_then_rendered(registry):
    prompt = load_library([REPO / "prompts"]).get("mode-collapse/coin-flip")
    rendered = render_for_model(prompt, registry.get("gemma-3-270m"), registry, chat=True)
    assert rendered.mode == prompt.spec.kind  # the prompt's kind decides, not `chat`
    with pytest.raises(WorkbenchError, match="library prompts only"):
        render_for_model("Hello", registry.get("gemma-3-270m"), registry, framing="assistant-chat")


def test_chat_on_the_tuned_model_uses_its_chat_template(sampler):
    rendered = sampler.render("What is 2+2?", "smollm2-135m-instruct", chat=True)
    assert rendered.template == "chat-template"
    assert "You are a helpful AI assistant named SmolLM" in rendered.text  # the documented default system prompt
    assert rendered.text.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.extra_stop == ()


def test_chat_template_continues_an_assistant_prefill(sampler):
    messages = [{"role": "user", "content": "Pick a number."}, {"role": "assistant", "content": "My number is"}]
    text = sampler.render(messages, "smollm2-135m-instruct").text
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
        render_for_model(prompt, registry.get("gemma-3-270m"), registry)


def test_transcript_templates_run_sandboxed():
    with pytest.raises(ConfigError):
        render_transcript(({"role": "user", "content": "x"},), "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError):
        render_transcript(({"role": "user", "content": "x"},), "{{ undefined_variable }}")


def test_the_prompt_library_never_imports_a_backend():
    code = ("import sys, workbench.prompts as p; p.load_library(); "
            "print(sorted(m for m in sys.modules if m.startswith(('workbench.backends', 'workbench.sampler'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
