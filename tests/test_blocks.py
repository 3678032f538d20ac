"""Reference checks of the shared blocks."""
import torch

from derain_core import blocks, losses
from derain_core.base import Recorder


def test_haar_dwt_reconstructs_exactly():
    x = torch.rand(2, 5, 10, 14, dtype=torch.float64)
    bands = blocks.haar_dwt(x)
    assert all(b.shape == (2, 5, 5, 7) for b in bands)
    assert torch.allclose(blocks.haar_idwt(*bands), x, atol=1e-12)
    # orthonormal: energy is preserved
    assert torch.allclose(sum((b ** 2).sum() for b in bands), (x ** 2).sum())


def test_haar_band_convention():
    # a vertical edge (columns differ) shows in HL only; a horizontal edge (rows differ) in LH only
    vertical = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    ll, lh, hl, hh = blocks.haar_dwt(vertical)
    assert lh.item() == 0 and hh.item() == 0 and hl.item() == 1.0 and ll.item() == 1.0
    horizontal = vertical.transpose(-1, -2)
    ll, lh, hl, hh = blocks.haar_dwt(horizontal)
    assert hl.item() == 0 and hh.item() == 0 and lh.item() == 1.0


def test_spp_anchor_count():
    assert blocks.spp_anchors(torch.rand(2, 4, 16, 24)).shape == (2, 4, 110)


def test_subspace_maps_sum_to_one():
    rec = Recorder()
    att = blocks.SubspaceAttention(16, groups=8)
    y = att(torch.rand(1, 16, 12, 10), rec)
    assert y.shape == (1, 16, 12, 10)
    maps = rec.maps["subspace_att"] / (12 * 10)
    assert torch.allclose(maps.sum(dim=(2, 3)), torch.ones(1, 8), atol=1e-5)


def test_convlstm_zero_state_shape():
    cell = blocks.ConvLSTMCell(4, 6)
    h, (h2, c) = cell(torch.rand(2, 4, 8, 8))
    assert h.shape == c.shape == (2, 6, 8, 8) and torch.equal(h, h2)


def test_ssim_loss_identical_is_one():
    x = torch.rand(1, 3, 24, 24)
    assert abs(losses.ssim(x, x).item() - 1.0) < 1e-6
    assert losses.ssim(x, torch.rand_like(x)).item() < 0.5


def test_charbonnier_and_edge():
    x = torch.rand(1, 3, 16, 16)
    assert abs(losses.charbonnier(x, x).item() - 1e-3) < 1e-7
    assert losses.edge_loss(x, x).item() < 1.01e-3
    assert losses.edge_loss(x, torch.rand_like(x)).item() > 0.01


def test_max_pooling_for_attention_equals_amax_and_routes_the_gradient_to_one_maximum():
    from derain_core.blocks import _max_keepdim
    x = torch.tensor([[[[1.0]], [[3.0]], [[3.0]], [[2.0]]]], requires_grad=True)  # a tie over channels
    y = _max_keepdim(x, 1)
    assert torch.equal(y, x.amax(dim=1, keepdim=True))
    y.sum().backward()
    assert x.grad.sum().item() == 1.0 and sorted(x.grad.flatten().tolist()) == [0.0, 0.0, 0.0, 1.0]


def test_rlcn_in_strips_equals_the_whole_image():
    # tall images are normalised strip by strip (bounded memory on phone photos): each strip
    # carries the window's halo, so the numbers and the gradients are the whole image's
    x = torch.rand(2, 3, 100, 70, dtype=torch.float64, requires_grad=True)
    whole = blocks.rlcn(x, rows=1000)
    (g_whole,) = torch.autograd.grad(whole.square().sum(), x)
    for rows in (16, 37):
        strips = blocks.rlcn(x, rows=rows)
        (g_strips,) = torch.autograd.grad(strips.square().sum(), x)
        assert torch.allclose(strips, whole, atol=1e-12) and torch.allclose(g_strips, g_whole, atol=1e-12)
    cl = x.detach().float().contiguous(memory_format=torch.channels_last)
    assert torch.equal(blocks.rlcn(cl, rows=16), blocks.rlcn(cl, rows=1000))
    assert not torch.equal(blocks.rlcn(cl, rows=16, window=3), blocks.rlcn(cl, rows=16))  # the window is used
