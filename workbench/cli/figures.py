"""`workbench figure distribution|sweep|embedding|heatmap`: publication figures with provenance, drawn at a
paper's column width (`--width one-column|two-column`)."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.common import (
    MODELS_HELP,
    add_choice_flags,
    add_figure_flags,
    add_n_flag,
    add_run_flags,
    add_sampling_flags,
    add_seed_flag,
    config_fields,
    figure_stem,
    make_sampler,
    model_list,
    one_line,
    prompt_choices,
    resolve_prompt,
    temperature_value,
)
from workbench.config import MAX_TEMPERATURE
from workbench.errors import WorkbenchError

PROMPT_HELP = "prompt text, @file, or a library prompt collection/prompt-id"
# The names of workbench.plots.sizing.WIDTHS, here so registering the flag imports no matplotlib.
WIDTHS = ("one-column", "two-column")
SWEEP_METRICS = ("entropy_bits", "top1_mass", "distinct_answers", "p_other", "entropy_bits_in_space",
                 "top_share_in_space")


def add_width_flag(parser: argparse.ArgumentParser) -> None:
    """--width: the paper column the figure is drawn for."""
    parser.add_argument("--width", choices=list(WIDTHS), default="two-column",
                        help="draw the figure for one column (3.5 in) or two columns (7 in) of a paper; PNG at "
                             "300 dpi (default %(default)s)")


def export(args: argparse.Namespace, fig: Any, kind: str, name: str, provenance: dict[str, Any]) -> None:
    """Write the figure in --formats (or the one format its path names) at --width, with provenance; print the paths."""
    from workbench.plots import export_figure, figure_formats_for

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    stem, formats = figure_formats_for(figure_stem(args, kind, name), formats)  # --figure plot.png: that one
    paths = export_figure(fig, stem, provenance, formats=formats, width=args.width)
    print("wrote " + ", ".join(str(p) for p in paths))


def _right_panel(args: argparse.Namespace) -> str:
    """Where the in-space view is: beside the total view, or under it on one column."""
    return "the figure's right panel" if args.width == "two-column" else "the figure's lower panel"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `figure` group and its four figures."""
    figure = sub.add_parser("figure", help="publication figures (PNG, SVG, PDF with provenance)").add_subparsers(
        dest="action", required=True)
    p = figure.add_parser("distribution", help="answer distributions side by side (exact where possible)")
    p.add_argument("prompt", help=PROMPT_HELP)
    p.add_argument("--models", required=True, help=MODELS_HELP)
    p.add_argument("--answer", help="answer extractor (default: the prompt's answer space, else first-line)")
    p.add_argument("--sampled", action="store_true", help="use sampled distributions even where exact ones exist")
    add_sampling_flags(p, n_default=100)
    add_figure_flags(p)
    add_width_flag(p)
    p.set_defaults(func=cmd_figure_distribution)

    p = figure.add_parser("sweep", help="a metric against temperature for each model")
    p.add_argument("prompt", help=PROMPT_HELP)
    p.add_argument("--models", required=True)
    p.add_argument("--temperatures", required=True, help="comma-separated, e.g. 0.5,1.0,1.5")
    p.add_argument("--metric", default="entropy_bits", choices=list(SWEEP_METRICS),
                   help="total view (entropy_bits, top1_mass, distinct_answers; drawn beside their in-space "
                        "partner where there is one), p_other, or an in-space metric (default %(default)s)")
    p.add_argument("--sampled", action="store_true", help="sample even where exact distributions exist")
    add_n_flag(p, 100, "samples per model and temperature when sampled")
    add_seed_flag(p)
    add_choice_flags(p)
    add_run_flags(p)
    add_figure_flags(p)
    add_width_flag(p)
    p.set_defaults(func=cmd_figure_sweep)

    p = figure.add_parser("embedding", help="a 2-D map of continuation embeddings with semantic clusters")
    p.add_argument("prompt", help=PROMPT_HELP)
    p.add_argument("--models", required=True)
    add_sampling_flags(p, n_default=50)
    add_figure_flags(p)
    add_width_flag(p)
    p.set_defaults(func=cmd_figure_embedding)

    p = figure.add_parser("heatmap", help="divergence between a model pair across a collection")
    p.add_argument("--collection", required=True)
    p.add_argument("--models", required=True, help="BASE,TUNED")
    p.add_argument("--prompts", help="only these prompt ids (comma-separated)")
    p.add_argument("--correction", default="holm", choices=["holm", "bh"], help="multiple-comparison correction")
    add_n_flag(p, 50, "samples per model and prompt")
    p.add_argument("--temperature", type=temperature_value)
    add_seed_flag(p)
    add_run_flags(p)
    add_figure_flags(p)
    add_width_flag(p)
    p.set_defaults(func=cmd_figure_heatmap)


