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

:class:`SyntheticRainPatches` instead renders rain (:mod:`derain_core.synth`) over random crops of
the pairs' *clean* images on the fly (optionally mixed with the real pairs), and
:func:`make_synthetic_val` builds the matching fixed validation set from held-out clean images.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from . import synth as _synth

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


class _SeededSampler:
    """Shared by the patch samplers: one seeded generator whose state checkpoints resume."""

    generator: torch.Generator

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))


def check_identity_fraction(identity: float) -> float:
    """``identity`` as a float in [0, 1), or a one-line error.

    Identity pairs (a clean crop as both input and target) teach a derainer to leave rain-free
    content alone: without them the networks learn that every thin bright line is a streak and
    remove the specular highlights of rain-free photos (the blob check of ``training.md``).
    """
    identity = float(identity)
    if not 0.0 <= identity < 1.0:
        raise ValueError(f"identity fraction must be in [0, 1), got {identity}")
    return identity


def _draw_identity(generator: torch.Generator, identity: float) -> bool:
    """One draw: whether the next sample is an identity pair (no draw at all when ``identity`` is 0,
    so runs without identity pairs draw exactly the crops they drew before the option existed)."""
    return identity > 0 and float(torch.rand(1, generator=generator)) < identity


class PairedPatches(_SeededSampler):
    """Random ``patch x patch`` crops of in-memory pairs, with random horizontal/vertical flips.

    ``batch(n)`` returns ``(rainy, clean)`` float tensors ``(n, 3, patch, patch)`` in [0, 1];
    iterating yields single ``(rainy, clean)`` crops ``(3, patch, patch)`` forever.
    With probability ``identity`` a crop is an identity pair ``(clean, clean)``: a rain-free
    input the network must leave unchanged (see :func:`check_identity_fraction`).
    Randomness comes only from ``self.generator`` (seeded), whose state
    (:meth:`get_state` / :meth:`set_state`) makes a resumed run draw the same crops.
    """

    def __init__(self, pairs: Sequence[Pair], patch: int, flips: bool = True, seed: int = 0,
                 identity: float = 0.0):
        if not pairs:
            raise ValueError("PairedPatches needs at least one pair")
        self.pairs = list(pairs)
        self.patch = int(patch)
        self.flips = flips
        self.identity = check_identity_fraction(identity)
        self.images = load_pairs_uint8(self.pairs)
        small = [p[0].name for p, (r, _) in zip(self.pairs, self.images) if min(r.shape[-2:]) < self.patch]
        if small:
            raise ValueError(f"patch {self.patch} is larger than {len(small)} image(s), e.g. {small[0]}")
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)


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
        if _draw_identity(self.generator, self.identity):
            r = c
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


# ------------------------------------------------------------------------------------------
# Synthetic rain over clean backgrounds
# ------------------------------------------------------------------------------------------
SYNTH_KINDS = _synth.KINDS


