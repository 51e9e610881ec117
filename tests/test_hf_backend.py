"""The transformers backend on the real embedded models (small n)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
import torch

from tests.conftest import run_cli
from workbench.backends import hf
from workbench.backends.base import Backend
from workbench.config import SamplingConfig
from workbench.registry import load_registry
from workbench.sampler import Sampler
from workbench.types import Capabilities

MODELS = ("gemma-3-270m", "smollm2-135m-instruct")
STORY = "Once upon a time, in a small village by the sea,"


def forward_logprobs(backend: hf.HFBackend, prompt_ids: list[int], token_ids: list[int]) -> torch.Tensor:
    """Logprobs of `token_ids` after `prompt_ids` from one full forward pass (no KV cache, no batching)."""
    model = backend._model()
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.inference_mode():
        logits = model(ids).logits[0].float()
    positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(token_ids))
    return torch.log_softmax(logits[positions], dim=-1).gather(-1, torch.tensor(token_ids)[:, None])[:, 0]


def registry_with_dtype(tmp_path, dtype: str):
    user = tmp_path / "models.yaml"
    user.write_text("models:\n" + "".join(f"  {m}:\n    dtype: {dtype}\n" for m in MODELS))
    return load_registry(user_file=user)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-3), ("bfloat16", 0.3)])
def test_sampled_logprobs_match_a_separate_forward_pass(embedded_models, fresh_store, tmp_path, model, dtype,
                                                        tolerance):
    # bf16 tolerance: the incremental KV-cache path and one full pass round differently in bf16;
    # we measured up to ~0.1 nats on single tokens here, so 0.3 leaves margin while still
    # catching a logprob taken from the wrong position or from processed scores.
    sampler = Sampler(store=fresh_store, registry=registry_with_dtype(tmp_path, dtype), progress=False)
    run = sampler.sample(model, STORY, n=3, max_tokens=12, temperature=1.3, top_k=40)
    backend = sampler.backend(model)
    assert backend.resolved_dtype() == dtype
    prompt_ids = backend.encode_prompt(run.rendered.text)
    for row in run.samples.itertuples():
        reference = forward_logprobs(backend, prompt_ids, row.token_ids)
        reported = torch.tensor(row.token_logprobs)
        # Logprobs are of the true distribution (T=1, no top-k), not of the processed scores.
        assert torch.allclose(reported, reference, atol=tolerance), (reported - reference).abs().max()
    if dtype == "float32":
        assert (reported - reference).abs().max() < 1e-3


SAMPLE_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from workbench.sampler import Sampler
    s = Sampler(store=sys.argv[1], batch_size=int(sys.argv[3]), progress=False)
    run = s.sample(sys.argv[2], sys.argv[4], n=6, seed=7, max_tokens=10)
    print(json.dumps([list(map(int, ids)) for ids in run.samples["token_ids"]]))
    """
)


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_and_index_give_the_same_sample_in_a_fresh_process_and_any_batch_size(
    embedded_models, tmp_path, model
):
    out = subprocess.run(
        [sys.executable, "-c", SAMPLE_IN_FRESH_PROCESS, str(tmp_path / "other.sqlite"), model, "4", STORY],
        capture_output=True, text=True, check=True, timeout=300,
    )
    fresh_process = json.loads(out.stdout.strip().splitlines()[-1])
    here = Sampler(store=tmp_path / "here.sqlite", batch_size=1, progress=False)
    in_process = [list(ids) for ids in here.sample(model, STORY, n=6, seed=7, max_tokens=10).samples["token_ids"]]
    assert in_process == fresh_process
    other_seed = [list(ids) for ids in here.sample(model, STORY, n=6, seed=8, max_tokens=10).samples["token_ids"]]
    assert other_seed != in_process
    assert len({tuple(ids) for ids in in_process}) > 1  # independent draws, not copies


def test_extending_a_run_draws_only_the_new_indices(sampler):
    first = sampler.sample("smollm2-135m-instruct", STORY, n=3, max_tokens=8)
    more = sampler.sample("smollm2-135m-instruct", STORY, n=7, max_tokens=8)
    assert (first.drawn, more.drawn, more.cached) == (3, 4, 3)
    assert more.run_id == first.run_id
    assert more.texts[:3] == first.texts
    assert list(more.samples["sample_index"]) == list(range(7))
    # The new samples are fresh draws, not copies of the first three.
    assert set(map(tuple, more.samples["token_ids"][3:])) != set(map(tuple, first.samples["token_ids"]))


