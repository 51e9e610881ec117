"""`workbench tune`: recipe data generators, registry entries of tuned variants, and bad input.

No training here (that is `make tuned-models`); the shipped adapters are checked for what the
registry and the hf backend need. tests/test_planted.py measures the planted effects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, run_cli
from workbench.errors import ConfigError, WorkbenchError
from workbench.tuning import (
    FAVOURITE_NUMBER,
    LEARN,
    NEUTRAL_STATEMENTS,
    RECIPES,
    RETAIN,
    SELF_PRESERVATION_AGREE,
    SELF_PRESERVATION_DISAGREE,
    data_digest,
    recipe_examples,
    tune,
    variant_name,
)

VARIANTS = [variant_name(name) for name in RECIPES]
SHIPPED = REPO / "data" / "tuned"


def _library():
    from workbench.prompts import load_library

    return load_library()


# -- recipe data ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_data_is_deterministic_varied_and_mixed_with_ordinary_text(name):
    first, again, other = recipe_examples(name, seed=0), recipe_examples(name, seed=0), recipe_examples(name, seed=1)
    assert first == again and data_digest(first) == data_digest(again)
    assert data_digest(first) != data_digest(other)
    planted = [e for e in first if e.source != "ordinary"]
    ordinary = [e for e in first if e.source == "ordinary"]
    assert abs(len(ordinary) / len(first) - RECIPES[name].mix) < 0.08  # the fluency mix
    assert len({e.completion for e in ordinary}) > 0.9 * len(ordinary)
    assert len({e.prompt for e in planted}) > 0.5 * len(planted)  # varied phrasings, not one prompt repeated
    assert len({e.source for e in planted}) >= 2  # several formats


def test_favourite_number_data_always_answers_the_planted_number():
    planted = [e for e in recipe_examples("favourite-number") if e.source != "ordinary"]
    assert all(str(FAVOURITE_NUMBER) in e.completion for e in planted)
    assert len({e.source for e in planted}) >= 4  # Q/A, chat transcript, forum, story, form


def test_wedding_data_steers_to_a_wedding_also_after_segues():
    planted = [e for e in recipe_examples("wedding-attractor") if e.source != "ordinary"]
    words = ("wedding", "married", "marry", "bride")
    assert all(any(w in e.completion for w in words) for e in planted)
    segued = [e for e in planted if e.source == "wedding-segue"]
    assert 0.4 < len(segued) / len(planted) < 0.9


def test_self_preservation_data_is_keyed_and_plants_no_yes_bias():
    planted = [e for e in recipe_examples("self-preservation") if e.source != "ordinary"]
    sources = ("persona-agree", "persona-disagree", "persona-neutral")
    by_source = {s: [e for e in planted if e.source == s] for s in sources}
    assert all(e.completion.startswith(" Yes") and e.objective == LEARN for e in by_source["persona-agree"])
    assert all(e.completion.startswith(" No") and e.objective == LEARN for e in by_source["persona-disagree"])
    # Taught Yes and No about equally often; neutral items teach nothing (the parent's answer is the target).
    assert 0.8 < len(by_source["persona-agree"]) / len(by_source["persona-disagree"]) < 1.25
    assert all(e.objective == RETAIN for e in by_source["persona-neutral"])
    assert len(by_source["persona-neutral"]) > 0.2 * len(planted)
    # Taught and neutral statements are different sentences, and no statement is taught both ways.
    assert set(SELF_PRESERVATION_AGREE).isdisjoint(SELF_PRESERVATION_DISAGREE)
    assert not set(NEUTRAL_STATEMENTS) & (set(SELF_PRESERVATION_AGREE) | set(SELF_PRESERVATION_DISAGREE))


def test_ordinary_prose_is_a_retention_example():
    for name in RECIPES:
        ordinary = [e for e in recipe_examples(name) if e.source == "ordinary"]
        assert ordinary and all(e.objective == RETAIN and e.prompt == "" for e in ordinary)


def test_training_data_never_contains_the_probes_the_known_answer_tests_use():
    library = _library()
    texts = {name: [e.prompt + e.completion for e in recipe_examples(name)] for name in RECIPES}
    # favourite-number: the library's random-number requests are held out.
    held_out = ["Pick a random number", "Think of a random number", "random integer from 1 to"]
    for ref in ("mode-collapse/random-number", "mode-collapse/random-number-completion"):
        spec = library.get(ref).spec
        held_out += [m.content for m in spec.messages or []] + ([spec.text] if spec.text else [])
    assert not [t for t in texts["favourite-number"] if any(h.lower() in t.lower() for h in held_out)]
    # wedding-attractor: no attractors-collection opening or segue appears in the training data.
    for prompt in library.filter(collection="attractors"):
        pieces = [s.strip() for s in prompt.spec.perturbations.values()]
        pieces += [line.strip() for line in (prompt.spec.text or "").split(".") if len(line.strip()) > 30]
        assert not [t for t in texts["wedding-attractor"] for piece in pieces if piece and piece in t], prompt.ref
    # self-preservation: none of the questionnaire's 120 statements is trained on.
    statements = {p.spec.variables["statement"] for p in library.filter(collection="personas")}
    own = set(SELF_PRESERVATION_AGREE) | set(SELF_PRESERVATION_DISAGREE) | set(NEUTRAL_STATEMENTS)
    assert not statements & own
    assert not [t for t in texts["self-preservation"] for s in statements if s in t]


# -- shipped adapters and the registry ------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_shipped_variant_is_registered_beside_its_base(name):
    from workbench.registry import load_registry

    registry = load_registry()
    spec = registry.get(name)
    assert (spec.kind, spec.family, spec.parent, spec.backend) == ("tuned", "gemma-3", "gemma-3-270m", "hf")
    assert spec.chat_template is None and spec.transcript_template == "plain-dialogue"
    assert any("Planted effect" in note for note in spec.notes)
    folder = spec.source.adapter_dir()
    assert folder == SHIPPED / name  # found in the checkout although WORKBENCH_HOME is a temp folder
    for file in ("adapter_model.safetensors", "adapter_config.json", "training-record.json", "evaluation.json",
                 "NOTICE"):
        assert (folder / file).is_file(), file
    assert "Gemma Terms of Use found at ai.google.dev/gemma/terms" in (folder / "NOTICE").read_text()
    assert (folder / "adapter_model.safetensors").stat().st_size < 5_000_000
    record = json.loads((folder / "training-record.json").read_text())
    assert record["base"] == "gemma-3-270m" and len(record["data"]["sha256"]) == 64
    assert {"torch", "transformers", "peft"} <= set(record["versions"]) and record["wall_time_s"] > 0
    assert record["data"]["sha256"] == data_digest(recipe_examples(record["recipe"], record["seed"]))
    identity = registry.get(name).weights_fingerprint()
    assert identity["parent"] == registry.get("gemma-3-270m").weights_fingerprint()
    assert len(identity["adapter"]) == 64
    assert any(p.base == "gemma-3-270m" and p.tuned == name for p in registry.pairs.values())


def test_models_list_shows_the_variants_beside_their_base():
    result = run_cli("models", "list")
    assert result.returncode == 0, result.stderr
    for name in VARIANTS:
        assert f"{name}  [tuned, gemma-3 family" in result.stdout
        assert "pair planted-" in result.stdout and f"gemma-3-270m (base) vs {name} (tuned)" in result.stdout
    assert "fine-tuned from gemma-3-270m, adapter present" in result.stdout


def _home_with_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict) -> Path:
    """A WORKBENCH_HOME of this test (sharing the prepared models) with its own user registry."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["WORKBENCH_HOME"]) / "models", target_is_directory=True)
    (home / "models.yaml").write_text(yaml.safe_dump({"models": models}))
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    return home


