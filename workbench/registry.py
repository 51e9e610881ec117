"""The model registry: which models exist, where their weights come from, how to talk to them.

The packaged `models.yaml` holds the embedded defaults; `$WORKBENCH_HOME/models.yaml` adds
models and overrides fields of known ones (a shallow merge per model).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from workbench.config import describe_validation_error
from workbench.errors import ConfigError, UnknownModelError
from workbench.guarded.yaml import load_yaml_file
from workbench.home import user_registry_path
from workbench.model_sources import (
    ModelSource,
    adapter_digest,
    locate_gguf_package_dir,
)
from workbench.steering_spec import SYNTAX, Steering, is_inline_steered, parse_inline

PACKAGED_REGISTRY = Path(__file__).with_name("models.yaml")
# The sections of a registry file, each a mapping of name to fields: what one entry is, and what it looks like.
SECTIONS = {
    "models": ("model", "{backend: hf, kind: base, family: FAMILY, source: {...}}"),
    "transcript_templates": ("transcript template", "{template: JINJA, stop: [...]}"),
    "pairs": ("pair", "{base: MODEL, tuned: MODEL}"),
}


class TranscriptTemplate(BaseModel):
    """How a chat is written as plain text for a model without a chat template."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    template: str
    stop: list[str] = Field(default_factory=list, description="Added to the stop strings when used.")

    # The registry file that defined it, set by load_registry: an error in the template names the file.
    _defined_in: Path | None = PrivateAttr(None)

    @property
    def defined_in(self) -> Path | None:
        """The registry file this template came from (None for one made outside load_registry)."""
        return self._defined_in


A_DAY_S = 86_400.0
A_WEEK_S = 7 * A_DAY_S


