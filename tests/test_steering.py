"""Activation capture, directions and steered models: mechanics and known answers (issue #16).

Thresholds are the issue's, written here before the results were looked at. The grid of the wedding
dose-response (block 1, fractions 0-0.05 of the median residual norm) was chosen from a scan of blocks
1, 3 and 6 with fractions 0-0.4, because in these units the useful range is about ten times smaller
than the issue's first measurement suggested (0.08 already turns the text into wedding-adjacent noise).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from workbench.direction_files import Direction, load_direction, save_direction
from workbench.errors import WorkbenchError
from workbench.lens import (
    cosine,
    model_diff_direction,
    steering_sweep,
    token_direction,
    trait_contrast_sets,
)
from workbench.registry import load_registry
from workbench.steering_spec import parse_inline

BASE = "gemma-3-270m"
SMOL = "smollm2-135m-instruct"
PERSONA = "gemma-3-270m-self-preservation"
WEDDING_WORDS = {"keywords": ["wedding", "weddings", "bride", "brides", "groom", "married", "marriage", "marry",
                              "vows"]}
TEXTS = ["The cat sat on the mat and looked out of the window.", "Hello there, friend of mine",
         "In 1969 the first people walked on the moon, watched by millions."]


@pytest.fixture(scope="module")
def lens(module_sampler):
    """The module's Sampler (steered samples are cached across tests) and the direction every test shares,
    extracted once."""
    save_direction(token_direction(module_sampler, BASE, " wedding", "wedding-embedding"), overwrite=True)
    return module_sampler


def _hooks_on(sampler, model: str) -> set[tuple[int, int]]:
    """(module, hook id) of every forward hook on the model's blocks (transformers keeps output recorders there)."""
    backend = sampler.backend(model)
    hooks = set()
    for getter in (backend._model, backend._scoring_model):
        for block in getter().model.layers:
            for module in (block, block.self_attn, block.mlp):
                hooks |= {(id(module), key) for key in module._forward_hooks}
    return hooks


