"""Drawing helpers shared by the Gradio demo and the Streamlit dashboard.

Pure numpy + Pillow (no matplotlib): the apps only do layout, everything drawn lives here.

Conventions:

* every function *returning* an image returns ``uint8`` ``H x W x 3`` (RGB);
* functions *taking* an image accept ``float`` ``H x W x 3`` in ``[0, 1]``, ``uint8``
  ``H x W x 3``, grey ``H x W`` or ``H x W x 1``, RGBA (alpha dropped), or a torch tensor
  ``(3, H, W)`` / ``(B, 3, H, W)`` (first image of the batch), see :func:`to_uint8_image`;
* maps are float 2-D arrays (numpy, or anything with ``.detach()`` such as torch tensors);
  NaN pixels are drawn grey, +/-inf as the top/bottom colour;
* points are ``(x, y)`` in pixels of the full-size image; sizes given as a tuple are
  ``(height, width)`` except crop sizes, which are ``(width, height)`` like points.

Intermediate tensors come from ``model.forward_intermediates(x)`` as ``(B, C, h, w)`` and are
described by a :class:`~derain_core.base.MapSpec`; :func:`map_to_2d` decides how each kind is
shown and :func:`render_map` draws one map with colour bars and a caption.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import MapSpec

__all__ = ["CMAPS", "apply_colormap", "heatmap", "overlay", "to_uint8_image", "map_to_2d",
           "MapPanel", "map_panels", "is_spatial", "render_map", "channel_grid", "crop_window",
           "synced_crops", "mark_point", "crops_strip", "labelled_grid", "group_specs"]

# ----------------------------------------------------------------------------- colour maps
# 33 control points (LUT indices 0, 8, ..., 248, 255 of matplotlib's 256-entry maps) as
# RRGGBB hex; linear interpolation rebuilds the 256 entries within 2/255 of matplotlib.
_CONTROL_POINTS = {
    "inferno": "0000040403120b0724150b37210c4a2f0a5b3d09654a0c6b57106e64156e71196e"
               "7d1e6d8a226a972766a32c61b0315bbc3754c63d4dd04545da4e3ce35933eb6429"
               "f1711ff67e14f98c0afb9b06fcaa0ffbba1ff9c932f5d949f2e865f3f586fcffa4",
    "viridis": "440154470d6048186a482374472d7b4537814240863e49893b528b375b8d33638d"
               "2f6b8e2c728e297a8e26828e23898e21918c1f978b1f9f8821a68527ad8131b57b"
               "3dbc744cc26c5cc8636ece5881d34d95d840aadc32c0df25d5e21aeae51afde725",
    "magma": "0000040303120a0822130d341d114729115a36106b440f7651127c5d177f6a1c81"
             "762181832681902a819c2e7faa337db73779c23b75cf4070db476ae55064ee5b5e"
             "f4695cf9785dfb8761fd9668fea571feb47bfec287fed194fde0a1fceeb0fcfdbf",
    "coolwarm": "3b4cc0445acc4e68d85875e16282ea6c8ff1779af782a6fb8db0fe98b9ffa3c2fe"
                "aec9fcb9d0f9c3d5f4ccd9edd5dbe5dddcdce4d9d2ebd3c6f1cdbaf4c5adf7bca1"
                "f7b194f7a688f49a7bf18d6fec7f63e57058de614dd55042cb3e38c0282fb40426",
}
CMAPS = ("inferno", "viridis", "magma", "gray", "coolwarm")
NAN_COLOUR = (128, 128, 128)

_BG = 255  # page background (white)
_INK = (20, 20, 20)
_MUTED = (95, 95, 95)


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    """The 256 x 3 uint8 lookup table of a colour map."""
    if name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        return np.stack([ramp] * 3, axis=1)
    if name not in _CONTROL_POINTS:
        raise ValueError(f"unknown colour map {name!r}; known: {', '.join(CMAPS)}")
    hexes = _CONTROL_POINTS[name]
    pts = np.array([[int(hexes[i + 2 * c:i + 2 * c + 2], 16) for c in range(3)]
                    for i in range(0, len(hexes), 6)], dtype=np.float64)
    xs = np.round(np.linspace(0, 255, len(pts)))
    table = np.stack([np.interp(np.arange(256), xs, pts[:, c]) for c in range(3)], axis=1)
    table = np.rint(table).astype(np.uint8)
    table.flags.writeable = False
    return table


def _as_array(x: Any) -> np.ndarray:
    """numpy view of an array-like or a torch tensor (detached, on CPU, float32)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _value_range(a: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                 symmetric: bool = False) -> tuple[float, float]:
    """Display range of ``a`` over its finite values; missing bounds come from the data.

    ``symmetric`` centres the range on 0 (``-max|a| .. max|a|``) for signed maps.
    """
    finite = a[np.isfinite(a)]
    if symmetric and (vmin is None or vmax is None):
        m = float(np.abs(finite).max()) if finite.size else 0.0
        vmin = -m if vmin is None else vmin
        vmax = m if vmax is None else vmax
    lo = float(finite.min()) if vmin is None and finite.size else (0.0 if vmin is None else float(vmin))
    hi = float(finite.max()) if vmax is None and finite.size else (0.0 if vmax is None else float(vmax))
    if hi < lo:
        raise ValueError(f"vmax ({hi}) is below vmin ({lo})")
    return lo, hi


