"""`workbench prompts list|show|validate|import`: the prompt library."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.common import add_choice_flags, make_sampler, one_line, prompt_choices
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `prompts list`, `prompts show`, `prompts validate` and `prompts import`."""
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
    p = prompts.add_parser(
        "import", help="turn a published probe set (model-written-evals JSONL, A/B JSON, CSV) into a collection",
        description="Write FOLDER/NAME.yaml: a collection that extends the shipped personas collection (its "
        "framings and defaults by reference), one item per statement or multiple-choice question, each with "
        "its source file and line. Evaluate it with WORKBENCH_PROMPTS=FOLDER workbench persona --collection NAME.")
    p.add_argument("path", help="the probe set: .jsonl, a .json array, or .csv")
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help="mwe: Anthropic model-written-evals JSONL (persona statements or multiple-choice questions); "
                   "ab: CAA-style A/B JSON; csv: one row per item (see --columns)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="folder to write NAME.yaml into (created)")
    p.add_argument("--name", help="collection name (default: the file name, lower case)")
    p.add_argument("--trait", help="the trait every item probes (default: the collection name; a CSV trait "
                   "column wins)")
    p.add_argument("--columns", metavar="FIELD=COLUMN,...",
                   help="csv: which column holds what, e.g. statement=text,matching=label,trait=category,"
                   "confidence=conf; or question=q,options=a+b,matching=answer (default: columns named like the "
                   "fields, or answer_matching_behavior and label_confidence)")
    p.add_argument("--sample", type=int, metavar="N", help="keep a seeded random subset of N items (in file order)")
    p.add_argument("--seed", type=int, help="seed of --sample (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out items that cannot be imported (counted and listed) instead of stopping at the first")
    p.add_argument("--force", action="store_true", help="replace FOLDER/NAME.yaml if it exists")
    p.set_defaults(func=cmd_prompts_import)


def cmd_prompts_list(args: argparse.Namespace) -> None:
    """One line per matching library prompt: its address, kind, answers, variants and description.

    Collections that do not load are skipped, each named on stderr with its first problem (exit 0:
    the list is of what is usable; `prompts validate` fails on problems). A broken collection asked
    for with --collection is an error (exit 2).
    """
    from workbench.prompts import load_library

    library = load_library()
    found = library.filter(tag=args.tag, kind=args.kind, text=args.search, collection=args.collection)
    if args.collection is None:
        _print_broken(library.broken())
    if not found:
        print("no prompts match")
        return
    for prompt in found:
        spec = prompt.spec
        extras = []
        if spec.answer_space:
            extras.append(f"{len(spec.answer_space.values())} answers")
        if spec.variant_count() > 1:
            extras.append(f"{spec.variant_count()} variants")
        if spec.perturbations:
            extras.append("perturbations: " + ",".join(spec.perturbations))
        if spec.framings:
            extras.append("framings: " + ",".join(spec.framings))
        detail = f" [{'; '.join(extras)}]" if extras else ""
        print(f"{prompt.ref}  ({spec.kind}){detail}  {one_line(spec.description, 70) if spec.description else ''}")
    print(f"{len(found)} prompts")


def _print_broken(broken: dict) -> None:
    """One stderr line per file that gives no collection: its first problem and how to see the rest."""
    for path, problems in broken.items():
        more = f" (and {len(problems) - 1} more: workbench prompts validate {path})" if len(problems) > 1 else ""
        print(f"broken collection {problems[0]}{more}", file=sys.stderr)


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


def cmd_prompts_import(args: argparse.Namespace) -> None:
    """Import a probe set; print what was written and the commands that use it."""
    from workbench.prompts.importers import FORMATS, import_probe_set

    if args.format not in FORMATS:
        raise WorkbenchError(f"--format {args.format}: unknown format; use one of {', '.join(FORMATS)}")
    if args.seed is not None and args.sample is None:
        raise WorkbenchError("--seed chooses the --sample subset; give --sample N too")
    result = import_probe_set(args.path, args.format, args.out, name=args.name, trait=args.trait,
                              columns=args.columns, sample=args.sample, seed=args.seed or 0,
                              skip_bad=args.skip_bad, force=args.force)
    for problem in result.skipped[:10]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(result.skipped) > 10:
        print(f"... and {len(result.skipped) - 10} more skipped", file=sys.stderr)
    kinds = f"{result.statements} statements, {result.multiple_choice} multiple-choice"
    subset = f" (a seeded sample of {result.total})" if result.items < result.total else ""
    if args.sample is not None and args.sample >= result.total:
        print(f"note: --sample {args.sample} is not below the {result.total} items; all are kept", file=sys.stderr)
    left_out = f"; {len(result.skipped)} skipped" if result.skipped else ""
    print(f"wrote {result.path}: collection {result.name!r}, {result.items} items{subset} ({kinds}){left_out}")
    folder = result.path.parent
    print(f"  WORKBENCH_PROMPTS={folder} workbench prompts list --collection {result.name}")
    print(f"  WORKBENCH_PROMPTS={folder} workbench persona --collection {result.name} --models MODEL")
