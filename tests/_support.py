"""Helpers shared by the app tests: free ports and the headless Chromium they drive."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
# Debian's Chromium and its flags, free ports, the Streamlit health wait: shared with the screenshot scripts
from browser_tools import CHROMIUM, CHROMIUM_ARGS, free_port, wait_streamlit  # noqa: E402,F401

ARTIFACTS = ROOT / "test-artifacts"  # screenshots of the browser flows
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
]
