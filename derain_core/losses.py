"""Training losses of the papers (architectures.md section 1.10)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_loss_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM as in JDNet's ``cal_ssim.py``: 11x11 Gaussian, zero padding, per channel.

    Images in [0, 1]; C1 = 0.01^2, C2 = 0.03^2.
    """
    c = x.shape[1]
    w = _gaussian_window(window, sigma, x.device, x.dtype).expand(c, 1, window, window)
    pad = window // 2

    def filt(t):
        return F.conv2d(t, w, padding=pad, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x ** 2
    syy = filt(y * y) - mu_y ** 2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


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