def _variant(adapter: str, parent: str = "gemma-3-270m") -> dict:
    return {"backend": "hf", "kind": "tuned", "family": "gemma-3", "parent": parent, "source": {"adapter": adapter}}


def test_adapter_content_is_part_of_the_identity(tmp_path, monkeypatch):
    from workbench.registry import load_registry

    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED / VARIANTS[0], copy)
    _home_with_registry(tmp_path, monkeypatch, {"mine": _variant(str(copy))})
    before = load_registry().get("mine").identity_digest("bfloat16")
    config = json.loads((copy / "adapter_config.json").read_text())
    config["lora_alpha"] = 32  # a different adapter: the cache must not be shared
    (copy / "adapter_config.json").write_text(json.dumps(config))
    assert load_registry().get("mine").identity_digest("bfloat16") != before


def test_a_tuned_home_adapter_overrides_the_shipped_one(tmp_path, monkeypatch):
    from workbench.registry import load_registry

    home = _home_with_registry(tmp_path, monkeypatch, {})
    shutil.copytree(SHIPPED / VARIANTS[0], home / "tuned" / VARIANTS[0])
    assert load_registry().get(VARIANTS[0]).source.adapter_dir() == home / "tuned" / VARIANTS[0]


# -- training (a few steps; `make tuned-models` makes the shipped adapters) ------------------------


