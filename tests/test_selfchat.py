"""Self-conversation drift: the measures on fixed inputs, then the embedded models with small sizes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from workbench.errors import WorkbenchError
from workbench.experiments.selfchat import (
    SelfChatResult,
    dispersion,
    dispersion_change,
    rising_terms,
    run_seed,
    self_conversation,
    speaker_messages,
)
from workbench.plots import selfchat_figure

BASE, TUNED = "gemma-3-270m", "smollm2-135m-instruct"
SEED_PROMPT = "self-conversations/two-ais-meet"
CHAT_TEMPLATE_MARKS = ("<|im_start|>", "<start_of_turn>", "<|start_header_id|>")


# -- measures on hand-made inputs ----------------------------------------------------------


def test_dispersion_of_known_vectors():
    eye = np.eye(3, 8)
    spread = dispersion(eye)
    assert spread.value == pytest.approx(1.0)  # orthogonal: every pair at cosine distance 1
    assert spread.ci_low == pytest.approx(1.0) and spread.ci_high == pytest.approx(1.0)
    assert spread.centroid_distance == pytest.approx(1 - 1 / np.sqrt(3))
    same = dispersion(np.tile(eye[:1], (4, 1)))
    assert same.value == pytest.approx(0.0) and same.ci_high == pytest.approx(0.0)
    assert same.centroid_distance == pytest.approx(0.0)
    mixed = dispersion(np.vstack([eye[0], eye[0], eye[1]]))  # pairs: 0, 1, 1
    assert mixed.value == pytest.approx(2 / 3)
    assert mixed.ci_low <= mixed.value <= mixed.ci_high
    with pytest.raises(WorkbenchError, match="at least two"):
        dispersion(eye[:1])


def test_dispersion_change_is_paired_over_runs():
    eye = np.eye(3, 8)
    change, low, high = dispersion_change(eye, np.tile(eye[:1], (3, 1)))  # spread out, then all in one place
    assert change == pytest.approx(-1.0) and low == pytest.approx(-1.0) and high == pytest.approx(-1.0)
    change, low, high = dispersion_change(eye, eye)
    assert change == pytest.approx(0.0) and low == pytest.approx(0.0) and high == pytest.approx(0.0)


def test_rising_terms_on_fixed_texts():
    early = ["The weather is nice today.", "I like the weather and my cats."]
    late = ["Ocean waves and the ocean.", "The ocean is calm, the ocean is blue.", "Blue sky."]
    terms = rising_terms(early, late, late_runs=[0, 1, 1], min_count=2)
    assert list(terms.columns) == ["term", "count_early", "count_late", "runs_late", "log_odds", "z"]
    top = terms.iloc[0]
    assert (top["term"], top["count_early"], top["count_late"], top["runs_late"]) == ("ocean", 0, 4, 2)
    assert terms["term"].tolist() == ["ocean", "blue"]  # 'weather' falls; 'sky' is too rare; stop words are gone
    assert (terms["log_odds"] > 0).all() and terms["z"].is_monotonic_decreasing
    assert rising_terms([], late).empty and rising_terms(["the and"], ["of the"]).empty


def test_speakers_see_their_own_turns_as_assistant():
    history = [("B", "hi"), ("A", "one"), ("B", "two")]
    assert speaker_messages("sys", history, "A") == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "one"}, {"role": "user", "content": "two"}]
    assert [m["role"] for m in speaker_messages(None, history, "B")] == ["assistant", "user", "assistant"]
    seeds = [run_seed(0, r) for r in range(50)] + [run_seed(1, r) for r in range(50)]
    assert len(set(seeds)) == 100 and run_seed(0, 1) == run_seed(0, 1) and all(0 <= s < 2**31 for s in seeds)


def test_bad_input_names_the_field(tmp_path):
    from workbench.sampler import Sampler

    sampler = Sampler(store=tmp_path / "s.sqlite", progress=False)  # nothing here loads a model
    cases = [
        ({"turns": 0}, "turns must be .* at least 1, got 0"),
        ({"runs": 1}, "runs must be .* at least 2"),
        ({"seed": -1}, "seed must be"),
        ({"models": [BASE, TUNED, BASE]}, "models: give one model .* or two"),
        ({"models": "gemma-3-27m"}, "unknown model 'gemma-3-27m'"),
        ({"prompt": "mode-collapse/coin-flip"}, "not a self-conversation seed .*prompts list --tag self-conversation"),
        ({"prompt": "self-conversations/no-such-seed"}, "no prompt"),
        ({"prompt": "Hello there"}, "not a library address"),
    ]
    for change, message in cases:
        kwargs = {"models": BASE, "prompt": SEED_PROMPT, "turns": 2, "runs": 2, **change}
        with pytest.raises(WorkbenchError, match=message):
            self_conversation(sampler, **kwargs)
    with pytest.raises(WorkbenchError, match="max_tokens"):
        self_conversation(sampler, BASE, SEED_PROMPT, turns=1, runs=2, max_tokens=0)
    sampler.store.close()


def test_every_shipped_seed_is_a_self_conversation_seed(tmp_path):
    from workbench.experiments.selfchat import check_inputs
    from workbench.sampler import Sampler

    sampler = Sampler(store=tmp_path / "s.sqlite", progress=False)
    seeds = sampler.library.filter(tag="self-conversation")
    assert len(seeds) >= 8 and {p.collection.name for p in seeds} == {"self-conversations"}
    for prompt in seeds:
        assert check_inputs(sampler, [BASE, TUNED], prompt.ref, 1, 2)[2] is prompt
    sampler.store.close()


# -- the embedded models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(embedded_models, tmp_path_factory):
    """One store and three small conversations, shared by the tests below (each model call is slow on CPU)."""
    from workbench.sampler import Sampler

    path = tmp_path_factory.mktemp("selfchat") / "store.sqlite"
    sampler = Sampler(store=path, progress=False)
    results = {
        "base": self_conversation(sampler, [BASE], SEED_PROMPT, turns=3, runs=3, max_tokens=12),
        "tuned": self_conversation(sampler, TUNED, SEED_PROMPT, turns=3, runs=2, max_tokens=12),
        "pair": self_conversation(sampler, [BASE, TUNED], SEED_PROMPT, turns=2, runs=2, max_tokens=12),
    }
    yield sampler, path, results
    sampler.store.close()


def _sample_count(sampler) -> int:
    return sampler.store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]


def test_base_model_plays_both_speakers_through_its_transcript(shared):
    sampler, _, results = shared
    result = results["base"]
    turns = result.turns
    assert len(turns) == 9 and turns["run_id"].nunique() == 9  # every (run, turn) is its own stored cell
    assert turns["speaker"].tolist() == ["A"] * 3 + ["B"] * 3 + ["A"] * 3
    assert (turns["model"] == BASE).all() and (turns["model_kind"] == "base").all()
    for row in turns.itertuples():
        run = sampler.store.run(row.run_id)
        assert run["template"] == "transcript:plain-dialogue" and run["model"] == BASE
        text = run["input_text"]
        assert "User:" in text and "Assistant:" in text and text.rstrip().endswith("Assistant:")
        assert not any(mark in text for mark in CHAT_TEMPLATE_MARKS)
        assert {"\nUser", "\nAssistant"} <= set(run["config"]["stop"])  # the turn ends at the next speaker tag
        assert "selfchat" in run["tags"] and run["seed"] == run_seed(0, row.run)
        assert "\nUser" not in row.text and row.text == row.text.strip()
    # Turn 3 of a run is that run's own conversation so far, from A's side.
    last = turns[(turns["run"] == 1) & (turns["turn"] == 3)].iloc[0]
    earlier = turns[(turns["run"] == 1) & (turns["turn"] < 3)].sort_values("turn")["text"].tolist()
    text = sampler.store.run(last["run_id"])["input_text"]
    assert text.index(result.opening) < text.index(f"Assistant: {earlier[0]}") < text.index(f"User: {earlier[1]}")
    assert result.embeddings.shape == (9, 384) and np.allclose(np.linalg.norm(result.embeddings, axis=1), 1, atol=1e-4)
    spread = result.dispersion
    assert spread["turn"].tolist() == [1, 2, 3] and (spread["n_runs"] == 3).all()
    assert ((spread["ci_low"] <= spread["dispersion"] + 1e-12)
            & (spread["dispersion"] <= spread["ci_high"] + 1e-12)).all()
    assert result.clusters["size"].sum() == 3 and result.clusters["share"].sum() == pytest.approx(1.0)
    summary = result.summary.iloc[0]
    assert summary["largest_cluster_share"] == pytest.approx(result.clusters["size"].max() / 3)
    assert summary["change"] == pytest.approx(spread["dispersion"].iloc[-1] - spread["dispersion"].iloc[0])
    assert "talks to itself" in result.family_note


def test_chat_model_instances_swap_roles(shared):
    sampler, _, results = shared
    result = results["tuned"]
    prompt = sampler.library.get(SEED_PROMPT)
    system, opening = (m.content for m in prompt.spec.messages)
    turns = result.turns[result.turns["run"] == 0].set_index("turn")
    assert turns["speaker"].tolist() == ["A", "B", "A"]
    b_view = sampler.store.run(turns.at[2, "run_id"])
    assert b_view["template"] == "chat-template"
    assert b_view["input_messages"] == [
        {"role": "system", "content": system}, {"role": "assistant", "content": opening},
        {"role": "user", "content": turns.at[1, "text"]}]
    a_view = sampler.store.run(turns.at[3, "run_id"])
    assert a_view["input_messages"] == [
        {"role": "system", "content": system}, {"role": "user", "content": opening},
        {"role": "assistant", "content": turns.at[1, "text"]}, {"role": "user", "content": turns.at[2, "text"]}]
    assert "<|im_start|>assistant" in a_view["input_text"]


def test_two_models_converse(shared):
    sampler, _, results = shared
    result = results["pair"]
    assert result.pairing == f"{BASE} & {TUNED}" and result.models == (BASE, TUNED)
    by_turn = result.turns.groupby("turn")
    assert by_turn["model"].unique().map(list).to_dict() == {1: [BASE], 2: [TUNED]}
    assert by_turn["template"].first().to_dict() == {1: "transcript:plain-dialogue", 2: "chat-template"}
    assert result.dispersion["model"].tolist() == [BASE, TUNED]
    assert "different families" in result.family_note
    # Turn 2 (the tuned model, speaker B) answers what the base model said in turn 1 of the same run.
    first = result.turns[(result.turns["run"] == 0) & (result.turns["turn"] == 1)].iloc[0]
    second = result.turns[(result.turns["run"] == 0) & (result.turns["turn"] == 2)].iloc[0]
    assert sampler.store.run(second["run_id"])["input_messages"][-1] == {"role": "user", "content": first["text"]}


def test_a_repeated_call_is_answered_from_the_store(shared):
    from workbench.sampler import Sampler

    sampler, path, results = shared
    before = _sample_count(sampler)
    again = self_conversation(sampler, [BASE], SEED_PROMPT, turns=3, runs=3, max_tokens=12)
    assert _sample_count(sampler) == before  # nothing drawn
    fresh = Sampler(store=path, progress=False)  # another session on the same store
    try:
        replayed = self_conversation(fresh, BASE, SEED_PROMPT, turns=3, runs=3, max_tokens=12)
    finally:
        fresh.store.close()
    for other in (again, replayed):
        for name in ("turns", "dispersion", "clusters", "terms", "summary"):
            pd.testing.assert_frame_equal(getattr(other, name), getattr(results["base"], name))
        assert np.array_equal(other.embeddings, results["base"].embeddings)
    # One more turn extends the runs: only the new turn is drawn.
    longer = self_conversation(sampler, [BASE], SEED_PROMPT, turns=4, runs=3, max_tokens=12)
    assert _sample_count(sampler) == before + 3
    pd.testing.assert_frame_equal(longer.turns[longer.turns["turn"] <= 3][["run", "turn", "text", "run_id"]],
                                  results["base"].turns[["run", "turn", "text", "run_id"]])


def test_figure_has_trajectories_and_a_convergence_curve(shared):
    _, _, results = shared
    fig = selfchat_figure(results["base"])
    paths, curve = fig.axes
    assert len(fig.axes) == 2
    assert len(paths.get_lines()) >= 3 * 3 + 1  # a path, start and end marker per run, the opening line
    assert "dispersion" in curve.get_ylabel() and len(curve.collections) == 1  # the CI band
    assert [t.get_text() for t in curve.get_xticklabels()] == ["1\nA", "2\nB", "3\nA"]
    assert "largest final-turn cluster" in fig.get_supxlabel()
    both = selfchat_figure([results["base"], results["pair"]])
    assert len(both.axes) == 2 and len(both.axes[1].collections) == 2
    with pytest.raises(WorkbenchError, match="at least one"):
        selfchat_figure([])
    assert isinstance(results["base"], SelfChatResult)


# -- the command line ------------------------------------------------------------------------


def test_selfchat_cli_end_to_end(embedded_models, tmp_path):
    figure = tmp_path / "out" / "chat.png"
    args = ["selfchat", "self-conversations/hello", "--models", TUNED, "--turns", "2", "--runs", "2",
            "--max-tokens", "8", "--figure", str(figure), "--quiet"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dispersion across runs" in result.stdout and "rising terms" in result.stdout
    assert figure.stat().st_size > 0
    for name in ("turns", "dispersion", "summary", "terms", "clusters"):
        assert (tmp_path / "out" / f"chat.{name}.csv").is_file()
    provenance = json.loads((tmp_path / "out" / "chat.provenance.json").read_text())
    turns = pd.read_csv(tmp_path / "out" / "chat.turns.csv")
    assert provenance["experiment"] == "self-conversation" and sorted(provenance["run_ids"]) == sorted(turns["run_id"])
    # The same command again (the test's store is shared through WORKBENCH_STORE): the same turns, from the store.
    again = run_cli(*args[:-3], "--figure", str(tmp_path / "again.svg"), "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again.turns.csv"), turns)
    assert (tmp_path / "again.svg").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["selfchat", SEED_PROMPT, "--models", BASE, "--turns", "0"], "--turns: must be at least 1"),
    (["experiment", "selfchat", SEED_PROMPT, "--models", BASE, "--runs", "1"], "runs must be"),
    (["selfchat", SEED_PROMPT, "--models", f"{BASE},{TUNED},{BASE}"], "give one model"),
    (["selfchat", SEED_PROMPT, "--models", BASE, "--models", "no-such-model"], "unknown model"),
    (["selfchat", SEED_PROMPT, "--models", BASE, "--figure", "out.jpg"], "give a path ending in .png"),
    (["selfchat", "mode-collapse/coin-flip", "--models", BASE], "not a self-conversation seed"),
])
def test_selfchat_cli_bad_input_exits_2(args, message):
    result = run_cli(*args, "--quiet")
    assert result.returncode == 2, result.stdout[-1000:]
    assert message in result.stderr and "Traceback" not in result.stderr
