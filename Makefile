# `make demo` and `make test` each set up .venv first (tools/setup_env.sh; a no-op once done).
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: setup demo test test-fast clean-venv

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) -m resnet_gluon demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not distributed" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
