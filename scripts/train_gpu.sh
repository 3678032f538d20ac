#!/usr/bin/env bash
# Train all five networks on a CUDA machine within MINUTES (total) from the shipped weights, and
# write weights, cards, curves and a log into OUT as at most 8 files of at most 16 MiB each.
#   scripts/train_gpu.sh MINUTES OUT [more train_gpu.py options, e.g. --parts .pack/part0 --tiny]
# Before: python -m derain_core.pack ../shared/data/Rain100L_train .pack   (the lossless pack)
# After, here: scripts/receive_gpu.sh FILES_DIR, then derain eval + scripts/ship_weights.py per model.
# Uses .venv/bin/python when present, else python3 (the GPU image's PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/train_gpu.sh MINUTES OUT [options]" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
mkdir -p "$2"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -o pipefail
"$PY" scripts/train_gpu.py "$@" 2>&1 | tee "$2/train_gpu.log"
