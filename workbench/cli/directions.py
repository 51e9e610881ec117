"""`workbench directions extract|list|show|export`: steering directions as files in $WORKBENCH_HOME/directions/."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.cli.common import make_sampler
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.sampler import Sampler

SITES = ("residual", "attention", "mlp")
# The names of workbench.backends.hf.lens.POSITIONS and workbench.lens.METHODS, here so registering the flags
# imports neither torch nor scikit-learn.
POSITIONS = ("last", "prompt-mean", "response-mean", "every")
METHODS = ("mean-diff", "pca", "logistic")
MATRICES = ("embedding", "unembedding")
SOURCES = ("--trait", "--token", "--model-diff", "--positive/--negative", "--system-a/--system-b")
EXTRACT_EXAMPLE = "e.g. --trait self-preservation, or --token ' wedding'"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `directions` group."""
    group = sub.add_parser("directions", help="steering directions: extract, list, show, export").add_subparsers(
        dest="action", required=True)
    p = group.add_parser("extract", help="extract a direction from a model's activations (one source: --trait, "
                                         "--token, --model-diff, --positive/--negative or --system-a/--system-b)")
    p.add_argument("--model", required=True, help="the registry model whose activations (or embeddings) are used")
    p.add_argument("--name", required=True, help="the direction's name (letters, digits, '-' and '_')")
    p.add_argument("--layers", help="blocks after which to take it, e.g. 3,6 or 2-5 (default with --token: all)")
    p.add_argument("--site", choices=SITES, default="residual",
                   help="where in each block: the residual stream after it, or the attention / MLP output "
                        "(default %(default)s)")
    p.add_argument("--positions", choices=POSITIONS, default="last",
                   help="which tokens' activations: the last, the mean over the prompt or the response, or "
                        "every token (default %(default)s)")
    p.add_argument("--method", choices=METHODS,
                   help="how two sets become one vector (default mean-diff; contrastive sources only)")
    source = p.add_argument_group("source (exactly one)")
    source.add_argument("--trait", help="a persona trait: its statements with the matching vs the other answer "
                                        "(with --model-diff: the statements alone)")
    source.add_argument("--framing", help="with --trait: the framing the statements are rendered in "
                                          "(default: the collection's first)")
    source.add_argument("--collection", default="personas", help="with --trait: the persona collection "
                                                                  "(default %(default)s)")
    source.add_argument("--token", help="a single token's row of the embedding matrix, e.g. ' wedding'")
    source.add_argument("--matrix", choices=MATRICES, help="with --token: which matrix (default embedding)")
    source.add_argument("--model-diff", dest="model_diff", metavar="BASE",
                        help="--model's activations minus BASE's on --texts or on --trait's statements")
    source.add_argument("--positive", metavar="FILE", help="texts of the positive set, one per line (with --negative)")
    source.add_argument("--negative", metavar="FILE", help="texts of the negative set, one per line (with --positive)")
    source.add_argument("--system-a", dest="system_a", metavar="TEXT",
                        help="the same --texts under system prompt A (positive) and --system-b (negative)")
    source.add_argument("--system-b", dest="system_b", metavar="TEXT", help="see --system-a")
    source.add_argument("--texts", metavar="FILE", help="texts, one per line (with --model-diff or --system-a/-b)")
    p.add_argument("--description", default="", help="a note kept in the direction's metadata")
    p.add_argument("--overwrite", action="store_true", help="replace a direction of the same name")
    p.set_defaults(func=cmd_extract)

    p = group.add_parser("list", help="the saved directions (yours, then the checkout's)")
    p.set_defaults(func=cmd_list)

    p = group.add_parser("show", help="a direction's metadata and the norm of each layer's vector")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)

    p = group.add_parser("export", help="copy a direction's two files into a folder (to share it)")
    p.add_argument("name")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to copy into (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace files of the same name in DIR")
    p.set_defaults(func=cmd_export)


def parse_layers(value: str | None, flag: str = "--layers") -> list[int] | None:
    """'3,6' or '2-5' or '1,4-6' as sorted block indices; None when not given."""
    if value is None:
        return None
    layers: set[int] = set()
    for part in (p.strip() for p in value.split(",")):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise WorkbenchError(f"{flag} expects block numbers separated by commas (e.g. 3,6 or 2-5), got {value!r}")
        if dash and int(last) < int(first):
            raise WorkbenchError(f"{flag}: the range {part!r} runs backwards; write {last}-{first}")
        layers.update(range(int(first), int(last or first) + 1))
    return sorted(layers)


def check_layers(sampler: Sampler, model: str, layers: list[int], flag: str = "--layers") -> None:
    """Every layer is a block of the model (0 to blocks-1)."""
    count = sampler.layer_count(model)
    wrong = [layer for layer in layers if layer >= count]
    if wrong:
        raise WorkbenchError(f"{flag}: {model} has {count} blocks (0-{count - 1}); "
                             f"{', '.join(map(str, wrong))} is not one of them")


def read_texts(path: str, flag: str) -> list[str]:
    """The non-blank lines of a text file, or one line naming the flag."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WorkbenchError(f"{flag}: {file} is not a file; give a text file with one text per line")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"{flag}: cannot read {file} ({exc}); give a UTF-8 text file") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise WorkbenchError(f"{flag}: {file} has no texts; put one text per line")
    return texts


def _source(args: argparse.Namespace) -> str:
    """The one source the flags name, or one line saying which flags clash or are missing."""
    given = {"--trait": args.trait is not None, "--token": args.token is not None,
             "--model-diff": args.model_diff is not None,
             "--positive/--negative": args.positive is not None or args.negative is not None,
             "--system-a/--system-b": args.system_a is not None or args.system_b is not None}
    if given["--model-diff"]:  # --trait is then where its texts come from
        given["--trait"] = False
    chosen = [flag for flag, on in given.items() if on]
    if not chosen:
        raise WorkbenchError(f"give one source of the direction: {', '.join(SOURCES)} ({EXTRACT_EXAMPLE})")
    if len(chosen) > 1:
        raise WorkbenchError(f"{' and '.join(chosen)} are two sources; give exactly one of {', '.join(SOURCES)}")
    source = chosen[0]
    pairs = {"--positive/--negative": ("positive", "negative"), "--system-a/--system-b": ("system_a", "system_b")}
    if source in pairs and any(getattr(args, name) is None for name in pairs[source]):
        missing = [f"--{name.replace('_', '-')}" for name in pairs[source] if getattr(args, name) is None]
        raise WorkbenchError(f"{source} needs both flags; add {missing[0]}")
    wants_texts = source in ("--system-a/--system-b",) or (source == "--model-diff" and args.trait is None)
    if wants_texts and args.texts is None:
        where = "--model-diff needs --texts FILE (or --trait TRAIT)" if source == "--model-diff" \
            else "--system-a/--system-b need --texts FILE (the user prompts, one per line)"
        raise WorkbenchError(where)
    if args.texts is not None and not wants_texts:
        raise WorkbenchError("--texts goes with --model-diff or --system-a/--system-b; drop it"
                             + (" (--model-diff takes --texts or --trait, not both)" if source == "--model-diff"
                                else ""))
    if args.framing is not None and args.trait is None:
        raise WorkbenchError("--framing goes with --trait; drop it or add --trait")
    if args.matrix is not None and source != "--token":
        raise WorkbenchError("--matrix goes with --token; drop it")
    if args.method is not None and source not in ("--trait", "--positive/--negative", "--system-a/--system-b"):
        what = "a token's row" if source == "--token" else "a mean difference of two models"
        raise WorkbenchError(f"--method is for two contrastive sets; {source} gives {what}: drop --method")
    return source


def trait_statements(sampler: Sampler, model: str, trait: str, framing: str | None, collection: str) -> list[str]:
    """A persona trait's statements as the model reads them under one framing (no answer appended)."""
    from workbench.experiments.personas import persona_items

    texts = []
    for prompt in persona_items(sampler, collection, [trait]):
        rendered = sampler.render(prompt, model, framing=framing)
        texts.append(rendered.text if rendered.text is not None else rendered.display())
    return texts


def cmd_extract(args: argparse.Namespace) -> None:
    """Extract one direction from the named source, save it, print one line."""
    from workbench.direction_files import check_name, format_layers, save_direction, user_directions_dir

    check_name(args.name)
    source = _source(args)
    if not args.overwrite and (user_directions_dir() / f"{args.name}.safetensors").exists():
        raise WorkbenchError(f"direction {args.name!r} already exists in {user_directions_dir()}; pick another "
                             "--name or pass --overwrite")
    layers = parse_layers(args.layers)
    if layers is None and source != "--token":
        raise WorkbenchError(f"{source} needs --layers (e.g. --layers 3,6): the blocks to take the direction after")
    files = {flag: read_texts(getattr(args, flag[2:].replace("-", "_")), flag)
             for flag in ("--positive", "--negative", "--texts") if getattr(args, flag[2:].replace("-", "_"))}
    sampler = make_sampler()
    sampler.model(args.model)  # an unknown model fails before anything loads
    if args.model_diff is not None:
        sampler.model(args.model_diff)
    if layers is not None:
        check_layers(sampler, args.model, layers)
    direction = _extract(sampler, args, source, layers, files)
    path = save_direction(direction, overwrite=args.overwrite)
    print(f"saved direction {direction.name}: model {direction.metadata.get('model', args.model)}, method "
          f"{direction.metadata.get('method', '?')}, layers {format_layers(direction.layers)}, hash "
          f"{direction.content_hash}, {path}")


def _extract(sampler: Sampler, args: argparse.Namespace, source: str, layers: list[int] | None,
             files: dict[str, list[str]]) -> Any:
    from workbench.lens import (
        contrast_direction,
        model_diff_direction,
        system_prompt_sets,
        token_direction,
        trait_contrast_sets,
    )

    common = {"site": args.site, "positions": args.positions, "description": args.description}
    method = args.method or "mean-diff"
    if source == "--token":
        if not args.token:
            raise WorkbenchError("--token is empty; give a single token, e.g. --token ' wedding'")
        return token_direction(sampler, args.model, args.token, args.name, args.matrix or "embedding", layers,
                               args.description)
    layers = list(layers or [])
    if source == "--trait":
        positive, negative = trait_contrast_sets(sampler, args.model, args.trait, args.framing, args.collection)
        return contrast_direction(sampler, args.model, positive, negative, layers, args.name, method,
                                  sets=f"persona trait {args.trait!r} ({args.collection}, framing "
                                       f"{args.framing or 'the first'}): matching vs other answer appended", **common)
    if source == "--model-diff":
        if args.trait is not None:
            texts = trait_statements(sampler, args.model, args.trait, args.framing, args.collection)
            sets = f"persona trait {args.trait!r} statements ({args.collection}, framing {args.framing or 'the first'})"
        else:
            texts, sets = files["--texts"], f"{len(files['--texts'])} texts from {args.texts}"
        return model_diff_direction(sampler, args.model, args.model_diff, texts, layers, args.name, sets=sets,
                                    **common)
    if source == "--positive/--negative":
        return contrast_direction(sampler, args.model, files["--positive"], files["--negative"], layers, args.name,
                                  method, sets=f"texts from {args.positive} vs {args.negative}", **common)
    positive, negative = system_prompt_sets(sampler, args.model, files["--texts"], args.system_a, args.system_b)
    return contrast_direction(sampler, args.model, positive, negative, layers, args.name, method,
                              sets=f"{len(positive)} prompts from {args.texts} under system prompt A vs B", **common)


def cmd_list(args: argparse.Namespace) -> None:
    """A table of the saved directions."""
    import pandas as pd

    from workbench.direction_files import format_layers, list_directions

    rows = list_directions()
    if not rows:
        print("no directions yet; extract one with `workbench directions extract --model M --name N ...` "
              f"({EXTRACT_EXAMPLE})")
        return
    table = pd.DataFrame([{"name": r["name"], "model": r["model"], "method": r["method"], "site": r["site"],
                           "positions": r["positions"], "layers": format_layers(list(r["layers"])) or "?",
                           "hash": r["content_hash"], "folder": r["folder"]} for r in rows])
    print(table.to_string(index=False))


def cmd_show(args: argparse.Namespace) -> None:
    """A direction's metadata, one field a line, then each layer's vector norm."""
    import numpy as np

    from workbench.direction_files import find_direction, format_layers, read_direction_file

    path = find_direction(args.name)
    direction = read_direction_file(path)
    print(f"direction {direction.name} ({path})")
    print(f"  layers: {format_layers(direction.layers)}; hidden size {direction.hidden_size}; content hash "
          f"{direction.content_hash}")
    for key in sorted(direction.metadata):
        if key in ("name", "layers", "hidden_size", "content_hash"):
            continue
        value = direction.metadata[key]
        if isinstance(value, dict):
            text = ", ".join(f"{k} {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in value.items())
        else:  # a token's leading space is part of it: quoted
            text = repr(value) if isinstance(value, str) and value != value.strip() else str(value)
        print(f"  {key}: {text if text else '-'}")
    print("  layer  norm")
    for layer in direction.layers:
        print(f"  {layer:>5}  {float(np.linalg.norm(direction.vectors[layer])):.4g}")


def cmd_export(args: argparse.Namespace) -> None:
    """Copy NAME.safetensors and NAME.json into --out."""
    from workbench.direction_files import find_direction, read_direction_file

    source = find_direction(args.name)
    read_direction_file(source)  # a broken direction is not passed on
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--out: {out} is a file; give a folder")
    files = [source] + ([source.with_suffix(".json")] if source.with_suffix(".json").is_file() else [])
    targets = [out / f.name for f in files]
    clash = [t for f, t in zip(files, targets, strict=True) if t.exists() and t.resolve() != f.resolve()]
    if clash and not args.overwrite:
        raise WorkbenchError(f"--out: {clash[0]} already exists; pass --overwrite or give another folder")
    out.mkdir(parents=True, exist_ok=True)
    for file, target in zip(files, targets, strict=True):
        if target.resolve() != file.resolve():
            shutil.copyfile(file, target)
    print("wrote " + ", ".join(str(t) for t in targets))
