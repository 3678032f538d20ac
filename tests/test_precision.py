"""Precision-sensitive spots compute in float32 under bf16 and fp16 autocast (training and inference).

Each spot is computed twice from the same inputs: once under autocast, once in plain float32.
They must agree to float32 rounding (and be float32), which fails if any op inside is downcast.
"""
import pytest
import torch

from derain_core.blocks import PairwiseSelfAttention, SubspaceAttention, position_grid, rlcn
from derain_core.models.mfan import ChannelCSSAB
from derain_core.registry import create_model

DTYPES = [torch.bfloat16, torch.float16]


def _autocast(dtype):
    return torch.autocast("cpu", dtype=dtype)


def _softmax_dtypes(module, x, dtype) -> list:
    """The input dtypes of every torch.softmax call while ``module(x)`` runs under autocast."""
    seen, real = [], torch.softmax

    def spy(t, dim):
        seen.append(t.dtype)
        return real(t, dim)

    torch.softmax = spy
    try:
        with _autocast(dtype):
            module(x)
    finally:
        torch.softmax = real
    return seen


@pytest.mark.parametrize("dtype", DTYPES)
def test_rlcn_is_float32_under_autocast(dtype):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 56)
    ref = rlcn(x, clamp=False)
    for inp in (x, x.to(dtype)):  # a reduced-precision input is upcast first
        with _autocast(dtype):
            out = rlcn(inp, clamp=False)
        assert out.dtype == torch.float32
        if inp.dtype == torch.float32:
            torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rranet_rlcn_image_is_exact_under_autocast(dtype):
    net = create_model("rranet", channels=8, stages=1)
    x = torch.rand(1, 3, 32, 48)
    ref = net.rlcn_image(x)
    with _autocast(dtype):
        out = net.rlcn_image(x)
    torch.testing.assert_close(out.float(), ref, rtol=1e-6, atol=1e-6)


def test_position_grid_is_float32_for_reduced_precision_inputs():
    like = torch.zeros(1, dtype=torch.bfloat16)
    grid = position_grid(5, 481, like)
    assert grid.dtype == torch.float32
    # 481 distinct x positions: in bf16 neighbours near +-1 would round to the same value
    assert torch.unique(grid[0, 0, 0]).numel() == 481


@pytest.mark.parametrize("dtype", DTYPES)
def test_jdnet_positions_are_float32_under_autocast(dtype):
    torch.manual_seed(0)
    m = PairwiseSelfAttention(8, 2, 8, 2, 7)
    x = torch.rand(1, 8, 24, 300)
    ref, ref_pad = m.positions(24, 300, x)
    with _autocast(dtype):
        pos, pos_pad = m.positions(24, 300, x.to(dtype))
    assert pos.dtype == pos_pad.dtype == torch.float32
    torch.testing.assert_close(pos, ref, rtol=0, atol=0)
    torch.testing.assert_close(pos_pad, ref_pad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jdnet_attention_softmax_is_float32_under_autocast(dtype):
    """The autograd (training) form: logits may be bf16, the softmax weights are float32."""
    torch.manual_seed(0)
    m = PairwiseSelfAttention(8, 2, 8, 2, 3)
    x = torch.rand(1, 8, 12, 12, requires_grad=True)
    assert _softmax_dtypes(m, x, dtype) == [torch.float32]


@pytest.mark.parametrize("dtype", DTYPES)
def test_mfan_channel_attention_is_float32_under_autocast(dtype):
    torch.manual_seed(0)
    m = ChannelCSSAB(16, heads=4)
    al, as_ = torch.randn(2, 16, 110, 1), torch.randn(2, 16, 110, 1)
    with _autocast(dtype):
        att = m.channel_attention(al.to(dtype), as_.to(dtype))
    assert att.dtype == torch.float32
    # the inputs were rounded to dtype; everything after that is float32
    exp = m.channel_attention(al.to(dtype).float(), as_.to(dtype).float())
    torch.testing.assert_close(att, exp, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mfan_spatial_similarity_is_float32_under_autocast(dtype):
    from derain_core.models.mfan import spatial_attention_fast

    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 8, 300), torch.randn(1, 4, 8, 110), torch.randn(1, 4, 8, 110)
    ref = spatial_attention_fast(q, k, v, chunk=64, use_sdpa=False)
    with _autocast(dtype):
        out = spatial_attention_fast(q, k, v, chunk=64, use_sdpa=False)
    torch.testing.assert_close(out.float(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulsam_softmax_is_float32_under_autocast(dtype):
    """DSM-Net's subspace attention: a softmax over all H*W positions, computed in float32."""
    torch.manual_seed(0)
    m = SubspaceAttention(16, groups=8)
    x = torch.rand(1, 16, 32, 32)
    assert _softmax_dtypes(m, x, dtype) == [torch.float32]
