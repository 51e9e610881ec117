"""The workbench: probe base versus fine-tuned language models for mode collapse, attractor
states and agentic personas. Start with `Sampler` (draw and cache samples) and `load_registry`
(which models exist).

The names below load on first use, so importing a light module (the store, the plots) does not
load the Sampler and its backends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workbench.version import __version__

if TYPE_CHECKING:
    from workbench.config import SamplingConfig, make_config
    from workbench.errors import WorkbenchError
    from workbench.registry import load_registry
    from workbench.sampler import Sampler, SampleRun
    from workbench.store import Store, open_store

_LAZY = {
    "SampleRun": "workbench.sampler",
    "Sampler": "workbench.sampler",
    "SamplingConfig": "workbench.config",
    "make_config": "workbench.config",
    "Store": "workbench.store",
    "open_store": "workbench.store",
    "WorkbenchError": "workbench.errors",
    "load_registry": "workbench.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = [
    "SampleRun",
    "Sampler",
    "SamplingConfig",
    "Store",
    "WorkbenchError",
    "__version__",
    "load_registry",
    "make_config",
    "open_store",
]
