"""Chat templates render within the render limits (review of #15, finding 1).

transformers renders a chat template in its own sandbox, with no limit on time or size, so the hf
backend first renders each template once in the limited sandbox set up like transformers'. The
review's exact inputs are here as inline registry chat_templates of smollm2-135m-instruct (nested
range(99999) loops; 'A' * 400000000), and the same bombs in a checkpoint's own tokenizer template.
Only tokenizers are loaded, never weights.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import EMBEDDED, REAL_MODELS_DIR, run_limited
from workbench.errors import ConfigError

NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
HUGE_REPEAT = "{{ 'A' * 400000000 }}"
MODEL = "smollm2-135m-instruct"
CHATS = {
    "user": ({"role": "user", "content": "Where did you grow up?"},),
    "system": ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}),
    "prefill": ({"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "My answer is"}),
}


def home_with(tmp_path: Path, chat_template: str) -> Path:
    """A WORKBENCH_HOME whose models.yaml gives smollm2-135m-instruct an inline chat_template."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(REAL_MODELS_DIR, target_is_directory=True)
    (home / "models.yaml").write_text(yaml.safe_dump({"models": {MODEL: {"chat_template": chat_template}}}))
    return home


def backend_for(name: str, chat_template: str = "tokenizer"):
    """The hf backend of an embedded model with the given chat_template (weights are never loaded)."""
    from workbench.backends.hf import HFBackend
    from workbench.registry import load_registry

    spec = load_registry().get(name)
    return HFBackend(spec.model_copy(update={"chat_template": chat_template}), device="cpu")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("template, limit", [(NESTED_LOOPS, "render time limit of 2 s"),
                                             (HUGE_REPEAT, "render size limit of 1,000,000 characters")],
                         ids=["nested-loops", "huge-repeat"])
def test_an_inline_chat_template_renders_within_the_limits(tmp_path, template, limit):
    home = home_with(tmp_path, template)
    result, seconds = run_limited(["prompts", "show", "simulator-framings/grew-up", "--model", MODEL],
                                  {"WORKBENCH_HOME": str(home)}, memory_gb=6.0, timeout=240)
    # the bug: no output for over 120 s; rc 0 with a 400-million-character string
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(result.stdout) < 10_000
    [line] = [line for line in result.stderr.splitlines() if line.startswith("workbench: error")]
    assert f"'{MODEL}'" in line and "chat_template" in line and str(home / "models.yaml") in line and limit in line
    assert seconds < 120  # about 12 s of start-up (torch, the tokenizer) on a busy 2-core machine, then 2 s at most


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template, limit", [(NESTED_LOOPS, "render time limit"), (HUGE_REPEAT, "render size limit")],
                         ids=["nested-loops", "huge-repeat"])
def test_a_checkpoints_own_chat_template_renders_within_the_limits(monkeypatch, template, limit):
    backend = backend_for(MODEL)
    evil = copy.copy(backend._tokenizer())
    evil.chat_template = template
    monkeypatch.setattr(backend, "_tokenizer", lambda: evil)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        backend.apply_chat_template(CHATS["user"])
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert f"'{MODEL}'" in message and "its tokenizer's chat template" in message and limit in message
    assert "\n" not in message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template, limit", [
    ("{% generation %}{{ 'A' * 400000000 }}{% endgeneration %}", "render size limit"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% if j < 0 %}{% break %}{% endif %}{% endfor %}"
     "{% endfor %}", "render time limit"),
    ("{{ bos_token * 400000000 }}", "render size limit"),
    ("{{ messages | tojson(indent=400000000) }}", "render size limit"),
], ids=["generation-tag", "loopcontrols", "special-tokens", "tojson-indent"])
def test_the_tags_and_values_transformers_adds_are_limited_too(template, limit):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=limit):
        backend_for(MODEL, template).apply_chat_template(CHATS["user"])
    assert time.monotonic() - started < 30


def test_a_template_that_raises_is_still_one_line_naming_the_field():
    template = "{{ raise_exception('only user turns, please') }}"
    with pytest.raises(ConfigError) as info:
        backend_for(MODEL, template).apply_chat_template(CHATS["user"])
    message = str(info.value)
    assert "only user turns, please" in message and "chat_template" in message and "\n" not in message


# gemma-3-270m's prepared checkpoint has no chat template of its own: it gets a Gemma-style inline one.
GEMMA_STYLE = (
    "{{ bos_token }}{% for m in messages %}"
    "<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content | trim }}"
    "{% if not loop.last or add_generation_prompt %}<end_of_turn>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
TEMPLATES = {"smollm2-135m-instruct": "tokenizer", "gemma-3-270m": GEMMA_STYLE}


@pytest.mark.parametrize("name", EMBEDDED)
@pytest.mark.parametrize("chat", list(CHATS))
def test_the_embedded_models_chats_render_as_before(name, chat):
    from workbench.guarded.chat_template import render_like_transformers

    messages = CHATS[chat]
    template = None if TEMPLATES[name] == "tokenizer" else TEMPLATES[name]
    backend = backend_for(name, TEMPLATES[name])
    tokenizer = backend._tokenizer()
    prefill = messages[-1]["role"] == "assistant"
    expected = tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                             add_generation_prompt=not prefill, continue_final_message=prefill)
    assert backend.apply_chat_template(messages) == expected  # transformers' text is still the one used
    # and the dry run rendered what transformers renders: its environment and variables are transformers'
    dry = render_like_transformers(tokenizer.get_chat_template(template), list(messages),
                                   add_generation_prompt=not prefill, continue_final_message=prefill,
                                   special_tokens=tokenizer.special_tokens_map)
    assert dry == expected
