"""Time the Gradio demo as a user sees it: from pressing Derain to the first and the last result.

Starts ``app/gradio_app.py`` in a subprocess (default torch threads, as deployed), drives it
with gradio_client and timestamps every streamed update. Run twice: the first run includes
building the five networks.

    .venv/bin/python scripts/gradio_timing.py [image] [ground truth]
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = 3  # position of the metrics table in the /derain outputs


def main() -> None:
    from gradio_client import Client, handle_file

    image = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "assets/examples/coffee_heavy_rainy.png"
    gt = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "assets/examples/coffee_clean.png"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "app/gradio_app.py"), "--host", "127.0.0.1",
                             "--port", str(port)], env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        client = Client(url, verbose=False)
        for attempt in ("cold (networks built on first use)", "warm"):
            t0 = time.perf_counter()
            job = client.submit(handle_file(str(image)), handle_file(str(gt)) if gt.is_file() else None,
                                ["msamnet", "dsmnet", "mfan", "rranet", "jdnet"], "default (each model's own)",
                                api_name="/derain")
            seen, stamps = 0, []
            while not job.done() or len(job.outputs()) > seen:
                outs = job.outputs()
                for o in outs[seen:]:
                    stamps.append((time.perf_counter() - t0, len(o[TABLE]["data"])))
                seen = len(outs)
                time.sleep(0.02)
            job.result()
            firsts = {n: t for t, n in reversed(stamps)}
            rows = job.outputs()[-1][TABLE]["data"]
            print(f"{image.name} {attempt}: first result {firsts.get(1, float('nan')):.1f} s, "
                  f"last result {stamps[-1][0]:.1f} s after pressing Derain")
            print("  per model forward pass (s): " + ", ".join(f"{r[0]} {r[2]}" for r in rows))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
