#!/usr/bin/env bash
# Start one of the apps on 0.0.0.0 (used by the Dockerfile; works in a checkout too).
#   APP=dashboard (default): the Streamlit dashboard, app/streamlit_app.py
#   APP=gradio:              the Gradio demo, app/gradio_app.py
#   PORT (default 7860, the Hugging Face Spaces default `app_port`)
#   DRY_RUN=1 prints the command instead of running it.
# On Spaces the app runs inside an iframe of huggingface.co, where the XSRF cookie is blocked, so
# st.file_uploader uploads fail with 403 unless XSRF protection is off (huggingface_hub#1496).
# CORS stays on: the page and its websocket come from the same *.hf.space origin. Outside
# Spaces set STREAMLIT_SECURE=1 to keep XSRF protection on.
set -euo pipefail
cd "$(dirname "$0")/.."
app="${APP:-dashboard}"
port="${PORT:-7860}"
if [ -x .venv/bin/python ]; then bin=.venv/bin/; else bin=""; fi
case "$app" in
  dashboard|streamlit)
    xsrf=false
    if [ "${STREAMLIT_SECURE:-0}" = "1" ]; then xsrf=true; fi
    cmd=("${bin}streamlit" run app/streamlit_app.py --server.headless true
         --browser.gatherUsageStats false --server.fileWatcherType none
         --server.address 0.0.0.0 --server.port "$port"
         --server.enableXsrfProtection "$xsrf")
    ;;
  gradio)
    cmd=("${bin}python" app/gradio_app.py --host 0.0.0.0 --port "$port")
    ;;
  *)
    echo "APP must be 'dashboard' or 'gradio', got '$app'" >&2
    exit 2
    ;;
esac
if [ "${DRY_RUN:-0}" = "1" ]; then
  echo "${cmd[*]}"
  exit 0
fi
echo "Serving the $app on http://0.0.0.0:$port"
exec "${cmd[@]}"
