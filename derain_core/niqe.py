"""NIQE (this project's pristine model): a no-reference "naturalness" distance.

From first principles after A. Mittal, R. Soundararajan, A. C. Bovik, "Making a 'Completely
Blind' Image Quality Analyzer", IEEE Signal Processing Letters 20(3), 2013, following the
structure of the authors' MATLAB release (``computequality.m``/``estimatemodelparam.m``):

* luminance ``I`` = MATLAB ``rgb2gray`` on the 0..255 scale; crop to a multiple of 96 px;
* MSCN coefficients ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian window (sigma 7/6,
  replicate borders);
* per 96x96 block (48x48 at the second scale, after a MATLAB-style antialiased bicubic
  ``imresize(I, 0.5)``) 18 features: an asymmetric generalized Gaussian (AGGD) fit of the
  MSCN values (shape, mean of the left/right scales) and AGGD fits (shape, mean, left and
  right scales) of the products of horizontally, vertically and diagonally neighbouring
  MSCN values; 36 features over the two scales;
* a multivariate Gaussian (mu_t, cov_t) fitted to the test image's blocks, and the distance
  ``sqrt((mu_p - mu_t)^T pinv((cov_p + cov_t) / 2) (mu_p - mu_t))`` to the pristine model.

The pristine model (mu_p, cov_p) is NOT the LIVE model: it is fitted by
``scripts/fit_niqe.py`` on the natural photos shipped with scikit-image and stored in
``derain_core/resources/niqe_pristine.npz``. Scores are therefore comparable only with other
scores from this package ("NIQE (this project's pristine model)"), not with published NIQE.
Lower is better.
"""
from __future__ import annotations

import io
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

LABEL = "NIQE (this project's pristine model)"
BLOCK = 96
SHARPNESS_THRESHOLD = 0.75  # pristine patches: block sharpness > 0.75 * image max (MATLAB release)
PRISTINE_PATH = Path(__file__).with_name("resources") / "niqe_pristine.npz"

_GAM = np.arange(0.2, 10.0 + 1e-9, 0.001)
_R_GAM = gamma(2.0 / _GAM) ** 2 / (gamma(1.0 / _GAM) * gamma(3.0 / _GAM))  # increasing in _GAM


def _gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``."""
    r = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


_WINDOW = _gaussian_window()


def rgb_to_gray255(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` weights (0.2989, 0.5870, 0.1140) on the 0..255 scale (float64).

    ``rgb`` is ``H x W x 3`` in [0, 1]; an ``H x W`` array is taken as gray in [0, 1].
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim == 2:
        return rgb * 255.0
    return (rgb[..., :3] @ np.array([0.2989, 0.5870, 0.1140])) * 255.0


def mscn(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients and local sigma of a 0..255 luminance image (7x7 Gaussian, C = 1)."""
    mu = ndimage.correlate(gray, _WINDOW, mode="nearest")
    var = ndimage.correlate(gray * gray, _WINDOW, mode="nearest") - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (gray - mu) / (sigma + 1.0), sigma


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1.0) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


# MATLAB imresize(., 0.5, 'bicubic') with antialiasing: output j (0-based) reads inputs
# 2j-3 .. 2j+4 with the cubic kernel stretched by 2, symmetric borders.
_HALF_TAPS = 0.5 * _cubic(0.5 * (4.5 - np.arange(1, 9)))
_HALF_TAPS = _HALF_TAPS / _HALF_TAPS.sum()


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB-style antialiased bicubic ``imresize(img, 0.5)`` of a 2-D float array."""
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        m = (n + 1) // 2
        pad = [(0, 0), (0, 0)]
        pad[axis] = (3, 4 + (2 * m - n))
        p = np.pad(out, pad, mode="symmetric")
        acc = np.zeros(tuple(m if a == axis else out.shape[a] for a in (0, 1)))
        for k, w in enumerate(_HALF_TAPS):
            sl = [slice(None), slice(None)]
            sl[axis] = slice(k, k + 2 * m, 2)
            acc += w * p[tuple(sl)]
        out = acc
    return out


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit per row of ``x`` (n, k): shape alpha, left and right scales."""
    with np.errstate(divide="ignore", invalid="ignore"):
        neg, pos = x < 0, x > 0
        left = np.sqrt((np.where(neg, x * x, 0.0)).sum(1) / neg.sum(1))
        right = np.sqrt((np.where(pos, x * x, 0.0)).sum(1) / pos.sum(1))
        g = left / right
        rhat = np.mean(np.abs(x), 1) ** 2 / np.mean(x * x, 1)
        rnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
        ok = np.isfinite(rnorm)
        idx = np.clip(np.searchsorted(_R_GAM, np.where(ok, rnorm, 0.0)), 1, len(_R_GAM) - 1)
        lo, hi = _R_GAM[idx - 1], _R_GAM[idx]
        idx = np.where(np.abs(rnorm - lo) <= np.abs(hi - rnorm), idx - 1, idx)
        alpha = np.where(ok, _GAM[idx], np.nan)
        k = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left * k, right * k


