#!/usr/bin/env bash
# One command: set everything up and run the whole test suite (CPU).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh "app,dev"
# Browser tests drive Debian's Chromium; install it when missing and we are allowed to.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
export GRADIO_ANALYTICS_ENABLED=False STREAMLIT_BROWSER_GATHER_USAGE_STATS=false HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=20 "$@"
