"""The architecture is executable: the import graph has no cycles (also not through a package's
__init__), nothing imports the lazy root package, and the import-linter contracts catch a broken arrow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The package's import graph as import-linter sees it (imports for type hints only left out)."""
    return grimp.build_graph("workbench", exclude_type_checking_imports=True, cache_dir=None)


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycles_anywhere_in_the_package(graph):
    assert strongly_connected(graph) == []


def test_nothing_imports_the_lazy_root_package(graph):
    # `workbench/__init__.py` loads the Sampler on attribute access, where import-linter cannot see it:
    # `from workbench import Sampler` inside the package would hide an arrow, so it is not allowed.
    importers = {m for m in graph.find_modules_that_directly_import("workbench") if m != "workbench"}
    assert importers == set()


def test_the_contracts_fail_on_a_broken_arrow(tmp_path):
    """A copy of the package where the store imports a face: lint-imports must refuse it."""
    shutil.copytree(REPO / "workbench", tmp_path / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "workbench" / "store" / "ids.py").open("a") as ids:
        ids.write("\nimport workbench.cli  # a store that knows a face\n")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode != 0
    assert "workbench.store.ids -> workbench.cli" in result.stdout
