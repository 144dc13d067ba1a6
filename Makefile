# The two commands of the README: `make demo` (whole pipeline, end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/logsig demo

lint: venv
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

# Figures for the README; each writes JSON to benchmarks/results/ (several minutes in all);
# the bench extra adds matplotlib for the batch-size sweep plot.
bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.scan
	$(PY) -m benchmarks.e2e
	$(PY) -m benchmarks.gateway
	$(PY) -m benchmarks.analyze

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
