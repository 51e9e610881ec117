"""Test set-up: one temporary WORKBENCH_HOME for the session that reuses the prepared models,
and a fresh store per test (WORKBENCH_STORE), so tests never touch a user's runs."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Resolved before the session home replaces WORKBENCH_HOME: where `make test` prepared the models.
from workbench.home import models_dir  # noqa: E402

REAL_MODELS_DIR = models_dir()
EMBEDDED = ("gemma-3-270m", "smollm2-135m-instruct")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runapi", action="store_true", help="run live API tests (need API keys)")


_SESSION_HOME = Path(tempfile.mkdtemp(prefix="workbench-test-home-"))


def pytest_configure(config: pytest.Config) -> None:
    home = _SESSION_HOME
    (home / "models").symlink_to(REAL_MODELS_DIR, target_is_directory=True)
    os.environ["WORKBENCH_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes to its own store file."""
    path = tmp_path / "store.sqlite"
    monkeypatch.setenv("WORKBENCH_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def embedded_models() -> tuple[str, ...]:
    """The embedded pair, prepared (a no-op after `make test`'s prepare step). Fails, never skips."""
    from workbench.backends import hf
    from workbench.registry import load_registry

    registry = load_registry()
    for name in EMBEDDED:
        hf.prepare_model(registry.get(name))
    return EMBEDDED


@pytest.fixture
def sampler(embedded_models, fresh_store):
    """A quiet Sampler on this test's store."""
    from workbench.sampler import Sampler

    s = Sampler(store=fresh_store, progress=False)
    yield s
    s.store.close()


@pytest.fixture(scope="module")
def module_sampler(embedded_models, tmp_path_factory):
    """One quiet Sampler per test module on its own store: what the module samples and scores is cached
    across its tests (the lens modules share steered models, captures and runs this way)."""
    from workbench.sampler import Sampler

    s = Sampler(tmp_path_factory.mktemp("module-store") / "store.sqlite", progress=False)
    yield s
    s.close()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the installed `workbench` command in a fresh process."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_limited(args: list[str], env: dict[str, str], memory_gb: float = 3.0, timeout: float = 120):
    """The CLI in a child process with at most `memory_gb` of address space and `timeout` seconds; (result, seconds).

    For the cases that used to exhaust memory or stall: the limit turns a regression into a failure, not a hang.
    """
    import resource
    import subprocess
    import time

    def limit() -> None:
        size = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, **env}, preexec_fn=limit, cwd=REPO)
    return result, time.monotonic() - started


# A narrow answer space on a bare instruction: both embedded models put ~99 % of their mass outside it
# (measured: P(other) 0.991 for the base, 0.989 for the tuned model at T=1, exact).
NARROW = """name: narrow
description: A number from 1 to 50 where the models mostly answer outside the space.
version: 1
defaults: {kind: completion}
prompts:
  - id: number-1-50
    description: A number from 1 to 50 as a bare instruction.
    text: "Think of a number from 1 to 50."
    answer_space: {integers: {start: 1, stop: 50}, normaliser: first-number}
    sampling: {max_tokens: 4}
"""
