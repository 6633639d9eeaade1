# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make run   -> installs into .venv and serves the web UI on http://127.0.0.1:8090
#   make test  -> installs test dependencies, then runs the whole suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
HOST    ?= 127.0.0.1
PORT    ?= 8090
APT_RUN  := libseccomp2 nftables iproute2
APT_TEST := libseccomp2 nftables iproute2 chromium gcc libc6-dev libseccomp-dev strace redis-server postgresql curl wget
APT_BENCH := $(APT_TEST) firejail
PYTEST_ARGS ?=

.PHONY: run test lint fmt bench bench-quick screenshots clean deps-run deps-test deps-bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@ $(VENV)/.stamp-run

deps-run:
	@scripts/ensure-apt.sh $(APT_RUN)

deps-test:
	@scripts/ensure-apt.sh $(APT_TEST)

deps-bench:
	@scripts/ensure-apt.sh $(APT_BENCH)

$(VENV)/.stamp-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dev,bench]'
	touch $@ $(VENV)/.stamp-test $(VENV)/.stamp-run

run: deps-run $(VENV)/.stamp-run
	$(BIN)/bubble serve --host $(HOST) --port $(PORT)

test: deps-test $(VENV)/.stamp-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(VENV)/.stamp-test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: deps-bench $(VENV)/.stamp-bench
	$(BIN)/python bench/run.py

bench-quick: deps-bench $(VENV)/.stamp-test
	$(BIN)/python bench/run.py --quick

screenshots: deps-test $(VENV)/.stamp-test
	BUBBLE_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/browser

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info tests/probes/bin bench/out
