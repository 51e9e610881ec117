"""A report of stored runs: `workbench report RUN_ID...`.

Runs of the same prompt (the same library prompt and choices, or the same text) form one section:
their answer distributions side by side (sampled, with Jeffreys intervals), a summary row per run
with both views (total and in-space) and their intervals, the pairwise divergences, a few samples,
and the `workbench sample` command that redraws each run from its model, input, config and seed.
"""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd

from workbench.analysis import compare_runs, distribution_table, sampled_distribution
from workbench.analysis.comparisons import summary_row
from workbench.errors import WorkbenchError
from workbench.plots import answer_distribution_figure
from workbench.prompts import first_line
from workbench.report.document import Report, ReportFigure, ReportSection, ReportTable
from workbench.sampler import Sampler, SampleRun

SUMMARY_COLUMNS = {"model": "model", "kind": "kind", "n": "n", "method": "method", "top_answer": "top",
                   "top_share": "share", "top_share_ci": "share CI", "entropy_bits": "H (bits)",
                   "entropy_ci": "H CI", "p_other": "P(other)", "p_other_ci": "P(other) CI",
                   "distinct_answers": "distinct"}
SUMMARY_LEGEND = ("top: most common answer; share: its share of the samples; H: entropy of the answers in bits "
                  "(Miller-Madow, bootstrap CI); P(other): share outside the prompt's answer space; CIs are 95 %; "
                  "every number here is sampled (n samples per run).")
SAMPLES_SHOWN = 5


def split_ref(ref: str) -> tuple[str, dict[str, str]]:
    """A stored prompt ref 'collection/id?k=v&perturbation=p' as the library address and its choices."""
    address, _, query = ref.partition("?")
    choices = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    return address, choices


def _choice_flags(choices: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for name, value in choices.items():
        if name in ("perturbation", "framing"):
            flags += [f"--{name}", value]
        else:
            flags += ["--var", f"{name}={value}"]
    return flags


def _group_key(run: SampleRun) -> str:
    ref = run.samples["prompt_ref"].iloc[0] if "prompt_ref" in run.samples and len(run.samples) else None
    if isinstance(ref, str) and ref:
        return ref
    return run.rendered.display()


def sample_command(run: SampleRun) -> str:
    """The `workbench sample` command that draws this run again (same model, input, config and seed)."""
    ref = run.samples["prompt_ref"].iloc[0] if len(run.samples) else None
    messages = run.rendered.messages or ()
    # A typed chat prompt (one user message) is kept as messages even where a transcript was sent.
    chat = not (isinstance(ref, str) and ref) and len(messages) == 1 and messages[0]["role"] == "user"
    choices: dict[str, str] = {}
    if isinstance(ref, str) and ref:
        prompt, choices = split_ref(ref)
    else:
        prompt = messages[0]["content"] if chat else (run.rendered.text or "")
    config = run.config
    parts = ["workbench", "sample", prompt, *_choice_flags(choices), "--model", run.model, "--n", str(run.n),
             "--seed", str(run.seed), "--temperature", f"{config.temperature:g}", "--max-tokens",
             str(config.max_tokens)]
    if config.top_p is not None and config.top_p < 1:
        parts += ["--top-p", f"{config.top_p:g}"]
    if config.top_k:
        parts += ["--top-k", str(config.top_k)]
    for stop in config.stop or []:
        parts += ["--stop", stop]
    if chat:
        parts.append("--chat")
    command = shlex.join(parts)
    if messages and not chat and not (isinstance(ref, str) and ref):
        return f"# {run.model}: chat messages the CLI cannot type; redraw it with Sampler.sample (see provenance)"
    python_only = {name: getattr(config, name) for name, off in (("min_p", 0.0), ("repetition_penalty", 1.0))
                   if getattr(config, name, off) != off}
    if python_only:
        command += "  # and " + ", ".join(f"{k}={v:g}" for k, v in python_only.items()) + " (Sampler.sample only)"
    return command


def runs_section(runs: list[SampleRun], sampler: Sampler, title: str | None = None) -> ReportSection:
    """One section for runs of one prompt: distributions figure, summary table, divergences, samples, commands."""
    first = runs[0]
    try:
        prompt = sampler.library.get(split_ref(_group_key(first))[0]) if _group_key(first) else None
    except WorkbenchError:
        prompt = None
    space = prompt.spec.answer_space if prompt is not None else None
    normaliser = space or first_line
    answer_label = "answer (the prompt's answer space)" if space else "first line"
    distributions = [sampled_distribution(run, normaliser) for run in runs]
    summary = pd.DataFrame([summary_row(run, dist) for run, dist in zip(runs, distributions, strict=True)])
    # Without an answer space P(other) is 0 by definition, not a measurement: no column for it.
    columns = [c for c in SUMMARY_COLUMNS if c in summary and (space or not c.startswith("p_other"))]
    shown = summary[columns].rename(columns=SUMMARY_COLUMNS)
    tables = [ReportTable(shown, f"One row per run: its {answer_label}.", SUMMARY_LEGEND)]
    if len(runs) > 1:
        divergence = compare_runs(runs, normaliser)
        columns = [c for c in ("pair", "jsd", "jsd_ci_low", "jsd_ci_high", "p_value") if c in divergence]
        tables.append(ReportTable(divergence[columns], "Pairwise Jensen-Shannon divergence (bits) between the runs' "
                                  "answers, with its 95 % bootstrap interval and a permutation p-value."))
    examples = pd.concat([run.samples.head(SAMPLES_SHOWN).assign(model=run.model)[["model", "sample_index", "text"]]
                          for run in runs], ignore_index=True)
    tables.append(ReportTable(examples, f"The first {SAMPLES_SHOWN} samples of each run, as stored."))
    table = distribution_table(distributions)
    n_text = ", ".join(f"{run.model}: n = {run.n}" for run in runs)
    figure = answer_distribution_figure(table, top=8, title=title or "Answer distributions")
    text = (f"Prompt: {_group_key(first)}\nRendered input of the first run ({first.rendered.template}):\n"
            f"{first.rendered.display()}")
    provenance: dict[str, Any] = {"runs": [_run_provenance(run, sampler) for run in runs]}
    return ReportSection(
        title=title or f"{_group_key(first)[:80]}", text=text, tables=tables,
        figures=[ReportFigure(figure, f"Sampled answer distributions ({answer_label}); whiskers are 95 % Jeffreys "
                                      f"intervals; {n_text}.")],
        commands=[sample_command(run) for run in runs], provenance=provenance)


def _run_provenance(run: SampleRun, sampler: Sampler) -> dict[str, Any]:
    stored = sampler.store.run(run.run_id)
    return {"run_id": run.run_id, "model": run.model, "kind": stored["model_kind"], "family": stored["model_family"],
            "identity": stored["model_identity"], "backend": stored["backend"], "config": run.config,
            "seed": run.seed, "n": run.n, "template": run.rendered.template, "input": run.rendered.display()}


def runs_report(sampler: Sampler, run_ids: list[str], title: str | None = None) -> Report:
    """A report of stored runs (ids or unique prefixes), one section per prompt."""
    if not run_ids:
        raise WorkbenchError("give at least one run id (see `workbench runs list`)")
    runs = [sampler.stored_run(run_id) for run_id in dict.fromkeys(run_ids)]
    groups: dict[str, list[SampleRun]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    sections = [runs_section(group, sampler) for group in groups.values()]
    return Report(title or f"Workbench report: {len(runs)} run{'s' if len(runs) != 1 else ''}", sections,
                  provenance={"store": str(sampler.store.path),
                              "run_ids": [run.run_id for run in runs]})
