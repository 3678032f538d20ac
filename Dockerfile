# Deraining comparison studio: the Streamlit dashboard (default) or the Gradio demo, CPU only.
#
#   docker build -t derain .
#   docker run -p 7860:7860 derain                   # dashboard on http://localhost:7860
#   docker run -p 7860:7860 -e APP=gradio derain     # Gradio demo instead
#   docker build --build-arg APP=gradio -t derain-gradio .   # make the Gradio demo the default
#
# Works as a Hugging Face Docker Space (README front matter: `sdk: docker`, `app_port: 7860`):
# - the container runs as a non-root user with uid 1000, as Spaces require;
# - it listens on 0.0.0.0:7860, the Spaces default app_port (Streamlit's own default is 8501);
# - inside the Spaces iframe the XSRF cookie is blocked, so the dashboard starts with
#   `--server.enableXsrfProtection false`, else st.file_uploader fails with HTTP 403
#   (huggingface_hub#1496). CORS stays on: page and websocket share the *.hf.space origin.
#   Set STREAMLIT_SECURE=1 to keep XSRF protection on elsewhere (see scripts/serve.sh).
# - no network at run time: weights and examples are in the image, telemetry is off.
#
# The install steps are exactly those of scripts/setup.sh (tests/test_dockerfile.py checks it):
# a venv in .venv, torch==2.13.0 first (here from the CPU index, so no CUDA wheels), then the
# package with the `app` extra.
FROM python:3.11-slim

ARG APP=dashboard
ENV APP=${APP} \
    PORT=7860 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    HOME=/home/user

# The app folder is created and handed to the user before switching: WORKDIR alone would
# create it owned by root on some builders, and the venv below is written into it.
RUN useradd --create-home --uid 1000 user \
 && mkdir /home/user/app \
 && chown 1000:1000 /home/user/app
USER 1000:1000
WORKDIR /home/user/app

# Same steps as scripts/setup.sh: venv, torch first (pinned CPU build), then the package.
RUN python -m venv .venv \
 && .venv/bin/python -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY --chown=1000:1000 . .
RUN .venv/bin/python -m pip install --no-cache-dir -e ".[app]" \
 && .venv/bin/python -c "import torch, derain_core; print('setup ok: torch', torch.__version__)"

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s%s' % (os.environ.get('PORT', '7860'), '/' if os.environ.get('APP') == 'gradio' else '/_stcore/health'), timeout=4)"]
CMD ["bash", "scripts/serve.sh"]
