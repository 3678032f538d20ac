"""Paired rainy/clean training data: discovery, a deterministic validation split, random patches.

Supported folder layouts (``find_pairs``):

* ``root/rainy/NAME`` + ``root/clean/NAME`` (the shared ``Rain100L_train`` layout);
* ``root/rain/`` + ``root/norain/`` with identical names, or ``rain-NNN.png`` / ``norain-NNN.png``;
* ``root/input/`` + ``root/target/`` (MPRNet's layout);
* a flat folder of ``rain-NNN.png`` and ``norain-NNN.png`` files (Rain100L/H as distributed).

All images of a split are loaded once into memory as uint8 tensors (200 pairs of 481x321 take
about 185 MB); :class:`PairedPatches` cuts random crops with random flips from them.
The test split of a benchmark is never used here: checkpoints are picked on a validation split
carved out of the training pairs by :func:`split_pairs`.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FOLDER_LAYOUTS = (("rainy", "clean"), ("rain", "norain"), ("input", "target"))

Pair = tuple[Path, Path]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _clean_name(rainy_name: str) -> list[str]:
    """Candidate clean file names for a rainy file name (same name, or rain- -> norain-)."""
    names = [rainy_name]
    if rainy_name.startswith("rain-"):
        names.append("no" + rainy_name)
    if rainy_name.startswith("rain_"):
        names.append("no" + rainy_name)
    return names


def _match(rainy_files: list[Path], clean_dir: Path) -> list[Pair]:
    pairs = []
    for r in rainy_files:
        for name in _clean_name(r.name):
            c = clean_dir / name
            if c.is_file() and c.resolve() != r.resolve():
                pairs.append((r, c))
                break
    return pairs


def find_pairs(root: str | Path) -> list[Pair]:
    """List ``(rainy_path, clean_path)`` pairs of a paired folder, sorted by rainy name.

    Raises ``FileNotFoundError`` if ``root`` is missing and ``ValueError`` if no pair is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    for rainy_name, clean_name in FOLDER_LAYOUTS:
        rdir, cdir = root / rainy_name, root / clean_name
        if rdir.is_dir() and cdir.is_dir():
            pairs = _match(_images(rdir), cdir)
            if pairs:
                return pairs
    flat = [p for p in _images(root) if p.name.startswith(("rain-", "rain_"))]
    pairs = _match(flat, root)
    if pairs:
        return pairs
    raise ValueError(
        f"no rainy/clean image pairs found in {root}; expected rainy/ + clean/ (same names), "
        "rain/ + norain/, input/ + target/, or rain-NNN.png + norain-NNN.png files")


def split_pairs(pairs: Sequence[Pair], val_count: int, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Deterministic ``(train, val)`` split: ``val_count`` pairs drawn with ``seed``.

    The result does not depend on the order of ``pairs``; both lists come back sorted.
    """
    pairs = sorted(pairs)
    if val_count < 0 or val_count >= len(pairs):
        raise ValueError(f"val_count must be in [0, {len(pairs) - 1}] for {len(pairs)} pairs, got {val_count}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:val_count])
    train = [p for i, p in enumerate(pairs) if i not in val_idx]
    val = [p for i, p in enumerate(pairs) if i in val_idx]
    return train, val


def load_rgb_uint8(path: str | Path) -> torch.Tensor:
    """Read an image as a ``(3, H, W)`` uint8 RGB tensor."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def load_pairs_uint8(pairs: Sequence[Pair]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Load pairs as uint8 tensors; raises ``ValueError`` if a pair's sizes differ."""
    out = []
    for r, c in pairs:
        rt, ct = load_rgb_uint8(r), load_rgb_uint8(c)
        if rt.shape != ct.shape:
            raise ValueError(f"size mismatch in pair {r.name}: {tuple(rt.shape)} vs {tuple(ct.shape)}")
        out.append((rt, ct))
    return out


def to_float(t: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return t.float().div_(255.0)


class PairedPatches:
    """Random ``patch x patch`` crops of in-memory pairs, with random horizontal/vertical flips.

    ``batch(n)`` returns ``(rainy, clean)`` float tensors ``(n, 3, patch, patch)`` in [0, 1];
    iterating yields single ``(rainy, clean)`` crops ``(3, patch, patch)`` forever.
    Randomness comes only from ``self.generator`` (seeded), whose state
    (:meth:`get_state` / :meth:`set_state`) makes a resumed run draw the same crops.
    """

    def __init__(self, pairs: Sequence[Pair], patch: int, flips: bool = True, seed: int = 0):
        if not pairs:
            raise ValueError("PairedPatches needs at least one pair")
        self.pairs = list(pairs)
        self.patch = int(patch)
        self.flips = flips
        self.images = load_pairs_uint8(self.pairs)
        small = [p[0].name for p, (r, _) in zip(self.pairs, self.images) if min(r.shape[-2:]) < self.patch]
        if small:
            raise ValueError(f"patch {self.patch} is larger than {len(small)} image(s), e.g. {small[0]}")
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def crop(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One random uint8 crop pair ``(3, patch, patch)``."""
        rainy, clean = self.images[self._randint(len(self.images))]
        h, w = rainy.shape[-2:]
        top, left = self._randint(h - self.patch + 1), self._randint(w - self.patch + 1)
        flip = torch.rand(2, generator=self.generator) < 0.5
        r = rainy[:, top:top + self.patch, left:left + self.patch]
        c = clean[:, top:top + self.patch, left:left + self.patch]
        if self.flips:
            dims = [d for d, f in zip((2, 1), flip.tolist()) if f]  # (horizontal, vertical)
            if dims:
                r, c = r.flip(dims), c.flip(dims)
        return r, c

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random crops as float ``(n, 3, patch, patch)`` tensors in [0, 1]."""
        crops = [self.crop() for _ in range(n)]
        rainy = torch.stack([r for r, _ in crops])
        clean = torch.stack([c for _, c in crops])
        return to_float(rainy), to_float(clean)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            r, c = self.crop()
            yield to_float(r), to_float(c)


def center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop the last two dims to at most ``size x size`` (``size <= 0``: unchanged)."""
    if size <= 0:
        return t
    h, w = t.shape[-2:]
    ch, cw = min(h, size), min(w, size)
    top, left = (h - ch) // 2, (w - cw) // 2
    return t[..., top:top + ch, left:left + cw]


def load_validation(pairs: Sequence[Pair], crop: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Validation images as float ``(1, 3, H, W)`` pairs: full images, or center crops of ``crop``."""
    out = []
    for r, c in load_pairs_uint8(pairs):
        out.append((to_float(center_crop(r, crop))[None], to_float(center_crop(c, crop))[None]))
    return out
