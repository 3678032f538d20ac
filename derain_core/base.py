"""Common base of the five networks: padding, cropping and intermediate-map capture.

Every network implements two things:

* ``derain(x, rec)``: the forward pass on an input already padded to the card's
  ``size_multiple``; it returns the clean image and records maps with ``rec(key, tensor)``;
* ``map_specs()``: the list of :class:`MapSpec` it promises to record.

The base class gives the uniform public API::

    model(x)                        # clean image, same shape as x
    model.forward_intermediates(x)  # (clean, {key: tensor}) with maps cropped to x's frame
"""
from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

# What a recorded map is; the apps choose how to draw a map from its kind alone:
#   image     an image in [0, 1] (an intermediate clean estimate, an RLCN image, the output)
#   residual  a signed image the network removes or adds (a rain layer, R = input - output)
#   attention weights in [0, 1] or a distribution (spatial, or per head as a fixed-size matrix)
#   feature   a feature tensor (drawn as its per-pixel magnitude)
#   band      a signed frequency band (wavelet LH/HL/HH, pyramid detail)
#   vector    one value per channel, e.g. channel attention (B, C, 1, 1)
#   index     an integer label per pixel, e.g. which anchor wins (drawn in categorical colours)
MapKind = Literal["image", "residual", "attention", "feature", "band", "vector", "index"]

_FAST_KERNELS = contextvars.ContextVar("derain_fast_kernels", default=True)


def use_fast_kernels() -> bool:
    """True when blocks may take their inference-only fast code.

    That is: autograd is off and the caller is not inside :func:`reference_kernels`. The fast
    code gives the same result to float rounding (tests compare it with the reference).
    """
    return _FAST_KERNELS.get() and not torch.is_grad_enabled()


def use_reference_kernels() -> bool:
    """True inside :func:`reference_kernels`: blocks take their plain, straightforward code
    (with or without autograd). Outside it they may take faster equivalent forms."""
    return not _FAST_KERNELS.get()


@contextmanager
def reference_kernels(enabled: bool = True):
    """Run the straightforward module code (the benchmark's reference path) inside."""
    token = _FAST_KERNELS.set(not enabled)
    try:
        yield
    finally:
        _FAST_KERNELS.reset(token)


_COMPILED_BLOCKS = contextvars.ContextVar("derain_compiled_blocks", default=False)


def use_compiled_blocks() -> bool:
    """True inside :func:`compiled_blocks` while autograd is on: blocks that declare a
    compiled training kernel (JDNet's attention) run it through ``torch.compile``."""
    return _COMPILED_BLOCKS.get() and torch.is_grad_enabled() and not use_reference_kernels()


@contextmanager
def compiled_blocks(enabled: bool = True):
    """Let blocks use their ``torch.compile``d training kernels inside (``derain train`` on
    CPU; ``--no-compile-blocks`` switches it off). The first call of each compiles (tens of
    seconds) and gives the same result to float rounding."""
    token = _COMPILED_BLOCKS.set(enabled)
    try:
        yield
    finally:
        _COMPILED_BLOCKS.reset(token)


