"""The dashboard in a real browser: `streamlit run` as a subprocess, Debian's Chromium via Playwright.

Skipped when /usr/bin/chromium or playwright is missing. The screenshot goes to
test-artifacts/streamlit_flow.png (gitignored).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _support import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = BROWSER_MARKS


def _rainy_png(path: Path, w: int = 128, h: int = 96) -> tuple[Path, Path]:
    from derain_core import io, synth

    yy, xx = np.mgrid[0:h, 0:w]
    clean = np.stack([xx / w, yy / h, 0.4 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1).astype(np.float32)
    rainy, _ = synth.add_rain(np.clip(clean, 0, 1), synth.preset("heavy", seed=3))
    io.save_png(path / "rainy.png", rainy)
    io.save_png(path / "clean.png", np.clip(clean, 0, 1))
    return path / "rainy.png", path / "clean.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("st_server")
    rainy, clean = _rainy_png(tmp)
    (tmp / "index.json").write_text(json.dumps([
        {"file": str(rainy), "gt": str(clean), "preset": "heavy", "title": "Test gradient (heavy)"}]))
    port = free_port()
    env = {**os.environ, "DERAIN_EXAMPLES_INDEX": str(tmp / "index.json"),
           "DERAIN_RESULTS_DIR": str(tmp / "no_results"), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("streamlit did not start:\n" + (tmp / "server.log").read_text())
            time.sleep(0.3)
        yield {"url": url, "rainy": rainy, "clean": clean}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_upload_run_and_see_outputs(server):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3000})
            external = []
            page.on("request", lambda req: external.append(req.url)
                    if not req.url.startswith((server["url"], "data:", "blob:", "about:")) else None)
            page.goto(server["url"], wait_until="domcontentloaded")
            expect = playwright.expect
            # Upload instead of the example: the rainy image and its ground truth.
            page.get_by_text("Upload", exact=True).click()
            inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
            expect(inputs).to_have_count(2, timeout=30_000)
            inputs.nth(0).set_input_files(str(server["rainy"]))
            expect(page.get_by_text("Press Run to derain this image")).to_be_visible(timeout=30_000)
            inputs.nth(1).set_input_files(str(server["clean"]))
            page.get_by_role("button", name="Run", exact=True).click()
            # Outputs: the grid, the zoom strip and the before/after view, plus the metrics table.
            expect(page.get_by_text("Zoom: click a point")).to_be_visible(timeout=120_000)
            expect(page.locator('[data-testid="stImage"] img')).to_have_count(3, timeout=60_000)
            expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
            from derain_core.engine import UNTRAINED, resolve_variant
            untrained = [m for m in ("msamnet", "dsmnet", "mfan", "rranet", "jdnet")
                         if resolve_variant(m, None) == UNTRAINED]
            banner = page.get_by_text("Untrained (random weights", exact=False)
            # the banner appears exactly when some model has no shipped weights
            expect(banner).to_be_visible() if untrained else expect(banner).to_have_count(0)
            # The click-to-zoom component (an iframe with its own bundled JS) rendered offline.
            frame = page.frame_locator('iframe[title*="streamlit_image_coordinates"]')
            expect(frame.locator("img")).to_be_visible(timeout=30_000)
            for img in page.locator('[data-testid="stImage"] img').all():
                assert img.evaluate("e => e.naturalWidth") > 0
            assert not page.locator('[data-testid="stException"]').count()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "streamlit_flow.png"))
            assert not external, f"requests left the machine: {external[:5]}"
        finally:
            browser.close()