class ModelSpec(BaseModel):
    """One registry entry."""

    model_config = ConfigDict(extra="forbid")

    name: str
    backend: Literal["hf", "openai", "anthropic"]
    kind: Literal["base", "tuned"]
    family: str
    description: str = ""
    source: ModelSource = Field(default_factory=ModelSource)
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    chat_template: str | None = Field(
        None, description="'tokenizer' for the checkpoint's own template, inline Jinja, or null."
    )
    transcript_template: str = "plain-dialogue"
    notes: list[str] = Field(default_factory=list)
    revision: str | None = Field(None, description="Change it to start a fresh cache for the same weights.")
    parent: str | None = Field(
        None,
        description="hf models made by fine-tuning another registry model (`workbench tune`): the parent's name. "
        "The parent's weights are loaded and `source.adapter` is applied to them.",
    )
    # API backends (openai-compatible servers, anthropic):
    base_url: str | None = Field(None, description="Server address; part of the model's identity.")
    api_model: str | None = Field(None, description="The model name the API expects.")
    api_key_env: str | None = Field(
        None, description="Environment variable that holds the key (the key itself never goes in a file)."
    )
    api_dialect: Literal["openai", "vllm", "llama.cpp"] | None = Field(
        None,
        description="openai backend: which sampling fields the server takes. 'openai' (the OpenAI API: no "
        "top_k/min_p/repetition_penalty, asking for them is an error), 'vllm' or 'llama.cpp' (sent in the "
        "request body under that server's names). Default: 'openai' without base_url, else 'vllm'.",
    )
    completions_endpoint: bool | None = Field(
        None,
        description="openai backend: whether the server has the legacy /completions endpoint (base models and "
        "raw-text prompts go there). Default: true with a base_url (vLLM, llama.cpp), false for the OpenAI API.",
    )
    logprobs: bool = Field(True, description="API backends: whether the server returns token logprobs.")
    max_concurrency: int = Field(8, ge=1, le=1024, description="API backends: requests in flight at once.")
    choices_per_request: int = Field(
        1,
        ge=1,
        le=128,
        description="openai backend: the high-rate mode's block size. Each request asks for one fixed, aligned "
        "block of this many sample indices (`n`) with one seed per block, so sample i is the same text however "
        "the run was resumed or extended. 1 gives every sample its own seed (seed, index); more is much faster "
        "on vLLM or llama.cpp with `n` support and saves prompt tokens on APIs that bill them per request.",
    )
    # Times are finite and at most a day (a week for a whole call's deadline): `.inf` or a slip of the keyboard
    # would let a server that never answers hold a run for good.
    connect_timeout_s: float = Field(
        10.0, gt=0, le=A_DAY_S, description="API backends: seconds to open a connection."
    )
    read_timeout_s: float = Field(
        60.0,
        gt=0,
        le=A_DAY_S,
        description="API backends: seconds without a byte from the server before a request counts as timed out. "
        "Replies are not streamed, so this is also the longest one reply may take: raise it for large models or "
        "long replies.",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=A_DAY_S,
        description="Deprecated: the old name of read_timeout_s (used when read_timeout_s is not given).",
    )
    dead_server_s: float = Field(
        60.0,
        gt=0,
        le=A_DAY_S,
        description="API backends: a request that gets no reply at all (timeouts, refused or dropped connections) "
        "is retried until this many seconds have passed, then the run stops: the server is taken to be down.",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=A_WEEK_S,
        description="API backends: the most seconds one sample call may spend drawing; past it the run stops "
        "with its samples kept. Off by default (large models can take minutes per reply). Not part of the cache key.",
    )
    max_retry_after_s: float = Field(
        60.0,
        ge=0,
        le=A_DAY_S,
        description="API backends: the longest Retry-After the workbench waits. A server asking for longer stops "
        "the run with the time to run it again (samples drawn so far are kept).",
    )
    steering: Steering | None = Field(
        None,
        description="A steered variant of another local model (see workbench.steering_spec): made by the registry "
        "from an entry's `steering:` or an inline name PARENT@DIRECTION@L3@add0.25; it shares the parent's weights.",
    )
    continuation_instruction: str = Field(
        "Continue the following text exactly where it stops. Reply with the continuation only.",
        description="anthropic backend: the user turn placed before a raw-text prompt, which is sent as the "
        "assistant's prefill so a chat model continues it.",
    )

    # The parent's entry, attached by load_registry (its weights are part of this model's identity).
    _parent_spec: "ModelSpec | None" = PrivateAttr(None)
    # A steered model's unsteered parent, attached by steered_spec (its weights are the ones loaded).
    _steered_from: "ModelSpec | None" = PrivateAttr(None)

    @model_validator(mode="after")
    def _hf_needs_weights(self) -> "ModelSpec":
        src = self.source
        if self.parent or src.adapter:
            if self.backend != "hf":
                raise ValueError(f"a model with a parent and an adapter uses backend: hf, not {self.backend}")
            if not (self.parent and src.adapter):
                raise ValueError("a fine-tuned variant needs both parent (the base model's name) and source.adapter")
            return self
        if self.backend == "hf" and not (src.path or src.hf_id or src.gguf_package):
            raise ValueError("an hf model needs source.path, source.hf_id or source.gguf_package")
        if self.backend in ("openai", "anthropic") and not self.api_model:
            raise ValueError(f"an {self.backend} model needs api_model (the model name the API expects)")
        return self

    @model_validator(mode="after")
    def _timeout_s_is_the_read_timeout(self) -> "ModelSpec":
        # Registries written before connect/read timeouts were separate keep working.
        if self.timeout_s is not None and "read_timeout_s" not in self.model_fields_set:
            self.read_timeout_s = self.timeout_s
        return self

    @property
    def dialect(self) -> str:
        """The openai backend's server dialect, with the default resolved."""
        return self.api_dialect or ("openai" if not self.base_url else "vllm")

    @property
    def has_completions_endpoint(self) -> bool:
        """Whether raw-text prompts can be sent as completions (openai backend)."""
        if self.completions_endpoint is not None:
            return self.completions_endpoint
        return self.backend == "openai" and bool(self.base_url)

    @property
    def has_chat_template(self) -> bool:
        """Whether chat prompts use a chat template (else the transcript template)."""
        return bool(self.chat_template)

    @property
    def parent_spec(self) -> "ModelSpec":
        """The parent's registry entry (models with `parent`), as the registry that loaded this one resolved it."""
        if self._parent_spec is None:
            raise ConfigError(
                f"model {self.name!r} names parent {self.parent!r} but was not loaded through the registry; "
                "use workbench.registry.load_registry().get(name)"
            )
        return self._parent_spec

    @property
    def unsteered(self) -> "ModelSpec":
        """The model whose weights this one runs on: the parent of a steered model, else itself."""
        return self._steered_from if self._steered_from is not None else self

    def weights_fingerprint(self) -> dict[str, Any]:
        """What identifies the weights without reading them all: package version, or files' sizes and times.

        A fine-tuned variant is its parent's fingerprint plus the content hash of its adapter, so
        retraining the adapter (or editing its config) starts a fresh cache.
        """
        src = self.source
        if self.parent:
            folder = src.adapter_dir()
            return {"parent": self.parent_spec.weights_fingerprint(), "adapter": adapter_digest(folder)}
        if src.gguf_package:
            try:
                version = importlib.metadata.version(src.gguf_package)
            except importlib.metadata.PackageNotFoundError:
                version = "not-installed"
            return {"gguf_package": src.gguf_package, "version": version, "file": src.gguf_file}
        if src.path:
            problem = src.checkpoint_problem()
            if problem:  # no weights to identify: say so before a run is planned on them
                raise ConfigError(f"model {self.name!r}: {problem}")
            root = Path(src.path).expanduser().resolve()
            files = sorted(p for p in root.glob("*") if p.suffix in {".safetensors", ".bin", ".json", ".gguf"})
            stats = [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]
            return {"path": str(root), "files": stats}
        if src.hf_id:
            return {"hf_id": src.hf_id}
        return {"api_model": self.api_model or self.name}

    def identity(self, resolved_dtype: str | None = None) -> dict[str, Any]:
        """Everything about the model that changes its output: part of every cache key.

        The registry name is left out on purpose: renaming an entry keeps its cache.
        """
        identity = {
            "backend": self.backend,
            "weights": self.weights_fingerprint(),
            "dtype": resolved_dtype or self.dtype,
            "endpoint": self.base_url,
            "api_model": self.api_model,
            "revision": self.revision,
        }
        if self.backend == "openai":
            # The dialect decides which sampling fields reach the server, so it changes the output.
            identity["dialect"] = self.dialect
            if self.choices_per_request > 1:
                # Choices drawn together share a request's seed, so sample i depends on the block size
                # and on how indices are grouped: fixed blocks aligned at multiples of the size. (Runs
                # stored before blocks were aligned grouped a resumed run's missing indices from the first
                # one, so they are other runs.) Left out at 1 so one-choice-per-request keys stay as they were.
                identity["choices_per_request"] = self.choices_per_request
                identity["request_blocks"] = "aligned"
        if self.steering is not None:
            from workbench.direction_files import direction_content_hash

            identity["steering"] = self.steering.identity(direction_content_hash(self.steering.direction))
        return identity

    def identity_digest(self, resolved_dtype: str | None = None) -> str:
        """A short stable hash of `identity()`."""
        blob = json.dumps(self.identity(resolved_dtype), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ModelPair(BaseModel):
    """Two models meant to be compared (base vs tuned)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    base: str
    tuned: str
    note: str = ""


class Registry:
    """The merged packaged and user registries."""

    def __init__(
        self,
        models: dict[str, ModelSpec],
        templates: dict[str, TranscriptTemplate],
        pairs: dict[str, ModelPair],
    ) -> None:
        self.models = models
        self.templates = templates
        self.pairs = pairs
        self._inline: dict[str, ModelSpec] = {}

    def get(self, name: str) -> ModelSpec:
        """The entry for `name` (or an inline steered model), or an error that suggests the closest names."""
        if name in self.models:
            return self.models[name]
        if is_inline_steered(name):
            if name not in self._inline:
                # Named canonically (add0.10 is add0.1): one steering, one name in every table and figure.
                steering = parse_inline(name)
                self._inline[name] = steered_spec(self.get(steering.parent), steering)
            return self._inline[name]
        close = difflib.get_close_matches(name, list(self.models), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (known: {', '.join(sorted(self.models))}; "
            f"add your own in {user_registry_path()})"
        )

    def template(self, name: str) -> TranscriptTemplate:
        """A transcript template by name."""
        if name not in self.templates:
            raise ConfigError(
                f"unknown transcript template {name!r} (known: {', '.join(sorted(self.templates))})"
            )
        return self.templates[name]

    def same_family(self, a: str, b: str) -> bool:
        """Whether two models share a pretraining family."""
        return self.get(a).family == self.get(b).family

    def describe_pair(self, names: list[str]) -> str:
        """A line saying whether the models share a family, for every table and figure of a comparison."""
        families = {n: self.get(n).family for n in names}
        if len(set(families.values())) == 1:
            return f"same family ({next(iter(families.values()))})"
        listed = ", ".join(f"{n}: {f}" for n, f in families.items())
        return f"different families ({listed}): differences are not effects of fine-tuning alone"

    def frame(self):  # -> pandas.DataFrame
        """One row per model: name, backend, kind, family, parent, dtype, template and notes."""
        import pandas as pd

        rows = [
            {
                "name": m.name,
                "backend": m.backend,
                "kind": m.kind,
                "family": m.family,
                "parent": m.parent or "",
                "dtype": m.dtype,
                "chat": "chat template" if m.has_chat_template else f"transcript: {m.transcript_template}",
                "notes": " | ".join(m.notes),
            }
            for m in self.models.values()
        ]
        return pd.DataFrame(rows)


def steered_spec(parent: ModelSpec, steering: Steering, name: str | None = None,
                 updates: dict[str, Any] | None = None) -> ModelSpec:
    """A steered variant of `parent`: the parent's fields (kind, family, templates, weights) plus `steering`."""
    if parent.steering is not None:
        raise ConfigError(f"model {name or steering.inline_name()!r}: its parent {parent.name!r} is itself steered; "
                          f"steer {parent.steering.parent!r} with both directions' layers instead")
    if steering.parent != parent.name:
        steering = steering.model_copy(update={"parent": parent.name})
    # model_copy keeps the parent's private `_parent_spec`, so an adapter variant steered still finds its base.
    spec = parent.model_copy(update={"name": name or steering.inline_name(), "steering": steering, **(updates or {})})
    spec._steered_from = parent
    return spec


def _steered_entry(path: Path, name: str, entry: dict[str, Any], models: dict[str, ModelSpec]) -> ModelSpec:
    """A registry entry with `steering:`: only steering, description and notes; the rest comes from the parent."""
    extra = set(entry) - {"steering", "description", "notes"}
    if extra:
        raise ConfigError(f"{path}: model {name!r}: a steered model takes only steering, description and notes "
                          f"(it inherits {', '.join(sorted(extra))} from its parent); remove them")
    try:
        steering = Steering.model_validate(entry["steering"])
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + describe_validation_error(exc, f"model {name!r} steering")) from None
    if steering.parent not in models:
        raise ConfigError(f"{path}: model {name!r}: steering.parent {steering.parent!r} is not in the registry "
                          f"(known: {', '.join(sorted(models))})")
    updates = {k: entry[k] for k in ("description", "notes") if k in entry}
    return steered_spec(models[steering.parent], steering, name, updates)