def temperatures(value: str) -> list[float]:
    """--temperatures: numbers separated by commas, at least one."""
    try:
        parsed = [float(t) for t in value.split(",") if t.strip()]
    except ValueError:
        raise WorkbenchError(f"--temperatures expects numbers separated by commas, got {value!r}") from None
    if not parsed:
        raise WorkbenchError("--temperatures is empty; give e.g. 0.5,1.0,1.5")
    wrong = [t for t in parsed if not 0 <= t <= MAX_TEMPERATURE]  # also NaN and the infinities
    if wrong:
        raise WorkbenchError(f"--temperatures: {', '.join(map(str, wrong))} is not a temperature from 0 to "
                             f"{MAX_TEMPERATURE:g}")
    return parsed


def _note(families: str, name: str) -> str:
    """The family note and, for a library prompt, its id (the title says it in words)."""
    from workbench.plots.style import prompt_words

    ref = prompt_words(name) != name
    return f"{families}. Prompt: {name}" if ref and families else (f"Prompt: {name}" if ref else families)


def _variables(args: argparse.Namespace) -> str:
    """' (high=50)' for the --var choices, so a figure of one grid variant says which."""
    variables = prompt_choices(args)["variables"]
    return f" ({', '.join(f'{k}={v}' for k, v in variables.items())})" if variables else ""


def cmd_figure_distribution(args: argparse.Namespace) -> None:
    """Answer distributions of one prompt on several models, exact where the backend can score them."""
    from workbench.analysis.comparisons import compare_prompt
    from workbench.analysis.distributions import distribution_table
    from workbench.plots import answer_distribution_figure
    from workbench.plots.distributions import comparison_rows, estimate_text, other_warning_text, top_cell
    from workbench.plots.style import prompt_words
    from workbench.prompts import answer_extractor

    models = model_list(args)
    sampler = make_sampler(args)
    prompt = resolve_prompt(args.prompt, sampler)
    answer = answer_extractor(args.answer) if args.answer else None
    report = compare_prompt(sampler, models, prompt, args.n, seed=args.seed, answer=answer, exact=not args.sampled,
                            chat=args.chat, **prompt_choices(args), **config_fields(args))
    table = distribution_table(report.distributions)
    name = getattr(prompt, "ref", None) or args.prompt
    fig = answer_distribution_figure(table, title=f"Answer distributions: {prompt_words(name)}{_variables(args)}",
                                     note=_note(report.family_note, name))
    shown = table.groupby("model").head(6)
    print(shown.assign(answer=shown["answer"].map(top_cell),
                       probability=[estimate_text(r.probability, r.ci_low, r.ci_high, r.reliable, 3)
                                    for r in shown.itertuples()])
          [["model", "method", "n", "temperature", "answer", "probability", "interval"]]
          .to_string(index=False, na_rep="–"))
    warning = other_warning_text(comparison_rows(report), where=f"the in-space view ({_right_panel(args)})")
    if warning:
        print(f"WARNING: {warning}")
    export(args, fig, "distribution", name, {
        "prompt": name, "models": models, "runs": [r.run_id for r in report.runs],
        "configs": [r.config.model_dump(mode="json") for r in report.runs], "seed": args.seed,
        "methods": {d.model: d.method for d in report.distributions}, "families": report.family_note,
    })