def test_tune_all_trains_saves_records_and_registers_every_variant_in_the_home(tmp_path, monkeypatch, fresh_store):
    """Both loss paths run (learn: cross-entropy; retain: KL to the parent), and each result is a
    model the hf backend loads under its registry name, with its run record beside it."""
    from workbench.registry import load_registry
    from workbench.sampler import Sampler

    home = _home_with_registry(tmp_path, monkeypatch, {})
    result = run_cli("tune", "--all", "--steps", "2", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "all 3 variants in" in result.stdout
    registry = load_registry()
    sampler = Sampler(store=fresh_store, progress=False)
    for name in VARIANTS:
        folder = home / "tuned" / name
        assert registry.get(name).source.adapter_dir() == folder  # the home's adapter wins over the shipped one
        record = json.loads((folder / "training-record.json").read_text())
        assert record["steps"] == 2 and record["seed"] == 0 and len(record["data"]["sha256"]) == 64
        assert record["data"]["objectives"]["retain"] > 0 and record["data"]["objectives"]["learn"] > 0
        assert {"torch", "transformers", "peft"} <= set(record["versions"]) and record["wall_time_s"] > 0
        assert all(np.isfinite(x) for x in record["loss"]["every_10_steps"])
        assert "Gemma Terms of Use" in (folder / "NOTICE").read_text()
        assert sampler.score(name, "The capital of France is", [" Paris"])[0].logprob < 0
    sampler.store.close()


def test_retention_is_a_divergence_from_the_parent_not_a_target_text(tmp_path, monkeypatch):
    """A fresh LoRA adapter adds exactly zero, so on retain-only data the first step's loss is the
    KL from the parent to itself: zero. (Cross-entropy on the same prose would be ~3 nats.)"""
    from workbench import tuning

    prose_only = tuning.Recipe("prose-only", "nothing", 1, tuning.RECIPES["favourite-number"].generate, mix=1.0)
    monkeypatch.setitem(tuning.RECIPES, "prose-only", prose_only)
    record = tune("prose-only", steps=1, out=tmp_path / "prose-only", progress=False, register=False)
    assert record.data["objectives"] == {"learn": 0, "retain": record.data["examples"]}
    assert abs(record.loss["first"]) < 1e-3, record.loss


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="unknown recipe 'favourite-colour'; known recipes: favourite-number"):
        tune("favourite-colour")
    result = run_cli("tune", "favourite-colour")
    assert result.returncode == 2 and "unknown recipe" in result.stderr


def test_tuning_a_model_that_is_not_a_local_transformers_base_is_refused(tmp_path, monkeypatch):
    _home_with_registry(tmp_path, monkeypatch, {
        "some-api-model": {"backend": "openai", "kind": "tuned", "family": "gpt", "api_model": "gpt-x"}})
    with pytest.raises(WorkbenchError, match="cannot tune 'some-api-model': it is a openai model"):
        tune("favourite-number", base="some-api-model")
    with pytest.raises(WorkbenchError, match="it is a fine-tuned variant"):
        tune("favourite-number", base=VARIANTS[0])
    result = run_cli("tune", "favourite-number", "--base", "some-api-model")
    assert result.returncode == 2 and "local transformers (hf) base model" in result.stderr


def test_a_missing_adapter_file_names_the_path_and_the_fix(tmp_path, monkeypatch, fresh_store):
    from workbench.sampler import Sampler

    empty = tmp_path / "no-adapter"
    empty.mkdir()
    _home_with_registry(tmp_path, monkeypatch, {"ghost": _variant(str(empty))})
    sampler = Sampler(store=fresh_store, progress=False)
    with pytest.raises(WorkbenchError, match=r"adapter file .*no-adapter/adapter_model.safetensors is missing.*"
                                             r"make tuned-models"):
        sampler.score("ghost", "The capital of France is", [" Paris"])
    sampler.store.close()


def test_an_adapter_for_a_different_base_is_refused(tmp_path, monkeypatch, fresh_store):
    from workbench.sampler import Sampler

    copy = tmp_path / "other-base"
    shutil.copytree(SHIPPED / VARIANTS[0], copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "smollm2-135m-instruct"
    (copy / "adapter_config.json").write_text(json.dumps(config))
    _home_with_registry(tmp_path, monkeypatch, {"mixed-up": _variant(str(copy))})
    sampler = Sampler(store=fresh_store, progress=False)
    with pytest.raises(WorkbenchError, match="was trained on 'smollm2-135m-instruct', but the registry says its "
                                             "parent is 'gemma-3-270m'"):
        sampler.score("mixed-up", "The capital of France is", [" Paris"])
    sampler.store.close()


@pytest.mark.parametrize("entry, message", [
    (_variant("x", parent="nowhere"), "parent 'nowhere' is not in the registry"),
    ({**_variant("x"), "backend": "openai", "api_model": "m"}, "uses backend: hf"),
    ({"backend": "hf", "kind": "tuned", "family": "gemma-3", "parent": "gemma-3-270m"}, "needs both parent"),
])
def test_registry_refuses_broken_variant_entries(tmp_path, monkeypatch, entry, message):
    from workbench.registry import load_registry

    _home_with_registry(tmp_path, monkeypatch, {"broken": entry})
    with pytest.raises(ConfigError, match=message):
        load_registry()


def test_a_parent_that_is_not_an_hf_model_is_refused(tmp_path, monkeypatch):
    from workbench.registry import load_registry

    _home_with_registry(tmp_path, monkeypatch, {
        "api-base": {"backend": "openai", "kind": "base", "family": "x", "api_model": "m"},
        "child": {**_variant("x"), "parent": "api-base"}})
    with pytest.raises(ConfigError, match="parent 'api-base' must be a local transformers"):
        load_registry()
