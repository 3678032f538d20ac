"""Time MFAN's spatial attention at its training shape in four forms (issue 12: MFAN's step).

    .venv/bin/python scripts/mfan_attention_variants.py [--threads 2] [--repeat 10]

One call of ``softmax(Q K^T) V`` with 8 images x 4 band groups, 16 channels, 4096 query
pixels (64x64) and 110 anchors, forward plus backward, float32 (as MFAN computes it):
the eager chunked form the model uses (:func:`derain_core.models.mfan.spatial_attention_fast`),
PyTorch's ``scaled_dot_product_attention``, a broadcast-multiply-sum form that Inductor can
fuse into loops (under ``torch.compile``), and the eager form under ``torch.compile``.
Prints milliseconds per call and the largest difference from the eager form.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derain_core.models.mfan import spatial_attention_fast  # noqa: E402

B, G, D, N, S = 8, 4, 16, 4096, 110


def eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return spatial_attention_fast(q, k, v, 1.0, 2048, use_sdpa=False)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return spatial_attention_fast(q, k, v, 1.0, use_sdpa=True)


def broadcast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    logits = (q.unsqueeze(-1) * k.unsqueeze(-2)).sum(2)  # (B, G, N, S)
    return (torch.softmax(logits, -1).unsqueeze(2) * v.unsqueeze(3)).sum(-1)  # (B, G, D, N)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, G, D, n, requires_grad=True) for n in (N, S, S))
    with torch.no_grad():
        ref = eager(q, k, v)

    def step(fn) -> None:
        fn(q, k, v).square().sum().backward()

    forms = [("eager (the model's)", eager), ("sdpa", sdpa), ("broadcast, compiled", torch.compile(broadcast)),
             ("eager, compiled", torch.compile(eager))]
    print(f"one attention call, {B}x{G} groups, d {D}, {N} queries, {S} anchors, forward + backward, "
          f"{args.threads} threads")
    for name, fn in forms:
        t0 = time.perf_counter()
        step(fn)  # compiles the compiled forms
        first = time.perf_counter() - t0
        for _ in range(2):
            step(fn)
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            step(fn)
        ms = (time.perf_counter() - t0) / args.repeat * 1e3
        with torch.no_grad():
            diff = (fn(q, k, v) - ref).abs().max().item()
        print(f"  {name:22s} {ms:7.1f} ms   first call {first:5.1f} s   max diff {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
