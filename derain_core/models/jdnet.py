"""JDNet: Joint Self-Attention and Scale-Aggregation for Self-Calibrated Deraining Network
(Wang, Wu, Su, Chen, ACM MM 2020).

``enterBlock`` (3x3 conv + LeakyReLU) -> ``derain_net``: 32 joint units chained by dense
1x1 fusions -> ``exitBlock`` (3x3 conv + LeakyReLU) gives the rain layer ``R``; the output
is ``O - R``. A joint unit (official class ``Scale_attention``) is

1. ``san``: pre-activation bottleneck around SAN pairwise self-attention (7x7 footprint);
2. scale aggregation: four cascaded stride-2 residual blocks (H/2 .. H/16), each
   up-sampled back (nearest) and fused with the input by a 1x1 conv;
3. ``scn``: a self-calibrated bottleneck (SCConv with 4x4 average pooling).

Specification: ``shared/design/architectures.md`` section 6, which follows the official
code (``Ohraincu/JDNet``, ``code/base/*/config/model.py``). Module attribute names are the
official ones, so official checkpoints map onto this module (their input is BGR).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base import DerainNet, MapSpec, Recorder, use_fast_kernels, use_reference_kernels
from ..blocks import PairwiseSelfAttention
from ..losses import neg_ssim_output
from ..recipes import Recipe, Schedule, TrainingSpec
from ..registry import ModelCard, PaperResult, register

_OFF = Recorder.off()

CARD = ModelCard(
    id="jdnet",
    name="JDNet",
    paper="Joint Self-Attention and Scale-Aggregation for Self-Calibrated Deraining Network",
    venue="ACM Multimedia (MM)",
    year=2020,
    predicts="rain layer",
    predicts_note="output = input - R",
    training=TrainingSpec(
        loss=neg_ssim_output,
        paper=Recipe(5e-4, Schedule("multistep", milestones=(0.6, 0.8), gamma=0.1), "-SSIM",
                     source="paper 6.3: Adam 5e-4, /10 after 600 and 800 of 1000 epochs"),
        short_lr=5e-4),
    description=("32 densely connected joint units; each lets every pixel attend to its 7x7 "
                 "neighbourhood (pairwise self-attention), mixes features from four coarser "
                 "scales (1/2 .. 1/16) and refines them with a self-calibrated convolution."),
    size_multiple=1,
    min_size=16,
    supports_fp16=True,
    supports_bf16=True,
    cpu_channels_last=True,  # oneDNN's 1x1 dense fusions are much faster in NHWC on CPU
    cpu_bf16=True,  # 58 dB against fp32 on a rainy photo: scripts/fast_vs_reference.py jdnet
    tiling="supported",
    tile_overlap=64,
    default_config={"channel": 32, "unit_num": 32, "num_scales": 4, "pooling_r": 4,
                    "kernel_size": 7, "share_planes": 8},
    test_config={"channel": 16, "unit_num": 4, "num_scales": 4, "pooling_r": 4,
                 "kernel_size": 7, "share_planes": 4},
    paper_results=(
        PaperResult("Rain100H", 30.02, 0.92, "RGB",
                    note="official eval: PSNR/SSIM over all 3 channels (BGR order), not Y; "
                         "1,800 train / 200 test pairs (Rain200H-sized)"),
        PaperResult("Rain100L", 38.65, 0.99, "RGB", note="official eval on 3 channels, not Y"),
        PaperResult("Rain12", 37.02, 0.97, "RGB", note="model trained on Rain100H"),
    ),
    provenance=(
        "paper: B = O - R; 3x3 conv + LeakyReLU(0.2) at entry and exit; dense connections "
        "between 32 joint units of self-attention, scale aggregation (n = 4) and "
        "self-calibrated convolution (r = 4); width 32; loss negative SSIM",
        "official code: Ohraincu/JDNet model.py (ODE_DerainNet): module names, dense 1x1 "
        "fusions ((i+2)*32 -> 32) + LeakyReLU, SAN bottleneck BN-LReLU-SAM-BN-LReLU-1x1 with "
        "rel 32/16, mid 32/4, share 8 (one weight channel), gamma LReLU -> 1x1 -> 1x1, "
        "reflection padding, position grid linspace(-1, 1) through conv_p",
        "official code: scale cascade ResBlock = LReLU(conv3x3 s2), + conv-LReLU-conv; nearest "
        "up-sampling; optional max-pool 'scale attention' gating is off and left out",
        "official code: SCBottleneck without BatchNorm: 1x1 32->16 + LReLU per branch, plain "
        "branch conv3x3 + LReLU, SCConv gate sigmoid(x + nearest_up(k2(AvgPool4 x))), "
        "k4(k3(x) * gate) with LReLU, 1x1 fuse, + input, LReLU",
        "official code: the exit LeakyReLU acts on the rain layer (negative rain scaled by 0.2)",
        "official code: trained on OpenCV (BGR) images; official checkpoints need the channel "
        "order flipped, this module takes RGB like the other networks",
        "choice: SAN in pure PyTorch, one footprint offset at a time (architectures.md 1.6 (b)) "
        "instead of the official cupy kernels; on the fast path gamma's two linear 1x1 convs "
        "are one matrix applied by a plain matrix product (a 1x1 conv with 4 input channels is "
        "far slower on CPU) and the softmax runs in place (same result to float rounding)",
        "choice: on the fast path the dense chain keeps its features in zero-filled buffers of "
        "8 blocks and fuses with one 1x1 conv per buffer (weights zero-padded): no torch.cat "
        "copies, and every conv reads a contiguous channels_last buffer (oneDNN's fast path)",
        "choice: in training the dense chain projects each block once, as it arrives, onto the "
        "fusions that read it, and each full group of 8 blocks once onto all later fusions (same "
        "sums in another order); the SAN attention runs through torch.compile on CPU "
        "(derain train --no-compile-blocks: hand-written autograd Functions)",
        "choice: on the fast path the scale fusion applies conv11's 1x1 weights to each scale "
        "before the nearest up-sampling (they commute exactly) instead of concatenating 160 "
        "channels",
        "choice: no padding to a multiple (stride-2 convs give ceil(H/2^i), nearest up-sampling "
        "restores exact sizes), like the official code",
        "choice: attention shown as per-pixel summaries (centre weight, normalised entropy, "
        "expected shift) for every unit; the 49-way weights only with full capture",
        "choice: features, scales and self-calibration maps for three units (first, middle, "
        "last); the calibration context is shown up-sampled, as it enters the gate",
    ),
    license="MIT (this re-implementation)",
)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2)


class ResidualBlock(nn.Module):
    """One scale step (official ``Residual_Block``): ``c = LReLU(conv3x3 s2 (x))``,
    output ``c + conv3x3(LReLU(conv3x3(c)))``."""

    def __init__(self, channel: int):
        super().__init__()
        self.convert = nn.Sequential(nn.Conv2d(channel, channel, 3, 2, 1), _lrelu())
        self.res = nn.Sequential(nn.Conv2d(channel, channel, 3, 1, 1), _lrelu(),
                                 nn.Conv2d(channel, channel, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convert(x)
        return c + self.res(c)


class SCConv(nn.Module):
    """Self-calibrated convolution branch (JDNet's variant, no BatchNorm).

    ``gate = sigmoid(x + Up(k2(AvgPool_r(x))))``, output ``LReLU(k4(k3(x) * gate))``.
    Records ``context`` (the up-sampled k2 response) and ``gate``.
    """

    def __init__(self, planes: int, pooling_r: int):
        super().__init__()
        self.k2 = nn.Sequential(nn.AvgPool2d(pooling_r, pooling_r), nn.Conv2d(planes, planes, 3, 1, 1))
        self.k3 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1))
        self.k4 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1), _lrelu())

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        context = F.interpolate(self.k2(x), size=x.shape[-2:], mode="nearest")
        gate = torch.sigmoid(x + context)
        rec("context", context)
        rec("gate", gate)
        return self.k4(self.k3(x) * gate)


class SCBottleneck(nn.Module):
    """Self-calibrated bottleneck (official ``SCBottleneck``): two 1x1 halves, a plain 3x3
    branch and an SCConv branch, 1x1 fuse, residual add, LeakyReLU."""

    def __init__(self, channel: int, pooling_r: int):
        super().__init__()
        planes = channel // 2
        self.conv1_a = nn.Conv2d(channel, planes, 1)
        self.k1 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1), _lrelu())
        self.conv1_b = nn.Conv2d(channel, planes, 1)
        self.scconv = SCConv(planes, pooling_r)
        self.conv3 = nn.Conv2d(planes * 2, planes * 2, 1)
        self.relu = _lrelu()

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        out_a = self.k1(self.relu(self.conv1_a(x)))
        out_b = self.scconv(self.relu(self.conv1_b(x)), rec)
        return self.relu(self.conv3(torch.cat([out_a, out_b], dim=1)) + x)


class SANBottleneck(nn.Module):
    """Pre-activation bottleneck around pairwise self-attention (official ``Bottleneck``):
    ``x + conv1x1(LReLU(BN(SAM(LReLU(BN(x))))))``."""

    def __init__(self, channel: int, share_planes: int, kernel_size: int):
        super().__init__()
        mid = channel // 4
        self.bn1 = nn.BatchNorm2d(channel)
        self.sam = PairwiseSelfAttention(channel, channel // 16, mid, share_planes, kernel_size)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv = nn.Conv2d(mid, channel, 1)
        self.relu = _lrelu()

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out, rec)))
        return self.conv(out) + x


class JointUnit(nn.Module):
    """Joint unit (official ``Scale_attention``): self-attention, scale aggregation, SC conv.

    Records (when ``detail``) ``san.out``, ``scale{i}`` (i = 1..n, before up-sampling),
    ``fusion`` and ``sc.*``; attention summaries always.
    """

    def __init__(self, channel: int, num_scales: int, pooling_r: int, kernel_size: int,
                 share_planes: int):
        super().__init__()
        self.san = SANBottleneck(channel, share_planes, kernel_size)
        self.res_list = nn.ModuleList(ResidualBlock(channel) for _ in range(num_scales))
        self.conv11 = nn.Sequential(nn.Conv2d((num_scales + 1) * channel, channel, 1), _lrelu())
        self.scn = SCBottleneck(channel, pooling_r)

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF, detail: bool = False) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.san(x, rec.child("san."))
        conv, act = self.conv11
        scales, t = [], x
        for i, block in enumerate(self.res_list, start=1):
            t = block(t)
            scales.append(t)
            if detail:
                rec(f"scale{i}", t)
        if not use_reference_kernels():
            # conv11(cat[x, Up(t_1), .., Up(t_n)]) as a sum of per-scale 1x1 convs; a 1x1
            # conv commutes with nearest up-sampling, so each is applied at its coarse scale
            # (no full-size concatenation, in training too)
            c = x.shape[1]
            fusion = F.conv2d(x, conv.weight[:, :c], conv.bias)
            for i, t in enumerate(scales, start=1):
                part = F.conv2d(t, conv.weight[:, i * c:(i + 1) * c])
                fusion = fusion.add_(F.interpolate(part, size=size, mode="nearest"))
            fusion = act(fusion)
        else:
            ups = [F.interpolate(t, size=size, mode="nearest") for t in scales]
            fusion = self.conv11(torch.cat([x, *ups], dim=1))
        if detail:
            rec("san.out", x)
            rec("fusion", fusion)
        return self.scn(fusion + x, rec.child("sc.") if detail else _OFF)


class DenseConnection(nn.Module):
    """Dense chain (official ``DenseConnection``): after unit i, a 1x1 conv + LeakyReLU fuses
    the entry features and all unit outputs so far ((i+2)*C -> C channels)."""

    group = 8  # fast path: features are kept in buffers of this many blocks of C channels

    def __init__(self, channel: int, unit_num: int, **unit_kwargs):
        super().__init__()
        self.channel = channel
        self.units = nn.ModuleList(JointUnit(channel, **unit_kwargs) for _ in range(unit_num))
        self.conv1x1 = nn.ModuleList(
            nn.Sequential(nn.Conv2d((i + 2) * channel, channel, 1), _lrelu()) for i in range(unit_num))

    def forward(self, x: torch.Tensor, rec: Recorder = _OFF, detail: tuple[int, ...] = ()
                ) -> torch.Tensor:
        if use_reference_kernels():
            kind = _PlainList
        else:
            kind = _BlockBuffers if use_fast_kernels() else _BlockGroups
        feats = kind(x, self.conv1x1, self.group)
        out = x
        for i, unit in enumerate(self.units):
            feats.append(unit(out, rec.child(f"unit{i}."), detail=i in detail))
            out = feats.fuse(i)
            if i in detail:
                rec(f"dense{i}.out", out)
        return out


class _BlockBuffers:
    """The dense chain's growing feature stack, kept without copies (fast path).

    ``torch.cat`` of all features before every fusion copies O(units^2) data, and a 1x1 conv
    on a channel slice of one big buffer falls off oneDNN's fast path. Here the C-channel
    blocks live in zero-filled buffers of ``group`` blocks each, in the input's memory
    format; a fusion is a sum of one 1x1 conv per buffer, with the weights of blocks not
    written yet padded by zeros, so every conv reads a whole contiguous buffer.
    """

    def __init__(self, x: torch.Tensor, fuses: nn.ModuleList, group: int):
        self.like, self.fuses, self.group, self.c = x, fuses, group, x.shape[1]
        self.buffers: list[torch.Tensor] = []
        self.count = 0
        self.append(x)

    def append(self, t: torch.Tensor) -> None:
        slot = self.count % self.group
        if slot == 0:
            self.buffers.append(torch.empty(
                self.like.shape[0], self.group * self.c, *self.like.shape[-2:],
                dtype=t.dtype, device=t.device, memory_format=_memory_format(self.like)).zero_())
        self.buffers[-1][:, slot * self.c:(slot + 1) * self.c] = t
        self.count += 1

    def fuse(self, i: int) -> torch.Tensor:
        conv, act = self.fuses[i]
        width = self.group * self.c
        out = None
        for g, buf in enumerate(self.buffers):
            weight = conv.weight[:, g * width:(g + 1) * width]
            if weight.shape[1] < width:
                weight = F.pad(weight, (0, 0, 0, 0, 0, width - weight.shape[1]))
            y = F.conv2d(buf, weight.to(buf.dtype), conv.bias.to(buf.dtype) if g == 0 else None)
            out = y if out is None else out.add_(y)
        return act(out)


class _PlainList:
    """The dense chain's features as the official code keeps them: a fusion concatenates all."""

    def __init__(self, x: torch.Tensor, fuses: nn.ModuleList, group: int = 0):
        self.feats, self.fuses = [x], fuses

    def append(self, t: torch.Tensor) -> None:
        self.feats.append(t)

    def fuse(self, i: int) -> torch.Tensor:
        return self.fuses[i](torch.cat(self.feats, dim=1))


class _BlockGroups:
    """The dense chain's features for autograd (training), with no re-reading.

    Fusion ``i`` is a 1x1 conv over blocks ``0 .. i + 1``: a sum of one term per block. Each
    block is projected once, as it arrives, by one 1x1 conv onto the fusions that read it
    while its group of ``group`` blocks is still filling (those fusions' weights for its
    channels, stacked); when the group is full, its concatenation is projected once onto
    every later fusion. A fusion is then a sum of C-channel slices. Before, every fusion
    concatenated the open blocks again and re-read every full group, and the backward pass
    wrote and summed a group-sized gradient per fusion and group (the largest cost of JDNet's
    training step after the attention). Same result to float rounding as :class:`_PlainList`.
    """

    def __init__(self, x: torch.Tensor, fuses: nn.ModuleList, group: int):
        self.fuses, self.group, self.c = fuses, group, x.shape[1]
        self.fmt = _memory_format(x)
        self.count = 0  # blocks so far; fusion i reads blocks 0 .. i + 1
        self.open: list[torch.Tensor] = []  # blocks of the group being filled
        self.singles: list[tuple[int, tuple[torch.Tensor, ...]]] = []  # open blocks: (first fusion, slices)
        self.groups: list[tuple[int, tuple[torch.Tensor, ...]]] = []  # full groups: (first fusion, slices)
        self.append(x)

    def _project(self, t: torch.Tensor, block: int, first: int, last: int) -> tuple[int, tuple[torch.Tensor, ...]]:
        """``t`` (blocks from ``block`` on) as fusions ``first .. last - 1`` weigh it: one 1x1
        conv, split into one C-channel slice per fusion."""
        lo = block * self.c
        weight = torch.cat([fuse[0].weight[:, lo:lo + t.shape[1]] for fuse in self.fuses[first:last]])
        return first, _pointwise(t, weight, None).split(self.c, dim=1)

    def append(self, t: torch.Tensor) -> None:
        j = self.count
        self.count += 1
        self.open.append(t)
        if len(self.open) == self.group:  # full: onto every fusion from the next one (j - 1) on
            self.groups.append(self._project(torch.cat(self.open, dim=1), j + 1 - self.group, j - 1, len(self.fuses)))
            self.open, self.singles = [], []
            return
        closing = (j // self.group + 1) * self.group - 1  # the block that will fill the group
        first, last = max(j - 1, 0), min(closing - 1, len(self.fuses))
        if first < last:
            self.singles.append(self._project(t, j, first, last))

    def fuse(self, i: int) -> torch.Tensor:
        conv, act = self.fuses[i]
        terms = [pieces[i - first] for first, pieces in self.groups + self.singles]
        out = terms[0] + conv.bias.to(terms[0].dtype).view(1, -1, 1, 1)
        for term in terms[1:]:
            out = out + term
        return act(out.contiguous(memory_format=self.fmt))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last when ``x`` is laid out so (and not also plain contiguous), else contiguous."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution as a matrix product over channels (same result). On a channels_last
    input it is one plain matmul forward and backward, with up to a thousand output channels
    (the dense chain's projections) and no layout reorders; other layouts take ``conv2d``."""
    if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return F.conv2d(x, weight, bias)
    return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)


def detail_units(unit_num: int) -> tuple[int, ...]:
    """Units whose features are recorded in full: first, middle and last."""
    return tuple(sorted({0, unit_num // 2, unit_num - 1}))


@register(CARD)
class JDNet(DerainNet):
    """JDNet (official class ``ODE_DerainNet``); see the module docstring."""

    def __init__(self, channel: int = 32, unit_num: int = 32, num_scales: int = 4,
                 pooling_r: int = 4, kernel_size: int = 7, share_planes: int = 8):
        super().__init__()
        if channel % 16 or (channel // 4) % share_planes:
            raise ValueError("channel must be a multiple of 16 and channel/4 of share_planes")
        self.channel, self.unit_num, self.num_scales = channel, unit_num, num_scales
        self.weight_channels = channel // 4 // share_planes
        self.kernel_size = kernel_size
        self.enterBlock = nn.Sequential(nn.Conv2d(3, channel, 3, 1, 1), _lrelu())
        self.derain_net = DenseConnection(channel, unit_num, num_scales=num_scales,
                                          pooling_r=pooling_r, kernel_size=kernel_size,
                                          share_planes=share_planes)
        self.exitBlock = nn.Sequential(nn.Conv2d(channel, 3, 3, 1, 1), _lrelu())

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        feats = self.derain_net(self.enterBlock(x), rec, detail_units(self.unit_num))
        linear = self.exitBlock[0](feats)
        rain = self.exitBlock[1](linear)
        rec("rain.linear", linear)
        rec("rain", rain)
        out = x - rain
        rec("output", out)
        return out

    def map_specs(self) -> list[MapSpec]:
        c, cw, k = self.channel, self.weight_channels, self.kernel_size
        specs = []
        shift_names = tuple(f"{axis} shift" + (f", weight group {i}" if cw > 1 else "")
                            for axis in "xy" for i in range(cw))
        for u in range(self.unit_num):
            g = f"unit {u}/attention"
            p = f"unit{u}.san.attention."
            specs += [
                MapSpec(p + "centre", "attention", "attention on itself",
                        f"weight each pixel gives to itself among its {k}x{k} neighbours "
                        f"(1 = ignores them, {1 / k**2:.2f} = plain average)", cw, group=g),
                MapSpec(p + "entropy", "attention", "attention spread",
                        "0 = attends to one neighbour, 1 = spreads evenly over the window",
                        cw, group=g),
                MapSpec(p + "shift", "feature", "attention shift (x, y)",
                        "average offset, in pixels, of where each pixel gathers from "
                        "(x then y; + = right/down)", 2 * cw, group=g, channel_names=shift_names),
            ]
            if u not in detail_units(self.unit_num):
                continue
            specs.append(MapSpec(f"unit{u}.san.out", "feature", "after self-attention",
                                 "features after the self-attention bottleneck", c,
                                 group=f"unit {u}/attention"))
            g = f"unit {u}/scale aggregation"
            for i in range(1, self.num_scales + 1):
                specs.append(MapSpec(f"unit{u}.scale{i}", "feature", f"scale 1/{2 ** i}",
                                     f"features at 1/{2 ** i} resolution (cascade step {i})",
                                     c, scale=2 ** i, group=g))
            specs.append(MapSpec(f"unit{u}.fusion", "feature", "scale fusion",
                                 "all scales up-sampled and fused by a 1x1 conv", c, group=g))
            g = f"unit {u}/self-calibration"
            specs += [
                MapSpec(f"unit{u}.sc.gate", "attention", "calibration gate",
                        "sigmoid gate of the self-calibrated conv (0 = suppress, 1 = pass)",
                        c // 2, group=g),
                MapSpec(f"unit{u}.sc.context", "feature", "calibration context",
                        "conv response on 4x4-averaged features, the wide context behind the gate",
                        c // 2, group=g),
                MapSpec(f"dense{u}.out", "feature", "dense fusion",
                        f"running features after unit {u} (1x1 fusion of all earlier units)",
                        c, group=f"unit {u}/dense"),
            ]
        specs += [
            MapSpec("rain.linear", "residual", "rain before activation",
                    "exit conv output; its negative part is scaled by 0.2 to give the rain layer",
                    3, group="output"),
            MapSpec("rain", "residual", "rain layer", "predicted rain R = input - output", 3,
                    group="output"),
            MapSpec("output", "image", "derained image", "input minus rain layer", 3,
                    group="output"),
        ]
        return specs
