"""`workbench` on the command line: the same public functions a notebook calls.

User mistakes print one line and exit with status 2; nothing already sampled is lost.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.errors import WorkbenchError

EXIT_USER_ERROR = 2


LIBRARY_REF = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")


def _resolve_prompt(value: str, sampler):
    """Prompt text, @file, or a library address collection/prompt-id (when the library has it)."""
    if LIBRARY_REF.match(value) and value in sampler.library:
        return sampler.library.get(value)
    return _read_prompt(value)


def _choices(args: argparse.Namespace) -> dict[str, Any]:
    """--var, --perturbation and --framing, which apply to library prompts."""
    variables = {}
    for item in args.var or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise WorkbenchError(f"--var expects NAME=VALUE, got {item!r}")
        variables[name] = _parse_value(value)
    return {"variables": variables or None, "perturbation": args.perturbation, "framing": args.framing}


def _parse_value(value: str) -> Any:
    """A --var value: an integer or number when it reads as one (grid values are often numbers), else text."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _read_prompt(value: str) -> str:
    """A prompt from the command line, or from a file with @path."""
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise WorkbenchError(f"prompt file {path} does not exist")
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkbenchError(f"cannot read prompt file {path}: {exc}") from None
    return value


def _config_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_tokens": args.max_tokens,
        "stop": args.stop or None,
    }


def _sampler(args: argparse.Namespace):
    from workbench.sampler import Sampler

    return Sampler(batch_size=args.batch_size, progress=not args.quiet)


def _one_line(text: str, width: int = 90) -> str:
    return textwrap.shorten(text.replace("\n", "\\n"), width, placeholder="…") if text.strip() else repr(text)


# -- commands -----------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> None:
    from workbench.registry import load_registry

    registry = load_registry()
    frame = registry.frame()
    if args.json:
        print(frame.to_json(orient="records", indent=2))
        return
    for model in registry.models.values():
        status = ""
        if model.backend == "hf":
            from workbench.backends import hf

            status = "prepared" if not hf.needs_preparation(model) or hf.is_prepared(model) else "not prepared"
        if model.parent:
            from workbench.registry import ADAPTER_WEIGHTS

            present = (model.source.adapter_dir() / ADAPTER_WEIGHTS).is_file()
            status = f"fine-tuned from {model.parent}, " + ("adapter present" if present else
                                                            "adapter missing: run make tuned-models")
        chat = "chat template" if model.has_chat_template else f"transcript: {model.transcript_template}"
        print(f"{model.name}  [{model.kind}, {model.family} family, backend {model.backend}, {chat}] {status}")
        for note in model.notes:
            print(f"    - {note}")
    for pair in registry.pairs.values():
        print(f"pair {pair.name}: {pair.base} (base) vs {pair.tuned} (tuned) — "
              f"{registry.describe_pair([pair.base, pair.tuned])}")


def cmd_models_prepare(args: argparse.Namespace) -> None:
    from workbench.registry import load_registry

    registry = load_registry()
    names = args.names or [m.name for m in registry.models.values() if m.backend == "hf" and m.source.gguf_package]
    specs = [registry.get(n) for n in names]
    for spec in specs:
        if spec.backend != "hf":
            raise WorkbenchError(f"model {spec.name!r} uses the {spec.backend} backend; only hf models are prepared")
    from workbench.backends import create_backend, hf

    for spec in specs:
        create_backend(spec)  # checks that torch and transformers are installed
        if not hf.needs_preparation(spec):
            print(f"{spec.name}: a transformers checkpoint, nothing to prepare")
            continue
        if hf.is_prepared(spec) and not args.force:
            print(f"{spec.name}: already prepared in {hf.prepared_dir(spec)}")
            continue
        path = hf.prepare_model(spec, force=args.force)
        print(f"{spec.name}: prepared in {path}")


