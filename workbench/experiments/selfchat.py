"""Self-conversation drift (attractor states): two instances of a model, or two models, talk to
each other for K turns from a seed in the library, in R independent runs. Do the runs converge?

The conversation: a seed's messages are the conversation so far as speaker A sees it; its last
(user) message is the opening line, said by B. A answers first (turn 1), then B, then A, ...
Each instance sees its own turns as "assistant" and the other's as "user", after the seed's
system message. A base model gets exactly these messages written as a plain transcript by its
registry transcript template (never a chat template) and stops where the next speaker's tag
begins, so base and tuned models differ only in the model and its rendering. Every turn is one
`Sampler.sample` call (n=1) with a seed derived from (seed, run): each (run, turn) is its own
cache cell, so runs are independent draws, and a repeated call is answered from the store.

Measures, per pairing (A's model and B's model):
- dispersion at each turn: the mean pairwise cosine distance (all-MiniLM-L6-v2) between the
  runs' turn-t texts, with a 95% bootstrap interval over runs; also the mean distance to the
  runs' centroid and to the seed's opening line (how far the talk drifted from the seed);
- the change in dispersion from the first to the last turn, with a paired bootstrap interval
  (below 0: the runs converge);
- the share of final turns in the largest semantic cluster (`workbench.analysis.metrics.semantic_clusters`:
  average linkage, cosine distance 0.45), with a Wilson interval;
- rising terms: words whose frequency rises most from the first half of the turns to the second
  (log-odds ratio with a Dirichlet prior, z-scored: Monroe, Colaresi & Quinn 2008), with counts
  and the number of runs that use them late (a shared attractor, not one run repeating itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from typing_extensions import Unpack

from workbench.analysis.metrics import semantic_clusters
from workbench.analysis.statistics import DEFAULT_BOOTSTRAP, bootstrap_indices, wilson_interval
from workbench.config import SamplingOverrides
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler
    from workbench.types import Message

SELF_CONVERSATION_TAG = "self-conversation"
SPEAKERS = ("A", "B")
EMPTY = "(empty)"  # what an empty turn is embedded as: MiniLM needs some text
# Fragments CountVectorizer leaves of contractions ("don't" -> "don"); they are not topics.
CONTRACTION_PARTS = frozenset({"don", "ll", "ve", "re", "isn", "doesn", "didn", "wasn", "aren", "won", "couldn",
                               "wouldn", "shouldn", "haven", "hasn", "let"})
TERM_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of two or more letters: numbers and stray letters are not topics


@dataclass
class SelfChatResult:
    """Every turn of every run, and the measures of one pairing (A's model talking to B's)."""

    turns: pd.DataFrame  # pairing, run, turn, speaker, model, model_kind, text, tokens, finish_reason, run_id, ...
    dispersion: pd.DataFrame  # pairing, turn, speaker, model, n_runs, dispersion, ci_low, ci_high, centroid_distance,
    #                           distance_to_seed
    clusters: pd.DataFrame  # pairing, cluster, size, share, runs, label (clusters of the final turns)
    terms: pd.DataFrame  # pairing, term, count_early, count_late, runs_late, log_odds, z
    summary: pd.DataFrame  # one row per pairing: first/last dispersion, change with CI, largest-cluster share with CI
    embeddings: np.ndarray  # [len(turns), 384] unit vectors, rows aligned with `turns`
    seed_embedding: np.ndarray  # [384] the opening line's
    seed_xy: tuple[float, float]  # the opening line in the turns' 2-D projection
    prompt: str
    opening: str
    pairing: str
    models: tuple[str, str]  # speaker A's model, speaker B's
    family_note: str
    config: dict[str, Any] = field(default_factory=dict)


class Dispersion(NamedTuple):
    """How spread out a set of unit vectors is, with a bootstrap interval over its members."""

    value: float  # mean pairwise cosine distance
    ci_low: float
    ci_high: float
    centroid_distance: float  # mean cosine distance of each vector to the normalised mean vector


# --------------------------------------------------------------------------------------------
# Measures (pure functions on vectors and texts)
# --------------------------------------------------------------------------------------------


def _replicate_dispersions(distances: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean pairwise distance within each row of resampled member indices idx [B, R].

    Pairs that drew the same member twice are left out: their distance is 0 by construction, and
    keeping them would pull every replicate below the estimate.
    """
    d = distances[idx[:, :, None], idx[:, None, :]]  # [B, R, R]
    r = idx.shape[1]
    upper = np.triu(np.ones((r, r), dtype=bool), 1)
    valid = (idx[:, :, None] != idx[:, None, :]) & upper
    counts = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (d * valid).sum(axis=(1, 2)) / np.maximum(counts, 1), np.nan)


