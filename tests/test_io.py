"""derain_core.io: decoding of many formats and modes, refusals, lossless PNG round trips.

All test images are generated in tmp_path at test time.
"""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from derain_core import io as dio
from derain_core.io import (ImageLoadError, LoadedImage, load_image, png_bytes, save_png, to_numpy,
                            to_tensor)

RNG = np.random.default_rng(0)


def rand_u8(h=24, w=40, c=3):
    return RNG.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


def save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def encode_png16_all_filters(arr: np.ndarray) -> bytes:
    """Reference 16-bit RGB PNG encoder that cycles through filter types 0..4 row by row."""
    h, w, c = arr.shape
    bpp = 2 * c
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(int)
    out = bytearray()
    prev = [0] * (w * bpp)
    for y in range(h):
        ft, cur = y % 5, rows[y].tolist()
        line = []
        for i, v in enumerate(cur):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, cc)][ft]
            line.append((v - pred) % 256)
        out += bytes([ft] + line)
        prev = cur
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(out)))
            + png_chunk(b"IEND", b""))


def u16(x: np.ndarray) -> np.ndarray:
    return np.round(x.astype(np.float64) * 65535).astype(np.uint16)


def u8(x: np.ndarray) -> np.ndarray:
    return np.round(x.astype(np.float64) * 255).astype(np.uint8)


# ------------------------------------------------------------------ formats and modes

