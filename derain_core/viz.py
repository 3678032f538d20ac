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
described by a :class:`~derain_core.base.MapSpec`; :func:`panels_of` decides how each kind is
shown and on which colour scale (the "colour scales" section holds every rule), and
:func:`render_map` draws one map with colour bars and its full caption.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import MapSpec

__all__ = ["CMAPS", "CATEGORICAL", "OTHER_COLOUR", "apply_colormap", "heatmap", "overlay",
           "to_uint8_image", "map_to_2d", "MapPanel", "panels_of", "panel_colours", "is_spatial",
           "can_overlay", "robust_range", "interior", "render_map", "channel_grid", "crop_window",
           "synced_crops", "mark_point", "crops_strip", "labelled_grid", "group_specs", "SHOW_CHOICES",
           "AMPLIFIED_GAIN", "removed_layer", "removed_note", "changed_view", "show_note", "view_label",
           "SIBLING_AXES", "sibling_axes", "siblings", "sibling_view", "sibling_panels", "render_siblings"]

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


def _fmt(v: float, digits: int = 3) -> str:
    """Short number label with ``digits`` significant digits."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def _labels(values: Sequence[float], digits: int = 3) -> list[str]:
    """Labels for ``values`` with as few significant digits (at least ``digits``) as keep
    distinct values distinct: 0.9991 and 0.9999 do not both read "1"."""
    for d in range(digits, 10):
        out = [_fmt(v, d) for v in values]
        if len(set(out)) == len(set(values)):
            break
    return out


def _range_text(lo: float, hi: float) -> str:
    """``"lo to hi"`` with enough digits to tell the two apart."""
    a, b = _labels([lo, hi])
    return a if lo == hi else f"{a} to {b}"


def _wrap(text: str, font: Any, max_width: int) -> list[str]:
    """``text`` broken into lines no wider than ``max_width`` (at spaces, and inside a word
    only when the word alone is too wide); newlines are kept and nothing is cut."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            candidate = f"{line} {word}" if line else word
            if _text_width(candidate, font) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while len(word) > 1 and _text_width(word, font) > max_width:
                k = len(word) - 1
                while k > 1 and _text_width(word[:k], font) > max_width:
                    k -= 1
                lines.append(word[:k])
                word = word[k:]
            line = word
        lines.append(line)
    return lines


def _text_block(text: str, font_size: int, colour: tuple[int, int, int], width: int) -> np.ndarray:
    """``text`` wrapped to ``width`` pixels on the background, as many lines as it needs."""
    font = _font(font_size)
    lines = _wrap(text, font, max(width - 2, 1))
    lh = _line_height(font)
    canvas = Image.new("RGB", (max(width, 1), lh * len(lines) + 2), (_BG,) * 3)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((1, 1 + i * lh), line, font=font, fill=colour)
    return np.asarray(canvas).copy()


def _titled(img: np.ndarray, title: str | None, font_size: int = 13,
            colour: tuple[int, int, int] = _INK) -> np.ndarray:
    """``img`` with ``title`` above it (left-aligned, wrapped to the image width, never cut)."""
    if not title:
        return img
    w = img.shape[1]
    width = max(w, min(_text_width(title, _font(font_size)) + 4, max(w, 320)))
    return _vstack([_text_block(title, font_size, colour, width), img], pad=2)


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
    if a.dtype == np.uint16:
        a = a / 65535.0
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


def _resize_rgb(img: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize uint8 RGB: nearest when enlarging (pixels stay sharp blocks), box when shrinking;
    ``nearest`` always (categorical colours must not blend)."""
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    if nearest or (h >= img.shape[0] and w >= img.shape[1]):
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


def _panel_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Display size of a map panel: ``size`` px wide (at most ``1.5 * size`` tall). A whole
    factor (1 included: no resampling) is used when it comes within 10 % of that, so map
    pixels stay equal squares."""
    h, w = hw
    f = min(size / w, 1.5 * size / h)
    k = max(1, round(f))
    if 0.9 * f <= k <= f / 0.9:
        return h * k, w * k
    return max(1, round(h * f)), max(1, round(w * f))


def _font_size(size: int) -> int:
    """Body text size for pictures whose panels are ``size`` px: readable when the picture is
    shown at its own size or somewhat smaller."""
    return max(13, round(size / 30))


# ----------------------------------------------------------------------------- heat maps
def _colorbar_panel(img: np.ndarray, lo: float, hi: float, cmap: str, font_size: int = 11,
                    bar_width: int = 12) -> np.ndarray:
    """``img`` with a vertical colour bar (top = ``hi``) and min/mid/max tick labels on its right
    (five ticks on a tall bar); the labels have enough digits to be distinct."""
    font = _font(font_size)
    lh = _line_height(font)
    h, w = img.shape[:2]
    bar_h = max(h, 2 * lh + 2)
    n = 5 if bar_h >= 10 * lh else 3 if h >= 3 * lh + 6 else 2
    ticks = [(round((bar_h - 1) * (1 - t)), lo + t * (hi - lo)) for t in np.linspace(0, 1, n)]
    labels = _labels([v for _, v in ticks])
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


# ----------------------------------------------------------------------------- colour scales
# Every rule that sets the colours of a map panel lives in this section:
#   "unit"         fixed 0-1 (attention and channel weights whose values lie in [0, 1], grey
#                  images): near-constant attention looks near-constant; the actual value
#                  range is printed in the panel's note. With ``stretch`` (the apps' "stretch
#                  attention colours"), spatial attention maps get "robust" instead, so that
#                  small differences (an attention map at 0.50 on streaks, 0.53 elsewhere) show;
#   "robust"       1st-99th percentile of the map's interior (spatial maps of 8 px or more a
#                  side: features, residuals, bands; symmetric maps use +/- the 99th percentile
#                  of |x|): a bright border row or a few hot pixels do not set the range;
#   "minmax"       finite min-max (small or non-spatial maps, vectors outside [0, 1]);
#   "categorical"  one qualitative colour per index value (index maps), no colour bar;
#   "rgb"          the picture itself (images and residuals with 3 channels).
ROBUST_PERCENTILES = (1.0, 99.0)
ROBUST_MIN_SIDE = 8  # smaller maps have no meaningful border/interior: min-max

# Qualitative palette (matplotlib's tab20 without its two greys), for index maps; values
# beyond it share OTHER_COLOUR.
CATEGORICAL = tuple(tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) for h in (
    "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 bcbd22 17becf "
    "aec7e8 ffbb78 98df8a ff9896 c5b0d5 c49c94 f7b6d2 dbdb8d 9edae5").split())
