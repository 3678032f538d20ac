#!/usr/bin/env bash
# After a training chunk: evaluate its exported weights and run the sanity checks, ready for
# scripts/ship_weights.py (training.md's end of a chunk).
#
#   bash scripts/finish_chunk.sh runs/msamnet_rain100l_c4 [TEST_DIR]
#
# Started beside a running chunk, it first waits until no `derain_core.train` process is left
# (never two CPU jobs at once). Then, for the model and variant named in RUN/export/*.json:
#   derain eval on TEST_DIR (all pairs, and the rainy input's own scores)
#                                        -> RUN/eval/ (eval_summary.json, eval_per_image.csv), RUN/eval.log
#   scripts/sanity_checks.py             -> RUN/sanity.json, RUN/sanity.log
#   scripts/maps_follow_streaks.py       -> RUN/maps_before.txt (the shipped weights the engine picks),
#                                           RUN/maps_after.txt (this chunk's): how well each inspector map
#                                           marks the streaks of astronaut_light (heavy: astronaut_heavy)
# TEST_DIR defaults to the variant's test set in scripts/ship_weights.py TEST_SETS (Rain100L_test for
# `rain100l` weights; for `heavy` ones runs/synthetic_storm_test, made here on first use).
# Ship afterwards with
#   .venv/bin/python scripts/ship_weights.py RUN RUN/eval
set -uo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: finish_chunk.sh RUN_DIR [TEST_DIR]}
card=$(ls "$run"/export/*.json 2>/dev/null | head -1)
while pgrep -f "derain_core.train" >/dev/null; do sleep 20; done
[ -n "$card" ] || card=$(ls "$run"/export/*.json 2>/dev/null | head -1)
[ -n "$card" ] || { echo "no exported weights in $run/export (did the chunk finish?)"; exit 1; }
read -r model variant < <(.venv/bin/python -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['model_id'], c['variant'])" "$card")
# the variant's test set and the script that makes it: scripts/ship_weights.py TEST_SETS, the one place
{ read -r data; read -r make_args; } < <(.venv/bin/python -c "import sys; sys.path.insert(0, 'scripts')
from ship_weights import TEST_SETS
folder, make = TEST_SETS.get(sys.argv[1], ('', None)); print(folder); print(make or '')" "$variant")
[ $# -ge 2 ] && data=$2
[ -n "$data" ] || { echo "no test set known for variant $variant; pass TEST_DIR"; exit 1; }
if [ $# -lt 2 ] && [ -n "$make_args" ] && [ ! -d "$data/rainy" ]; then
  # shellcheck disable=SC2086  # the arguments are words on purpose
  .venv/bin/python $make_args || exit 1
fi
echo "$(date -u +%H:%M:%S) eval $model ($variant) on $data"
DERAIN_WEIGHTS_DIR="$run/export" .venv/bin/derain eval --data "$data" --models "$model" --variant "$variant" \
  --input-baseline --out "$run/eval" > "$run/eval.log" 2>&1 || { tail -5 "$run/eval.log"; exit 1; }
tail -6 "$run/eval.log"
echo "$(date -u +%H:%M:%S) sanity checks"
.venv/bin/python scripts/sanity_checks.py --models "$model" --variant "$variant" --weights-dir "$run/export" \
  --json "$run/sanity.json" > "$run/sanity.log" 2>&1
cat "$run/sanity.log"
example=astronaut_light
[ "$variant" = heavy ] && example=astronaut_heavy
echo "$(date -u +%H:%M:%S) maps against the streaks of $example (RUN/maps_before.txt, RUN/maps_after.txt)"
.venv/bin/python scripts/maps_follow_streaks.py --models "$model" --example "$example" > "$run/maps_before.txt" 2>&1
DERAIN_WEIGHTS_DIR="$run/export" .venv/bin/python scripts/maps_follow_streaks.py --models "$model" \
  --variant "$variant" --example "$example" > "$run/maps_after.txt" 2>&1
echo "$(date -u +%H:%M:%S) done"
