"""Building blocks shared by the networks, each written once.

Sources (see ``shared/design/architectures.md`` section 1): RCAN channel attention, CBAM
channel and spatial attention, ULSAM subspace attention, PReNet-style ConvLSTM, an exact
Haar DWT, SPP anchors for asymmetric non-local attention, the RLCN image of RRANet, and
SAN pairwise self-attention in pure PyTorch.

Blocks that hold something worth showing take an optional ``rec`` (a
:class:`~derain_core.models.base.Recorder`) and record under short keys.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Recorder, use_compiled_blocks, use_fast_kernels, use_reference_kernels

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


def _max_keepdim(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.amax(dim, keepdim=True)`` whose gradient goes to one maximum (``torch.max``'s
    indices) instead of being shared among ties: the same value, without ``amax``'s slow
    backward (a tie mask summed in float32 over the whole map)."""
    return x.max(dim=dim, keepdim=True).values


class CBAMChannelAttention(ChannelAttention):
    """CBAM channel attention: :class:`ChannelAttention`'s MLP shared by the average- and
    max-pooled vectors.

    Returns the weight vector ``(B, C, 1, 1)``. ``bias=False`` drops the MLP biases.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(_max_keepdim(x.flatten(2), -1).unsqueeze(-1))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: conv over [max_c x, mean_c x] -> sigmoid -> ``(B, 1, H, W)``."""

    def __init__(self, kernel_size: int = 7, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([_max_keepdim(x, 1), x.mean(dim=1, keepdim=True)], dim=1)
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
        # softmax in float32 (CPU autocast leaves it in bf16), weights back in x's dtype
        att = torch.softmax(fp32(t.flatten(2)), dim=-1).to(x.dtype).view(b, self.groups, 1, h, w)
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
def rlcn(image: torch.Tensor, window: int = 9, eps: float = 1e-5, clamp: bool = True,
         rows: int = 256) -> torch.Tensor:
    """Rectified local contrast normalisation, per colour channel.

    ``L = max(I - mu, 0) / (sigma + eps)`` with local mean ``mu`` and unbiased local standard
    deviation ``sigma = sqrt(var + eps)`` over a ``window x window`` neighbourhood that
    counts only pixels inside the image. ``clamp`` caps the result at 1 (the successor
    code's choice; the paper only rectifies).

    Always float32 with autocast off: under bf16 the window sums lose the small differences
    ``I - mu`` (12.6 % of the pixels were off by more than 0.1), so returns float32 whatever
    ``image``'s dtype. Images taller than ``rows`` are computed in strips of ``rows`` rows,
    each with the window's halo (the same numbers), so that a phone photo's window sums are
    never all held at once.
    """
    h, pad = image.shape[-2], window // 2
    with no_autocast(image):
        if h <= rows:
            return _rlcn_fp32(fp32(image), window, eps, clamp)
        out = torch.empty(image.shape, dtype=torch.float32 if image.dtype != torch.float64 else image.dtype,
                          device=image.device)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, b = max(0, r0 - pad), min(h, r1 + pad)
            out[:, :, r0:r1] = _rlcn_fp32(fp32(image[:, :, a:b]), window, eps, clamp)[:, :, r0 - a:r1 - a]
        return out


def _rlcn_fp32(image: torch.Tensor, window: int, eps: float, clamp: bool) -> torch.Tensor:
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


# --------------------------------------------------------------------------------------
# SAN pairwise self-attention (JDNet), pure PyTorch
# --------------------------------------------------------------------------------------
def fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32 precision (float64 stays float64, for gradient checks)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def no_autocast(t: torch.Tensor):
    """Autocast switched off for ``t``'s device (a no-op where autocast does not apply)."""
    if t.device.type in ("cpu", "cuda"):
        return torch.autocast(t.device.type, enabled=False)
    return contextlib.nullcontext()


def position_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """SAN's position map ``(1, 2, H, W)``: x then y, each ``linspace(-1, 1)`` over the image.

    Float32 (float64 for a float64 ``like``; on ``like``'s device): in bf16 neighbouring positions of a 481-px row
    (2/480 apart) round to the same value and their differences vanish.
    """
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    loc_w = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=dtype)
    loc_h = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=dtype)
    return torch.stack([loc_w.expand(height, width), loc_h[:, None].expand(height, width)])[None]


