#!/usr/bin/env bash
# One command: set everything up and start the Streamlit dashboard (http://localhost:8501).
# Extra arguments go to `streamlit run`, e.g. ./start_dashboard.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh app
export STREAMLIT_BROWSER_GATHER_USAGE_STATS=false HF_HUB_OFFLINE=1
echo "Starting the dashboard: http://localhost:8501 (unless --server.port says otherwise)"
exec .venv/bin/streamlit run app/streamlit_app.py --server.headless true \
  --browser.gatherUsageStats false --server.fileWatcherType none "$@"
