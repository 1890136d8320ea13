# Two commands on a fresh machine with only Python 3.10+ and pip:
#   make run    creates .venv on first use, then runs the main job (python -m fedsim.run)
#   make test   creates .venv on first use, then runs the test suite
#   make typecheck  runs mypy over fedsim, actors and sweeps (configuration: pyproject.toml)
# torch is installed first, pinned, so that pip never pulls a multi-GB CUDA build on
# CPU-only machines.  GPU users: make TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: run test typecheck bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.installed
	$(PY) -m fedsim.run $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q $(ARGS)

typecheck: $(VENV)/.installed
	$(PY) -m mypy

bench: $(VENV)/.installed
	$(PY) benchmarks/dp_step.py

clean:
	rm -rf $(VENV) runs
