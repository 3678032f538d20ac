"""MFAN: Multifocal Attention-Based Cross-Scale Network for Image De-raining (Zhang et al., ACM MM 2021).

Data flow (``shared/design/architectures.md`` section 4; the official repository holds only a
README, so every wiring detail the paper's text leaves open is a documented choice)::

    O --adaptive-kernel pyramid--> I1 (H), I2 (H/2), I3 (H/4)
    entrance:   f_s = ReLU(conv3x3(I_s));  e_s = sCSSAB(f_s, f_{s+1})   (bottom: sCSSAB(f_3, f_3))
    8 basic modules, per scale s (all scales in parallel from the module inputs x_s):
        d_s = ReLU(conv3x3 stride 2 (x_s));  c_s = cCSSAB(d_s, d_{s+1})   (bottom: self)
        u_s = PixelShuffle2(conv3x3(c_s, C -> 4C)) + x_s;  y_s = sCSSAB(u_s, u_{s+1})
    h_s = y_s^(8) + e_s;  fusion: g_2 = ReLU(conv(cat(h_2, up(h_3)))), g_1 = ReLU(conv(cat(h_1, up(g_2))))
    R = conv3x3(g_1);  output = O - R

sCSSAB = spatial cross-scale similarity attention block (queries from the larger scale,
keys/values from the smaller one, all three re-calibrated by the wavelet FRCB and split into
the four Haar band groups LL, LH, HL, HH; keys/values pooled to 110 SPP anchors).
cCSSAB = channel cross-scale similarity attention block (4 heads of C/4 x C/4 channel
similarities). Haar band names follow ``blocks.haar_dwt``: LH = row differences (horizontal
edges), HL = column differences (vertical edges, e.g. near-vertical streaks).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base import DerainNet, MapSpec, Recorder
from ..blocks import HAAR_BAND_MEANING, HAAR_BANDS, SPP_ANCHORS, fp32, haar_dwt, no_autocast, spp_anchors
from ..losses import l1_output
from ..recipes import Recipe, Schedule, TrainingSpec
from ..registry import ModelCard, PaperResult, register

_OFF = Recorder.off()
N_SCALES = 3  # the paper's pyramid: H, H/2, H/4
N_BANDS = len(HAAR_BANDS)  # four FRCB band groups

CARD = ModelCard(
    id="mfan",
    name="MFAN",
    paper="Multifocal Attention-Based Cross-Scale Network for Image De-raining",
    venue="ACM Multimedia (MM '21)",
    year=2021,
    predicts="rain layer",
    predicts_note="output = input - R",
    training=TrainingSpec(
        loss=l1_output,
        paper=Recipe(2e-4, Schedule("halving", halvings=7), "L1",
                     source="paper 4.8: Adam 2e-4 halved every 100 of 700 epochs"),
        short_lr=5e-4),
    description=("A three-scale network on a learnable image pyramid whose scales exchange "
                 "information through cross-scale attention: spatial attention split into four "
                 "Haar wavelet bands over 110 pooled anchors, and 4-head channel attention; it "
                 "predicts the rain layer R and returns input - R."),
    size_multiple=8,
    min_size=16,
    supports_fp16=True,
    supports_bf16=True,
    cpu_channels_last=True,
    tiling="supported",
    tile_overlap=64,
    default_config={"channels": 64, "num_modules": 8, "heads": 4, "qk_scale": 1.0, "fusion_slope": 0.0},
    test_config={"channels": 16, "num_modules": 2, "heads": 4, "qk_scale": 1.0, "fusion_slope": 0.0},
    paper_results=(
        PaperResult("Rain200H", 30.17, 0.906, "Y"),
        PaperResult("Rain200L", 40.38, 0.987, "Y"),
        PaperResult("DID-MDN (Rain1200)", 35.00, 0.940, "Y"),
        PaperResult("SPA-Data", 35.25, 0.955, "Y", note="trained on Rain200H (generalisation)"),
    ),
    provenance=(
        "paper: predicts the residual R, output O - R; L1 loss on the output; adaptive-kernel "
        "pyramid I_s = K * I_{s-1} (eq. 2); 64 channels, 4 heads, 8 basic modules (ablations)",
        "paper: spatial CSSAB eqs. 3-5: queries from the large scale, keys/values from the small "
        "scale, FRCB = Haar DWT -> pixel-shuffle -> concat LL, LH, HL, HH, SPP anchors 1+9+36+64 "
        "= 110, per-band softmax over anchors without 1/sqrt(d); the bottom scale attends to itself",
        "paper: channel CSSAB eq. 6: SPP on Q and K, V unchanged, softmax(K^T Q), 4 heads",
        "official code: none (zhangzheyu0/Multifocal_derain holds only a README; no weights)",
        "choice: pyramid kernel K = one depthwise 5x5 filter per colour, stride 2, reflect "
        "padding, shared by both levels, initialised to the binomial [1,4,6,4,1]^2/256",
        "choice: 1x1 convs for Q, K, V and an output 1x1 conv before the residual add in both "
        "CSSABs; channel-CSSAB softmax over the key channels (each output channel is a convex "
        "combination of its head's input channels)",
        "choice: basic module = stride-2 3x3 conv + ReLU -> cCSSAB -> 3x3 conv C->4C + "
        "pixel-shuffle + long skip -> sCSSAB; global skip h_s = y_s + e_s after the 8 modules; "
        "fusion by bilinear up-sampling, concat, 3x3 conv + ReLU, 3x3 conv to R",
        "choice: fusion_slope (default 0 = ReLU, as above) makes the two fusion activations leaky; "
        "measured: trained from the first shipped weights at lr 5e-4 under L1, every unit of the last "
        "fusion ReLU died within 774 steps (pre-activation mean -1.32) and R became a constant, so "
        "the output equalled the input; the paper does not name this activation",
        "choice: attention in float32 when the net runs in half precision; optional qk_scale "
        "multiplies the similarity logits (1.0 = paper)",
        "choice: full similarity matrices (B,4,h*w,110) are recorded only with full capture, as "
        "B x 440 x h x w maps (channel = band * 110 + anchor); by default per-pixel entropy "
        "over anchors (and the argmax anchor in the entrance) summarise them",
        "choice: pad to a multiple of 8 (the smallest scale H/4 must be even for the Haar step "
        "and the stride-2 / pixel-shuffle round trip); the spec's 'multiple of 16 for safety' "
        "is not needed",
    ),
    license="MIT (this re-implementation)",
)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def binomial_kernel() -> torch.Tensor:
    """The normalised 5x5 binomial filter ``[1,4,6,4,1]^T [1,4,6,4,1] / 256``."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    return torch.outer(k, k) / 256.0


