"""Streamlit dashboard for understanding the five deraining models (multi-page).

Start it from the repository root::

    .venv/bin/streamlit run app/streamlit_app.py --server.headless true \
        --browser.gatherUsageStats false --server.fileWatcherType none

Pages (files in ``app/views/``; not ``pages/``, which Streamlit would also auto-discover as legacy
pages), in the top bar: Compare, Inspect, Benchmark, Rain lab. All model, metric and
drawing logic lives in ``derain_core``; the pages only lay out widgets. Nothing is fetched
from the network: weights and examples are local, usage statistics are off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
APP_DIR = Path(__file__).resolve().parent
for p in (APP_DIR, APP_DIR.parent):  # dashboard_ui, and derain_core when not pip-installed
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import streamlit as st  # noqa: E402

# An emoji favicon is drawn in the page; a ":material/...:" favicon would be fetched from
# fonts.gstatic.com (the browser test checks that no request leaves the machine).
# "auto": the sidebar starts collapsed on narrow (phone) screens.
st.set_page_config(page_title="Deraining dashboard", page_icon="🌧️", layout="wide", initial_sidebar_state="auto")

try:
    import dashboard_ui as ui  # noqa: E402  (after set_page_config)
except SystemExit as exc:  # a malformed DERAIN_* variable (derain_core.settings.check)
    st.error(f"The dashboard cannot start: {getattr(exc, 'message', exc)}")
    st.stop()

PAGES = [
    st.Page("views/compare.py", title="Compare", icon=":material/compare:", default=True),
    st.Page("views/inspect_maps.py", title="Inspect", icon=":material/biotech:", url_path="inspect"),
    st.Page("views/benchmark.py", title="Benchmark", icon=":material/monitoring:", url_path="benchmark"),
    st.Page("views/rain_lab.py", title="Rain lab", icon=":material/rainy:", url_path="rain-lab"),
]

# The pages in the top bar: no sidebar on a desktop, so pictures get the whole width. On a
# phone Streamlit moves them into a sidebar that starts closed and closes again once a page
# is chosen (ui.close_sidebar_after_navigation covers narrow windows of desktop browsers).
nav = st.navigation(PAGES, position="top")
ui.close_sidebar_after_navigation()
nav.run()
