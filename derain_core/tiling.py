"""Overlapped tiled inference with linearly blended seams.

Tiles start on a grid of ``tile - overlap`` pixels, the last one flush with the far edge;
each tile's output is weighted by a window that, over the ``overlap`` pixels of a seam,
ignores the outer half (where the tile's own zero padding shows) and ramps linearly to 1
over the rest, so seams fade instead of showing. ``DerainNet.forward_tiled`` uses
:func:`run_tiled` (independent tiles); networks that carry whole-image state (RRANet)
override it with a tiling of their own built from the same helpers, and keep their whole-image
state in :class:`Canvas` es, which move to a temporary file above a memory budget
(:func:`spill_folder`).
"""
from __future__ import annotations

import math
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import settings

TileCallback = Callable[[int, int], None]
"""``on_tile(done, total)``: called after each tile; raising from it (e.g. a cancellation)
stops the tiling before the next tile starts."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def balanced_tile(length: int, max_tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile side (a multiple of ``multiple``, at most ``max_tile`` rounded up to it)
    that covers ``length`` with as few tiles as ``max_tile`` needs.

    :func:`tile_starts` puts the last tile flush with the far edge, so with ``max_tile`` itself
    the last two tiles can overlap by almost a whole tile; equal smaller tiles do the same
    cover with less work and memory (a 1126-px side: three 418-px tiles instead of three of 512).
    """
    if length <= max_tile:
        return length
    n = len(tile_starts(length, max_tile, overlap))
    side = math.ceil((length - overlap) / n) + overlap
    return min(length, -(-side // multiple) * multiple)


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool, device, dtype) -> torch.Tensor:
    """1-D weights: 1 inside; over ``overlap`` pixels at a seam, 0 for the outer half (where
    the tile's own border effects are strongest; the neighbour's inner half covers it), then a
    linear ramp up to 1. No ramp at the image's own borders, which no other tile covers."""
    r = torch.ones(n, device=device, dtype=dtype)
    k = min(overlap, n // 2)
    if k > 0:
        margin = k // 2
        edge = torch.zeros(k, device=device, dtype=dtype)
        edge[margin:] = (torch.arange(k - margin, device=device, dtype=dtype) + 1) / (k - margin + 1)
        if not at_start:
            r[:k] = edge
        if not at_end:
            r[n - k:] = edge.flip(0)
    return r


def blend_window(h: int, w: int, overlap: int, device=None, dtype=torch.float32,
                 box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """``(h, w)`` blending weights of a tile (see :func:`_ramp`).

    ``box = (top, left, height, width)`` places the tile in an image of that size, so that
    sides on the image border get no ramp; without it every side is treated as a seam.
    """
    top, left, height, width = box if box is not None else (1, 1, h + 2, w + 2)
    rows = _ramp(h, overlap, top == 0, top + h >= height, device, dtype)
    cols = _ramp(w, overlap, left == 0, left + w >= width, device, dtype)
    return rows[:, None] * cols[None, :]


def run_tiled(net: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int,
              on_tile: TileCallback | None = None) -> torch.Tensor:
    """``net`` applied to overlapping tiles of ``x`` (Bx3xHxW), blended (float32 result).

    ``on_tile(done, total)`` is called after each tile (see :data:`TileCallback`).
    """
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    out = torch.zeros_like(x, dtype=torch.float32)
    weight = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
    boxes = [(top, left) for top in tile_starts(h, th, overlap) for left in tile_starts(w, tw, overlap)]
    for done, (top, left) in enumerate(boxes, 1):
        win = blend_window(th, tw, overlap, x.device, box=(top, left, h, w))
        y = net(x[:, :, top:top + th, left:left + tw]).float()
        out[:, :, top:top + th, left:left + tw] += y * win
        weight[:, :, top:top + th, left:left + tw] += win
        del y
        if on_tile is not None:
            on_tile(done, len(boxes))
    return out / weight


# --------------------------------------------------------------------------------------
# Whole-image state of a staged tiling: in memory, or spilled to a temporary file
# --------------------------------------------------------------------------------------
SPILL_MB = settings.get("DERAIN_SPILL_MB")
"""Whole-image state (in MB) a tiled run keeps in memory on the CPU; above it the state goes to
a temporary file in ``DERAIN_SPILL_DIR`` (default: the system's temporary folder)."""


def spill_dir() -> Path:
    """Where tiled runs put whole-image state that does not fit :data:`SPILL_MB`."""
    return Path(settings.get("DERAIN_SPILL_DIR") or tempfile.gettempdir())


def spills(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of whole-image state go to a temporary file (CPU only, above
    :data:`SPILL_MB`); on a GPU the state stays in its memory."""
    return torch.device(device).type == "cpu" and nbytes > SPILL_MB * 2**20


@contextmanager
def spill_folder(nbytes: int, device: torch.device) -> Iterator[Path | None]:
    """A fresh temporary folder for ``nbytes`` of :class:`Canvas` files when :func:`spills`,
    else None (the canvases stay in memory). The folder and its files are removed on exit,
    also when the run stops early (a cancellation, an error)."""
    if not spills(nbytes, device):
        yield None
        return
    folder = spill_dir()
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise MemoryError(f"this photo needs {nbytes / 2**30:.1f} GB of temporary disk space in {folder} "
                          f"and {free / 2**30:.1f} GB are free; run it on a smaller copy")
    with tempfile.TemporaryDirectory(prefix="derain-tiles-", dir=folder) as name:
        yield Path(name)


class Canvas:
    """A whole-image float32 tensor ``(1, C, H, W)`` that tiles are read from and blended into.

    Stored as ``(H, W, C)``, so each row of a box is one contiguous run. In memory (on
    ``device``) when ``path`` is None; otherwise in that file, mapped one box at a time, so the
    process holds only the box it works on and the operating system caches the rest as it
    can (12-megapixel photos need gigabytes of such state; see :func:`spill_folder`).
    """

    def __init__(self, channels: int, height: int, width: int, device: torch.device | None = None,
                 path: Path | None = None) -> None:
        self.channels, self.height, self.width = channels, height, width
        self.path = path
        if path is None:
            self._data = torch.zeros(height, width, channels, device=device)
        else:
            with open(path, "wb") as f:
                f.truncate(height * width * channels * 4)  # a sparse file: reads as zeros

    def _rows(self, top: int, rows: int) -> np.memmap:
        return np.memmap(self.path, np.float32, "r+", offset=top * self.width * self.channels * 4,
                         shape=(rows, self.width, self.channels))

    def read(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        """The box ``(1, C, height, width)`` at ``(top, left)`` (a view in memory, a copy from a file)."""
        if self.path is None:
            box = self._data[top:top + height, left:left + width]
        else:
            rows = self._rows(top, height)
            box = torch.from_numpy(np.array(rows[:, left:left + width]))
            del rows  # unmapped: the process keeps only the copy
        return box.permute(2, 0, 1).unsqueeze(0)

    def add_(self, top: int, left: int, t: torch.Tensor) -> None:
        """Add ``t`` ``(1, C, h, w)`` into the box at ``(top, left)``."""
        h, w = t.shape[-2:]
        src = t[0].permute(1, 2, 0).float()
        if self.path is None:
            self._data[top:top + h, left:left + w].add_(src)
        else:
            rows = self._rows(top, h)
            rows[:, left:left + w] += src.cpu().numpy()
            del rows

    def close(self) -> None:
        """Release the memory or delete the file."""
        if self.path is None:
            self._data = None
        else:
            self.path.unlink(missing_ok=True)
