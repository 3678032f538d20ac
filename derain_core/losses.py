"""Training losses of the papers (architectures.md section 1.10).

The networks combine these in their ``TrainingSpec`` (``ModelCard.training``); each loss takes
the dict of ``training_outputs`` and the target, both float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import ssim_map_torch


def ssim_loss_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM as in JDNet's ``cal_ssim.py``: 11x11 Gaussian (sigma 1.5), zero padding, per
    channel, images in [0, 1] (C1 = 0.01^2, C2 = 0.03^2): :func:`metrics.ssim_map_torch` with zero padding."""
    return ssim_map_torch(x, y, padding="zeros")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (training convention above; see ``metrics`` for the evaluation one)."""
    return ssim_loss_map(x, y).mean()


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """MPRNet Charbonnier loss: mean of sqrt((x-y)^2 + eps^2)."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


_GAUSS5 = (0.05, 0.25, 0.4, 0.25, 0.05)


def _gauss_blur(x: torch.Tensor) -> torch.Tensor:
    k1 = torch.tensor(_GAUSS5, device=x.device, dtype=x.dtype)
    k = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=x.shape[1])


def laplacian_detail(x: torch.Tensor) -> torch.Tensor:
    """MPRNet edge-loss detail layer: ``x - G(up4(down2(G(x))))`` with zero-insertion upsampling."""
    filtered = _gauss_blur(x)
    down = filtered[:, :, ::2, ::2]
    up = torch.zeros_like(filtered)
    up[:, :, ::2, ::2] = down * 4
    return x - _gauss_blur(up)


def edge_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MPRNet edge loss: Charbonnier between Laplacian detail layers."""
    return charbonnier(laplacian_detail(x), laplacian_detail(y))


def l1_output(outs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """L1 between the output and the target (MFAN, the control)."""
    return F.l1_loss(outs["output"], target)


def neg_ssim_output(outs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Negative SSIM of the output (RRANet's last stage, JDNet)."""
    return -ssim(outs["output"], target)


def charbonnier_edge(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MPRNet's Charbonnier + 0.05 x edge loss."""
    return charbonnier(x, y) + 0.05 * edge_loss(x, y)