class PairwiseSelfAttention(nn.Module):
    """SAN pairwise self-attention (Zhao et al., CVPR 2020), the form JDNet uses.

    ``y_i = sum_{j in R(i)} w_ij (.) beta(x_j)`` over a ``k x k`` footprint ``R(i)`` with
    ``w_ij = softmax_j(gamma([phi(x_i) - psi(x_j), p_i - p_j]))``; ``p`` is the position grid
    after the learnable 1x1 ``conv_p``; gamma = activation -> 1x1 (rel+2 -> rel, no bias) ->
    1x1 (rel -> out/share). Value channel ``c`` uses weight channel ``c mod (out/share)``.
    Borders use reflection padding (PyTorch ``mode="reflect"``), as the official
    ``*_refpad`` CUDA kernels do.

    Instead of unfolding 49 shifted copies, the footprint is walked one offset at a time: only
    the ``(B, out/share, k*k, H, W)`` logits are stored (architectures.md 1.6, option (b)).
    Attribute names follow the official code (``conv1`` = phi, ``conv2`` = psi,
    ``conv3`` = beta, ``conv_w`` = gamma, ``conv_p``) so official checkpoints load.

    Records ``attention.centre`` (weight of the pixel itself), ``attention.entropy``
    (normalised to [0, 1]), ``attention.shift`` (expected offset x, y in pixels, per weight
    channel) and, when ``rec.full``, ``attention.weights`` ``(B, out/share, k*k, H, W)``.
    """

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int,
                 kernel_size: int = 7, activation: nn.Module | None = None):
        super().__init__()
        if out_planes % share_planes:
            raise ValueError(f"out_planes ({out_planes}) must be divisible by share_planes ({share_planes})")
        self.kernel_size = kernel_size
        self.weight_channels = out_planes // share_planes
        self.conv1 = nn.Conv2d(in_planes, rel_planes, 1)
        self.conv2 = nn.Conv2d(in_planes, rel_planes, 1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, 1)
        self.conv_w = nn.Sequential(
            nn.LeakyReLU(0.2) if activation is None else activation,
            nn.Conv2d(rel_planes + 2, rel_planes, 1, bias=False),
            nn.Conv2d(rel_planes, self.weight_channels, 1))
        self.conv_p = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad = [self.kernel_size // 2] * 4
        if use_reference_kernels():
            phi, psi, value = self.conv1(x), self.conv2(x), self.conv3(x)
        else:  # phi, psi and beta as one 1x1 conv: x is read once (and gets one gradient)
            convs = (self.conv1, self.conv2, self.conv3)
            phi, psi, value = F.conv2d(x, torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs])
                                       ).split([c.out_channels for c in convs], dim=1)
        # the offset loop reads whole planes: NCHW suits it, whatever layout x arrives in
        phi = phi.contiguous()
        psi = F.pad(psi.contiguous(), pad, mode="reflect")
        value = F.pad(value.contiguous(), pad, mode="reflect")
        pos, pos_pad = self.positions(h, w, x)
        # On CPU the attention runs in float32 with autocast off: bf16 element-wise ops and
        # casts cost more there than they save (these tensors have few channels, many offsets).
        # The reference form keeps the precision it always had (bf16 logits under autocast).
        cpu32 = x.device.type == "cpu" and not use_reference_kernels()
        dtype = phi.dtype
        if cpu32:
            phi, psi, value = fp32(phi), fp32(psi), fp32(value)
        with no_autocast(x) if cpu32 else contextlib.nullcontext():
            if use_fast_kernels() and isinstance(self.conv_w[0], nn.LeakyReLU):
                out, weights = self._attend_inference(phi, psi, pos, pos_pad, value, rec.enabled)
            elif use_reference_kernels():
                out, weights = self._attend(phi, psi, pos, pos_pad, value)
            else:  # autograd (training) or a custom activation: the vectorised form
                out, weights = self._attend_vectorized(phi, psi, pos, pos_pad, value)
        out = out.to(dtype)
        if rec.enabled:
            self._record(weights, rec)
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def positions(self, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``conv_p`` of the position grid and its reflection-padded copy, float32 under any autocast."""
        pad = [self.kernel_size // 2] * 4
        with no_autocast(like):
            grid = position_grid(h, w, like)
            pos = F.conv2d(grid, self.conv_p.weight.to(grid.dtype), self.conv_p.bias.to(grid.dtype))
        return pos.contiguous(), F.pad(pos, pad, mode="reflect")

    def _offsets(self):
        k = self.kernel_size
        return [divmod(idx, k) for idx in range(k * k)]

    def _attend(self, phi, psi, pos, pos_pad, value):
        """Reference form (and the one autograd uses): per offset, gamma on
        ``[phi_i - psi_j, p_i - p_j]``, then softmax over the footprint."""
        b, _, h, w = phi.shape
        logits = []
        for dy, dx in self._offsets():
            d_rel = phi - psi[:, :, dy:dy + h, dx:dx + w]
            # differences in float32, then cast: small as they are, they keep their digits
            d_pos = (pos - pos_pad[:, :, dy:dy + h, dx:dx + w]).to(d_rel.dtype).expand(b, -1, -1, -1)
            logits.append(self.conv_w(torch.cat([d_rel, d_pos], dim=1)))
        # softmax and the weighted sum in float32 (CPU autocast would keep them in bf16)
        weights = torch.softmax(fp32(torch.stack(logits, dim=2)), dim=2)  # (B, Cw, k*k, H, W)
        cw = weights.shape[1]
        out = 0
        for idx, (dy, dx) in enumerate(self._offsets()):
            v = value[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw))
            out = out + v * weights[:, None, :, idx]
        return out.flatten(1, 2), weights

    def _gamma_matrix(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """gamma's two 1x1 convs are linear in a row: one ``(Cw, rel + 2)`` matrix and a bias
        (applied after the LeakyReLU of slope returned third). Differentiable."""
        act, gamma1, gamma2 = self.conv_w
        return gamma2.weight.flatten(1) @ gamma1.weight.flatten(1), gamma2.bias, act.negative_slope

    def _attend_vectorized(self, phi, psi, pos, pos_pad, value):
        """The autograd (training) form. With gamma's LeakyReLU, the logits are
        :class:`_Logits` and the weighted sum :class:`_Aggregate`: both walk the ``k*k``
        offsets in small buffers and have hand-written backward passes, so nothing of size
        ``k*k`` times the image is stored but the softmax weights. (Written with autograd,
        every offset's slices zero-filled whole padded copies in the backward pass, and the
        ``(B, rel + 2, k*k, H, W)`` differences were stored for it.) A custom activation
        takes the same formula written with ``F.unfold``. Inside :func:`~derain_core.base.compiled_blocks`
        the compiled :func:`san_attention` runs instead (faster on CPU). Same result to float
        rounding."""
        b, rel, h, w = phi.shape
        k = self.kernel_size
        n = k * k
        if isinstance(self.conv_w[0], nn.LeakyReLU):
            mat, bias, slope = self._gamma_matrix()
            kernel = _compiled_attention() if use_compiled_blocks() else None
            result = kernel(phi, psi, pos, pos_pad, value, mat, bias, k, slope) if kernel else None
            if result is not None:
                return result
            logits = _Logits.apply(phi, psi, pos, pos_pad, mat, bias, k, slope)
        else:
            psi_n = F.unfold(psi, k).view(b, rel, n, h, w)
            pos_n = F.unfold(pos_pad, k).view(1, 2, n, h, w)
            d_rel = phi.unsqueeze(2) - psi_n  # (B, rel, n, H, W)
            d_pos = (pos.unsqueeze(2) - pos_n).to(d_rel.dtype).expand(b, -1, -1, -1, -1)
            diff = torch.cat([d_rel, d_pos], dim=1).view(b, rel + 2, n * h, w)
            logits = self.conv_w(diff)  # pointwise layers: any spatial shape
        weights = torch.softmax(fp32(logits.view(b, -1, n, h, w)), dim=2)  # (B, Cw, n, H, W), float32
        return _Aggregate.apply(value, weights, k), weights

    def _attend_inference(self, phi, psi, pos, pos_pad, value, keep_weights):
        """Same result without autograd, fast and memory-light: the logits of
        :func:`_offset_logits`, a softmax in place on them (the only large buffer), and the
        weighted sum one offset at a time."""
        b, rel, h, w = phi.shape
        mat, bias, slope = self._gamma_matrix()
        logits = _offset_logits(phi, psi, pos, pos_pad, mat, bias, self.kernel_size, slope)
        cw = logits.shape[1]
        logits.sub_(logits.amax(dim=2, keepdim=True)).exp_()
        total = logits.sum(dim=2)
        out = phi.new_zeros(b, value.shape[1] // cw, cw, h, w)
        for idx, (dy, dx) in enumerate(self._offsets()):
            v = value[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw))
            out.addcmul_(v, logits[:, None, :, idx])
        out.div_(total.unsqueeze(1))
        if keep_weights:
            logits.div_(total.unsqueeze(2))
        return out.flatten(1, 2), logits

    def _record(self, weights: torch.Tensor, rec: Recorder) -> None:
        k = self.kernel_size
        centre = (k * k) // 2
        rec("attention.centre", weights[:, :, centre].clone())  # a view would pin all k*k
        ent = -(weights * weights.clamp_min(1e-12).log()).sum(2) / torch.log(weights.new_tensor(float(k * k)))
        rec("attention.entropy", ent)
        offs = torch.arange(k, device=weights.device, dtype=weights.dtype) - k // 2
        dx = torch.einsum("bcnhw,n->bchw", weights, offs.repeat(k))
        dy = torch.einsum("bcnhw,n->bchw", weights, offs.repeat_interleave(k))
        rec("attention.shift", torch.cat([dx, dy], dim=1))
        if rec.full:
            rec("attention.weights", weights)


def san_attention(phi: torch.Tensor, psi: torch.Tensor, pos: torch.Tensor, pos_pad: torch.Tensor,
                  value: torch.Tensor, mat: torch.Tensor, bias: torch.Tensor, k: int, slope: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAN attention with gamma = LeakyReLU then the linear ``mat``/``bias``, in plain autograd
    ops, one footprint offset at a time: ``(output, softmax weights (B, Cw, k*k, H, W))``.

    The form ``torch.compile`` is given (:func:`_compiled_attention`): Inductor fuses each
    offset's differences, activation and logit into one loop, and derives a fused backward,
    which beats the hand-written :class:`_Logits` / :class:`_Aggregate` backward passes.
    Eager, it stores every offset's differences for autograd; do not call it uncompiled.
    ``psi``, ``pos_pad`` and ``value`` are reflection-padded by ``k // 2``.
    """
    b, rel, h, w = phi.shape
    cw = mat.shape[0]
    logits = []
    for idx in range(k * k):
        dy, dx = divmod(idx, k)
        diff = torch.cat([phi - psi[:, :, dy:dy + h, dx:dx + w],
                          (pos - pos_pad[:, :, dy:dy + h, dx:dx + w]).to(phi.dtype).expand(b, -1, -1, -1)], 1)
        act = F.leaky_relu(diff, slope)
        logits.append((act.unsqueeze(1) * mat.view(1, cw, rel + 2, 1, 1)).sum(2) + bias.view(1, cw, 1, 1))
    weights = torch.softmax(fp32(torch.stack(logits, dim=2)), dim=2)
    value = value.to(weights.dtype)
    out = 0
    for idx in range(k * k):
        dy, dx = divmod(idx, k)
        out = out + value[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw)) * weights[:, None, :, idx]
    return out.flatten(1, 2), weights


_COMPILED_ATTENTION: list = []  # [compiled san_attention, or None when compiling failed]


def _compiled_attention():
    """:func:`san_attention` under ``torch.compile`` (built on first use; ``None``, with one
    warning, where this PyTorch cannot compile, e.g. no C++ compiler)."""
    if not _COMPILED_ATTENTION:
        compiled = torch.compile(san_attention, dynamic=False)

        def run(*args):
            try:
                return compiled(*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
                warnings.warn(f"torch.compile of the SAN attention failed ({type(exc).__name__}); "
                              "training goes on with the eager kernels", RuntimeWarning, stacklevel=2)
                _COMPILED_ATTENTION[0] = None
                return None

        _COMPILED_ATTENTION.append(run)
    return _COMPILED_ATTENTION[0]


class _Aggregate(torch.autograd.Function):
    """SAN's weighted sum over the footprint, ``out[:, s*Cw + c] = sum_n shift_n(value)[:, s*Cw + c]
    * weights[:, c, n]``, with a hand-written backward.

    ``value`` is the reflection-padded ``(B, C, H + k - 1, W + k - 1)`` tensor, ``weights``
    the float32 ``(B, Cw, k*k, H, W)`` softmax. Written with autograd, each of the ``k*k``
    shifted slices costs a zero-filled padded copy in the backward pass; here the gradients
    are accumulated into one buffer, offset by offset. Float32 sums (float64 stays float64).
    """

    @staticmethod
    def forward(ctx, value: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
        b, cw, n, h, w = weights.shape
        ctx.value_dtype, ctx.k = value.dtype, k
        value = value.to(weights.dtype)  # one copy of a few channels, not one per offset
        out = weights.new_zeros(b, value.shape[1] // cw, cw, h, w)
        for idx in range(n):
            dy, dx = divmod(idx, k)
            out.addcmul_(value[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw)), weights[:, None, :, idx])
        ctx.save_for_backward(value, weights)
        return out.flatten(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        value, weights = ctx.saved_tensors
        b, cw, n, h, w = weights.shape
        k = ctx.k
        g = grad.to(weights.dtype).unflatten(1, (-1, cw))  # (B, S, Cw, H, W)
        need_v, need_w = ctx.needs_input_grad[:2]
        gv = torch.zeros_like(value) if need_v else None
        gw = torch.empty_like(weights) if need_w else None
        for idx in range(n):
            dy, dx = divmod(idx, k)
            if need_w:
                gw[:, :, idx] = (g * value[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw))).sum(1)
            if need_v:
                gv[:, :, dy:dy + h, dx:dx + w].unflatten(1, (-1, cw)).addcmul_(g, weights[:, None, :, idx])
        return (gv.to(ctx.value_dtype) if need_v else None), gw, None


def _offset_diff(phi: torch.Tensor, psi: torch.Tensor, pos: torch.Tensor, pos_pad: torch.Tensor,
                 dy: int, dx: int, out: torch.Tensor) -> torch.Tensor:
    """``[phi_i - psi_j, p_i - p_j]`` for the footprint offset ``(dy, dx)``, written into ``out``
    ``(B, rel + 2, H, W)`` (``psi`` and ``pos_pad`` are padded by ``k // 2``)."""
    b, rel, h, w = phi.shape
    torch.sub(phi, psi[:, :, dy:dy + h, dx:dx + w], out=out[:, :rel])
    torch.sub(pos.expand(b, -1, -1, -1), pos_pad[:, :, dy:dy + h, dx:dx + w].expand(b, -1, -1, -1),
              out=out[:, rel:])
    return out


def _offset_logits(phi: torch.Tensor, psi: torch.Tensor, pos: torch.Tensor, pos_pad: torch.Tensor,
                   mat: torch.Tensor, bias: torch.Tensor, k: int, slope: float) -> torch.Tensor:
    """SAN's attention logits ``(B, Cw, k*k, H, W)``: for each offset of the ``k x k`` footprint,
    ``mat @ LReLU([phi_i - psi_j, p_i - p_j]) + bias``, with gamma's two linear 1x1 convs as
    one matrix product (a 1x1 conv with so few channels is far slower on CPU). The
    differences live in one small buffer that stays in cache; ``psi`` and ``pos_pad`` are
    reflection-padded by ``k // 2``."""
    b, rel, h, w = phi.shape
    cw = mat.shape[0]
    mat = mat.to(phi.dtype).expand(b, -1, -1)
    bias = bias.to(phi.dtype).view(1, cw, 1)
    logits = phi.new_empty(b, cw, k * k, h, w)
    diff = phi.new_empty(b, rel + 2, h, w)
    for idx in range(k * k):
        _offset_diff(phi, psi, pos, pos_pad, *divmod(idx, k), out=diff)
        F.leaky_relu_(diff, slope)
        logits[:, :, idx] = torch.baddbmm(bias, mat, diff.view(b, rel + 2, h * w)).view(b, cw, h, w)
    return logits


class _Logits(torch.autograd.Function):
    """:func:`_offset_logits` with a hand-written backward that recomputes each offset's
    differences instead of storing them (they would be ``rel + 2`` times the logits)."""

    @staticmethod
    def forward(ctx, phi, psi, pos, pos_pad, mat, bias, k: int, slope: float) -> torch.Tensor:
        ctx.save_for_backward(phi, psi, pos, pos_pad, mat)
        ctx.k, ctx.slope = k, slope
        return _offset_logits(phi, psi, pos, pos_pad, mat, bias, k, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        phi, psi, pos, pos_pad, mat = ctx.saved_tensors
        k, slope = ctx.k, ctx.slope
        b, rel, h, w = phi.shape
        cw = mat.shape[0]
        grad = grad.to(phi.dtype)
        mat_t = mat.to(phi.dtype).t()  # (rel + 2, Cw)
        g_phi, g_psi = torch.zeros_like(phi), torch.zeros_like(psi)
        g_pos, g_pos_pad = torch.zeros_like(pos), torch.zeros_like(pos_pad)
        g_mat = torch.zeros(cw, rel + 2, dtype=torch.promote_types(phi.dtype, torch.float32), device=phi.device)
        diff = phi.new_empty(b, rel + 2, h, w)
        for idx in range(k * k):
            dy, dx = divmod(idx, k)
            _offset_diff(phi, psi, pos, pos_pad, dy, dx, out=diff)
            g = grad[:, :, idx]  # (B, Cw, H, W)
            act = F.leaky_relu(diff, slope)
            g_mat += torch.einsum("bchw,bkhw->ck", g, act).to(g_mat.dtype)  # summed in float32 at least
            if cw == 1:
                g_act = g * mat_t.view(1, rel + 2, 1, 1)
            else:
                g_act = torch.einsum("kc,bchw->bkhw", mat_t, g)
            g_diff = torch.ops.aten.leaky_relu_backward(g_act, diff, slope, False)
            g_phi += g_diff[:, :rel]
            g_psi[:, :, dy:dy + h, dx:dx + w] -= g_diff[:, :rel]
            g_p = g_diff[:, rel:].sum(0, keepdim=True)
            g_pos += g_p
            g_pos_pad[:, :, dy:dy + h, dx:dx + w] -= g_p
        g_bias = grad.sum(dim=(0, 2, 3, 4))
        return g_phi, g_psi, g_pos, g_pos_pad, g_mat.to(mat.dtype), g_bias, None, None
