"""DSM-Net: Deep Scale-space Mining Network (Li et al., CVPR Workshops 2022).

Specification: ``shared/design/architectures.md`` section 3. No code exists and the paper's
figures are unavailable; only the MAB equations (paper eqs. 2-11) are exact, the rest is the
spec's reasoned choice (see ``CARD.provenance``).

Data flow (C = 32, three scales, 4 + 3 + 3 MABs)::

    F0 = lrelu(conv3x3(I))                                   scale 1 (H x W)
    R1 = Row_4(F0)                                           4 densely connected MABs
    D2 = CADB(conv1x1(cat(avg2(F0), avg2(R1))));  R2 = Row_3(D2)      scale 2 (H/2)
    D3 = CADB(conv1x1(cat(avg4(F0), avg2(R2))));  R3 = Row_3(D3)      scale 3 (H/4)
    U2 = CADB(conv1x1(cat(R2, up2(R3))));  U1 = CADB(conv1x1(cat(R1, up2(U2))))
    R  = conv3x3(U1 + F0);  B = I - R

Row_n: MAB 1 takes the row input; MAB k >= 2 takes lrelu(conv1x1(cat(input, MAB_1..MAB_{k-1})));
the row output is the same fusion over the input and all n MAB outputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base import DerainNet, MapSpec, Recorder
from ..blocks import CBAMChannelAttention, SubspaceAttention
from ..losses import ssim
from ..recipes import Recipe, Schedule, TrainingSpec
from ..registry import ModelCard, PaperResult, register

_OFF = Recorder.off()
SLOPE = 0.2  # LeakyReLU negative slope (choice, see provenance)
KERNELS = (1, 3, 5)  # MAB branch kernel sizes (paper eqs. 2-10)

def training_loss(outs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Paper 3.4: MSE + 0.2 (1 - SSIM)."""
    out = outs["output"]
    return F.mse_loss(out, target) + 0.2 * (1.0 - ssim(out, target))


CARD = ModelCard(
    id="dsmnet",
    name="DSM-Net",
    paper="Deep Scale-space Mining Network for Single Image Deraining",
    venue="CVPR Workshops",
    year=2022,
    predicts="rain layer",
    training=TrainingSpec(
        loss=training_loss,
        paper=Recipe(1e-3, Schedule("multistep", milestones=(0.6, 0.8), gamma=0.1), "MSE + 0.2 (1 - SSIM)",
                     source="paper 3.4: Adam 1e-3; schedule not given (choice: x0.1 at 60/80%)"),
        short_lr=5e-4),
    description=(
        "A three-scale hourglass of densely connected multi-scale attention blocks (parallel "
        "1x1/3x3/5x5 convolutions) whose features are recalibrated by concurrent channel and "
        "subspace attention (CADB); predicts the rain layer R and returns I - R."),
    size_multiple=4,
    min_size=16,
    supports_fp16=True,
    supports_bf16=True,
    tiling="supported",
    tile_overlap=64,
    default_config=dict(channels=32, mabs_per_scale=(4, 3, 3), subspaces=8, reduction=8,
                        ulsam_batch_norm=False),
    test_config=dict(channels=16, mabs_per_scale=(2, 1, 1), subspaces=8, reduction=8,
                     ulsam_batch_norm=False),
    paper_results=(
        PaperResult("Rain100L", 38.27, 0.982, "not stated"),
        PaperResult("Rain100H", 28.62, 0.902, "not stated"),
        PaperResult("Rain800", 27.76, 0.871, "not stated"),
        PaperResult("Rain1400", 30.93, 0.929, "not stated"),
    ),
    provenance=(
        "paper: MAB eqs. 2-11 exactly (three layers of parallel 1x1/3x3/5x5 convs, summed "
        "branches feed the next layer, layer c adds a_k before and after its conv, "
        "concat -> 1x1 -> 3x3 -> CADB, plus F_in)",
        "paper: 10 MABs, CADB = channel + subspace attention with 8 subspaces, output B = I - R, "
        "loss MSE + 0.2 (1 - SSIM)",
        "paper: no official code or weights exist; the architecture figure is unavailable",
        "choice: macro layout of spec 3.3 (C=32, three scales by average pooling, 4+3+3 densely "
        "connected MABs, CADB at the 2 down and 2 up fusions, bilinear up-sampling)",
        "choice: LeakyReLU(0.2) after every k x k conv of MAB layers a, b, c and after the head "
        "and dense 1x1 fusions (co-author's ADC-Net habit); no activation in the eq. 11 fusion",
        "choice: CADB wiring of spec 3.2: lrelu(conv3x3) -> CBAM channel attention (r=8) and "
        "ULSAM in parallel -> conv1x1(cat) + input",
        "choice: CBAM MLP without biases and ULSAM without BatchNorm; this reproduces the "
        "spec's 1,408,403 parameters exactly",
    ),
    license="MIT (this re-implementation)",
)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE, inplace=True)


