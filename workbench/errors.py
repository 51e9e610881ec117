"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class WorkbenchError(Exception):
    """A mistake the user can fix (bad input, unknown model, missing package); no traceback."""


class ConfigError(WorkbenchError):
    """A sampling config, registry entry or prompt that does not validate."""


class UnknownModelError(WorkbenchError):
    """A model name that is not in the registry."""


class MissingPackageError(WorkbenchError):
    """A backend whose Python package is not installed; the message names the pip install."""


class StoreError(WorkbenchError):
    """A run store that cannot be opened or read."""
