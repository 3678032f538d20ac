#!/usr/bin/env bash
# Publish this repository as a Hugging Face Space.
#   scripts/publish_space.sh gradio    USER/NAME   # Gradio demo: ZeroGPU (free route) or CPU hardware
#   scripts/publish_space.sh dashboard USER/NAME   # Streamlit dashboard as a Docker Space
# Needs `pip install huggingface_hub` and `hf auth login` (a write token). STAGE_ONLY=1 only
# builds the folder that would be uploaded and prints its path (no network, no account).
# What goes up: the committed files of HEAD (git archive), nothing from .venv, runs/ or data.
# The Gradio Space uses README.md's front matter as it is; the dashboard Space gets the same
# README with `sdk: docker` and `app_port: 7860` (the Dockerfile serves the dashboard there).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || { [ "$1" != gradio ] && [ "$1" != dashboard ]; }; then
  echo "usage: scripts/publish_space.sh gradio|dashboard USER/NAME" >&2
  exit 2
fi
kind="$1"
space="$2"
stage="$(mktemp -d)/space"
mkdir -p "$stage"
git archive HEAD | tar -x -C "$stage"
if [ "$kind" = dashboard ]; then
  # Front matter of a Docker Space: the Dockerfile's default APP is the dashboard, on port 7860.
  python3 - "$stage/README.md" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
head, sep, body = text[4:].partition("\n---\n")
keep = [l for l in head.splitlines() if not re.match(r"(sdk|sdk_version|python_version|app_file|app_port|suggested_hardware):", l)]
keep += ["sdk: docker", "app_port: 7860"]
open(path, "w", encoding="utf-8").write("---\n" + "\n".join(keep) + "\n---\n" + body)
PY
fi
if [ "${STAGE_ONLY:-0}" = 1 ]; then
  echo "$stage"
  exit 0
fi
sdk=gradio
[ "$kind" = dashboard ] && sdk=docker
hf repo create "$space" --repo-type space --space-sdk "$sdk" --exist-ok
hf upload "$space" "$stage" . --repo-type space --commit-message "Publish $(git rev-parse --short HEAD)"
echo "published: https://huggingface.co/spaces/$space"
