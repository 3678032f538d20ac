"""The fast path (channels_last, bf16/fp16 where the card allows it) stays within 45 dB of the
reference path (fp32, NCHW, plain module code), with the shipped weights of every model."""
import pytest
import torch

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


@pytest.mark.parametrize("model_id", IDS)
def test_fast_path_matches_reference(model_id, device):
    fast = MODELS.get(model_id, None, device, fast=True)
    ref = MODELS.get(model_id, None, device, fast=False)
    assert ref.precision == "fp32" and fast.variant == ref.variant
    x = photo_like().to(device)
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
