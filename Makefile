# Every target installs what it needs: a fresh clone only needs Python >= 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser module (clutchcall/web): plain ES modules; TypeScript checks their
# JSDoc types and ESLint lints them; Node's test runner runs tests/web/*.test.mjs.
WEB := clutchcall/web
NODE_STAMP := $(WEB)/node_modules/.installed
# The sans-IO protocol core must stay at >= 95 % line coverage.
COVERAGE := --cov=clutchcall.moqt --cov-report=term:skip-covered --cov-fail-under=95

.PHONY: install test pytest nodetest lint weblint format generate check-generated demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[audio,dev,trio,test]'
	touch $(STAMP)

$(NODE_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

## The README's test command: generated-code check, lint, types, then the whole suite.
test: $(STAMP) $(NODE_STAMP) check-generated lint nodetest pytest

nodetest: $(NODE_STAMP)
	node --test tests/web/

pytest: $(STAMP)
	@# pytest's exit code 5 means it collected nothing: report it as the failure it is.
	$(BIN)/python -m pytest $(COVERAGE) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

lint: $(STAMP) weblint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# The layers (pyproject.toml, [tool.importlinter]): imports point down only.
	$(BIN)/lint-imports --no-logo --no-cache

weblint: $(NODE_STAMP)
	cd $(WEB) && node_modules/.bin/tsc -p tsconfig.json --checkJs --noEmit
	$(WEB)/node_modules/.bin/eslint -c $(WEB)/eslint.config.js $(WEB) tests/web

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

generate: $(STAMP)
	$(BIN)/python codegen/generate.py

check-generated: $(STAMP)
	$(BIN)/python codegen/generate.py --check

## The README's main job: a call against the embedded dev engine.
demo: $(STAMP)
	$(BIN)/python -m clutchcall.demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache $(WEB)/node_modules
