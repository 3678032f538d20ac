"""Does torch.compile speed up MFAN's spatial attention for training? (issue: training speed)

    .venv/bin/python scripts/mfan_attention_compile.py [--threads 2]

Times forward + backward of one attention call as MFAN's training step makes them (batch 8,
4 band groups of 16 channels, 110 SPP anchors; 4096, 1024 and 256 query pixels for a 64-px
crop's three scales): the eager chunked kernel the model uses, one unchunked eager form, and
that form under ``torch.compile``. Median of 5 after one warm-up call (which, compiled,
includes compiling). Run it when nothing else trains.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derain_core.models.mfan import SpatialCSSAB, spatial_attention_fast  # noqa: E402


def unchunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(Q K^T) V`` in float32 in one piece, ``(B, G, d, N)`` layout as the model's kernel."""
    logits = q.transpose(-1, -2).float() @ k.float()
    return (torch.softmax(logits, dim=-1) @ v.float().transpose(-1, -2)).transpose(-1, -2).to(q.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    compiled = torch.compile(unchunked, dynamic=False)
    b, g, d, s = 8, 4, 16, 110
    for n in (4096, 1024, 256):
        q, k, v = (torch.randn(b, g, d, m, requires_grad=True) for m in (n, s, s))
        grad = torch.randn(b, g, d, n)
        forms = {"eager chunked (model)": lambda: spatial_attention_fast(q, k, v, 1.0, SpatialCSSAB.chunk),
                 "eager unchunked": lambda: unchunked(q, k, v),
                 "compiled": lambda: compiled(q, k, v)}
        for name, fn in forms.items():
            fn().backward(grad)  # warm-up (compiles)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn().backward(grad)
                times.append(time.perf_counter() - t0)
            print(f"N={n:<5} {name:<22} {sorted(times)[2] * 1000:7.1f} ms forward+backward")
        diff = (compiled(q, k, v) - spatial_attention_fast(q, k, v)).abs().max().item()
        print(f"N={n:<5} compiled vs model: max difference {diff:.1e}")


if __name__ == "__main__":
    main()
