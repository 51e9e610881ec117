"""The one Jinja sandbox every prompt template renders in: it lives in workbench.guarded.jinja (the
registry and the backends use it too); the names stay here for the prompt library's callers."""

from __future__ import annotations

from workbench.guarded.jinja import (
    SANDBOX,
    LimitedSandbox,
    RenderLimitError,
    RenderLimits,
    render_source,
    render_template,
    template_slots,
)

__all__ = [
    "SANDBOX",
    "LimitedSandbox",
    "RenderLimitError",
    "RenderLimits",
    "render_source",
    "render_template",
    "template_slots",
]
