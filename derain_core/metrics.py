"""Image quality metrics: full-reference (PSNR, SSIM, error map, CIE76 delta E) and
no-reference ("NIQE (this project's pristine model)", PIQE).

PSNR and SSIM have one implementation, in torch (:func:`psnr_torch`, :func:`ssim_torch`,
:func:`ssim_map_torch` on ``(B, C, H, W)`` tensors, differentiable, so losses and training
validation can use them); the numpy functions :func:`psnr` and :func:`ssim` call it in float64.

Conventions: numpy images are float arrays ``H x W x 3`` (RGB) in [0, data_range]; the
default ``data_range`` is 1.0. ``on="y"`` evaluates the BT.601 luma of :func:`rgb_to_y`,
rescaled to the input's range (PSNR and SSIM are unchanged by a common rescaling of the
images and the data range, so the numbers equal those computed on Y in 0..255 with
``data_range=255``, as BasicSR/MATLAB do). ``crop_border`` removes that many pixels from
every side before measuring. Nothing here imports scikit-image.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .niqe import LABEL as NIQE_LABEL
from .niqe import mscn, niqe, rgb_to_gray255

__all__ = ["rgb_to_y", "rgb_to_lab", "psnr", "ssim", "error_map", "delta_e", "niqe", "piqe",
           "compute_metrics", "NIQE_LABEL", "rgb_to_y_torch", "psnr_torch", "ssim_torch",
           "ssim_map_torch"]

Channel = Literal["rgb", "y"]
_Y_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601, MATLAB rgb2ycbcr, for RGB in [0, 1]
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
_K1, _K2 = 0.01, 0.03


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as MATLAB ``rgb2ycbcr``: ``16 + 65.481 R + 128.553 G + 24.966 B``.

    ``rgb`` is ``H x W x 3`` in [0, 1]; the result is float64 ``H x W`` on the **0..255
    scale** (16 for black, 235 for white), not rounded. Use ``data_range=255`` with it.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    return 16.0 + rgb @ np.array(_Y_WEIGHTS)


# --------------------------------------------------------------------------------------
# PSNR and SSIM on tensors (the one implementation)
# --------------------------------------------------------------------------------------
def rgb_to_y_torch(x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, data_range] -> ``(B, 1, H, W)`` BT.601 Y on the same scale
    (``(16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for data range 1), differentiable."""
    w = torch.tensor(_Y_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (16.0 * data_range + (x * w).sum(1, keepdim=True)) / 255.0


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] rounded to 8 bits (float64, still in [0, 1]), as saved outputs would be."""
    return (x.detach().double().clamp(0, 1) * 255).round() / 255


def _on(x: torch.Tensor, y: torch.Tensor, data_range: float, on: Channel) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if on == "y":
        if x.shape[1] != 3:
            raise ValueError("on='y' needs RGB inputs")
        return rgb_to_y_torch(x, data_range), rgb_to_y_torch(y, data_range)
    if on != "rgb":
        raise ValueError(f"on must be 'rgb' or 'y', got {on!r}")
    return x, y


def psnr_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, on: Channel = "rgb") -> torch.Tensor:
    """PSNR in dB of each image of a batch, ``(B,)``: ``10 log10(data_range^2 / MSE)``, the MSE
    over channels and pixels; ``inf`` for identical images. Differentiable."""
    x, y = _on(x, y, data_range, on)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range ** 2 / mse)


def _gaussian_1d(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = SSIM_WINDOW // 2
    t = torch.arange(-r, r + 1, device=device, dtype=dtype)
    g = torch.exp(-(t * t) / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim_map_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0,
                   padding: Literal["valid", "zeros"] = "valid") -> torch.Tensor:
    """Per-pixel SSIM ``(B, C, h, w)`` of each channel: 11x11 Gaussian window (sigma 1.5),
    K1 0.01, K2 0.03, population statistics. Differentiable.

    ``padding="valid"``: only windows inside the image (``h = H - 10``), the evaluation
    convention (scikit-image, MATLAB); ``"zeros"``: zero-padded windows, same size as the
    input, the convention of JDNet's training code.
    """
    if min(x.shape[-2:]) < SSIM_WINDOW and padding == "valid":
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW} px per side, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    g = _gaussian_1d(x.device, x.dtype)
    rows, cols = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    pad = SSIM_WINDOW // 2 if padding == "zeros" else 0

    def filt(a: torch.Tensor) -> torch.Tensor:  # the separable Gaussian, per channel
        a = F.conv2d(a, rows, padding=(pad, 0), groups=c)
        return F.conv2d(a, cols, padding=(0, pad), groups=c)

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, on: Channel = "rgb",
               padding: Literal["valid", "zeros"] = "valid") -> torch.Tensor:
    """Mean SSIM of each image of a batch, ``(B,)`` (see :func:`ssim_map_torch`). Differentiable;
    for a loss use ``1 - ssim_torch(out, target).mean()``."""
    x, y = _on(x, y, data_range, on)
    return ssim_map_torch(x, y, data_range, padding).mean(dim=(1, 2, 3))


def _as_batch(a: np.ndarray) -> torch.Tensor:
    """numpy ``H x W`` or ``H x W x C`` -> float64 ``(1, C, H, W)``."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def _prepare(x: np.ndarray, y: np.ndarray, data_range: float, crop_border: int,
             on: Channel) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    if crop_border:
        c = int(crop_border)
        x, y = x[c:-c, c:-c], y[c:-c, c:-c]
    if on == "y":
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError("on='y' needs HxWx3 RGB inputs")
        # Y on 0..255, brought back to the inputs' scale [0, data_range]
        x = rgb_to_y(x / data_range) * (data_range / 255.0)
        y = rgb_to_y(y / data_range) * (data_range / 255.0)
    elif on != "rgb":
        raise ValueError(f"on must be 'rgb' or 'y', got {on!r}")
    return x, y


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, crop_border: int = 0,
         on: Channel = "rgb") -> float:
    """PSNR in dB, ``10 log10(data_range^2 / MSE)`` with the MSE over all pixels and channels
    (same as ``skimage.metrics.peak_signal_noise_ratio``). Identical images give ``inf``."""
    x, y = _prepare(x, y, data_range, crop_border, on)
    return float(psnr_torch(_as_batch(x), _as_batch(y), data_range)[0])


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, crop_border: int = 0,
         on: Channel = "rgb") -> float:
    """Mean SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
    population covariances, mean over channels; borders of 5 px excluded from the mean.

    Equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)``.
    """
    x, y = _prepare(x, y, data_range, crop_border, on)
    return float(ssim_torch(_as_batch(x), _as_batch(y), data_range)[0])


