"""How much do the networks' global channel-attention pools cost on whole images?

The networks learn from 64x64 crops, where a channel attention's global average (and CBAM's
global max) pools 4,096 pixels; a 481x321 test image gives it 154,401. This script measures
PSNR-Y on the test split twice with the same weights: with the pools as the networks have them,
and with each pool taken over a local window the size of a training crop around every pixel
(TLC, Chu et al., ECCV 2022). Nothing in the product changes; it is a measurement. A clear gain
from local windows says the networks read other statistics on whole images than on the crops
they learned from, so that longer training crops would help.

    .venv/bin/python scripts/pooling_window_check.py --models msamnet dsmnet --window 63 [--limit 20]

Models without a global channel pool (MFAN, RRANet, JDNet) print the same number twice.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derain_core import blocks, io  # noqa: E402
from derain_core import metrics as mt  # noqa: E402
from derain_core.data import find_pairs  # noqa: E402
from derain_core.engine import derain_one  # noqa: E402


def _window_sums_last(t: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over ``[i - r, i + r]`` along the last axis, clipped to the axis, and their counts."""
    n = t.shape[-1]
    c = torch.cat([torch.zeros_like(t[..., :1]), t.cumsum(-1)], -1)
    i = torch.arange(n, device=t.device)
    hi, lo = (i + r + 1).clamp(max=n), (i - r).clamp(min=0)
    return c[..., hi] - c[..., lo], (hi - lo).to(t.dtype)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` x ``window`` box around each pixel (clipped at the borders)."""
    r = window // 2
    s, n_w = _window_sums_last(x.float(), r)
    s, n_h = _window_sums_last(s.transpose(-1, -2), r)
    return (s.transpose(-1, -2) / (n_h[:, None] * n_w[None, :])).to(x.dtype)


def local_max(x: torch.Tensor, window: int) -> torch.Tensor:
    """Max over a ``window`` x ``window`` box around each pixel (separable)."""
    r = window // 2
    x = F.max_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r))
    return F.max_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0))


@contextlib.contextmanager
def local_pools(window: int):
    """Channel attention (RCAN's and CBAM's) pooled over local windows instead of the whole image."""
    ca, cbam = blocks.ChannelAttention.forward, blocks.CBAMChannelAttention.forward

    def ca_forward(self, x):
        return torch.sigmoid(self.mlp(local_mean(x, window)))

    def cbam_forward(self, x):
        return torch.sigmoid(self.mlp(local_mean(x, window)) + self.mlp(local_max(x, window)))

    blocks.ChannelAttention.forward, blocks.CBAMChannelAttention.forward = ca_forward, cbam_forward
    try:
        yield
    finally:
        blocks.ChannelAttention.forward, blocks.CBAMChannelAttention.forward = ca, cbam


def mean_psnr_y(model_id: str, pairs, variant: str | None) -> float:
    vals = []
    for rainy, clean in pairs:
        r = derain_one(io.load_image(rainy), model_id, variant, metrics=False)
        vals.append(mt.psnr(r.output, io.load_image(clean).rgb, on="y"))
    return sum(vals) / len(vals)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["msamnet", "dsmnet"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Rain100L_test"))
    ap.add_argument("--variant", default="rain100l")
    ap.add_argument("--window", type=int, default=63, help="local window side in px (odd; training crops are 64)")
    ap.add_argument("--limit", type=int, help="only the first N test pairs")
    args = ap.parse_args()
    pairs = find_pairs(args.data)[: args.limit]
    print(f"{len(pairs)} test pairs from {args.data}; window {args.window} px")
    for m in args.models:
        whole = mean_psnr_y(m, pairs, args.variant)
        with local_pools(args.window):
            local = mean_psnr_y(m, pairs, args.variant)
        print(f"{m:8s} PSNR-Y with global pools {whole:.3f} dB, with {args.window}-px local pools {local:.3f} dB "
              f"({local - whole:+.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
