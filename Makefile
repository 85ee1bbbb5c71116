# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dmp demo

test: $(STAMP)
	infra/check-services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The tier a developer runs while working: no servers to start, no PostgreSQL twin, no slow test.
# test_schema.py (slow as a whole) is not even imported: it builds its cases at import.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not distributed and not slow" --ignore=tests/api/test_schema.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	infra/check-services
	$(BIN)/python -m bench ingest --documents 2000 --workers 2
	$(BIN)/python -m bench validate --documents 1000
	$(BIN)/python -m bench crypto --size 1GiB --pipeline
	$(BIN)/python -m bench feed --lines 1000000
	$(BIN)/python -m bench retention --rows 5000000
	$(BIN)/python -m bench read --documents 100000 --concurrency 32
	$(BIN)/python -m bench upload --documents 8000 --clients 8 --pad-kib 128
	$(BIN)/python -m bench upload --documents 2000 --clients 8

clean:
	rm -rf .dmp
