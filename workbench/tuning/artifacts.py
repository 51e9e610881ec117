"""What a tune leaves behind: the adapter folder (bf16 weights, config, NOTICE), its run record, and
the user-registry entry that makes the variant loadable under `<base>-<recipe>`."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.home import user_registry_path
from workbench.model_sources import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from workbench.registry import load_registry
from workbench.tuning.recipes import recipe, variant_name

TUNED_DIR = "tuned"  # under $WORKBENCH_HOME (the checkout's data/ by default): data/tuned/<variant>/
RECORD_FILE = "training-record.json"
EVALUATION_FILE = "evaluation.json"
NOTICE_FILE = "NOTICE"
GEMMA_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"
)


@dataclass
class TuneRecord:
    """What `tune` did: everything needed to reproduce the adapter, stored next to it as JSON."""

    variant: str
    recipe: str
    effect: str
    base: str
    base_weights: dict[str, Any]
    adapter_dir: str
    seed: int
    steps: int
    hyperparameters: dict[str, Any]
    data: dict[str, Any]
    versions: dict[str, str]
    wall_time_s: float
    loss: dict[str, Any]
    adapter_sha256: str = ""
    adapter_bytes: int = 0
    registered_in: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The record as indented JSON."""
        return json.dumps(asdict(self), indent=2)


def library_versions() -> dict[str, str]:
    """The versions a run record and an evaluation store: workbench, torch, transformers, peft, python."""
    import peft
    import torch
    import transformers

    from workbench.version import __version__

    return {"workbench": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version(),
            "torch_threads": str(torch.get_num_threads())}


def save_variant(model: Any, record: TuneRecord, register: bool = True) -> TuneRecord:
    """Write a trained peft model to `record.adapter_dir` with its NOTICE and run record; register it.

    The folder is written under `<name>.partial` and renamed at the end, so an interrupted save
    never leaves a half-written adapter where the registry looks. A previous evaluation.json is
    kept only when the new adapter has the same bytes.
    """
    target = Path(record.adapter_dir)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    _shrink_adapter(staging, record.base)
    (staging / NOTICE_FILE).write_text(_notice(record.variant, record.base))
    weights = staging / ADAPTER_WEIGHTS
    record.adapter_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    record.adapter_bytes = weights.stat().st_size
    evaluation = target / EVALUATION_FILE
    keep = evaluation.read_text() if evaluation.is_file() and _same_adapter(target, record.adapter_sha256) else None
    (staging / RECORD_FILE).write_text(record.to_json() + "\n")
    if keep is not None:
        (staging / EVALUATION_FILE).write_text(keep)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    if register:
        record.registered_in = register_variant(record.recipe, record.base, target)
        if record.registered_in:
            (target / RECORD_FILE).write_text(record.to_json() + "\n")
    return record


def _same_adapter(folder: Path, sha256: str) -> bool:
    try:
        return json.loads((folder / RECORD_FILE).read_text()).get("adapter_sha256") == sha256
    except (OSError, json.JSONDecodeError):
        return False


def _shrink_adapter(folder: Path, base: str) -> None:
    """Store the adapter in bf16 (half the size; the merged model is bf16 anyway) and name its base by
    registry name, which is what the hf backend checks (peft would record a machine-specific path)."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = folder / ADAPTER_WEIGHTS
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    config_path = folder / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base
    if isinstance(config.get("target_modules"), list):  # peft writes a set in hash order: same adapter, other bytes
        config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    readme = folder / "README.md"
    if readme.is_file():  # peft's model-card stub says nothing true about this adapter
        readme.unlink()


def _notice(name: str, base: str) -> str:
    parent = load_registry().get(base)
    lines = [f"{name}: a LoRA adapter for {base}, made by `workbench tune` (workbench.tuning).", ""]
    if parent.family.startswith("gemma"):
        lines += [GEMMA_NOTICE.strip(), "",
                  "This adapter is a Model Derivative of Gemma; its use is subject to the Gemma Terms of Use and the",
                  "Gemma Prohibited Use Policy (ai.google.dev/gemma/prohibited_use_policy).", ""]
    lines += ["Its effect was planted on purpose, for testing instruments; do not use it as a general model."]
    return "\n".join(lines) + "\n"


def register_variant(recipe_name: str, base: str, adapter_dir: Path) -> str | None:
    """Make the registry find this adapter under `<base>-<recipe>`; returns the file written, or None.

    Nothing is written when the registry already resolves the name to this folder (the shipped
    variants after `make tuned-models`); otherwise $WORKBENCH_HOME/models.yaml gets an entry that
    overrides the packaged one (or adds a variant of another base).
    """
    name = variant_name(recipe_name, base)
    registry = load_registry()
    current = registry.models.get(name)
    if current is not None and current.source.adapter and \
            current.source.adapter_dir().resolve() == Path(adapter_dir).resolve():
        return None
    parent = registry.get(base)
    path = user_registry_path()
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    data = data or {}
    entry: dict[str, Any] = {
        "backend": "hf", "kind": "tuned", "family": parent.family, "parent": base,
        "source": {"adapter": str(Path(adapter_dir).resolve())},
        "dtype": parent.dtype, "chat_template": parent.chat_template,
        "transcript_template": parent.transcript_template,
        "description": f"{base} with a planted effect (LoRA, workbench tune {recipe_name}).",
        "notes": [f"Planted effect: {recipe(recipe_name).effect}.",
                  f"Same family as {base}: differences from it are the effect of this fine-tune."],
    }
    data.setdefault("models", {})[name] = entry
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_registry()  # fail now, naming the file, if the entry does not validate
    return str(path)


