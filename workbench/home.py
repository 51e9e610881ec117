"""Where the workbench keeps its store, prepared models, exports and user registry."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "WORKBENCH_HOME"
STORE_ENV = "WORKBENCH_STORE"


def _checkout_data_dir() -> Path | None:
    """The `data/` folder of the checkout this package was installed from (editable installs)."""
    package_dir = Path(__file__).resolve().parent
    checkout = package_dir.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    return None


def checkout_data_dir() -> Path | None:
    """This checkout's `data/` folder (editable installs), where shipped files such as tuned adapters live."""
    return _checkout_data_dir()


def workbench_home() -> Path:
    """`$WORKBENCH_HOME`, else the checkout's `data/` folder, else `~/.workbench`; created if missing.

    Resolved from the package location, not the current directory, so a notebook in
    `notebooks/`, the CLI and a widget thread all share one store.
    """
    configured = os.environ.get(HOME_ENV)
    if configured:
        home = Path(configured).expanduser().resolve()
    else:
        home = _checkout_data_dir() or Path.home() / ".workbench"
    home.mkdir(parents=True, exist_ok=True)
    return home


def store_path() -> Path:
    """The SQLite run store: `$WORKBENCH_STORE` if set (one store per project), else inside the home."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return workbench_home() / "workbench.sqlite"


def models_dir() -> Path:
    """Prepared (converted) model weights live here, one folder per registry name."""
    path = workbench_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def exports_dir() -> Path:
    """Figures and exported runs."""
    path = workbench_home() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_registry_path() -> Path:
    """The user's model registry, which extends and overrides the packaged one."""
    return workbench_home() / "models.yaml"