def apply_colormap(map2d: Any, cmap: str = "inferno", vmin: float | None = None,
                   vmax: float | None = None) -> np.ndarray:
    """Colour a 2-D map: ``vmin`` gets the first LUT colour, ``vmax`` the last.

    Missing bounds are the finite min/max of the map. A constant map (``vmin == vmax``) is
    drawn in the middle colour; NaN is grey, +inf/-inf the top/bottom colour.
    Returns uint8 ``H x W x 3``.
    """
    a = np.asarray(_as_array(map2d), dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {a.shape}")
    lut = _lut(cmap)
    lo, hi = _value_range(a, vmin, vmax)
    with np.errstate(invalid="ignore", over="ignore"):
        if hi > lo:
            t = (a - lo) / (hi - lo)
        else:
            t = np.where(a < lo, 0.0, np.where(a > hi, 1.0, 0.5))
    t = np.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0)
    idx = np.clip(np.rint(t * 255.0), 0, 255).astype(np.intp)
    out = lut[idx]
    nan = np.isnan(a)
    if nan.any():
        out[nan] = NAN_COLOUR
    return out


# ----------------------------------------------------------------------------- text helpers
@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (Pillow >= 10.1), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def _line_height(font: Any) -> int:
    return int(font.getbbox("Ag|")[3]) + 2


def _text_width(text: str, font: Any) -> int:
    return int(math.ceil(font.getlength(text))) if text else 0


def _fit_text(text: str, font: Any, max_width: int) -> str:
    """``text`` cut and ended with '...' so it fits in ``max_width`` pixels."""
    if _text_width(text, font) <= max_width:
        return text
    while text and _text_width(text + "...", font) > max_width:
        text = text[:-1]
    return text + "..." if text else ""


