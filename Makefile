# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both build the virtualenv themselves on a fresh machine. torch is pinned to the CPU build first,
# so the range in pyproject.toml is already satisfied and pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/loragen demo

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