@dataclass(frozen=True)
class MapSpec:
    """Promise of one intermediate tensor.

    Spatial maps (``scale`` > 0) have shape ``(B, channels, ceil(H/scale), ceil(W/scale))``
    for an input of size ``H x W``; other maps have the fixed shape ``(B, channels, *size)``.
    ``group`` is a "/"-separated path the apps use to arrange maps (e.g. ``"stage 3/scale 2"``).
    ``channel_names`` names the channels when each one means something of its own (wavelet
    band groups ``("LL", "LH", "HL", "HH")``, heads): the apps then draw one labelled panel per
    channel instead of a summary over channels.
    """

    key: str
    kind: MapKind
    title: str
    meaning: str
    channels: int
    scale: int = 1
    size: tuple[int, int] | None = None
    group: str = ""
    channel_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.channel_names is not None and len(self.channel_names) != self.channels:
            raise ValueError(f"{self.key}: {len(self.channel_names)} channel names for "
                             f"{self.channels} channels")

    @property
    def spatial(self) -> bool:
        """True when the map lies on the input's frame (it has the photo's geometry)."""
        return self.scale > 0 and self.size is None and self.kind != "vector"

    @property
    def overlayable(self) -> bool:
        """True when laying the map over the photo makes sense: a spatial map drawn in false
        colours. Images and residuals are pictures themselves (nothing to overlay)."""
        return self.spatial and self.kind not in ("image", "residual")

    def shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Expected tensor shape for an input of ``batch x 3 x height x width``."""
        if self.scale > 0:
            return (batch, self.channels, math.ceil(height / self.scale), math.ceil(width / self.scale))
        assert self.size is not None, f"{self.key}: non-spatial map needs a fixed size"
        return (batch, self.channels, *self.size)


class Recorder:
    """Collects named, detached intermediate tensors during one forward pass.

    A disabled recorder (``Recorder.off()``) is free: ``rec(key, t)`` does nothing and
    ``rec.enabled`` lets a block skip work that only serves display (summaries).
    ``full`` asks blocks to also keep huge maps (JDNet's 49-way weights, MFAN's
    full similarity matrices) instead of only their summaries.
    """

    def __init__(self, enabled: bool = True, full: bool = False, prefix: str = "",
                 store: dict[str, torch.Tensor] | None = None, spatial: set[str] | None = None):
        self.enabled = enabled
        self.full = full
        self.prefix = prefix
        self.maps: dict[str, torch.Tensor] = {} if store is None else store
        self.spatial: set[str] = set() if spatial is None else spatial

    @classmethod
    def off(cls) -> "Recorder":
        return cls(enabled=False)

    def __call__(self, key: str, tensor: torch.Tensor, spatial: bool = True) -> None:
        """Store ``tensor`` under ``prefix + key``; ``spatial`` maps get cropped later."""
        if not self.enabled:
            return
        name = self.prefix + key
        self.maps[name] = tensor.detach().float()
        if spatial:
            self.spatial.add(name)

    def child(self, prefix: str) -> "Recorder":
        """A recorder writing into the same store with a longer key prefix."""
        if not self.enabled:
            return self
        return Recorder(True, self.full, self.prefix + prefix, self.maps, self.spatial)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``x`` to a multiple; returns the padding."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (ph, pw)


def pad_border(x: torch.Tensor, margin: int) -> tuple[torch.Tensor, int]:
    """Reflect-pad every side of ``x`` by ``margin`` pixels (0 when the image is too small to
    reflect that far); returns the padded tensor and the margin used."""
    if margin <= 0 or min(x.shape[-2:]) <= margin:
        return x, 0
    return F.pad(x, (margin,) * 4, mode="reflect"), margin


def crop_map(t: torch.Tensor, padded_hw: tuple[int, int], hw: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """Crop a map computed on the padded frame back to the input's frame.

    The input sits at ``margin`` pixels from the padded frame's top-left corner; a map at 1/s of
    the padded size keeps ``ceil(H/s) x ceil(W/s)`` pixels from ``margin/s`` on.
    """
    hp, wp = padded_hw
    h, w = hw
    mh, mw = t.shape[-2:]
    top, left = round(margin * mh / hp), round(margin * mw / wp)
    th = math.ceil(mh * h / hp)
    tw = math.ceil(mw * w / wp)
    return t[..., top:top + th, left:left + tw]


class DerainNet(nn.Module):
    """Base class of the five networks (see module docstring)."""

    card = None  # set by registry.register

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def map_specs(self) -> list[MapSpec]:  # pragma: no cover
        raise NotImplementedError

    @property
    def size_multiple(self) -> int:
        return self.card.size_multiple if self.card is not None else 1

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a Bx3xHxW tensor, got shape {tuple(x.shape)}")
        min_size = self.card.min_size if self.card is not None else 16
        if min(x.shape[-2:]) < min_size:
            raise ValueError(f"image too small: {x.shape[-2]}x{x.shape[-1]} "
                             f"(at least {min_size}x{min_size} pixels)")

    @property
    def border_pad(self) -> int:
        """The card's reflection margin, at inference only (training crops need none: their
        loss covers the whole crop, and the margin would cost up to 2x per step)."""
        if self.training or self.card is None:
            return 0
        return self.card.border_pad

    def _run(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        self._check_input(x)
        h, w = x.shape[-2:]
        xb, m = pad_border(x, self.border_pad)
        xp, (ph, pw) = pad_to_multiple(xb, self.size_multiple)
        clean = self.derain(xp, rec)
        if rec.enabled and (m or ph or pw):
            padded = xp.shape[-2:]
            for key in rec.spatial:
                rec.maps[key] = crop_map(rec.maps[key], padded, (h, w), m)
        return clean[..., m:m + h, m:m + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clean image for ``x`` (Bx3xHxW, RGB in [0, 1]); same shape as ``x``."""
        return self._run(x, Recorder.off())

    def tiled_memory(self, height: int, width: int, device: torch.device) -> tuple[int, int]:
        """Bytes :meth:`forward_tiled` keeps for a ``height`` x ``width`` image beyond one tile's
        work, as ``(in memory, in temporary files)``: the blended output and its weights (float32)
        for the independent tiles of the default; networks that keep whole-image state while
        tiling (RRANet) say more. The engine refuses a tiled run that would not fit."""
        return 16 * height * width, 0

    def forward_tiled(self, x: torch.Tensor, tile: int, overlap: int, on_tile=None) -> torch.Tensor:
        """Clean image computed in overlapping ``tile``-pixel tiles with blended seams.

        The default runs the tiles independently (:func:`derain_core.tiling.run_tiled`);
        networks whose result depends on whole-image state override it. ``on_tile(done, total)``
        is called after each tile (:data:`derain_core.tiling.TileCallback`).
        """
        from .tiling import run_tiled
        return run_tiled(self, x, tile, overlap, on_tile)

    def forward_intermediates(self, x: torch.Tensor, full: bool = False
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clean image and every map of :meth:`map_specs`, cropped to ``x``'s frame.

        ``full=True`` additionally keeps huge maps that are summarized by default.
        """
        rec = Recorder(enabled=True, full=full)
        clean = self._run(x, rec)
        return clean, rec.maps

    def training_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors the paper's loss needs, with gradients; at least ``{"output": clean}``.

        Networks with auxiliary supervision (MSAMNet's SAM) override this.
        """
        return {"output": self(x)}
