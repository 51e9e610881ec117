"""The probes: `workbench persona`, `segue` and `selfchat` (also under `workbench experiment`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from workbench.cli.common import (
    MODELS_HELP,
    add_figure_flags,
    add_n_flag,
    add_run_flags,
    add_seed_flag,
    config_fields,
    export,
    figure_stem,
    finite_float,
    make_sampler,
    max_tokens_value,
    one_line,
    positive_int,
    resolve_prompt,
    temperature_value,
)
from workbench.errors import WorkbenchError
from workbench.plots.export import slug


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `experiment` group, `persona`, `segue` and `selfchat` (`tree` is its own noun: cli/tree.py)."""
    experiment = sub.add_parser("experiment", help="the workbench's probes").add_subparsers(dest="action",
                                                                                          required=True)
    # `workbench persona` and `workbench experiment personas` are the same command (likewise segue, selfchat).
    for group, name in ((sub, "persona"), (experiment, "personas")):
        p = group.add_parser(name, help="agentic-persona items per trait under one framing, with p_answered, CIs "
                                        "and the yes-bias check")
        p.add_argument("--models", required=True, help=MODELS_HELP)
        p.add_argument("--collection", default="personas",
                       help="the persona collection (default %(default)s; an imported one: set WORKBENCH_PROMPTS)")
        p.add_argument("--traits", help="only these traits (comma-separated)")
        p.add_argument("--framing", help="one framing for every model (default: the collection's first, "
                                         "questionnaire-transcript for personas); 'by-kind' = base models in the "
                                         "transcript, tuned in the chat (confounds model and framing)")
        p.add_argument("--framings-grid", action="store_true", dest="framings_grid",
                       help="every model under every framing of the collection: one table and one figure")
        p.add_argument("--orders", choices=["given", "both"], default="given",
                       help="multiple-choice items: also show the options reordered (position-bias check)")
        p.add_argument("--method", choices=["auto", "exact", "sampled"], default="auto",
                       help="exact from logprobs where possible (auto), or sampled")
        add_n_flag(p, 20, "samples per item when sampled")
        p.add_argument("--per-trait", type=positive_int, dest="per_trait", help="only the first k items of each keying")
        p.add_argument("--min-answered", type=finite_float, default=0.5, dest="min_answered",
                       help="warn when p_answered (mass on the answer options) is below this (default %(default)s)")
        add_seed_flag(p)
        add_run_flags(p)
        add_figure_flags(p)
        p.set_defaults(func=cmd_experiment_personas)

    for group, name in ((sub, "segue"), (experiment, "segues")):
        p = group.add_parser(name, help="segue recovery: back to the prompt's world after a jarring turn?")
        p.add_argument("prompt", help="a library prompt with perturbations, e.g. attractors/wedding-toast")
        p.add_argument("--models", required=True, help=MODELS_HELP)
        p.add_argument("--perturbations", help="only these perturbations (comma-separated; default all)")
        p.add_argument("--judge", help="also classify with this registered model as an LLM judge "
                                       "(judges/segue-world)")
        p.add_argument("--method", default="keywords",
                       help="classifier shown in the figure: keywords, embedding, or judge:MODEL")
        add_n_flag(p, 32, "continuations per model and condition")
        p.add_argument("--max-tokens", type=max_tokens_value, dest="max_tokens")
        p.add_argument("--temperature", type=temperature_value)
        add_seed_flag(p)
        add_run_flags(p)
        add_figure_flags(p)
        p.set_defaults(func=cmd_experiment_segues)

    for group in (sub, experiment):
        p = group.add_parser("selfchat",
                             help="self-conversation drift: two instances talk for K turns; do runs converge?")
        p.add_argument("prompt", help="a self-conversation seed, e.g. self-conversations/two-ais-meet "
                                      "(see `workbench prompts list --tag self-conversation`)")
        p.add_argument("--models", required=True, action="append",
                       help="A (one model talks to itself) or A,B (A answers the opening, B replies); repeat "
                            "--models to compare several pairings in one figure")
        p.add_argument("--turns", type=positive_int, default=6,
                       help="turns per conversation, K >= 1 (default %(default)s)")
        p.add_argument("--runs", type=positive_int, default=8,
                       help="independent conversations, R >= 2 (default %(default)s)")
        p.add_argument("--max-tokens", type=max_tokens_value, dest="max_tokens",
                       help="new tokens per turn (default: the seed's, 60)")
        p.add_argument("--temperature", type=temperature_value, help="0 = greedy (default 1)")
        add_seed_flag(p, "run r samples with a seed derived from (seed, r)")
        p.add_argument("--figure", help="figure file, .png, .svg or .pdf (default $WORKBENCH_HOME/exports/figures/"
                                        "selfchat-...png); CSVs of the tables are written next to it")
        add_run_flags(p)
        p.set_defaults(func=cmd_selfchat)


