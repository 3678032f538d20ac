"""Peak extra memory and time of one JDNet pairwise-attention module (CPU).

Each case runs in a fresh subprocess and reports two numbers for one forward call:

* ``rss``: growth of the process's peak resident set (``ru_maxrss``) over a baseline that
  already holds the module, the input and the libraries (warmed up on a 32x32 input); this
  is what the OS sees and includes the C allocator's slack;
* ``live``: peak of the bytes held by tensors allocated during the call, from the PyTorch
  profiler's memory events (``profile_memory=True``), measured on a second call. JDNet sizes: 32 input
channels, rel 2, 8 value channels, one weight channel, 7x7 footprint, batch 1.

Cases:
  ours-inference  our module under ``torch.no_grad()`` (in-place, one offset at a time)
  ours-autograd   our module with autograd on (graph kept alive until the peak is read)
  unfold          the plain unfold formula of the official test code (architectures.md 1.6 a)

Usage: ``python scripts/jdnet_attention_memory.py [--size 512] [--cases ours-inference ...]``
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ("ours-inference", "ours-autograd", "unfold")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _unfold_attention(m, x):
    import torch
    import torch.nn.functional as F
    from derain_core.blocks import position_grid

    b, _, h, w = x.shape
    k = m.kernel_size

    def unf(t):
        return F.unfold(F.pad(t, [k // 2] * 4, mode="reflect"), k).view(*t.shape[:2], k * k, h * w)

    x1, x2, x3 = m.conv1(x), m.conv2(x), m.conv3(x)
    p = m.conv_p(position_grid(h, w, x))
    rel = x1.view(b, -1, 1, h * w) - unf(x2)
    pos = (p.view(1, 2, 1, h * w) - unf(p)).expand(b, -1, -1, -1)
    wts = torch.softmax(m.conv_w(torch.cat([rel, pos], 1)), dim=2)
    v = unf(x3).view(b, -1, wts.shape[1], k * k, h * w)
    return (wts.unsqueeze(1) * v).sum(3).view(b, -1, h, w)


def _child(case: str, size: int) -> dict:
    import torch
    from derain_core.blocks import PairwiseSelfAttention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = PairwiseSelfAttention(32, 2, 8, 8, 7).eval()
    run = (lambda t: _unfold_attention(m, t)) if case == "unfold" else m
    grad = case == "ours-autograd"
    with torch.set_grad_enabled(grad):
        run(torch.randn(1, 32, 32, 32, requires_grad=grad))  # warm-up: load kernels
    x = torch.randn(1, 32, size, size, requires_grad=grad)
    base = _maxrss_mb()
    t0 = time.perf_counter()
    with torch.set_grad_enabled(grad):
        y = run(x)
    seconds = time.perf_counter() - t0
    peak = _maxrss_mb()
    out_mb = y.numel() * 4 / 2**20
    del y
    return {"case": case, "size": size, "extra_mb": peak - base, "seconds": seconds,
            "live_mb": _live_peak_mb(run, x, grad), "output_mb": out_mb}


def _live_peak_mb(run, x, grad: bool) -> float:
    """Peak bytes of tensors allocated during ``run(x)`` (profiler memory events)."""
    import os
    import tempfile

    import torch
    from torch.profiler import profile

    with torch.set_grad_enabled(grad), profile(profile_memory=True) as prof:
        y = run(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    del y
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.size)))
        return
    print(f"one PairwiseSelfAttention(32 -> 8, rel 2, 7x7, 1 weight channel), "
          f"input 1x32x{args.size}x{args.size}, 1 thread")
    print(f"{'case':<16}{'rss MB':>8}{'live MB':>9}{'output MB':>11}{'seconds':>9}")
    for case in args.cases:
        res = subprocess.run([sys.executable, __file__, "--child", case, "--size", str(args.size)],
                             capture_output=True, text=True, check=True)
        r = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
        print(f"{case:<16}{r['extra_mb']:>8.0f}{r['live_mb']:>9.0f}{r['output_mb']:>11.0f}"
              f"{r['seconds']:>9.2f}")


if __name__ == "__main__":
    main()
