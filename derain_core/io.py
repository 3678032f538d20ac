"""Robust image loading and lossless saving.

Everything the package and the apps read goes through :func:`load_image`, which turns
paths, bytes, file objects, PIL images and numpy arrays into one :class:`LoadedImage`
(float32 RGB in [0, 1] plus an optional alpha plane). Every refusal raises
:class:`ImageLoadError` (a ``ValueError``) with a one-line message.

Pillow decodes 16-bit RGB(A) PNGs to 8 bits, so PNGs with 16-bit colour samples are
decoded here by a small numpy PNG reader (non-interlaced files; interlaced ones fall back
to Pillow's 8-bit decode). :func:`save_png` writes 16-bit PNGs with a small zlib encoder.

Resizing lives here too, once: :func:`display_copy` (every on-screen copy in both apps) and
:func:`area_downscale` / :func:`downscale` / :func:`downscale_image` (the engine's preview pass
for maps, the Rain lab, the apps' working size and ``derain run --max-side``).
"""
from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
"""Default pixel limit (width x height) checked from the header, before any decoding."""

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112


class ImageLoadError(ValueError):
    """An input could not be used as an image; the message is a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class LoadedImage:
    """A decoded image.

    ``rgb`` is float32 ``H x W x 3`` in [0, 1]; ``alpha`` is float32 ``H x W`` in [0, 1] or
    ``None``; ``bit_depth`` is 8 or 16 (bits per sample of the source; float arrays count
    as 16); ``source_mode`` is the PIL mode of the source (``"RGB;16"``/``"RGBA;16"``/
    ``"LA;16"`` for 16-bit colour PNGs and uint16 arrays, which PIL has no mode for).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    source_mode: str
    name: str

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


# --------------------------------------------------------------------------- loading

def load_image(src: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int = 16,
               name: str | None = None) -> LoadedImage:
    """Decode ``src`` into a :class:`LoadedImage`.

    ``src`` may be a path, encoded bytes, a binary file object, a PIL image, or a numpy
    array ``H x W``, ``H x W x 3`` or ``H x W x 4`` (``H x W x 2`` = gray + alpha) of dtype
    uint8, uint16 or float in [0, 1]. EXIF orientation is applied. Sizes are checked from the
    header before pixels are decoded: more than ``max_pixels`` pixels or fewer than
    ``min_size`` pixels on a side raise :class:`ImageLoadError`, as do non-images, empty and
    truncated files and unsupported modes. A wrong ``src`` type raises ``TypeError``.
    """
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels, min_size, name or "array")
    if isinstance(src, Image.Image):
        label = name or os.path.basename(getattr(src, "filename", "") or "") or "image"
        _check_size(src.size, max_pixels, min_size, label)
        with _decode_errors(label):
            return _from_pil(src, label)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        label = name or path.name
        if not path.is_file():
            raise ImageLoadError(f"file not found: {path}")
        with open(path, "rb") as fp:
            return _from_file(fp, max_pixels, min_size, label)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _from_file(io.BytesIO(bytes(src)), max_pixels, min_size, name or "image")
    if hasattr(src, "read"):
        label = name or os.path.basename(str(getattr(src, "name", "") or "")) or "upload"
        seekable = getattr(src, "seekable", lambda: False)()
        fp = src if seekable else io.BytesIO(src.read())
        return _from_file(fp, max_pixels, min_size, label)
    raise TypeError(f"unsupported image source type: {type(src).__name__}")


def _check_size(size: tuple[int, int], max_pixels: int, min_size: int, name: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageLoadError(f"image too large: {name} is {w}x{h} = {w * h:,} pixels, "
                             f"limit is {max_pixels:,} pixels")
    if min(w, h) < min_size:
        raise ImageLoadError(f"image too small: {name} is {w}x{h}, need at least {min_size} px per side")


def _from_file(fp: IO[bytes], max_pixels: int, min_size: int, name: str) -> LoadedImage:
    """Decode from a seekable binary file; the caller owns (and closes) ``fp``."""
    start = fp.tell()
    head = fp.read(33)
    if isinstance(head, str):
        raise TypeError("file object must be opened in binary mode")
    if not head:
        raise ImageLoadError(f"empty file: {name} has 0 bytes")
    fp.seek(start)
    with _decode_errors(name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                # Image.open reads only the header: check the size before decoding pixels.
                _check_size(im.size, max_pixels, min_size, name)
                if _png16_header(head) is not None:
                    fp.seek(start)
                    return _from_png16(fp.read(), name)
                return _from_pil(im, name)


@contextmanager
def _decode_errors(name: str) -> Iterator[None]:
    """Turn Pillow/zlib/PNG decoding exceptions into one-line :class:`ImageLoadError`."""
    try:
        yield
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image too large: {name} refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"not an image: {name} is not a picture file that can be opened "
                             "(use a PNG, JPEG, WebP, BMP or TIFF photo)") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, IndexError) as exc:
        raise ImageLoadError(f"truncated or corrupt image: {name} could not be read to the end ({exc})") from None