# Rows LL, LH, HL, HH (as in blocks.haar_dwt); columns the 2x2 block's pixels a, b / c, d.
_HAAR = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0],
                      [-1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, 1.0]], device="cpu") / 2


def frcb(x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
    """Feature re-calibrated block: Haar DWT, pixel-shuffle each band, concat LL, LH, HL, HH.

    ``(B, C, h, w)`` -> ``(B, C, h, w)`` whose four channel groups of ``C/4`` each hold one
    band, spatially aligned with the input grid: channel ``g*C/4 + k`` at pixel
    ``(2i+a, 2j+b)`` is band ``g`` of input channel ``4k + 2a + b`` at ``(i, j)``.
    Computed as one einsum (about 3x faster than slicing + four pixel-shuffles + concat;
    the same numbers). Records the bands ``(B, C, h/2, w/2)`` under LL, LH, HL, HH.
    """
    b, c, h, w = x.shape
    if h % 2 or w % 2 or c % 4:
        raise ValueError(f"FRCB needs even height and width and C divisible by 4, got {tuple(x.shape)}")
    if rec.enabled:
        for name, band in zip(HAAR_BANDS, haar_dwt(x)):
            rec(name, band)
    haar = _HAAR.to(device=x.device, dtype=x.dtype).view(4, 2, 2)  # (band, p, q)
    xv = x.reshape(b, c // 4, 2, 2, h // 2, 2, w // 2, 2)  # (B, k, a, b, i, p, j, q)
    return torch.einsum("gpq,nkabipjq->ngkiajb", haar, xv).reshape(b, c, h, w)


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------
class AdaptivePyramid(nn.Module):
    """Learnable image pyramid (paper eq. 2): ``I_s = K * I_{s-1}`` with stride 2.

    ``K`` is one depthwise 5x5 filter per colour channel (no bias, reflect padding), shared
    by all levels and initialised to the normalised binomial filter (a Gaussian pyramid).
    """

    def __init__(self, levels: int = N_SCALES):
        super().__init__()
        self.levels = levels
        self.kernel = nn.Parameter(binomial_kernel().expand(3, 1, 5, 5).clone())

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> list[torch.Tensor]:
        images = [x]
        for _ in range(self.levels - 1):
            padded = F.pad(images[-1], (2, 2, 2, 2), mode="reflect")
            images.append(F.conv2d(padded, self.kernel.to(x.dtype), stride=2, groups=3))
        if rec.enabled:
            for i, image in enumerate(images, 1):
                rec(f"I{i}", image)
            rec("kernel", self.kernel.view(1, 3, 5, 5).expand(x.shape[0], 3, 5, 5), spatial=False)
        return images

    @staticmethod
    def specs(prefix: str, levels: int = N_SCALES) -> list[MapSpec]:
        out = [MapSpec(f"{prefix}I{i}", "image", f"pyramid image I{i}",
                       f"the input filtered by the learned kernel and down-sampled {i - 1} times"
                       f" (1/{2 ** (i - 1)} resolution)", 3, 2 ** (i - 1), group="pyramid")
               for i in range(1, levels + 1)]
        out.append(MapSpec(f"{prefix}kernel", "feature", "pyramid kernel K",
                           "the learned 5x5 down-sampling filter, one per colour (R, G, B); "
                           "starts as a Gaussian", 3, scale=0, size=(5, 5), group="pyramid"))
        return out


def spatial_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0,
                           chunk: int = 2048, use_sdpa: bool | None = None) -> torch.Tensor:
    """``softmax(scale * Q K^T) V`` per band group, nothing recorded, memory-light.

    ``q`` ``(B, G, d, N)`` (channel-first), ``k, v`` ``(B, G, d, S)``; returns ``(B, G, d, N)``.
    On CUDA (or ``use_sdpa=True``) PyTorch's fused ``scaled_dot_product_attention``; on CPU
    ``chunk`` query pixels at a time (faster there: the 110 keys fit in cache). Logits are
    accumulated in float32 either way.
    """
    if use_sdpa is None:
        use_sdpa = q.is_cuda
    if use_sdpa:
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                           v.transpose(-1, -2), scale=scale)
        return y.transpose(-1, -2)
    qt = q.transpose(-1, -2)  # (B, G, N, d), a view
    kf, vt = k.float(), v.float().transpose(-1, -2)
    out = []
    with no_autocast(q):  # float32 for real (and faster on CPU)
        for n0 in range(0, qt.shape[-2], chunk):
            logits = qt[:, :, n0:n0 + chunk].float() @ kf  # (B, G, n, S)
            if scale != 1.0:
                logits = logits * scale
            out.append(torch.softmax(logits, dim=-1) @ vt)
    return torch.cat(out, dim=-2).transpose(-1, -2).to(q.dtype)


def spatial_attention_explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               scale: float = 1.0, chunk: int = 2048, full: bool = False
                               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The same attention with the similarity ``M = softmax_anchors(scale * Q K^T)`` explicit.

    Float32, ``chunk`` query pixels at a time. Returns ``y`` ``(B, G, d, N)`` and summaries of
    ``M``: ``entropy`` ``(B, G, N)`` normalised to [0, 1] by ``log S``, ``argmax`` ``(B, G, N)``
    (anchor index as float) and, if ``full``, ``similarity`` ``(B, G, N, S)`` itself.
    """
    s = k.shape[-1]
    qt = q.transpose(-1, -2)
    kf, vt = k.float(), v.float().transpose(-1, -2)
    ys, ents, args, sims = [], [], [], []
    with no_autocast(q):  # float32, as the fast form
        for n0 in range(0, qt.shape[-2], chunk):
            logm = torch.log_softmax((qt[:, :, n0:n0 + chunk].float() @ kf) * scale, dim=-1)
            m = logm.exp()  # (B, G, n, S)
            ys.append(m @ vt)
            ents.append(-(m * logm).sum(dim=-1) / math.log(s))
            args.append(m.argmax(dim=-1).float())
            if full:
                sims.append(m)
    summary = {"entropy": torch.cat(ents, -1), "argmax": torch.cat(args, -1)}
    if full:
        summary["similarity"] = torch.cat(sims, -2)
    return torch.cat(ys, -2).transpose(-1, -2).to(q.dtype), summary


class SpatialCSSAB(nn.Module):
    """Spatial cross-scale similarity attention (paper eqs. 3-5, spec 4.3).

    ``Q = FRCB(conv(X_L))``, ``K, V = SPP(FRCB(conv(X_S)))`` split into the four band groups;
    ``M_g = softmax_anchors(Q_g K_g^T)``; ``out = X_L + conv1x1(concat_g M_g V_g)``.
    ``detail`` blocks (the entrance) also record the query bands and the argmax anchor by
    default; the others only with full capture.
    """

    chunk = 2048  # query pixels per block of the chunked attention

    def __init__(self, channels: int, qk_scale: float = 1.0, detail: bool = False):
        super().__init__()
        if channels % N_BANDS:
            raise ValueError(f"channels ({channels}) must be divisible by {N_BANDS} (FRCB)")
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.qk_scale = qk_scale
        self.detail = detail

    def forward(self, xl: torch.Tensor, xs: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        b, c, h, w = xl.shape
        g, d = N_BANDS, c // N_BANDS
        q = frcb(self.q(xl), rec.child("frcb_q.") if self.detail or rec.full else _OFF)
        k = frcb(self.k(xs), rec.child("frcb_k.") if rec.full else _OFF)
        ka = spp_anchors(k).view(b, g, d, SPP_ANCHORS)
        va = spp_anchors(frcb(self.v(xs))).view(b, g, d, SPP_ANCHORS)
        qf = q.view(b, g, d, h * w)
        if not rec.enabled:
            y = spatial_attention_fast(qf, ka, va, self.qk_scale, self.chunk)
        else:
            y, summary = spatial_attention_explicit(qf, ka, va, self.qk_scale, self.chunk, rec.full)
            rec("similarity.entropy", summary["entropy"].view(b, g, h, w))
            if self.detail or rec.full:
                rec("similarity.argmax", summary["argmax"].view(b, g, h, w))
            rec("group_maps", y.abs().mean(dim=2).view(b, g, h, w))
            if rec.full:
                sim = summary["similarity"].transpose(-1, -2)  # (B, G, S, N)
                rec("similarity", sim.reshape(b, g * SPP_ANCHORS, h, w))
                rec("group_out", y.reshape(b, c, h, w))
        return xl + self.proj(y.reshape(b, c, h, w))

    def specs(self, prefix: str, channels: int, scale: int, small_scale: int, group: str,
              full: bool = False) -> list[MapSpec]:
        out: list[MapSpec] = []
        sides = [("q", "query", scale)] if self.detail or full else []
        if full:
            sides.append(("k", "key", small_scale))
        for side, word, sc in sides:
            for band in HAAR_BANDS:
                out.append(MapSpec(f"{prefix}frcb_{side}.{band}", "band", f"FRCB {word} band {band}",
                                   f"Haar band {band} of the {word} features: "
                                   f"{HAAR_BAND_MEANING[band]}", channels, 2 * sc, group=group))
        bands = ", ".join(HAAR_BANDS)
        out.append(MapSpec(f"{prefix}similarity.entropy", "attention", "similarity entropy",
                           f"per pixel and band group ({bands}): 0 = looks at one pooled region "
                           "of the smaller scale, 1 = spreads evenly over all 110", N_BANDS, scale,
                           group=group, channel_names=HAAR_BANDS))
        if self.detail or full:
            out.append(MapSpec(f"{prefix}similarity.argmax", "index", "most-attended anchor",
                               f"per band group ({bands}) the index of the strongest anchor: 0 = "
                               "whole image, 1-9 = 3x3 grid, 10-45 = 6x6, 46-109 = 8x8 (row-major)",
                               N_BANDS, scale, group=group, channel_names=HAAR_BANDS))
        out.append(MapSpec(f"{prefix}group_maps", "feature", "band-group attention output",
                           f"mean |M_g V_g| per band group ({bands}): what each wavelet band "
                           "brings from the other scale (paper Fig. 1 a-d)", N_BANDS, scale,
                           group=group, channel_names=HAAR_BANDS))
        if full:
            out.append(MapSpec(f"{prefix}similarity", "attention", "full similarity",
                               "softmax weights over anchors; channel = band * 110 + anchor",
                               N_BANDS * SPP_ANCHORS, scale, group=group))
            out.append(MapSpec(f"{prefix}group_out", "feature", "band-group outputs",
                               "M_g V_g, C/4 channels per band group", channels, scale, group=group))
        return out


class ChannelCSSAB(nn.Module):
    """Channel cross-scale similarity attention (paper eq. 6, spec 4.4), ``heads`` heads.

    ``Q = SPP(conv(X_L))``, ``K = SPP(conv(X_S))``, ``V = conv(X_L)``; per head
    ``A = softmax_i(K Q^T)`` (d x d, rows = key channels i, softmax over i);
    ``O[j] = sum_i V[i] A[i, j]``; ``out = X_L + conv1x1(concat heads)``.
    SPP is an average, so it commutes with the 1x1 conv: the Q/K convs run on the 110 anchors.
    """

    def __init__(self, channels: int, heads: int = 4, qk_scale: float = 1.0):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.qk_scale = qk_scale

    def forward(self, xl: torch.Tensor, xs: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        b, c, h, w = xl.shape
        nh, d = self.heads, c // self.heads
        al = spp_anchors(xl).unsqueeze(-1)  # (B, C, 110, 1)
        as_ = al if xs is xl else spp_anchors(xs).unsqueeze(-1)
        att = self.channel_attention(al, as_)
        v = self.v(xl).view(b, nh, d, h * w)
        o = att.transpose(-1, -2).to(v.dtype) @ v  # (B, nh, d, hw)
        if rec.enabled:
            rec("head_att", att, spatial=False)
            rec("head_maps", o.abs().mean(dim=2).view(b, nh, h, w))
            if rec.full:
                rec("head_out", o.reshape(b, c, h, w))
        return xl + self.proj(o.reshape(b, c, h, w))

    def channel_attention(self, al: torch.Tensor, as_: torch.Tensor) -> torch.Tensor:
        """``softmax_i(K Q^T)`` ``(B, heads, i, j)`` from the anchors, float32 under any autocast.

        The Q/K convs run on only 110 anchors, so float32 costs nothing here and keeps the
        logits exact (under bf16 they lose about 3 significant digits).
        """
        b, c = al.shape[:2]
        nh, d = self.heads, c // self.heads
        with no_autocast(al):
            al, as_ = fp32(al), fp32(as_)
            q = F.conv2d(al, self.q.weight.to(al.dtype), self.q.bias.to(al.dtype)).view(b, nh, d, SPP_ANCHORS)
            k = F.conv2d(as_, self.k.weight.to(al.dtype), self.k.bias.to(al.dtype)).view(b, nh, d, SPP_ANCHORS)
            return torch.softmax((k @ q.transpose(-1, -2)) * self.qk_scale, dim=-2)

    def specs(self, prefix: str, channels: int, scale: int, group: str,
              full: bool = False) -> list[MapSpec]:
        d = channels // self.heads
        out = [MapSpec(f"{prefix}head_att", "attention", "channel similarity per head",
                       f"{self.heads} heads of {d}x{d}: row i = channel of the smaller scale, "
                       "column j = output channel; each column sums to 1", self.heads, scale=0,
                       size=(d, d), group=group),
               MapSpec(f"{prefix}head_maps", "feature", "head maps",
                       "mean |output| of each head: the region each head focuses on "
                       "(paper Fig. 1 e-h)", self.heads, scale, group=group,
                       channel_names=tuple(f"head {i}" for i in range(self.heads)))]
        if full:
            out.append(MapSpec(f"{prefix}head_out", "feature", "head outputs",
                               f"per-head outputs, {d} channels per head", channels, scale,
                               group=group))
        return out


class BasicModule(nn.Module):
    """Attention-based basic module over the three scales (spec 4.6)."""

    def __init__(self, channels: int, heads: int, qk_scale: float):
        super().__init__()
        c = channels
        self.down = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for _ in range(N_SCALES))
        self.channel = nn.ModuleList(ChannelCSSAB(c, heads, qk_scale) for _ in range(N_SCALES))
        self.up = nn.ModuleList(nn.Conv2d(c, 4 * c, 3, padding=1) for _ in range(N_SCALES))
        self.spatial = nn.ModuleList(SpatialCSSAB(c, qk_scale) for _ in range(N_SCALES))

    def forward(self, xs: list[torch.Tensor], rec: Recorder = _OFF) -> list[torch.Tensor]:
        last = N_SCALES - 1
        d = [F.relu(conv(x)) for conv, x in zip(self.down, xs)]
        c = [blk(d[s], d[min(s + 1, last)], rec.child(f"scale{s + 1}.channel."))
             for s, blk in enumerate(self.channel)]
        u = [F.pixel_shuffle(conv(cs), 2) + x for conv, cs, x in zip(self.up, c, xs)]
        y = [blk(u[s], u[min(s + 1, last)], rec.child(f"scale{s + 1}.spatial."))
             for s, blk in enumerate(self.spatial)]
        for s, ys in enumerate(y):
            rec(f"scale{s + 1}", ys)
        return y


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------
@register(CARD)
class MFAN(DerainNet):
    """MFAN (see module docstring). ``forward_intermediates(x, full=True)`` adds the full
    similarity matrices, all FRCB bands and per-head outputs (``map_specs(full=True)``)."""

    def __init__(self, channels: int = 64, num_modules: int = 8, heads: int = 4,
                 qk_scale: float = 1.0, fusion_slope: float = 0.0):
        super().__init__()
        c = channels
        self.fusion_slope = fusion_slope  # negative slope of the fusion activations (0: ReLU)
        self.channels, self.num_modules, self.heads = channels, num_modules, heads
        self.pyramid = AdaptivePyramid(N_SCALES)
        self.shallow = nn.ModuleList(nn.Conv2d(3, c, 3, padding=1) for _ in range(N_SCALES))
        self.entrance = nn.ModuleList(SpatialCSSAB(c, qk_scale, detail=True) for _ in range(N_SCALES))
        self.body = nn.ModuleList(BasicModule(c, heads, qk_scale) for _ in range(num_modules))
        self.fuse = nn.ModuleList(nn.Conv2d(2 * c, c, 3, padding=1) for _ in range(N_SCALES - 1))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        last = N_SCALES - 1
        images = self.pyramid(x, rec.child("pyramid."))
        f = [F.relu(conv(im)) for conv, im in zip(self.shallow, images)]
        e = [blk(f[s], f[min(s + 1, last)], rec.child(f"entrance.scale{s + 1}."))
             for s, blk in enumerate(self.entrance)]
        y = e
        for m, module in enumerate(self.body, 1):
            y = module(y, rec.child(f"module{m}."))
        h = [ys + es for ys, es in zip(y, e)]
        g = h[last]
        for s in range(last - 1, -1, -1):  # fusion, coarse to fine
            g = self.fuse[s](torch.cat([h[s], _upsample(g, h[s])], dim=1))
            g = F.leaky_relu(g, self.fusion_slope) if self.fusion_slope else F.relu(g)
        rain = self.tail(g)
        out = x - rain
        rec("rain", rain)
        rec("output", out)
        return out

    def map_specs(self, full: bool = False) -> list[MapSpec]:
        """Maps recorded by default; ``full=True`` adds those only full capture keeps."""
        c = self.channels
        specs = AdaptivePyramid.specs("pyramid.")
        for s in range(1, N_SCALES + 1):
            small = min(s + 1, N_SCALES)
            specs += self.entrance[s - 1].specs(f"entrance.scale{s}.", c, 2 ** (s - 1),
                                                2 ** (small - 1), f"entrance/scale {s}", full)
        for m, module in enumerate(self.body, 1):
            for s in range(1, N_SCALES + 1):
                sc, small = 2 ** (s - 1), 2 ** (min(s + 1, N_SCALES) - 1)
                grp = f"module {m}/scale {s}"
                specs += module.channel[s - 1].specs(f"module{m}.scale{s}.channel.", c, 2 * sc,
                                                     f"{grp}/channel CSSAB", full)
                specs += module.spatial[s - 1].specs(f"module{m}.scale{s}.spatial.", c, sc, small,
                                                     f"{grp}/spatial CSSAB", full)
                specs.append(MapSpec(f"module{m}.scale{s}", "feature", f"module {m} output",
                                     f"features of scale {s} (1/{sc} resolution) after basic "
                                     f"module {m}", c, sc, group=grp))
        specs.append(MapSpec("rain", "residual", "rain layer R",
                             "what the network removes: input minus output", 3, group="output"))
        specs.append(MapSpec("output", "image", "derained image", "B = O - R", 3, group="output"))
        return specs
