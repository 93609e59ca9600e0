# Two commands do all setup on a fresh machine:
#   make demo   start the whole system with demo data (http://127.0.0.1:8000/docs)
#   make test   install what the tests need and run them
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Browser tests drive Debian's Chromium (no browser download at run time).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit bench-router bench-homecare contracts clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-test
	$(BIN)/homecare up --port $(PORT)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

test: $(VENV)/.installed-test $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests/unit tests/contract

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

contracts: $(VENV)/.installed-test
	$(BIN)/homecare contracts export

bench-router: $(VENV)/.installed-bench
	$(BIN)/python -m bench.router.solomon --time-limit 10 $(ARGS)

bench-homecare: $(VENV)/.installed-bench
	$(BIN)/python -m bench.router.homecare $(ARGS)

clean:
	rm -rf var .pytest_cache
