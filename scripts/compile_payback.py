"""Does ``torch.compile`` pay back within one request? Times eager vs compiled for one model.

    .venv/bin/python scripts/compile_payback.py [model] [WxH] [threads]

Prints the eager time, the first compiled call (compilation included) and a warm compiled call.
Compilation pays back within one request only if first-compiled < eager.
"""
from __future__ import annotations

import sys
import time

import torch

from derain_core.engine import MODELS, autocast_context


def main() -> None:
    model_id = sys.argv[1] if len(sys.argv) > 1 else "dsmnet"
    w, h = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "481x321").split("x"))
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    loaded = MODELS.get(model_id)
    x = torch.rand(1, 3, h, w)
    if loaded.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast_context(loaded.device, loaded.precision):
            fn(x)
        return time.perf_counter() - t0

    timed(loaded.net)
    eager = timed(loaded.net)
    compiled = torch.compile(loaded.net)
    first = timed(compiled)
    warm = timed(compiled)
    print(f"{model_id} {w}x{h} {loaded.precision}: eager {eager:.2f} s, compiled first call "
          f"{first:.2f} s (compilation included), compiled warm {warm:.2f} s")


if __name__ == "__main__":
    main()
