#!/usr/bin/env bash
# Create the separate venv that runs a real MLflow tracking server for the registry tests.
#
#   bash scripts/mlflow-server-venv.sh [DIR]     (default: .venv-mlflow; `make mlflow-venv`)
#
# ftci's own venv holds only the client (`ftci[mlflow]`: mlflow-skinny 3.17.2, which adds
# packages and changes none). The server needs the full `mlflow==3.17.2`, which pins
# pyarrow<26 and would downgrade ftci's pyarrow 26.0.1 to 25.0.1 (pip install --dry-run,
# 2026-12-03), so it lives here; tests/helpers/mlflow_server.py starts `DIR/bin/mlflow server`.
# mlflow 3.18.0 does not install (its mlflow-skinny 3.18.0 is not on the index; STACK-NOTES).
#
# Idempotent: a stamp file records the exact recipe. Environment: MLFLOW_VENV_PYTHON (base
# interpreter, default python3.11), MLFLOW_PIP_ARGS (extra pip options, e.g. an index URL).
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

DIR="${1:-.venv-mlflow}"
PYTHON="${MLFLOW_VENV_PYTHON:-python3.11}"
PIP_ARGS="${MLFLOW_PIP_ARGS:-}"
RECIPE="mlflow==3.17.2"
STAMP="$DIR/.ftci-mlflow-installed"

venv_begin "MLflow server venv" "$DIR" "$PYTHON" "$RECIPE" "$STAMP" mlflow \
    "about 850 MB, about a minute"
# shellcheck disable=SC2086  # PIP_ARGS is a word list
"${pip[@]}" install --quiet $PIP_ARGS "$RECIPE"
"$DIR/bin/python" -c "import mlflow; print('mlflow', mlflow.__version__)"
venv_end "MLflow server venv" "$DIR" "$RECIPE" "$STAMP"
