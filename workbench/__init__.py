"""The workbench: probe base versus fine-tuned language models for mode collapse, attractor
states and agentic personas. Start with `Sampler` (draw and cache samples) and `load_registry`
(which models exist)."""

from __future__ import annotations

__version__ = "0.1.0"

from workbench.config import SamplingConfig, make_config  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.registry import load_registry  # noqa: E402
from workbench.sampler import SampleRun, Sampler  # noqa: E402
from workbench.store import Store, open_store  # noqa: E402

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
