#!/usr/bin/env python
"""Time the rain generator on one core: add_rain per preset and synth_batch on patches.

Usage: .venv/bin/python scripts/bench_synth.py [--size 481x321] [--repeat 20]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from derain_core import synth  # noqa: E402


def _time(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3, float(np.min(ts)) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="481x321", help="W x H of the test image")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batch", default="16x3x128x128", help="B x C x H x W for synth_batch")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    clean = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    print(f"add_rain on {w}x{h}, one thread, {args.repeat} runs (median / min):")
    for name in sorted(synth.PRESETS):
        p = synth.preset(name, seed=1)
        med, mn = _time(lambda: synth.add_rain(clean, p), args.repeat)
        print(f"  {name:6s} {med:7.1f} ms / {mn:7.1f} ms")
    rng = np.random.default_rng(0)
    med, mn = _time(lambda: synth.add_rain(clean, synth.random_params(rng, "mixed")), args.repeat)
    print(f"  random 'mixed' params {med:7.1f} ms / {mn:7.1f} ms")
    shape = tuple(int(v) for v in args.batch.lower().split("x"))
    batch = torch.rand(*shape)
    med, mn = _time(lambda: synth.synth_batch(batch, "mixed", rng), max(3, args.repeat // 4))
    print(f"synth_batch {args.batch} 'mixed': {med:.1f} ms / {mn:.1f} ms "
          f"({med / shape[0]:.1f} ms per patch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
