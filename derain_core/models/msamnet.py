"""MSAMNet: Multi-scale Attention Map Guided Image Rain Removal Network (Gu et al., 2023).

Build spec: ``shared/design/architectures.md`` section 2. Everything runs at the input's
resolution (no down-sampling), so any H x W works.

Data flow (``S`` channels throughout)::

    I --conv3x3--CAB--> F0 -----------------------------------------------+
                         |                                                 |
                MAGNet:  conv3x3+PReLU -> M0 -> 3 paths (dilation 1, 2, 3; |
                         two dilated 3x3 + PReLU each) -> P1, P2, P3        |
                         concat -> 1x1 -> A -> SAM(A, I) -> G, X_aux        |
                                                                          v
    x0 = conv3x3(cat(F0, G));  x_i = ORB_i(x_{i-1}) + conv1x1_i(P_i), i = 1..3
    R = conv3x3(x_3 + x0);     output = I - R

ORB = 4 DABs -> conv3x3, plus its input. DAB (paper eqs. 1-3, literal form):
``X = conv(PReLU(conv(Xh)))``; ``out = X + Xh * A_s + Xh * A_c`` with A_s a CBAM spatial
map and A_c an RCAN channel vector, both computed from X. ``dab_form="cycleisp"`` uses
CycleISP's DAB instead (attentions applied to X, concatenated, 1x1 fuse, plus Xh).

Feature maps with S channels are recorded as their per-pixel RMS over channels; with
``full=True`` the whole S-channel tensor is also kept under ``<key>.full`` (not in
``map_specs``, because its size is only wanted on request).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..base import DerainNet, MapSpec, Recorder
from ..blocks import ChannelAttention, SpatialAttention
from ..losses import charbonnier_edge
from ..recipes import Recipe, Schedule, TrainingSpec
from ..registry import ModelCard, PaperResult, register

DILATIONS = (1, 2, 3)  # one MAGNet path per ORB (paper: three ORBs, DF 1, 2, 3)

def training_loss(outs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Paper 2.2: (Charbonnier + 0.05 edge) on the main output plus the same on SAM's estimate."""
    loss = charbonnier_edge(outs["output"], target)
    if "sam" in outs:
        loss = loss + charbonnier_edge(outs["sam"], target)
    return loss


