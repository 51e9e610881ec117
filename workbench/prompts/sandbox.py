"""The one Jinja sandbox every template renders in: prompt bodies, framings, scored-as texts and transcripts.

Templates come from YAML files anyone may share, so they run in an immutable sandbox with
StrictUndefined: a file can fill slots and use plain filters, never reach Python internals, and a
missing variable is an error rather than an empty string.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workbench.errors import WorkbenchError

SANDBOX = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template_slots(source: str) -> set[str]:
    """The variable names a template uses; ValueError when it does not parse (for pydantic validators)."""
    try:
        return set(meta.find_undeclared_variables(SANDBOX.parse(source)))
    except TemplateError as exc:
        raise ValueError(f"template does not parse: {exc}") from None


def render_template(source: str, variables: dict[str, Any], where: str) -> str:
    """Fill a template in the sandbox; every failure is a WorkbenchError that names `where` and the fix."""
    try:
        return SANDBOX.from_string(source).render(**variables)
    except SecurityError as exc:
        raise WorkbenchError(
            f"{where}: the template reaches for Python internals ({exc}); templates may only fill "
            "{{ variables }} and use plain filters"
        ) from None
    except UndefinedError as exc:
        raise WorkbenchError(f"{where}: template variable missing ({exc}); add it to variables or grid") from None
    except TemplateError as exc:
        raise WorkbenchError(f"{where}: template error ({exc})") from None
