"""CUDA checks, marked ``gpu``: they run on a GPU machine and are skipped elsewhere.

    pytest -m gpu tests/test_cuda.py          (on the GPU machine)

The CPU suite covers the same logic without a GPU: the out-of-memory retry is simulated in
``test_oom_retry_halves_the_tile`` below, fast-vs-reference in tests/test_fast_path.py.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import derain_core as dc
from derain_core.engine import MODELS, choose_precision, psnr_db, run_model

IDS = [c.id for c in dc.list_models()]


def _photo(h: int, w: int, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 3, max(h // 8, 2), max(w // 8, 2), generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    img[..., :, ::11] = (img[..., :, ::11] + 0.3).clamp(0, 1)  # streaks
    return img.to(device)


class _SmallMemoryNet(torch.nn.Module):
    """Raises CUDA's out-of-memory error above ``limit`` pixels, like a GPU with little memory."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.sizes = net, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_oom_retry_halves_the_tile():
    """CPU: the engine's out-of-memory loop halves the tile until it fits, then tiles."""
    loaded = MODELS.get("dsmnet", None, "cpu")
    small = _SmallMemoryNet(loaded.net, limit=100 * 100)
    x = _photo(160, 192)
    whole, _ = run_model(loaded, x, tile=0)
    y, used = run_model(dataclasses.replace(loaded, net=small), x, tile=0)
    assert used == 96  # the whole 160x192 ran out of memory, tiles of 96 fit
    assert small.sizes[0] == (160, 192)  # the whole image was tried first
    assert psnr_db(y, whole) > 35


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model_id", IDS)
def test_precision_choice_on_cuda(model_id):
    card = dc.get_card(model_id)
    loaded = MODELS.get(model_id, None, "cuda")
    expected = ("bf16" if card.supports_bf16 and torch.cuda.is_bf16_supported()
                else "fp16" if card.supports_fp16 else "fp32")
    assert loaded.precision == expected == choose_precision(card, torch.device("cuda"))
    y, _ = run_model(loaded, _photo(64, 96, "cuda"), tile=0)
    assert torch.isfinite(y).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model_id", IDS)
def test_fast_matches_reference_on_cuda(model_id):
    fast = MODELS.get(model_id, None, "cuda", fast=True)
    ref = MODELS.get(model_id, None, "cuda", fast=False)
    x = _photo(96, 128, "cuda")
    y_fast, _ = run_model(fast, x, tile=0)
    y_ref, _ = run_model(ref, x, tile=0)
    assert psnr_db(y_fast, y_ref) >= 45.0, f"{model_id} ({fast.precision})"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_oom_retry_under_a_real_memory_cap():
    """CUDA: with the allocator capped between the tiled and the whole-image peak, a whole-image
    request runs out of memory and the engine finishes it in tiles."""
    loaded = MODELS.get("dsmnet", None, "cuda")
    x = _photo(1536, 1536, "cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    whole, used = run_model(loaded, x, tile=0)
    assert used is None
    peak_whole = torch.cuda.max_memory_allocated() - base
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run_model(loaded, x, tile=384)
    peak_tiled = torch.cuda.max_memory_allocated() - base
    assert peak_tiled < peak_whole / 2
    total = torch.cuda.get_device_properties(0).total_memory
    cap = base + whole.numel() * 4 + (peak_tiled + peak_whole) // 2
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        y, used = run_model(loaded, x, tile=0)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert used is not None and used < 1536
    assert psnr_db(y, whole) > 35
