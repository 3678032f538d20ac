#!/usr/bin/env python
"""Do a network's intermediate maps follow the rain streaks? One number per map, on a bundled example.

    .venv/bin/python scripts/maps_follow_streaks.py --models msamnet [--example astronaut_light] [--crop 192]
    DERAIN_WEIGHTS_DIR=runs/X/export .venv/bin/python scripts/maps_follow_streaks.py --models dsmnet

The streak mask is where the rainy example differs from its clean ground truth by more than
``--thr`` (any RGB channel). Every map the inspector shows (``forward_intermediates(full=True)``)
is resized to the image and scored by the ROC AUC of its values as a streak detector:
0.5 = no relation to the streaks, 1.0 = higher on every streak pixel than on any other, 0.0 = lower.
Two numbers per map: the AUC of the channel mean (what a single grey image of the map shows) and
the AUC of its most streak-selective channel (the one farthest from 0.5), with that channel's index.
A mean near 0.5 beside a selective channel means channels that mark streaks with opposite signs
cancel in the mean. Uses the shipped weights (or ``DERAIN_WEIGHTS_DIR``), fp32, one thread.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from derain_core import engine, sanity  # noqa: E402
from derain_core.registry import model_ids  # noqa: E402


def roc_auc(scores: torch.Tensor, positive: torch.Tensor, bins: int = 4096) -> torch.Tensor | float:
    """ROC AUC of ``scores`` for the boolean ``positive``: the chance that a random positive pixel
    scores higher than a random negative one, ties counting half. ``scores`` is ``(N,)`` (a float
    comes back) or ``(C, N)`` (one AUC per row). Values are binned into ``bins`` levels between
    each row's min and max (equal values stay tied; the error is below 1/bins)."""
    one = scores.dim() == 1
    s = scores.double().reshape(-1, scores.shape[-1])
    pos = positive.flatten()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan") if one else torch.full((s.shape[0],), float("nan"))
    lo, hi = s.amin(1, keepdim=True), s.amax(1, keepdim=True)
    level = ((s - lo) / (hi - lo).clamp_min(1e-30) * (bins - 1)).round().long()
    counts_pos = torch.zeros(s.shape[0], bins, dtype=torch.float64).scatter_add_(1, level[:, pos], torch.ones_like(
        level[:, pos], dtype=torch.float64))
    counts_neg = torch.zeros(s.shape[0], bins, dtype=torch.float64).scatter_add_(1, level[:, ~pos], torch.ones_like(
        level[:, ~pos], dtype=torch.float64))
    below = counts_neg.cumsum(1) - counts_neg  # negatives strictly below each level
    auc = (counts_pos * (below + 0.5 * counts_neg)).sum(1) / (n_pos * n_neg)
    return float(auc[0]) if one else auc


def streak_mask(rainy: torch.Tensor, clean: torch.Tensor, thr: float) -> torch.Tensor:
    """(H, W) bool: pixels whose rainy value differs from the clean one by more than ``thr``."""
    return ((rainy - clean).abs().amax(1)[0]) > thr


def as_nchw(m: torch.Tensor) -> torch.Tensor:
    """A map as ``(N, C, H, W)``: ``(C, H, W)`` gains a batch dimension, and the middle dimensions of
    ``(N, C1, C2, ..., H, W)`` (e.g. JDNet's attention weights per footprint offset) count as
    ``C1 * C2 * ...`` channels."""
    if m.dim() == 3:
        m = m[None]
    if m.dim() > 4:
        m = m.flatten(1, -3)
    if m.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) map, got {tuple(m.shape)}")
    return m


def map_scores(m: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, int]:
    """(AUC of the channel mean, AUC of the most selective channel, that channel's index) of a map
    in any layout :func:`as_nchw` takes."""
    m = as_nchw(m)
    m = F.interpolate(m[:1].float(), size=mask.shape, mode="bilinear", align_corners=False)[0]
    pos = mask.flatten()
    mean_auc = roc_auc(m.mean(0).flatten(), pos)
    per = roc_auc(m.flatten(1), pos)
    best = int(torch.nan_to_num((per - 0.5).abs(), nan=-1.0).argmax())
    return mean_auc, float(per[best]), best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=model_ids(), choices=model_ids())
    ap.add_argument("--variant", help="weights variant (default: the engine's choice)")
    ap.add_argument("--example", default="astronaut_light", help="a bundled example with ground truth")
    ap.add_argument("--crop", type=int, default=192, help="center crop side (0: whole image)")
    ap.add_argument("--thr", type=float, default=0.1, help="streak threshold on |rainy - clean|")
    args = ap.parse_args()
    torch.set_num_threads(1)

    found = {ex_id: (r, c) for ex_id, r, c in sanity.rainy_examples()}
    if args.example not in found:
        sys.exit(f"no bundled example {args.example!r} with ground truth; choose from {', '.join(found)}")
    rainy_path, clean_path = found[args.example]
    x = sanity.load_crop(rainy_path, args.crop or None)
    gt = sanity.load_crop(clean_path, args.crop or None)
    mask = streak_mask(x, gt, args.thr)
    print(f"{args.example}, {x.shape[-1]}x{x.shape[-2]} crop: {mask.float().mean().item():.1%} of pixels are streaks "
          f"(|rainy - clean| > {args.thr})")
    print(f"{'model':<8} {'variant':<9} {'map':<28} {'ch':>4} {'AUC mean':>9} {'AUC best ch':>12} {'(ch)':>5}")
    for model_id in args.models:
        loaded = engine.MODELS.get(model_id, args.variant, "cpu", fast=False)
        maps, scale = engine.run_maps(loaded, x, full=True)
        if scale != 1.0:
            mask_m = F.interpolate(mask[None, None].float(), scale_factor=scale, mode="area")[0, 0] > 0.5
        else:
            mask_m = mask
        for name, m in maps.items():
            channels = as_nchw(m).shape[1]
            if m.shape[-1] * m.shape[-2] == 1:
                print(f"{model_id:<8} {loaded.variant:<9} {name:<28} {channels:>4}  per-channel weights, no spatial layout")
                continue
            mean_auc, best_auc, ch = map_scores(m, mask_m)
            print(f"{model_id:<8} {loaded.variant:<9} {name:<28} {channels:>4} {mean_auc:>9.3f} {best_auc:>12.3f} "
                  f"{ch:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
