"""Time each model's CPU inference in four forms to choose its card's speed hints.

    .venv/bin/python scripts/fast_path_variants.py [--size 240x160] [--threads 1] [MODEL ...]

Forms: fp32 NCHW (the reference path), fp32 channels_last, bf16 NCHW, bf16 channels_last
(bf16 only where the CPU has native bf16). The card fields ``cpu_channels_last`` and
``cpu_bf16`` pick the fastest allowed form. Best of 3 runs after a warm-up; ratios matter, not
absolute values, on a shared machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from derain_core import engine  # noqa: E402
from derain_core.bench import parse_size  # noqa: E402
from derain_core.registry import MODEL_IDS  # noqa: E402


def best_time(loaded, x, runs: int = 3) -> float:
    engine.run_model(loaded, x, tile=0)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.run_model(loaded, x, tile=0)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(MODEL_IDS))
    ap.add_argument("--size", default="240x160")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = parse_size(args.size)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    forms = [("fp32", False), ("fp32", True)]
    if engine.cpu_has_native_bf16():
        forms += [("bf16", False), ("bf16", True)]
    print(f"{'model':<8} " + "  ".join(f"{p}{'-CL' if cl else '-NCHW':<5}" for p, cl in forms) + "   (seconds)")
    for model_id in args.models:
        base = engine._build(model_id, engine.resolve_variant(model_id, None), torch.device("cpu"), fast=False)
        row = []
        for precision, cl in forms:
            net = base.net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            loaded = replace(base, net=net, precision=precision, channels_last=cl)
            row.append(best_time(loaded, x))
        print(f"{model_id:<8} " + "  ".join(f"{t:10.3f}" for t in row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
