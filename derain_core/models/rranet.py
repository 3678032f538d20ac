"""RRANet: Recurrent RLCN-Guided Attention Network (Li, Monno, Okutomi, MVA 2021).

A U-Net run T times with shared weights. Every stage sees ``cat(I, L, B_{t-1})`` (rainy
image, its RLCN image, previous estimate; ``B_0 = I``); the encoder's residual recurrent
blocks (RRB) carry ConvLSTM states from stage to stage; the decoder re-weights each skip
feature with an RLCN-guided attention map (RLCN-GAM, paper eq. 3); a final 1x1 conv gives
the negative rain layer ``N_t`` and ``B_t = I + N_t``.

Specification: ``shared/design/architectures.md`` section 5. Gaps in the paper are filled
from the authors' successor network (ECNet, ``Yizhou-Li-CV/ECNet``, class ``ECNetLL``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base import DerainNet, MapSpec, Recorder, pad_border, pad_to_multiple
from ..blocks import ConvLSTMCell, rlcn
from ..losses import neg_ssim_output
from ..recipes import Recipe, Schedule, TrainingSpec
from ..registry import ModelCard, PaperResult, register
from ..tiling import Canvas, balanced_tile, blend_window, spill_folder, spills, tile_starts

CARD = ModelCard(
    id="rranet",
    name="RRANet",
    paper="Recurrent RLCN-Guided Attention Network for Single Image Deraining",
    venue="MVA (IAPR Int. Conf. on Machine Vision Applications)",
    year=2021,
    predicts="rain layer",
    predicts_note="negative rain layer N_t, output = input + N_t",
    training=TrainingSpec(
        loss=neg_ssim_output,
        paper=Recipe(1e-3, Schedule("multistep", milestones=(0.25, 0.5, 0.75), gamma=0.2), "-SSIM", grad_clip=5.0,
                     source="5.5 (successor ECNet defaults): Adam 1e-3, x0.2 at 25/50/75%, clip 5"),
        short_lr=5e-4),
    description=("A recurrent U-Net (6 stages, shared weights, ConvLSTM memory in the encoder) "
                 "guided by the RLCN image, which marks pixels brighter than their 9x9 "
                 "neighbourhood; attention maps computed from it re-weight the skip features."),
    size_multiple=8,
    border_pad=16,  # see provenance: the frame edge, not the image edge, gets the padding artefacts
    min_size=16,
    supports_fp16=True,
    supports_bf16=False,  # measured: 39 dB against fp32 on a 481x321 rainy photo (6 recurrent stages)
    tiling="supported",  # its own staged tiling: whole-image InstanceNorm statistics (provenance)
    tile_overlap=64,
    default_config={"channels": 32, "stages": 6, "rlcn_window": 9, "rlcn_clamp": True,
                    "input_norm": "instance"},
    test_config={"channels": 8, "stages": 2, "rlcn_window": 9, "rlcn_clamp": True, "input_norm": "none"},
    paper_results=(
        PaperResult("Rain100H", 31.60, 0.924, "not stated"),
        PaperResult("Rain200H", 30.18, 0.916, "not stated"),
        PaperResult("Rain100L", 39.60, 0.986, "not stated"),
        PaperResult("Rain200L", 39.72, 0.987, "not stated"),
        PaperResult("Rain800", 29.46, 0.908, "not stated"),
        PaperResult("SPA-Data", 43.53, 0.991, "not stated", note="real rain"),
    ),
    provenance=(
        "choice: 16-px reflection margin around the input, cropped after (card.border_pad). "
        "Without it the rain100l weights of 2026-11 painted a saturated 8-px band along one side "
        "(mean error 0.089 at the left against 0.015 inside on chelsea_light 256x256). Measured "
        "cause: the response to the zero-padded frame edge grows through the six recurrent "
        "stages (blue channel +2.7 after stage 1, +6.6 after stage 6); the side follows the "
        "weights, not the image (a mirrored input moves the band to the other side, a grey "
        "image shows it on the right). Ruled out: the bf16 RLCN (same band with it), BatchNorm "
        "running statistics (re-estimated on full training images: band stays), the fast path "
        "(reference path identical). With the margin: 0.028 left, 0.023 right, 0.015 inside",
        "paper: stage input cat(I, L, B_{t-1}) with B_0 = I; 3x3 conv, RRB encoder with 2x2 "
        "max pooling, decoder up-sampling -> RLCN-GAM -> concat -> residual block, 1x1 conv "
        "to the negative rain layer, B_t = I + N_t; loss -SSIM on the last stage only",
        "paper: RLCN eq. 2 per colour channel; RLCN-GAM eq. 3 with 1x1 W_s, W_D, 3x3 W_L, "
        "ReLU, W_A to one map, sigmoid; F' = M * F",
        "successor code: ECNet (Yizhou-Li-CV/ECNet, ECNetLL): channels 32/64/128/256, "
        "BatchNorm + ReLU, InstanceNorm (no affine) after the input conv, nearest x2 "
        "up-sampling + 3x3 conv, GAM inner widths 32/32/64 with BN after every GAM conv, "
        "T = 6 stages",
        "successor code: InstanceNorm after the input conv (input_norm='instance'); it "
        "normalizes over the whole image, so independent tiles differ from whole-image "
        "inference (tests/test_model_rranet.py). input_norm='none' removes it, "
        "but then the per-stage BatchNorms drift between train and eval mode (tried: "
        "validation PSNR-Y fell from 22.7 to 9.3 dB during a 12-min run)",
        "choice: RRANet's own tiling (forward_tiled) runs stage by stage: each stage's "
        "InstanceNorm statistics come from the whole image (head conv in row strips), and the "
        "tiles' outputs and ConvLSTM states are blended into whole-image tensors before the "
        "next stage (scripts/tiling_check.py rranet 128 160 96: 54.7 dB against whole-image)",
        "tried and rejected: photos above 1 MP in overlapping 1-MP regions (bounded memory; the "
        "staged tiling keeps about 1 KB of whole-image ConvLSTM state per pixel): brightness seams "
        "between regions on a 4032x3024 photo, each region having its own InstanceNorm statistics "
        "(commit 9c1bbf2 has the regions)",
        "successor code: RLCN window 9x9, eps 1e-5, counts only in-image pixels, unbiased "
        "variance, clamped to [0, 1] before it enters the network (rlcn_clamp)",
        "choice: the decoder residual block takes the concat (2C -> C, 1x1 conv + BN shortcut) "
        "as the paper says, not ECNet's sum of two residual blocks",
        "choice: down-sampled RLCN for the GAMs by 2x2 / 4x4 average pooling",
        "choice: RLCN is computed in float32 even when the network runs in half precision "
        "(its local variance cancels catastrophically in fp16)",
        "choice: ConvLSTM states start at zero in every forward call and never persist; "
        "PyTorch default init (not ECNet's orthogonal init)",
        "choice: ConvLSTM hidden states are shown as mean |h| over channels (full tensors "
        "only with full capture)",
    ),
    license="MIT (this re-implementation)",
)


def _conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    """Conv (k x k, same padding, bias) followed by BatchNorm."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout))


