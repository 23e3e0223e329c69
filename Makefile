# Every target sets itself up from nothing: a .venv with the package, then what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
ARGS ?=

.PHONY: venv native tools test test-unit test-integration demo bench lint clean

$(STAMP): pyproject.toml requirements-tools.txt tests/deploy/requirements-checkov.txt scripts/deploy-tools-venv.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -r requirements-tools.txt
	$(BIN)/python -m pip check
	# checkov pins packaging<24 (pytest 9 needs >=24): it gets a venv of its own.
	PY=$(PY) scripts/deploy-tools-venv.sh $(VENV)/deploy-tools
	touch $@

venv: $(STAMP)

# The compiled core (mypyc, `streams.native`): rebuilt when the sources changed; if it cannot be
# built pql says so and runs pure Python.
native: venv
	$(BIN)/python -m streams.native build

# Debian tools the tests call for real (promtool from `prometheus`); installed only if missing.
# Then the real Kafka broker's jars (Maven Central, cached in ~/.cache/pql-streams and ~/.m2).
tools: venv
	scripts/ensure-debian-tools.sh
	$(BIN)/python -m streams.broker.kafka

test: venv tools native
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv tools native
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

demo: venv native
	$(BIN)/python -m streams.io.demo

bench: venv native
	$(BIN)/python -m bench.run $(ARGS)

lint: venv
	$(BIN)/ruff check streams tests
	$(BIN)/mypy streams

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .pql-data
