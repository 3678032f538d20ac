#!/usr/bin/env bash
# Train every model on Rain100L for a fixed wall-time budget, then measure it on the full
# Rain100L test split with `derain eval`. Reproduces the shipped `rain100l` weights:
#   bash scripts/train_all.sh [MINUTES_PER_MODEL] [MODELS...]
# Outputs: runs/<model>_rain100l/ (log.csv, checkpoints, export/), results/rain100l/<model>/.
# Ship a run with: .venv/bin/python scripts/ship_weights.py runs/<model>_rain100l results/rain100l/<model>
set -euo pipefail
cd "$(dirname "$0")/.."
MIN="${1:-17}"; shift || true
MODELS=("${@:-dsmnet rranet jdnet mfan msamnet}")
DATA="${DERAIN_DATA:-../shared/data}"
for m in ${MODELS[@]}; do
  echo "=== $m: train ${MIN} min ($(date -u +%H:%M:%S))"
  .venv/bin/derain train "$m" --data "$DATA/Rain100L_train" --minutes "$MIN" --batch 8 --patch 64 \
      --val-every 100 --threads 2 --no-progress --overwrite --out "runs/${m}_rain100l"
  echo "=== $m: eval on Rain100L test ($(date -u +%H:%M:%S))"
  DERAIN_WEIGHTS_DIR="runs/${m}_rain100l/export" .venv/bin/derain eval --data "$DATA/Rain100L_test" \
      --models "$m" --variant rain100l --out "results/rain100l/$m"
done
echo "=== done ($(date -u +%H:%M:%S))"