def test_png16_rgb_values_preserved(tmp_path):
    data = RNG.integers(0, 65536, (20, 33, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(encode_png16_all_filters(data))
    with Image.open(path) as pil:
        assert pil.mode == "RGB"  # Pillow alone would give 8 bits per sample
        pil8 = np.asarray(pil)
    img = load_image(path)
    assert img.bit_depth == 16 and img.source_mode == "RGB;16" and img.alpha is None
    assert img.rgb.dtype == np.float32 and img.rgb.shape == (20, 33, 3)
    assert np.array_equal(u16(img.rgb), data)
    # our decode agrees with Pillow's 8-bit decode of the same file in the high byte
    assert np.array_equal(u16(img.rgb) >> 8, pil8)


def test_png16_rgba_all_filters():
    data = RNG.integers(0, 65536, (17, 16, 4), dtype=np.uint16)
    img = load_image(encode_png16_all_filters(data))
    assert img.source_mode == "RGBA;16"
    assert np.array_equal(u16(img.rgb), data[..., :3]) and np.array_equal(u16(img.alpha), data[..., 3])


def test_png16_gray_i16(tmp_path):
    data = RNG.integers(0, 65536, (18, 25), dtype=np.uint16)
    path = save(Image.fromarray(data), tmp_path / "g16.png")
    img = load_image(path)
    assert img.bit_depth == 16 and img.source_mode.startswith("I")
    assert np.array_equal(u16(img.rgb[..., 0]), data) and np.array_equal(img.rgb[..., 0], img.rgb[..., 2])


@pytest.mark.parametrize("bits", [8, 16])
def test_save_png_round_trip_exact(tmp_path, bits):
    rgb = RNG.random((19, 23, 3)).astype(np.float32)
    alpha = RNG.random((19, 23)).astype(np.float32)
    q = u16 if bits == 16 else u8
    for a in (None, alpha):
        path = save_png(tmp_path / f"out{bits}.png", rgb, a, bits=bits)
        back = load_image(path)
        assert back.bit_depth == bits
        assert np.array_equal(q(back.rgb), q(rgb))
        assert (back.alpha is None) == (a is None)
        if a is not None:
            assert np.array_equal(q(back.alpha), q(a))
    # exact values survive a second round trip (re-quantization is idempotent)
    again = load_image(png_bytes(back.rgb, back.alpha, bits=bits))
    assert np.array_equal(again.rgb, back.rgb) and np.array_equal(again.alpha, back.alpha)


def test_rgba_png_alpha(tmp_path):
    arr = rand_u8(c=4)
    img = load_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    assert img.source_mode == "RGBA" and img.bit_depth == 8
    assert np.array_equal(u8(img.rgb), arr[..., :3]) and np.array_equal(u8(img.alpha), arr[..., 3])


def test_palette_png(tmp_path):
    idx = RNG.integers(0, 4, (20, 30), dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0]
    im = Image.fromarray(idx, "P")
    im.putpalette(palette)
    lut = np.array(palette, np.uint8).reshape(4, 3)
    plain = load_image(save(im, tmp_path / "p.png"))
    assert plain.source_mode == "P" and plain.alpha is None
    assert np.array_equal(u8(plain.rgb), lut[idx])
    trans = load_image(save(im, tmp_path / "pt.png", transparency=2))
    assert trans.alpha is not None
    assert np.array_equal(trans.alpha == 0, idx == 2) and np.all(trans.alpha[idx != 2] == 1)
    assert np.array_equal(u8(trans.rgb)[idx != 2], lut[idx][idx != 2])


def test_gray_and_la(tmp_path):
    g = rand_u8(c=0)
    img = load_image(save(Image.fromarray(g, "L"), tmp_path / "l.png"))
    assert img.source_mode == "L" and img.alpha is None
    assert all(np.array_equal(u8(img.rgb[..., c]), g) for c in range(3))
    la = rand_u8(c=2)
    img = load_image(save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    assert img.source_mode == "LA"
    assert np.array_equal(u8(img.rgb[..., 1]), la[..., 0]) and np.array_equal(u8(img.alpha), la[..., 1])


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((32, 32, 4), np.uint8)
    cmyk[:, :16, 0] = 255  # left half pure cyan, right half pure yellow
    cmyk[:, 16:, 2] = 255
    path = save(Image.fromarray(cmyk, "CMYK"), tmp_path / "cmyk.jpg", quality=95)
    img = load_image(path)
    assert img.source_mode == "CMYK" and img.rgb.shape == (32, 32, 3)
    cyan, yellow = img.rgb[8:24, 2:12].mean((0, 1)), img.rgb[8:24, 20:30].mean((0, 1))
    assert np.allclose(cyan, [0, 1, 1], atol=0.06), cyan
    assert np.allclose(yellow, [1, 1, 0], atol=0.06), yellow


def test_exif_orientation_6_jpeg(tmp_path):
    arr = np.zeros((24, 40, 3), np.uint8)  # stored 40 wide x 24 high
    arr[:8, :8] = (255, 0, 0)  # red stored top-left corner
    arr[-8:, :8] = (0, 0, 255)  # blue stored bottom-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = save(Image.fromarray(arr), tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(path)
    assert img.rgb.shape == (40, 24, 3)  # size swapped
    # rotating 90 degrees clockwise takes the top-left corner to the top-right, bottom-left to top-left
    assert np.allclose(img.rgb[1:6, -6:-1].mean((0, 1)), [1, 0, 0], atol=0.08)
    assert np.allclose(img.rgb[1:6, 1:6].mean((0, 1)), [0, 0, 1], atol=0.08)
    assert img.rgb[-6:, :].max() < 0.1  # stored right part (black) is now at the bottom


def test_exif_orientation_png16():
    data = RNG.integers(0, 65536, (16, 20, 3), dtype=np.uint16)
    raw = encode_png16_all_filters(data)
    exif = Image.Exif()
    exif[0x0112] = 6
    body = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\x00\x00") else exif.tobytes()
    end = raw.rindex(b"IEND") - 4
    raw = raw[:end] + png_chunk(b"eXIf", body) + raw[end:]
    img = load_image(raw)
    assert np.array_equal(u16(img.rgb), np.rot90(data, -1))


@pytest.mark.parametrize("fmt,kw", [("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {})])
def test_lossless_formats(tmp_path, fmt, kw):
    arr = rand_u8()
    path = save(Image.fromarray(arr), tmp_path / f"x.{fmt.lower()}", format=fmt, **kw)
    img = load_image(path)
    assert np.array_equal(u8(img.rgb), arr) and img.name == f"x.{fmt.lower()}"


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 18), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = load_image(path)
    assert img.rgb.shape == (18, 20, 3)
    assert np.allclose(img.rgb, [1, 0, 0])


def test_other_sources(tmp_path):
    arr = rand_u8()
    path = save(Image.fromarray(arr), tmp_path / "s.png")
    data = path.read_bytes()
    for src in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        assert np.array_equal(u8(load_image(src).rgb), arr)
    with Image.open(path) as pil:
        assert np.array_equal(u8(load_image(pil).rgb), arr)
    with open(path, "rb") as f:
        assert load_image(f).name == "s.png"
    assert load_image(io.BytesIO(data), name="upload.png").name == "upload.png"


def test_arrays():
    a8 = rand_u8(c=4)
    img = load_image(a8)
    assert img.bit_depth == 8 and img.source_mode == "RGBA" and np.array_equal(u8(img.alpha), a8[..., 3])
    a16 = RNG.integers(0, 65536, (20, 20), dtype=np.uint16)
    img = load_image(a16)
    assert img.bit_depth == 16 and np.array_equal(u16(img.rgb[..., 1]), a16)
    f = RNG.random((20, 21, 3))
    img = load_image(f)
    assert img.rgb.dtype == np.float32 and np.allclose(img.rgb, f, atol=1e-7)
    with pytest.raises(ImageLoadError, match="expected \\[0, 1\\]"):
        load_image(f * 2)
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((20, 20, 3), np.nan))
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((20, 20, 5)))
    with pytest.raises(ImageLoadError, match="dtype"):
        load_image(np.zeros((20, 20, 3), np.int32))
    with pytest.raises(TypeError):
        load_image(12345)


def test_tensor_helpers():
    rgb = RNG.random((17, 19, 3)).astype(np.float32)
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 17, 19) and t.dtype == torch.float32
    assert torch.equal(t[0, 1], torch.from_numpy(rgb[..., 1]))
    assert np.array_equal(to_numpy(t), rgb) and np.array_equal(to_numpy(t[0]), rgb)
    assert to_numpy(t * 3 - 1).min() == 0 and to_numpy(t * 3 - 1).max() == 1
    assert to_numpy(t * 3 - 1, clip=False).max() > 1
    assert isinstance(load_image(rgb), LoadedImage) and to_tensor(load_image(rgb)).shape == t.shape
    cl = to_tensor(rgb, channels_last=True)  # the array's own memory, no copy
    assert torch.equal(cl, t) and cl.is_contiguous(memory_format=torch.channels_last)
    assert cl.data_ptr() == rgb.ctypes.data
    back = to_numpy(cl)
    assert np.array_equal(back, rgb) and back.flags.c_contiguous and not np.shares_memory(back, rgb)


# ----------------------------------------------------------------------- bad inputs

def huge_png_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h pixels, with one tiny IDAT (it would never decode fully)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def bad_inputs(tmp_path):
    good = save(Image.fromarray(rand_u8(40, 40)), tmp_path / "good.png").read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_bytes(b"this is a text file, not an image\n" * 4)
    (tmp_path / "half.png").write_bytes(good[: len(good) // 2])
    png16 = encode_png16_all_filters(RNG.integers(0, 65536, (20, 20, 3), dtype=np.uint16))
    (tmp_path / "half16.png").write_bytes(png16[: len(png16) * 2 // 3])
    save(Image.fromarray(rand_u8(8, 40)), tmp_path / "tiny.png")
    (tmp_path / "huge.png").write_bytes(huge_png_header(8000, 8000))
    (tmp_path / "bomb.png").write_bytes(huge_png_header(100_000, 100_000))
    save(Image.fromarray(np.full((20, 20), 1000.0, np.float32), "F"), tmp_path / "float.tif")
    return [
        ("empty.png", {}, "empty file"),
        ("notes.png", {}, "not an image"),
        ("half.png", {}, "truncated or corrupt"),
        ("half16.png", {}, "truncated or corrupt"),
        ("tiny.png", {}, "too small"),
        ("huge.png", {}, "too large"),
        ("bomb.png", {}, "too large"),
        ("good.png", {"max_pixels": 1000}, "too large"),
        ("float.tif", {}, "unsupported image mode"),
        ("missing.png", {}, "file not found"),
    ]


def test_bad_inputs_one_line_messages(tmp_path):
    for fname, kw, expected in bad_inputs(tmp_path):
        with pytest.raises(ImageLoadError) as info:
            load_image(tmp_path / fname, **kw)
        msg = str(info.value)
        assert expected in msg, (fname, msg)
        assert "\n" not in msg and len(msg) < 300, msg
        assert isinstance(info.value, ValueError)
        if fname != "missing.png":  # same refusal from bytes
            with pytest.raises(ImageLoadError, match=expected):
                load_image((tmp_path / fname).read_bytes(), **kw)


def test_size_checked_before_decoding(monkeypatch):
    """The pixel limit is enforced from the header: no pixel data is ever decoded."""
    calls = []
    orig = Image.Image.load

    def spy(self, *a, **k):
        calls.append(self.size)
        return orig(self, *a, **k)

    monkeypatch.setattr(Image.Image, "load", spy)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", spy)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(huge_png_header(8000, 8000))
    assert calls == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_leaked_file_handles(tmp_path):
    cases = bad_inputs(tmp_path)
    good = tmp_path / "good.png"
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        load_image(good)
        for fname, kw, _ in cases:
            with pytest.raises(ImageLoadError):
                load_image(tmp_path / fname, **kw)
    assert len(os.listdir("/proc/self/fd")) == before


def test_display_copy_matches_png_rounding_and_shrinks_big_images():
    rgb = np.random.default_rng(2).random((40, 50, 3)).astype(np.float32)
    small, scale = dio.display_copy(rgb, 100)
    assert scale == 1.0
    assert np.array_equal(small, np.asarray(Image.open(io.BytesIO(dio.png_bytes(rgb)))))
    big, scale = dio.display_copy(rgb, 25)
    assert big.shape == (20, 25, 3) and scale == 0.5 and big.dtype == np.uint8
    up, scale = dio.display_copy(rgb, 1000, min_side=160)  # 50 px long side: x3 nearest
    assert up.shape == (120, 150, 3) and scale == 3.0
    assert np.array_equal(up[::3, ::3], small) and np.array_equal(up[2::3, 1::3], small)
    assert dio.display_copy(rgb, 120, min_side=1000)[1] == 2.0  # never above max_side
    # tiny images grow by a whole factor towards min_side; big uint8 images shrink to max_side
    tiny, scale = dio.display_copy(np.zeros((10, 20, 3), np.float32), 360, 240)
    assert tiny.shape == (120, 240, 3) and tiny.dtype == np.uint8 and scale == 12.0
    assert dio.display_copy(np.zeros((100, 800, 3), np.uint8), 400)[0].shape == (50, 400, 3)


def test_downscale_is_the_engine_preview_rule():
    rgb = np.random.default_rng(3).random((60, 200, 3)).astype(np.float32)
    small = dio.downscale(rgb, 100)
    t, scale = dio.area_downscale(dio.to_tensor(rgb), 100)
    assert small.shape == (30, 100, 3) and scale == 0.5 and np.allclose(dio.to_numpy(t), small)
    assert np.allclose(small[0, 0], rgb[:2, :2].mean((0, 1)), atol=1e-6)  # area average
    assert dio.downscale(rgb, 500).shape == rgb.shape  # never enlarges
    assert dio.downscale(rgb, 20).shape == (16, 20, 3)  # at least 16 px per side


def test_save_png_keeps_uint8_pictures(tmp_path):
    """Rendered maps are uint8; they must not be read as floats and clipped to 0/255."""
    rgb = np.arange(60 * 3, dtype=np.uint8).reshape(6, 10, 3)
    save_png(tmp_path / "u8.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "u8.png")), rgb)