class RRB(nn.Module):
    """Residual recurrent block: conv-BN-ReLU -> ConvLSTM -> conv-BN, + shortcut, ReLU.

    The ConvLSTM hidden state ``h`` feeds the second conv and goes on to the next stage.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3)
        self.lstm = ConvLSTMCell(cout, cout)
        self.conv2 = _conv_bn(cout, cout, 3)
        self.shortcut = nn.Identity() if cin == cout else _conv_bn(cin, cout, 1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, state = self.lstm(F.relu(self.conv1(x), inplace=True), state)
        return F.relu(self.conv2(h) + self.shortcut(x), inplace=True), state


class ResBlock(nn.Module):
    """Decoder residual block: conv-BN-ReLU-conv-BN + (1x1 conv-BN shortcut), ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3)
        self.conv2 = _conv_bn(cout, cout, 3)
        self.shortcut = _conv_bn(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        return F.relu(y + self.shortcut(x), inplace=True)


class RLCNGAM(nn.Module):
    """RLCN-guided attention (paper eq. 3), an Attention-U-Net additive gate.

    ``M = sigmoid(W_A(ReLU(W_s E + W_D F^D + W_L L)))``; returns ``M`` of shape (B, 1, h, w).
    """

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.w_enc = _conv_bn(channels, inner, 1)
        self.w_dec = _conv_bn(channels, inner, 1)
        self.w_rlcn = _conv_bn(3, inner, 3)
        self.w_att = _conv_bn(inner, 1, 1)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        s = self.w_enc(enc) + self.w_dec(dec) + self.w_rlcn(guide)
        return torch.sigmoid(self.w_att(F.relu(s, inplace=True)))


class Up(nn.Module):
    """Nearest x2 up-sampling, 3x3 conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv_bn(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), inplace=True)


@register(CARD)
class RRANet(DerainNet):
    """RRANet with ``stages`` recurrent stages of a 4-scale U-Net (widths ``channels * 2^k``)."""

    def __init__(self, channels: int = 32, stages: int = 6, rlcn_window: int = 9,
                 rlcn_clamp: bool = True, input_norm: str = "instance"):
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.stages = stages
        self.rlcn_window = rlcn_window
        self.rlcn_clamp = rlcn_clamp
        c = [channels * 2 ** k for k in range(4)]
        self.widths = c
        inner = [channels, channels, 2 * channels]  # ECNet: 32, 32, 64 for n1 = 32
        if input_norm not in ("none", "instance"):
            raise ValueError(f"input_norm must be 'none' or 'instance', got {input_norm!r}")
        # "instance" is the successor code's InstanceNorm after the input conv. It normalizes
        # over the whole image, so tiles need the whole image's statistics (forward_tiled).
        # Without it ("none") the shared BatchNorms, applied once per stage, drift between
        # training and eval mode (validation PSNR fell from 22.7 to 9.3 dB in a 12-min run).
        norm = nn.InstanceNorm2d(c[0]) if input_norm == "instance" else nn.Identity()
        self.head = nn.Sequential(nn.Conv2d(9, c[0], 3, padding=1), norm, nn.ReLU(inplace=True))
        self.encoder = nn.ModuleList(RRB(c[max(k - 1, 0)], c[k]) for k in range(4))
        # index s = 0, 1, 2 is decoder scale s + 1 (full, 1/2, 1/4 resolution)
        self.up = nn.ModuleList(Up(c[s + 1], c[s]) for s in range(3))
        self.gam = nn.ModuleList(RLCNGAM(c[s], inner[s]) for s in range(3))
        self.decoder = nn.ModuleList(ResBlock(2 * c[s], c[s]) for s in range(3))
        self.tail = nn.Conv2d(c[0], 3, 1)

    def rlcn_image(self, x: torch.Tensor, rec: Recorder = Recorder.off()) -> torch.Tensor:
        """RLCN image fed to the network (float32 under any autocast, returned in x's dtype)."""
        raw = rlcn(x, window=self.rlcn_window, clamp=False)
        rec("rlcn_raw", raw)
        out = raw.clamp(max=1.0) if self.rlcn_clamp else raw
        rec("rlcn", out)
        return out.to(x.dtype)

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        guide = self.rlcn_image(x, rec)
        guides = [guide, F.avg_pool2d(guide, 2), F.avg_pool2d(guide, 4)]
        rec("rlcn.scale2", guides[1])
        rec("rlcn.scale3", guides[2])
        states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * 4  # local: never leaks
        out = x
        for t in range(1, self.stages + 1):
            out = self._stage(x, guides, out, states, rec.child(f"stage{t}."))
        if rec.enabled:
            rec("rain", x - out)
            rec("output", out)
        return out

    def _stage(self, x: torch.Tensor, guides: list[torch.Tensor], out: torch.Tensor,
               states: list, r: Recorder, head_stats: tuple | None = None) -> torch.Tensor:
        """One recurrent stage: the next estimate ``B_t``; ``states`` is updated in place.

        ``head_stats`` (mean, var) replaces the InstanceNorm's own statistics (tiling).
        """
        f = self._head(torch.cat([x, guides[0], out], dim=1), head_stats)
        enc = []
        for k, block in enumerate(self.encoder):
            if k:
                f = F.max_pool2d(f, 2)
            f, states[k] = block(f, states[k])
            enc.append(f)
            if r.enabled:
                h = states[k][0]
                r(f"encoder.scale{k + 1}.h_abs", h.abs().mean(dim=1, keepdim=True))
                if r.full:
                    r(f"encoder.scale{k + 1}.h", h)
        d = enc[3]
        for s in (2, 1, 0):
            dec = self.up[s](d)
            att = self.gam[s](enc[s], dec, guides[s])
            r(f"gam.scale{s + 1}", att)
            d = self.decoder[s](torch.cat([att * enc[s], dec], dim=1))
        out = x + self.tail(d)
        if r.enabled:
            r("rain", x - out)
            r("output", out)
        return out

    def _head(self, inp: torch.Tensor, stats: tuple | None) -> torch.Tensor:
        conv, norm, act = self.head
        if stats is None or not isinstance(norm, nn.InstanceNorm2d):
            return self.head(inp)
        mean, var = stats
        return act((conv(inp) - mean) * torch.rsqrt(var + norm.eps))

    def _head_stats(self, *parts: torch.Tensor, rows: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (biased) variance of the head conv over the whole image whose
        input is ``parts`` concatenated along the channels, computed in strips of ``rows`` rows
        (float64 sums; the whole input is never concatenated), as InstanceNorm would see them."""
        conv = self.head[0]
        height = parts[0].shape[-2]
        total = total_sq = 0
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            a, b = max(0, r0 - 1), min(height, r1 + 1)  # one halo row each side for the 3x3 conv
            strip = torch.cat([p[:, :, a:b] for p in parts], dim=1)
            y = conv(strip)[:, :, r0 - a:r0 - a + r1 - r0].double()
            total = total + y.sum(dim=(2, 3))
            total_sq = total_sq + y.square().sum(dim=(2, 3))
        n = height * parts[0].shape[-1]
        mean = total / n
        var = (total_sq / n - mean.square()).clamp_min(0)
        return mean.float()[:, :, None, None], var.float()[:, :, None, None]

    def _tiled_frame(self, height: int, width: int) -> tuple[int, int]:
        """The padded frame :meth:`forward_tiled` works in (border pad, multiple of 8)."""
        p = 2 * self.border_pad
        return -(-(height + p) // 8) * 8, -(-(width + p) // 8) * 8

    def tiled_state_bytes(self, height: int, width: int) -> int:
        """Whole-image ConvLSTM state of :meth:`forward_tiled`: two sets (the previous stage's
        and the one being blended) of float32 ``h`` and ``c`` at the four scales, about 960
        bytes per pixel with 32 channels."""
        ph, pw = self._tiled_frame(height, width)
        return 2 * sum(2 * 4 * c * (ph >> k) * (pw >> k) for k, c in enumerate(self.widths))

    def tiled_memory(self, height: int, width: int, device: torch.device) -> tuple[int, int]:
        """``(in memory, in temporary files)``: the padded input, its RLCN images, the estimate,
        the blended output and the weights (float32, about 56 bytes per pixel) in memory; the
        ConvLSTM state (:meth:`tiled_state_bytes`) too, unless it is over the spill budget
        (:func:`~derain_core.tiling.spills`), then in a temporary file."""
        ph, pw = self._tiled_frame(height, width)
        ram, state = 4 * (3 + 3 + 1 + 3 + 3 + 1) * ph * pw, self.tiled_state_bytes(height, width)
        return (ram, state) if spills(state, device) else (ram + state, 0)

    def forward_tiled(self, x: torch.Tensor, tile: int, overlap: int, on_tile=None) -> torch.Tensor:
        """Tiled inference that matches whole-image inference.

        Stage by stage: the InstanceNorm statistics of each stage come from the whole image
        (:meth:`_head_stats`), then every tile runs that stage; the tiles' outputs and their
        ConvLSTM states are blended into whole-image tensors, from which the next stage's
        tiles are cut. The states are :class:`~derain_core.tiling.Canvas` es: in memory, or in
        a temporary file for photos whose state is over the spill budget (gigabytes at phone
        size; :func:`~derain_core.tiling.spill_folder`), with the same result. Tiles are equal,
        at most ``tile`` (:func:`balanced_tile`); they and their starts are multiples of 8 so
        that the 1/2 .. 1/8 scales of a tile line up with the whole image's.
        ``on_tile(done, total)`` is called after each tile of each stage (``total`` = stages x tiles).
        """
        self._check_input(x)
        h, w = x.shape[-2:]
        m = 8  # coarsest encoder scale
        xb, margin = pad_border(x, self.border_pad)  # the same frame as whole-image inference
        xp, _ = pad_to_multiple(xb, m)
        height, width = xp.shape[-2:]
        tile, overlap = max(m, tile // m * m), overlap // m * m
        th, tw = balanced_tile(height, tile, overlap, m), balanced_tile(width, tile, overlap, m)
        boxes = [(top, left) for top in tile_starts(height, th, overlap)
                 for left in tile_starts(width, tw, overlap)]

        def cut(t: torch.Tensor, k: int, top: int, left: int) -> torch.Tensor:
            return t[:, :, top >> k:(top + th) >> k, left >> k:(left + tw) >> k]

        def windows(top: int, left: int) -> list[torch.Tensor]:
            return [blend_window(th >> k, tw >> k, overlap >> k, x.device,
                                 box=(top >> k, left >> k, height >> k, width >> k)) for k in range(4)]

        weights = [torch.zeros(1, 1, height >> k, width >> k, device=x.device) for k in range(4)]
        for top, left in boxes:  # the same for every stage
            for k, win in enumerate(windows(top, left)):
                cut(weights[k], k, top, left).add_(win)
        guide = self.rlcn_image(xp)
        guides = [guide, F.avg_pool2d(guide, 2), F.avg_pool2d(guide, 4)]
        norm = self.head[1]
        out = xp  # the whole-image estimate
        states: list[tuple[Canvas, Canvas]] | None = None  # blended sums of h and c per scale
        done, total = 0, self.stages * len(boxes)
        with spill_folder(self.tiled_state_bytes(h, w), x.device) as folder:
            for stage in range(self.stages):
                stats = (self._head_stats(xp, guide, out)
                         if isinstance(norm, nn.InstanceNorm2d) else None)
                new_out = torch.zeros_like(xp, dtype=torch.float32)
                new_states = [tuple(Canvas(c, height >> k, width >> k, x.device,
                                           None if folder is None else folder / f"stage{stage}_scale{k}_{hc}")
                                    for hc in "hc")
                              for k, c in enumerate(self.widths)]
                for top, left in boxes:
                    wins = windows(top, left)
                    tile_states = ([None] * 4 if states is None else
                                   [tuple(s.read(top >> k, left >> k, th >> k, tw >> k) / cut(weights[k], k, top, left)
                                          for s in states[k]) for k in range(4)])
                    y = self._stage(cut(xp, 0, top, left), [cut(g, s, top, left) for s, g in enumerate(guides)],
                                    cut(out, 0, top, left), tile_states, Recorder.off(), stats)
                    cut(new_out, 0, top, left).add_(y.float() * wins[0])
                    for k in range(4):  # tile_states now holds the tile's new states
                        for acc, t in zip(new_states[k], tile_states[k]):
                            acc.add_(top >> k, left >> k, t.float() * wins[k])
                    done += 1
                    if on_tile is not None:
                        on_tile(done, total)
                out = (new_out / weights[0]).to(xp.dtype)
                for canvas in [] if states is None else [c for pair in states for c in pair]:
                    canvas.close()  # two sets alive at a time, not three
                states = new_states
        return out[..., margin:margin + h, margin:margin + w]

    def map_specs(self) -> list[MapSpec]:
        specs = [
            MapSpec("rlcn", "image", "RLCN image",
                    "pixels brighter than their 9x9 neighbourhood, normalised by local contrast "
                    "(capped at 1): candidate rain streaks plus bright edges; fed to every stage",
                    3, 1, group="input"),
            MapSpec("rlcn_raw", "image", "RLCN image, uncapped",
                    "paper eq. 2 before the cap at 1 (values up to about 9)", 3, 1, group="input"),
            MapSpec("rlcn.scale2", "image", "RLCN, 1/2 size",
                    "RLCN image averaged 2x2, guides the half-resolution attention", 3, 2,
                    group="input"),
            MapSpec("rlcn.scale3", "image", "RLCN, 1/4 size",
                    "RLCN image averaged 4x4, guides the quarter-resolution attention", 3, 4,
                    group="input"),
        ]
        for t in range(1, self.stages + 1):
            for s in (1, 2, 3):
                specs.append(MapSpec(
                    f"stage{t}.gam.scale{s}", "attention", f"RLCN-GAM attention, scale {s}",
                    f"where stage {t} lets encoder features through at 1/{2 ** (s - 1)} size "
                    "(1 = kept, 0 = suppressed); learned from the RLCN guide, ideally high "
                    "around rain", 1, 2 ** (s - 1), group=f"stage {t}/attention"))
            for k in range(1, 5):
                specs.append(MapSpec(
                    f"stage{t}.encoder.scale{k}.h_abs", "feature", f"ConvLSTM memory, scale {k}",
                    f"mean |hidden state| over the {self.widths[k - 1]} channels of the encoder "
                    f"ConvLSTM at 1/{2 ** (k - 1)} size: what stage {t} passes on to the next",
                    1, 2 ** (k - 1), group=f"stage {t}/memory"))
            specs.append(MapSpec(
                f"stage{t}.rain", "residual", f"rain removed by stage {t}",
                f"input minus stage {t}'s output (the predicted rain layer so far)", 3, 1,
                group=f"stage {t}/result"))
            specs.append(MapSpec(
                f"stage{t}.output", "image", f"output of stage {t}",
                f"derained image after {t} of {self.stages} stages", 3, 1,
                group=f"stage {t}/result"))
        specs += [
            MapSpec("rain", "residual", "rain layer", "input minus output: the rain the network removed",
                    3, 1, group="result"),
            MapSpec("output", "image", "output", "derained image (last stage)", 3, 1, group="result"),
        ]
        return specs
