#!/usr/bin/env bash
# Create .venv and install the project. Usage: scripts/setup.sh [extras]   (default extras: app)
# torch is installed first and pinned to the CPU build (an unpinned torch pulls GBs of CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-app}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import torch, derain_core; print('setup ok: torch', torch.__version__)"