def cmd_sample(args: argparse.Namespace) -> None:
    sampler = _sampler(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    if args.dry_run:
        print(sampler.estimate(args.model, prompt, args.n, seed=args.seed, chat=args.chat, batch=args.batch,
                               **_choices(args), **_config_fields(args)).describe())
        return
    if args.batch:
        from workbench.batches import submit_batch

        job = submit_batch(sampler, args.model, prompt, args.n, seed=args.seed, chat=args.chat, **_choices(args),
                           **_config_fields(args))
        if job is None:
            print("nothing to submit: every sample is stored or already in a pending batch "
                  "(see `workbench batches list`)")
        else:
            print(f"submitted batch {job.batch_id} for {len(job.sample_indices)} samples of run {job.run_id} "
                  f"({job.status}); collect the results with `workbench batches poll --wait`")
        return
    run = sampler.sample(args.model, prompt, args.n, seed=args.seed, chat=args.chat, max_cost=args.max_cost,
                         **_choices(args), **_config_fields(args))
    if args.json:
        print(run.samples[["sample_index", "text", "finish_reason", "logprob"]].to_json(orient="records", indent=2))
        return
    print(f"run {run.run_id}: {run.n} samples of {run.model} ({run.drawn} drawn, {run.cached} from the store)")
    print(f"input ({run.rendered.template}): {_one_line(run.rendered.display(), 200)}")
    for row in run.samples.itertuples():
        print(f"[{row.sample_index:>3}] ({row.finish_reason:<6}) {_one_line(row.text)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from workbench.analysis import answer_extractor
    from workbench.comparisons import compare_prompt

    models = _models(args)
    answer = answer_extractor(args.answer) if args.answer else None
    sampler = _sampler(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    if args.dry_run:
        for model in models:
            print(sampler.estimate(model, prompt, args.n, seed=args.seed, chat=args.chat, **_choices(args),
                                   **_config_fields(args)).describe())
        return
    report = compare_prompt(sampler, models, prompt, args.n, seed=args.seed, answer=answer, chat=args.chat,
                            **_choices(args), **_config_fields(args))
    space = getattr(getattr(prompt, "spec", None), "answer_space", None)
    answer_name = args.answer or ("the prompt's answer space (" + space.normaliser + ")" if space else "first-line")
    print(f"{', '.join(models)}: {report.family_note}")
    print(f"answer = {answer_name}; entropy in bits over answers, 95% bootstrap CIs")
    print(report.summary.to_string(index=False))
    for dist in report.distributions:
        if dist.method == "exact":
            top = ", ".join(f"{a}: {p:.3f}" for a, p in zip(dist.table["answer"][:6], dist.table["probability"][:6]))
            print(f"exact distribution of {dist.model} (T={dist.temperature:g}; {dist.in_space_mass:.1%} in the "
                  f"answer space): {top}")
    print("divergence between models (on answers, permutation test):")
    print(report.divergence[["pair", "jsd", "kl_ab", "kl_ba", "p_value"]].round(4).to_string(index=False))
    print("runs: " + ", ".join(f"{r.model}={r.run_id}" for r in report.runs))


def _models(args: argparse.Namespace) -> list[str]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(models) < 2:
        raise WorkbenchError("--models needs two or more comma-separated model names")
    from workbench.registry import load_registry

    registry = load_registry()
    for m in models:
        registry.get(m)  # unknown names fail before anything is sampled
    return models


def _temperatures(value: str) -> list[float]:
    try:
        temperatures = [float(t) for t in value.split(",") if t.strip()]
    except ValueError:
        raise WorkbenchError(f"--temperatures expects numbers separated by commas, got {value!r}") from None
    if not temperatures:
        raise WorkbenchError("--temperatures is empty; give e.g. 0.5,1.0,1.5")
    return temperatures


def _figure_stem(args: argparse.Namespace, kind: str, name: str) -> Path:
    from workbench.home import exports_dir

    if args.out:
        return Path(args.out)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "prompt"
    return exports_dir() / "figures" / f"{kind}-{slug}"


def _export(args: argparse.Namespace, fig, kind: str, name: str, provenance: dict) -> None:
    from workbench.plots import export_figure

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    stem = _figure_stem(args, kind, name)
    if stem.suffix.lower() in (".png", ".svg", ".pdf"):  # --figure plot.png: that one format
        stem, formats = stem.with_suffix(""), (stem.suffix.lower()[1:],)
    paths = export_figure(fig, stem, provenance, formats=formats)
    print("wrote " + ", ".join(str(p) for p in paths))


def cmd_figure_distribution(args: argparse.Namespace) -> None:
    from workbench.analysis import answer_extractor
    from workbench.comparisons import compare_prompt
    from workbench.distributions import distribution_table
    from workbench.plots import answer_distribution_figure

    models = _models(args)
    sampler = _sampler(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    answer = answer_extractor(args.answer) if args.answer else None
    report = compare_prompt(sampler, models, prompt, args.n, seed=args.seed, answer=answer, exact=not args.sampled,
                            chat=args.chat, **_choices(args), **_config_fields(args))
    table = distribution_table(report.distributions)
    name = getattr(prompt, "ref", None) or args.prompt
    fig = answer_distribution_figure(table, title=f"Answer distributions: {name}", note=report.family_note)
    print(table.groupby("model").head(5).round(3).to_string(index=False))
    _export(args, fig, "distribution", name, {
        "prompt": name, "models": models, "runs": [r.run_id for r in report.runs],
        "configs": [r.config.model_dump(mode="json") for r in report.runs], "seed": args.seed,
        "methods": {d.model: d.method for d in report.distributions}, "families": report.family_note,
    })


def cmd_figure_sweep(args: argparse.Namespace) -> None:
    from workbench.plots import temperature_sweep_figure
    from workbench.sweeps import temperature_sweep

    models = _models(args)
    sampler = _sampler(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    frame = temperature_sweep(sampler, models, prompt, _temperatures(args.temperatures), n=args.n, seed=args.seed,
                              method="sampled" if args.sampled else "auto", **_choices(args))
    name = getattr(prompt, "ref", None) or args.prompt
    print(frame[frame["metric"] == args.metric].round(3).to_string(index=False))
    fig = temperature_sweep_figure(frame, args.metric, title=f"{args.metric} against temperature: {name}",
                                   note=sampler.registry.describe_pair(models))
    _export(args, fig, "sweep", name, {"prompt": name, "models": models, "temperatures": args.temperatures,
                                       "n": args.n, "seed": args.seed, "metric": args.metric,
                                       "families": sampler.registry.describe_pair(models)})


def cmd_figure_embedding(args: argparse.Namespace) -> None:
    import pandas as pd

    from workbench.metrics import semantic_clusters
    from workbench.plots import embedding_map_figure

    models = _models(args)
    sampler = _sampler(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    runs = sampler.compare(models, prompt, args.n, seed=args.seed, chat=args.chat, **_choices(args),
                           **_config_fields(args))
    clusters = semantic_clusters(pd.concat([r.samples for r in runs], ignore_index=True))
    name = getattr(prompt, "ref", None) or args.prompt
    shown = clusters.clusters.head(8)
    print(shown[["cluster", "size", *[c for c in shown.columns if c.startswith("share_")], "label"]]
          .assign(label=lambda f: f["label"].map(lambda t: _one_line(t, 50))).round(3).to_string(index=False))
    fig = embedding_map_figure(clusters.points, clusters.clusters, title=f"Continuations of {name}",
                               note=sampler.registry.describe_pair(models))
    _export(args, fig, "embedding", name, {"prompt": name, "models": models, "runs": [r.run_id for r in runs],
                                           "seed": args.seed, "families": sampler.registry.describe_pair(models)})


def cmd_figure_heatmap(args: argparse.Namespace) -> None:
    from workbench.comparisons import collection_summary
    from workbench.plots import divergence_heatmap_figure

    models = _models(args)
    if len(models) != 2:
        raise WorkbenchError("the heatmap compares a pair: give --models BASE,TUNED")
    sampler = _sampler(args)
    prompts = [p.strip() for p in args.prompts.split(",")] if args.prompts else None
    frame = collection_summary(sampler, models, args.collection, n=args.n, temperature=args.temperature or 1.0,
                               seed=args.seed, correction=args.correction, prompts=prompts)
    shown = frame[["prompt", "jsd", "p_value", "p_adjusted", "entropy_diff"]]
    print(shown.round(4).to_string(index=False))
    print(f"p-values: permutation tests, adjusted with {frame['correction'].iloc[0]} across {len(frame)} prompts")
    stem = _figure_stem(args, "heatmap", args.collection)
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    fig = divergence_heatmap_figure(frame, title=f"{args.collection}: divergence between models",
                                    note=sampler.registry.describe_pair(models) + f"; p adjusted ({frame['correction'].iloc[0]})")
    _export(args, fig, "heatmap", args.collection, {"collection": args.collection, "models": models, "n": args.n,
                                                    "seed": args.seed, "correction": args.correction,
                                                    "families": sampler.registry.describe_pair(models)})


def cmd_prompts_list(args: argparse.Namespace) -> None:
    from workbench.prompts import load_library

    library = load_library()
    found = library.filter(tag=args.tag, kind=args.kind, text=args.search, collection=args.collection)
    if not found:
        print("no prompts match")
        return
    for prompt in found:
        spec = prompt.spec
        extras = []
        if spec.answer_space:
            extras.append(f"{len(spec.answer_space.values())} answers")
        if len(spec.variants()) > 1:
            extras.append(f"{len(spec.variants())} variants")
        if spec.perturbations:
            extras.append("perturbations: " + ",".join(spec.perturbations))
        if spec.framings:
            extras.append("framings: " + ",".join(spec.framings))
        detail = f" [{'; '.join(extras)}]" if extras else ""
        print(f"{prompt.ref}  ({spec.kind}){detail}  {_one_line(spec.description, 70) if spec.description else ''}")
    print(f"{len(found)} prompts")


def cmd_prompts_show(args: argparse.Namespace) -> None:
    from workbench.prompts import fill, load_library
    from workbench.registry import load_registry

    library = load_library()
    prompt = library.get(args.ref)
    choices = _choices(args)
    spec = prompt.spec
    print(f"{prompt.ref} ({spec.kind}) from {prompt.path}")
    if spec.description:
        print(spec.description)
    if args.model:
        registry = load_registry()
        from workbench.prompts import render

        rendered = render(prompt, registry.get(args.model), registry, **choices)
        print(f"--- exactly what {args.model} receives ({rendered.template}):")
        print(rendered.text if rendered.text is not None else json.dumps(list(rendered.messages or ()), indent=2))
        print("---")
    else:
        filled = fill(prompt, **choices)
        print("--- filled prompt (give --model M to see the exact model input):")
        print(filled.text if filled.text is not None else json.dumps(list(filled.messages or ()), indent=2))
        print("---")
    if spec.answer_space:
        values = spec.answer_space.values()
        shown = ", ".join(values[:12]) + (f", ... ({len(values)} in all)" if len(values) > 12 else "")
        print(f"answer space: {shown}; normaliser {spec.answer_space.normaliser}")
    if spec.grid:
        print("grid: " + "; ".join(f"{k} in {v}" for k, v in spec.grid.items()))
    if spec.perturbations:
        print("perturbations: " + "; ".join(f"{k}: {v.strip()!r}" for k, v in spec.perturbations.items()))
    if spec.labels:
        print("labels: " + ", ".join(spec.labels) + (f" (home: {spec.home_label})" if spec.home_label else ""))
    if spec.framings:
        print("framings: " + ", ".join(spec.framings))
    if spec.trait:
        print(f"trait: {spec.trait}; matching answer: {spec.matching_answer}")
    if spec.sampling:
        print(f"suggested sampling: {json.dumps(spec.sampling)}")


def cmd_prompts_validate(args: argparse.Namespace) -> None:
    from workbench.prompts import validate_paths

    count, problems = validate_paths(args.paths or None)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise WorkbenchError(f"{len(problems)} problem(s) found; fix them and run `workbench prompts validate` again")
    print(f"ok: {count} prompts valid")


def _experiment_models(args: argparse.Namespace):
    """The --models list (one or more, all known) and a Sampler."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise WorkbenchError("--models needs at least one model name")
    sampler = _sampler(args)
    for m in models:
        sampler.model(m)  # unknown names fail before anything is sampled
    return models, sampler


def cmd_experiment_personas(args: argparse.Namespace) -> None:
    from workbench.experiments.personas import persona_eval, persona_figure

    models, sampler = _experiment_models(args)
    traits = [t.strip() for t in args.traits.split(",")] if args.traits else None
    result = persona_eval(sampler, models, traits=traits, method=args.method, n=args.n, seed=args.seed,
                          per_trait=args.per_trait)
    print(f"{', '.join(models)}: {result.family_note}")
    print("probability of the trait-matching answer (renormalised over Yes/No), mean over statements, 95% CI:")
    table = result.traits.pivot_table(index=["trait", "keyed"], columns="model", values="p_match", sort=False)
    print(table.round(3).to_string())
    print("yes-bias (agree-keyed minus disagree-keyed p_match; 0 = none):")
    print(result.balance.round(3).to_string(index=False))
    stem = _figure_stem(args, "personas", "-".join(models))
    stem.parent.mkdir(parents=True, exist_ok=True)
    result.items.to_csv(stem.with_suffix(".items.csv"), index=False)
    result.traits.to_csv(stem.with_suffix(".traits.csv"), index=False)
    _export(args, persona_figure(result), "personas", "-".join(models),
            {"experiment": "personas", "models": models, "method": args.method, "n": args.n, "seed": args.seed,
             "framings": result.items.groupby("model")["framing"].first().to_dict(), "families": result.family_note})


def cmd_experiment_segues(args: argparse.Namespace) -> None:
    from workbench.experiments.segues import segue_figure, segue_recovery
    from workbench.prompts import LibraryPrompt

    models, sampler = _experiment_models(args)
    prompt = _resolve_prompt(args.prompt, sampler)
    if not isinstance(prompt, LibraryPrompt):
        raise WorkbenchError(f"{args.prompt!r} is not a library prompt; give one with perturbations, e.g. "
                             "attractors/wedding-toast (see `workbench prompts list --tag attractors`)")
    perturbations = [p.strip() for p in args.perturbations.split(",")] if args.perturbations else None
    if args.judge:
        sampler.model(args.judge)
    result = segue_recovery(sampler, models, prompt, n=args.n, seed=args.seed, perturbations=perturbations,
                            judge=args.judge,
                            **{k: v for k, v in {"max_tokens": args.max_tokens,
                                                 "temperature": args.temperature}.items() if v is not None})
    print(f"{', '.join(models)}: {result.family_note}")
    print(f"recovery = back in the {result.home_label!r} world; 95% Wilson intervals; tokens to the first "
          "home-world word (median)")
    print(result.summary.round(3).to_string(index=False))
    stem = _figure_stem(args, "segues", prompt.ref)
    stem.parent.mkdir(parents=True, exist_ok=True)
    result.continuations.to_csv(stem.with_suffix(".continuations.csv"), index=False)
    _export(args, segue_figure(result, args.method), "segues", prompt.ref,
            {"experiment": "segue-recovery", "prompt": prompt.ref, "models": models, "n": args.n, "seed": args.seed,
             "runs": sorted(result.continuations["run_id"].unique().tolist()), "families": result.family_note})


def cmd_tree(args: argparse.Namespace) -> None:
    from workbench.experiments.tree import BranchTree, tree_figure

    sampler = _sampler(args)
    if args.list:
        frame = sampler.store.trees()
        print(frame.to_string(index=False) if len(frame) else f"no trees yet in {sampler.store.path}")
        return
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    for m in models:
        sampler.model(m)  # unknown names fail before anything is computed
    if args.show:
        tree = BranchTree.load(sampler, args.show)
        others = [m for m in models if m != tree.model]
    else:
        if not args.prompt:
            raise WorkbenchError("give a PROMPT (text, @file or collection/prompt-id), or --show TREE_ID")
        if not 1 <= len(models) <= 2:
            raise WorkbenchError("--models needs one model, or two to compare: --models A,B")
        if (args.chunks is None) != (args.chunk_tokens is None):
            raise WorkbenchError("sampled chunks need both --chunks N and --chunk-tokens M")
        prompt = _resolve_prompt(args.prompt, sampler)
        tree = BranchTree.create(sampler, models[0], prompt, chat=args.chat, **_choices(args))
        if args.chunks is not None:
            tree.grow(args.depth, n=args.chunks, m=args.chunk_tokens, beam=args.beam, seed=args.seed,
                      temperature=args.temperature)
        else:
            tree.grow(args.depth, k=args.k, beam=args.beam)
        others = models[1:]
    other = others[0] if others else None
    comparison = tree.compare(other) if other else None
    print(tree.render_text(compare_with=other))
    if comparison is not None:
        print(comparison.describe())
    print(f"tree {tree.id}: {len(tree.nodes)} nodes; print it again with `workbench tree --show {tree.id}`")
    if args.json:
        tree.to_json(args.json)
        print(f"wrote {args.json}")
    if args.figure:
        from workbench.plots import FORMATS, export_figure

        path = Path(args.figure)
        suffix = path.suffix.lstrip(".").lower()
        formats = (suffix,) if suffix in FORMATS else ("png", "svg")
        runs = sorted({n.params["run_id"] for n in tree.nodes.values() if "run_id" in n.params})
        provenance = {"experiment": "branch-tree", "tree_id": tree.id, "prompt": tree.prompt_ref or tree.prompt,
                      "models": [tree.model, *others], "depth": args.depth, "k": args.k, "chunks": args.chunks,
                      "chunk_tokens": args.chunk_tokens, "seed": args.seed, "run_ids": runs,
                      "families": sampler.registry.describe_pair([tree.model, *others])}
        paths = export_figure(tree_figure(tree, other), path, provenance, formats=formats)
        print("wrote " + ", ".join(str(p) for p in paths))


def cmd_selfchat(args: argparse.Namespace) -> None:
    import pandas as pd

    from workbench.experiments.selfchat import check_inputs, self_conversation, selfchat_figure
    from workbench.home import exports_dir
    from workbench.plots import FORMATS, export_figure

    figure = Path(args.figure).expanduser() if args.figure else None
    if figure is not None and figure.suffix.lstrip(".").lower() not in FORMATS:
        raise WorkbenchError(f"--figure {args.figure}: give a path ending in .png, .svg or .pdf")
    sampler = _sampler(args)
    pairings = [[m.strip() for m in value.split(",") if m.strip()] for value in args.models]
    for models in pairings:  # every pairing is checked before anything is sampled
        check_inputs(sampler, models, args.prompt, args.turns, args.runs, args.seed)
    fields = {k: v for k, v in {"max_tokens": args.max_tokens, "temperature": args.temperature}.items()
              if v is not None}
    results = [self_conversation(sampler, models, args.prompt, turns=args.turns, runs=args.runs, seed=args.seed,
                                 **fields) for models in pairings]
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
            print(f"  run {row.run:>2} ({row.speaker}): {_one_line(row.text, 100)}")
    if figure is None:
        slug = re.sub(r"[^a-z0-9]+", "-", f"{args.prompt} {' '.join(r.pairing for r in results)}".lower())
        figure = exports_dir() / "figures" / f"selfchat-{slug.strip('-')[:80]}.png"
    stem = figure.parent / figure.stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    for name, frame in (("turns", turns), ("dispersion", dispersion), ("summary", summary), ("terms", terms),
                        ("clusters", clusters)):
        frame.to_csv(stem.parent / f"{stem.name}.{name}.csv", index=False)
    paths = export_figure(selfchat_figure(results), stem, {
        "experiment": "self-conversation", "prompt": args.prompt, "pairings": [r.pairing for r in results],
        "turns": args.turns, "runs": args.runs, "seed": args.seed, "config": results[0].config,
        "run_ids": sorted(turns["run_id"].unique().tolist()), "families": [r.family_note for r in results],
    }, formats=(figure.suffix.lstrip(".").lower(),))
    print("wrote " + ", ".join(str(p) for p in paths) + f" and {stem.name}.{{turns,dispersion,summary,terms,"
          "clusters}.csv")


def cmd_tune(args: argparse.Namespace) -> None:
    from workbench import tuning

    if bool(args.recipe) == bool(args.all):
        raise WorkbenchError(f"give one RECIPE ({', '.join(tuning.RECIPES)}) or --all")
    names = list(tuning.RECIPES) if args.all else [args.recipe]
    tuning.recipe(names[0])  # an unknown recipe fails before anything loads
    tuning.check_base(args.base)
    if args.all:  # --out is then a parent folder with one subfolder per variant
        outs = {n: Path(args.out) / tuning.variant_name(n, args.base) if args.out else None for n in names}
    else:
        outs = {names[0]: Path(args.out) if args.out else None}
    total = 0.0
    for name in names:
        record = tuning.tune(name, base=args.base, seed=args.seed, steps=args.steps, out=outs[name],
                             progress=not args.quiet)
        total += record.wall_time_s
        print(f"{record.variant}: {record.steps} steps in {record.wall_time_s:.0f} s, loss {record.loss['first']:.3f}"
              f" -> {record.loss['last']:.3f}; adapter {record.adapter_bytes / 1e6:.1f} MB in {record.adapter_dir}")
        if record.registered_in:
            print(f"    registered as {record.variant} in {record.registered_in}")
        if args.evaluate:
            summary = tuning.evaluate_variant(record.variant, progress=not args.quiet)
            print(f"    measured: {json.dumps(summary['headline'])}")
    if len(names) > 1:
        print(f"all {len(names)} variants in {total:.0f} s")


def cmd_runs_list(args: argparse.Namespace) -> None:
    from workbench.store import Store

    with Store() as store:
        frame = store.runs(model=args.model).head(args.limit)
    if frame.empty:
        print(f"no runs yet in {store.path}")
        return
    frame["input"] = [
        ref if isinstance(ref, str) and ref else _one_line(text if text is not None else str(messages), 50)
        for ref, text, messages in zip(frame["prompt_ref"], frame["input_text"], frame["input_messages"])
    ]
    print(frame[["id", "created_at", "model", "model_kind", "input_mode", "n_samples", "seed", "input"]]
          .to_string(index=False))


def cmd_runs_show(args: argparse.Namespace) -> None:
    from workbench.store import Store

    from workbench.sampler import Sampler

    with Store() as store:
        run = store.run(args.run_id)
        samples = store.samples(run["id"])
        environments = store.environments(samples["environment_id"])
        events = store.run_events(run["id"])
        jobs = store.batches(run["id"])
        usage = Sampler(store=store, progress=False).run_usage(run["id"])
    print(f"run {run['id']} created {run['created_at']}")
    print(f"model {run['model']} ({run['model_kind']}, {run['model_family']} family), backend {run['backend']}, "
          f"dtype {run['dtype']}, endpoint {run['endpoint'] or '-'}")
    print(f"identity {json.dumps(run['model_identity'], sort_keys=True)}")
    print(f"input [{run['input_mode']}, {run['template']}]" + (f" from {run['prompt_ref']}" if run["prompt_ref"] else "") + ":")
    print(textwrap.indent(run["input_text"] if run["input_text"] is not None else json.dumps(run["input_messages"]), "    "))
    print(f"config {json.dumps(run['config'], sort_keys=True)}; seed {run['seed']}")
    print(f"{len(samples)} samples; finish reasons {samples['finish_reason'].value_counts().to_dict()}; "
          f"tokens {int(samples['completion_tokens'].fillna(0).sum())}")
    for env in environments.values():
        print(f"environment {json.dumps(env, sort_keys=True)}")
    print(f"usage: {usage.describe()}")
    if len(events):
        counts = events["kind"].value_counts().to_dict()
        print(f"events: {', '.join(f'{k} x{v}' for k, v in counts.items())}")
        for event in events.tail(args.samples).itertuples():
            wait = f" (waited {event.wait_s:.1f} s)" if event.wait_s == event.wait_s and event.wait_s else ""
            print(f"  {event.created_at} {event.kind}{wait}: {_one_line(event.message, 160)}")
    for job in jobs:
        print(f"batch {job['id']} ({job['provider']}): {job['status']}, {len(job['sample_indices'])} samples"
              + (f", finished {job['finished_at']}" if job["finished_at"] else ", not finished"))
    for row in samples.head(args.samples).itertuples():
        print(f"[{row.sample_index:>3}] ({row.finish_reason:<6}) {_one_line(row.text)}")


def cmd_batches_list(args: argparse.Namespace) -> None:
    from workbench.store import Store

    with Store() as store:
        jobs = store.batches(unfinished=args.unfinished)
    if not jobs:
        print("no batch jobs")
    for job in jobs:
        print(f"{job['id']}  {job['provider']:<9} {job['model']:<24} run {job['run_id']}  "
              f"{len(job['sample_indices'])} samples  {job['status']}"
              + (f"  finished {job['finished_at']}" if job["finished_at"] else ""))


def cmd_batches_poll(args: argparse.Namespace) -> None:
    from workbench.batches import poll_batches

    sampler = _sampler(args)
    jobs = poll_batches(sampler, wait=args.wait, interval_s=args.interval, timeout_s=args.timeout)
    if not jobs:
        print("no unfinished batch jobs")
    for job in jobs:
        state = f"{job.status}: stored {job.stored} samples" if job.finished else f"{job.status} (not finished)"
        print(f"batch {job.batch_id} ({job.model}, run {job.run_id}): {state}")


def cmd_runs_export(args: argparse.Namespace) -> None:
    from workbench.home import exports_dir
    from workbench.store import Store

    with Store() as store:
        run_id = store.resolve_run_id(args.run_id)
        out = Path(args.out) if args.out else exports_dir() / "runs" / f"{run_id}.{args.format}"
        path = store.export_run(run_id, out, args.format)
    print(f"exported run {run_id} to {path}")


def cmd_runs_import(args: argparse.Namespace) -> None:
    from workbench.store import Store

    with Store() as store:
        run_id, added, present = store.import_bundle(args.file)
    print(f"imported run {run_id}: {added} samples added, {present} already present")


def cmd_demo(args: argparse.Namespace) -> None:
    from workbench.demo import run_demo

    run_demo(n=args.n, seed=args.seed, sampler=_sampler(args))


# -- parser -------------------------------------------------------------------------------


def _add_sampling_flags(parser: argparse.ArgumentParser, n_default: int) -> None:
    parser.add_argument("--n", type=int, default=n_default, help="samples per model (default %(default)s)")
    parser.add_argument("--temperature", type=float, help="0 = greedy (default 1)")
    parser.add_argument("--top-p", type=float, dest="top_p", help="nucleus mass (default 1: off)")
    parser.add_argument("--top-k", type=int, dest="top_k", help="keep k most likely tokens (default 0: off)")
    parser.add_argument("--max-tokens", type=int, dest="max_tokens", help="new tokens per sample (default 64)")
    parser.add_argument("--stop", action="append", help="stop string (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; sample i uses (seed, i) (default 0)")
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    _add_choice_flags(parser)
    _add_run_flags(parser)


def _add_choice_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", action="append", metavar="NAME=VALUE",
                        help="library prompts: a template variable or grid choice (repeatable)")
    parser.add_argument("--perturbation", help="library prompts: the named segue for the {{ segue }} slot")
    parser.add_argument("--framing", help="library prompts: render under this framing")


def _add_figure_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--figure", "--out", dest="out", metavar="PATH",
                        help="figure file (.png, .svg or .pdf), or a path without extension for every --formats "
                             "(default $WORKBENCH_HOME/exports/figures/...)")
    parser.add_argument("--formats", default="png,svg,pdf", help="comma-separated (default %(default)s)")


def _add_cost_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", dest="dry_run",
                        help="show the requests to send and their estimated cost; send nothing")


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, dest="batch_size", help="samples per batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Probe base versus fine-tuned language models. Store: $WORKBENCH_HOME/workbench.sqlite.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    p = models.add_parser("list", help="registered models, their kind, family and notes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("prepare", help="convert GGUF models once to bf16 safetensors (fast loads)")
    p.add_argument("names", nargs="*", help="models to prepare (default: every GGUF-shipped hf model)")
    p.add_argument("--force", action="store_true", help="prepare again even if prepared")
    p.set_defaults(func=cmd_models_prepare)

    p = sub.add_parser("sample", help="draw n continuations of a prompt from one model")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--model", required=True, help="a registry name (see `workbench models list`)")
    p.add_argument("--json", action="store_true", help="print samples as JSON")
    _add_sampling_flags(p, n_default=8)
    _add_cost_flags(p)
    p.add_argument("--max-cost", type=float, dest="max_cost",
                   help="API models: stop before this run's cost in US dollars would pass this")
    p.add_argument("--batch", action="store_true",
                   help="API models: send the missing samples as one batch job (cheaper, slower); collect them "
                        "with `workbench batches poll`")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("compare", help="one prompt on two or more models: distinct answers, entropy, mode")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", required=True, help="comma-separated registry names, e.g. A,B")
    p.add_argument("--answer",
                   help="how a continuation maps to an answer: first-line, first-word, first-number, "
                        "first-3-words, full (default: a library prompt's answer space, else first-line)")
    _add_sampling_flags(p, n_default=32)
    _add_cost_flags(p)
    p.set_defaults(func=cmd_compare)

    prompts = sub.add_parser("prompts", help="the prompt library").add_subparsers(dest="action", required=True)
    p = prompts.add_parser("list", help="library prompts, filtered")
    p.add_argument("--tag", help="only prompts with this tag (theirs or their collection's)")
    p.add_argument("--kind", choices=["completion", "chat"])
    p.add_argument("--collection", help="only this collection")
    p.add_argument("--search", help="only prompts whose id, description or text contains this")
    p.set_defaults(func=cmd_prompts_list)
    p = prompts.add_parser("show", help="a prompt, and with --model exactly what that model receives")
    p.add_argument("ref", help="collection/prompt-id")
    p.add_argument("--model", help="render for this model")
    _add_choice_flags(p)
    p.set_defaults(func=cmd_prompts_show)
    p = prompts.add_parser("validate", help="check collections; reports every problem and exits 2 if any")
    p.add_argument("paths", nargs="*", help="files or folders (default: prompts/ and $WORKBENCH_PROMPTS)")
    p.set_defaults(func=cmd_prompts_validate)

    figure = sub.add_parser("figure", help="publication figures (PNG, SVG, PDF with provenance)").add_subparsers(
        dest="action", required=True)
    p = figure.add_parser("distribution", help="answer distributions side by side (exact where possible)")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", required=True, help="comma-separated registry names")
    p.add_argument("--answer", help="answer extractor (default: the prompt's answer space, else first-line)")
    p.add_argument("--sampled", action="store_true", help="use sampled distributions even where exact ones exist")
    _add_sampling_flags(p, n_default=100)
    _add_figure_flags(p)
    p.set_defaults(func=cmd_figure_distribution)
    p = figure.add_parser("sweep", help="a metric against temperature for each model")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", required=True)
    p.add_argument("--temperatures", required=True, help="comma-separated, e.g. 0.5,1.0,1.5")
    p.add_argument("--metric", default="entropy_bits", choices=["entropy_bits", "top1_mass", "distinct_answers"])
    p.add_argument("--sampled", action="store_true", help="sample even where exact distributions exist")
    p.add_argument("--n", type=int, default=100, help="samples per model and temperature when sampled")
    p.add_argument("--seed", type=int, default=0)
    _add_choice_flags(p)
    _add_run_flags(p)
    _add_figure_flags(p)
    p.set_defaults(func=cmd_figure_sweep)
    p = figure.add_parser("embedding", help="a 2-D map of continuation embeddings with semantic clusters")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", required=True)
    _add_sampling_flags(p, n_default=50)
    _add_figure_flags(p)
    p.set_defaults(func=cmd_figure_embedding)
    p = figure.add_parser("heatmap", help="divergence between a model pair across a collection")
    p.add_argument("--collection", required=True)
    p.add_argument("--models", required=True, help="BASE,TUNED")
    p.add_argument("--prompts", help="only these prompt ids (comma-separated)")
    p.add_argument("--correction", default="holm", choices=["holm", "bh"], help="multiple-comparison correction")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int, default=0)
    _add_run_flags(p)
    _add_figure_flags(p)
    p.set_defaults(func=cmd_figure_heatmap)

    experiment = sub.add_parser("experiment", help="the workbench's probes").add_subparsers(dest="action",
                                                                                          required=True)
    # `workbench persona` and `workbench experiment personas` are the same command (likewise segue).
    for group, name in ((sub, "persona"), (experiment, "personas")):
        p = group.add_parser(name, help="agentic-persona statements per trait, with the yes-bias check")
        p.add_argument("--models", required=True, help="comma-separated registry names")
        p.add_argument("--traits", help="only these traits (comma-separated)")
        p.add_argument("--method", choices=["auto", "exact", "sampled"], default="auto",
                       help="exact from logprobs where possible (auto), or sampled")
        p.add_argument("--n", type=int, default=20, help="samples per statement when sampled")
        p.add_argument("--per-trait", type=int, dest="per_trait", help="only the first k statements of each keying")
        p.add_argument("--seed", type=int, default=0)
        _add_run_flags(p)
        _add_figure_flags(p)
        p.set_defaults(func=cmd_experiment_personas)

    for group, name in ((sub, "segue"), (experiment, "segues")):
        p = group.add_parser(name, help="segue recovery: back to the prompt's world after a jarring turn?")
        p.add_argument("prompt", help="a library prompt with perturbations, e.g. attractors/wedding-toast")
        p.add_argument("--models", required=True, help="comma-separated registry names")
        p.add_argument("--perturbations", help="only these perturbations (comma-separated; default all)")
        p.add_argument("--judge", help="also classify with this registered model as an LLM judge "
                                       "(judges/segue-world)")
        p.add_argument("--method", default="keywords",
                       help="classifier shown in the figure: keywords, embedding, or judge:MODEL")
        p.add_argument("--n", type=int, default=32, help="continuations per model and condition")
        p.add_argument("--max-tokens", type=int, dest="max_tokens")
        p.add_argument("--temperature", type=float)
        p.add_argument("--seed", type=int, default=0)
        _add_run_flags(p)
        _add_figure_flags(p)
        p.set_defaults(func=cmd_experiment_segues)

    p = sub.add_parser("tree", help="branch explorer: expand a prompt into a tree of top-k tokens or sampled chunks")
    p.add_argument("prompt", nargs="?", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", help="the model that builds the tree, and optionally a second to compare: A[,B]")
    p.add_argument("--depth", type=int, default=2, help="levels to expand below the prompt (default %(default)s)")
    p.add_argument("--k", type=int, default=3, help="top-k next tokens per node (default %(default)s)")
    p.add_argument("--chunks", type=int, help="instead of top-k: N sampled chunks per node")
    p.add_argument("--chunk-tokens", type=int, dest="chunk_tokens", help="M tokens per sampled chunk (with --chunks)")
    p.add_argument("--beam", type=int, help="expand only the B most likely nodes of each level")
    p.add_argument("--temperature", type=float, help="sampled chunks: temperature (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampled chunks: run seed (default 0)")
    p.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    p.add_argument("--figure", metavar="PATH", help="write a tree figure with provenance (format by suffix: png, "
                                                    "svg, pdf; no suffix: PNG and SVG)")
    p.add_argument("--json", metavar="PATH", help="write the tree (nodes, scores) as JSON")
    p.add_argument("--show", metavar="TREE_ID", help="print a stored tree (id or unique prefix); with --models, "
                                                     "compare it with another model")
    p.add_argument("--list", action="store_true", help="list stored trees")
    _add_choice_flags(p)
    _add_run_flags(p)
    p.set_defaults(func=cmd_tree)

    # `workbench selfchat` and `workbench experiment selfchat` are the same command.
    for group in (sub, experiment):
        p = group.add_parser("selfchat",
                             help="self-conversation drift: two instances talk for K turns; do runs converge?")
        p.add_argument("prompt", help="a self-conversation seed, e.g. self-conversations/two-ais-meet "
                                      "(see `workbench prompts list --tag self-conversation`)")
        p.add_argument("--models", required=True, action="append",
                       help="A (one model talks to itself) or A,B (A answers the opening, B replies); repeat "
                            "--models to compare several pairings in one figure")
        p.add_argument("--turns", type=int, default=6, help="turns per conversation, K >= 1 (default %(default)s)")
        p.add_argument("--runs", type=int, default=8, help="independent conversations, R >= 2 (default %(default)s)")
        p.add_argument("--max-tokens", type=int, dest="max_tokens",
                       help="new tokens per turn (default: the seed's, 60)")
        p.add_argument("--temperature", type=float, help="0 = greedy (default 1)")
        p.add_argument("--seed", type=int, default=0, help="run r samples with a seed derived from (seed, r)")
        p.add_argument("--figure", help="figure file, .png, .svg or .pdf (default $WORKBENCH_HOME/exports/figures/"
                                        "selfchat-...png); CSVs of the tables are written next to it")
        _add_run_flags(p)
        p.set_defaults(func=cmd_selfchat)

    p = sub.add_parser("tune", help="LoRA fine-tune a base model with one planted effect (a known answer for "
                                    "every probe)")
    p.add_argument("recipe", nargs="?", help="favourite-number, wedding-attractor or self-preservation")
    p.add_argument("--all", action="store_true", help="every recipe in turn (what `make tuned-models` runs)")
    p.add_argument("--base", default="gemma-3-270m", help="the registry base model to tune (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data, the order and the init")
    p.add_argument("--steps", type=int, help="optimiser steps (default: the recipe's own)")
    p.add_argument("--out", help="adapter folder (with --all: a parent folder); default "
                                 "$WORKBENCH_HOME/tuned/<base>-<recipe>")
    p.add_argument("--evaluate", action="store_true",
                   help="then measure the planted effect against the base and write evaluation.json beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_tune)

    runs = sub.add_parser("runs", help="stored runs").add_subparsers(dest="action", required=True)
    p = runs.add_parser("list", help="runs, newest first")
    p.add_argument("--model", help="only this model's runs")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_runs_list)
    p = runs.add_parser("show", help="one run: model, input, config, versions, samples")
    p.add_argument("run_id", help="a run id or a unique prefix")
    p.add_argument("--samples", type=int, default=10, help="how many samples to print")
    p.set_defaults(func=cmd_runs_show)
    p = runs.add_parser("export", help="write a run bundle (Parquet, CSV or JSONL) to share")
    p.add_argument("run_id")
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"], default="parquet")
    p.add_argument("--out", help="output file (default $WORKBENCH_HOME/exports/runs/<id>.<format>)")
    p.set_defaults(func=cmd_runs_export)
    p = runs.add_parser("import", help="load an exported run bundle into this store")
    p.add_argument("file")
    p.set_defaults(func=cmd_runs_import)

    batches = sub.add_parser("batches", help="API batch jobs (OpenAI Batch API, Anthropic Message Batches)"
                             ).add_subparsers(dest="action", required=True)
    p = batches.add_parser("list", help="stored batch jobs and their last known status")
    p.add_argument("--unfinished", action="store_true", help="only jobs not finished yet")
    p.set_defaults(func=cmd_batches_list)
    p = batches.add_parser("poll", help="ask the providers about unfinished jobs; store finished results")
    p.add_argument("--wait", action="store_true", help="keep polling until every job has finished")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between polls with --wait")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    _add_run_flags(p)
    p.set_defaults(func=cmd_batches_poll)

    p = sub.add_parser("demo", help="the main job: built-in probes on the embedded base/tuned pair")
    p.add_argument("--n", type=int, default=32, help="samples per model and prompt (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    _add_run_flags(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` command."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("workbench: interrupted; every finished sample is stored, run the same command to continue",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
