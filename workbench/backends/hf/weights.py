"""Weights of local transformers models: device and dtype, threads, preparing GGUFs, locating and loading.

A GGUF-shipped model is converted once to bf16 safetensors in the model cache (loading a GGUF
dequantises every time and takes about a minute; the prepared copy loads in seconds). Models and
tokenizers are loaded once per process and shared by every backend instance.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.home import models_dir
from workbench.model_sources import ADAPTER_CONFIG, ADAPTER_WEIGHTS, locate_gguf_package_dir
from workbench.quiet import quiet_library
from workbench.registry import ModelSpec

PREPARED_MARKER = "workbench-prepared.json"
THREADS_ENV = "WORKBENCH_THREADS"
HF_INSTALL = "pip install 'workbench[hf]'"


# --------------------------------------------------------------------------------------------
# Device, dtype, threads
# --------------------------------------------------------------------------------------------


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (bf16 is ~2x faster than fp32 there)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(spec: ModelSpec, device: str | None = None) -> str:
    """The dtype a model runs in: its registry dtype, with 'auto' resolved for the device."""
    if spec.dtype != "auto":
        return spec.dtype
    device = device or default_device()
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def apply_thread_setting(threads: int | None) -> None:
    """Set torch's CPU thread count from the argument or $WORKBENCH_THREADS (unset: torch's default)."""
    value = threads or os.environ.get(THREADS_ENV)
    if value:
        try:
            torch.set_num_threads(int(value))
        except ValueError:
            raise WorkbenchError(f"${THREADS_ENV} must be a whole number of threads, got {value!r}") from None


# --------------------------------------------------------------------------------------------
# Preparing weights: GGUF -> bf16 safetensors, once
# --------------------------------------------------------------------------------------------


def prepared_dir(spec: ModelSpec) -> Path:
    """Where the prepared weights of a registry model live."""
    return models_dir() / spec.name


def gguf_path(spec: ModelSpec) -> Path:
    """The GGUF file of a package-shipped model (assembled from chunks once if the package splits it)."""
    src = spec.source
    if not src.gguf_package:
        raise WorkbenchError(f"model {spec.name!r} is not shipped as a GGUF")
    package_dir = locate_gguf_package_dir(src)
    if not src.assemble:
        path = package_dir / str(src.gguf_file)
        if not path.is_file():
            raise WorkbenchError(f"{path} is missing; reinstall with: {src.install}")
        return path
    module = importlib.import_module(str(src.gguf_module))
    target = models_dir() / ".gguf" / str(src.gguf_file)
    return Path(module.assemble(target))


def is_prepared(spec: ModelSpec) -> bool:
    """Whether prepared weights exist and were made from the weights the registry names now."""
    marker = prepared_dir(spec) / PREPARED_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return recorded.get("weights") == spec.weights_fingerprint()


def needs_preparation(spec: ModelSpec) -> bool:
    """GGUF-shipped models are converted once; transformers checkpoints load as they are."""
    return bool(spec.source.gguf_package)


def prepare_model(spec: ModelSpec, force: bool = False) -> Path:
    """Convert a GGUF to bf16 safetensors in the model cache (~1 min once; later loads take seconds)."""
    if not needs_preparation(spec):
        return Path(spec.source.path or "")
    target = prepared_dir(spec)
    if is_prepared(spec) and not force:
        return target
    # transformers reads GGUF files through the gguf package; say so before a minute of work fails.
    if importlib.util.find_spec("gguf") is None:
        raise MissingPackageError(f"model {spec.name!r} is shipped as a GGUF, which needs the 'gguf' package; "
                                  f"run: {HF_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    gguf = gguf_path(spec)
    print(f"preparing {spec.name}: dequantising {gguf.name} once (about a minute)...", file=sys.stderr)
    with quiet_library():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Loading packed GGUF weights is fastest in float32; we cast to bf16 for storage.
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    # A GGUF-loaded model refuses save_pretrained; a plain model built from its config does not.
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    with quiet_library():
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        plain.load_state_dict(gguf_model.state_dict())
        plain.generation_config = gguf_model.generation_config
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    (staging / PREPARED_MARKER).write_text(
        json.dumps(
            {
                "weights": spec.weights_fingerprint(),
                "from": str(gguf),
                "saved_dtype": "bfloat16",
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a killed preparation never leaves a half-written model
    print(f"prepared {spec.name} in {time.perf_counter() - started:.0f} s -> {target}", file=sys.stderr)
    return target


def prepare_status(spec: ModelSpec, force: bool = False) -> str:
    """Prepare a model if it needs it and say in one line what happened."""
    if spec.parent:
        # A fine-tuned variant loads its parent's weights (and merges its adapter on loading).
        return f"{spec.name}: an adapter on {spec.parent}; " + prepare_status(spec.parent_spec, force=force)
    if not needs_preparation(spec):
        return f"{spec.name}: a transformers checkpoint, nothing to prepare"
    if is_prepared(spec) and not force:
        return f"{spec.name}: already prepared in {prepared_dir(spec)}"
    return f"{spec.name}: prepared in {prepare_model(spec, force=force)}"


def checkpoint_location(spec: ModelSpec) -> str:
    """The directory or hub id transformers loads, preparing a GGUF model first if needed.

    For a fine-tuned variant (`parent` + `source.adapter`) this is the parent's checkpoint; the
    adapter is applied on loading (see adapter_location).
    """
    if spec.parent:
        return checkpoint_location(spec.parent_spec)
    src = spec.source
    if src.gguf_package:
        return str(prepare_model(spec))
    if src.path:
        problem = src.checkpoint_problem()
        if problem:
            raise WorkbenchError(f"model {spec.name!r}: {problem}")
        return str(Path(src.path).expanduser())
    return str(src.hf_id)


def adapter_location(spec: ModelSpec) -> str:
    """The checked adapter folder of a fine-tuned variant ("" for other models).

    Checks that the adapter files exist and that the adapter was trained on this model's parent,
    so a wrong path or a mixed-up adapter fails with a message instead of loading silently.
    """
    if not spec.parent:
        return ""
    folder = spec.source.adapter_dir()
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if not (folder / name).is_file():
            raise WorkbenchError(
                f"model {spec.name!r}: adapter file {folder / name} is missing; regenerate the planted variants "
                f"with `make tuned-models` (or `workbench tune --all`), or fix source.adapter in the registry"
            )
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"model {spec.name!r}: {folder / ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    trained_on = config.get("base_model_name_or_path")
    if trained_on != spec.parent:
        raise WorkbenchError(
            f"model {spec.name!r}: the adapter in {folder} was trained on {trained_on!r}, but the registry "
            f"says its parent is {spec.parent!r}; point source.adapter at an adapter of {spec.parent!r} "
            f"or set parent: {trained_on}"
        )
    return str(folder)


# --------------------------------------------------------------------------------------------
# Loading: one copy per process
# --------------------------------------------------------------------------------------------

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _load_tokenizer_cached(location: str) -> Any:
    from transformers import AutoTokenizer

    with quiet_library():
        return AutoTokenizer.from_pretrained(location)


def load_tokenizer(spec: ModelSpec) -> Any:
    """The model's tokenizer (offline: from the prepared or local checkpoint)."""
    with _LOAD_LOCK:
        return _load_tokenizer_cached(checkpoint_location(spec))


