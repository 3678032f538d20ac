"""The Gradio demo in a real browser: Debian's Chromium driven by Playwright.

Upload, run all five models, click the photo to zoom, open the inspector. Skipped when
/usr/bin/chromium or playwright is missing. The screenshot goes to
test-artifacts/gradio_flow.png (gitignored).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from _support import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, free_port

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL_LABELS = ["MSAMNet", "DSM-Net", "MFAN", "RRANet", "JDNet"]

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def app_url():
    from app.gradio_app import demo

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 128x96 gradient with bright diagonal streaks (small, so five models run fast on CPU)."""
    from derain_core import io

    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    clean = np.stack([xx / w, yy / h, 0.4 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1)
    streaks = ((xx + 2 * yy) % 23 == 0)[..., None] * 0.5
    path = tmp_path_factory.mktemp("browser") / "rainy.png"
    io.save_png(path, np.clip(clean + streaks, 0, 1).astype(np.float32))
    return path


def test_upload_run_zoom_inspect(app_url, photo):
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            external = []
            page.on("request", lambda r: external.append(r.url)
                    if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
            page.goto(app_url, wait_until="domcontentloaded")
            expect(page.locator("#run-btn")).to_be_visible(timeout=30_000)

            # upload and run all five models
            page.locator("#inp input[type=file]").set_input_files(str(photo))
            expect(page.locator("#inp img")).to_be_visible(timeout=10_000)
            page.locator("#run-btn").click()
            expect(page.locator("#status")).to_contain_text("Done: 5 of 5 models", timeout=180_000)

            # five outputs (plus the input) in the gallery, one table row per model
            expect(page.locator("#outputs img")).to_have_count(6, timeout=10_000)
            table = page.locator("#metrics")
            for name in MODEL_LABELS:
                expect(table).to_contain_text(name)
            expect(table).to_contain_text("PIQE")
            expect(page.locator("#grid img")).to_be_visible()
            expect(page.locator("#slider img")).to_have_count(2)
            expect(page.locator("#zip")).to_contain_text(".zip")

            # click on the photo: the same crop from the input and every output appears
            src = page.locator("#zoom-src img")
            expect(src).to_be_visible()
            box = src.bounding_box()
            src.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
            crops = page.locator("#crops img")
            expect(crops).to_be_visible(timeout=30_000)
            crop_w = crops.evaluate("img => img.naturalWidth")
            assert crop_w >= 6 * 40 * 4  # 6 crops of 40 px at zoom 4, side by side

            # the inspector: pick a model, its maps appear with their meanings
            page.locator("#insp-model input").click()
            page.get_by_role("option", name="RRANet").first.click()
            expect(page.locator("#maps img").first).to_be_visible(timeout=60_000)
            expect(page.locator("#insp-note")).to_contain_text("maps at full resolution")
            expect(page.locator("#insp-group input")).not_to_have_value("")

            page.screenshot(path=str(ARTIFACTS / "gradio_flow.png"), full_page=True)
            assert external == [], f"the page reached outside the machine: {external[:5]}"
        finally:
            browser.close()