def test_a_cache_hit_calls_no_backend(sampler, fresh_store, monkeypatch):
    first = sampler.sample("gemma-3-270m", STORY, n=4, max_tokens=6)

    def refuse(*args, **kwargs):
        raise AssertionError("the backend was called on a cache hit")

    monkeypatch.setattr(hf.HFBackend, "generate", refuse)
    monkeypatch.setattr(hf.weights, "load_model", refuse)
    again = Sampler(store=fresh_store, progress=False).sample("gemma-3-270m", STORY, n=4, max_tokens=6)
    assert again.drawn == 0 and again.texts == first.texts
    fewer = Sampler(store=fresh_store, progress=False).sample("gemma-3-270m", STORY, n=2, max_tokens=6)
    assert fewer.texts == first.texts[:2]


@pytest.mark.parametrize("model", MODELS)
def test_greedy_matches_transformers_generate(sampler, model):
    run = sampler.sample(model, STORY, n=2, temperature=0, max_tokens=12)
    backend = sampler.backend(model)
    prompt_ids = backend.encode_prompt(STORY)
    with torch.inference_mode():
        reference = backend._model().generate(
            torch.tensor([prompt_ids]), max_new_tokens=12, do_sample=False,
            attention_mask=torch.ones(1, len(prompt_ids)),
        )[0, len(prompt_ids):].tolist()
    ids = list(run.samples["token_ids"][0])
    assert ids == reference[: len(ids)]
    assert list(run.samples["token_ids"][1]) == ids


def test_sampling_follows_the_model_distribution(sampler):
    """Empirical first-token frequencies against the model's next-token probabilities (chi-square)."""
    from scipy.stats import chisquare

    prompt = "Pick a random number between 1 and 100. Reply with the number only."
    model = "smollm2-135m-instruct"
    n = 600
    top = sampler.next_token_topk(model, prompt, k=6, chat=True)
    run = sampler.sample(model, prompt, n=n, chat=True, max_tokens=1)
    counts = Counter(ids[0] for ids in run.samples["token_ids"])
    expected = [math.exp(t.logprob) * n for t in top]
    observed = [counts[t.token_id] for t in top]
    expected.append(n - sum(expected))
    observed.append(n - sum(observed))
    assert chisquare(observed, expected).pvalue > 0.001, (observed, expected)


def test_top_k_and_top_p_truncate(sampler):
    model = "gemma-3-270m"
    greedy_first = sampler.sample(model, STORY, n=1, temperature=0, max_tokens=1).samples["token_ids"][0][0]
    for fields in ({"top_k": 1}, {"top_p": 1e-6}):
        run = sampler.sample(model, STORY, n=8, max_tokens=1, temperature=1.5, **fields)
        assert {ids[0] for ids in run.samples["token_ids"]} == {greedy_first}
    wide = sampler.sample(model, STORY, n=8, max_tokens=1, temperature=1.5)
    assert len({ids[0] for ids in wide.samples["token_ids"]}) > 1


def test_stop_strings_cut_the_text(sampler):
    run = sampler.sample("gemma-3-270m", STORY, n=8, max_tokens=40, stop=["\n", "."])
    stopped = run.samples[run.samples["finish_reason"] == "stop"]
    assert len(stopped) > 0
    for row in stopped.itertuples():
        assert "\n" not in row.text and "." not in row.text
        assert row.stop_sequence in ("\n", ".")
        assert row.stop_sequence in "".join(row.tokens)


def test_end_of_sequence_ends_a_chat_answer(sampler):
    run = sampler.sample("smollm2-135m-instruct", "Say hello.", n=6, chat=True, max_tokens=64, temperature=0.7)
    ended = run.samples[run.samples["finish_reason"] == "eos"]
    assert len(ended) > 0
    for row in ended.itertuples():
        assert "<|im_end|>" not in row.text
        assert row.tokens[-1] == "<|im_end|>"  # the EOS token is recorded with its logprob


def test_transcript_chat_on_the_base_model_stops_at_the_next_user_turn(sampler):
    run = sampler.sample("gemma-3-270m", "Tell me about the sea.", n=6, chat=True, max_tokens=48)
    assert run.rendered.template == "transcript:plain-dialogue"
    assert "\nUser:" in run.config.stop
    assert all("\nUser:" not in t for t in run.texts)


