# Every install step lives here: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "pip==26.3"  # pinned: every install step is reproducible
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunewatch demo

# Three workers on two cores: tests take their own ports, temp dirs and PostgreSQL schemas,
# so any three can run at once (the dashboard tests copy one demo store:
# tests/dashboard/conftest.py). Many tests wait on a process, a deadline or a delivery, so
# two workers kept the cores ~70 % busy: three took the suite from 695 s to 617 s here, and
# four were no faster (621 s). The slowest tests are listed at the end: CI must stay under
# 20 minutes on two cores.
# Bytecode is compiled first even where PYTHONDONTWRITEBYTECODE is set (this machine's
# default): every `tunewatch serve`/worker process a test starts, and every new store's
# migrations (Alembic loads them from source), otherwise compile the sources again.
test: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 monitor shadow retune tunewatch tests bench
	$(BIN)/python -m pytest -n 3 --dist worksteal --durations=25

lint: $(STAMP)
	$(BIN)/ruff check monitor shadow retune tunewatch tests bench
	$(BIN)/mypy

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/warmstart.py
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) .tunewatch-demo .pytest_cache .mypy_cache .ruff_cache
	find monitor shadow retune tunewatch tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