def error_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error, mean over channels: float32 ``H x W``."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    e = np.abs(x - y)
    return e.mean(axis=-1) if e.ndim == 3 else e


_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE L*a*b* (D65 white, 2 degree observer), float64 ``H x W x 3``.

    sRGB decoding ``((c + 0.055) / 1.055)^2.4`` (linear below 0.04045), the sRGB->XYZ matrix
    and white point used by ``skimage.color.rgb2lab``.
    """
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = (lin @ _XYZ_FROM_RGB.T) / _D65
    eps = (6.0 / 29.0) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def delta_e(x: np.ndarray, y: np.ndarray) -> float:
    """Mean CIE76 colour difference ``||Lab(x) - Lab(y)||`` over pixels (sRGB in [0, 1])."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    return float(np.sqrt(((rgb_to_lab(x) - rgb_to_lab(y)) ** 2).sum(-1)).mean())


def piqe(rgb: np.ndarray) -> float:
    """PIQE (Venkatanath et al., NCC 2015), 0 (best) .. 100 (worst); no training data.

    As MATLAB ``piqe``: gray (``rgb2gray``) scaled so its maximum is 255 and rounded, padded
    to a multiple of 16 by symmetric reflection; MSCN (7x7 Gaussian, sigma 7/6, C = 1); each
    16x16 block with MSCN variance > 0.1 is "active"; an active block is distorted by a
    noticeable artifact if any 6-pixel segment of its four edges has std < 0.1 (weight
    ``1 - var``) and noisy if its std exceeds twice the centre/surround deviation measure
    (weight ``var``); score = 100 (sum of weights + 1) / (active blocks + 1). A uniform
    image scores 100.
    """
    gray = rgb_to_gray255(rgb)
    bs = 16
    h, w = gray.shape
    gray = np.pad(gray, ((0, -h % bs), (0, -w % bs)), mode="symmetric")
    peak = gray.max()
    if peak <= 0:
        return 100.0
    gray = np.round(255.0 * gray / peak)
    m, _ = mscn(gray)
    hb, wb = m.shape[0] // bs, m.shape[1] // bs
    blocks = m.reshape(hb, bs, wb, bs).transpose(0, 2, 1, 3).reshape(-1, bs, bs)
    var = blocks.reshape(len(blocks), -1).var(axis=1, ddof=1)
    active = var > 0.1
    b, v = blocks[active], var[active]
    if len(b) == 0:
        return 100.0
    # noticeable-artifact criterion: 11 segments of 6 pixels along each of the 4 edges
    edges = np.stack([b[:, 0, :], b[:, :, -1], b[:, -1, :], b[:, :, 0]], axis=1)  # (n, 4, 16)
    segs = np.lib.stride_tricks.sliding_window_view(edges, 6, axis=2)  # (n, 4, 11, 6)
    impaired = (segs.std(axis=-1, ddof=1) < 0.1).any(axis=(1, 2))
    # noise criterion: centre (columns 7, 8) vs surround standard deviation. The surround
    # drops columns 7 and 9, as MATLAB's two successive column deletions do (pypiqe and
    # pyiqa reproduce this too; scores then match pypiqe exactly).
    centre = b[:, :, 7:9].reshape(len(b), -1)
    surround = np.concatenate([b[:, :, :7], b[:, :, 8:9], b[:, :, 10:]], axis=2).reshape(len(b), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = centre.std(axis=1, ddof=1) / surround.std(axis=1, ddof=1)
        cs = np.nan_to_num(cs, nan=0.0)
        sigma = np.sqrt(v)
        beta = np.abs(sigma - cs) / np.maximum(sigma, cs)
    noisy = sigma > 2 * beta
    dist = (impaired * (1 - v) + noisy * v).sum()
    return float(100.0 * (dist + 1.0) / (len(b) + 1.0))


def compute_metrics(output: np.ndarray, gt: np.ndarray | None = None, crop_border: int = 0) -> dict[str, float]:
    """All metrics for an ``H x W x 3`` output in [0, 1].

    Always ``niqe`` (NIQE, this project's pristine model; ``nan`` below 96 px per side) and
    ``piqe``; with ``gt`` also ``psnr_rgb``, ``psnr_y``, ``ssim_rgb``, ``ssim_y`` and
    ``delta_e`` (data range 1, ``crop_border`` pixels cut from each side). Lower is better
    for niqe, piqe and delta_e; higher for PSNR and SSIM.
    """
    out: dict[str, float] = {}
    if gt is not None:
        kw = dict(data_range=1.0, crop_border=crop_border)
        out["psnr_rgb"] = psnr(output, gt, on="rgb", **kw)
        out["psnr_y"] = psnr(output, gt, on="y", **kw)
        out["ssim_rgb"] = ssim(output, gt, on="rgb", **kw)
        out["ssim_y"] = ssim(output, gt, on="y", **kw)
        c = int(crop_border)
        o, g = (output[c:-c, c:-c], gt[c:-c, c:-c]) if c else (output, gt)
        out["delta_e"] = delta_e(o, g)
    out["niqe"] = niqe(output)
    out["piqe"] = piqe(output)
    return out
