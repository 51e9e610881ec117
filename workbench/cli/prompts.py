"""`workbench prompts list|show|validate`: the prompt library."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.common import add_choice_flags, make_sampler, one_line, prompt_choices
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `prompts list`, `prompts show` and `prompts validate`."""
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
    add_choice_flags(p)
    p.set_defaults(func=cmd_prompts_show)
    p = prompts.add_parser("validate", help="check collections; reports every problem and exits 2 if any")
    p.add_argument("paths", nargs="*", help="files or folders (default: prompts/ and $WORKBENCH_PROMPTS)")
    p.set_defaults(func=cmd_prompts_validate)


def cmd_prompts_list(args: argparse.Namespace) -> None:
    """One line per matching library prompt: its address, kind, answers, variants and description."""
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
        print(f"{prompt.ref}  ({spec.kind}){detail}  {one_line(spec.description, 70) if spec.description else ''}")
    print(f"{len(found)} prompts")


def cmd_prompts_show(args: argparse.Namespace) -> None:
    """A library prompt filled in (with --model: exactly what that model receives) and its schema fields."""
    from workbench.prompts import fill, load_library

    library = load_library()
    prompt = library.get(args.ref)
    choices = prompt_choices(args)
    spec = prompt.spec
    print(f"{prompt.ref} ({spec.kind}) from {prompt.path}")
    if spec.description:
        print(spec.description)
    if args.model:
        # The Sampler renders: it supplies the model's chat template where the registry entry has one.
        with make_sampler() as sampler:
            rendered = sampler.render(prompt, args.model, **choices)
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
    """Check collections; print every problem to stderr and fail with their count."""
    from workbench.prompts import validate_paths

    count, problems = validate_paths(args.paths or None)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise WorkbenchError(f"{len(problems)} problem(s) found; fix them and run `workbench prompts validate` again")
    print(f"ok: {count} prompts valid")