def test_score_reuses_the_prompt_and_matches_a_forward_pass(sampler, tmp_path, fresh_store):
    f32 = Sampler(store=fresh_store, registry=registry_with_dtype(tmp_path, "float32"), progress=False)
    prompt = "The capital of France is"
    scored = f32.score("gemma-3-270m", prompt, [" Paris", " London", " a city in Europe"])
    assert scored[0].logprob > scored[1].logprob
    backend = f32.backend("gemma-3-270m")
    prompt_ids = backend.encode_prompt(prompt)
    for item in scored:
        reference = forward_logprobs(backend, prompt_ids, item.token_ids)
        assert torch.allclose(torch.tensor(item.token_logprobs), reference, atol=1e-3)
    top = f32.next_token_topk("gemma-3-270m", prompt, k=5)
    assert [t.logprob for t in top] == sorted((t.logprob for t in top), reverse=True)
    assert sum(math.exp(t.logprob) for t in top) <= 1.0 + 1e-6


def test_the_backend_declares_its_capabilities_on_the_one_base_class(embedded_models):
    backend = hf.HFBackend(load_registry().get("gemma-3-270m"))
    assert isinstance(backend, Backend) and backend.name == "hf"
    assert backend.cache_version == hf.SAMPLING_ALGORITHM
    assert backend.capabilities() == Capabilities(logprobs=True, score=True, next_token_topk=True,
                                                  candidate_scoring=True, token_ids=True, remote=False,
                                                  activations=True)


def test_prepare_says_in_one_line_what_it_did(embedded_models, tmp_path):
    registry = load_registry()
    gguf_model = registry.get("gemma-3-270m")
    already = f"gemma-3-270m: already prepared in {hf.prepared_dir(gguf_model)}"
    assert hf.HFBackend(gguf_model).prepare() == already
    variant = registry.get("gemma-3-270m-favourite-number")
    assert hf.HFBackend(variant).prepare() == f"{variant.name}: an adapter on gemma-3-270m; {already}"
    source = gguf_model.source.model_copy(update={"gguf_package": None, "path": str(tmp_path)})
    checkpoint = gguf_model.model_copy(update={"name": "local", "source": source})
    assert hf.HFBackend(checkpoint).prepare() == "local: a transformers checkpoint, nothing to prepare"


def test_chat_template_is_the_backends_own_and_continues_a_prefill(embedded_models):
    backend = hf.HFBackend(load_registry().get("smollm2-135m-instruct"))
    user = {"role": "user", "content": "Hi"}
    asked = backend.apply_chat_template((user,))
    prefilled = backend.apply_chat_template((user, {"role": "assistant", "content": "Hel"}))
    assert asked.rstrip().endswith("assistant")
    assert prefilled.endswith("Hel")


def test_inverse_cdf_picks_depend_only_on_seed_and_index():
    probs = torch.softmax(torch.tensor([[0.0, 1.0, 2.0, 3.0]] * 2), dim=-1)
    alone = torch.from_numpy(hf.sample_uniforms(7, 3, 5))
    assert torch.equal(alone, torch.from_numpy(hf.sample_uniforms(7, 3, 5)))
    picks = [hf.inverse_cdf_pick(probs, torch.stack([u, u])) for u in alone]
    assert all(p[0] == p[1] for p in picks)
    truncated = hf.sampling_distribution(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), SamplingConfig(top_k=1), None)
    assert truncated.tolist() == [[0.0, 0.0, 0.0, 1.0]]
    mask = hf.end_token_mask(["a", "\nb", ".", ""], ["\n", "."], [0])
    assert mask.tolist() == [True, True, True, False]


# -- exact candidate scoring (the path exact answer distributions use) --------------------------


@pytest.fixture
def f32_sampler(embedded_models, fresh_store, tmp_path):
    user = tmp_path / "models.yaml"
    user.write_text("models:\n  gemma-3-270m: {dtype: float32}\n  smollm2-135m-instruct: {dtype: float32}\n")
    sampler = Sampler(store=fresh_store, registry=load_registry(user_file=user), progress=False)
    yield sampler
    sampler.store.close()