def cmd_figure_sweep(args: argparse.Namespace) -> None:
    """A metric of each model's answer distribution against temperature, beside its in-space partner."""
    from workbench.analysis.sweeps import temperature_sweep
    from workbench.plots import temperature_sweep_figure
    from workbench.plots.style import metric_title, prompt_words
    from workbench.plots.sweeps import IN_SPACE_OF, sweep_how_made, sweep_table, sweep_warning

    models = model_list(args)
    sampler = make_sampler(args)
    prompt = resolve_prompt(args.prompt, sampler)
    frame = temperature_sweep(sampler, models, prompt, temperatures(args.temperatures), n=args.n, seed=args.seed,
                              method="sampled" if args.sampled else "auto", **prompt_choices(args))
    name = getattr(prompt, "ref", None) or args.prompt
    shown = tuple(m for m in (args.metric, IN_SPACE_OF.get(args.metric)) if m and (frame["metric"] == m).any())
    print(sweep_table(frame, shown).to_string(index=False))
    print("how each number was made (brackets: 95% interval; exact numbers have none; †: outside the regime "
          "where the interval was checked):")
    print("\n".join("  " + line for line in sweep_how_made(frame, ("p_other", *shown))))
    warning = sweep_warning(frame, where=f"the in-space numbers ({_right_panel(args)})"
                            if len(shown) > 1 else "the in-space metrics")
    if warning:
        print(f"WARNING: {warning}")
    families = sampler.registry.describe_pair(models)
    fig = temperature_sweep_figure(frame, args.metric, title=f"{metric_title(args.metric)} against temperature: "
                                   f"{prompt_words(name)}{_variables(args)}", note=_note(families, name))
    export(args, fig, "sweep", name, {"prompt": name, "models": models, "temperatures": args.temperatures,
                                      "n": args.n, "seed": args.seed, "metric": args.metric, "families": families,
                                      "methods": sorted(set(frame["method"]))})


def cmd_figure_embedding(args: argparse.Namespace) -> None:
    """A 2-D map of the continuations' embeddings with semantic clusters."""
    import pandas as pd

    from workbench.analysis.metrics import semantic_clusters
    from workbench.plots import embedding_map_figure
    from workbench.plots.style import prompt_words

    models = model_list(args)
    sampler = make_sampler(args)
    prompt = resolve_prompt(args.prompt, sampler)
    runs = sampler.compare(models, prompt, args.n, seed=args.seed, chat=args.chat, **prompt_choices(args),
                           **config_fields(args))
    clusters = semantic_clusters(pd.concat([r.samples for r in runs], ignore_index=True))
    name = getattr(prompt, "ref", None) or args.prompt
    shown = clusters.clusters.head(8)
    print(shown[["cluster", "size", *[c for c in shown.columns if c.startswith("share_")], "label"]]
          .assign(label=lambda f: f["label"].map(lambda t: one_line(t, 50))).round(3).to_string(index=False))
    families = sampler.registry.describe_pair(models)
    fig = embedding_map_figure(clusters.points, clusters.clusters, title=f"Continuations of {prompt_words(name)}",
                               note=_note(families, name))
    export(args, fig, "embedding", name, {"prompt": name, "models": models, "runs": [r.run_id for r in runs],
                                          "seed": args.seed, "families": families})


def cmd_figure_heatmap(args: argparse.Namespace) -> None:
    """Divergence between a base/tuned pair on every prompt of a collection, with corrected p-values."""
    from workbench.analysis.comparisons import collection_summary
    from workbench.plots import divergence_heatmap_figure

    models = model_list(args)
    if len(models) != 2:
        raise WorkbenchError("the heatmap compares a pair: give --models BASE,TUNED")
    sampler = make_sampler(args)
    prompts = [p.strip() for p in args.prompts.split(",")] if args.prompts else None
    frame = collection_summary(sampler, models, args.collection, n=args.n, temperature=args.temperature or 1.0,
                               seed=args.seed, correction=args.correction, prompts=prompts)
    shown = frame[["prompt", "jsd", "p_value", "p_adjusted", "entropy_diff"]]
    print(shown.round(4).to_string(index=False))
    correction = frame["correction"].iloc[0]
    print(f"p-values: permutation tests, adjusted with {correction} across {len(frame)} prompts")
    stem = figure_stem(args, "heatmap", args.collection)
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    families = sampler.registry.describe_pair(models)
    fig = divergence_heatmap_figure(frame, title=f"Divergence between models: {args.collection.replace('-', ' ')}",
                                    note=families + f"; p adjusted ({correction})")
    export(args, fig, "heatmap", args.collection, {"collection": args.collection, "models": models, "n": args.n,
                                                   "seed": args.seed, "correction": args.correction,
                                                   "families": families})