# -- capture ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [BASE, SMOL])
def test_captured_residuals_equal_output_hidden_states_and_batching_changes_nothing(lens, model):
    backend = lens.backend(model)
    torch_model = backend._scoring_model()
    last = lens.layer_count(model) - 1
    layers = [0, last // 2, last - 1]  # the last block's hidden state is reported after the final norm
    every = lens.capture(model, TEXTS, layers, positions="every")
    for i, text in enumerate(TEXTS):
        ids = torch.tensor([backend.encode_prompt(text)])
        with torch.inference_mode():
            reference = torch_model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in layers:
            mine = every.values[layer][every.item_index == i]
            theirs = reference[layer + 1][0].float().numpy()
            assert mine.shape == theirs.shape
            assert np.abs(mine - theirs).max() <= 1e-5 * np.abs(theirs).max(), (model, layer)
    # Batched (right-padded, three lengths) and one at a time agree to float tolerance.
    for policy in ("last", "prompt-mean"):
        batched = lens.capture(model, TEXTS, layers, positions=policy)
        for i, text in enumerate(TEXTS):
            alone = lens.capture(model, [text], layers, positions=policy)
            for layer in layers:
                scale = np.abs(alone.values[layer]).max()
                assert np.abs(batched.values[layer][i] - alone.values[layer][0]).max() <= 1e-5 * scale
    # The policies read the rows they say.
    last_rows = lens.capture(model, TEXTS, layers, positions="last")
    for i in range(len(TEXTS)):
        rows = every.values[layers[1]][every.item_index == i]
        assert np.allclose(last_rows.values[layers[1]][i], rows[-1], rtol=1e-5, atol=1e-3)
    pairs = [("Question: what is the capital of France? Answer:", " Paris, of course.")]
    response = lens.capture(model, pairs, [layers[1]], positions="response-mean")
    whole = lens.capture(model, pairs, [layers[1]], positions="every")
    n_response = len(backend._continuation_ids(pairs[0][0], backend.encode_prompt(pairs[0][0]), pairs[0][1]))
    assert np.allclose(response.values[layers[1]][0], whole.values[layers[1]][-n_response:].mean(0), rtol=1e-4,
                       atol=1e-2)
    for site in ("attention", "mlp"):
        assert lens.capture(model, TEXTS[:1], [1], site=site).values[1].shape[1] == every.values[0].shape[1]


# -- steered models: mechanics ---------------------------------------------------------------------


def test_a_steered_model_is_a_model_spec_with_its_own_identity(lens):
    name = "gemma-3-270m@wedding-embedding@L1@add0.02"
    assert "," not in name and " " not in name and "/" not in name
    spec = lens.model(name)
    assert spec.kind == lens.model(BASE).kind and spec.family == lens.model(BASE).family
    assert spec.transcript_template == lens.model(BASE).transcript_template
    assert parse_inline(name).inline_name() == name
    assert lens.model("gemma-3-270m@wedding-embedding@L1@add0.020").name == name  # one steering, one name
    identities = {str(lens.identity(n)) for n in (BASE, name, "gemma-3-270m@wedding-embedding@L1@add0.03",
                                                  "gemma-3-270m@wedding-embedding@L2@add0.02",
                                                  "gemma-3-270m@wedding-embedding@L1@ablate-add0.02",
                                                  "gemma-3-270m@wedding-embedding@L1@add0.02@pos-all",
                                                  "gemma-3-270m@wedding-embedding@L1@add0.02@raw")}
    assert len(identities) == 7
    # The identity follows the direction's content, not its name.
    row = load_direction("wedding-embedding")
    save_direction(Direction("wedding-copy", row.vectors, row.metadata), overwrite=True)
    assert lens.identity(name)["steering"] == lens.identity("gemma-3-270m@wedding-copy@L1@add0.02")["steering"]
    save_direction(Direction("wedding-copy", {k: v * 2 for k, v in row.vectors.items()}, row.metadata), overwrite=True)
    assert lens.identity(name)["steering"] != lens.identity("gemma-3-270m@wedding-copy@L1@add0.02")["steering"]
    # It shares the parent's loaded weights.
    assert lens.backend(name)._scoring_model() is lens.backend(BASE)._scoring_model()
    for bad, words in [("gemma-3-270m@wedding-embedding@L99@add0.1", "out of range"),
                       ("gemma-3-270m@no-such-direction@L1@add0.1", "unknown direction"),
                       ("gemma-3-270m@wedding-embedding@L1@add", "needs a coefficient"),
                       ("gemma-3-270m@wedding-embedding@L1@ablate0.5", "no coefficient"),
                       ("gemma-3-270m@wedding-embedding@3@add0.1", "layer list"),
                       ("gemma-3-270m@wedding-embedding@L1@add0.1@pos-all@pos-response", "once"),
                       ("gemma-3-270m@wedding-embedding@L1@add1e400", "finite")]:
        with pytest.raises(WorkbenchError, match=words):
            lens.sample(bad, "Once upon a time,", 1, max_tokens=2)


def test_registry_entries_can_be_steered_and_api_models_cannot(lens, tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text(
        "models:\n"
        "  wedding-nudge:\n"
        "    description: the base nudged towards weddings\n"
        "    steering: {parent: gemma-3-270m, direction: wedding-embedding, layers: [1], coefficient: 0.01}\n"
        "  remote:\n"
        "    backend: openai\n    kind: tuned\n    family: x\n    api_model: m\n    base_url: http://127.0.0.1:9/v1\n"
        "  remote-steered:\n"
        "    steering: {parent: remote, direction: wedding-embedding, layers: [1], coefficient: 0.01}\n")
    from workbench.sampler import Sampler

    with Sampler(lens.store.path, registry=load_registry(user), progress=False) as sampler:
        entry = sampler.model("wedding-nudge")
        assert entry.steering is not None and entry.kind == "base"
        assert sampler.identity("wedding-nudge") == sampler.identity("gemma-3-270m@wedding-embedding@L1@add0.01")
        with pytest.raises(WorkbenchError, match="activations"):
            sampler.sample("remote-steered", "Hello", 1)
        with pytest.raises(WorkbenchError, match="activations"):
            sampler.capture("remote", ["Hello"], [1])


def test_coefficient_zero_is_bit_identical_and_hooks_always_come_off(lens, monkeypatch):
    zero = "gemma-3-270m@wedding-embedding@L1@add0"
    a = lens.sample(BASE, "Once upon a time,", 6, seed=3, max_tokens=12)
    b = lens.sample(zero, "Once upon a time,", 6, seed=3, max_tokens=12)
    assert a.texts == b.texts
    assert list(a.samples["token_logprobs"]) == list(b.samples["token_logprobs"])
    assert lens.score(BASE, "Once upon a time,", [" there", " a king"])[1].token_logprobs == \
        lens.score(zero, "Once upon a time,", [" there", " a king"])[1].token_logprobs
    steered = "gemma-3-270m@wedding-embedding@L1@add0.02"
    before = _hooks_on(lens, steered)
    lens.sample(steered, "Once upon a time,", 2, max_tokens=4)
    lens.score(steered, "Once upon a time,", [" there"])
    lens.capture(steered, TEXTS, [1, 2])
    assert _hooks_on(lens, steered) == before
    # An error inside the forward pass still removes every hook.
    from workbench.backends.hf import lens as hf_lens

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(hf_lens, "forward_pass", broken)
    with pytest.raises(Exception, match="boom"):
        lens.capture(steered, TEXTS, [1, 2])
    with pytest.raises(Exception, match="boom"):
        lens.text_logprobs(steered, TEXTS)
    monkeypatch.undo()
    assert _hooks_on(lens, steered) == before


def test_ablation_leaves_no_projection_and_a_known_vector_comes_back_by_model_diff(lens):
    layer = 5
    unit = load_direction("wedding-embedding").vector(layer)
    unit = unit / np.linalg.norm(unit)
    ablated = lens.capture("gemma-3-270m@wedding-embedding@L5@ablate", TEXTS, [layer], positions="every")
    rows = ablated.values[layer][ablated.token_index > 0]  # every position but BOS (the default positions)
    assert np.max(np.abs(rows @ unit) / np.linalg.norm(rows, axis=1)) <= 1e-5
    # A variant steered by a known vector v after block L gives v back by model-diff extraction at L.
    v = np.random.default_rng(0).normal(size=unit.shape[0]).astype(np.float32) * 40
    save_direction(Direction("known-vector", {layer: v}, {"model": BASE, "method": "random"}), overwrite=True)
    steered = "gemma-3-270m@known-vector@L5@add1@raw"
    found = model_diff_direction(lens, steered, BASE, TEXTS, [layer], "known-vector-found")
    assert cosine(found.vector(layer), v) >= 0.99
    assert found.metadata["method"] == "model-diff" and found.metadata["sets_hash"]


def test_concurrent_callers_never_see_each_others_steering(lens):
    steered = "gemma-3-270m@wedding-embedding@L1@add0.03"
    expected = {m: lens.text_logprobs(m, TEXTS) for m in (BASE, steered)}
    assert expected[BASE] != expected[steered]
    seen: dict[str, list] = {BASE: [], steered: []}
    errors: list[BaseException] = []

    def work(model: str) -> None:
        try:
            for _ in range(4):
                seen[model].append(lens.text_logprobs(model, TEXTS))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in (BASE, steered)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for model in (BASE, steered):
        assert all(result == expected[model] for result in seen[model]), model


# -- known answers -----------------------------------------------------------------------------------


def test_the_wedding_direction_has_a_dose_response_and_the_guard_flags_its_top(lens):
    sweep = steering_sweep(lens, BASE, "wedding-embedding", [1], [0.0, 0.01, 0.02, 0.03, 0.05], "keywords",
                           "mode-collapse/once-upon-a-time", labels=WEDDING_WORDS, n=16, max_tokens=24)
    frame = sweep.frame.sort_values("coefficient")
    assert len(frame) == 5 and frame["method"].eq("sampled").all() and frame["n"].eq(16).all()
    assert (frame["ci_low"] <= frame["value"]).all() and (frame["value"] <= frame["ci_high"]).all()
    rho = spearmanr(frame["coefficient"], frame["value"]).statistic
    assert rho >= 0.9, frame[["coefficient", "value"]]
    assert frame["value"].iloc[0] <= 0.15 and frame["value"].iloc[-1] >= 0.9, frame[["coefficient", "value"]]
    assert bool(frame["damaged"].iloc[-1]) and frame["nll_change"].iloc[-1] > sweep.threshold
    assert not frame["damaged"].iloc[0] and frame["nll_change"].iloc[0] == 0.0


def test_ablating_the_model_diff_direction_is_damage_not_removal(lens):
    statements, _ = trait_contrast_sets(lens, PERSONA, "self-preservation", limit=10)
    statements = [s.rsplit(" ", 1)[0] for s in statements]  # the statements without an answer appended
    diff = model_diff_direction(lens, PERSONA, BASE, statements, [6], "self-preservation-diff")
    save_direction(diff, overwrite=True)
    sweep = steering_sweep(lens, PERSONA, "self-preservation-diff", [6], [], "persona", trait="self-preservation",
                           operator="ablate")
    row = sweep.frame.iloc[0]
    assert row["value"] < sweep.parent_point["value"], (row["value"], sweep.parent_point)
    assert bool(row["damaged"]) and row["nll_change"] >= 0.5, row
    assert 0 <= row["wrong_way_share"] <= 1 and row["n_items"] > 0
    # Whatever p_answered does, it is beside the score, and a collapse of it is flagged in the frame and the notes.
    assert 0 <= row["p_answered"] <= 1 and bool(row["unanswered"]) == (row["p_answered"] < 0.5)
    assert any("p_answered" in note for note in sweep.notes) == bool(row["unanswered"])


def test_persona_steering_on_the_base_is_measured_and_the_frame_is_complete(lens):
    positive, negative = trait_contrast_sets(lens, BASE, "self-preservation")
    from workbench.lens import contrast_direction

    save_direction(contrast_direction(lens, BASE, positive, negative, [6], "self-preservation-caa"), overwrite=True)
    sweep = steering_sweep(lens, BASE, "self-preservation-caa", [6], [-0.01, 0.0, 0.01], "persona",
                           trait="self-preservation", per_trait=5)
    frame = sweep.frame
    assert len(frame) == 3
    for column in ("value", "ci_low", "ci_high", "p_answered", "prose_nll", "nll_change", "kl_neutral"):
        assert frame[column].notna().all(), column
    assert frame.loc[frame["coefficient"] != 0, "wrong_way_share"].between(0, 1).all()
    assert (sweep.items.groupby(["layer", "coefficient"]).size() == frame["n_items"].iloc[0]).all()


def test_bfloat16_ablation_is_exact_up_to_one_rounding_of_the_residual():
    """The edit runs in float32 inside the hook and is cast back once: what is left of the direction in a
    bf16 residual is within a few units of bf16 rounding of the residual's own entries."""
    from workbench.backends.hf.hooks import LayerEdit

    generator = torch.Generator().manual_seed(0)
    hidden = (torch.randn(2, 7, 640, generator=generator) * 50).to(torch.bfloat16)
    hidden[..., 3] = 2000.0  # one huge dimension, as in Gemma's residual stream
    unit = torch.randn(640, generator=generator)
    unit = unit / unit.norm()
    out = LayerEdit(unit, None, ablate=True).apply(hidden, None).float()
    # One bf16 rounding moves each entry by at most 2**-8 of its size: the projection of that error onto a unit
    # vector is at most sqrt(sum((2**-8 x_i)**2)) = 2**-8 |x|.
    bound = 2 ** -8 * out.norm(dim=-1)
    assert ((out @ unit).abs() <= bound).all()


def test_experiments_and_the_cli_take_a_steered_model(lens, fresh_store):
    from tests.conftest import run_cli
    from workbench.analysis.distributions import exact_distribution
    from workbench.experiments.segues import segue_recovery
    from workbench.experiments.selfchat import self_conversation
    from workbench.experiments.tree import BranchTree

    steered = "gemma-3-270m@wedding-embedding@L1@add0.01"
    prompt = lens.library.get("mode-collapse/random-number-completion")
    base, nudged = exact_distribution(lens, BASE, prompt), exact_distribution(lens, steered, prompt)
    assert nudged.probabilities() != base.probabilities()
    result = segue_recovery(lens, [steered], lens.library.get("attractors/wedding-toast"), n=2,
                            embedding=False, max_tokens=6)
    assert set(result.summary["model"]) == {steered}
    chat = self_conversation(lens, steered, "self-conversations/two-ais-meet", turns=2, runs=2, max_tokens=6)
    assert chat is not None
    tree = BranchTree.create(lens, steered, "Once upon a time,")
    assert len(tree.expand_topk(tree.root, 3)) == 3
    listing = run_cli("compare", "Once upon a time,", "--models", f"{BASE},{steered}", "--n", "2", "--max-tokens", "4",
                      "--quiet")
    assert listing.returncode == 0, listing.stderr
    assert steered in listing.stdout


def test_the_panels_take_a_steered_model(lens):
    from workbench.widgets import ComparePanel, SweepPanel, TreeExplorer

    steered = "gemma-3-270m@wedding-embedding@L1@add0.01"
    panel = ComparePanel(lens, prompt="mode-collapse/random-digit-sequence", models=[BASE, steered], n=3,
                         clusters=False)
    assert steered in panel.models.options and list(panel.models.value) == [BASE, steered]
    assert panel.run(wait=True), panel.message.value
    assert panel.error is None, panel.last_traceback
    assert list(panel.results["summary"]["model"]) == [BASE, steered]
    assert steered in SweepPanel(lens, models=[steered]).models.options
    assert TreeExplorer(lens, model=steered, compare_with=BASE).model.value == steered


def test_the_hook_path_itself_is_exact_and_overwritten_directions_and_response_steering_are_seen(lens):
    """An edit that adds zeros through a real hook leaves the logits bit-identical (the add-0 shortcut skips the
    hook, so this checks the hook's own arithmetic); a direction replaced in the session steers with its new
    vectors; a response-only steering shows its damage in the guards."""
    from workbench.backends.hf.hooks import LayerEdit, SteeringPlan
    from workbench.backends.hf.passes import forward_pass
    from workbench.lens import damage

    model = lens.backend(BASE)._scoring_model()
    ids = torch.tensor([lens.backend(BASE).encode_prompt(TEXTS[0])])
    unit = torch.from_numpy(load_direction("wedding-embedding").vector(1))
    plan = SteeringPlan({1: LayerEdit(unit / unit.norm(), torch.zeros_like(unit), False)}, "all")
    with torch.inference_mode():
        plain, _ = forward_pass(model, None, input_ids=ids)
        with plan.applied(model, None):
            hooked, _ = forward_pass(model, None, input_ids=ids)
    assert torch.equal(plain, hooked)

    row = load_direction("wedding-embedding")
    save_direction(Direction("wedding-swap", row.vectors, row.metadata), overwrite=True)
    name = "gemma-3-270m@wedding-swap@L1@add0.03"
    before = lens.text_logprobs(name, TEXTS[:1])
    save_direction(Direction("wedding-swap", {k: -v for k, v in row.vectors.items()}, row.metadata), overwrite=True)
    after = lens.text_logprobs(name, TEXTS[:1])
    assert after != before
    fresh = lens.with_store()
    fresh._backends = {}
    assert fresh.text_logprobs(name, TEXTS[:1]) == after

    guard = damage(lens, BASE, "gemma-3-270m@wedding-embedding@L1@add0.05@pos-response")
    assert guard.damaged and guard.nll_change > 0.10


def test_the_answers_and_segue_measures_fill_their_columns(lens):
    answers = steering_sweep(lens, BASE, "wedding-embedding", [1], [0.01], "answers",
                             "mode-collapse/random-number-completion")
    row = answers.frame.iloc[0]
    assert row["method"] == "exact" and 0 <= row["value"] <= np.log2(100)
    assert 0 < row["p_answered"] <= 1 and 0 < row["top_share"] <= 1 and row["top_answer"]
    assert bool(row["unanswered"]) == (row["p_answered"] < 0.5)
    segue = steering_sweep(lens, BASE, "wedding-embedding", [1], [0.01], "segue", "attractors/wedding-toast", n=2,
                           max_tokens=6)
    row = segue.frame.iloc[0]
    assert row["method"] == "sampled" and row["n"] == 6 and row["ci_low"] <= row["value"] <= row["ci_high"]