def experiment_models(args: argparse.Namespace):
    """The --models list (one or more, all known) and a Sampler."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise WorkbenchError("--models needs at least one model name")
    sampler = make_sampler(args)
    for m in models:
        sampler.model(m)  # unknown names fail before anything is sampled
    return models, sampler


def cmd_experiment_personas(args: argparse.Namespace) -> None:
    """Persona items per trait on each model under one framing (or a framings grid): scores with CIs,
    p_answered, shifts between models, the yes-bias (or position-bias) check, CSVs and a figure."""
    if args.framings_grid and args.framing:
        raise WorkbenchError("--framings-grid scores every framing; drop --framing (or drop --framings-grid)")
    if args.n < 1:
        raise WorkbenchError(f"--n must be 1 or more samples per item (got {args.n})")
    if args.per_trait is not None and args.per_trait < 1:
        raise WorkbenchError(f"--per-trait must be 1 or more (got {args.per_trait})")
    if not 0 <= args.min_answered <= 1:
        raise WorkbenchError(f"--min-answered must be between 0 and 1 (got {args.min_answered})")
    import pandas as pd

    from workbench.experiments.personas import BY_KIND, persona_eval, persona_grid_table, persona_shift
    from workbench.plots import figure_formats_for
    from workbench.plots.personas import persona_figure, persona_grid_figure

    models, sampler = experiment_models(args)
    traits = [t.strip() for t in args.traits.split(",") if t.strip()] if args.traits else None
    result = persona_eval(sampler, models, traits=traits, method=args.method, n=args.n, seed=args.seed,
                          per_trait=args.per_trait, collection=args.collection, framing=args.framing,
                          framings="grid" if args.framings_grid else None, orders=args.orders,
                          answered_threshold=args.min_answered)
    threshold = result.answered_threshold
    items = result.items
    options = sorted({" / ".join(_options_of(sampler, ref)) for ref in items["prompt"].unique()})
    print(f"models: {', '.join(models)} ({result.family_note})")
    print(f"collection {result.collection}, {items['prompt'].nunique()} items; framing: {result.framing_label()}")
    print(f"method: {_method_text(items)}")
    print(f"p_answered: probability mass on the item's answer options ({'; '.join(options)}), mean over items; "
          f"'!' = below {threshold:g} (the model mostly answers something else; p_match is renormalised over "
          "the options)")
    print()
    print("P(trait-matching answer), renormalised over the answer options: mean over items, 95% bootstrap CI "
          "over items:")
    traits_table = result.traits.sort_values(["trait", "framing"], kind="stable")
    print(_table(traits_table, [("model", "model"), ("framing", "framing"), ("trait", "trait"), ("keyed", "keyed"),
                                ("n", "n_items"), ("p_match", _num("p_match")), ("95% CI", _ci("ci_low", "ci_high")),
                                ("p_answered", _answered("p_answered", "p_answered_low"))]))
    if args.framings_grid:
        grid = persona_grid_table(result)
        grid["cell"] = [f"{r.p_match:.2f} {_interval(r.ci_low, r.ci_high)} ans {r.p_answered:.2f}"
                        f"{' !' if r.p_answered_low else ''}" for r in grid.itertuples()]
        print()
        print("framings grid: P(trait-matching answer) [95% CI] and p_answered, every model (columns) under every "
              "framing (rows):")
        print(grid.pivot_table(index=["trait", "framing"], columns="model", values="cell", aggfunc="first",
                               sort=False).to_string())
    shifts = []
    for other in models[1:]:
        shift = persona_shift(result, models[0], other, seed=args.seed)
        shifts.append(shift)
        same = bool(shift["same_framing"].all())
        print()
        print(f"shift {models[0]} -> {other} ({'same items, same framing' if same else 'DIFFERENT framings'}): "
              "mean paired difference in P(match), 95% bootstrap CI over items, sign-flip p and "
              f"{shift['correction'].iloc[0]}-adjusted p across traits:")
        print(_table(shift, [("framing", "framing"), ("trait", "trait"), ("keyed", "keyed"), ("n", "n_items"),
                             ("base", _num("p_match_base")), ("tuned", _num("p_match_tuned")),
                             ("shift", _num("shift", signed=True)), ("95% CI", _ci("ci_low", "ci_high", signed=True)),
                             ("p", _p("p_value")), ("p_adj", _p("p_adjusted")),
                             ("p_answered base/tuned", lambda r: f"{r['p_answered_base']:.2f} / "
                                                                 f"{r['p_answered_tuned']:.2f}"
                                                                 f"{' !' if r['p_answered_low'] else ''}")]))
        for warning in shift.attrs.get("warnings", []):
            print(f"warning: {warning}")
    if len(result.balance):
        print()
        print("yes-bias per keying (Yes/No items): P(match) on agree-keyed and on disagree-keyed items, each with a "
              "95% CI; yes_bias = agree - disagree, 0 = none (a trait moves both halves the same way, a bias moves "
              "them apart):")
        print(_table(_without_redundant_all(result.balance), [
                     ("model", "model"), ("framing", "framing"), ("trait", "trait"),
                     ("agree", _estimate("agree_p_match", "agree_ci")),
                     ("n", "n_agree"),
                     ("disagree", _estimate("disagree_p_match", "disagree_ci")),
                     ("n ", "n_disagree"), ("yes_bias", _num("yes_bias", signed=True)),
                     ("95% CI", _ci("yes_bias_ci_low", "yes_bias_ci_high", signed=True)),
                     ("p_answered", _answered("p_answered", "p_answered_low"))]))
    if len(result.positions):
        print()
        print("position bias (multiple-choice items shown in several orders): P(match) in the given and the other "
              "orders, share of (A) whatever it says (chance = 1/options), position_bias = share of (A) - chance; "
              "95% CIs over items:")
        print(_table(_without_redundant_all(result.positions), [
                     ("model", "model"), ("framing", "framing"), ("trait", "trait"),
                     ("n", "n_items"), ("orders", "orders"),
                     ("given", _estimate("p_match_given", "given_ci")),
                     ("reordered", _estimate("p_match_reordered", "reordered_ci")),
                     ("share (A)", _estimate("p_first", "p_first_ci")),
                     ("position_bias", _num("position_bias", signed=True)),
                     ("95% CI", _ci("position_bias_ci_low", "position_bias_ci_high", signed=True)),
                     ("p_answered", _answered("p_answered", "p_answered_low"))]))
    elif (items["format"] == "multiple-choice").any():
        print("(multiple-choice items were shown in their given order only; --orders both adds the position-bias "
              "check)")
    if result.warnings:
        print()
    for warning in result.warnings:
        print(f"warning: {warning}")
    if args.framing == BY_KIND:
        print(f"note: --framing {BY_KIND} scores each model in its kind's framing; see --framings-grid for "
              "every model under every framing")

    name = "-".join([*([] if result.collection == "personas" else [result.collection]), *models,
                     *(["grid"] if args.framings_grid else [])])
    stem, _ = figure_formats_for(figure_stem(args, "personas", name), ())  # CSVs sit next to the figure
    stem.parent.mkdir(parents=True, exist_ok=True)
    tables = {"items": items, "traits": result.traits}
    if len(result.balance):
        tables["balance"] = result.balance
    if len(result.positions):
        tables["positions"] = result.positions
    if shifts:
        tables["shift"] = pd.concat(shifts, ignore_index=True)
    if args.framings_grid:
        tables["grid"] = persona_grid_table(result)
    for table_name, frame in tables.items():
        frame.to_csv(stem.parent / f"{stem.name}.{table_name}.csv", index=False)
    figure = persona_grid_figure(result) if args.framings_grid else persona_figure(result)
    print()
    export(args, figure, "personas", name,
           {"experiment": "personas", "collection": result.collection, "models": models, "method": args.method,
            "n": args.n, "seed": args.seed, "per_trait": args.per_trait, "orders": args.orders,
            "framings": result.framings, "framing_choice": args.framing or ("grid" if args.framings_grid
                                                                            else "collection default"),
            "answered_threshold": threshold, "families": result.family_note})
    print(f"tables: {', '.join(f'{stem.name}.{table_name}.csv' for table_name in tables)} in {stem.parent}")


def _options_of(sampler, ref: str) -> list[str]:
    """An item's answer options as the p_answered note lists them."""
    space = sampler.library.get(ref).spec.answer_space
    return space.values() if space is not None else []


def _method_text(items) -> str:
    """exact / sampled in words, with n."""
    parts = []
    for method, rows in items.groupby("method", sort=False):
        models = ", ".join(rows["model"].unique())
        if method == "exact":
            parts.append(f"exact (each option's probability from the model's logprobs) for {models}")
        else:
            parts.append(f"sampled (n={int(rows['n'].iloc[0])} per item, read by the answer space's normaliser) "
                         f"for {models}")
    return "; ".join(parts)


def _interval(low: float, high: float, signed: bool = False) -> str:
    if low != low or high != high:  # NaN: fewer than two items
        return "[n/a]"
    return f"[{low:+.3f}, {high:+.3f}]" if signed else f"[{low:.3f}, {high:.3f}]"


def _num(column: str, signed: bool = False):
    return lambda r: "n/a" if r[column] != r[column] else (f"{r[column]:+.3f}" if signed else f"{r[column]:.3f}")


def _estimate(value: str, ci: str):
    """value [ci_low, ci_high] from the columns value, ci_low and ci_high."""
    return lambda r: f"{r[value]:.3f} {_interval(r[ci + '_low'], r[ci + '_high'])}"


def _p(column: str):
    return lambda r: "n/a" if r[column] != r[column] else ("<0.001" if r[column] < 0.001 else f"{r[column]:.3f}")


