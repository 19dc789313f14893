# Two commands do all the set-up on a fresh machine:
#   make run   - virtual environment, install, pull the model, run the main job (train + evaluate + report)
#   make test  - virtual environment, install, pull the model, lint, run the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13.0 (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,dense
PROFILE ?= default
PYTEST_ARGS ?=

.PHONY: setup model browser test lint run clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

model: setup
	$(BIN)/tapo model pull

# Headless Chromium renders the HTML report in the report tests (Debian package; needs root and apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: model lint browser
	$(BIN)/pytest $(PYTEST_ARGS)

run: model
	$(BIN)/tapo pipeline run --profile $(PROFILE)

# Every benchmark, then docs/benchmarks.md's figures from their results; BENCH_ARGS=--quick for a smoke run.
.PHONY: bench
bench: model
	BENCH_PYTHON=$(BIN)/python benchmarks/run_all.sh $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs
