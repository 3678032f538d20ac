#!/usr/bin/env bash
# One command: set everything up and start the Gradio demo on the bundled weights and examples.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh app
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/python app/gradio_app.py "$@"
