# `make demo` and `make test` each set up .venv first (tools/setup_env.sh; a no-op once done).
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: setup demo test test-fast docs clean-venv

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) -m resnet_gluon demo $(DEMO_ARGS)

# On two pytest workers, the distributed tests taking turns (tools/run_tests.sh says how and why).
test: setup
	PY=$(PY) bash tools/run_tests.sh $(PYTEST_ARGS)

test-fast: setup
	PY=$(PY) bash tools/run_tests.sh -m "not slow and not distributed" $(PYTEST_ARGS)

# The API reference (docs/_build/html/index.html); a Sphinx warning is an error, as in tests/test_package.py.
docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean-venv:
	rm -rf $(VENV)
