"""The prompt library: shipped collections, rendering rules, property tests and every bad-input case."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from workbench.errors import WorkbenchError
from workbench.prompts import (
    OTHER_ANSWER,
    PromptLibraryError,
    fill,
    load_collection,
    load_library,
    render_for_model,
    validate_paths,
)
from workbench.registry import load_registry

SHIPPED = ("mode-collapse", "attractors", "personas", "simulator-framings", "judges", "self-conversations")
MODELS = ("gemma-3-270m", "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def library():
    return load_library([REPO / "prompts"])


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def write_collection(tmp_path: Path, body: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


HEADER = "name: c\ndescription: d\nversion: 1\nprompts:\n"


# -- the shipped collections ---------------------------------------------------------------


def test_shipped_collections_validate_and_meet_their_sizes(library):
    count, problems = validate_paths([REPO / "prompts"])
    assert problems == [] and count == len(library)
    collections = {name: [p for p in library if p.collection.name == name] for name in SHIPPED}
    assert set(library.collections) == set(SHIPPED)
    mode = collections["mode-collapse"]
    assert len(mode) >= 20
    finite = [p for p in mode if p.spec.answer_space]
    assert len(finite) >= 10
    attractors = collections["attractors"]
    assert len(attractors) >= 15
    assert all(p.spec.perturbations and p.spec.labels and p.spec.home_label for p in attractors)
    framings = collections["simulator-framings"]
    assert len(framings) >= 10
    assert all(len(p.spec.framings) == 4 for p in framings)


def test_persona_statements_are_balanced_per_trait(library):
    personas = [p for p in library if p.collection.name == "personas"]
    traits = {p.spec.trait for p in personas}
    assert len(traits) >= 6
    for trait in traits:
        keyed = [p.spec.matching_answer for p in personas if p.spec.trait == trait]
        assert len(keyed) >= 20
        assert keyed.count("Yes") == keyed.count("No"), trait
    for p in personas:
        assert {"questionnaire-transcript", "assistant-chat"} <= set(p.spec.framings)
        assert p.spec.answer_space.normalise(p.spec.matching_answer) == p.spec.matching_answer
    statements = [p.spec.variables["statement"] for p in personas]
    assert len(set(statements)) == len(statements)


@pytest.mark.parametrize("model", MODELS)
def test_every_shipped_prompt_renders_for_both_embedded_models(library, registry, sampler, model):
    # Through the Sampler: it passes the model's chat template in (the library never loads a tokenizer).
    spec = registry.get(model)
    for prompt in library:
        for variant in prompt.spec.variants():
            for perturbation in [None, *prompt.spec.perturbations]:
                for framing in [None, *prompt.spec.framings]:
                    rendered = sampler.render(prompt, model, variables=variant, perturbation=perturbation,
                                              framing=framing)
                    assert rendered.text and rendered.text.strip()
                    kind = prompt.collection.framings[framing].kind if framing else prompt.spec.kind
                    if kind == "completion":
                        assert rendered.template == "raw"
                    elif spec.has_chat_template:
                        assert rendered.template == "chat-template"
                    else:
                        assert rendered.template == "transcript:plain-dialogue"
                    if perturbation:
                        assert prompt.spec.perturbations[perturbation].strip() in rendered.text


def test_a_framing_decides_the_text(library, registry):
    prompt = next(p for p in library if p.collection.name == "personas")
    base = registry.get("gemma-3-270m")
    transcript = render_for_model(prompt, base, registry, framing="questionnaire-transcript")
    assert transcript.mode == "completion" and transcript.text.rstrip().endswith("Respondent:")
    assert prompt.spec.variables["statement"] in transcript.text
    chat = render_for_model(prompt, base, registry, framing="assistant-chat")
    assert chat.template == "transcript:plain-dialogue" and chat.text.endswith("Assistant:")


def test_perturbation_fills_the_segue_slot_and_is_empty_without_one(library):
    prompt = next(p for p in library if p.collection.name == "attractors" and p.spec.kind == "completion")
    name, segue = next(iter(prompt.spec.perturbations.items()))
    plain, perturbed = fill(prompt), fill(prompt, perturbation=name)
    assert segue not in plain.text and segue in perturbed.text
    assert perturbed.ref == f"{prompt.ref}?perturbation={name}"


def test_answer_space_normaliser_maps_to_candidates(library):
    number = library.get("mode-collapse/random-number").spec.answer_space
    assert number.normalise("I choose 37!") == "37"
    assert number.normalise("I choose 137") == OTHER_ANSWER
    assert number.normalise("no idea") == OTHER_ANSWER
    letter = library.get("mode-collapse/random-letter").spec.answer_space
    assert letter.normalise("Q") == "Q" and letter.normalise("my letter: k.") == "K"
    coin = library.get("mode-collapse/coin-flip").spec.answer_space
    assert coin.normalise("Heads!") == "heads"
    assert coin.scored_text("heads", after="It came up") == " heads"
    assert coin.scored_text("heads", after="<|im_start|>assistant\n") == "heads"


def test_filters_by_tag_kind_and_text(library):
    assert {p.collection.name for p in library.filter(tag="personas")} == {"personas"}
    assert all(p.spec.kind == "completion" for p in library.filter(kind="completion"))
    assert [p.ref for p in library.filter(text="coin")][:1] == ["mode-collapse/coin-flip"]


def test_user_directories_from_workbench_prompts(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    write_collection(mine, HEADER + "  - {id: hello, kind: completion, text: 'Hello'}\n", "mine.yaml")
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(mine))
    library = load_library()
    assert "c/hello" in library and "mode-collapse/coin-flip" in library


# -- properties ------------------------------------------------------------------------------

# Jinja's own words (`not`, `in`, `if`...) cannot be variable names in a template.
JINJA_WORDS = {"and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor", "true", "false",
               "none", "loop", "self", "super", "set", "with", "import", "from", "as", "block", "macro", "call",
               "raw", "filter", "recursive", "ignore", "missing", "context", "include", "extends", "do"}
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in {"segue", "prompt"} | JINJA_WORDS)
PLAIN_TEXT = st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="{}%#"), max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(grid=st.dictionaries(NAMES, st.lists(st.integers(-50, 50), min_size=1, max_size=4, unique=True),
                            min_size=1, max_size=3))
def test_grid_expands_into_every_combination(tmp_path, grid):
    slots = " ".join(f"{{{{ {name} }}}}" for name in grid)
    path = write_collection(tmp_path, HEADER + f"  - id: p\n    kind: completion\n    text: 'x {slots}'\n"
                            f"    grid: {dict(grid)!r}\n")
    collection, problems = load_collection(path)
    assert problems == []
    library = load_library([path])
    prompt = library.get("c/p")
    variants = prompt.spec.variants()
    assert len(variants) == math.prod(len(v) for v in grid.values())
    assert len({tuple(sorted(v.items())) for v in variants}) == len(variants)
    for variant in variants:
        text = fill(prompt, variant).text
        assert text == "x " + " ".join(str(variant[name]) for name in grid)


@settings(max_examples=80, deadline=None)
@given(before=PLAIN_TEXT, after=PLAIN_TEXT, value=st.text(max_size=30), segue=PLAIN_TEXT.filter(str.strip))
def test_rendering_substitutes_values_verbatim(before, after, value, segue):
    from workbench.prompts import Collection, LibraryPrompt, PromptSpec

    spec = PromptSpec(id="p", kind="completion", text=before + "{{ v }}{{ segue }}" + after + ".",
                      variables={"v": value}, perturbations={"s": segue})
    prompt = LibraryPrompt(Collection(name="c", description="d", version=1, prompts=[spec]), spec, Path("x"))
    assert fill(prompt).text == before + value + after + "."
    assert fill(prompt, perturbation="s").text == before + value + segue + after + "."


@settings(max_examples=40, deadline=None)
@given(messages=st.lists(st.tuples(st.sampled_from(["user", "assistant"]), PLAIN_TEXT.filter(str.strip)),
                         min_size=1, max_size=4))
def test_transcript_rendering_keeps_every_turn_in_order(messages):
    registry = load_registry()
    chat = [{"role": r, "content": c} for r, c in messages]
    text = render_for_model(chat, registry.get("gemma-3-270m"), registry).text
    position = 0
    for _, content in messages:
        found = text.find(content, position)
        assert found >= 0
        position = found + len(content)
    assert text.endswith("Assistant:") == (messages[-1][0] == "user")


# -- bad input: one test per case ------------------------------------------------------------


def problems_of(tmp_path: Path, body: str) -> list[str]:
    return validate_paths([write_collection(tmp_path, body)])[1]


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    [problem] = problems_of(tmp_path, HEADER + "  - id: a\n    text: x: y\n  - id: b\n")
    assert "c.yaml:6" in problem and "YAML syntax error" in problem and "mapping values" in problem


def test_unknown_field_names_line_prompt_and_field(tmp_path):
    [problem] = problems_of(tmp_path, HEADER + "  - id: a\n    kind: completion\n    text: x\n    colour: red\n")
    assert "c.yaml:8" in problem and "'a'" in problem and "colour" in problem and "unknown field" in problem


def test_duplicate_id(tmp_path):
    body = HEADER + "  - {id: a, kind: completion, text: x}\n  - {id: a, kind: completion, text: y}\n"
    [problem] = problems_of(tmp_path, body)
    assert "c.yaml:6" in problem and "duplicate id" in problem and "line 5" in problem


def test_missing_template_variable(tmp_path):
    [problem] = problems_of(tmp_path, HEADER + "  - {id: a, kind: completion, text: 'Hi {{ name }}'}\n")
    assert "'a'" in problem and "name" in problem and "add it to variables or grid" in problem


def test_empty_answer_space(tmp_path):
    body = HEADER + "  - id: a\n    kind: completion\n    text: x\n    answer_space: {candidates: []}\n"
    [problem] = problems_of(tmp_path, body)
    assert "c.yaml:8" in problem and "answer_space" in problem and "empty" in problem


def test_perturbation_without_a_segue_slot(tmp_path):
    body = HEADER + "  - id: a\n    kind: completion\n    text: x\n    perturbations: {boo: ' Boo.'}\n"
    [problem] = problems_of(tmp_path, body)
    assert "c.yaml:8" in problem and "perturbations" in problem and "{{ segue }}" in problem


def test_template_reaching_for_python_internals_is_refused(tmp_path):
    body = HEADER + "  - id: a\n    kind: completion\n    text: \"{{ ''.__class__.__mro__ }}\"\n"
    [problem] = problems_of(tmp_path, body)
    assert "Python internals" in problem and "'a'" in problem


def test_validate_reports_every_problem_in_one_run(tmp_path):
    body = (HEADER + "  - {id: a, kind: completion, text: 'Hi {{ name }}'}\n"
            "  - {id: b, kind: completion, text: x, colour: red}\n"
            "  - {id: a, kind: completion, text: y}\n")
    problems = problems_of(tmp_path, body)
    assert len(problems) == 3
    with pytest.raises(PromptLibraryError) as info:
        load_library([tmp_path])
    assert len(info.value.problems) == 3


def test_matching_answer_outside_the_answer_space(tmp_path):
    body = (HEADER + "  - id: a\n    kind: completion\n    text: x\n    answer_space: {candidates: ['Yes', 'No']}\n"
            "    matching_answer: Maybe\n")
    [problem] = problems_of(tmp_path, body)
    assert "matching_answer" in problem and "Maybe" in problem


def test_unknown_framing_perturbation_and_grid_value_are_clear_errors(library):
    prompt = library.get("mode-collapse/coin-flip")
    with pytest.raises(WorkbenchError, match="no framing"):
        fill(prompt, framing="forum-post")
    with pytest.raises(WorkbenchError, match="no perturbation"):
        fill(prompt, perturbation="x")
    with pytest.raises(WorkbenchError, match="grid values"):
        fill(library.get("mode-collapse/joke-about"), {"subject": "dogs"})
    with pytest.raises(WorkbenchError, match="did you mean"):
        library.get("mode-collapse/coin-flp")


def test_answer_extractors_live_with_the_answer_space():
    from workbench.prompts import ANSWER_EXTRACTORS, NO_ANSWER, answer_extractor, first_number, first_words

    assert first_number("I pick 042.") == "42" and first_number("none") == NO_ANSWER
    assert first_words(2)("Once upon, a time") == "once upon"
    assert answer_extractor("first-word")("Heads!") == "heads" and set(ANSWER_EXTRACTORS) >= {"first-line", "full"}
    with pytest.raises(WorkbenchError, match="unknown answer extractor"):
        answer_extractor("second-word")
