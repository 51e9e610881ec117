"""The main job: a few built-in probes on the embedded base/tuned pair, compared side by side.

It takes the path a researcher takes: `compare_prompt` (the Sampler's `compare`, sampled answer
distributions with Jeffreys and Miller-Madow intervals, pairwise divergences), then `answer_distribution_figure` and
`export_figure` for the figures with their provenance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.analysis import PromptComparison, compare_prompt, distribution_table
from workbench.home import exports_dir, workbench_home
from workbench.plots import answer_distribution_figure, export_figure
from workbench.plots.distributions import has_answer_space, how_made, other_warning_text, top_cell
from workbench.prompts import AnswerFn, first_number, first_word, first_words
from workbench.sampler import Sampler
from workbench.version import __version__

DEMO_PAIR = "embedded"
DEFAULT_N = 32
FIGURE_FORMATS = ("png", "svg")
# What the printed table shows of each comparison's summary (the returned table has every column).
SHOWN = ["model", "kind", "family", "n", "distinct_continuations", "distinct_answers", "entropy_bits", "entropy_ci",
         "top_answer", "top_share", "top_share_ci"]
# ... and, for a probe with an answer space, the mass outside it and the in-space view.
SHOWN_IN_SPACE = ["p_other", "p_other_ci", "entropy_bits_in_space", "entropy_in_space_ci", "top_answer_in_space",
                  "top_share_in_space"]


@dataclass(frozen=True)
class DemoProbe:
    """A built-in prompt with the answer extractor its distribution is computed over."""

    name: str
    prompt: str
    chat: bool
    max_tokens: int
    answer: AnswerFn
    answer_label: str


DEMO_PROBES = (
    DemoProbe("random-number", "Q: Pick a random number between 1 and 100.\nA: My number is", chat=False,
              max_tokens=6, answer=first_number, answer_label="first number"),
    DemoProbe("story-opening", "Once upon a time,", chat=False, max_tokens=24, answer=first_words(3),
              answer_label="first three words"),
    DemoProbe("favourite-colour", "What is your favourite colour? Answer with one word.", chat=True, max_tokens=8,
              answer=first_word, answer_label="first word"),
)


def run_demo(n: int = DEFAULT_N, seed: int = 0, sampler: Sampler | None = None,
             out_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """Compare every demo probe on the embedded pair, print a table per probe, write PNG/SVG figures.

    Returns each probe's summary (one row per model). A sampler made here is closed at the end;
    one passed in stays open.
    """
    if sampler is None:
        with Sampler() as owned:
            return run_demo(n, seed, owned, out_dir)
    pair = sampler.registry.pairs[DEMO_PAIR]
    models = [pair.base, pair.tuned]
    family_note = sampler.registry.describe_pair(models)
    out_dir = out_dir or exports_dir() / "demo"
    started = time.perf_counter()
    print(f"Comparing {pair.base} (base) with {pair.tuned} (tuned): {family_note}.")
    print(f"{n} samples per model and prompt, temperature 1, no truncation, seed {seed}.\n")
    tables: dict[str, pd.DataFrame] = {}
    runs = 0
    for probe in DEMO_PROBES:
        report = compare_prompt(sampler, models, probe.prompt, n, seed=seed, answer=probe.answer, chat=probe.chat,
                                max_tokens=probe.max_tokens)
        tables[probe.name] = report.summary
        runs += len(report.runs)
        _print_report(probe, report)
        _export(probe, report, n, out_dir / probe.name, f"{pair.base} vs {pair.tuned}: {family_note}.")
    elapsed = time.perf_counter() - started
    print(f"Figures (PNG and SVG, with provenance): {out_dir}")
    print(f"Runs are stored in {sampler.store.path} ({runs} runs); list them with `workbench runs list`.")
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    if any(notebooks.glob("*.ipynb")):
        print(f"Notebooks: {notebooks} (open them with `make lab`).")
    print(f"Workbench home: {workbench_home()}. Done in {elapsed:.1f} s.")
    return tables


def _print_report(probe: DemoProbe, report: PromptComparison) -> None:
    mode = "chat (tuned: chat template; base: plain-dialogue transcript)" if probe.chat else "raw completion"
    print(f"== {probe.name}: {probe.prompt!r} [{mode}]; answer = {probe.answer_label}")
    space = has_answer_space(report.summary)
    shown = report.summary[SHOWN + (SHOWN_IN_SPACE if space else [])]
    print(shown.assign(top_answer=shown["top_answer"].map(top_cell)).to_string(index=False))
    print("  " + "\n  ".join(how_made(report.summary, ("entropy_bits", "top_share") if not space else
                                      ("p_other", "entropy_bits", "top_share", "entropy_bits_in_space",
                                       "top_share_in_space"))))
    if not space:
        print("  (no answer space: every answer counts, so there is no (other) and no separate in-space view)")
    if warning := other_warning_text(report.summary):
        print(f"WARNING: {warning}")
    for pair in report.divergence.itertuples(index=False):
        print(f"{pair.pair}: Jensen-Shannon divergence {pair.jsd:.3f} bits, permutation p = {pair.p_value:.3g}")
    print()


def _export(probe: DemoProbe, report: PromptComparison, n: int, stem: Path, family_note: str) -> list[Path]:
    kinds = dict(zip(report.summary["model"], report.summary["kind"], strict=True))
    table = distribution_table(report.distributions)
    table = table.assign(kind=table["model"].map(kinds))
    fig = answer_distribution_figure(table, top=8, title=f"{probe.name}: {probe.answer_label} of {n} samples per model",
                                     note=family_note)  # the x label names the whiskers' interval
    provenance = {
        "workbench": __version__,
        "probe": probe.name,
        "prompt": probe.prompt,
        "chat": probe.chat,
        "answer": probe.answer_label,
        "runs": [
            {"run_id": r.run_id, "model": r.model, "config": r.config.model_dump(mode="json"), "seed": r.seed,
             "n": r.n, "template": r.rendered.template}
            for r in report.runs
        ],
        "divergence": report.divergence.to_dict(orient="records"),
        "families": report.family_note,
    }
    return export_figure(fig, stem, provenance, formats=FIGURE_FORMATS)