class CADB(nn.Module):
    """Concurrent attention distillation: ``X + conv1x1(cat(F * a_c, ULSAM(F)))``, ``F = lrelu(conv3x3 X)``.

    Records ``channel_att`` (B,C,1,1) and ``subspace_att`` (B,g,H,W, x H*W).
    """

    def __init__(self, channels: int, subspaces: int = 8, reduction: int = 8,
                 batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.channel = CBAMChannelAttention(channels, reduction, bias=False)
        self.subspace = SubspaceAttention(channels, subspaces, batch_norm=batch_norm)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        f = _lrelu(self.conv(x))
        a_c = self.channel(f)
        rec("channel_att", a_c, spatial=False)
        f_s = self.subspace(f, rec)
        return x + self.fuse(torch.cat([f * a_c, f_s], dim=1))


class MAB(nn.Module):
    """Multi-scale attention block, paper eqs. 2-11.

    ``a_k = conv_k(F_in)``, ``b_k = conv_k(sum a)``, ``c_k = conv_k(sum b + a_k) + a_k`` for
    k in 1, 3, 5 (LeakyReLU after each conv), then
    ``F_out = CADB(conv3x3(conv1x1(cat(c_1, c_3, c_5)))) + F_in``.
    """

    def __init__(self, channels: int, subspaces: int = 8, reduction: int = 8,
                 batch_norm: bool = False):
        super().__init__()

        def layer() -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(channels, channels, k, padding=k // 2) for k in KERNELS)

        self.layer_a, self.layer_b, self.layer_c = layer(), layer(), layer()
        self.fuse1 = nn.Conv2d(3 * channels, channels, 1)
        self.fuse3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.cadb = CADB(channels, subspaces, reduction, batch_norm)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Layer-c outputs ``[c_1, c_3, c_5]`` (eqs. 2-10)."""
        a = [_lrelu(conv(x)) for conv in self.layer_a]
        s_a = a[0] + a[1] + a[2]
        b = [_lrelu(conv(s_a)) for conv in self.layer_b]
        s_b = b[0] + b[1] + b[2]
        return [_lrelu(conv(s_b + a_k)) + a_k for conv, a_k in zip(self.layer_c, a)]

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        c = self.branches(x)
        if rec.enabled:
            for k, c_k in zip(KERNELS, c):
                rec(f"branch{k}", c_k.abs().mean(dim=1, keepdim=True))
                if rec.full:
                    rec(f"branch{k}.full", c_k)
        fused = self.fuse3(self.fuse1(torch.cat(c, dim=1)))
        return self.cadb(fused, rec.child("cadb.")) + x


class DenseRow(nn.Module):
    """One scale: ``n`` MABs with DenseNet-style 1x1 fusions of all earlier outputs."""

    def __init__(self, n_mabs: int, channels: int, subspaces: int, reduction: int,
                 batch_norm: bool):
        super().__init__()
        self.mabs = nn.ModuleList(MAB(channels, subspaces, reduction, batch_norm)
                                  for _ in range(n_mabs))
        # fuse[k] merges the row input and MAB_1..MAB_{k+1}: input of MAB k+2, or the row output.
        self.fuse = nn.ModuleList(nn.Conv2d((k + 2) * channels, channels, 1)
                                  for k in range(n_mabs))

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        feats = [x]
        h = x
        for k, mab in enumerate(self.mabs):
            if k > 0:
                h = _lrelu(self.fuse[k - 1](torch.cat(feats, dim=1)))
            feats.append(mab(h, rec.child(f"mab{k + 1}.")))
        return _lrelu(self.fuse[-1](torch.cat(feats, dim=1)))


class CrossFusion(nn.Module):
    """Cross-layer fusion: ``CADB(conv1x1(cat(a, b)))`` (2C -> C)."""

    def __init__(self, channels: int, subspaces: int, reduction: int, batch_norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 1)
        self.cadb = CADB(channels, subspaces, reduction, batch_norm)

    def forward(self, a: torch.Tensor, b: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        return self.cadb(self.conv(torch.cat([a, b], dim=1)), rec.child("cadb."))


def _up2(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@register(CARD)
class DSMNet(DerainNet):
    """DSM-Net with ``len(mabs_per_scale) == 3`` scales (input padded to a multiple of 4)."""

    def __init__(self, channels: int = 32, mabs_per_scale: tuple[int, ...] = (4, 3, 3),
                 subspaces: int = 8, reduction: int = 8, ulsam_batch_norm: bool = False):
        super().__init__()
        if len(mabs_per_scale) != 3 or min(mabs_per_scale) < 1:
            raise ValueError(f"mabs_per_scale must hold 3 positive counts, got {mabs_per_scale}")
        self.channels = channels
        self.subspaces = subspaces
        self.mabs_per_scale = tuple(mabs_per_scale)
        args = (channels, subspaces, reduction, ulsam_batch_norm)
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.rows = nn.ModuleList(DenseRow(n, *args) for n in self.mabs_per_scale)
        self.down = nn.ModuleList(CrossFusion(*args) for _ in range(2))  # into scales 2, 3
        self.up = nn.ModuleList(CrossFusion(*args) for _ in range(2))  # U2, then U1
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        f0 = _lrelu(self.head(x))
        rec("scale1.input", f0)
        r1 = self.rows[0](f0, rec.child("scale1."))
        rec("scale1.features", r1)
        d2 = self.down[0](F.avg_pool2d(f0, 2), F.avg_pool2d(r1, 2), rec.child("down2."))
        rec("scale2.input", d2)
        r2 = self.rows[1](d2, rec.child("scale2."))
        rec("scale2.features", r2)
        d3 = self.down[1](F.avg_pool2d(f0, 4), F.avg_pool2d(r2, 2), rec.child("down3."))
        rec("scale3.input", d3)
        r3 = self.rows[2](d3, rec.child("scale3."))
        rec("scale3.features", r3)
        u2 = self.up[0](r2, _up2(r3, r2), rec.child("up2."))
        rec("up2.features", u2)
        u1 = self.up[1](r1, _up2(u2, r1), rec.child("up1."))
        rec("up1.features", u1)
        rain = self.tail(u1 + f0)
        clean = x - rain
        rec("rain", rain)
        rec("output", clean)
        return clean

    def map_specs(self) -> list[MapSpec]:
        c, g = self.channels, self.subspaces
        specs: list[MapSpec] = []

        def cadb(prefix: str, scale: int, group: str, where: str) -> None:
            specs.append(MapSpec(
                f"{prefix}cadb.channel_att", "vector", f"CADB channel attention ({where})",
                "CBAM channel weights in [0,1]: which feature channels the CADB keeps", c,
                scale=0, size=(1, 1), group=group))
            specs.append(MapSpec(
                f"{prefix}cadb.subspace_att", "attention", f"CADB subspace attention ({where})",
                f"ULSAM maps, one per {c // g}-channel subspace, times h*w (1 = uniform): "
                "where each subspace looks", g, scale=scale, group=group,
                channel_names=tuple(f"subspace {i}" for i in range(1, g + 1))))

        for s, n in enumerate(self.mabs_per_scale, start=1):
            scale, grp = 2 ** (s - 1), f"scale {s}"
            if s > 1:
                cadb(f"down{s}.", scale, f"fusion/down to scale {s}", f"down fusion into scale {s}")
            specs.append(MapSpec(
                f"scale{s}.input", "feature", f"scale {s} input",
                "head features F0" if s == 1 else
                f"features entering scale {s} (pooled head + finer scale, after CADB)",
                c, scale=scale, group=grp))
            for k in range(1, n + 1):
                mgrp = f"{grp}/MAB {k}"
                for ker in KERNELS:
                    specs.append(MapSpec(
                        f"scale{s}.mab{k}.branch{ker}", "feature", f"MAB {k} {ker}x{ker} branch",
                        f"mean |activation| of the {ker}x{ker} branch (layer c): where this "
                        "kernel size responds", 1, scale=scale, group=mgrp))
                cadb(f"scale{s}.mab{k}.", scale, mgrp, f"scale {s}, MAB {k}")
            specs.append(MapSpec(
                f"scale{s}.features", "feature", f"scale {s} features",
                f"dense fusion of the {n} MABs at 1/{scale} resolution", c, scale=scale, group=grp))
        for s in (2, 1):
            grp = f"fusion/up to scale {s}"
            cadb(f"up{s}.", 2 ** (s - 1), grp, f"up fusion into scale {s}")
            specs.append(MapSpec(
                f"up{s}.features", "feature", f"hourglass fusion at scale {s}",
                f"scale {s} features merged with the up-sampled coarser scale", c,
                scale=2 ** (s - 1), group=grp))
        specs.append(MapSpec("rain", "residual", "predicted rain layer",
                             "R = input - output: what the network removes", 3, group="output"))
        specs.append(MapSpec("output", "image", "derained image", "B = I - R", 3, group="output"))
        return specs
