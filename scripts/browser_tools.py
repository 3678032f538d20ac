"""What the screenshot scripts and the browser tests share: Debian's Chromium and how it is
started, free ports, waiting for a Streamlit server, and saving a capped-size PNG.

Playwright drives ``/usr/bin/chromium`` (Debian's package); Playwright's own browsers are not used.
"""
from __future__ import annotations

import io
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_streamlit(url: str, proc: subprocess.Popen, seconds: float = 60) -> bool:
    """Wait until the Streamlit server at ``url`` answers its health check; False when ``proc``
    exited or ``seconds`` passed first."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def save_png(png: bytes, out: Path, max_kb: int) -> None:
    """Write a screenshot; over ``max_kb`` it is reduced to a 256-colour palette (still PNG)."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    if len(png) > max_kb * 1024:
        img = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        png = buf.getvalue()
    out.write_bytes(png)
    print(f"{out}: {len(png) / 1024:.0f} KB")
