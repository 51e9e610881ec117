"""Packaging: environment.yml agrees with pyproject.toml; the README and CI run the two commands."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO

CONDA_NAMES = {"torch": "pytorch"}  # conda-forge spells some packages differently


def requirement_key(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", requirement)
    name = re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")
    return name, match.group(2).replace(" ", "")


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = dict(requirement_key(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.update(requirement_key(r) for r in extra)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    listed: dict[str, str] = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-e") or entry in ("pip",) or entry.startswith("python="):
                continue
            name, spec = requirement_key(entry)
            listed[name] = spec
    for name, spec in declared.items():
        conda_name = CONDA_NAMES.get(name, name)
        key = conda_name if conda_name in listed else name
        assert key in listed, f"{name} is in pyproject.toml but not in environment.yml"
        assert listed[key] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {listed[key]!r}"
    assert set(listed) <= set(declared) | set(CONDA_NAMES.values())


def test_no_deps_packages_are_named_in_environment_yml_with_the_command():
    makefile = (REPO / "Makefile").read_text()
    no_deps = re.search(r"^NO_DEPS_PACKAGES := (.+)$", makefile, re.M).group(1).split()
    env_text = (REPO / "environment.yml").read_text()
    for package in no_deps:
        assert f"pip install --no-deps {package}" in env_text


def test_torch_is_a_range_in_pyproject_and_pinned_by_the_constraints():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'"torch>=[\d.]+"', pyproject)
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_readme_shows_the_two_commands_and_ci_runs_make_test():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert 'workbench = "workbench.cli:main"' in (REPO / "pyproject.toml").read_text()
