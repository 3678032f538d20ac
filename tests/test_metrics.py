"""derain_core.metrics / derain_core.niqe against scikit-image (a test-only dependency),
MATLAB formulas and degradation orderings."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

skimage = pytest.importorskip("skimage")
from skimage import color, data  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from derain_core import niqe as niqe_mod  # noqa: E402
from derain_core.metrics import (NIQE_LABEL, compute_metrics, delta_e, error_map, niqe, piqe, psnr,  # noqa: E402
                                 rgb_to_lab, rgb_to_y, ssim)

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def sk_ssim(x, y, data_range, channel_axis=-1):
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, channel_axis=channel_axis)


def pair(h=48, w=64, noise=0.08):
    x = RNG.random((h, w, 3))
    x = ndimage.gaussian_filter(x, (2, 2, 0))  # some structure
    y = np.clip(x + RNG.normal(0, noise, x.shape), 0, 1)
    return x, y


def add_rain(img, n=250, length=25, seed=0, strength=0.6):
    """Bright slanted streaks (3 rows down per column across), slightly blurred."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    mask = np.zeros((h, w))
    for _ in range(n):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        t = np.arange(length)
        yy, xx = y0 + t, x0 + t // 3
        ok = (yy < h) & (xx < w)
        mask[yy[ok], xx[ok]] = 1.0
    mask = np.clip(1.5 * ndimage.gaussian_filter(mask, 0.6), 0, 1)[..., None] * strength
    return np.clip(img * (1 - mask) + 0.8 * mask, 0, 1)


@pytest.fixture(scope="module")
def chelsea():
    """Held out of the NIQE pristine fit (see scripts/fit_niqe.py)."""
    return data.chelsea() / 255.0


# --------------------------------------------------------------------- full reference

def test_rgb_to_y_matlab_values():
    cols = np.array([[[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]]], float)
    y = rgb_to_y(cols)[0]
    assert np.allclose(y, [235.0, 16.0, 81.481, 144.553, 40.966, 125.5], atol=1e-9)


@pytest.mark.parametrize("crop", [0, 3])
def test_psnr_equals_skimage(crop):
    x, y = pair()
    c = slice(crop, -crop) if crop else slice(None)
    assert psnr(x, y, crop_border=crop) == pytest.approx(peak_signal_noise_ratio(x[c, c], y[c, c], data_range=1.0),
                                                         abs=1e-10)
    assert psnr(x * 255, y * 255, data_range=255) == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0))
    yx, yy = rgb_to_y(x), rgb_to_y(y)
    assert psnr(x, y, crop_border=crop, on="y") == pytest.approx(
        peak_signal_noise_ratio(yx[c, c], yy[c, c], data_range=255), abs=1e-10)
    assert psnr(x, x) == math.inf and psnr(x, x, on="y") == math.inf


@pytest.mark.parametrize("crop", [0, 4])
def test_ssim_matches_skimage(crop):
    x, y = pair()
    c = slice(crop, -crop) if crop else slice(None)
    ref = sk_ssim(x[c, c], y[c, c], 1.0)
    assert abs(ssim(x, y, crop_border=crop) - ref) < 1e-3
    assert abs(ssim(x, y, crop_border=crop) - ref) < 1e-9  # in fact identical up to rounding
    ref_y = sk_ssim(rgb_to_y(x)[c, c], rgb_to_y(y)[c, c], 255.0, channel_axis=None)
    assert abs(ssim(x, y, crop_border=crop, on="y") - ref_y) < 1e-3
    assert abs(ssim(x * 255, y * 255, data_range=255, crop_border=crop, on="y") - ref_y) < 1e-9
    assert ssim(x, x) == pytest.approx(1.0)


def test_torch_psnr_ssim_are_the_numpy_ones_and_differentiable():
    import torch

    from derain_core import losses
    from derain_core.metrics import psnr_torch, rgb_to_y_torch, ssim_map_torch, ssim_torch

    x, y = pair()
    tx, ty = (torch.from_numpy(a).permute(2, 0, 1)[None] for a in (x, y))
    assert psnr_torch(tx, ty).item() == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-9)
    assert ssim_torch(tx, ty).item() == pytest.approx(sk_ssim(x, y, 1.0), abs=1e-9)
    ref_y = sk_ssim(rgb_to_y(x), rgb_to_y(y), 255.0, channel_axis=None)
    assert ssim_torch(tx, ty, on="y").item() == pytest.approx(ref_y, abs=1e-9)
    assert psnr_torch(tx, ty, on="y").item() == pytest.approx(psnr(x, y, on="y"), abs=1e-9)
    assert torch.allclose(rgb_to_y_torch(tx)[0, 0] * 255, torch.from_numpy(rgb_to_y(x)))
    # a batch gives one value per image; identical images give inf and 1
    batch = torch.cat([tx, ty]).float()
    assert psnr_torch(batch, batch).isinf().all() and torch.allclose(ssim_torch(batch, batch), torch.ones(2))
    # the zero-padded map is the training convention of losses.py
    assert torch.allclose(ssim_map_torch(tx, ty, padding="zeros"), losses.ssim_loss_map(tx, ty), atol=1e-9)
    xf, yf = tx.float(), ty.float()
    assert ssim_map_torch(xf, yf).shape[-2:] == (48 - 10, 64 - 10)
    out = xf.clone().requires_grad_(True)
    (1 - ssim_torch(out, yf).mean() - psnr_torch(out, yf).mean()).backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_ssim_rejects_bad_input():
    x, y = pair()
    with pytest.raises(ValueError, match="shape"):
        ssim(x, y[:-1])
    with pytest.raises(ValueError, match="11 px"):
        ssim(x[:8, :8], y[:8, :8])