CARD = ModelCard(
    id="msamnet",
    name="MSAMNet",
    paper="Multi-scale Attention Map Guided Image Rain Removal Network",
    venue="Academic Journal of Computing & Information Science 6(4)",
    year=2023,
    predicts="rain layer",
    training=TrainingSpec(
        loss=training_loss,
        paper=Recipe(2e-4, Schedule("cosine", min_ratio=1e-6 / 2e-4, warmup=0.012),
                     "Charbonnier + 0.05 edge on output and SAM estimate",
                     source="paper 2.2: Adam 2e-4 cosine to 1e-6; MPRNet-style warm-up 3/250 epochs"),
        short_lr=2e-4),
    description=(
        "A full-resolution residual-in-residual network of dual-attention blocks (ORMNet), "
        "guided by an auxiliary net of three dilated-convolution paths and a supervised "
        "attention module (MAGNet); it predicts the rain layer and subtracts it."),
    size_multiple=1,
    min_size=16,
    supports_fp16=True,
    supports_bf16=True,
    tiling="supported",
    tile_overlap=64,
    default_config=dict(channels=84, dabs_per_orb=4, reduction=4, sam_kernel=3,
                        spatial_kernel=7, dab_form="paper"),
    test_config=dict(channels=16, dabs_per_orb=2, reduction=4, sam_kernel=3,
                     spatial_kernel=7, dab_form="paper"),
    paper_results=(
        PaperResult("Rain100L", 36.37, 0.970, "not stated", "Table 1 prints SSIM 0.969"),
        PaperResult("Rain100H", 29.56, 0.883, "not stated"),
        PaperResult("Rain800", 29.46, 0.896, "not stated"),
    ),
    provenance=(
        "paper: ORMNet of 3 ORBs, each a chain of 4 DABs with an inner residual, inside an "
        "outer residual (RIR); no down-sampling anywhere",
        "paper: MAGNet = conv into a rain feature space, three paths of two 3x3 convs with "
        "dilation 1/2/3, aggregated into a SAM; each path also feeds its ORB",
        "paper: SAM subtracts its rain map from the input; that clean estimate gets its own "
        "loss (Charbonnier + 0.05 edge, eps 1e-3); output = input - rain layer",
        "paper: DAB eqs. 1-3 read literally: out = X + Xh*A_s + Xh*A_c, attentions computed "
        "from the converted X; dab_form='cycleisp' switches to CycleISP's DAB (choice)",
        "choice: width S=84 (not stated; 2,575,105 parameters vs the paper's 2,553,105, +0.9%)",
        "official code: none exists; MPRNet (swz30/MPRNet) conventions fill the gaps: "
        "bias-free convs, one shared PReLU, CAB with r=4 in the shallow module, SAM layout",
        "choice: SAM kernel 3 (MPRNet uses 1); branches aggregated by concat + 1x1 conv",
        "choice: SAM features merged with the main stream by conv3x3(concat(F0, G)) "
        "(MPRNet's concat23 pattern)",
        "choice: path d_i is injected after ORB i through a 1x1 conv (x_i = ORB_i + conv(P_i))",
        "choice: CBAM spatial attention with a 7x7 conv, RCAN channel attention r=4, no biases",
    ),
    license="MIT (this re-implementation)",
)


def conv(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Conv2d:
    """Bias-free 'same' convolution (MPRNet habit)."""
    return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False)


def _rms(t: torch.Tensor) -> torch.Tensor:
    """Per-pixel root mean square over channels: ``(B, C, H, W) -> (B, 1, H, W)``."""
    return t.detach().float().square().mean(dim=1, keepdim=True).sqrt()


def _record_feature(rec: Recorder, key: str, t: torch.Tensor) -> None:
    """Record the RMS summary of a feature tensor; also the tensor itself when ``rec.full``."""
    if not rec.enabled:
        return
    rec(key, _rms(t))
    if rec.full:
        rec(key + ".full", t)


