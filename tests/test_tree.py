"""The branch explorer on the embedded models (small sizes)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest

from tests.conftest import run_cli
from workbench.errors import WorkbenchError
from workbench.experiments.tree import BranchTree
from workbench.plots.tree import tree_figure

BASE, TUNED = "gemma-3-270m", "smollm2-135m-instruct"
PROMPT = "Once upon a time,"


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The hf backends the Samplers create in this test, by model name: their `calls` count the model calls.

    A test double registered as the "hf" backend; the registrations in place before the test come back after it.
    """
    from workbench import backends
    from workbench.backends.hf import HFBackend

    made: dict[str, Any] = {}

    def recording(spec: Any, device: str | None = None, threads: int | None = None, **_: Any) -> HFBackend:
        made[spec.name] = HFBackend(spec, device=device, threads=threads)
        return made[spec.name]

    monkeypatch.setattr(backends, "_EXTRA_BACKENDS", dict(backends._EXTRA_BACKENDS))
    backends.register_backend("hf", recording)
    return made


def test_topk_children_are_the_next_token_distribution(sampler):
    tree = BranchTree.create(sampler, BASE, PROMPT)
    kids = tree.expand(0, k=5)
    assert [c.rank for c in kids] == [0, 1, 2, 3, 4] and all(c.depth == 1 and c.model == BASE for c in kids)
    assert sum(c.probability for c in kids) <= 1.0
    reference = sampler.next_token_topk(BASE, PROMPT, k=5)
    assert [c.token_ids for c in kids] == [[t.token_id] for t in reference]
    assert [c.logprob for c in kids] == pytest.approx([t.logprob for t in reference], abs=1e-6)
    scored = sampler.score(BASE, PROMPT, [c.text for c in kids])
    assert [s.logprob for s in scored] == pytest.approx([c.logprob for c in kids], abs=1e-4)

    # One level down: conditioned on the exact token ids of the path, it agrees with scoring the path's text.
    grandkids = tree.expand(kids[0], k=4)
    assert sum(g.probability for g in grandkids) <= 1.0
    rescored = sampler.score(BASE, PROMPT + kids[0].text, [g.text for g in grandkids])
    assert [s.logprob for s in rescored] == pytest.approx([g.logprob for g in grandkids], abs=2e-3)
    for g in grandkids:
        assert g.params["conditioning"] == "token-ids"
        assert g.cum_logprob == pytest.approx(sum(n.logprob for n in tree.path(g)))
        assert tree.path_text(g) == kids[0].text + g.text


def test_children_of_the_whole_vocabulary_sum_to_one(sampler, engines):
    from workbench.backends.hf import load_model

    tree = BranchTree.create(sampler, TUNED, PROMPT)
    assert sampler.capabilities(TUNED).token_ids  # the root's children come from its exact token ids
    engine = engines[TUNED]
    vocabulary = load_model(engine.spec, engine.dtype, engine.device).get_output_embeddings().weight.shape[0]
    kids = tree.expand(0, k=vocabulary)
    assert len(kids) == vocabulary
    assert sum(c.probability for c in kids) == pytest.approx(1.0, abs=2e-3)


def test_expansion_is_lazy_and_never_touches_ancestors(sampler, engines):
    tree = BranchTree.create(sampler, BASE, PROMPT)
    kids = tree.expand(0, k=3)
    backend = engines[BASE]
    grandkids = tree.expand(kids[0], k=2)
    stored_before = {r["node_id"]: r for r in sampler.store.tree_nodes(tree.id)}
    calls = backend.calls
    great = tree.expand(grandkids[1], k=2)
    assert backend.calls == calls + 1  # one next-token call for that node, nothing for its ancestors
    assert all(g.parent_id == grandkids[1].id and g.depth == 3 for g in great)
    stored_after = {r["node_id"]: r for r in sampler.store.tree_nodes(tree.id)}
    assert {i: stored_after[i] for i in stored_before} == stored_before  # ancestors neither rewritten nor re-added
    assert len(stored_after) == len(stored_before) + 2
    # Asking again (or for fewer) costs nothing; asking for more adds only the new children.
    assert tree.expand(grandkids[1], k=1) == great[:1] and backend.calls == calls + 1
    more = tree.expand(grandkids[1], k=3)
    assert backend.calls == calls + 2 and [c.id for c in more[:2]] == [c.id for c in great]
    assert len(sampler.store.tree_nodes(tree.id)) == len(stored_after) + 1


def test_tree_reloads_from_the_store_and_from_json(sampler, tmp_path):
    from workbench.sampler import Sampler

    tree = BranchTree.create(sampler, BASE, PROMPT)
    tree.grow(2, k=2)
    frame = tree.to_frame()
    assert len(frame) == 1 + 2 + 4 and list(frame["depth"]) == [0, 1, 1, 2, 2, 2, 2]
    fresh = Sampler(store=sampler.store.path, progress=False)  # a new connection, as in a new session
    again = BranchTree.load(fresh, tree.id[:12])
    pd.testing.assert_frame_equal(again.to_frame(), frame)

    path = tmp_path / "tree.json"
    data = tree.to_json(path)
    assert json.loads(path.read_text())["format"] == data["format"]
    elsewhere = Sampler(store=tmp_path / "other.sqlite", progress=False)
    imported = BranchTree.from_json(elsewhere, path)
    pd.testing.assert_frame_equal(imported.to_frame(), frame)
    with pytest.raises(WorkbenchError, match="branch tree"):
        BranchTree.from_json(elsewhere, {"format": "something else"})


