# The verbs a newcomer needs. Every target sets up .venv itself when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= city
DEMO_DIR ?= demo

.PHONY: test demo bench evaluate lab lint format clean kernel screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes: a second `make test` is fast. The `vigie` Jupyter
# kernel goes into .venv (--sys-prefix), so two checkouts never run each other's interpreter.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name vigie --display-name "Python (vigie)" >/dev/null
	touch $(STAMP)

kernel: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m pipelines.demo --scale $(SCALE) --dir $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Real-data and synthetic-city evaluation (docs/evaluation.md); the peers it compares with
# (pynssp: CDC's ESSENCE detectors) are the `eval` extra.
EVAL_STAMP := $(VENV)/.installed-eval
$(EVAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,eval]'
	touch $(EVAL_STAMP)

evaluate: $(EVAL_STAMP)
	$(BIN)/python -m bench.evaluate $(EVAL_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

# The README's pictures: the tiny demo's four reports (weekly, event brief, evaluation, explore)
# pictured at 1 280 px by headless Chromium into docs/img/ (commit them).
SHOTS_REPORTS ?= $(DEMO_DIR)/screenshots
screenshots: $(STAMP)
	$(BIN)/python -m pipelines.demo --scale tiny --dir $(DEMO_DIR) --reports $(SHOTS_REPORTS)
	$(BIN)/vigie report screenshots --reports $(SHOTS_REPORTS) --out docs/img

# The guard rails of docs/design.md: ruff (notebooks' code cells included, complexity rules), the
# import contract and size limits (tests/test_architecture.py), and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
