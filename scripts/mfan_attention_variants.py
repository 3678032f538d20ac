"""Time MFAN's spatial attention at its training shape in four forms (issue 12: MFAN's step).

    .venv/bin/python scripts/mfan_attention_variants.py [--threads 2] [--repeat 10]

One call of ``softmax(Q K^T) V`` with 8 images x 4 band groups, 16 channels, 4096 query
pixels (64x64) and 110 anchors, forward plus backward, float32 (as MFAN computes it):
the eager chunked form the model uses (:func:`derain_core.models.mfan.spatial_attention_fast`),
PyTorch's ``scaled_dot_product_attention``, a broadcast-multiply-sum form that Inductor can
fuse into loops (under ``torch.compile``), the eager form under ``torch.compile``, a
hand-written autograd Function that keeps only the log-sum-exp and recomputes each chunk's
softmax in the backward pass (flash-style, ``--chunks`` queries at a time, so that a chunk's
similarity stays in cache), and an anchor-major form (logits as ``K^T Q``, softmax over the
anchors' axis, the output channel-first without transposes). ``--forms`` picks some.
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


class RecomputeAttention(torch.autograd.Function):
    """``softmax(Q K^T) V`` (float32, channel-first as the model's form) whose backward pass
    recomputes the similarity chunk by chunk from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
        b, g, d, n = q.shape
        s = k.shape[-1]
        qt = q.reshape(b * g, d, n).transpose(1, 2)  # (BG, N, d)
        kf = k.reshape(b * g, d, s)
        vt = v.reshape(b * g, d, s).transpose(1, 2)  # (BG, S, d)
        y, lse = qt.new_empty(b * g, n, d), qt.new_empty(b * g, n, 1)
        for n0 in range(0, n, chunk):
            p = torch.bmm(qt[:, n0:n0 + chunk], kf)
            m = p.amax(-1, keepdim=True)
            p.sub_(m).exp_()
            z = p.sum(-1, keepdim=True)
            torch.bmm(p.div_(z), vt, out=y[:, n0:n0 + chunk])
            torch.add(m, z.log_(), out=lse[:, n0:n0 + chunk])
        ctx.save_for_backward(qt, kf, vt, y, lse)
        ctx.chunk = chunk
        return y.transpose(1, 2).reshape(b, g, d, n)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        qt, kf, vt, y, lse = ctx.saved_tensors
        bg, n, d = qt.shape
        dyt = dy.reshape(bg, d, n).transpose(1, 2)
        dq, dk, dv = qt.new_empty(bg, n, d), qt.new_zeros(kf.shape), qt.new_zeros(vt.shape)
        for n0 in range(0, n, ctx.chunk):
            sl = slice(n0, n0 + ctx.chunk)
            p = torch.bmm(qt[:, sl], kf).sub_(lse[:, sl]).exp_()  # the chunk's softmax again
            dv.baddbmm_(p.transpose(1, 2), dyt[:, sl])
            ds = torch.bmm(dyt[:, sl], vt.transpose(1, 2))
            ds.sub_((dyt[:, sl] * y[:, sl]).sum(-1, keepdim=True)).mul_(p)  # softmax backward
            dk.baddbmm_(qt[:, sl].transpose(1, 2), ds)
            torch.bmm(ds, kf.transpose(1, 2), out=dq[:, sl])
        shape = dy.shape
        return dq.transpose(1, 2).reshape(shape), dk.reshape(*shape[:3], -1), \
            dv.transpose(1, 2).reshape(*shape[:3], -1), None


def anchor_major(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    kt = k.transpose(-1, -2)  # (B, G, S, d)
    out = [v @ torch.softmax(kt @ q[..., n0:n0 + chunk], dim=-2) for n0 in range(0, q.shape[-1], chunk)]
    return torch.cat(out, -1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--chunks", type=int, nargs="+", default=[128, 512], help="query chunks of the recompute form")
    ap.add_argument("--forms", nargs="+", default=None,
                    help="names (prefixes) of the forms to time, e.g. eager recompute anchor (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, G, D, n, requires_grad=True) for n in (N, S, S))
    w = torch.randn(B, G, D, N)

    def step(fn) -> list[torch.Tensor]:
        for t in (q, k, v):
            t.grad = None
        (fn(q, k, v) * w).sum().backward()
        return [t.grad for t in (q, k, v)]

    with torch.no_grad():
        ref = eager(q, k, v)
    ref_grads = step(eager)

    forms = [("eager (the model's)", eager), ("sdpa", sdpa), ("broadcast, compiled", torch.compile(broadcast)),
             ("eager, compiled", torch.compile(eager)), ("anchor-major", anchor_major)]
    forms += [(f"recompute, chunk {c}", lambda q, k, v, c=c: RecomputeAttention.apply(q, k, v, c))
              for c in args.chunks]
    if args.forms:
        forms = [f for f in forms if f[0] == forms[0][0] or any(f[0].startswith(p) for p in args.forms)]
    print(f"one attention call, {B}x{G} groups, d {D}, {N} queries, {S} anchors, forward + backward, "
          f"{args.threads} threads")
    for name, fn in forms:
        t0 = time.perf_counter()
        grads = step(fn)  # compiles the compiled forms
        first = time.perf_counter() - t0
        gdiff = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(grads, ref_grads))
        for _ in range(2):
            step(fn)
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            step(fn)
        ms = (time.perf_counter() - t0) / args.repeat * 1e3
        with torch.no_grad():
            diff = (fn(q, k, v) - ref).abs().max().item()
        print(f"  {name:22s} {ms:7.1f} ms   first call {first:5.1f} s   max diff {diff:.1e}   "
              f"gradients {gdiff:.1e} of their largest", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
