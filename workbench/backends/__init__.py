"""Backends by name. Heavy libraries (torch, openai, anthropic) are imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from workbench.backends.base import Backend, BackendError, GenerationRequest
from workbench.errors import MissingPackageError, WorkbenchError
from workbench.registry import ModelSpec

# name -> (module, class, packages it needs, the install command to name when one is missing)
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "hf": ("workbench.backends.hf", "HFBackend", ("torch", "transformers"), "pip install 'workbench[hf]'"),
    "openai": ("workbench.backends.openai_api", "OpenAIBackend", ("openai",), "pip install 'workbench[openai]'"),
    "anthropic": ("workbench.backends.anthropic_api", "AnthropicBackend", ("anthropic",),
                  "pip install 'workbench[anthropic]'"),
}

_EXTRA_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Add a backend from outside the package (a plugin, or a test double): a callable (spec, **settings) -> Backend."""
    _EXTRA_BACKENDS[name] = factory


def create_backend(spec: ModelSpec, **settings: Any) -> Backend:
    """Instantiate the backend a registry entry names, with a clear error if its package is missing."""
    if spec.backend in _EXTRA_BACKENDS:
        return _EXTRA_BACKENDS[spec.backend](spec, **settings)
    if spec.backend not in _BACKENDS:
        raise WorkbenchError(
            f"model {spec.name!r}: backend {spec.backend!r} is not available yet "
            f"(available: {', '.join(sorted([*_BACKENDS, *_EXTRA_BACKENDS]))})"
        )
    module_name, class_name, packages, install = _BACKENDS[spec.backend]
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise MissingPackageError(
                f"model {spec.name!r} needs the {spec.backend!r} backend, but {package!r} is not installed; "
                f"run: {install}"
            )
    cls = getattr(importlib.import_module(module_name), class_name)
    # Sampler settings are shared by all backends; each takes the ones it knows (threads for hf,
    # concurrency for the APIs) and ignores the rest.
    parameters = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        settings = {k: v for k, v in settings.items() if k in parameters}
    return cls(spec, **settings)


__all__ = ["Backend", "BackendError", "GenerationRequest", "create_backend", "register_backend"]