def _ci(low: str, high: str, signed: bool = False):
    return lambda r: _interval(r[low], r[high], signed)


def _answered(column: str, flag: str):
    return lambda r: f"{r[column]:.2f}{' !' if r[flag] else ''}"


def _table(frame, columns) -> str:
    """A frame printed with the given (header, column name or row -> text) columns."""
    import pandas as pd

    out = pd.DataFrame({header: [value(row) if callable(value) else row[value] for row in frame.to_dict("records")]
                        for header, value in columns})
    return out.to_string(index=False) if len(out) else "(none)"


def cmd_experiment_segues(args: argparse.Namespace) -> None:
    """Segue recovery: does each model return to the prompt's world after a jarring turn?"""
    from workbench.experiments.segues import segue_recovery
    from workbench.plots import segue_figure
    from workbench.prompts import LibraryPrompt

    models, sampler = experiment_models(args)
    prompt = resolve_prompt(args.prompt, sampler)
    if not isinstance(prompt, LibraryPrompt):
        raise WorkbenchError(f"{args.prompt!r} is not a library prompt; give one with perturbations, e.g. "
                             "attractors/wedding-toast (see `workbench prompts list --tag attractors`)")
    perturbations = [p.strip() for p in args.perturbations.split(",")] if args.perturbations else None
    if args.judge:
        sampler.model(args.judge)
    result = segue_recovery(sampler, models, prompt, n=args.n, seed=args.seed, perturbations=perturbations,
                            judge=args.judge, **config_fields(args))
    print(f"{', '.join(models)}: {result.family_note}")
    print(f"recovery = back in the {result.home_label!r} world; 95% Wilson intervals; tokens to the first "
          "home-world word (median)")
    print(result.summary.round(3).to_string(index=False))
    stem = figure_stem(args, "segues", prompt.ref)
    stem.parent.mkdir(parents=True, exist_ok=True)
    result.continuations.to_csv(stem.with_suffix(".continuations.csv"), index=False)
    export(args, segue_figure(result, args.method), "segues", prompt.ref,
           {"experiment": "segue-recovery", "prompt": prompt.ref, "models": models, "n": args.n, "seed": args.seed,
            "runs": sorted(result.continuations["run_id"].unique().tolist()), "families": result.family_note})


