"""The render limits of prompt templates: they live in workbench.guarded.limits (the registry and the
backends use them too); the names stay here for the prompt library's callers."""

from __future__ import annotations

from workbench.guarded.limits import (
    DEFAULT_RENDER_MAX_CHARS,
    DEFAULT_RENDER_SECONDS,
    RENDER_MAX_CHARS_ENV,
    RENDER_SECONDS_ENV,
    Budget,
    LimitBreach,
    RenderLimitError,
    RenderLimits,
    current_budget,
    start_budget,
)

__all__ = [
    "DEFAULT_RENDER_MAX_CHARS",
    "DEFAULT_RENDER_SECONDS",
    "RENDER_MAX_CHARS_ENV",
    "RENDER_SECONDS_ENV",
    "Budget",
    "LimitBreach",
    "RenderLimitError",
    "RenderLimits",
    "current_budget",
    "start_budget",
]
