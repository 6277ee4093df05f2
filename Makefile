# Everyday tasks; every target but clean builds .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so pip runs again only when pyproject.toml changes.
STAMP := $(VENV)/.installed

.PHONY: venv test test-cluster run lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

# Every tier on a standalone server, then the integration tier again on a cluster.
test: venv
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-cluster

# The integration and end-to-end tests on a Redis Cluster of three masters, started
# from the same server binary (or STREAMCART_TEST_CLUSTER_URL, redis+cluster://...).
test-cluster: venv
	STREAMCART_TEST_CLUSTER=1 $(BIN)/pytest $(PYTEST_ARGS)

run: venv
	$(BIN)/streamcart up --demo

lint: venv
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/bus.py

# Build outputs and caches only: .venv and the .streamcart data directory stay.
clean:
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