def _block_features(m: np.ndarray) -> np.ndarray:
    """18 NSS features for each block of ``m`` (n, b, b) of MSCN coefficients."""
    n = m.shape[0]
    flat = m.reshape(n, -1)
    a, bl, br = _aggd(flat)
    feats = [a, (bl + br) / 2.0]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        prod = (m * np.roll(m, shift, axis=(1, 2))).reshape(n, -1)
        a, bl, br = _aggd(prod)
        with np.errstate(invalid="ignore"):
            mean = (br - bl) * gamma(2.0 / a) / gamma(1.0 / a)
        feats += [a, mean, bl, br]
    return np.stack(feats, axis=1)


def _blocks(x: np.ndarray, size: int, stride: int, rows: int, cols: int) -> np.ndarray:
    return np.stack([x[r * stride:r * stride + size, c * stride:c * stride + size]
                     for r in range(rows) for c in range(cols)])


def niqe_features(gray: np.ndarray, stride: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Per-block 36-D features and block sharpness (mean local sigma) of a 0..255 gray image.

    Blocks are 96x96 placed every ``stride`` pixels (96 = non-overlapping, as in the paper);
    returns ``(features (n, 36), sharpness (n,))``. Needs at least 96 px per side.
    """
    if stride % 2 or stride <= 0:
        raise ValueError("stride must be a positive even number")
    h, w = gray.shape
    if min(h, w) < BLOCK:
        raise ValueError(f"NIQE needs at least {BLOCK} px per side, got {w}x{h}")
    rows, cols = (h - BLOCK) // stride + 1, (w - BLOCK) // stride + 1
    img = gray[:(rows - 1) * stride + BLOCK, :(cols - 1) * stride + BLOCK]
    feats = []
    for scale in (1, 2):
        m, sigma = mscn(img)
        feats.append(_block_features(_blocks(m, BLOCK // scale, stride // scale, rows, cols)))
        if scale == 1:
            sharp = _blocks(sigma, BLOCK, stride, rows, cols).mean(axis=(1, 2))
            img = imresize_half(img)
    return np.concatenate(feats, axis=1), sharp


def fit_mvg(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (NaN-ignoring) and covariance (rows with any NaN dropped) of features ``(n, d)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (flat images) -> nan
        mu = np.nanmean(feats, axis=0)
    good = feats[~np.isnan(feats).any(axis=1)]
    if len(good) < 2:
        return mu, np.zeros((feats.shape[1], feats.shape[1]))
    return mu, np.cov(good, rowvar=False)


@lru_cache(maxsize=4)
def load_pristine(path: str | None = None) -> dict:
    """The fitted pristine model: ``mu`` (36,), ``cov`` (36, 36) and provenance fields."""
    with np.load(path or PRISTINE_PATH, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def niqe(rgb: np.ndarray, model: dict | None = None) -> float:
    """NIQE (this project's pristine model) of ``rgb`` (``H x W x 3`` or ``H x W`` in [0, 1]).

    Lower is better. Images narrower than 96 px on a side return ``nan``. Images with fewer
    than 6 non-overlapping 96x96 blocks (below about 192 px per side) use blocks every 48 px
    instead so that the test covariance has enough samples.
    """
    gray = rgb_to_gray255(rgb)
    h, w = gray.shape
    if min(h, w) < BLOCK:
        return float("nan")
    stride = BLOCK if (h // BLOCK) * (w // BLOCK) >= 6 else BLOCK // 2
    feats, _ = niqe_features(gray, stride)
    mu_t, cov_t = fit_mvg(feats)
    model = model or load_pristine()
    mu_p, cov_p = model["mu"], model["cov"]
    d = mu_p - mu_t
    if not np.isfinite(d).all():
        return float("nan")
    inv = np.linalg.pinv((cov_p + cov_t) / 2.0)
    return float(np.sqrt(max(float(d @ inv @ d), 0.0)))


def pristine_npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Byte-reproducible ``.npz`` (fixed zip timestamps, sorted names) for the fitted model."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            arr_buf = io.BytesIO()
            np.lib.format.write_array(arr_buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, arr_buf.getvalue())
    return buf.getvalue()
