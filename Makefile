# Set-up and entry points. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= auto

.PHONY: run test bench model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests include parity with PyTorch / transformers (the `torch` extra, CPU build).
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,torch]"
	touch $@

## run: train the quickstart byte-level LM on the embedded corpus (about 5 minutes on 2 cores)
run: $(VENV)/.installed
	$(BIN)/jaxlab run experiments/quickstart.py

## model: fetch SmolLM2-135M-Instruct (GGUF, 98 MB) into the model cache; the tests use it
model: $(VENV)/.installed
	$(BIN)/jaxlab models fetch smollm2-135m-instruct

## test: the whole test suite
test: $(VENV)/.installed-test model
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15 -q

## bench: training throughput against PyTorch on this machine
bench: $(VENV)/.installed-test
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache
