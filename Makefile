# CalmOps: `make demo` and `make test` each bootstrap their own environment (.venv from uv.lock).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit bench bench-cli screenshots lint down clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==0.13.8

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/calmops demo

test: install
	bash scripts/ensure-chromium.sh
	bash scripts/postgres.sh install  # once, before two workers could both install it
	$(VENV)/bin/pytest -n 2

test-unit: install
	$(VENV)/bin/pytest -m "not integration and not e2e"

bench: install
	$(VENV)/bin/python bench/flow_overhead.py

bench-cli: install
	$(VENV)/bin/python bench/cli_latency.py

# the viewer's browser test writes its screenshots into docs/images (tests use a temporary folder)
screenshots: install
	bash scripts/ensure-chromium.sh
	CALMOPS_SCREENSHOTS=$(CURDIR)/docs/images $(VENV)/bin/pytest -q tests/e2e/test_viewer_browser.py -k every_page

lint: install
	$(VENV)/bin/ruff check calmops tests bench
	$(VENV)/bin/lint-imports

down: install
	$(VENV)/bin/calmops down

clean:
	rm -rf $(VENV) .tools .pytest_cache