def dispersion(vectors: np.ndarray, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
               seed: int = 0) -> Dispersion:
    """Mean pairwise cosine distance of unit vectors [R, d] with a percentile bootstrap CI over the R members."""
    vectors = np.asarray(vectors, dtype=float)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise WorkbenchError("dispersion needs at least two vectors (runs); use runs >= 2")
    distances = 1.0 - vectors @ vectors.T
    r = len(vectors)
    value = float(distances[np.triu_indices(r, 1)].mean())
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    centroid_distance = float((1.0 - vectors @ (centroid / norm)).mean()) if norm > 0 else 1.0
    replicates = _replicate_dispersions(distances, bootstrap_indices(r, n_boot, seed))
    replicates = replicates[~np.isnan(replicates)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, alpha), np.quantile(replicates, 1 - alpha)
    # Small R can put every replicate on one side of the estimate; the interval keeps the estimate.
    return Dispersion(value, float(min(low, value)), float(max(high, value)), centroid_distance)


def dispersion_change(first: np.ndarray, last: np.ndarray, confidence: float = 0.95,
                      n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """Dispersion of `last` minus that of `first` (rows are the same runs), with a paired bootstrap CI."""
    first, last = np.asarray(first, dtype=float), np.asarray(last, dtype=float)
    idx = bootstrap_indices(len(first), n_boot, seed)
    d_first, d_last = 1.0 - first @ first.T, 1.0 - last @ last.T
    upper = np.triu_indices(len(first), 1)
    point = float(d_last[upper].mean() - d_first[upper].mean())
    # The same resampled runs for both turns: the interval is of the change, not of two levels.
    diffs = _replicate_dispersions(d_last, idx) - _replicate_dispersions(d_first, idx)
    diffs = diffs[~np.isnan(diffs)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, alpha), np.quantile(diffs, 1 - alpha)
    return point, float(min(low, point)), float(max(high, point))


def rising_terms(early: Sequence[str], late: Sequence[str], late_runs: Sequence[Any] | None = None, top: int = 15,
                 min_count: int = 2, prior: float = 0.5) -> pd.DataFrame:
    """Words whose frequency rises most from `early` to `late` texts: log-odds ratio with a Dirichlet prior, z-scored.

    English stop words are removed. A term is kept when it rises (log_odds > 0) and occurs at least
    `min_count` times late; `late_runs` (the run of each late text) gives how many runs use it late.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    columns = ["term", "count_early", "count_late", "runs_late", "log_odds", "z"]
    if not early or not late:
        return pd.DataFrame(columns=columns)
    vectorizer = CountVectorizer(lowercase=True, token_pattern=TERM_PATTERN,
                                 stop_words=sorted(ENGLISH_STOP_WORDS | CONTRACTION_PARTS))
    try:
        matrix = vectorizer.fit_transform([*early, *late])
    except ValueError:  # nothing but stop words: no vocabulary
        return pd.DataFrame(columns=columns)
    terms = vectorizer.get_feature_names_out()
    counts_early = np.asarray(matrix[: len(early)].sum(axis=0)).ravel().astype(float)
    late_matrix = matrix[len(early):]
    counts_late = np.asarray(late_matrix.sum(axis=0)).ravel().astype(float)
    # Monroe et al. (2008), eq. 16-22, with a flat prior of `prior` per word.
    a0 = prior * len(terms)
    n_early, n_late = counts_early.sum(), counts_late.sum()
    log_odds = (np.log((counts_late + prior) / (n_late + a0 - counts_late - prior))
                - np.log((counts_early + prior) / (n_early + a0 - counts_early - prior)))
    z = log_odds / np.sqrt(1.0 / (counts_late + prior) + 1.0 / (counts_early + prior))
    if late_runs is not None:
        runs = np.asarray(list(late_runs), dtype=object)
        present = late_matrix.toarray() > 0
        runs_late = np.array([len(set(runs[present[:, j]])) for j in range(len(terms))])
    else:
        runs_late = np.full(len(terms), -1)
    frame = pd.DataFrame({"term": terms, "count_early": counts_early.astype(int), "count_late": counts_late.astype(int),
                          "runs_late": runs_late, "log_odds": log_odds, "z": z})
    frame = frame[(frame["log_odds"] > 0) & (frame["count_late"] >= min_count)]
    return frame.sort_values(["z", "term"], ascending=[False, True], kind="stable").head(top).reset_index(drop=True)


def project(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """[n, 2] coordinates: PCA of the vectors (the first two raw dimensions when there are too few to fit)."""
    from sklearn.decomposition import PCA

    vectors = np.asarray(vectors, dtype=float)
    if len(vectors) > 2:
        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    return vectors[:, :2].copy()


# --------------------------------------------------------------------------------------------
# The conversation
# --------------------------------------------------------------------------------------------


def speaker_messages(system: str | None, history: Sequence[tuple[str, str]], speaker: str) -> list["Message"]:
    """What `speaker` sees: the system message, its own lines as assistant, the other's as user."""
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "assistant" if who == speaker else "user", "content": text} for who, text in history]
    return messages


