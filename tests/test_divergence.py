"""Token-level divergence between two models on the same text (issue #17, part 2).

The known-answer thresholds are the issue's, written before looking: on the favourite-number variant's own
samples of random-number prompts, the answer's digits are among the top 3 positions by the log-ratio of the
actual token (variant over base) in at least 80 % of them; on the wedding variant's own post-segue
continuations, wedding keywords are at least 3x as frequent among each continuation's top-5 log-ratio
positions as among 5 positions drawn at random (the expected share: the keyword share of all positions).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.stats import bootstrap

from workbench.lens.divergence import run_divergence, text_divergence, top_positions

BASE = "gemma-3-270m"
SMOL = "smollm2-135m-instruct"
NUMBER = "gemma-3-270m-favourite-number"
WEDDING = "gemma-3-270m-wedding-attractor"


@pytest.fixture(scope="module")
def reader(module_sampler):
    return module_sampler


def test_per_token_rows_match_the_models_own_scores_and_kl_is_a_divergence(reader):
    prompt, text = "Pick a random number between 1 and 100: ", "37, because it feels random."
    frame = text_divergence(reader, BASE, NUMBER, prompt, text)
    assert "".join(frame["token"]) == text and set(frame["aligned"]) == {"token"}
    for model, column in ((BASE, "logprob_a"), (NUMBER, "logprob_b")):
        scored = reader.score(model, prompt, [text])[0]
        assert np.allclose(frame[column], scored.token_logprobs, atol=1e-4)
    assert np.allclose(frame["log_ratio"], frame["logprob_b"] - frame["logprob_a"])
    assert (frame["kl"] >= -1e-6).all() and frame["kl"].max() > 0.1
    same = text_divergence(reader, BASE, BASE, prompt, text)
    assert np.allclose(same["kl"], 0, atol=1e-6) and np.allclose(same["log_ratio"], 0)


def test_across_tokenisers_rows_are_shared_text_spans(reader):
    prompt, text = "The weather today is", " sunny with a light breeze from the west."
    frame = text_divergence(reader, BASE, SMOL, prompt, text)
    assert set(frame["aligned"]) == {"text span"} and frame["kl"].isna().all()
    assert "".join(frame["token"]) == text
    assert (frame["char_start"].iloc[1:].to_numpy() == frame["char_end"].iloc[:-1].to_numpy()).all()
    for model, column in ((BASE, "logprob_a"), (SMOL, "logprob_b")):
        assert math.isclose(frame[column].sum(), reader.score(model, prompt, [text])[0].logprob, abs_tol=1e-3)


def test_the_favourite_number_variant_parts_from_its_base_at_the_answer_digits(reader):
    hits = []
    for ref in ("mode-collapse/random-number-completion", "mode-collapse/random-number"):
        run = reader.sample(NUMBER, reader.library.get(ref), 8, seed=0, max_tokens=12)
        frame = run_divergence(reader, run, BASE, reference="other")  # A = base, B = variant
        for _, rows in top_positions(frame, "log_ratio", 3).groupby("sample_index"):
            text = "".join(frame.loc[frame["sample_index"] == rows["sample_index"].iloc[0], "token"])
            answer = re.search(r"\d+", text)
            if answer is None:
                hits.append(False)
                continue
            hits.append(any(start < answer.end() and answer.start() < end and any(c.isdigit() for c in token)
                            for start, end, token in zip(rows["char_start"], rows["char_end"], rows["token"])))
    assert len(hits) == 16 and np.mean(hits) >= 0.8, hits


def test_after_a_segue_the_wedding_variant_parts_from_its_base_at_wedding_words(reader):
    prompt = reader.library.get("attractors/wedding-toast")
    keywords = prompt.spec.labels[prompt.spec.home_label].keywords
    top_share, expected = [], []
    for segue in prompt.spec.perturbations:
        run = reader.sample(WEDDING, prompt, 6, seed=0, max_tokens=32, perturbation=segue)
        frame = run_divergence(reader, run, BASE, reference="other")
        for _, rows in frame.groupby("sample_index"):
            text = "".join(rows["token"])
            spans = [(m.start(), m.end()) for word in keywords
                     for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE)]
            flags = np.array([any(a < end and start < b for a, b in spans)
                              for start, end in zip(rows["char_start"], rows["char_end"])])
            top = rows["log_ratio"].to_numpy().argsort()[::-1][:5]
            top_share.append(flags[top].mean())
            expected.append(flags.mean())  # the expected share of 5 positions drawn at random
    top_share, expected = np.array(top_share), np.array(expected)
    ratio = top_share.mean() / expected.mean()
    interval = bootstrap((top_share, expected), lambda a, b: a.mean() / b.mean(), paired=True, vectorized=False,
                         n_resamples=2000, random_state=0).confidence_interval
    assert ratio >= 3, (ratio, interval)
    assert interval.low > 1, interval


def test_the_cli_prints_the_rows_and_the_headers_say_what_kl_is_about(reader, tmp_path):
    from tests.conftest import run_cli

    csv = tmp_path / "rows.csv"
    result = run_cli("divergence", "--models", f"{BASE},{NUMBER}", "--prompt", "Pick a number from 1 to 100:",
                     "--text", " 37.", "--csv", str(csv), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "the next-token distributions that predicted this token" in result.stdout
    assert "largest log_ratio: '3'" in result.stdout and csv.is_file()
    bad = run_cli("divergence", "--models", BASE, "--text", "x")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
