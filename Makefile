# The README's commands. Each target builds .venv on first use and reinstalls only when
# pyproject.toml changes (stamp files inside .venv record what was installed).
#
#   make demo    install deepgrad, run the demo
#   make test    install deepgrad with the test extras and the PyTorch oracle, run pytest
#   make bench   install like test, run benchmarks/run.py (ARGS=--quick: under a minute;
#                ARGS=--readme: also put the table into README.md)
#   make clean   remove .venv and build/test leftovers

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q
# Kept in step with the `oracle` and `mkl` extras in pyproject.toml.
ORACLE ?= torch==2.13.0
# tbb-devel: the headers deepgrad/_native/parallel.cpp builds against (MKL's TBB threads)
MKL ?= mkl>=2024 tbb-devel
DEMO ?= examples/mnist_demo.py
THREADS ?= 2
ARGS ?=
# Serial by default: with pytest-xdist, `PYTEST_ARGS='-n 2'` was slower on this suite, since each
# worker pays the torch import. Re-measure when the suite grows.
PYTEST_ARGS ?=

DEEPGRAD_DATA ?= $(abspath ../shared/datasets)
export DEEPGRAD_DATA

.PHONY: demo test bench clean

demo: $(VENV)/.stamp-base
	$(PY) $(DEMO)

test: $(VENV)/.stamp-test $(VENV)/.stamp-oracle $(VENV)/.stamp-mkl
	@$(PY) -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' || \
		echo 'WARNING: PyTorch is not installed; tests that use it as an oracle will be skipped.'
	@# pytest exits 5 when it collects nothing; say so loudly but do not fail the run on it.
	@echo '$(PY) -m pytest $(PYTEST_ARGS)'; \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'WARNING: pytest collected no tests.'; exit 0; fi; \
	exit $$rc

bench: $(VENV)/.stamp-bench $(VENV)/.stamp-oracle $(VENV)/.stamp-mkl
	$(PY) benchmarks/run.py --threads $(THREADS) $(ARGS)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e '.[train]'
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install -e '.[test]'
	@touch $@

$(VENV)/.stamp-bench: pyproject.toml | $(PY)
	$(PIP) install -e '.[bench]'
	@touch $@

# The oracle is optional: if it cannot be installed, warn and go on (its tests skip).
# The stamp records the attempt, so a failing install is not retried on every run;
# `make clean` or a change to pyproject.toml tries again.
$(VENV)/.stamp-oracle: pyproject.toml | $(PY)
	$(PIP) install '$(ORACLE)' || \
		echo 'WARNING: could not install $(ORACLE); oracle tests will be skipped.'
	@touch $@

# MKL is deepgrad's optional GEMM (deepgrad/_native/mkl.py); the tests check it against NumPy
# and the benchmarks use it. Where it cannot be installed, deepgrad runs on NumPy's BLAS.
$(VENV)/.stamp-mkl: pyproject.toml | $(PY)
	$(PIP) install $(foreach p,$(MKL),'$(p)') || \
		echo 'WARNING: could not install $(MKL); GEMMs use NumPy and the MKL tests are skipped.'
	@touch $@

clean:
	rm -rf $(VENV) build dist .pytest_cache *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
