# Two commands do all the set-up on a fresh machine:
#   make run   - virtual environment, install, pull the model, run the main job (train + evaluate + report)
#   make test  - virtual environment, install, pull the model, lint, run the test suite
# Each phase prints one line saying what it does; the long installs show pip's own progress.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0. On a stock Linux machine PyPI's torch is the multi-GB CUDA build; for the CPU build (~200 MB) take
# it from PyTorch's CPU index: `make run TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,dense
PROFILE ?= default
PYTEST_ARGS ?=

.PHONY: setup model browser test lint run clean

$(BIN)/.installed: pyproject.toml
	@echo "==> creating the virtual environment $(VENV) ($(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip"
	$(BIN)/pip install --quiet --upgrade pip
	@echo "==> installing $(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX)) (the largest download)"
	$(BIN)/pip install --progress-bar on "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@echo "==> installing tapo and its dependencies (extras: $(EXTRAS))"
	$(BIN)/pip install --progress-bar on -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

model: setup
	@echo "==> pulling SmolLM2-135M-Instruct into the model store (once; later runs reuse it)"
	$(BIN)/tapo model pull

# Headless Chromium renders the HTML report in the report tests only (Debian package `chromium`, installed with
# apt-get, which needs root). Without root the target says so and the suite goes on: those tests skip with the reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "==> Chromium for the report tests: already installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "==> installing Chromium for the report tests (apt-get install chromium)"; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "==> Chromium is not installed and installing it needs root (sudo apt-get install chromium):"; \
		echo "    the report-rendering tests will be skipped"; \
	fi

lint: setup
	@echo "==> lint: ruff check and ruff format --check"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: model lint browser
	@echo "==> running the test suite"
	$(BIN)/pytest $(PYTEST_ARGS)

run: model
	@echo "==> running the main job (profile $(PROFILE)); rerun to resume after an interruption"
	$(BIN)/tapo pipeline run --profile $(PROFILE)

# Every benchmark, then docs/benchmarks.md's figures from their results; BENCH_ARGS=--quick for a smoke run.
.PHONY: bench
bench: model
	BENCH_PYTHON=$(BIN)/python benchmarks/run_all.sh $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs
