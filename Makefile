# One-command entry points. `make test` provisions every backend the suite needs, then runs it.
PYTHON ?= python3
INSPECTOR_VERSION ?= 2.12.0

.PHONY: install backends backends-down inspector test lint schema

install:
	$(PYTHON) -m pip install -e '.[test]'

backends:
	scripts/dev/slurm-cluster up
	scripts/dev/s3 up
	scripts/dev/docker up
	scripts/dev/k8s up

backends-down:
	-scripts/dev/k8s down
	-scripts/dev/docker down
	-scripts/dev/s3 down
	-scripts/dev/slurm-cluster down

inspector: .tools/inspector/node_modules/.bin/mcp-inspector

.tools/inspector/node_modules/.bin/mcp-inspector:
	npm install --prefix .tools/inspector --no-audit --no-fund @modelcontextprotocol/inspector@$(INSPECTOR_VERSION)

lint:
	ruff check .
	ruff format --check .
	mypy

schema:
	tao-mcp schema --write

test: backends inspector
	$(PYTHON) -m pytest
	$(PYTHON) -m benchmarks --quick  # fails only on a broken benchmark, never on a noisy ratio
