"""The model registry: packaged defaults, user overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigError, UnknownModelError
from workbench.registry import load_registry


def test_packaged_pair_is_base_and_tuned_of_different_families(tmp_path):
    registry = load_registry(user_file=tmp_path / "none.yaml")
    base, tuned = registry.get("gemma-3-270m"), registry.get("smollm2-135m-instruct")
    assert (base.kind, tuned.kind) == ("base", "tuned")
    assert base.family != tuned.family
    assert not base.has_chat_template and tuned.has_chat_template
    assert any("default system prompt" in note for note in tuned.notes)
    pair = registry.pairs["embedded"]
    assert (pair.base, pair.tuned) == ("gemma-3-270m", "smollm2-135m-instruct")
    assert "different families" in registry.describe_pair([pair.base, pair.tuned])


def test_user_registry_overrides_fields_and_adds_models(tmp_path):
    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    user = tmp_path / "models.yaml"
    user.write_text(
        "models:\n"
        "  gemma-3-270m:\n"
        "    dtype: float32\n"
        "  my-model:\n"
        "    backend: hf\n"
        "    kind: tuned\n"
        "    family: gemma-3\n"
        f"    source: {{path: {checkpoint}}}\n"
        "    chat_template: tokenizer\n"
        "pairs:\n"
        "  mine: {base: gemma-3-270m, tuned: my-model}\n"
    )
    registry = load_registry(user_file=user)
    assert registry.get("gemma-3-270m").dtype == "float32"
    assert registry.get("gemma-3-270m").kind == "base"  # untouched fields keep the default
    assert registry.get("my-model").source.path == str(checkpoint)
    assert registry.same_family("gemma-3-270m", "my-model")
    assert registry.describe_pair(["gemma-3-270m", "my-model"]).startswith("same family")


def test_user_registry_defaults_to_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    (tmp_path / "models.yaml").write_text("models:\n  smollm2-135m-instruct:\n    dtype: float32\n")
    assert load_registry().get("smollm2-135m-instruct").dtype == "float32"


def test_weights_identity_changes_with_dtype_and_revision(tmp_path):
    registry = load_registry(user_file=tmp_path / "none.yaml")
    spec = registry.get("gemma-3-270m")
    assert spec.identity_digest("bfloat16") != spec.identity_digest("float32")
    assert spec.identity_digest("bfloat16") != spec.model_copy(update={"revision": "2"}).identity_digest("bfloat16")


def test_unknown_model_suggests_close_names(tmp_path):
    registry = load_registry(user_file=tmp_path / "none.yaml")
    with pytest.raises(UnknownModelError) as info:
        registry.get("gemma-270m")
    assert "did you mean gemma-3-270m" in str(info.value)


def test_broken_yaml_names_file_and_line(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("models:\n  x: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_registry(user_file=user)
    assert str(user) in str(info.value) and "line" in str(info.value)


def test_bad_field_names_file_model_and_field(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("models:\n  m:\n    backend: hf\n    kind: instruct\n    family: f\n    source: {path: /x}\n")
    with pytest.raises(ConfigError) as info:
        load_registry(user_file=user)
    message = str(info.value)
    assert str(user) in message and "'m'" in message and "kind" in message


def test_hf_model_without_weights_is_rejected(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("models:\n  m: {backend: hf, kind: base, family: f}\n")
    with pytest.raises(ConfigError, match="source.path"):
        load_registry(user_file=user)


def test_pair_with_unknown_member_is_rejected(tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("pairs:\n  p: {base: gemma-3-270m, tuned: nope}\n")
    with pytest.raises(ConfigError, match="nope"):
        load_registry(user_file=user)


def test_packaged_registry_file_is_shipped():
    from workbench import registry

    assert Path(registry.PACKAGED_REGISTRY).is_file()
