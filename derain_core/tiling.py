"""Overlapped tiled inference with linearly blended seams.

Tiles start on a grid of ``tile - overlap`` pixels, the last one flush with the far edge;
each tile's output is weighted by a window that, over the ``overlap`` pixels of a seam,
ignores the outer half (where the tile's own zero padding shows) and ramps linearly to 1
over the rest, so seams fade instead of showing. ``DerainNet.forward_tiled`` uses
:func:`run_tiled` (independent tiles); networks that carry whole-image state (RRANet)
override it with a tiling of their own built from the same helpers.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

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