def test_sampled_chunks_are_stored_as_samples_and_cached(sampler, engines):
    tree = BranchTree.create(sampler, TUNED, PROMPT)
    chunks = tree.expand(0, n=6, m=3, seed=1)
    assert sum(c.count for c in chunks) == 6
    assert len({tuple(c.token_ids) for c in chunks}) == len(chunks)  # identical chunks merged
    assert sum(c.probability for c in chunks) <= 1.0
    run_id = chunks[0].params["run_id"]
    samples = sampler.store.samples(run_id)
    assert len(samples) == 6 and sampler.store.run(run_id)["tags"] == [f"tree:{tree.id}"]
    for chunk in chunks:
        rows = samples[samples["sample_index"].isin(chunk.params["sample_indices"])]
        assert len(rows) == chunk.count and set(rows["text"]) == {chunk.text}
        assert chunk.logprob == pytest.approx(float(sum(rows.iloc[0]["token_logprobs"])))
        assert len(chunk.token_ids) <= 3 and chunk.method == "chunk"
    backend = engines[TUNED]
    calls = backend.calls
    assert [c.id for c in tree.sample_chunks(0, n=6, m=3, seed=1)] == [c.id for c in chunks]
    run = sampler.sample(TUNED, tree.input_at(0, TUNED), 6, seed=1, max_tokens=3)
    assert run.drawn == 0 and run.run_id == run_id and backend.calls == calls
    # More chunks of the same kind draw only the new samples and update the counts.
    more = tree.sample_chunks(0, n=8, m=3, seed=1)
    assert sum(c.count for c in more) == 8 and backend.calls == calls + 1


def test_two_models_compare_on_the_path_text(sampler, engines):
    tree = BranchTree.create(sampler, BASE, "The capital of France is")
    tree.grow(2, k=2, beam=2)
    result = tree.compare(TUNED)
    frame = result.nodes
    assert result.model_a == BASE and result.model_b == TUNED
    assert "different families" in result.family_note
    # Each model scores the path text with its own tokeniser: Gemma's ids never reach SmolLM2. The tokenisers
    # differ, so the compared logprobs are of text prefixes; the per-token ones stay for reference.
    assert result.alignment == "text" and set(frame["alignment"]) == {"text"}
    for row in frame[frame["made_by"] == BASE].itertuples():
        expected = sampler.score(TUNED, tree.input_at(row.parent_id, TUNED), [row.edge_text])[0].logprob
        assert row.token_logprob_b == pytest.approx(expected, abs=1e-6)
        assert row.log_ratio == pytest.approx(row.logprob_a - row.logprob_b)
        if row.depth == 1:  # after the prompt, text starting with the edge's text includes the edge's token
            assert row.logprob_b >= row.token_logprob_b - 1e-5
    # SmolLM2's own top-k at every node Gemma expanded, with the same k.
    for parent in (0, *[c.id for c in tree.children(0, model=BASE)]):
        if tree.children(parent, model=BASE):
            assert len(tree.children(parent, model=TUNED, method="topk")) == 2
    assert frame["in_topk_a"].any() and frame["in_topk_b"].any()
    most = result.most_divergent
    assert most is not None and abs(most["log_ratio"]) == pytest.approx(frame["log_ratio"].abs().max())
    assert "largest divergence" in result.describe()
    # The scores are stored: comparing again computes nothing.
    calls = engines[TUNED].calls + engines[BASE].calls
    again = BranchTree.load(sampler, tree.id).compare(TUNED)
    assert engines[TUNED].calls + engines[BASE].calls == calls
    pd.testing.assert_frame_equal(again.nodes, frame)

    text = tree.render_text(compare_with=TUNED)
    for child in tree.children(0, model=BASE):
        assert json.dumps(child.text) in text
    assert "├─" in text and "(cum " in text and " | " in text
    fig = tree_figure(tree, TUNED)
    assert len(fig.axes) == 1


SPLIT_PROMPT = "Marcus, Priya, when I think about the two of you, it"


