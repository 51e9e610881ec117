"""Segue recovery (attractor states): after a jarring segue, does the model steer back to the
world the prompt set up, and how fast?

For a prompt with perturbations, each model continues the prompt with and without each segue.
Every continuation is classified into the prompt's label categories: (a) by the labels' keywords
and regexes, (b) by embedding similarity to per-category reference texts, and optionally (c) by
an LLM judge through any registered backend, with the judge's prompt in the library. Reported
per model and condition: the recovery rate (share classified as the prompt's `home_label`) with a
95% Wilson interval, the distribution over categories, and tokens-to-recovery (the first token
position at which the continuation so far mentions the home world again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from workbench.analysis.statistics import bootstrap_median_ci, wilson_interval
from workbench.config import SamplingOverrides
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.prompts import LabelSet, LibraryPrompt
    from workbench.sampler import Sampler

NONE = "(none)"
BASELINE = "(no segue)"


@dataclass
class SegueResult:
    """Per-continuation classifications and per-model summaries."""

    continuations: pd.DataFrame  # model, condition, sample_index, text, keyword/embedding/judge labels, recovered, ...
    summary: pd.DataFrame  # model, condition, method, recovery_rate, ci_low, ci_high, n, median_tokens_to_recovery,
    #                        tokens_ci_low, tokens_ci_high, share_reaching_home
    categories: pd.DataFrame  # model, condition, method, category, share
    prompt: str
    home_label: str
    family_note: str


def keyword_label(text: str, labels: dict[str, "LabelSet"]) -> str:
    """The label with the most keyword/regex hits (ties: the one that appears first); '(none)' without hits."""
    best, best_key = NONE, (0, 0)
    for name, label in labels.items():
        hits = label.match_positions(text)
        if hits:
            key = (len(hits), -min(hits))
            if key > best_key:
                best, best_key = name, key
    return best


def reference_texts(labels: dict[str, "LabelSet"]) -> dict[str, str]:
    """A reference text per category: its `references` when given, else a sentence built from its keywords."""
    texts = {}
    for name, label in labels.items():
        words = label.keywords[:12] or [name]
        texts[name] = " ".join(label.references) if label.references else f"A passage about {name}: {', '.join(words)}."
    return texts


def embedding_labels(texts: list[str], labels: dict[str, "LabelSet"]) -> list[str]:
    """The category whose reference text is most similar (MiniLM cosine) to each continuation."""
    from workbench.embeddings import embed

    refs = reference_texts(labels)
    names = list(refs)
    similarity = embed([t if t.strip() else "(empty)" for t in texts]) @ embed([refs[n] for n in names]).T
    return [names[int(i)] for i in similarity.argmax(axis=1)]


def tokens_to_recovery(tokens: list[str], label: "LabelSet") -> float:
    """The first token count at which the text so far matches the home label; NaN if it never does."""
    text = ""
    for i, token in enumerate(tokens or []):
        text += token
        if label.matches(text):
            return float(i + 1)
    return float("nan")


JUDGE_PROMPT = "judges/segue-world"


def judge_labels(sampler: "Sampler", judge: str, opening: str, texts: list[str], categories: list[str]) -> list[str]:
    """Ask a judge model (any registered backend) which category each continuation belongs to.

    The judge prompt lives in the library (judges/segue-world). Its answer space is the
    categories plus "none"; the judge's most probable answer is taken exactly where its backend
    gives logprobs, else from one greedy sample.
    """
    from workbench.analysis.distributions import can_be_exact, exact_distribution
    from workbench.prompts import AnswerSpace

    prompt = sampler.library.get(JUDGE_PROMPT)
    space = AnswerSpace(candidates=[*categories, "none"], normaliser="first-word")
    labels = []
    for text in texts:
        variables = {"opening": opening, "continuation": text, "categories": ", ".join([*categories, "none"])}
        if can_be_exact(sampler, judge, prompt):
            dist = exact_distribution(sampler, judge, prompt, 1.0, variables=variables, answer_space=space)
            answer = dist.table[dist.table["answer"] != "(other)"].iloc[0]["answer"]
        else:
            run = sampler.sample(judge, prompt, 1, variables=variables)
            answer = space.normalise(run.texts[0])
        labels.append(NONE if answer in ("none", "(other)") else answer)
    return labels


def segue_recovery(
    sampler: "Sampler",
    models: list[str],
    prompt: "LibraryPrompt",
    n: int = 32,
    seed: int = 0,
    perturbations: list[str] | None = None,
    judge: str | None = None,
    embedding: bool = True,
    **overrides: Unpack[SamplingOverrides],
) -> SegueResult:
    """Continue the prompt with and without each segue on every model and measure the way back home.

    `judge` names a registered model to use as a third classifier (an LLM judge). `embedding=False`
    skips the MiniLM classifier (its labels are None and it has no summary rows): keywords alone
    need no model.
    """
    spec = prompt.spec
    if not spec.perturbations:
        raise WorkbenchError(f"{prompt.ref} has no perturbations; segue recovery needs a prompt with a "
                             "{{ segue }} slot")
    if not spec.home_label:
        raise WorkbenchError(f"{prompt.ref} has no home_label; say which of its labels is the world it sets up")
    chosen = perturbations or list(spec.perturbations)
    unknown = [p for p in chosen if p not in spec.perturbations]
    if unknown:
        raise WorkbenchError(f"{prompt.ref}: no perturbation(s) {', '.join(unknown)} "
                             f"(offers: {', '.join(spec.perturbations)})")
    home = spec.labels[spec.home_label]
    rows = []
    for model in models:
        for condition in [None, *chosen]:
            run = sampler.sample(model, prompt, n, seed=seed, perturbation=condition, **overrides)
            texts = run.texts
            by_embedding = embedding_labels(texts, spec.labels) if embedding else [None] * len(texts)
            opening = run.rendered.display()
            by_judge = judge_labels(sampler, judge, opening, texts, list(spec.labels)) if judge else [None] * len(texts)
            for row, embedded, judged in zip(run.samples.itertuples(), by_embedding, by_judge):
                by_keyword = keyword_label(row.text, spec.labels)
                rows.append({
                    "model": model, "condition": condition or BASELINE, "sample_index": row.sample_index,
                    "text": row.text, "keyword_label": by_keyword, "embedding_label": embedded, "judge_label": judged,
                    "recovered": by_keyword == spec.home_label,
                    "tokens_to_recovery": tokens_to_recovery(row.tokens, home),
                    "run_id": run.run_id,
                })
    continuations = pd.DataFrame(rows)
    summary_rows, category_rows = [], []
    for (model, condition), group in continuations.groupby(["model", "condition"], sort=False):
        methods = [("keywords", "keyword_label")] + ([("embedding", "embedding_label")] if embedding else [])
        if judge:
            methods.append((f"judge:{judge}", "judge_label"))
        for method, column in methods:
            hits = int((group[column] == spec.home_label).sum())
            low, high = wilson_interval(hits, len(group))
            summary_rows.append({
                "model": model, "condition": condition, "method": method, "recovery_rate": hits / len(group),
                "ci_low": low, "ci_high": high, "n": len(group),
                **_tokens_to_recovery_summary(group["tokens_to_recovery"].to_numpy(dtype=float)),
            })
            shares = group[column].value_counts(normalize=True)
            for category in [*spec.labels, NONE]:
                if method == "embedding" and category == NONE:
                    continue
                category_rows.append({"model": model, "condition": condition, "method": method,
                                      "category": category, "share": float(shares.get(category, 0.0))})
    return SegueResult(continuations, pd.DataFrame(summary_rows), pd.DataFrame(category_rows), prompt.ref,
                       spec.home_label, sampler.registry.describe_pair(models))


def _tokens_to_recovery_summary(positions: np.ndarray) -> dict[str, float]:
    """Median first home-world token among continuations that got there, its bootstrap CI, and how many did.

    Continuations that never mention the home world have no position; the share that did is
    reported beside the median so the median is not read as covering them.
    """
    reached = positions[~np.isnan(positions)]
    low, high = bootstrap_median_ci(reached)
    return {"median_tokens_to_recovery": float(np.median(reached)) if len(reached) else float("nan"),
            "tokens_ci_low": low, "tokens_ci_high": high,
            "share_reaching_home": len(reached) / len(positions) if len(positions) else float("nan")}