def _fmt(v: float) -> str:
    """Short tick label."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.3g}"


def _titled(img: np.ndarray, title: str | None, font_size: int = 13,
            colour: tuple[int, int, int] = _INK) -> np.ndarray:
    """``img`` with one line of text above it (left-aligned, cut to the image width)."""
    if not title:
        return img
    font = _font(font_size)
    h, w = img.shape[:2]
    width = max(w, min(_text_width(title, font) + 4, max(w, 320)))
    lh = _line_height(font) + 2
    canvas = Image.new("RGB", (width, lh + h), (_BG,) * 3)
    canvas.paste(Image.fromarray(img), (0, lh))
    ImageDraw.Draw(canvas).text((1, 1), _fit_text(title, font, width - 2), font=font, fill=colour)
    return np.asarray(canvas).copy()


def _text_line(text: str, font_size: int, colour: tuple[int, int, int], width: int) -> np.ndarray:
    """One line of text on the background, ``width`` pixels wide (text cut to fit)."""
    font = _font(font_size)
    canvas = Image.new("RGB", (max(width, 1), _line_height(font) + 2), (_BG,) * 3)
    ImageDraw.Draw(canvas).text((1, 1), _fit_text(text, font, width - 2), font=font, fill=colour)
    return np.asarray(canvas).copy()


def _draw_band_text(img: np.ndarray, text: str, where: str = "bottom", font_size: int = 13,
                    alpha: float = 0.6) -> np.ndarray:
    """Draw white ``text`` (may hold newlines) on a semi-transparent dark band over ``img``."""
    if not text:
        return img
    out = img.copy()
    h, w = out.shape[:2]
    lines = text.split("\n")
    size = font_size
    font = _font(size)
    while size > 8 and max(_text_width(s, font) for s in lines) > w - 6:
        size -= 1
        font = _font(size)
    lines = [_fit_text(s, font, w - 6) for s in lines]
    lh = _line_height(font)
    band = min(h, lh * len(lines) + 4)
    y0 = h - band if where == "bottom" else 0
    region = out[y0:y0 + band].astype(np.float32)
    out[y0:y0 + band] = np.rint(region * (1.0 - alpha)).astype(np.uint8)
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    for i, line in enumerate(lines):
        draw.text((3, y0 + 2 + i * lh), line, font=font, fill=(255, 255, 255))
    return np.asarray(pil).copy()


def _grid(tiles: Sequence[np.ndarray], cols: int, pad: int = 8) -> np.ndarray:
    """Tiles (uint8 RGB, any sizes) in a white grid, each top-left in a cell of the max size."""
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    ch = max(t.shape[0] for t in tiles)
    cw = max(t.shape[1] for t in tiles)
    out = np.full((rows * ch + (rows + 1) * pad, cols * cw + (cols + 1) * pad, 3), _BG, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (ch + pad), pad + c * (cw + pad)
        out[y:y + t.shape[0], x:x + t.shape[1]] = t
    return out


def _vstack(parts: Sequence[np.ndarray], pad: int = 4) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    height = sum(p.shape[0] for p in parts) + pad * (len(parts) - 1)
    out = np.full((height, width, 3), _BG, np.uint8)
    y = 0
    for p in parts:
        out[y:y + p.shape[0], :p.shape[1]] = p
        y += p.shape[0] + pad
    return out


# ----------------------------------------------------------------------------- images and resizing
def to_uint8_image(image: Any) -> np.ndarray:
    """Any supported image (see module docstring) as uint8 ``H x W x 3``.

    Floats are clipped to ``[0, 1]`` (NaN -> 0); torch tensors are read as channels-first.
    """
    chw = hasattr(image, "detach")
    a = _as_array(image)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and (chw or (a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4))):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"not an image: shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return (a * 255).astype(np.uint8)
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _resize_map(m: np.ndarray, hw: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Resize a float 2-D map to ``(h, w)``; maps with NaN/inf always use nearest."""
    h, w = hw
    if m.shape == (h, w):
        return m
    if resample == "nearest" or not np.isfinite(m).all():
        rows = np.minimum((np.arange(h) * m.shape[0]) // h, m.shape[0] - 1)
        cols = np.minimum((np.arange(w) * m.shape[1]) // w, m.shape[1] - 1)
        return m[rows][:, cols]
    if resample != "bilinear":
        raise ValueError(f"resample must be 'nearest' or 'bilinear', got {resample!r}")
    pil = Image.fromarray(np.ascontiguousarray(m, dtype=np.float32))  # mode "F"
    return np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)


def _resize_rgb(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB: nearest when enlarging (pixels stay sharp blocks), box when shrinking."""
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    if h >= img.shape[0] and w >= img.shape[1]:
        if h % img.shape[0] == 0 and w % img.shape[1] == 0:  # exact integer zoom
            return np.repeat(np.repeat(img, h // img.shape[0], 0), w // img.shape[1], 1)
        method = Image.Resampling.NEAREST
    else:
        method = Image.Resampling.BOX
    return np.asarray(Image.fromarray(img).resize((w, h), method)).copy()


def _target_hw(hw: tuple[int, int], target: int | tuple[int, int] | None) -> tuple[int, int]:
    """``target`` as ``(h, w)``: None keeps the size, an int is the longest side."""
    if target is None:
        return hw
    if isinstance(target, (int, np.integer)):
        f = int(target) / max(hw)
        return max(1, round(hw[0] * f)), max(1, round(hw[1] * f))
    return int(target[0]), int(target[1])


def _display_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Display size near ``size`` (longest side): whole-number nearest zoom up, box-shrink down."""
    f = size / max(hw)
    if f >= 2:
        k = int(f)
        return hw[0] * k, hw[1] * k
    if f < 1:
        return max(1, round(hw[0] * f)), max(1, round(hw[1] * f))
    return hw


# ----------------------------------------------------------------------------- heat maps
def _colorbar_panel(img: np.ndarray, lo: float, hi: float, cmap: str, font_size: int = 11,
                    bar_width: int = 12) -> np.ndarray:
    """``img`` with a vertical colour bar (top = ``hi``) and min/mid/max tick labels on its right."""
    font = _font(font_size)
    lh = _line_height(font)
    h, w = img.shape[:2]
    three = h >= 3 * lh + 6
    bar_h = max(h, 2 * lh + 2)
    ticks = [(0, hi), (bar_h - 1, lo)] + ([(bar_h // 2, (lo + hi) / 2)] if three else [])
    labels = [_fmt(v) for _, v in ticks]
    text_w = max(_text_width(s, font) for s in labels)
    gap = 6
    width = w + gap + bar_width + 3 + 2 + text_w + 2
    canvas = Image.new("RGB", (width, bar_h), (_BG,) * 3)
    canvas.paste(Image.fromarray(img), (0, 0))
    ramp = np.linspace(1.0, 0.0, bar_h)[:, None].repeat(bar_width, axis=1)
    bar = _lut(cmap)[np.clip(np.rint(ramp * 255), 0, 255).astype(np.intp)]
    bx = w + gap
    canvas.paste(Image.fromarray(bar), (bx, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((bx, 0, bx + bar_width - 1, bar_h - 1), outline=_MUTED)
    for (y, _), s in zip(ticks, labels):
        draw.line((bx + bar_width, y, bx + bar_width + 2, y), fill=_INK)
        ty = min(max(y - lh // 2, 0), bar_h - lh)
        draw.text((bx + bar_width + 5, ty), s, font=font, fill=_INK)
    return np.asarray(canvas).copy()


def heatmap(map2d: Any, title: str | None = None, cmap: str = "inferno",
            vmin: float | None = None, vmax: float | None = None, colorbar: bool = True,
            upscale_to: int | tuple[int, int] | None = None, symmetric: bool = False,
            font_size: int = 13) -> np.ndarray:
    """A coloured 2-D map with a vertical colour bar (min/mid/max ticks) and a title line.

    ``upscale_to``: longest side (int) or ``(h, w)``; enlarging is nearest-neighbour so map
    pixels stay visible. ``symmetric`` centres the range on 0 (signed maps, use "coolwarm").
    Returns uint8 ``H x W x 3``.
    """
    a = np.asarray(_as_array(map2d), dtype=np.float64)
    lo, hi = _value_range(a, vmin, vmax, symmetric)
    rgb = apply_colormap(a, cmap, lo, hi)
    rgb = _resize_rgb(rgb, _target_hw(rgb.shape[:2], upscale_to))
    if colorbar:
        rgb = _colorbar_panel(rgb, lo, hi, cmap)
    return _titled(rgb, title, font_size)


def overlay(image: Any, map2d: Any, alpha: float = 0.5, cmap: str = "inferno",
            vmin: float | None = None, vmax: float | None = None,
            resample: str = "bilinear", symmetric: bool = False) -> np.ndarray:
    """Blend a coloured map over ``image``: ``(1 - alpha) * image + alpha * colour``.

    The map is resized (``"bilinear"`` or ``"nearest"``) to the image size; its colour range
    is taken before resizing. Returns uint8 ``H x W x 3``; ``alpha = 0`` gives the image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_uint8_image(image)
    m = np.asarray(_as_array(map2d), dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    lo, hi = _value_range(m, vmin, vmax, symmetric)
    m = _resize_map(m, img.shape[:2], resample)
    colour = apply_colormap(m, cmap, lo, hi).astype(np.float32)
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- map kinds
@dataclass
class MapPanel:
    """One picture of a map: a 2-D array (coloured with ``cmap`` over ``vrange``) or, when
    ``rgb``, an ``H x W x 3`` float image in [0, 1]. An interactive chart that uses these
    fields draws what :func:`render_map` draws."""

    label: str
    data: np.ndarray
    cmap: str = "inferno"
    symmetric: bool = False  # range centred on 0 (signed maps)
    vrange: tuple[float, float] | None = None  # (min, max) of the colours; set by map_panels
    spatial: bool = True  # lies on the input's frame: can be laid over the photo
    strip: bool = False  # a vector drawn as a heat strip
    rgb: bool = False


def _chw(tensor: Any, batch: int = 0) -> np.ndarray:
    """``(C, h, w)`` float64 of one batch element."""
    a = _as_array(tensor)
    if a.ndim == 4:
        a = a[batch]
    elif a.ndim == 2:
        a = a[None]
    elif a.ndim == 1:
        a = a[:, None, None]
    if a.ndim != 3:
        raise ValueError(f"expected (B, C, h, w), (C, h, w) or (h, w), got shape {a.shape}")
    return a.astype(np.float64)


def _shared_range(a: np.ndarray, symmetric: bool = False) -> tuple[float, float]:
    return _value_range(a, symmetric=symmetric)


def is_spatial(tensor: Any, spec: MapSpec) -> bool:
    """Whether a recorded map is a picture on the input's frame that can be laid over the
    photo: a spatial spec (:attr:`MapSpec.spatial`) with more than one row and column."""
    h, w = _as_array(tensor).shape[-2:]
    return spec.spatial and h > 1 and w > 1


def _per_channel(a: np.ndarray, what: str, cmap: str, spatial: bool, max_panels: int,
                 single: str, symmetric: bool = False) -> list[MapPanel]:
    """One panel per channel with a shared range, or the channel mean beyond ``max_panels``."""
    c = a.shape[0]
    if c == 1:
        return [MapPanel(single, a[0], cmap, symmetric, spatial=spatial)]
    if c > max_panels:
        return [MapPanel(f"mean of {c} {what}s", a.mean(0), cmap, symmetric, spatial=spatial)]
    vr = _shared_range(a, symmetric)
    return [MapPanel(f"{what} {i}", a[i], cmap, symmetric, vr, spatial) for i in range(c)]


def map_panels(tensor: Any, spec: MapSpec, batch: int = 0, max_panels: int = 8) -> list[MapPanel]:
    """The panels :func:`render_map` draws for one map, each with its colour map and value
    range (the rules are documented in :func:`map_to_2d`)."""
    panels = _panels(tensor, spec, batch, max_panels)
    for p in panels:
        if p.rgb:
            p.cmap, p.vrange = "gray", (0.0, 1.0)
        elif p.vrange is None:
            p.vrange = _value_range(p.data, symmetric=p.symmetric)
    return panels


def _panels(tensor: Any, spec: MapSpec, batch: int = 0, max_panels: int = 8) -> list[MapPanel]:
    a = _chw(tensor, batch)
    c, h, w = a.shape
    spatial = is_spatial(a, spec)
    if spec.kind == "vector" or (h == 1 and w == 1):
        v = a.reshape(-1)
        n = v.size
        cols = n if n <= 64 else 32
        rows = math.ceil(n / cols)
        strip = np.full(rows * cols, np.nan)
        strip[:n] = v
        label = f"{n} values" + (f" (rows of {cols})" if rows > 1 else "")
        return [MapPanel(label, strip.reshape(rows, cols), "viridis", spatial=False, strip=True)]
    if spec.kind in ("image", "residual"):
        if c == 3:
            rgb = np.transpose(a, (1, 2, 0))
            panels = [MapPanel("image", np.clip(np.nan_to_num(rgb), 0.0, 1.0), rgb=True)]
            if spec.kind == "residual":
                mag = np.abs(np.nan_to_num(rgb))
                p = float(np.percentile(mag, 99.5)) if mag.size else 0.0
                gain = float(np.clip(1.0 / p, 1.0, 100.0)) if p > 0 else 1.0
                panels.append(MapPanel(f"|rain| x{gain:.1f}", np.clip(mag * gain, 0.0, 1.0),
                                     rgb=True))
            return panels
        if c == 1:
            return [MapPanel("image", a[0], "gray", vrange=(0.0, 1.0), spatial=spatial)]
        # an "image" with another channel count is shown like a feature map
    if spec.kind == "band":
        if c == 1:
            return [MapPanel("band", a[0], "coolwarm", True, spatial=spatial)]
        panels = [MapPanel(f"mean of {c} channels", a.mean(0), "coolwarm", True, spatial=spatial)]
        if c > 3:  # signed feature channels cancel in the mean: also show their energy
            panels.append(MapPanel(f"mean |x| over {c} ch", np.abs(a).mean(0), "viridis",
                                 spatial=spatial))
        return panels
    if spec.kind == "attention" or not spatial:
        what = "head" if spec.kind == "attention" and not spatial else "channel"
        return _per_channel(a, what, "inferno" if spatial else "magma", spatial, max_panels,
                            spec.kind if spatial else "matrix")
    # feature maps: how strongly each pixel activates, summarised over channels
    with np.errstate(over="ignore", invalid="ignore"):
        mean_abs = np.abs(a).mean(0)
        l2 = np.sqrt((a * a).sum(0))
    return [MapPanel(f"mean |x| over {c} ch", mean_abs, "viridis", spatial=spatial),
            MapPanel(f"L2 norm over {c} ch", l2, "viridis", spatial=spatial)]


def map_to_2d(tensor: Any, spec: MapSpec, batch: int = 0,
              max_panels: int = 8) -> list[tuple[str, np.ndarray]]:
    """What to draw for one recorded map: ``[(label, 2-D float map or H x W x 3 float image)]``.

    * image or residual, 3 channels: the RGB image clipped to [0, 1]; a residual (rain layer)
      also as ``|rain|`` scaled so its 99.5th percentile is white (gain 1-100, given in the
      label), since rain is faint;
    * image or residual, 1 channel: the grey map (range 0-1);
    * attention: one panel per channel up to ``max_panels`` (shared range), else their mean;
    * feature: channel mean of ``|x|`` and the L2 norm over channels;
    * band (signed wavelet/frequency band): the map, or its channel mean (plus the mean of
      ``|x|`` beyond 3 channels, where signed channels cancel); drawn symmetric;
    * vector ``(B, C, 1, 1)`` (or any 1 x 1 map): a heat strip, wrapped in rows of 32 beyond 64;
    * fixed-size matrices (``spec.size``, e.g. 4 x 16 x 16 head attention): one panel per head
      (per channel for non-attention kinds), up to ``max_panels``, else their mean.

    ``tensor`` is ``(B, C, h, w)`` (element ``batch`` is used), ``(C, h, w)`` or ``(h, w)``.
    """
    return [(p.label, p.data) for p in _panels(tensor, spec, batch, max_panels)]


def render_map(tensor: Any, spec: MapSpec, image: Any = None, overlay_alpha: float | None = None,
               cmap: str | None = None, batch: int = 0, size: int = 192, max_panels: int = 8,
               cols: int = 4) -> np.ndarray:
    """One map as a picture: caption (``spec.title``, key and shape) over its panels.

    Each coloured panel has a colour bar with min/mid/max ticks. Spatial maps are laid over
    ``image`` (the input, full size) when both ``image`` and ``overlay_alpha`` are given.
    ``cmap`` overrides the kind's default colour map; ``size`` is each panel's longest side
    (small maps are enlarged by a whole nearest-neighbour factor). Returns uint8 ``H x W x 3``.
    """
    a = _chw(tensor, batch)
    tiles = []
    base = to_uint8_image(image) if image is not None and overlay_alpha else None
    for p in map_panels(a, spec, 0, max_panels):
        if p.rgb:
            rgb = to_uint8_image(p.data)
            tiles.append(_titled(_resize_rgb(rgb, _display_hw(rgb.shape[:2], size)), p.label))
            continue
        cm = cmap or p.cmap
        lo, hi = p.vrange
        if p.strip:
            rows, n = p.data.shape
            cw = max(1, size // n)
            target = (rows * (max(cw, 16) if rows == 1 else cw), n * cw)
            tiles.append(heatmap(p.data, p.label, cm, lo, hi, upscale_to=target))
        elif base is not None and p.spatial:
            hh, ww = base.shape[:2]
            m, s = p.data, max(spec.scale, 1)
            if m.shape[0] * s >= hh and m.shape[1] * s >= ww:  # map covers the padded frame
                m = _resize_map(m, (m.shape[0] * s, m.shape[1] * s))[:hh, :ww]
            rgb = overlay(base, m, overlay_alpha, cm, lo, hi)
            rgb = _resize_rgb(rgb, _display_hw(rgb.shape[:2], size))
            tiles.append(_titled(_colorbar_panel(rgb, lo, hi, cm), p.label))
        else:
            tiles.append(heatmap(p.data, p.label, cm, lo, hi,
                                 upscale_to=_display_hw(p.data.shape, size)))
    grid = _grid(tiles, cols, pad=6)
    c, h, w = a.shape
    sub = _text_line(f"{spec.key}  |  {spec.kind}  |  {c}x{h}x{w}", 11, _MUTED, grid.shape[1])
    head = _titled(sub, spec.title, 15)
    return _vstack([np.pad(head, ((4, 0), (6, 0), (0, 0)), constant_values=_BG), grid], pad=0)


# ----------------------------------------------------------------------------- channel grid
def channel_grid(feature: Any, max_channels: int = 64, cols: int = 8, cmap: str = "viridis",
                 tile: int = 48, order: str = "index", batch: int = 0
                 ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Every channel of a feature map as a small tile, each with its own min-max range.

    ``feature``: ``(C, h, w)`` or ``(B, C, h, w)``. Shows ``max_channels`` channels, the first
    ones (``order="index"``) or the most varied (``order="std"``), each labelled with its index.
    Returns ``(uint8 grid, stats)`` where ``stats`` lists ``{index, min, max, mean, std}`` for
    every channel (not only the shown ones), in channel order.
    """
    a = _chw(feature, batch)
    stats = []
    for i, ch in enumerate(a):
        f = ch[np.isfinite(ch)]
        if f.size:
            stats.append({"index": i, "min": float(f.min()), "max": float(f.max()),
                          "mean": float(f.mean()), "std": float(f.std())})
        else:
            stats.append({"index": i, "min": math.nan, "max": math.nan,
                          "mean": math.nan, "std": math.nan})
    if order == "std":
        shown = sorted(range(len(a)), key=lambda i: -np.nan_to_num(stats[i]["std"], nan=-1.0))
    elif order == "index":
        shown = list(range(len(a)))
    else:
        raise ValueError(f"order must be 'index' or 'std', got {order!r}")
    shown = shown[:max_channels]
    hw = _display_hw(a.shape[1:], tile)
    tiles = []
    for i in shown:
        t = _resize_rgb(apply_colormap(a[i], cmap), hw)
        tiles.append(_draw_band_text(t, str(i), where="top", font_size=10, alpha=0.55))
    return _grid(tiles, cols, pad=2), stats


# ----------------------------------------------------------------------------- synced crops
def crop_window(hw: tuple[int, int], center_xy: tuple[float, float],
                crop_size: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, width, height)`` of the crop around ``center_xy``, moved to stay inside.

    ``crop_size`` is an int or ``(width, height)``; a crop larger than the image is cut to it.
    """
    cw, ch = (crop_size, crop_size) if isinstance(crop_size, (int, np.integer)) else crop_size
    if cw < 1 or ch < 1:
        raise ValueError(f"crop size must be positive, got {crop_size}")
    h, w = hw
    cw, ch = min(int(cw), w), min(int(ch), h)
    cx, cy = int(round(center_xy[0])), int(round(center_xy[1]))
    x0 = min(max(cx - cw // 2, 0), w - cw)
    y0 = min(max(cy - ch // 2, 0), h - ch)
    return x0, y0, cw, ch


def synced_crops(images: Sequence[Any], center_xy: tuple[float, float],
                 crop_size: int | tuple[int, int], zoom: int = 4,
                 labels: Sequence[str] | None = None) -> list[np.ndarray]:
    """The same window around one point cut from every image and enlarged by ``zoom``.

    Images must all have the same height and width (``ValueError`` otherwise). Enlarging is
    nearest-neighbour by a whole factor, so each crop is ``crop * zoom`` pixels and every source
    pixel becomes an exact ``zoom x zoom`` block. ``labels`` are drawn on the crops' top edge.
    Returns uint8 ``H x W x 3`` crops.
    """
    if not images:
        raise ValueError("no images")
    if int(zoom) != zoom or zoom < 1:
        raise ValueError(f"zoom must be a positive integer, got {zoom}")
    zoom = int(zoom)
    imgs = [to_uint8_image(im) for im in images]
    sizes = {im.shape[:2] for im in imgs}
    if len(sizes) != 1:
        raise ValueError(f"images differ in size: {sorted(sizes)}")
    if labels is not None and len(labels) != len(imgs):
        raise ValueError("need one label per image")
    x0, y0, cw, ch = crop_window(imgs[0].shape[:2], center_xy, crop_size)
    crops = []
    for i, im in enumerate(imgs):
        c = im[y0:y0 + ch, x0:x0 + cw]
        c = np.repeat(np.repeat(c, zoom, axis=0), zoom, axis=1)
        if labels is not None:
            c = _draw_band_text(c, labels[i], where="top", font_size=12)
        crops.append(np.ascontiguousarray(c))
    return crops


def mark_point(image: Any, center_xy: tuple[float, float], crop_size: int | tuple[int, int],
               colour: tuple[int, int, int] = (0, 255, 255), width: int = 2) -> np.ndarray:
    """``image`` with the crop window of :func:`synced_crops` outlined and the point crossed.

    The outline is drawn in ``colour`` over a black border, visible on any image.
    Returns uint8 ``H x W x 3``.
    """
    img = to_uint8_image(image)
    x0, y0, cw, ch = crop_window(img.shape[:2], center_xy, crop_size)
    pil = Image.fromarray(img.copy())
    draw = ImageDraw.Draw(pil)
    box = (x0, y0, x0 + cw - 1, y0 + ch - 1)
    draw.rectangle(box, outline=(0, 0, 0), width=width + 2)
    draw.rectangle(box, outline=colour, width=width)
    cx, cy = int(round(center_xy[0])), int(round(center_xy[1]))
    arm = max(2, min(cw, ch) // 8)
    draw.line((cx - arm, cy, cx + arm, cy), fill=colour, width=1)
    draw.line((cx, cy - arm, cx, cy + arm), fill=colour, width=1)
    return np.asarray(pil).copy()


def crops_strip(images: Sequence[Any], center_xy: tuple[float, float],
                crop_size: int | tuple[int, int], zoom: int = 4,
                labels: Sequence[str] | None = None, texts: Sequence[str] | None = None,
                pad: int = 6) -> np.ndarray:
    """:func:`synced_crops` side by side in one row, labels above and ``texts`` on each crop."""
    crops = synced_crops(images, center_xy, crop_size, zoom)
    labels = list(labels) if labels is not None else [""] * len(crops)
    return labelled_grid(crops, labels, texts, cols=len(crops), pad=pad)


# ----------------------------------------------------------------------------- grids
def labelled_grid(images: Sequence[Any], labels: Sequence[str],
                  texts: Sequence[str | None] | None = None, cols: int | None = None,
                  pad: int = 6, font_size: int = 14) -> np.ndarray:
    """Tiles in a grid (one row by default), a label above each, ``texts`` drawn on each tile.

    Texts (e.g. ``"31.2 dB / 0.951 | 0.84 s"``, newlines allowed) sit on a semi-transparent
    dark band at the tile's bottom so they are readable over any image. Tiles of different
    sizes are placed top-left in equal cells. Returns uint8 ``H x W x 3``.
    """
    if not images:
        raise ValueError("no images")
    if len(labels) != len(images) or (texts is not None and len(texts) != len(images)):
        raise ValueError("need one label (and one text, if given) per image")
    tiles = [to_uint8_image(im) for im in images]
    if texts is not None:
        tiles = [_draw_band_text(t, s or "", "bottom", max(9, font_size - 1))
                 for t, s in zip(tiles, texts)]
    cols = len(tiles) if cols is None else max(1, min(int(cols), len(tiles)))
    cw = max(t.shape[1] for t in tiles)
    font = _font(font_size)
    labelled = []
    for t, label in zip(tiles, labels):
        cell = np.full((t.shape[0], cw, 3), _BG, np.uint8)
        cell[:, :t.shape[1]] = t
        label = _fit_text(str(label), font, cw - 2)
        labelled.append(_titled(cell, label or " ", font_size))
    return _grid(labelled, cols, pad)


def group_specs(specs: Sequence[MapSpec], default: str = "") -> dict[str, list[MapSpec]]:
    """Specs by ``group`` path, groups and specs in first-seen order; ``""`` -> ``default``."""
    groups: dict[str, list[MapSpec]] = {}
    for s in specs:
        groups.setdefault(s.group.strip("/ ") or default, []).append(s)
    return groups
