"""Checks of trained weights beyond PSNR (``shared/design/training.md``).

- **identity**: a derainer leaves a rain-free photo almost unchanged (PSNR of output
  against input, on the bundled clean scikit-image photos);
- **blobs**: on those photos, the share of pixels changed by more than 96/255 in any channel;
- **border bands**: on the bundled rainy examples with ground truth, the mean error in the
  outer 8-pixel strip of each side against the interior's (the worst side counts).

``scripts/sanity_checks.py`` prints them for every model; ``tests/test_sanity.py`` holds the
shipped weights to the limits below.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from . import engine
from .io import load_image, to_tensor
from .metrics import psnr_torch, quantize8

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
IDENTITY_PHOTOS = ("astronaut", "chelsea", "coffee")
BLOB_LEVEL = 96 / 255  # a change this large in a channel of a rain-free photo is an artefact
BORDER = 8  # pixels

# Limits (training.md and the weight issues' acceptance)
MIN_IDENTITY_PSNR = 30.0  # dB
MAX_BLOB_FRACTION = 0.0005  # 0.05 %
MAX_BORDER_RATIO = 3.0


@dataclass
class SanityReport:
    """What :func:`check_model` measured; the worst case over the photos/examples decides."""

    model: str
    variant: str
    crop: int | None
    identity_psnr: dict[str, float] = field(default_factory=dict)
    blob_fraction: dict[str, float] = field(default_factory=dict)
    border_ratio: dict[str, float] = field(default_factory=dict)

    # A check that did not run (no photos or examples chosen) neither passes nor fails.
    @property
    def worst_identity_psnr(self) -> float:
        return min(self.identity_psnr.values(), default=math.inf)

    @property
    def worst_blob_fraction(self) -> float:
        return max(self.blob_fraction.values(), default=0.0)

    @property
    def worst_border_ratio(self) -> float:
        return max(self.border_ratio.values(), default=0.0)

    def failures(self) -> list[str]:
        """Plain-language list of the limits this model misses (empty: all pass)."""
        out = []
        if self.worst_identity_psnr < MIN_IDENTITY_PSNR:
            out.append(f"identity {self.worst_identity_psnr:.1f} dB < {MIN_IDENTITY_PSNR:g} dB")
        if self.worst_blob_fraction >= MAX_BLOB_FRACTION:
            out.append(f"blobs {self.worst_blob_fraction:.3%} of pixels >= {MAX_BLOB_FRACTION:.2%}")
        if self.worst_border_ratio > MAX_BORDER_RATIO:
            out.append(f"border band {self.worst_border_ratio:.2f}x interior > {MAX_BORDER_RATIO:g}x")
        return out

    def to_json(self) -> dict:
        identity = round(self.worst_identity_psnr, 2) if self.identity_psnr else None  # None: not run
        return {**asdict(self), "worst_identity_psnr": identity,
                "worst_blob_fraction": self.worst_blob_fraction,
                "worst_border_ratio": round(self.worst_border_ratio, 3), "failures": self.failures()}


def psnr_rgb(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, RGB) of two images in [0, 1], both quantised to 8 bits; capped at 100 dB."""
    return min(psnr_torch(quantize8(a), quantize8(b)).mean().item(), 100.0)


def blob_fraction(out: torch.Tensor, inp: torch.Tensor, level: float = BLOB_LEVEL) -> float:
    """Share of pixels where some channel changed by more than ``level``."""
    return ((out - inp).abs().amax(dim=1) > level).float().mean().item()


def border_ratio(out: torch.Tensor, gt: torch.Tensor, width: int = BORDER) -> float:
    """Mean absolute error in the worst of the four outer ``width``-pixel strips divided by the
    interior's (one side at a time, so that a band along one edge is not averaged away)."""
    err = (out - gt).abs().mean(dim=1)[0]
    inner = err[width:-width, width:-width].mean().clamp_min(1e-6)
    sides = (err[:, :width], err[:, -width:], err[:width], err[-width:])
    return max((s.mean() / inner).item() for s in sides)


def load_crop(path: Path, crop: int | None = None) -> torch.Tensor:
    """An image file as a (1, 3, H, W) float tensor in [0, 1], center-cropped to ``crop`` pixels when given."""
    x = to_tensor(load_image(path))
    if crop:
        h, w = x.shape[-2:]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        x = x[..., top:top + crop, left:left + crop]
    return x


def rainy_examples(examples_dir: Path = EXAMPLES_DIR) -> list[tuple[str, Path, Path]]:
    """``(id, rainy, clean)`` for every bundled example with ground truth."""
    index = json.loads((examples_dir / "index.json").read_text())
    return [(e["id"], examples_dir / e["file"], examples_dir / e["gt"])
            for e in index["examples"] if e.get("gt")]


def check_model(model_id: str, variant: str | None = None, crop: int | None = None,
                device: str = "cpu", examples_dir: Path = EXAMPLES_DIR,
                examples: Sequence[str] | None = None,
                photos: Sequence[str] = IDENTITY_PHOTOS) -> SanityReport:
    """Run the three checks for one model (``crop``: center crops of that size, for speed;
    ``examples``: the border check on these example ids only, default every one with ground truth;
    ``photos``: the rain-free photos of the identity and blob checks, ``()`` to skip them)."""
    loaded = engine.MODELS.get(model_id, variant, device)
    report = SanityReport(model_id, loaded.variant, crop)

    def run(x: torch.Tensor) -> torch.Tensor:
        y, _ = engine.run_model(loaded, x.to(loaded.device), tile=0)
        return y.cpu()

    for name in photos:
        x = load_crop(examples_dir / f"{name}_clean.png", crop)
        y = run(x)
        report.identity_psnr[name] = round(psnr_rgb(y, x), 2)
        report.blob_fraction[name] = blob_fraction(y, x)
    for ex_id, rainy, clean in rainy_examples(examples_dir):
        if examples is not None and ex_id not in examples:
            continue
        x, gt = load_crop(rainy, crop), load_crop(clean, crop)
        report.border_ratio[ex_id] = round(border_ratio(run(x), gt), 3)
    return report


def reports_table(reports: list[SanityReport]) -> str:
    """A plain-text table of the worst cases, one row per model."""
    lines = [f"{'model':<9} {'variant':<10} {'identity dB':>11} {'blobs %':>8} {'border x':>8}  verdict"]
    for r in reports:
        verdict = "ok" if not r.failures() else "; ".join(r.failures())
        lines.append(f"{r.model:<9} {r.variant:<10} {r.worst_identity_psnr:>11.2f} "
                     f"{100 * r.worst_blob_fraction:>8.3f} {r.worst_border_ratio:>8.2f}  {verdict}")
    return "\n".join(lines)


__all__ = ["SanityReport", "check_model", "reports_table", "psnr_rgb", "blob_fraction", "border_ratio",
           "rainy_examples", "MIN_IDENTITY_PSNR", "MAX_BLOB_FRACTION", "MAX_BORDER_RATIO"]