def _read_yaml(path: Path) -> dict[str, Any]:
    """A registry file's sections, each checked to be a mapping of name to fields (a one-line ConfigError if not)."""
    # Registries are shared like prompt folders: the same file size and YAML alias caps (a ConfigError naming the file)
    data = load_yaml_file(path, what="a registry file", advice="remove what it does not need") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'models:' at the top level, got {_kind_of(data)}")
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(SECTIONS)}"
        )
    for section, (what, example) in SECTIONS.items():
        entries = data.get(section)
        if entries is not None and not isinstance(entries, dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping of names to their fields, got {_kind_of(entries)}"
                              f"; write `{section}:` then one `NAME: {example}` per {what}")
        for name, entry in (entries or {}).items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: {what} {name!r} must be a mapping of fields like {example}, "
                                  f"got {_kind_of(entry)}")
    return data


def _kind_of(value: Any) -> str:
    """What a YAML value is, for an error message: "a list", "a str ('abc')", "a NoneType"."""
    shown = f" ({value!r})" if isinstance(value, str | int | float) and len(repr(value)) <= 60 else ""
    return f"a {type(value).__name__}{shown}"


def load_registry(user_file: Path | None = None) -> Registry:
    """The packaged registry merged with the user's (`$WORKBENCH_HOME/models.yaml` by default)."""
    layers = [(PACKAGED_REGISTRY, _read_yaml(PACKAGED_REGISTRY))]
    user_file = user_registry_path() if user_file is None else user_file
    if user_file.is_file():
        layers.append((user_file, _read_yaml(user_file)))

    raw_models: dict[str, tuple[Path, dict[str, Any]]] = {}
    raw_templates: dict[str, tuple[Path, dict[str, Any]]] = {}
    raw_pairs: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, data in layers:  # each section and entry is a mapping (checked by _read_yaml)
        for name, entry in (data.get("models") or {}).items():
            base = raw_models.get(name, (path, {}))[1]
            raw_models[name] = (path, {**base, **entry})
        for name, entry in (data.get("transcript_templates") or {}).items():
            raw_templates[name] = (path, entry)
        for name, entry in (data.get("pairs") or {}).items():
            raw_pairs[name] = (path, entry)

    steered = {n: pe for n, pe in raw_models.items() if "steering" in pe[1]}
    for name in steered:
        if is_inline_steered(name):
            raise ConfigError(f"{steered[name][0]}: model {name!r}: a registry name cannot contain '@' "
                              f"(that is the inline steered syntax: {SYNTAX})")
    models = {n: _validate(ModelSpec, {"name": n, **e}, p, f"model {n!r}") for n, (p, e) in raw_models.items()
              if n not in steered}
    templates = {
        n: _validate(TranscriptTemplate, e, p, f"transcript template {n!r}") for n, (p, e) in raw_templates.items()
    }
    pairs = {n: _validate(ModelPair, {"name": n, **e}, p, f"pair {n!r}") for n, (p, e) in raw_pairs.items()}
    for name, template in templates.items():
        template._defined_in = raw_templates[name][0]
    registry = Registry(models, templates, pairs)
    for model in models.values():
        if model.transcript_template not in templates:
            raise ConfigError(
                f"{raw_models[model.name][0]}: model {model.name!r}: transcript_template "
                f"{model.transcript_template!r} is not defined (known: {', '.join(sorted(templates))})"
            )
    for model in models.values():
        if model.parent:
            where = raw_models[model.name][0]
            parent = models.get(model.parent)
            if parent is None:
                raise ConfigError(f"{where}: model {model.name!r}: parent {model.parent!r} is not in the registry "
                                  f"(known: {', '.join(sorted(models))})")
            if parent.backend != "hf" or parent.parent:
                raise ConfigError(f"{where}: model {model.name!r}: parent {parent.name!r} must be a local "
                                  f"transformers (hf) base model, not "
                                  f"{'a fine-tuned variant' if parent.parent else parent.backend}")
            model._parent_spec = parent
    for name, (path, entry) in steered.items():
        models[name] = _steered_entry(path, name, entry, models)
    for pair in pairs.values():
        for member in (pair.base, pair.tuned):
            if member not in models:
                raise ConfigError(f"{raw_pairs[pair.name][0]}: pair {pair.name!r} names unknown model {member!r} "
                                  f"(known: {', '.join(sorted(models))})")
    return registry


def _validate(cls: type[BaseModel], data: Any, path: Path, what: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + describe_validation_error(exc, what)) from None


__all__ = [
    "ModelPair",
    "ModelSource",
    "ModelSpec",
    "Registry",
    "TranscriptTemplate",
    "load_registry",
    "locate_gguf_package_dir",
]