def cmd_selfchat(args: argparse.Namespace) -> None:
    """Self-conversations for each pairing: dispersion across runs per turn, rising terms, tables and a figure."""
    import pandas as pd

    from workbench.experiments.selfchat import check_inputs, self_conversation
    from workbench.home import exports_dir
    from workbench.plots import export_figure, figure_formats_for, selfchat_figure

    figure = Path(args.figure).expanduser() if args.figure else None
    if figure is not None and not figure_formats_for(figure, ())[1]:
        raise WorkbenchError(f"--figure {args.figure}: give a path ending in .png, .svg or .pdf")
    sampler = make_sampler(args)
    pairings = [[m.strip() for m in value.split(",") if m.strip()] for value in args.models]
    for models in pairings:  # every pairing is checked before anything is sampled
        check_inputs(sampler, models, args.prompt, args.turns, args.runs, args.seed)
    results = [self_conversation(sampler, models, args.prompt, turns=args.turns, runs=args.runs, seed=args.seed,
                                 **config_fields(args)) for models in pairings]
    turns = pd.concat([r.turns for r in results], ignore_index=True)
    dispersion = pd.concat([r.dispersion for r in results], ignore_index=True)
    summary = pd.concat([r.summary for r in results], ignore_index=True)
    terms = pd.concat([r.terms for r in results], ignore_index=True)
    clusters = pd.concat([r.clusters for r in results], ignore_index=True)
    print(f"{args.prompt}: {args.runs} runs x {args.turns} turns")
    for result in results:
        print(result.family_note)
    print("dispersion across runs at each turn (mean pairwise cosine distance of MiniLM embeddings, 95% bootstrap "
          "CI over runs; distance_to_seed: drift from the opening line):")
    print(dispersion[["pairing", "turn", "speaker", "dispersion", "ci_low", "ci_high", "centroid_distance",
                      "distance_to_seed"]].round(3).to_string(index=False))
    print("first to last turn (change < 0: runs converge) and final turns in the largest cluster (Wilson CI):")
    print(summary[["pairing", "first_dispersion", "last_dispersion", "change", "change_ci_low", "change_ci_high",
                   "largest_cluster_share", "largest_cluster_ci_low", "largest_cluster_ci_high"]]
          .round(3).to_string(index=False))
    print("rising terms (second half of the turns against the first; log-odds z-score):")
    if terms.empty:
        print("  none: too few turns or repeated words; give more --turns, --runs or --max-tokens")
    else:
        print(terms.groupby("pairing", sort=False).head(10)[["pairing", "term", "count_early", "count_late",
                                                             "runs_late", "z"]].round(2).to_string(index=False))
    for result in results:
        print(f"final turns of {result.pairing}:")
        for row in result.turns[result.turns["turn"] == args.turns].head(8).itertuples():
            print(f"  run {row.run:>2} ({row.speaker}): {one_line(row.text, 100)}")
    if figure is None:
        name = f"{args.prompt} {' '.join(r.pairing for r in results)}"
        figure = exports_dir() / "figures" / f"selfchat-{slug(name, 80)}.png"
    stem, formats = figure_formats_for(figure, ())
    stem.parent.mkdir(parents=True, exist_ok=True)
    for name, frame in (("turns", turns), ("dispersion", dispersion), ("summary", summary), ("terms", terms),
                        ("clusters", clusters)):
        frame.to_csv(stem.parent / f"{stem.name}.{name}.csv", index=False)
    paths = export_figure(selfchat_figure(results), stem, {
        "experiment": "self-conversation", "prompt": args.prompt, "pairings": [r.pairing for r in results],
        "turns": args.turns, "runs": args.runs, "seed": args.seed, "config": results[0].config,
        "run_ids": sorted(turns["run_id"].unique().tolist()), "families": [r.family_note for r in results],
    }, formats=formats)
    print("wrote " + ", ".join(str(p) for p in paths) + f" and {stem.name}.{{turns,dispersion,summary,terms,"
          "clusters}.csv")


def _without_redundant_all(frame: Any) -> Any:
    """Rows per trait without the "all" row when there is one trait only (its row says all that "all" would)."""
    return frame[frame["trait"] != "all"] if frame["trait"].nunique() == 2 else frame
