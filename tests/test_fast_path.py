"""The fast path (channels_last, bf16/fp16 where the card allows it, the inference-only kernels)
stays within 45 dB of the reference path (fp32, NCHW, plain module code), with the shipped
weights of every model, on a real rainy photo and on a synthetic pattern."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import derain_core as dc
from derain_core.engine import MODELS, choose_precision, psnr_db, run_model

IDS = [c.id for c in dc.list_models()]


def photo_like(h: int = 48, w: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    coarse = torch.rand(1, 3, h // 6, w // 6, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    streaks = torch.zeros(1, 1, h, w)
    for c in range(3, w, 9):
        streaks[..., :, c] = 0.25
    return (img.clamp(0, 1) * 0.8 + streaks).clamp(0, 1)


def rainy_photo_crop(h: int = 72, w: int = 96) -> torch.Tensor:
    """A crop of a shipped example (real photo with synthetic heavy rain)."""
    path = Path(__file__).resolve().parent.parent / "assets/examples/astronaut_heavy_rainy.png"
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[100:100 + h, 150:150 + w] / 255
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("image", ["rainy photo", "synthetic"])
@pytest.mark.parametrize("model_id", IDS)
def test_fast_path_matches_reference(model_id, image, device):
    fast = MODELS.get(model_id, None, device, fast=True)
    ref = MODELS.get(model_id, None, device, fast=False)
    assert ref.precision == "fp32" and fast.variant == ref.variant
    x = (rainy_photo_crop() if image == "rainy photo" else photo_like()).to(device)
    y_fast, _ = run_model(fast, x, tile=0)
    y_ref, _ = run_model(ref, x, tile=0)
    assert y_fast.shape == y_ref.shape == x.shape
    assert psnr_db(y_fast, y_ref) >= 45.0, f"{model_id} ({fast.precision}, {fast.variant})"


@pytest.mark.parametrize("model_id", IDS)
def test_half_precision_only_where_card_allows(model_id):
    card = dc.get_card(model_id)
    p = choose_precision(card, torch.device("cpu"))
    assert p in ("fp32", "bf16")
    if not card.supports_bf16:
        assert p == "fp32"


@pytest.mark.parametrize("model_id", [m for m in IDS if dc.get_card(m).supports_fp16])
def test_fp16_cards_hold_45db_under_cpu_autocast(model_id):
    """The fp16 flag is for CUDA; on a CPU-only machine fp16 autocast is the closest check of
    the same numerics (the CUDA check is test_fast_path_matches_reference on a GPU)."""
    ref = MODELS.get(model_id, None, "cpu", fast=False)
    x = rainy_photo_crop(48, 64)
    y_ref, _ = run_model(ref, x, tile=0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        y16 = ref.net(x).float().clamp(0, 1)
    assert psnr_db(y16, y_ref) >= 45.0, model_id


@pytest.mark.parametrize("model_id", [m for m in IDS if dc.get_card(m).supports_bf16])
def test_bf16_cards_hold_45db_on_a_whole_rainy_photo(model_id):
    """bf16 errors grow with image size and depth; check a whole 481x321 photo, not just a crop."""
    path = Path(__file__).resolve().parent.parent / "assets/examples/astronaut_heavy_rainy.png"
    img = Image.open(path).convert("RGB").resize((241, 161))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    ref = MODELS.get(model_id, None, "cpu", fast=False)
    y_ref, _ = run_model(ref, x, tile=0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = ref.net(x).float().clamp(0, 1)
    assert psnr_db(y16, y_ref) >= 45.0, model_id
