"""Tiled against whole-image inference for one model on a shipped rainy example.

    .venv/bin/python scripts/tiling_check.py MODEL HEIGHT WIDTH TILE [VARIANT]

Prints, for the reference and the fast path, the PSNR between tiled and whole-image output and
both wall times (the engine's overlap: min(card overlap, tile / 4)).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from derain_core.engine import MODELS, psnr_db, run_model

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    model_id = sys.argv[1]
    h, w, tile = (int(v) for v in sys.argv[2:5])
    variant = sys.argv[5] if len(sys.argv) > 5 else None  # None: the engine's choice
    img = Image.open(ROOT / "assets/examples/astronaut_heavy_rainy.png").convert("RGB").resize((w, h))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    for fast in (False, True):
        loaded = MODELS.get(model_id, variant, fast=fast)
        t0 = time.perf_counter()
        whole, _ = run_model(loaded, x, tile=0)
        t1 = time.perf_counter()
        tiled, used = run_model(loaded, x, tile=tile)
        t2 = time.perf_counter()
        print(f"{model_id} {loaded.variant} {'fast' if fast else 'reference'} ({loaded.precision}) {w}x{h} in {used}-px tiles: "
              f"{psnr_db(whole, tiled):.1f} dB against whole; whole {t1 - t0:.2f} s, tiled {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
