"""Take the README's screenshot of the Gradio demo (docs/img/gradio.png).

Starts the demo in this process on a free local port, opens it in Debian's Chromium (Playwright,
1440x900), loads one bundled example, runs every model and saves the first viewport: the inputs
and Derain on the left, the status, the results grid and the metrics table on the right. Over
``--max-kb`` the PNG is reduced to a 256-colour palette (still PNG).

    .venv/bin/python scripts/screenshot_gradio.py [--example "Coffee cup, heavy rain"] [--out docs/img/gradio.png]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from browser_tools import CHROMIUM, CHROMIUM_ARGS, free_port, save_png  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="Coffee cup, heavy rain", help="title of a bundled example")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "gradio.png")
    ap.add_argument("--max-kb", type=int, default=400)
    args = ap.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import expect, sync_playwright

    from app.gradio_app import demo

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            expect(page.locator("#run-btn")).to_be_visible(timeout=30_000)
            page.locator("#examples").get_by_text(args.example).first.click()
            expect(page.locator("#status")).to_contain_text("is ready", timeout=30_000)
            page.locator("#run-btn").click()
            expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
            expect(page.locator("#run-btn")).to_be_enabled(timeout=30_000)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(800)
            save_png(page.screenshot(), args.out, args.max_kb)
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
