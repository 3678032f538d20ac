"""Fast path against reference path on a real rainy photo: median time and PSNR between them.

    .venv/bin/python scripts/fast_vs_reference.py [MODEL ...] [--size 481x321] [--repeats 3]

Unlike ``derain bench`` (random input), this uses the shipped astronaut_heavy_rainy example,
so the PSNR reflects real outputs; the median of ``--repeats`` warm runs gives the time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from derain_core.engine import MODELS, psnr_db, run_model
from derain_core.registry import MODEL_IDS

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=list(MODEL_IDS))
    ap.add_argument("--size", default="481x321")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    img = Image.open(ROOT / "assets/examples/astronaut_heavy_rainy.png").convert("RGB").resize((w, h))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    for model_id in args.models:
        fast = MODELS.get(model_id, fast=True)
        y_fast, _ = run_model(fast, x, tile=0)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_model(fast, x, tile=0)
            times.append(time.perf_counter() - t0)
        y_ref, _ = run_model(MODELS.get(model_id, fast=False), x, tile=0)
        print(f"{model_id:8s} {fast.precision}  fast {statistics.median(times):.2f} s (median of "
              f"{args.repeats})  fast vs reference {psnr_db(y_fast, y_ref):.1f} dB")


if __name__ == "__main__":
    main()
