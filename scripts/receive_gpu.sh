#!/usr/bin/env bash
# Unpack what scripts/train_gpu.sh wrote (FILES_DIR: <model>.tar or <model>.tar.partN pieces) into
# runs/<model>_<variant>_gpu/ run folders, ready for derain eval and scripts/ship_weights.py.
#   scripts/receive_gpu.sh FILES_DIR [RUNS_DIR]
set -euo pipefail
src="${1:?usage: scripts/receive_gpu.sh FILES_DIR [RUNS_DIR]}"
dst="${2:-runs}"
mkdir -p "$dst"
for tar in "$src"/*.tar; do
  [ -e "$tar" ] && tar -xf "$tar" -C "$dst" && echo "unpacked $(basename "$tar")"
done
for first in "$src"/*.tar.part0; do
  [ -e "$first" ] || continue
  base="${first%.part0}"
  cat $(ls "$base".part* | sort -V) | tar -xf - -C "$dst"
  echo "unpacked $(basename "$base") from $(ls "$base".part* | wc -l) pieces"
done
