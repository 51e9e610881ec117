"""`workbench sample` and `workbench compare`, each with --dry-run (the Sampler's estimate)."""

from __future__ import annotations

import argparse
import sys

from workbench.cli.common import (
    MODEL_HELP,
    MODELS_HELP,
    add_cost_flags,
    add_sampling_flags,
    config_fields,
    make_sampler,
    model_list,
    non_negative_float,
    one_line,
    prompt_choices,
    resolve_prompt,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sample` and `compare`."""
    p = sub.add_parser("sample", help="draw n continuations of a prompt from one model")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print samples as JSON")
    add_sampling_flags(p, n_default=8)
    add_cost_flags(p)
    p.add_argument("--max-cost", type=non_negative_float, dest="max_cost",
                   help="API models: stop before this run's cost in US dollars would pass this")
    p.add_argument("--batch", action="store_true",
                   help="API models: send the missing samples as one batch job (cheaper, slower); collect them "
                        "with `workbench batches poll`")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("compare", help="one prompt on two or more models: P(other), entropy and top answer, in "
                                       "total and in-space views")
    p.add_argument("prompt", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", required=True, help=MODELS_HELP)
    p.add_argument("--answer",
                   help="how a continuation maps to an answer: first-line, first-word, first-number, "
                        "first-3-words, full (default: a library prompt's answer space, else first-line)")
    add_sampling_flags(p, n_default=32)
    add_cost_flags(p)
    p.set_defaults(func=cmd_compare)


def cmd_sample(args: argparse.Namespace) -> None:
    """Draw (or estimate, or submit as a batch job) n samples of one prompt from one model."""
    sampler = make_sampler(args)
    prompt = resolve_prompt(args.prompt, sampler)
    options = {"seed": args.seed, "chat": args.chat, **prompt_choices(args), **config_fields(args)}
    if args.dry_run:
        print(sampler.estimate(args.model, prompt, args.n, batch=args.batch, **options).describe())
        return
    if args.batch:
        from workbench.sampler.batches import submit_batch

        job = submit_batch(sampler, args.model, prompt, args.n, **options)
        if job is None:
            print("nothing to submit: every sample is stored or already in a pending batch "
                  "(see `workbench batches list`)")
        else:
            print(f"submitted batch {job.batch_id} for {len(job.sample_indices)} samples of run {job.run_id} "
                  f"({job.status}); collect the results with `workbench batches poll --wait`")
        return
    run = sampler.sample(args.model, prompt, args.n, max_cost=args.max_cost, **options)
    redrawn = sampler.store.replaced_rows(run.run_id)
    note = (f"{len(redrawn)} damaged row{'s' if len(redrawn) != 1 else ''} of run {run.run_id} "
            f"{'were' if len(redrawn) != 1 else 'was'} drawn again: samples {', '.join(map(str, redrawn))}")
    if args.json:
        print(run.samples[["sample_index", "text", "finish_reason", "logprob"]].to_json(orient="records", indent=2))
        if redrawn:
            print(note, file=sys.stderr)
        return
    print(f"run {run.run_id}: {run.n} samples of {run.model} ({run.drawn} drawn, {run.cached} from the store)")
    if redrawn:
        print(note)
    print(f"input ({run.rendered.template}): {one_line(run.rendered.display(), 200)}")
    for row in run.samples.itertuples():
        print(f"[{row.sample_index:>3}] ({row.finish_reason:<6}) {one_line(row.text)}")


def cmd_compare(args: argparse.Namespace) -> None:
    """One prompt on two or more models: both views of each answer distribution (exact where possible, sampled
    always), warnings when most answers fall outside the answer space, and divergences (or --dry-run costs)."""
    from workbench.analysis.comparisons import compare_prompt
    from workbench.plots.distributions import (
        OTHER,
        comparison_rows,
        divergence_view,
        exact_line,
        summary_text,
    )
    from workbench.prompts import answer_extractor

    models = model_list(args)
    answer = answer_extractor(args.answer) if args.answer else None
    sampler = make_sampler(args)
    prompt = resolve_prompt(args.prompt, sampler)
    options = {"seed": args.seed, "chat": args.chat, **prompt_choices(args), **config_fields(args)}
    if args.dry_run:
        for model in models:
            print(sampler.estimate(model, prompt, args.n, **options).describe())
        return
    report = compare_prompt(sampler, models, prompt, args.n, answer=answer, **options)
    space = getattr(getattr(prompt, "spec", None), "answer_space", None)
    if args.answer or space is None:
        answer_name = args.answer or "first-line"
    else:
        answer_name = (f"the prompt's answer space ({space.normaliser}; {len(space.values())} answers, anything else "
                       f"counts as {OTHER})")
    print(f"{', '.join(models)}: {report.family_note}")
    print(f"answer = {answer_name}; entropy in bits over answers")
    print(summary_text(comparison_rows(report)))
    for dist in report.distributions:
        if dist.method == "exact":
            print(exact_line(dist))
    divergence, made = divergence_view(report.divergence)
    print(f"divergence between models (on the sampled answers, n={args.n} each; permutation test):")
    print(divergence.to_string(index=False))
    print("\n".join("  " + line for line in made))
    print("runs: " + ", ".join(f"{r.model}={r.run_id}" for r in report.runs))