def _from_pil(im: Image.Image, name: str) -> LoadedImage:
    """Convert an (unloaded or loaded) PIL image; the caller owns ``im`` and closes it."""
    source_mode = im.mode
    im.load()  # decode errors surface here, before any conversion
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    alpha = None
    bit_depth = 8
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        gray = np.asarray(im).astype(np.float32) / 65535.0
        rgb, bit_depth = np.repeat(gray[..., None], 3, axis=2), 16
    elif mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageLoadError(f"unsupported image mode: {name} is 32-bit integer ('I') with values outside 0..65535")
        gray = arr.astype(np.float32) / 65535.0
        rgb, bit_depth = np.repeat(gray[..., None], 3, axis=2), 16
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ImageLoadError(f"unsupported image mode: {name} is 32-bit float ('F') with values outside [0, 1]")
        rgb, bit_depth = np.repeat(arr[..., None], 3, axis=2), 16
    else:
        if mode in ("P", "PA", "L", "RGB") and ("transparency" in im.info or mode == "PA"):
            im = im.convert("RGBA")
        elif mode in ("1", "P"):
            im = im.convert("RGB")
        elif mode in ("La", "LA"):
            im = im.convert("LA")
        elif mode in ("RGBa", "RGBA"):
            im = im.convert("RGBA")
        elif mode in ("RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode not in ("L", "RGB"):
            raise ImageLoadError(f"unsupported image mode: {name} has PIL mode '{mode}'")
        arr = np.asarray(im).astype(np.float32) / 255.0
        if im.mode == "L":
            rgb = np.repeat(arr[..., None], 3, axis=2)
        elif im.mode == "LA":
            rgb, alpha = np.repeat(arr[..., :1], 3, axis=2), arr[..., 1]
        elif im.mode == "RGBA":
            rgb, alpha = arr[..., :3], arr[..., 3]
        else:
            rgb = arr
    return LoadedImage(np.ascontiguousarray(rgb, dtype=np.float32),
                       None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
                       bit_depth, source_mode, name)


def _from_array(arr: np.ndarray, max_pixels: int, min_size: int, name: str) -> LoadedImage:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(f"unsupported array shape: {name} has shape {tuple(arr.shape)}, "
                             "expected HxW, HxWx2, HxWx3 or HxWx4")
    _check_size((arr.shape[1], arr.shape[0]), max_pixels, min_size, name)
    if arr.dtype == np.uint8:
        f, depth = arr.astype(np.float32) / 255.0, 8
    elif arr.dtype == np.uint16:
        f, depth = arr.astype(np.float32) / 65535.0, 16
    elif np.issubdtype(arr.dtype, np.floating):
        f, depth = arr.astype(np.float32), 16
        if not np.isfinite(f).all():
            raise ImageLoadError(f"invalid float array: {name} contains NaN or infinite values")
        lo, hi = float(f.min()), float(f.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageLoadError(f"invalid float array: {name} has values in [{lo:.4g}, {hi:.4g}], expected [0, 1]")
        f = np.clip(f, 0.0, 1.0)
    else:
        raise ImageLoadError(f"unsupported array dtype: {name} is {arr.dtype}, expected uint8, uint16 or float")
    channels = 1 if f.ndim == 2 else f.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if arr.dtype == np.uint16:
        mode = "I;16" if channels == 1 else mode + ";16"
    elif np.issubdtype(arr.dtype, np.floating):
        mode = "F" if channels == 1 else mode
    if channels == 1:
        rgb, alpha = np.repeat(f[..., None], 3, axis=2), None
    elif channels == 2:
        rgb, alpha = np.repeat(f[..., :1], 3, axis=2), f[..., 1]
    else:
        rgb, alpha = f[..., :3], (f[..., 3] if channels == 4 else None)
    return LoadedImage(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha),
                       depth, mode, name)


# ------------------------------------------------------------------ 16-bit PNG codec

def _png16_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, colour type, interlace) for a 16-bit colour PNG we must decode ourselves."""
    if len(data) < 33 or not data.startswith(_PNG_SIG) or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 16 or ctype not in (2, 4, 6) or interlace != 0:
        return None  # 16-bit gray is read by Pillow (I;16); interlaced files fall back to 8 bits
    return w, h, ctype, interlace


def _png_chunks(data: bytes):
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length or pos + 12 + length > len(data):
            raise EOFError("PNG chunk runs past the end of the file")
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise SyntaxError(f"bad CRC in PNG chunk {ctype!r}")
        yield ctype, body
        pos += 12 + length
        if ctype == b"IEND":
            return
    raise EOFError("PNG ends before its IEND chunk")


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG scanline filters (types 0-4) for whole-byte pixels of ``bpp`` bytes."""
    if len(raw) < height * (stride + 1):
        raise EOFError("PNG image data is truncated")
    buf = np.frombuffer(raw, np.uint8, height * (stride + 1)).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        ftype, line = int(buf[y, 0]), buf[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:  # Sub: running sum per byte position within a pixel, modulo 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif ftype == 2:  # Up
            cur = line + prev
        elif ftype in (3, 4):  # Average, Paeth: sequential along the row
            cur_l = list(line.tolist())
            up = prev.tolist()
            for i in range(stride):
                a = cur_l[i - bpp] if i >= bpp else 0
                b = up[i]
                if ftype == 3:
                    cur_l[i] = (cur_l[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                    cur_l[i] = (cur_l[i] + pred) & 0xFF
            cur = np.array(cur_l, np.uint8)
        else:
            raise SyntaxError(f"unknown PNG filter type {ftype}")
        out[y] = cur
        prev = cur
    return out


def _decode_png16(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a non-interlaced 16-bit PNG (gray, gray+alpha, RGB, RGBA).

    Returns uint16 ``H x W x C`` as stored and the EXIF orientation of its eXIf chunk (1 if none).
    """
    if not data.startswith(_PNG_SIG):
        raise SyntaxError("not a PNG file")
    chunks = list(_png_chunks(data))
    if not chunks or chunks[0][0] != b"IHDR":
        raise SyntaxError("PNG does not start with IHDR")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1][:13])
    channels = {0: 1, 4: 2, 2: 3, 6: 4}.get(ctype)
    if depth != 16 or channels is None or interlace != 0:
        raise ValueError("only non-interlaced 16-bit gray/RGB(A) PNGs are decoded here")
    bpp = 2 * channels
    needed = h * (w * bpp + 1)  # never inflate more than the header promises (zlib bombs)
    raw = zlib.decompressobj().decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"), needed)
    if len(raw) < needed:
        raise EOFError("PNG image data is truncated")
    rows = _unfilter(raw, h, w * bpp, bpp)
    orientation = 1
    for kind, body in chunks:
        if kind == b"eXIf":
            exif = Image.Exif()
            exif.load(body)
            orientation = int(exif.get(_EXIF_ORIENTATION, 1))
    return rows.view(">u2").reshape(h, w, channels).astype(np.uint16), orientation


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (same transforms as ``PIL.ImageOps.exif_transpose``)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _from_png16(data: bytes, name: str) -> LoadedImage:
    arr, orientation = _decode_png16(data)
    arr = _orient(arr, orientation).astype(np.float32) / 65535.0
    channels = arr.shape[2]
    if channels <= 2:
        rgb = np.repeat(arr[..., :1], 3, axis=2)
    else:
        rgb = arr[..., :3]
    alpha = arr[..., -1] if channels in (2, 4) else None
    mode = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    return LoadedImage(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha),
                       16, mode, name)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _encode_png16(arr: np.ndarray) -> bytes:
    """Encode uint16 ``H x W x C`` (C = 1..4) as a 16-bit PNG, Sub-filtered, zlib level 6."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * bpp)
    sub = rows.copy()
    sub[:, bpp:] = rows[:, bpp:] - rows[:, :-bpp]  # uint8 arithmetic wraps modulo 256
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    return _PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------- saving

def quantize(x: np.ndarray, bits: int, rows: int = 256) -> np.ndarray:
    """Floats in [0, 1] (or uint8/uint16 pictures, read as their full range) -> ``bits`` integers
    (uint8 or uint16), rounded as a saved PNG is. Computed ``rows`` rows at a time, so the float64
    work never holds copies of a whole phone photo."""
    x = np.asarray(x)
    peak = 65535 if bits == 16 else 255
    out = np.empty(x.shape, np.uint16 if bits == 16 else np.uint8)
    for r0 in range(0, max(1, x.shape[0]), rows):
        part = x[r0:r0 + rows]
        if part.dtype in (np.uint8, np.uint16):
            part = part.astype(np.float64) / np.iinfo(part.dtype).max
        out[r0:r0 + rows] = np.round(np.clip(np.nan_to_num(np.asarray(part, dtype=np.float64)), 0.0, 1.0) * peak)
    return out


def png_bytes(rgb: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> bytes:
    """Encode ``H x W x 3`` RGB (floats in [0, 1], or uint8/uint16) and an optional ``H x W`` alpha as
    lossless PNG bytes.

    Values are clipped to [0, 1] and rounded to ``bits`` (8 or 16) per sample.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be HxWx3, got shape {rgb.shape}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    planes = rgb
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be HxW {rgb.shape[:2]}, got {alpha.shape}")
        planes = np.concatenate([rgb, alpha[..., None]], axis=2)
    q = quantize(planes, bits)
    if bits == 16:
        return _encode_png16(q)
    buf = io.BytesIO()
    Image.fromarray(q, "RGBA" if alpha is not None else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> Path:
    """Write a lossless 8- or 16-bit PNG (see :func:`png_bytes`); returns the path."""
    data = png_bytes(rgb, alpha, bits)
    path = Path(path)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------- tensors

def to_tensor(rgb: np.ndarray | LoadedImage, channels_last: bool = False) -> torch.Tensor:
    """``H x W x 3`` float array (or a :class:`LoadedImage`) -> float32 tensor ``(1, 3, H, W)``.

    ``channels_last=True`` returns the array's own memory seen as a channels_last tensor (an
    ``H x W x 3`` array is exactly that layout): no copy of a float32 array, so treat the
    tensor as read-only. A 12-megapixel photo is 146 MB per copy.
    """
    if isinstance(rgb, LoadedImage):
        rgb = rgb.rgb
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got shape {rgb.shape}")
    if channels_last:
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def to_numpy(tensor: torch.Tensor, clip: bool = True) -> np.ndarray:
    """Tensor ``(1, 3, H, W)`` or ``(3, H, W)`` -> float32 ``H x W x 3`` (clipped to [0, 1] by default)."""
    t = tensor.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected batch size 1, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected (1, 3, H, W) or (3, H, W), got shape {tuple(tensor.shape)}")
    out = t.to("cpu", torch.float32).permute(1, 2, 0).numpy()
    result = np.empty(out.shape, np.float32)  # one copy, C-contiguous, whatever the tensor's layout
    if clip:
        np.clip(out, 0.0, 1.0, out=result)
    else:
        result[...] = out
    return result



# --------------------------------------------------------------------------- resizing

def downscaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` after :func:`area_downscale` to ``max_side`` (unchanged when it fits)."""
    scale = min(1.0, max_side / max(width, height))
    if scale >= 1.0:
        return width, height
    return max(16, round(width * scale)), max(16, round(height * scale))


def area_downscale(x: torch.Tensor, max_side: int) -> tuple[torch.Tensor, float]:
    """Shrink ``(B, C, H, W)`` by area averaging so its longer side is at most ``max_side``
    (each side at least 16 px); never enlarges. Returns the tensor and the scale (1.0: as is)."""
    h, w = x.shape[-2:]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        nw, nh = downscaled_size(w, h, max_side)
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="area")
    return x, scale


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Float ``H x W x 3`` shrunk as :func:`area_downscale` does (the engine's preview pass for
    maps uses the same rule, so a map lies exactly over this copy); float32 in [0, 1]."""
    small, _ = area_downscale(to_tensor(rgb), max_side)
    return to_numpy(small)


def downscale_image(img: LoadedImage, max_side: int) -> LoadedImage:
    """``img`` with its longer side at most ``max_side``: colour and alpha area-averaged (each
    output pixel the mean of the input pixels it covers, so no aliasing), the same rule for
    every image, so a photo and its ground truth shrink to exactly the same grid. An image
    that fits is returned as it is; the name, bit depth and source mode are kept."""
    if max(img.width, img.height) <= max_side:
        return img
    rgb = downscale(img.rgb, max_side)
    alpha = None
    if img.alpha is not None:
        a, _ = area_downscale(torch.from_numpy(np.ascontiguousarray(img.alpha, dtype=np.float32))[None, None], max_side)
        alpha = np.ascontiguousarray(a[0, 0].clamp(0, 1).numpy())
    return LoadedImage(rgb, alpha, img.bit_depth, img.source_mode, img.name)


def display_copy(rgb: np.ndarray, max_side: int, min_side: int = 0) -> tuple[np.ndarray, float]:
    """A uint8 ``H x W x 3`` copy of an image for the screen, and its scale.

    Images longer than ``max_side`` are shrunk (box filter). Images shorter than ``min_side``
    are enlarged by the largest whole nearest-neighbour factor that keeps the longer side
    within ``min_side`` and ``max_side`` (pixels stay sharp blocks). Only for pictures shown on
    screen: models and metrics always see the full-size image. Floats are rounded as
    :func:`png_bytes` rounds them, so a copy at scale 1.0 equals the saved PNG.
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got shape {a.shape}")
    img = np.ascontiguousarray(a) if a.dtype == np.uint8 else quantize(a, 8)
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX)).copy(), scale
    k = max(1, min(min_side, max_side) // max(h, w))
    if k > 1:
        return np.repeat(np.repeat(img, k, axis=0), k, axis=1), float(k)
    return img, 1.0
