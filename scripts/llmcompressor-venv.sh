#!/usr/bin/env bash
# Create the separate venv in which ftci quantizes a release with llm-compressor.
#
#   bash scripts/llmcompressor-venv.sh [DIR]     (default: .venv-llmc; `make llmc-venv` calls this)
#
# llm-compressor 0.14 pins transformers>=5.15,<=5.17 and compressed-tensors==0.19; ftci's venv
# has transformers 5.24 and vLLM's CPU venv pins compressed-tensors 0.17, so it lives in a third
# venv (STACK-NOTES, "Tried here on 2026-12-02"). ftci runs it as a subprocess
# (ftci/release/_llmc_worker.py, a standalone script: nothing of ftci is imported there), so no
# ftci dependency is installed into it. torch goes first: a plain resolve pulls a multi-GB CUDA
# build.
#
# Idempotent: a stamp file records the exact recipe; a second run with the same recipe does
# nothing. Environment: LLMC_VENV_PYTHON (base interpreter, default python3.11), LLMC_PIP_ARGS
# (extra pip options, e.g. an index URL).
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

DIR="${1:-.venv-llmc}"
PYTHON="${LLMC_VENV_PYTHON:-python3.11}"
PIP_ARGS="${LLMC_PIP_ARGS:-}"
TORCH_SPEC="torch==2.13.0"
LLMC_SPEC="llmcompressor==0.14.0.1"
RECIPE="$TORCH_SPEC $LLMC_SPEC"
STAMP="$DIR/.ftci-llmc-installed"

venv_begin "llm-compressor venv" "$DIR" "$PYTHON" "$RECIPE" "$STAMP" python \
    "about 1.5 GB, 1-2 minutes"
# shellcheck disable=SC2086  # PIP_ARGS is a word list
"${pip[@]}" install --quiet $PIP_ARGS "$TORCH_SPEC"
# shellcheck disable=SC2086
"${pip[@]}" install --quiet $PIP_ARGS "$LLMC_SPEC" "$TORCH_SPEC"
"$DIR/bin/python" -c "import llmcompressor, compressed_tensors, torch, transformers; print('llmcompressor', llmcompressor.__version__, 'compressed-tensors', compressed_tensors.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
venv_end "llm-compressor venv" "$DIR" "$RECIPE" "$STAMP"