def transcript_stops(sampler: "Sampler", model: str) -> tuple[str, ...]:
    """Stop strings that end a base model's turn where its transcript template's next speaker tag begins.

    A probe chat with placeholder contents is rendered exactly as the Sampler renders it for this
    model; only a transcript (a base model's registry template, never a chat template) needs stops,
    and its speaker tags are read off the rendered text, so a user's own template works too. Each
    stop is a newline and the bare tag ("\\nUser"), not the template's "\\nUser:": small base models
    often write the tag without its colon, and a base model that starts its own tag again
    ("\\nAssistant") has ended its turn just the same.
    """
    marks = ("\x01", "\x02", "\x03")
    probe = [{"role": "user", "content": marks[0]}, {"role": "assistant", "content": marks[1]},
             {"role": "user", "content": marks[2]}]
    rendered = sampler.render(probe, model)
    if not rendered.template.startswith("transcript:") or rendered.text is None:
        return ()  # chat templates and chat APIs end a turn with the model's own end-of-turn token
    stops = []
    for before, after in zip(marks, marks[1:]):
        start, end = rendered.text.find(before), rendered.text.find(after)
        lines = rendered.text[start + 1:end].strip().splitlines() if 0 <= start < end else []
        tag = lines[-1].strip().rstrip(":").strip() if lines else ""
        if tag:
            stops.append("\n" + tag)
    return tuple(dict.fromkeys(stops))


def run_seed(seed: int, run: int) -> int:
    """The sampling seed of one run: a stable hash of (seed, run), so runs differ and `seed + run` never collides."""
    digest = hashlib.sha256(f"selfchat:{seed}:{run}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits: an SQLite INTEGER anywhere


def _check_sizes(turns: Any, runs: Any, seed: Any) -> None:
    if not isinstance(turns, int) or isinstance(turns, bool) or turns < 1:
        raise WorkbenchError(f"turns must be a whole number of at least 1, got {turns!r}; give turns=K "
                             "(--turns K) with K >= 1")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 2:
        raise WorkbenchError(f"runs must be a whole number of at least 2, got {runs!r}: dispersion compares "
                             "independent runs; give runs=R (--runs R) with R >= 2")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise WorkbenchError(f"seed must be a non-negative whole number, got {seed!r}")


def _speaker_models(sampler: "Sampler", models: str | Sequence[str]) -> tuple[str, str]:
    """(A's model, B's model) from one name (it talks to itself) or two; unknown names fail here."""
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m).strip() for m in models]
    names = [m for m in names if m]
    if not 1 <= len(names) <= 2:
        raise WorkbenchError(f"models: give one model (it talks to itself) or two (A and B), got {len(names)}: "
                             f"{', '.join(names) or 'none'}; to compare several self-conversations, run one per "
                             "pairing (the CLI takes --models more than once)")
    for name in names:
        sampler.model(name)
    return names[0], names[-1]


def _seed_prompt(sampler: "Sampler", prompt: "LibraryPrompt | str") -> "LibraryPrompt":
    """A library prompt tagged self-conversation, of kind chat, ending with the opening line (a user message)."""
    from workbench.prompts import LibraryPrompt

    hint = f"pick one from `workbench prompts list --tag {SELF_CONVERSATION_TAG}`, e.g. self-conversations/two-ais-meet"
    if isinstance(prompt, str):
        if "/" not in prompt:
            raise WorkbenchError(f"prompt {prompt!r} is not a library address; {hint}")
        prompt = sampler.library.get(prompt)
    if not isinstance(prompt, LibraryPrompt):
        raise WorkbenchError(f"prompt must be a library prompt or its address, not {type(prompt).__name__}; {hint}")
    tags = {*prompt.spec.tags, *prompt.collection.tags}
    if SELF_CONVERSATION_TAG not in tags or prompt.spec.kind != "chat":
        raise WorkbenchError(f"{prompt.ref} is not a self-conversation seed (a chat prompt tagged "
                             f"{SELF_CONVERSATION_TAG!r}); {hint}")
    last = prompt.spec.messages[-1] if prompt.spec.messages else None
    if last is None or last.role != "user":
        raise WorkbenchError(f"{prompt.ref}: a self-conversation seed ends with a user message (the opening line "
                             "speaker A answers); remove its last assistant message")
    return prompt


def _family_note(sampler: "Sampler", a: str, b: str) -> str:
    kind_a, kind_b = sampler.model(a).kind, sampler.model(b).kind
    if a == b:
        return f"{a} ({kind_a}) talks to itself: both speakers are instances of one model"
    note = f"A: {a} ({kind_a}), B: {b} ({kind_b})"
    if sampler.model(a).family != sampler.model(b).family:
        note += "; " + sampler.registry.describe_pair([a, b])
    return note


def check_inputs(sampler: "Sampler", models: str | Sequence[str], prompt: "LibraryPrompt | str", turns: int,
                 runs: int, seed: int = 0) -> tuple[str, str, "LibraryPrompt"]:
    """(A's model, B's model, the seed prompt), or a WorkbenchError naming the field to change; samples nothing."""
    _check_sizes(turns, runs, seed)
    a, b = _speaker_models(sampler, models)
    return a, b, _seed_prompt(sampler, prompt)


def self_conversation(
    sampler: "Sampler",
    models: str | Sequence[str],
    prompt: "LibraryPrompt | str",
    turns: int = 6,
    runs: int = 8,
    seed: int = 0,
    max_tokens: int | None = None,
    temperature: float | None = None,
    variables: dict[str, Any] | None = None,
    confidence: float = 0.95,
    n_boot: int = DEFAULT_BOOTSTRAP,
    top_terms: int = 15,
    **overrides: Unpack[SamplingOverrides],
) -> SelfChatResult:
    """Let A and B (one model or two) talk for `turns` turns from a library seed in `runs` runs; measure the drift."""
    from workbench.config import make_config
    from workbench.embeddings import embed
    from workbench.prompts import fill

    a, b, prompt = check_inputs(sampler, models, prompt, turns, runs, seed)
    filled = fill(prompt, variables)
    messages = list(filled.messages or ())
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    # The seed as speaker A sees it: its user lines are B's, its assistant lines A's.
    opening_history = [("B" if m["role"] == "user" else "A", m["content"]) for m in messages if m["role"] != "system"]
    opening = opening_history[-1][1]
    explicit = {"max_tokens": max_tokens, "temperature": temperature, **overrides}
    config = make_config(**{**prompt.spec.sampling, **{k: v for k, v in explicit.items() if v is not None}})
    configs = {m: config.with_extra_stops(transcript_stops(sampler, m)) for m in {a, b}}
    pairing = a if a == b else f"{a} & {b}"
    speaker_model = {"A": a, "B": b}

    histories = {r: list(opening_history) for r in range(runs)}
    rows = []
    bar = tqdm(total=turns * runs, desc=f"selfchat {pairing}", unit="turn", leave=False, disable=not sampler.progress)
    # One bar over turns; the Sampler's own bar per one-sample call would only flicker.
    shown, sampler.progress = sampler.progress, False
    try:
        # Turn by turn across runs: an interrupted call leaves whole turns in the store.
        for turn in range(1, turns + 1):
            speaker = SPEAKERS[(turn - 1) % 2]
            model = speaker_model[speaker]
            for r in range(runs):
                view = speaker_messages(system, histories[r], speaker)
                run = sampler.sample(model, view, 1, config=configs[model], seed=run_seed(seed, r),
                                     prompt_ref=f"{filled.ref}?run={r}&turn={turn}&speaker={speaker}",
                                     tags=["selfchat", f"selfchat:{prompt.ref}"])
                sample = run.samples.iloc[0]
                # The transcript template's stop already cut the other speaker's tag; the rest is layout.
                text = str(sample["text"]).strip()
                histories[r].append((speaker, text))
                tokens = sample.get("completion_tokens")
                rows.append({
                    "pairing": pairing, "run": r, "turn": turn, "speaker": speaker, "model": model,
                    "model_kind": sampler.model(model).kind, "text": text,
                    "tokens": int(tokens) if tokens is not None and not pd.isna(tokens) else None,
                    "finish_reason": sample["finish_reason"], "template": run.rendered.template,
                    "run_id": run.run_id, "sample_index": int(sample["sample_index"]), "seed": run.seed,
                })
                bar.update(1)
    finally:
        sampler.progress = shown
        bar.close()
    frame = pd.DataFrame(rows)

    vectors = embed([t if t.strip() else EMPTY for t in frame["text"]])
    seed_vector = embed([opening if opening.strip() else EMPTY])[0]
    coords = project(np.vstack([seed_vector[None, :], vectors]), seed=seed)
    frame["x"], frame["y"] = coords[1:, 0], coords[1:, 1]

    dispersion_rows = []
    by_turn = {t: frame.index[frame["turn"] == t].to_numpy() for t in range(1, turns + 1)}
    for turn, idx in by_turn.items():
        spread = dispersion(vectors[idx], confidence, n_boot, seed)
        speaker = SPEAKERS[(turn - 1) % 2]
        dispersion_rows.append({
            "pairing": pairing, "turn": turn, "speaker": speaker, "model": speaker_model[speaker], "n_runs": len(idx),
            "dispersion": spread.value, "ci_low": spread.ci_low, "ci_high": spread.ci_high,
            "centroid_distance": spread.centroid_distance,
            "distance_to_seed": float((1.0 - vectors[idx] @ seed_vector).mean()),
        })
    dispersions = pd.DataFrame(dispersion_rows)

    final = frame[frame["turn"] == turns]
    found = semantic_clusters(final.assign(model=pairing, sample_index=final["run"]), seed=seed)
    cluster_rows = []
    for cluster, members in found.points.groupby("cluster"):
        label = found.clusters.set_index("cluster").at[cluster, "label"]
        cluster_rows.append({"pairing": pairing, "cluster": int(cluster), "size": len(members),
                             "share": len(members) / runs,
                             "runs": ",".join(str(int(i)) for i in sorted(members["sample_index"])), "label": label})
    clusters = pd.DataFrame(cluster_rows)

    # Halves of the conversation; an odd middle turn belongs to neither, and one turn has no halves.
    half = turns // 2
    early = frame[frame["turn"] <= half]
    late = frame[frame["turn"] > turns - half]
    terms = rising_terms(list(early["text"]), list(late["text"]), list(late["run"]), top=top_terms)
    terms.insert(0, "pairing", pairing)

    change, change_low, change_high = dispersion_change(vectors[by_turn[1]], vectors[by_turn[turns]], confidence,
                                                        n_boot, seed)
    largest = int(clusters["size"].max())
    share_low, share_high = wilson_interval(largest, runs)
    summary = pd.DataFrame([{
        "pairing": pairing, "model_a": a, "model_b": b, "prompt": prompt.ref, "turns": turns, "runs": runs,
        "first_dispersion": dispersions["dispersion"].iloc[0], "last_dispersion": dispersions["dispersion"].iloc[-1],
        "change": change, "change_ci_low": change_low, "change_ci_high": change_high,
        "largest_cluster_share": largest / runs, "largest_cluster_ci_low": share_low,
        "largest_cluster_ci_high": share_high, "final_clusters": len(clusters),
        "top_terms": ", ".join(terms["term"].head(5)),
    }])
    return SelfChatResult(
        turns=frame, dispersion=dispersions, clusters=clusters, terms=terms, summary=summary, embeddings=vectors,
        seed_embedding=seed_vector, seed_xy=(float(coords[0, 0]), float(coords[0, 1])), prompt=filled.ref,
        opening=opening, pairing=pairing, models=(a, b), family_note=_family_note(sampler, a, b),
        config=config.model_dump(mode="json"),
    )


__all__ = [
    "Dispersion",
    "SelfChatResult",
    "check_inputs",
    "dispersion",
    "dispersion_change",
    "project",
    "rising_terms",
    "run_seed",
    "self_conversation",
    "speaker_messages",
    "transcript_stops",
]