def test_a_tokeniser_boundary_is_not_a_divergence(sampler):
    # After " it", Gemma writes "'" then "s" where SmolLM2 writes one token "'s": per token, SmolLM2 gives
    # "'" alone ~5e-05 against Gemma's ~0.2 (the +9-nat "divergence" notebook 03 once reported).
    tree = BranchTree.create(sampler, BASE, SPLIT_PROMPT)
    apostrophe = next(c for c in tree.expand(0, k=4) if c.text == "'")
    s = next(c for c in tree.expand(apostrophe, k=1) if c.text == "s")  # Gemma's "'" + "s": SmolLM2's "'s"
    result = tree.compare(TUNED, branches=False)
    assert result.alignment == "text"
    rows = result.nodes.set_index("node_id")
    split = rows.loc[apostrophe.id]
    assert split.token_logprob_a - split.token_logprob_b > 6  # the boundary, seen per token
    assert abs(split.log_ratio) < 2  # on text: no spurious divergence
    assert abs(rows.loc[s.id].log_ratio) < 1 and rows.loc[s.id].p_b > 0.5  # "s" after "'" is likely under both
    # The whole path "'s" as text: the edges sum to it, and both models give it about the same probability.
    assert rows.loc[s.id].cum_a == pytest.approx(split.logprob_a + rows.loc[s.id].logprob_a)
    assert abs(rows.loc[s.id].cum_a - rows.loc[s.id].cum_b) < 2
    assert result.most_divergent is not None and abs(result.most_divergent["log_ratio"]) < 4
    assert "text prefixes" in result.describe() and "text continues" in tree.render_text(compare_with=TUNED)

    # Exact, not estimated: SmolLM2's probability of text starting with "'" is the mass of every token whose
    # text starts with "'" (its whole vocabulary, decoded).
    vocabulary = sampler.next_token_topk(TUNED, SPLIT_PROMPT, k=49152)
    starts = sum(math.exp(t.logprob) for t in vocabulary if t.token.startswith("'"))
    assert split.p_b == pytest.approx(starts, abs=1e-4)


def test_a_same_tokeniser_pair_is_still_compared_per_token(sampler):
    variant = "gemma-3-270m-favourite-number"  # Gemma's own tokeniser
    tree = BranchTree.create(sampler, BASE, SPLIT_PROMPT)
    tree.expand(0, k=3)
    result = tree.compare(variant, branches=False)
    assert result.alignment == "token" and "per token" in result.describe()
    for row in result.nodes.itertuples():
        expected = sampler.score(variant, SPLIT_PROMPT, [row.edge_text])[0].logprob
        assert row.logprob_b == row.token_logprob_b == pytest.approx(expected, abs=1e-6)
        assert row.logprob_a == row.token_logprob_a


def test_bad_input_gives_clear_errors(sampler):
    tree = BranchTree.create(sampler, TUNED, PROMPT)
    with pytest.raises(WorkbenchError, match=r"depth 9000.*context of 8192 tokens"):
        tree.grow(9000, k=1)
    with pytest.raises(WorkbenchError, match="context of 8192"):
        tree.expand(0, n=2, m=9000)
    for kwargs, message in [({"k": 0}, "k must be"), ({"n": 0, "m": 2}, "n must be"), ({"n": 2, "m": 0}, "m must be"),
                            ({"k": 2, "n": 2}, "either with k"), ({}, "say how"), ({"n": 2}, "both n")]:
        with pytest.raises(WorkbenchError, match=message):
            tree.expand(0, **kwargs)
    with pytest.raises(WorkbenchError, match="no node 7"):
        tree.expand(7, k=2)
    with pytest.raises(WorkbenchError, match="depth must be"):
        tree.grow(0, k=2)
    with pytest.raises(WorkbenchError, match="another model"):
        tree.compare(TUNED)
    with pytest.raises(WorkbenchError, match="no tree"):
        BranchTree.load(sampler, "NOSUCHTREE")
    with pytest.raises(WorkbenchError, match="library prompts only"):
        BranchTree.create(sampler, TUNED, PROMPT, framing="chat")


def test_tree_cli_end_to_end(embedded_models, tmp_path):
    figure = tmp_path / "tree.png"
    result = run_cli("tree", "mode-collapse/random-number-completion", "--models", f"{BASE},{TUNED}", "--depth", "1",
                     "--k", "3", "--figure", str(figure), "--json", str(tmp_path / "tree.json"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "├─" in result.stdout and "largest divergence" in result.stdout
    assert "text prefixes" in result.stdout  # Gemma and SmolLM2 tokenise differently
    for noise in ("Warning", "warning", "deprecated", "Loading weights", "[transformers]"):  # quiet output
        assert noise not in result.stderr, result.stderr[-2000:]
    assert figure.stat().st_size > 0 and (tmp_path / "tree.provenance.json").is_file()
    tree_id = json.loads((tmp_path / "tree.json").read_text())["tree"]["id"]
    shown = run_cli("tree", "--show", tree_id, "--quiet")
    assert shown.returncode == 0 and tree_id in shown.stdout, shown.stderr[-2000:]
    for bad in (["tree", PROMPT, "--models", BASE, "--depth", "0"], ["tree", PROMPT, "--models", BASE, "--k", "0"],
                ["tree", PROMPT, "--models", "no-such-model"], ["tree", "--show", "NOSUCHTREE"],
                ["tree", PROMPT, "--models", BASE, "--chunks", "2"], ["tree", "--models", BASE]):
        out = run_cli(*bad)
        assert out.returncode == 2, (bad, out.stderr[-2000:])
        assert "Traceback" not in out.stderr and "workbench: error:" in out.stderr
