"""`workbench models list|prepare`: the model registry."""

from __future__ import annotations

import argparse

from workbench.cli.common import make_sampler
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `models list` and `models prepare`."""
    models = sub.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    p = models.add_parser("list", help="registered models, their kind, family and notes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("prepare", help="convert GGUF models once to bf16 safetensors (fast loads)")
    p.add_argument("names", nargs="*", help="models to prepare (default: every GGUF-shipped hf model)")
    p.add_argument("--force", action="store_true", help="prepare again even if prepared")
    p.set_defaults(func=cmd_models_prepare)


def cmd_models_list(args: argparse.Namespace) -> None:
    """Print the registry: one line per model with its notes, then the pairs."""
    from workbench.model_sources import ADAPTER_WEIGHTS
    from workbench.registry import load_registry

    registry = load_registry()
    if args.json:
        print(registry.frame().to_json(orient="records", indent=2))
        return
    with make_sampler() as sampler:
        for model in registry.models.values():
            status = ""
            if model.parent:
                present = (model.source.adapter_dir() / ADAPTER_WEIGHTS).is_file()
                status = f"fine-tuned from {model.parent}, " + ("adapter present" if present else
                                                                "adapter missing: run make tuned-models")
            elif model.backend == "hf":
                status = "prepared" if sampler.is_prepared(model.name) else "not prepared"
            chat = "chat template" if model.has_chat_template else f"transcript: {model.transcript_template}"
            print(f"{model.name}  [{model.kind}, {model.family} family, backend {model.backend}, {chat}] {status}")
            for note in model.notes:
                print(f"    - {note}")
    for pair in registry.pairs.values():
        print(f"pair {pair.name}: {pair.base} (base) vs {pair.tuned} (tuned) — "
              f"{registry.describe_pair([pair.base, pair.tuned])}")


def cmd_models_prepare(args: argparse.Namespace) -> None:
    """Prepare the named hf models (default: every GGUF-shipped one), printing one status line each."""
    from workbench.registry import load_registry

    registry = load_registry()
    names = args.names or [m.name for m in registry.models.values() if m.backend == "hf" and m.source.gguf_package]
    specs = [registry.get(n) for n in names]
    for spec in specs:
        if spec.backend != "hf":
            raise WorkbenchError(f"model {spec.name!r} uses the {spec.backend} backend; only hf models are prepared")
    with make_sampler() as sampler:
        for spec in specs:
            print(sampler.prepare_model(spec.name, force=args.force))