def test_error_map_and_delta_e():
    x, y = pair(20, 24)
    e = error_map(x, y)
    assert e.shape == (20, 24) and e.dtype == np.float32
    assert np.allclose(e, np.abs(x - y).mean(-1), atol=1e-6)
    assert np.allclose(rgb_to_lab(x), color.rgb2lab(x), atol=1e-6)
    assert np.allclose(rgb_to_lab(np.ones((1, 1, 3)))[0, 0], [100, 0, 0], atol=0.01)
    assert np.allclose(rgb_to_lab(np.array([[[1.0, 0, 0]]]))[0, 0], [53.24, 80.09, 67.20], atol=0.02)
    ref = color.deltaE_cie76(color.rgb2lab(x), color.rgb2lab(y)).mean()
    assert delta_e(x, y) == pytest.approx(ref, rel=1e-9)
    assert delta_e(x, x) == 0.0


# ------------------------------------------------------------------------ no reference

def test_imresize_half_matlab_kernel():
    ramp = np.tile(np.arange(40.0), (12, 1))
    out = niqe_mod.imresize_half(ramp)
    assert out.shape == (6, 20)
    # away from the borders the antialiased bicubic kernel is exact on linear ramps:
    # output j sits at input coordinate 2j + 0.5
    assert np.allclose(out[:, 2:-2], (2 * np.arange(20) + 0.5)[2:-2])
    assert np.allclose(niqe_mod.imresize_half(np.full((9, 11), 7.0)), 7.0)
    assert niqe_mod.imresize_half(np.ones((9, 11))).shape == (5, 6)


def test_pristine_model_file():
    model = niqe_mod.load_pristine()
    assert model["mu"].shape == (36,) and model["cov"].shape == (36, 36)
    assert np.isfinite(model["mu"]).all() and np.allclose(model["cov"], model["cov"].T)
    assert str(model["label"]) == NIQE_LABEL == "NIQE (this project's pristine model)"
    assert "chelsea" not in list(model["images"]) and "chelsea" in list(model["held_out"])
    assert int(model["n_patches"]) == int(model["patches_per_image"].sum()) >= 200


def test_niqe_prefers_clean_over_rain_and_noise(chelsea):
    clean = niqe(chelsea)
    rainy = niqe(add_rain(chelsea))
    noisy = niqe(np.clip(chelsea + np.random.default_rng(1).normal(0, 0.05, chelsea.shape), 0, 1))
    blurred = niqe(ndimage.gaussian_filter(chelsea, (1.5, 1.5, 0)))
    assert np.isfinite([clean, rainy, noisy, blurred]).all()
    assert clean < rainy and clean < noisy and clean < blurred, (clean, rainy, noisy, blurred)


def test_niqe_edge_cases(chelsea):
    assert math.isnan(niqe(chelsea[:80, :200]))  # below 96 px on a side
    small = niqe(chelsea[:150, :150])  # fewer than 6 blocks: overlapping blocks
    assert np.isfinite(small)
    assert math.isnan(niqe(np.full((128, 128, 3), 0.5)))  # flat: AGGD fits undefined
    gray = chelsea @ np.array([0.2989, 0.5870, 0.1140])
    assert niqe(gray) == pytest.approx(niqe(chelsea), rel=1e-3)


def test_piqe_prefers_clean_over_rain_and_noise(chelsea):
    clean = piqe(chelsea)
    rainy = piqe(add_rain(chelsea))
    noisy = piqe(np.clip(chelsea + np.random.default_rng(1).normal(0, 0.05, chelsea.shape), 0, 1))
    assert 0 <= clean < rainy <= 100 and clean < noisy <= 100, (clean, rainy, noisy)


def test_piqe_reference_values():
    """Golden numbers from pypiqe 1.2 (a port of MATLAB piqe), computed once offline."""
    cam = data.camera() / 255.0
    assert piqe(cam) == pytest.approx(40.13740180655487, abs=1e-6)
    assert piqe(cam[:100, :150]) == pytest.approx(61.14065956148579, abs=1e-6)  # padded to 112x160
    assert piqe(data.chelsea() / 255.0) == pytest.approx(33.44504040741169, abs=1e-6)
    assert piqe(np.full((64, 64, 3), 0.3)) == 100.0


def test_compute_metrics_keys(chelsea):
    img = chelsea[:128, :160]
    out = compute_metrics(img)
    assert set(out) == {"niqe", "piqe"}
    gt = np.clip(img + 0.02, 0, 1)
    full = compute_metrics(img, gt)
    assert set(full) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "delta_e", "niqe", "piqe"}
    assert full["psnr_rgb"] == pytest.approx(psnr(img, gt)) and full["ssim_y"] == pytest.approx(ssim(img, gt, on="y"))
    assert full["niqe"] == out["niqe"]
    assert math.isinf(compute_metrics(img, img)["psnr_rgb"])


@pytest.mark.slow
def test_fit_script_reproduces_pristine_file():
    spec = importlib.util.spec_from_file_location("fit_niqe", ROOT / "scripts" / "fit_niqe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fit, shipped = mod.fit(), niqe_mod.load_pristine()
    assert sorted(fit) == sorted(shipped)
    for key, ref in shipped.items():
        got = np.asarray(fit[key])
        if ref.dtype.kind == "f":  # float rounding differs across CPUs (BLAS kernels): 1e-16 here
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12, err_msg=key)
        else:
            assert np.array_equal(got, ref), key
    # the writer itself is byte-reproducible
    assert niqe_mod.pristine_npz_bytes(shipped) == niqe_mod.pristine_npz_bytes(niqe_mod.load_pristine())
