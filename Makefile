# Two commands do all the set-up: `make run` (the whole system locally) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Playwright drives the system chromium (below); it never fetches a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test lint e2e bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start Tansu, set up, run all four services; Ctrl-C stops
	$(BIN)/python -m misc.run_local_stack

test: $(STAMP) browser  ## the whole suite against real Postgres, RabbitMQ and a private Tansu
	$(BIN)/python -m pytest

# The dashboard test drives Debian's headless Chromium through Playwright (never
# `playwright install`). Installed here when missing and we are root; otherwise
# that test fails and says what to install.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium not found and not root: the browser test will fail (apt-get install chromium)"; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .

e2e: $(STAMP)  ## against a running `make run`
	$(BIN)/python -m misc.local_e2e_test

bench: $(STAMP)  ## against a running `make run`; flags: docs/benchmarks.md, "How to run"
	$(BIN)/python -m misc.bench

clean:
	rm -rf $(VENV) artifacts .pytest_cache