class SyntheticRainPatches(_SeededSampler):
    """Random ``patch x patch`` clean crops (random flips) with rain synthesized on the fly.

    Same interface as :class:`PairedPatches`: ``batch(n)`` returns ``(rainy, clean)`` float
    tensors ``(n, 3, patch, patch)`` in [0, 1]; ``get_state`` / ``set_state`` hold all the
    randomness (one seeded ``torch.Generator``: crop, flips, real-or-synthetic draw and the
    per-patch rain seed), so a resumed run draws identical batches.

    Backgrounds are the pairs' clean images only. Each patch gets its own random rain of
    ``kind`` (one of :data:`derain_core.synth.KINDS`) via :func:`synth.random_rain`,
    rendered on the patch and rounded to 8-bit levels. With probability ``mix`` a sample is a
    real ``(rainy, clean)`` crop of the pairs instead (``mix=1``: only real pairs), and with
    probability ``identity`` an identity pair ``(clean, clean)`` (drawn first).
    """

    def __init__(self, pairs: Sequence[Pair], patch: int, kind: str = "heavy", mix: float = 0.0,
                 flips: bool = True, seed: int = 0, identity: float = 0.0):
        if not pairs:
            raise ValueError("SyntheticRainPatches needs at least one pair")
        if not 0.0 <= float(mix) <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        self.pairs = list(pairs)
        self.patch = int(patch)
        self.kind = _synth.check_kind(kind)
        self.mix = float(mix)
        self.identity = check_identity_fraction(identity)
        self.flips = flips
        self.cleans = [load_rgb_uint8(c) for _, c in self.pairs]
        self.rainys: list[torch.Tensor] | None = None
        if self.mix > 0:  # real rainy images are only loaded when they are used
            self.rainys = [load_rgb_uint8(r) for r, _ in self.pairs]
            for (r, _), rt, ct in zip(self.pairs, self.rainys, self.cleans):
                if rt.shape != ct.shape:
                    raise ValueError(f"size mismatch in pair {r.name}: {tuple(rt.shape)} vs {tuple(ct.shape)}")
        small = [c.name for (_, c), t in zip(self.pairs, self.cleans) if min(t.shape[-2:]) < self.patch]
        if small:
            raise ValueError(f"patch {self.patch} is larger than {len(small)} image(s), e.g. {small[0]}")
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.cleans)


    def sample(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """One random ``(rainy, clean, is_real)``: float ``(3, patch, patch)`` crops in [0, 1]."""
        # the same draws in the same order for every sample, whichever branch it takes
        i = self._randint(len(self.cleans))
        h, w = self.cleans[i].shape[-2:]
        top, left = self._randint(h - self.patch + 1), self._randint(w - self.patch + 1)
        u = torch.rand(3, generator=self.generator)  # flip h, flip v, real-or-synthetic
        rain_seed = self._randint(2 ** 31 - 1)
        dims = [d for d, f in zip((2, 1), (u[:2] < 0.5).tolist()) if f] if self.flips else []
        win = (slice(None), slice(top, top + self.patch), slice(left, left + self.patch))
        clean = self.cleans[i][win]
        clean = clean.flip(dims) if dims else clean
        if _draw_identity(self.generator, self.identity):
            return to_float(clean), to_float(clean), False
        if self.rainys is not None and float(u[2]) < self.mix:
            rainy = self.rainys[i][win]
            rainy = rainy.flip(dims) if dims else rainy
            return to_float(rainy), to_float(clean), True
        rainy, _ = _synth.random_rain(clean.permute(1, 2, 0).numpy(), self.kind, rain_seed)
        return torch.from_numpy(rainy).permute(2, 0, 1).contiguous(), to_float(clean), False

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random samples as float ``(n, 3, patch, patch)`` tensors in [0, 1]."""
        samples = [self.sample() for _ in range(n)]
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            r, c, _ = self.sample()
            yield r, c


def _clean_path(item: Pair | str | Path) -> Path:
    return Path(item[1]) if isinstance(item, tuple) else Path(item)


def synthetic_val_seed(kind: str, seed: int, name: str, k: int = 0) -> int:
    """Rain seed of validation image ``name`` (``k``: repeat index); never used for training."""
    return _synth.stable_seed(f"derain-val/{kind}/{seed}/{k}/{name}")


def make_synthetic_val(clean_pairs: Sequence[Pair | str | Path], count: int, crop: int = 0,
                       kind: str = "heavy", seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed synthetic validation set: ``count`` float ``(1, 3, H, W)`` ``(rainy, clean)`` pairs.

    Uses only the clean images of ``clean_pairs`` (pairs or clean paths; the held-out validation
    pairs), in sorted order, cycling when ``count`` exceeds them (each repeat gets new rain).
    Rain of ``kind`` is rendered on the full image with a seed from (kind, seed, file name, repeat)
    (:func:`synthetic_val_seed`), rounded to 8 bits, then both images are center-cropped to
    ``crop`` (0: full size). Deterministic; independent of the order of ``clean_pairs``.
    """
    _synth.check_kind(kind)
    paths = sorted(_clean_path(p) for p in clean_pairs)
    if count <= 0 or not paths:
        return []
    out = []
    for j in range(count):
        path, k = paths[j % len(paths)], j // len(paths)
        clean = load_rgb_uint8(path)
        rainy, _ = _synth.random_rain(clean.permute(1, 2, 0).numpy(), kind, synthetic_val_seed(kind, seed, path.name, k))
        rainy_t = torch.from_numpy(rainy).permute(2, 0, 1)
        out.append((center_crop(rainy_t, crop)[None].contiguous(), to_float(center_crop(clean, crop))[None]))
    return out