OTHER_COLOUR = (199, 199, 199)


def interior(a: np.ndarray) -> np.ndarray:
    """``a`` (``..., h, w``) without a frame of ``max(1, min(h, w) // 32)`` pixels on each side,
    where padding artefacts live; maps under ``ROBUST_MIN_SIDE`` px a side are kept whole."""
    h, w = a.shape[-2:]
    if min(h, w) < ROBUST_MIN_SIDE:
        return a
    m = max(1, min(h, w) // 32)
    return a[..., m:h - m, m:w - m]


def robust_range(a: Any, symmetric: bool = False,
                 percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> tuple[float, float]:
    """Colour range of a spatial map ``(..., h, w)``: the percentiles of its interior's finite
    values (``symmetric``: +/- the upper percentile of ``|x|``).

    Where the percentiles coincide (a sparse map), the interior's min-max; maps under
    ``ROBUST_MIN_SIDE`` px a side, or without finite interior values, use their min-max.
    """
    a = np.asarray(_as_array(a), dtype=np.float64)
    inner = interior(a)
    f = inner[np.isfinite(inner)]
    if min(a.shape[-2:]) < ROBUST_MIN_SIDE or not f.size:
        return _value_range(a, symmetric=symmetric)
    lo_p, hi_p = percentiles
    if symmetric:
        m = float(np.percentile(np.abs(f), hi_p)) or float(np.abs(f).max())
        return -m, m
    lo, hi = (float(v) for v in np.percentile(f, [lo_p, hi_p]))
    if hi <= lo:
        lo, hi = float(f.min()), float(f.max())
    return lo, hi


def _in_unit_interval(a: np.ndarray, tol: float = 1e-6) -> bool:
    f = a[np.isfinite(a)]
    return bool(f.size) and f.min() >= -tol and f.max() <= 1.0 + tol


def _scale_rule(kind: str, data: np.ndarray, spatial: bool, stretch: bool = False) -> str:
    """Which colour scale (see the section comment) a non-RGB panel of ``kind`` gets."""
    if kind == "index":
        return "categorical"
    if stretch and kind == "attention" and spatial and min(data.shape[-2:]) >= ROBUST_MIN_SIDE:
        return "robust"
    if kind == "image" or (kind in ("attention", "vector") and _in_unit_interval(data)):
        return "unit"
    if spatial and min(data.shape[-2:]) >= ROBUST_MIN_SIDE:
        return "robust"
    return "minmax"


def _colour_range(data: np.ndarray, scale: str, symmetric: bool) -> tuple[float, float]:
    """The ``(vmin, vmax)`` of the colours for ``scale`` (data may stack several panels)."""
    if scale == "unit":
        return 0.0, 1.0
    if scale == "robust":
        return robust_range(data, symmetric)
    return _value_range(data, symmetric=symmetric)


def _categories(data: np.ndarray) -> tuple[int, ...]:
    """The index values that get a palette colour: all of them when they fit, else the most
    frequent ones (the rest are drawn in ``OTHER_COLOUR``); in increasing order."""
    f = data[np.isfinite(data)]
    values, counts = np.unique(np.rint(f).astype(np.int64), return_counts=True)
    if len(values) > len(CATEGORICAL):
        keep = np.argsort(-counts, kind="stable")[:len(CATEGORICAL) - 1]
        values = np.sort(values[keep])
    return tuple(int(v) for v in values)


def _scale_note(p: "MapPanel") -> str:
    """One line telling how the panel's colours relate to its values."""
    if p.scale == "rgb":
        return ""
    f = p.data[np.isfinite(p.data)]
    values = f"values {_range_text(float(f.min()), float(f.max()))}" if f.size else "no finite values"
    lo, hi = p.vrange
    if p.scale == "categorical":
        n = len(np.unique(np.rint(f))) if f.size else 0
        shown = len(p.categories or ())
        more = f"; the {len(CATEGORICAL) - 1} most frequent coloured, the rest grey" if n > shown else ""
        return f"categorical colours, {n} distinct values{more}"
    if p.scale == "unit":
        return f"colours: fixed 0 to 1; {values}"
    if p.scale == "robust":
        how = "99th percentile of |x|" if p.symmetric else "1st to 99th percentile"
        return f"colours: {_range_text(lo, hi)} ({how} inside the border; beyond is clipped); {values}"
    return f"colours: min to max; {values}"


# ----------------------------------------------------------------------------- map panels
@dataclass
class MapPanel:
    """One picture of a map: a 2-D array coloured by its ``scale`` (``cmap`` over ``vrange``,
    or categorical colours) or, when ``rgb``, an ``H x W x 3`` float image in [0, 1].
    An interactive chart that uses these fields draws what :func:`render_map` draws; see
    :func:`panel_colours` for the exact pixels."""

    label: str
    data: np.ndarray
    cmap: str = "inferno"
    symmetric: bool = False  # range centred on 0 (signed maps)
    vrange: tuple[float, float] | None = None  # (min, max) of the colours; set by panels_of
    spatial: bool = True  # lies on the input's frame: can be laid over the photo
    strip: bool = False  # a vector drawn as a heat strip
    rgb: bool = False
    scale: str = "minmax"  # "unit", "robust", "minmax", "categorical" or "rgb" (see above)
    note: str = ""  # how colours relate to values (set by panels_of)
    categories: tuple[int, ...] | None = None  # index values with a palette colour, in order

    @property
    def categorical(self) -> bool:
        return self.scale == "categorical"

    def legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        """``[(text, colour)]`` of a categorical panel: each coloured value with its share of
        the panel's pixels (``"other"`` for the rest)."""
        f = np.rint(self.data[np.isfinite(self.data)])
        cats = self.categories or ()
        out = [(f"{v}: {_share(f == v)}", CATEGORICAL[i]) for i, v in enumerate(cats)
               if (f == v).any()]
        rest = ~np.isin(f, cats)
        if rest.any():
            out.append((f"other: {_share(rest)}", OTHER_COLOUR))
        return out


def _share(mask: np.ndarray) -> str:
    """The share of True in ``mask`` as a percentage ("<1 %" rather than "0 %")."""
    pct = 100.0 * float(mask.mean())
    return "<1 %" if 0 < pct < 0.5 else f"{pct:.0f} %"


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


def is_spatial(tensor: Any, spec: MapSpec) -> bool:
    """Whether a recorded map is a picture on the input's frame: a spatial spec
    (:attr:`MapSpec.spatial`) with more than one row and column."""
    h, w = _as_array(tensor).shape[-2:]
    return spec.spatial and h > 1 and w > 1


def can_overlay(tensor: Any, spec: MapSpec) -> bool:
    """Whether the apps should offer "overlay on the photo" for this map: a false-colour map
    (:attr:`MapSpec.overlayable`; not an image or a residual) on the input's frame."""
    return spec.overlayable and is_spatial(tensor, spec)


def _per_channel(a: np.ndarray, spec: MapSpec, cmap: str, spatial: bool, max_panels: int,
                 single: str, what: str = "channel", stretch: bool = False) -> list[MapPanel]:
    """One panel per channel, named by ``spec.channel_names`` (else ``"<what> i"``), sharing one
    colour scale; beyond ``max_panels`` channels the channel mean (the first ones for indices)."""
    c = a.shape[0]
    scale = _scale_rule(spec.kind, a, spatial, stretch)
    symmetric = scale != "categorical" and bool(np.nanmin(a) < 0) and spec.kind in ("feature", "band")
    if symmetric:
        cmap = "coolwarm"
    if c == 1:
        return [MapPanel(spec.channel_names[0] if spec.channel_names else single, a[0], cmap,
                         symmetric, spatial=spatial, scale=scale)]
    if c > max_panels and scale != "categorical":
        return [MapPanel(f"mean of {c} {what}s", a.mean(0), cmap, symmetric, spatial=spatial,
                         scale=_scale_rule(spec.kind, a.mean(0), spatial, stretch))]
    a = a[:max_panels]
    names = spec.channel_names or [f"{what} {i}" for i in range(c)]
    vr = None if scale == "categorical" else _colour_range(a, scale, symmetric)
    cats = _categories(a) if scale == "categorical" else None
    return [MapPanel(names[i], a[i], cmap, symmetric, vr, spatial, scale=scale, categories=cats)
            for i in range(len(a))]


def panels_of(tensor: Any, spec: MapSpec, batch: int = 0, max_panels: int = 8,
              stretch: bool = False) -> list[MapPanel]:
    """The panels :func:`render_map` draws for one map, each with its colour map, value range
    and note (the rules are documented in :func:`map_to_2d` and the colour-scale section;
    ``stretch``: spatial attention between its percentiles instead of on the fixed 0-1 scale)."""
    panels = _panels(tensor, spec, batch, max_panels, stretch)
    for p in panels:
        if p.rgb:
            p.cmap, p.vrange, p.scale = "gray", (0.0, 1.0), "rgb"
        elif p.categorical:
            p.vrange = p.vrange or _value_range(p.data)
            p.categories = p.categories if p.categories is not None else _categories(p.data)
        elif p.vrange is None:
            p.vrange = _colour_range(p.data, p.scale, p.symmetric)
        p.note = p.note or _scale_note(p)
    return panels


def _residual_panels(a: np.ndarray, spatial: bool) -> list[MapPanel]:
    """A 3-channel rain layer: the picture and ``|rain|`` amplified so that the 99th percentile
    of the interior is white (gain 1-100, in the label), since rain is faint."""
    rgb = np.transpose(a, (1, 2, 0))
    mag = np.abs(np.nan_to_num(rgb))
    inner = interior(np.moveaxis(mag, -1, 0))
    p = float(np.percentile(inner, ROBUST_PERCENTILES[1])) if inner.size else 0.0
    gain = float(np.clip(1.0 / p, 1.0, 100.0)) if p > 0 else 1.0
    how = ("the 99th percentile inside the border reaches full brightness" if p > 0 and gain == 1.0 / p
           else "gain held to 1-100")
    f = rgb[np.isfinite(rgb)]
    values = f"values {_range_text(float(f.min()), float(f.max()))}, " if f.size else ""
    return [MapPanel("image", np.clip(np.nan_to_num(rgb), 0.0, 1.0), rgb=True, spatial=spatial,
                     note=f"{values}shown clipped to 0 to 1"),
            MapPanel(f"|rain| x{gain:.1f}", np.clip(mag * gain, 0.0, 1.0), rgb=True,
                     spatial=spatial, note=f"|rain| times {gain:.1f}: {how}")]


def _panels(tensor: Any, spec: MapSpec, batch: int = 0, max_panels: int = 8,
            stretch: bool = False) -> list[MapPanel]:
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
        return [MapPanel(label, strip.reshape(rows, cols), "viridis", spatial=False, strip=True,
                         scale=_scale_rule("vector", v, False))]
    if spec.kind == "image" and c == 3:
        rgb = np.clip(np.nan_to_num(np.transpose(a, (1, 2, 0))), 0.0, 1.0)
        return [MapPanel("image", rgb, rgb=True, spatial=spatial)]
    if spec.kind == "residual" and c == 3:
        return _residual_panels(a, spatial)
    if spec.kind == "image" and c == 1:
        return [MapPanel("image", a[0], "gray", spatial=spatial, scale="unit")]
    if spec.kind == "residual" and c == 1:
        return [MapPanel("rain", a[0], "coolwarm", True, spatial=spatial,
                         scale=_scale_rule("residual", a, spatial))]
    if spec.kind == "index":
        return _per_channel(a, spec, "viridis", spatial, max_panels, "index")
    # an "image" or "residual" with another channel count is shown like a feature map
    if spec.kind == "band":
        scale = _scale_rule("band", a, spatial)
        if c == 1:
            return [MapPanel("band", a[0], "coolwarm", True, spatial=spatial, scale=scale)]
        panels = [MapPanel(f"mean of {c} channels", a.mean(0), "coolwarm", True, spatial=spatial,
                           scale=scale)]
        if c > 3:  # signed feature channels cancel in the mean: also show their energy
            panels.append(MapPanel(f"mean |x| over {c} ch", np.abs(a).mean(0), "viridis",
                                   spatial=spatial, scale=scale))
        return panels
    if spec.kind == "attention" or not spatial or spec.channel_names:
        what = "head" if spec.kind == "attention" and not spatial else "channel"
        return _per_channel(a, spec, "inferno" if spatial else "magma", spatial, max_panels,
                            spec.kind if spatial else "matrix", what, stretch)
    # feature maps: how strongly each pixel activates, summarised over channels
    if c == 1:  # the map itself (mean |x| and the L2 norm would both be |x|)
        return _per_channel(a, spec, "viridis", spatial, max_panels, "feature")
    scale = _scale_rule("feature", a, spatial)
    with np.errstate(over="ignore", invalid="ignore"):
        mean_abs = np.abs(a).mean(0)
        l2 = np.sqrt((a * a).sum(0))
    return [MapPanel(f"mean |x| over {c} ch", mean_abs, "viridis", spatial=spatial, scale=scale),
            MapPanel(f"L2 norm over {c} ch", l2, "viridis", spatial=spatial, scale=scale)]


def map_to_2d(tensor: Any, spec: MapSpec, batch: int = 0,
              max_panels: int = 8) -> list[tuple[str, np.ndarray]]:
    """What to draw for one recorded map: ``[(label, 2-D float map or H x W x 3 float image)]``.

    * image, 3 channels: the RGB image clipped to [0, 1]; 1 channel: grey on a fixed 0-1 scale;
    * residual, 3 channels: the rain layer as an image, and ``|rain|`` amplified so that the
      99th percentile of its interior is white (gain 1-100, given in the label), since rain
      is faint; 1 channel: a signed map (diverging colours);
    * attention: one panel per channel up to ``max_panels`` (shared scale), else their mean;
    * index: one panel per channel in categorical colours (no mean of labels);
    * feature: the map itself for one channel, else the channel mean of ``|x|`` and the L2 norm
      over channels; one panel per channel when the spec names its channels;
    * band (signed wavelet/frequency band): the map, or its channel mean (plus the mean of
      ``|x|`` beyond 3 channels, where signed channels cancel); drawn symmetric;
    * vector ``(B, C, 1, 1)`` (or any 1 x 1 map): a heat strip, wrapped in rows of 32 beyond 64;
    * fixed-size matrices (``spec.size``, e.g. 4 x 16 x 16 head attention): one panel per head
      (per channel for non-attention kinds), up to ``max_panels``, else their mean.

    Panels are named by ``spec.channel_names`` where given (e.g. wavelet bands LL/LH/HL/HH);
    no two panels of a one-channel map show the same picture. ``tensor`` is ``(B, C, h, w)``
    (element ``batch`` is used), ``(C, h, w)`` or ``(h, w)``.
    """
    return [(p.label, p.data) for p in _panels(tensor, spec, batch, max_panels)]


# ----------------------------------------------------------------------------- drawing maps
def _categorical_colours(data: np.ndarray, categories: Sequence[int]) -> np.ndarray:
    """uint8 ``H x W x 3``: value ``categories[i]`` in ``CATEGORICAL[i]``, other values in
    ``OTHER_COLOUR``, NaN in ``NAN_COLOUR``."""
    out = np.empty(data.shape + (3,), np.uint8)
    out[:] = OTHER_COLOUR
    idx = np.rint(np.nan_to_num(data, nan=-1e18, posinf=-1e18, neginf=-1e18))
    for i, v in enumerate(categories):
        out[idx == v] = CATEGORICAL[i]
    out[np.isnan(data)] = NAN_COLOUR
    return out


def panel_colours(panel: MapPanel, cmap: str | None = None) -> np.ndarray:
    """The panel's pixels exactly as :func:`render_map` colours them (at the map's size).

    ``cmap`` overrides the colour map of continuous panels; RGB and categorical panels keep
    their own colours. Returns uint8 ``H x W x 3``.
    """
    if panel.rgb:
        return to_uint8_image(panel.data)
    if panel.categorical:
        cats = panel.categories if panel.categories is not None else _categories(panel.data)
        return _categorical_colours(panel.data, cats)
    lo, hi = panel.vrange if panel.vrange is not None else _value_range(panel.data)
    return apply_colormap(panel.data, cmap or panel.cmap, lo, hi)


def _legend_panel(img: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int]]],
                  font_size: int) -> np.ndarray:
    """``img`` with a legend of colour swatches and their texts on its right."""
    font = _font(font_size)
    lh = _line_height(font) + 2
    h, w = img.shape[:2]
    sw = lh - 6
    text_w = max((_text_width(t, font) for t, _ in entries), default=0)
    canvas = Image.new("RGB", (w + 8 + sw + 6 + text_w + 2, max(h, lh * len(entries))), (_BG,) * 3)
    canvas.paste(Image.fromarray(img), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (text, colour) in enumerate(entries):
        y = i * lh
        draw.rectangle((w + 8, y + 3, w + 8 + sw, y + 3 + sw), fill=colour)
        draw.text((w + 8 + sw + 6, y + 1), text, font=font, fill=_INK)
    return np.asarray(canvas).copy()


def _overlaid(base: np.ndarray, p: MapPanel, map_scale: int, alpha: float, cmap: str) -> np.ndarray:
    """Panel ``p`` blended over ``base`` (the input at the maps' resolution)."""
    hh, ww = base.shape[:2]
    m, s = p.data, max(map_scale, 1)
    nearest = "nearest" if p.categorical else "bilinear"
    if m.shape[0] * s >= hh and m.shape[1] * s >= ww:  # map covers the padded frame
        m = _resize_map(m, (m.shape[0] * s, m.shape[1] * s), nearest)[:hh, :ww]
    if not p.categorical:
        return overlay(base, m, alpha, cmap, *p.vrange)
    colours = panel_colours(MapPanel(p.label, _resize_map(m, (hh, ww), "nearest"), scale=p.scale,
                                     categories=p.categories))
    out = (1.0 - alpha) * base.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _panel_tile(p: MapPanel, size: int, font_size: int, cmap: str | None = None,
                base: np.ndarray | None = None, alpha: float | None = None,
                map_scale: int = 1) -> np.ndarray:
    """One panel as drawn by :func:`render_map`: label, picture, colour bar or legend, note."""
    cm = p.cmap if p.rgb or p.categorical else (cmap or p.cmap)
    if base is not None and alpha and p.spatial and not p.rgb:
        pic = _overlaid(base, p, map_scale, alpha, cm)
    else:
        pic = panel_colours(p, cm)
    if p.strip:
        rows, n = p.data.shape
        cw = max(1, size // n)
        hw = (rows * (max(cw, size // 12) if rows == 1 else cw), n * cw)
    else:
        hw = _panel_hw(pic.shape[:2], size)
    pic = _resize_rgb(pic, hw, nearest=p.categorical)
    if p.categorical:
        pic = _legend_panel(pic, p.legend(), font_size - 1)
    elif not p.rgb:
        pic = _colorbar_panel(pic, *p.vrange, cm, font_size - 1, bar_width=max(12, size // 28))
    width = max(pic.shape[1], size)
    parts = [_text_block(p.label, font_size + 1, _INK, width), pic]
    if p.note:
        parts.append(_text_block(p.note, font_size - 1, _MUTED, width))
    return _vstack(parts, pad=4)


def render_map(tensor: Any, spec: MapSpec, image: Any = None, overlay_alpha: float | None = None,
               cmap: str | None = None, batch: int = 0, size: int = 480, max_panels: int = 8,
               cols: int = 2, stretch: bool = False) -> np.ndarray:
    """One map as a picture: its title, key and shape and its meaning (wrapped, never cut) over
    its panels, ``cols`` panels per row.

    Each panel is ``size`` px wide (small maps are enlarged by nearest neighbour), with its label
    above, a colour bar with distinct ticks (or a legend for index maps) on the right, and a note
    below telling how colours relate to values (see the colour-scale section). Text is sized for
    ``size``. Maps that :func:`can_overlay` are laid over ``image`` (the input at the maps'
    resolution) when both ``image`` and ``overlay_alpha`` are given; others ignore them.
    ``cmap`` overrides the default colour map of continuous panels; ``stretch`` colours spatial
    attention between its percentiles (see the colour-scale section). Returns uint8 ``H x W x 3``.
    """
    a = _chw(tensor, batch)
    fs = _font_size(size)
    base = (to_uint8_image(image) if image is not None and overlay_alpha and can_overlay(a, spec)
            else None)
    tiles = [_panel_tile(p, size, fs, cmap, base, overlay_alpha, spec.scale)
             for p in panels_of(a, spec, 0, max_panels, stretch)]
    grid = _grid(tiles, cols, pad=max(8, fs))
    c, h, w = a.shape
    where = f"  |  1/{spec.scale} of the input" if spec.scale > 1 else ""
    width = grid.shape[1] - 12
    head = [_text_block(spec.title, fs + 5, _INK, width),
            _text_block(f"{spec.key}  |  {spec.kind}  |  {c} x {h} x {w}{where}", fs - 2, _MUTED, width)]
    if spec.meaning:
        head.append(_text_block(spec.meaning, fs, _INK, width))
    head_img = np.pad(_vstack(head, pad=2), ((6, 0), (12, 0), (0, 0)), constant_values=_BG)
    return _vstack([head_img, grid], pad=0)


# ----------------------------------------------------------------------------- channel grid
def channel_grid(feature: Any, max_channels: int = 64, cols: int = 8, cmap: str = "viridis",
                 tile: int = 96, order: str = "index", batch: int = 0
                 ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Every channel of a feature map as a tile, each coloured over its own range
    (:func:`robust_range`: a bright border does not flatten the channel), its index above it.

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
        t = _resize_rgb(apply_colormap(a[i], cmap, *robust_range(a[i])), hw)
        tiles.append(_titled(t, str(i), font_size=max(10, tile // 8)))
    return _grid(tiles, cols, pad=4), stats


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
    if all(isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[-1] in (3, 4) for im in images):
        # Channels-last arrays: cut the window before converting (a 12-MP photo is not copied
        # whole to uint8 for a 40-px crop); conversion is per pixel, so the crops are the same.
        sizes = {im.shape[:2] for im in images}
        if len(sizes) != 1:
            raise ValueError(f"images differ in size: {sorted(sizes)}")
        x0, y0, cw, ch = crop_window(images[0].shape[:2], center_xy, crop_size)
        images = [im[y0:y0 + ch, x0:x0 + cw] for im in images]
        center_xy, crop_size = (cw / 2, ch / 2), (cw, ch)
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
                pad: int = 6, caption: str | None = None) -> np.ndarray:
    """:func:`synced_crops` side by side in one row, labels above and ``texts`` on each crop;
    ``caption`` (e.g. the size a photo was processed at) above the whole strip."""
    crops = synced_crops(images, center_xy, crop_size, zoom)
    labels = list(labels) if labels is not None else [""] * len(crops)
    return labelled_grid(crops, labels, texts, cols=len(crops), pad=pad, caption=caption)


# ----------------------------------------------------------------------------- what changed
# What a model removed is drawn on mid-grey: NEUTRAL means "unchanged", brighter means the model
# took brightness away (rain streaks), darker means it added some. The difference is taken
# between the two 8-bit pictures the user sees, so at gain 1 one grey level of the picture is
# one level of difference, exactly.
NEUTRAL = 128
AMPLIFIED_GAIN = 4
SHOW_OUTPUT, SHOW_REMOVED, SHOW_AMPLIFIED = "output", "removed rain", "amplified difference"
SHOW_CHOICES = (SHOW_OUTPUT, SHOW_REMOVED, SHOW_AMPLIFIED)
_SHOW_GAIN = {SHOW_REMOVED: 1, SHOW_AMPLIFIED: AMPLIFIED_GAIN}


def _levels(image: Any) -> np.ndarray:
    """An ``H x W x 3`` picture as 8-bit levels (int32), rounded as a saved PNG is."""
    a = _as_array(image)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 picture, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.int32)
    if a.dtype == np.uint16:
        a = a.astype(np.float64) / 65535.0
    q = np.rint(np.clip(np.nan_to_num(np.asarray(a, dtype=np.float64)), 0.0, 1.0) * 255.0)
    return q.astype(np.int32)


def _removed(before: Any, after: Any, gain: float) -> tuple[np.ndarray, float]:
    """The removed layer at ``gain`` and the share of its values clipped to black or white."""
    if gain <= 0:
        raise ValueError(f"gain must be positive, got {gain}")
    b, a = _levels(before), _levels(after)
    if b.shape != a.shape:
        raise ValueError(f"pictures differ in size: {b.shape[:2]} and {a.shape[:2]}")
    v = NEUTRAL + np.rint(gain * (b - a))
    clipped = float(np.mean((v < 0) | (v > 255))) if v.size else 0.0
    return np.clip(v, 0, 255).astype(np.uint8), clipped


def removed_layer(before: Any, after: Any, gain: float = 1) -> np.ndarray:
    """What a model removed, ``before - after`` (input minus output), as a picture.

    Each channel is ``128 + gain * (before - after)`` in 8-bit levels, clipped to 0..255: grey
    (128) where nothing changed, brighter where the model removed brightness (rain), darker
    where it added some. ``gain=1`` is the true difference; larger gains amplify it.
    Returns uint8 ``H x W x 3``; see :func:`removed_note` for its caption.
    """
    return _removed(before, after, gain)[0]


def _scale_text(gain: float) -> str:
    head = ("Removed rain, input minus output at true scale (1 grey level per level of difference)"
            if gain == 1 else
            f"Difference amplified x{gain:g} ({gain:g} grey levels per level of difference)")
    return (f"{head}: mid-grey = unchanged, brighter = brightness the model removed (rain), "
            f"darker = brightness it added; differences beyond about ±{127.5 / gain:.0f} levels "
            f"(of 255) show as white or black")


def _note(gain: float, clipped: float) -> str:
    return f"{_scale_text(gain)} ({clipped:.1%} of values)."


def show_note(show: str) -> str:
    """How a :data:`SHOW_CHOICES` view is scaled, for a caption over several outputs (``""`` for
    ``"output"``; :func:`changed_view` adds each output's clipped share)."""
    if show == SHOW_OUTPUT:
        return ""
    if show not in _SHOW_GAIN:
        raise ValueError(f"show must be one of {SHOW_CHOICES}, got {show!r}")
    return _scale_text(_SHOW_GAIN[show]) + "."


def removed_note(before: Any, after: Any, gain: float = 1) -> str:
    """The caption of :func:`removed_layer`: how it is scaled and how much of it is clipped."""
    return _note(gain, _removed(before, after, gain)[1])


def view_label(label: str, show: str) -> str:
    """``label`` with the view named unless it is the output itself (``"MFAN · removed rain"``)."""
    return label if show == SHOW_OUTPUT else f"{label} · {show}"


def changed_view(before: Any, after: Any, show: str) -> tuple[Any, str]:
    """The picture to show for one output and its caption, for ``show`` in :data:`SHOW_CHOICES`.

    ``"output"``: ``after`` itself (unchanged) and no caption; ``"removed rain"``: the removed
    layer at true scale; ``"amplified difference"``: at :data:`AMPLIFIED_GAIN`.
    """
    if show == SHOW_OUTPUT:
        return after, ""
    if show not in _SHOW_GAIN:
        raise ValueError(f"show must be one of {SHOW_CHOICES}, got {show!r}")
    img, clipped = _removed(before, after, _SHOW_GAIN[show])
    return img, _note(_SHOW_GAIN[show], clipped)


# ----------------------------------------------------------------------------- grids
def labelled_grid(images: Sequence[Any], labels: Sequence[str],
                  texts: Sequence[str | None] | None = None, cols: int | None = None,
                  pad: int = 6, font_size: int = 14, caption: str | None = None) -> np.ndarray:
    """Tiles in a grid (one row by default), a label above each, ``texts`` drawn on each tile.

    Texts (e.g. ``"31.2 dB / 0.951 | 0.84 s"``, newlines allowed) sit on a semi-transparent
    dark band at the tile's bottom so they are readable over any image. Tiles of different
    sizes are placed top-left in equal cells. ``caption`` is written above the whole grid
    (wrapped, never cut; see :func:`caption_block`). Returns uint8 ``H x W x 3``.
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
    grid = _grid(labelled, cols, pad)
    if caption:
        grid = _vstack([caption_block(caption, grid.shape[1], font_size), grid], pad=2)
    return grid


def caption_block(text: str, width: int, font_size: int = 14) -> np.ndarray:
    """``text`` drawn on the background, wrapped to ``width`` pixels (the band
    :func:`labelled_grid` puts above a grid for its ``caption``)."""
    return _text_block(text, font_size, _INK, width)


def group_specs(specs: Sequence[MapSpec], default: str = "") -> dict[str, list[MapSpec]]:
    """Specs by ``group`` path, groups and specs in first-seen order; ``""`` -> ``default``."""
    groups: dict[str, list[MapSpec]] = {}
    for s in specs:
        groups.setdefault(s.group.strip("/ ") or default, []).append(s)
    return groups


# ----------------------------------------------------------------------------- siblings
# Many maps come in families that differ only by a number in their key: MFAN's
# ``module{m}.scale{s}``, RRANet's ``stage{k}.gam.scale{s}``, JDNet's ``unit{u}.scale{s}``,
# DSM-Net's ``scale{s}.mab{b}...``, MSAMNet's ``mag.branch_d{d}``. An axis is named by the word
# before the number ("scale", "stage", "module", "branch_d", ...); a map's siblings along an
# axis are the maps of the same kind whose keys equal its key with that number changed.
SIBLING_AXES = ("stage", "scale")  # preferred axes, in this order of preference
MAX_SIBLINGS = 8


def _key_numbers(key: str) -> list[tuple[str, re.Match]]:
    """``[(axis word, number match)]`` of every number in ``key``, left to right; the word is
    the text between the number and the previous ``.`` (``"stage1.gam"`` -> ``"stage"``)."""
    out = []
    for m in re.finditer(r"\d+", key):
        word = key[:m.start()].rsplit(".", 1)[-1]
        if word and not word[-1].isdigit():
            out.append((word, m))
    return out


def sibling_axes(spec: MapSpec, specs: Sequence[MapSpec]) -> dict[str, list[MapSpec]]:
    """Each axis along which ``spec`` has siblings in ``specs``: ``{word: [specs]}`` with at
    least two maps each (``spec`` included), ordered by their number; axes in key order."""
    axes: dict[str, list[MapSpec]] = {}
    for word, m in _key_numbers(spec.key):
        pattern = re.compile(re.escape(spec.key[:m.start()]) + r"(\d+)" + re.escape(spec.key[m.end():]))
        found = [(int(mm.group(1)), s) for s in specs
                 if s.kind == spec.kind and (mm := pattern.fullmatch(s.key))]
        if len(found) >= 2 and word not in axes:
            axes[word] = [s for _, s in sorted(found, key=lambda t: t[0])]
    return axes


def _spread(items: list, n: int, keep: Any) -> list:
    """At most ``n`` of ``items``, evenly spaced, the first, the last and ``keep`` included."""
    if len(items) <= n:
        return items
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    k = items.index(keep)
    if k not in idx:  # ``keep`` takes the place of the nearest inner one
        idx.remove(min(idx[1:-1], key=lambda i: abs(i - k)))
        idx = sorted(idx + [k])
    return [items[i] for i in idx]


def siblings(spec: MapSpec, specs: Sequence[MapSpec], axis: str | None = None,
             max_maps: int = MAX_SIBLINGS) -> tuple[str, list[MapSpec]] | None:
    """``(axis, maps)``: ``spec`` and its siblings along ``axis`` (by default the first of
    ``SIBLING_AXES`` that ``spec`` varies along, else the first axis in its key), at most
    ``max_maps`` evenly spaced (first and last kept); None when it has none."""
    axes = sibling_axes(spec, specs)
    if axis is None:
        axis = next((a for pref in SIBLING_AXES for a in axes if a.endswith(pref)), next(iter(axes), None))
    if axis not in axes:
        return None
    return axis, _spread(axes[axis], max_maps, spec)


def sibling_view(group: Sequence[MapSpec], specs: Sequence[MapSpec],
                 max_maps: int = MAX_SIBLINGS) -> tuple[str, list[MapSpec]] | None:
    """What the apps show side by side for a group: the siblings of its first map that has
    any (see :func:`siblings`); None when no map of the group has siblings."""
    for spec in group:
        found = siblings(spec, specs, max_maps=max_maps)
        if found is not None:
            return found
    return None


def _number_on(spec: MapSpec, axis: str) -> str:
    m = re.search(rf"(?:^|\.){re.escape(axis)}(\d+)", spec.key)
    return m.group(1) if m else "?"


def _pooled_range(panels: Sequence[MapPanel], scale: str, symmetric: bool) -> tuple[float, float]:
    """One colour range for several panels by ``scale``'s rule (robust: the percentiles of all
    their interiors' finite values together)."""
    if scale == "unit":
        return 0.0, 1.0
    if scale == "robust":
        f = np.concatenate([interior(p.data)[np.isfinite(interior(p.data))].ravel() for p in panels])
        if f.size:
            lo_p, hi_p = ROBUST_PERCENTILES
            if symmetric:
                m = float(np.percentile(np.abs(f), hi_p)) or float(np.abs(f).max())
                return -m, m
            lo, hi = (float(v) for v in np.percentile(f, [lo_p, hi_p]))
            return (lo, hi) if hi > lo else (float(f.min()), float(f.max()))
    f = np.concatenate([p.data[np.isfinite(p.data)].ravel() for p in panels])
    return _value_range(f.reshape(1, -1) if f.size else np.zeros((1, 1)), symmetric=symmetric)


def sibling_panels(tensors: Sequence[Any], specs: Sequence[MapSpec], axis: str,
                   batch: int = 0, stretch: bool = False) -> list[MapPanel]:
    """One panel per sibling map (the first panel :func:`panels_of` gives for it), labelled
    by its place on ``axis``, all on ONE colour scale so that a value has the same colour in
    every panel: the colour-scale rule the maps share (fixed 0-1 when every panel has it,
    1st-99th percentile of all interiors together when every panel is robust, else the joint
    min-max; categorical colours from all panels' values). RGB panels keep their own colours."""
    panels = []
    for t, spec in zip(tensors, specs):
        p = panels_of(t, spec, batch, stretch=stretch)[0]
        where = f", 1/{spec.scale} of the input" if spec.scale > 1 else ""
        p.label = f"{axis} {_number_on(spec, axis)}{where}: {p.label}"
        panels.append(p)
    cont = [p for p in panels if not p.rgb]
    if not cont:
        return panels
    if all(p.categorical for p in cont):
        cats = _categories(np.concatenate([p.data.ravel() for p in cont]))
        for p in cont:
            p.categories = cats
            p.note = "same colours in every panel; " + _scale_note(p)
        return panels
    scales = {p.scale for p in cont}
    scale = scales.pop() if len(scales) == 1 and not scales & {"categorical"} else "minmax"
    symmetric = any(p.symmetric for p in cont)
    cmap = "coolwarm" if symmetric else cont[0].cmap
    vrange = _pooled_range(cont, scale, symmetric)
    for p in cont:
        p.scale, p.symmetric, p.cmap, p.vrange = scale, symmetric, cmap, vrange
        p.note = "same colour scale in every panel; " + _scale_note(p)
    return panels


def render_siblings(tensors: Sequence[Any], specs: Sequence[MapSpec], axis: str, size: int = 480,
                    cols: int = 2, cmap: str | None = None, batch: int = 0, stretch: bool = False) -> np.ndarray:
    """Sibling maps (see :func:`siblings`) side by side on one shared colour scale
    (:func:`sibling_panels`), each panel ``size`` px wide like :func:`render_map`'s, under a
    title naming the family and the axis. Returns uint8 ``H x W x 3``."""
    fs = _font_size(size)
    tiles = [_panel_tile(p, size, fs, cmap) for p in sibling_panels(tensors, specs, axis, batch, stretch)]
    grid = _grid(tiles, cols, pad=max(8, fs))
    width = grid.shape[1] - 12
    keys = ", ".join(s.key for s in specs)
    head = [_text_block(f"{specs[0].title} across {axis}s ({len(specs)} maps)", fs + 5, _INK, width),
            _text_block(keys, fs - 2, _MUTED, width),
            _text_block(f"One colour scale for all panels, so equal values have equal colours. "
                        f"{specs[0].meaning}", fs, _INK, width)]
    head_img = np.pad(_vstack(head, pad=2), ((6, 0), (12, 0), (0, 0)), constant_values=_BG)
    return _vstack([head_img, grid], pad=0)