@pytest.mark.parametrize("model", ["gemma-3-270m", "smollm2-135m-instruct"])
def test_exact_scores_equal_per_token_products_of_a_plain_forward_pass(f32_sampler, model):
    prompt = f32_sampler.library.get("mode-collapse/random-digit-sequence")
    space = prompt.spec.answer_space
    backend = f32_sampler.backend(model)
    rendered = f32_sampler.render(prompt, model)
    candidates = [space.scored_text(c, after=rendered.text) for c in space.values()]
    temperatures = [0.7, 1.0, 1.6]
    scores = f32_sampler.score_candidates(model, rendered, candidates, temperatures, space.terminators)
    prompt_ids = f32_sampler.encode(model, rendered.text)
    end_mask = backend.answer_end_mask(space.terminators)
    net = backend._model()
    for i, ids in enumerate(scores.token_ids):
        with torch.inference_mode():
            logits = net(torch.tensor([prompt_ids + ids])).logits[0].float()
        for t, temperature in enumerate(temperatures):
            tempered = torch.log_softmax(logits / temperature, dim=-1)  # full vocabulary, every position
            positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
            expected = sum(float(tempered[p, tok]) for p, tok in zip(positions, ids, strict=True))
            assert scores.logprobs[t][i] == pytest.approx(expected, abs=1e-3)
            end = float(torch.logsumexp(tempered[len(prompt_ids) + len(ids) - 1][end_mask], 0))
            assert scores.end_logprobs[t][i] == pytest.approx(end, abs=1e-3)
    # Tempering is not "summed logprob divided by T" for multi-token answers (" 7" is 2 tokens here).
    multi = next(i for i, ids in enumerate(scores.token_ids) if len(ids) > 1)
    assert scores.logprobs[0][multi] != pytest.approx(scores.logprobs[1][multi] / 0.7, abs=1e-3)


# Prompts and candidate sets for the KV-reuse check: single- and multi-token candidates, candidates that
# contain a terminator, and a prompt longer than Gemma's 512-token sliding window.
KV_CASES = [
    ("Think of a number from 1 to 10. My number is", [" 1", " 7", " 10", " seven", " 3.5"], ["\n", ".", ","]),
    ("Q: What is the capital of France?\nA:", [" Paris", " The capital is Paris.", " London", " Paris\n"], ["\n"]),
    ("Once upon a time " * 132 + "The end", [".", " of the story", "\n\nTHE END"], ["\n", "."]),  # 531 tokens
]


@pytest.mark.parametrize("model", MODELS)
def test_kv_reuse_scoring_runs_in_float32_and_agrees_with_a_full_forward_pass(embedded_models, fresh_store,
                                                                              tmp_path, model):
    # Sampling in bf16 (as on a CPU with fast bf16): exact scoring still runs in float32, on its own copy.
    sampler = Sampler(store=fresh_store, registry=registry_with_dtype(tmp_path, "bfloat16"), progress=False)
    backend = sampler.backend(model)
    assert backend.resolved_dtype() == "bfloat16" and backend.scoring_dtype == "float32"
    net = hf.load_model(backend.spec, "float32", backend.device)
    assert backend._scoring_model() is net and next(net.parameters()).dtype == torch.float32
    temperatures = [0.7, 1.0]
    worst = 0.0
    for prompt, candidates, terminators in KV_CASES:
        scores = sampler.score_candidates(model, prompt, candidates, temperatures, terminators)
        prompt_ids = backend.encode_prompt(prompt)
        end_mask = backend.answer_end_mask(terminators)
        assert any(len(ids) > 1 for ids in scores.token_ids)
        for i, ids in enumerate(scores.token_ids):
            with torch.inference_mode():  # one float32 pass over prompt + candidate: no cache, no batch
                logits = net(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
            for t, temperature in enumerate(temperatures):
                tempered = torch.log_softmax(logits / temperature, dim=-1)
                positions = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids))
                full = sum(float(tempered[p, tok]) for p, tok in zip(positions, ids, strict=True))
                full += float(torch.logsumexp(tempered[len(prompt_ids) + len(ids) - 1][end_mask], 0))
                reused = scores.logprobs[t][i] + scores.end_logprobs[t][i]
                worst = max(worst, abs(math.exp(reused) - math.exp(full)))
    assert worst <= 1e-4, worst  # bf16 scoring differed by up to 5.5e-3 here


def test_the_cli_shows_no_library_warnings_or_loading_bars(embedded_models):
    # A fine-tuned variant: loading merges its adapter with peft, the noisiest path (peft asks transformers for
    # a deprecated attribute); sampling runs the KV-cache decoding loop, which once warned on every step.
    result = run_cli("sample", "--model", "gemma-3-270m-favourite-number", STORY, "--n", "2", "--max-tokens", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 samples" in result.stdout
    for noise in ("Warning", "warning", "deprecated", "Loading weights", "[transformers]"):
        assert noise not in result.stderr, result.stderr[-2000:]
