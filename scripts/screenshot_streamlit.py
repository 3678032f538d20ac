"""Take the README's screenshot of the Streamlit dashboard (docs/img/dashboard.png).

Starts ``streamlit run app/streamlit_app.py`` on a free local port with the bundled examples and
the committed results, opens it in Debian's Chromium (Playwright, 1440x900), runs every model on
one bundled example and saves the viewport with the outputs at the top. Over ``--max-kb`` the
PNG is reduced to a 256-colour palette (still PNG).

    .venv/bin/python scripts/screenshot_streamlit.py [--example "Coffee cup, heavy rain"] [--out docs/img/dashboard.png]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from browser_tools import CHROMIUM, CHROMIUM_ARGS, free_port, save_png, wait_streamlit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="Coffee cup, heavy rain", help="title of a bundled example")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    ap.add_argument("--max-kb", type=int, default=400)
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.headless",
                             "true", "--server.address", "127.0.0.1", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not wait_streamlit(url, proc):
            raise RuntimeError("streamlit did not start")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Example", exact=True))
            box.get_by_role("combobox").click()
            page.get_by_role("option", name=args.example, exact=True).click()
            page.get_by_role("button", name="Run", exact=True).click()
            expect(page.get_by_text("Zoom: click a point")).to_be_visible(timeout=300_000)
            page.get_by_text("Outputs", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(800)
            save_png(page.screenshot(), args.out, args.max_kb)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
