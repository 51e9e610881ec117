"""The main job: a few built-in probes on the embedded base/tuned pair, compared side by side."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench import __version__
from workbench.analysis import AnswerFn, compare_frame, first_number, first_word, first_words
from workbench.home import exports_dir, workbench_home
from workbench.plots import distribution_figure, save_figure
from workbench.sampler import Sampler

DEMO_PAIR = "embedded"
DEFAULT_N = 32


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
    DemoProbe(
        "random-number",
        "Q: Pick a random number between 1 and 100.\nA: My number is",
        chat=False,
        max_tokens=6,
        answer=first_number,
        answer_label="first number",
    ),
    DemoProbe("story-opening", "Once upon a time,", chat=False, max_tokens=24, answer=first_words(3),
              answer_label="first three words"),
    DemoProbe(
        "favourite-colour",
        "What is your favourite colour? Answer with one word.",
        chat=True,
        max_tokens=8,
        answer=first_word,
        answer_label="first word",
    ),
)


def run_demo(n: int = DEFAULT_N, seed: int = 0, sampler: Sampler | None = None, out_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """Sample every demo probe on the embedded pair, print comparison tables, write PNG/SVG figures."""
    sampler = sampler or Sampler()
    pair = sampler.registry.pairs[DEMO_PAIR]
    models = [pair.base, pair.tuned]
    family_note = sampler.registry.describe_pair(models)
    out_dir = out_dir or exports_dir() / "demo"
    started = time.perf_counter()
    print(f"Comparing {pair.base} (base) with {pair.tuned} (tuned): {family_note}.")
    print(f"{n} samples per model and prompt, temperature 1, no truncation, seed {seed}.\n")
    tables: dict[str, pd.DataFrame] = {}
    run_ids: list[str] = []
    for probe in DEMO_PROBES:
        runs = sampler.compare(models, probe.prompt, n, seed=seed, chat=probe.chat, max_tokens=probe.max_tokens)
        samples = pd.concat([r.samples for r in runs], ignore_index=True)
        table = compare_frame(samples, probe.answer)
        tables[probe.name] = table
        run_ids += [r.run_id for r in runs]
        shown = probe.prompt.replace("\n", "\\n")
        mode = "chat (tuned: chat template; base: plain-dialogue transcript)" if probe.chat else "raw completion"
        print(f"== {probe.name}: {shown!r} [{mode}]; answer = {probe.answer_label}")
        print(table.drop(columns=["max_entropy_bits"]).to_string(index=False))
        print()
        fig = distribution_figure(
            samples,
            probe.answer,
            title=f"{probe.name}: {probe.answer_label} of {n} samples per model",
            family_note=f"{pair.base} vs {pair.tuned}: {family_note}.",
        )
        save_figure(
            fig,
            out_dir / probe.name,
            {
                "workbench": __version__,
                "probe": probe.name,
                "prompt": probe.prompt,
                "chat": probe.chat,
                "answer": probe.answer_label,
                "runs": [
                    {"run_id": r.run_id, "model": r.model, "config": r.config.model_dump(mode="json"),
                     "seed": r.seed, "n": r.n, "template": r.rendered.template}
                    for r in runs
                ],
                "families": family_note,
            },
        )
    elapsed = time.perf_counter() - started
    print(f"Figures (PNG and SVG, with provenance): {out_dir}")
    print(f"Runs are stored in {sampler.store.path} ({len(run_ids)} runs); list them with `workbench runs list`.")
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    if any(notebooks.glob("*.ipynb")):
        print(f"Notebooks: {notebooks} (open them with `make lab`).")
    print(f"Workbench home: {workbench_home()}. Done in {elapsed:.1f} s.")
    return tables
