# Thin wrappers; ./run and ./test are the real entry points (see README).
# uv comes from PATH, .tools/bin/uv, or is bootstrapped there (scripts/bootstrap-uv.sh).
UV ?= $(shell sh scripts/bootstrap-uv.sh)

.DEFAULT_GOAL := help
.PHONY: help install serve test lint fmt typecheck bench ci

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

install:  ## install the locked environment (with dev tools) into .venv
	$(UV) sync --frozen

serve:  ## run the API (embedded PostgreSQL unless AUDIT_DATABASE_URL is set)
	./run

test:  ## run the test suite; pass pytest args with ARGS="..."
	./test $(ARGS)

lint:  ## formatting and lint checks
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

fmt:  ## format and apply safe lint fixes
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

typecheck:  ## mypy over the packages listed in pyproject.toml
	$(UV) run --frozen mypy

bench:  ## run the benchmark (bench/bench.py)
	$(UV) run --frozen python bench/bench.py

ci:  ## what CI runs
	.ci/run