# Four: the sampling and the float32 scoring copy of a base and a tuned model (a bf16 machine compares pairs).
@lru_cache(maxsize=4)
def _load_model_cached(location: str, dtype: str, device: str, adapter: str = "", adapter_digest: str = "") -> Any:
    from transformers import AutoModelForCausalLM

    if not adapter:
        with quiet_library():
            model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
        return model.to(device).eval()
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingPackageError("fine-tuned variants need peft; run: pip install 'peft>=0.17'") from None
    # Merge in float32, then cast once: adding a small LoRA delta to bf16 weights rounds it twice.
    with quiet_library():
        base = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    return merged.to(dtype=getattr(torch, dtype), device=device).eval()


def load_model(spec: ModelSpec, dtype: str, device: str) -> Any:
    """The model, loaded once per process per (checkpoint, adapter, dtype, device); adapters are merged in."""
    with _LOAD_LOCK:
        adapter = adapter_location(spec)
        digest = spec.weights_fingerprint()["adapter"] if adapter else ""
        return _load_model_cached(checkpoint_location(spec), dtype, device, adapter, digest)


@lru_cache(maxsize=8)
def _generation_config_cached(location: str) -> Any:
    from transformers import GenerationConfig

    with quiet_library():
        try:
            return GenerationConfig.from_pretrained(location)
        except OSError:  # a checkpoint without generation_config.json: the model config's end tokens
            from transformers import AutoConfig

            return GenerationConfig.from_model_config(AutoConfig.from_pretrained(location))


def generation_config(spec: ModelSpec) -> Any:
    """The checkpoint's generation config (end-of-sequence tokens), read without loading weights."""
    with _LOAD_LOCK:
        return _generation_config_cached(checkpoint_location(spec))


@lru_cache(maxsize=4)
def _vocabulary_texts_cached(location: str, size: int) -> tuple[str, ...]:
    return tuple(_load_tokenizer_cached(location).batch_decode([[i] for i in range(size)]))


def vocabulary_texts(spec: ModelSpec, size: int) -> tuple[str, ...]:
    """Every token id decoded alone, once per process per checkpoint (262k decodes for Gemma take ~1 s)."""
    location = checkpoint_location(spec)
    with _LOAD_LOCK:
        _load_tokenizer_cached(location)
    return _vocabulary_texts_cached(location, size)
