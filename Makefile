# The README's two commands: `make demo` (set up, then run the whole loop on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup lint bench clean

$(BIN)/ltr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/ltr

demo: setup
	$(BIN)/ltr demo

test: setup
	scripts/system-deps
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check
	$(BIN)/mypy

clean:
	rm -rf $(VENV) ltr-demo ltr_home