class CAB(nn.Module):
    """MPRNet channel attention block: conv -> act -> conv -> RCAN CA -> + input."""

    def __init__(self, channels: int, reduction: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), act, conv(channels, channels))
        self.ca = ChannelAttention(channels, reduction, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        return res * self.ca(res) + x


class DAB(nn.Module):
    """Dual attention guided convolution block (paper section 3.4).

    ``form="paper"``: ``X + Xh * A_s + Xh * A_c`` (eqs. 1-3); ``form="cycleisp"``:
    ``Xh + conv1x1(cat(X * A_s, X * A_c))``. Records ``spatial_att`` (B,1,H,W) and
    ``channel_att`` (B,S,1,1).
    """

    def __init__(self, channels: int, reduction: int, spatial_kernel: int, act: nn.Module,
                 form: str = "paper"):
        super().__init__()
        if form not in ("paper", "cycleisp"):
            raise ValueError(f"dab_form must be 'paper' or 'cycleisp', got {form!r}")
        self.form = form
        self.body = nn.Sequential(conv(channels, channels), act, conv(channels, channels))
        self.spatial = SpatialAttention(spatial_kernel, bias=False)
        self.channel = ChannelAttention(channels, reduction, bias=False)
        self.fuse = conv(2 * channels, channels, 1) if form == "cycleisp" else None

    def forward(self, xh: torch.Tensor, rec: Recorder) -> torch.Tensor:
        x = self.body(xh)
        a_s = self.spatial(x)  # (B, 1, H, W)
        a_c = self.channel(x)  # (B, S, 1, 1)
        rec("spatial_att", a_s)
        rec("channel_att", a_c, spatial=False)
        if self.fuse is None:
            return torch.addcmul(x, xh, a_s + a_c)  # X + Xh*A_s + Xh*A_c
        return self.fuse(torch.cat([x * a_s, x * a_c], dim=1)) + xh


class ORB(nn.Module):
    """Original resolution block: DABs -> conv3x3, plus the block input."""

    def __init__(self, channels: int, n_dabs: int, reduction: int, spatial_kernel: int,
                 act: nn.Module, form: str):
        super().__init__()
        self.dabs = nn.ModuleList(DAB(channels, reduction, spatial_kernel, act, form)
                                  for _ in range(n_dabs))
        self.tail = conv(channels, channels)

    def forward(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        y = x
        for j, dab in enumerate(self.dabs, 1):
            y = dab(y, rec.child(f"dab{j}."))
        return self.tail(y) + x


class SAM(nn.Module):
    """Supervised attention module (MPRNet), rain-subtracting form.

    Returns the guided features ``conv(A) * sigmoid(conv(X_aux)) + A`` and the clean
    estimate ``X_aux = I - conv(A)``.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv_feat = conv(channels, channels, kernel)
        self.conv_rain = conv(channels, 3, kernel)
        self.conv_att = conv(3, channels, kernel)

    def forward(self, a: torch.Tensor, image: torch.Tensor, rec: Recorder
                ) -> tuple[torch.Tensor, torch.Tensor]:
        rain = self.conv_rain(a)
        clean = image - rain
        att = torch.sigmoid(self.conv_att(clean))
        rec("rain", rain)
        rec("clean_estimate", clean)
        if rec.enabled:
            rec("attention", att.mean(dim=1, keepdim=True))
            if rec.full:
                rec("attention.full", att)
        return torch.addcmul(a, self.conv_feat(a), att), clean


@register(CARD)
class MSAMNet(DerainNet):
    """MSAMNet (see the module docstring for the data flow)."""

    def __init__(self, channels: int = 84, dabs_per_orb: int = 4, reduction: int = 4,
                 sam_kernel: int = 3, spatial_kernel: int = 7, dab_form: str = "paper"):
        super().__init__()
        s = channels
        self.channels, self.dabs_per_orb = channels, dabs_per_orb
        act = nn.PReLU()  # one shared instance (1 parameter), as in MPRNet
        self.act = act
        # shallow module: conv 3 -> S, then a CAB ("preliminary refinement by attention")
        self.head = conv(3, s)
        self.head_cab = CAB(s, reduction, act)
        # MAGNet
        self.mag_in = conv(s, s)
        self.paths = nn.ModuleList(
            nn.ModuleList([conv(s, s, dilation=d), conv(s, s, dilation=d)]) for d in DILATIONS)
        self.aggregate = conv(len(DILATIONS) * s, s, 1)
        self.sam = SAM(s, sam_kernel)
        self.merge = conv(2 * s, s)
        # ORMNet
        self.orbs = nn.ModuleList(ORB(s, dabs_per_orb, reduction, spatial_kernel, act, dab_form)
                                  for _ in DILATIONS)
        self.guides = nn.ModuleList(conv(s, s, 1) for _ in DILATIONS)
        self.tail = conv(s, 3)

    def _forward(self, x: torch.Tensor, rec: Recorder) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean output and the SAM clean estimate, both on ``x``'s (padded) frame."""
        act = self.act
        f0 = self.head_cab(self.head(x))
        _record_feature(rec, "shallow.out", f0)

        m0 = act(self.mag_in(f0))
        branches = []
        for d, (c1, c2) in zip(DILATIONS, self.paths):
            p = act(c2(act(c1(m0))))
            _record_feature(rec, f"mag.branch_d{d}", p)
            branches.append(p)
        del m0
        a = self.aggregate(torch.cat(branches, dim=1))
        _record_feature(rec, "mag.aggregate", a)
        g, sam_clean = self.sam(a, x, rec.child("sam."))
        del a

        x0 = self.merge(torch.cat([f0, g], dim=1))
        del f0, g
        y = x0
        for i, (orb, guide, p) in enumerate(zip(self.orbs, self.guides, branches), 1):
            y = orb(y, rec.child(f"orm.orb{i}.")) + guide(p)
            branches[i - 1] = None  # free the path once injected
            _record_feature(rec, f"orm.orb{i}.out", y)
        rain = self.tail(y + x0)
        out = x - rain
        rec("rain", rain)
        rec("output", out)
        return out, sam_clean

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        return self._forward(x, rec)[0]

    def training_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output`` (main clean image) and ``sam`` (SAM clean estimate), with gradients.

        The paper's loss is ``sum over both of Charbonnier + 0.05 * edge`` against the target.
        """
        self._check_input(x)
        h, w = x.shape[-2:]
        out, sam = self._forward(x, Recorder.off())  # size_multiple is 1: nothing to pad
        return {"output": out[..., :h, :w], "sam": sam[..., :h, :w]}

    def map_specs(self) -> list[MapSpec]:
        s = self.channels
        rms = "per-pixel RMS over the channels: bright = strong response"
        specs = [
            MapSpec("shallow.out", "feature", "Shallow features",
                    f"Input after the first conv and channel-attention block ({rms})", 1,
                    group="shallow"),
        ]
        what = {1: "fine, thin streaks", 2: "medium streaks", 3: "wide or long streaks"}
        for d in DILATIONS:
            specs.append(MapSpec(
                f"mag.branch_d{d}", "feature", f"Dilated branch d{d}",
                f"MAGNet rain features seen through dilation {d} (receptive field "
                f"{4 * d + 1}px; {what[d]}); {rms}", 1, group="MAGNet/dilated branches"))
        specs += [
            MapSpec("mag.aggregate", "feature", "Aggregated branches",
                    f"The three dilated branches fused by a 1x1 conv ({rms})", 1,
                    group="MAGNet/dilated branches"),
            MapSpec("sam.rain", "residual", "SAM rain estimate",
                    "Rain layer predicted by the auxiliary network (subtracted from the input)",
                    3, group="MAGNet/SAM"),
            MapSpec("sam.clean_estimate", "image", "SAM clean estimate",
                    "Input minus the SAM rain estimate: the auxiliary, supervised derained image",
                    3, group="MAGNet/SAM"),
            MapSpec("sam.attention", "attention", "SAM attention",
                    "Where the SAM lets features through to the main network "
                    "(mean over channels of a 0..1 gate)", 1, group="MAGNet/SAM"),
        ]
        for i, d in enumerate(DILATIONS, 1):
            grp = f"ORMNet/ORB {i}"
            for j in range(1, self.dabs_per_orb + 1):
                p = f"orm.orb{i}.dab{j}."
                specs.append(MapSpec(
                    p + "spatial_att", "attention", f"DAB {j} spatial attention",
                    f"Where DAB {j} of ORB {i} boosts its input (0..1 per pixel)", 1,
                    group=grp))
                specs.append(MapSpec(
                    p + "channel_att", "vector", f"DAB {j} channel attention",
                    f"Weight (0..1) of each of the {s} feature channels in DAB {j} of ORB {i}",
                    s, scale=0, size=(1, 1), group=grp))
            specs.append(MapSpec(
                f"orm.orb{i}.out", "feature", f"After ORB {i}",
                f"Main-stream features after ORB {i} plus the d{d} branch guidance ({rms})", 1,
                group=grp))
        specs += [
            MapSpec("rain", "residual", "Rain layer",
                    "Rain the network removes: input minus output", 3, group="output"),
            MapSpec("output", "image", "Derained image", "Final output: input minus the rain layer",
                    3, group="output"),
        ]
        return specs
