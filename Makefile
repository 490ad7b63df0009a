# CalmOps: `make demo` and `make test` each bootstrap their own environment (.venv from uv.lock).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit bench lint down clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==0.13.8

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/calmops demo

test: install
	bash scripts/ensure-chromium.sh
	$(VENV)/bin/pytest

test-unit: install
	$(VENV)/bin/pytest -m "not integration and not e2e"

bench: install
	$(VENV)/bin/python bench/flow_overhead.py

lint: install
	$(VENV)/bin/ruff check calmops tests bench
	$(VENV)/bin/lint-imports

down: install
	$(VENV)/bin/calmops down

clean:
	rm -rf $(VENV) .tools .pytest_cache
