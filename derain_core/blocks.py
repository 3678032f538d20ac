"""Building blocks shared by the networks, each written once.

Sources (see ``shared/design/architectures.md`` section 1): RCAN channel attention, CBAM
channel and spatial attention, ULSAM subspace attention, PReNet-style ConvLSTM, an exact
Haar DWT, SPP anchors for asymmetric non-local attention, the RLCN image of RRANet, and
SAN pairwise self-attention in pure PyTorch.

Blocks that hold something worth showing take an optional ``rec`` (a
:class:`~derain_core.models.base.Recorder`) and record under short keys.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Recorder

_OFF = Recorder.off()


# --------------------------------------------------------------------------------------
# Channel and spatial attention
# --------------------------------------------------------------------------------------
class ChannelAttention(nn.Module):
    """RCAN channel attention: GAP -> 1x1 (C->C/r) -> ReLU -> 1x1 (C/r->C) -> sigmoid.

    ``forward`` returns the weight vector ``(B, C, 1, 1)``; multiply it yourself.
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)))


class CBAMChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP on the average- and max-pooled vectors.

    Returns the weight vector ``(B, C, 1, 1)``. ``bias=False`` drops the MLP biases.
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: conv over [max_c x, mean_c x] -> sigmoid -> ``(B, 1, H, W)``."""

    def __init__(self, kernel_size: int = 7, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class SubspaceAttention(nn.Module):
    """ULSAM subspace attention (Saini et al., WACV 2020) with ``groups`` subspaces.

    Per group of ``m = C/groups`` channels: depthwise 1x1 -> [BN] -> ReLU -> 3x3 max-pool
    (stride 1) -> pointwise 1x1 to one map -> [BN] -> ReLU -> softmax over all H*W
    positions -> ``a`` (sums to 1 over the image); group output ``x * a + x``.
    Records ``subspace_att`` ``(B, groups, H, W)``, each map multiplied by H*W so that a
    uniform map shows as 1.
    """

    def __init__(self, channels: int, groups: int = 8, batch_norm: bool = False):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.groups = groups
        m = channels // groups
        # All groups at once: a depthwise 1x1 and a grouped 1x1 (m -> 1 per group).
        self.depthwise = nn.Conv2d(channels, channels, 1, groups=channels)
        self.pointwise = nn.Conv2d(channels, groups, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(groups) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        b, c, h, w = x.shape
        t = F.relu(self.bn1(self.depthwise(x)))
        t = F.max_pool2d(t, 3, stride=1, padding=1)
        t = F.relu(self.bn2(self.pointwise(t)))  # (B, g, H, W)
        att = torch.softmax(t.flatten(2), dim=-1).view(b, self.groups, 1, h, w)
        rec("subspace_att", att.view(b, self.groups, h, w) * (h * w))
        out = x.view(b, self.groups, c // self.groups, h, w)
        return (out * att + out).view(b, c, h, w)


# --------------------------------------------------------------------------------------
# Recurrence
# --------------------------------------------------------------------------------------
class ConvLSTMCell(nn.Module):
    """PReNet-style ConvLSTM: one 3x3 conv on ``cat(x, h)`` gives the i, f, g, o gates.

    ``state`` is ``(h, c)`` or ``None`` (zeros shaped like the output, on x's device).
    Returns ``(h, (h, c))``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels,
                               kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


# --------------------------------------------------------------------------------------
# Haar wavelet (orthonormal, exact)
# --------------------------------------------------------------------------------------
HAAR_BANDS = ("LL", "LH", "HL", "HH")
HAAR_BAND_MEANING = {
    "LL": "low-pass average (a coarse copy of the image)",
    "LH": "row differences: responds to horizontal edges",
    "HL": "column differences: responds to vertical edges, e.g. near-vertical rain streaks",
    "HH": "diagonal differences",
}


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar transform; needs even H and W.

    With a, b, c, d the top-left, top-right, bottom-left, bottom-right pixel of each 2x2
    block: LL=(a+b+c+d)/2, LH=(-a-b+c+d)/2 (row difference, horizontal edges),
    HL=(-a+b-c+d)/2 (column difference, vertical edges), HH=(a-b-c+d)/2.
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {tuple(x.shape[-2:])}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    return ((a + b + c + d) / 2, (-a - b + c + d) / 2, (-a + b - c + d) / 2, (a - b - c + d) / 2)


def haar_idwt(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`haar_dwt`."""
    a = (ll - lh - hl + hh) / 2
    b = (ll - lh + hl - hh) / 2
    c = (ll + lh - hl - hh) / 2
    d = (ll + lh + hl + hh) / 2
    out = ll.new_empty(*ll.shape[:-2], ll.shape[-2] * 2, ll.shape[-1] * 2)
    out[..., 0::2, 0::2] = a
    out[..., 0::2, 1::2] = b
    out[..., 1::2, 0::2] = c
    out[..., 1::2, 1::2] = d
    return out


# --------------------------------------------------------------------------------------
# SPP anchors (asymmetric non-local attention)
# --------------------------------------------------------------------------------------
SPP_BINS = (1, 3, 6, 8)
SPP_ANCHORS = sum(b * b for b in SPP_BINS)  # 110


def spp_anchors(x: torch.Tensor, bins: tuple[int, ...] = SPP_BINS) -> torch.Tensor:
    """Adaptive-average-pool ``(B, C, h, w)`` to each bin grid; returns ``(B, C, 110)``."""
    return torch.cat([F.adaptive_avg_pool2d(x, b).flatten(2) for b in bins], dim=2)


# --------------------------------------------------------------------------------------
# RLCN (RRANet, paper eq. 2)
# --------------------------------------------------------------------------------------
def rlcn(image: torch.Tensor, window: int = 9, eps: float = 1e-5, clamp: bool = True) -> torch.Tensor:
    """Rectified local contrast normalisation, per colour channel.

    ``L = max(I - mu, 0) / (sigma + eps)`` with local mean ``mu`` and unbiased local standard
    deviation ``sigma = sqrt(var + eps)`` over a ``window x window`` neighbourhood that
    counts only pixels inside the image. ``clamp`` caps the result at 1 (the successor
    code's choice; the paper only rectifies).
    """
    b, c, h, w = image.shape
    pad = window // 2
    ones_k = image.new_ones(1, 1, window, window)
    flat = image.reshape(b * c, 1, h, w)
    count = F.conv2d(image.new_ones(1, 1, h, w), ones_k, padding=pad)
    s1 = F.conv2d(flat, ones_k, padding=pad)
    s2 = F.conv2d(flat * flat, ones_k, padding=pad)
    mean = s1 / count
    var = (s2 - s1 * s1 / count) / (count - 1).clamp_min(1)
    sigma = torch.sqrt(var.clamp_min(0) + eps)
    out = torch.relu(flat - mean) / (sigma + eps)
    if clamp:
        out = out.clamp(max=1.0)
    return out.view(b, c, h, w)
