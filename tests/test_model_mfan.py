"""MFAN-specific reference checks (small configs, CPU)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import derain_core as dc
from derain_core.base import Recorder
from derain_core.blocks import SPP_ANCHORS, haar_dwt, spp_anchors
from derain_core.models.mfan import (ChannelCSSAB, SpatialCSSAB, frcb, spatial_attention_explicit,
                                     spatial_attention_fast)


def tiny():
    torch.manual_seed(0)
    return dc.create_model("mfan", **dc.get_card("mfan").test_config).eval()


def test_pyramid_kernel_is_binomial_and_sizes():
    model = tiny()
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    expected = torch.outer(b, b) / 256
    k = model.pyramid.kernel.detach()
    assert k.shape == (3, 1, 5, 5)
    for c in range(3):
        assert torch.equal(k[c, 0], expected)
    assert torch.allclose(k.sum(dim=(1, 2, 3)), torch.ones(3))

    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        _, maps = model.forward_intermediates(x)
    assert maps["pyramid.I1"].shape == (1, 3, 37, 53)
    assert torch.equal(maps["pyramid.I1"], x)
    assert maps["pyramid.I2"].shape == (1, 3, 19, 27)
    assert maps["pyramid.I3"].shape == (1, 3, 10, 14)
    assert maps["pyramid.kernel"].shape == (1, 3, 5, 5)

    # On the padded frame: H/2, H/4, and every pixel is the reflect-padded 5x5 binomial
    # average of the level above, taken at even positions (numpy reference).
    xp = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        levels = model.pyramid(xp)
    assert [tuple(t.shape[-2:]) for t in levels] == [(16, 24), (8, 12), (4, 6)]
    for src, dst in zip(levels[:-1], levels[1:]):
        a = np.pad(src[0].numpy(), ((0, 0), (2, 2), (2, 2)), mode="reflect")
        ref = np.zeros(dst.shape[1:], dtype=np.float64)
        for i in range(dst.shape[-2]):
            for j in range(dst.shape[-1]):
                ref[:, i, j] = (a[:, 2 * i:2 * i + 5, 2 * j:2 * j + 5] * expected.numpy()).sum(axis=(1, 2))
        np.testing.assert_allclose(dst[0].numpy(), ref, atol=1e-6)
    # a normalised kernel keeps a constant image constant
    with torch.no_grad():
        flat = model.pyramid(torch.full((1, 3, 16, 16), 0.3))
    assert torch.allclose(flat[2], torch.full_like(flat[2], 0.3), atol=1e-6)


def test_frcb_is_pixel_shuffled_haar_bands_in_order():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 10)
    out = frcb(x)
    bands = haar_dwt(x)  # LL, LH, HL, HH
    # explicit index arithmetic: channel g*C/4 + k at (2i+a, 2j+b) = band g, channel 4k+2a+b, (i, j)
    expected = torch.empty_like(x)
    for g in range(4):
        for k in range(2):
            for a in range(2):
                for b in range(2):
                    expected[:, g * 2 + k, a::2, b::2] = bands[g][:, 4 * k + 2 * a + b]
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out, torch.cat([F.pixel_shuffle(t, 2) for t in bands], 1), atol=1e-6)

    # band order: constant -> LL only, alternating rows -> LH only, columns -> HL, checkerboard -> HH
    i = torch.arange(6).view(6, 1).expand(6, 10)
    j = torch.arange(10).view(1, 10).expand(6, 10)
    patterns = [torch.ones(6, 10), (-1.0) ** i, (-1.0) ** j, (-1.0) ** (i + j)]
    for g, pattern in enumerate(patterns):
        y = frcb(pattern.expand(1, 8, 6, 10).contiguous())
        energy = y.view(4, 2, 6, 10).abs().sum(dim=(1, 2, 3))
        assert energy[g] > 0 and torch.count_nonzero(energy) == 1, (g, energy)

    with pytest.raises(ValueError):
        frcb(torch.randn(1, 8, 5, 6))


def _naive_attention(q, k, v, scale):
    """softmax_anchors(scale * Q_g^T K_g) V_g^T, one band group at a time."""
    out = torch.empty_like(q)
    for bi in range(q.shape[0]):
        for g in range(q.shape[1]):
            m = torch.softmax(scale * q[bi, g].T.double() @ k[bi, g].double(), dim=1)  # (N, S)
            out[bi, g] = (m @ v[bi, g].T.double()).T.float()
    return out


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_fast_attention_equals_explicit(scale):
    torch.manual_seed(0)
    q = torch.randn(2, 4, 8, 37) * 2
    k = torch.randn(2, 4, 8, SPP_ANCHORS) * 2
    v = torch.randn(2, 4, 8, SPP_ANCHORS)
    ref = _naive_attention(q, k, v, scale)
    explicit, summary = spatial_attention_explicit(q, k, v, scale, chunk=5, full=True)
    chunked = spatial_attention_fast(q, k, v, scale, chunk=7)
    sdpa = spatial_attention_fast(q, k, v, scale, use_sdpa=True)
    assert torch.allclose(explicit, ref, atol=1e-5)
    assert torch.allclose(chunked, explicit, atol=1e-5)
    assert torch.allclose(sdpa, explicit, atol=1e-5)
    assert summary["similarity"].shape == (2, 4, 37, SPP_ANCHORS)


def test_spatial_cssab_fast_path_equals_recording_path():
    torch.manual_seed(0)
    block = SpatialCSSAB(16, detail=True).eval()
    block.chunk = 7
    xl, xs = torch.randn(1, 16, 8, 12), torch.randn(1, 16, 4, 6)
    with torch.no_grad():
        fast = block(xl, xs, Recorder.off())
        rec = Recorder()
        slow = block(xl, xs, rec)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert set(rec.maps) == {"frcb_q.LL", "frcb_q.LH", "frcb_q.HL", "frcb_q.HH", "similarity.entropy",
                             "similarity.argmax", "group_maps"}
    assert torch.allclose(rec.maps["frcb_q.HL"], haar_dwt(block.q(xl))[2].detach())
    # reference from the definition: Q = FRCB(q(X_L)), K, V = SPP(FRCB(k/v(X_S))), per band group
    with torch.no_grad():
        q = frcb(block.q(xl)).view(1, 4, 4, 96)
        k = spp_anchors(frcb(block.k(xs))).view(1, 4, 4, SPP_ANCHORS)
        v = spp_anchors(frcb(block.v(xs))).view(1, 4, 4, SPP_ANCHORS)
        ref = xl + block.proj(_naive_attention(q, k, v, 1.0).view(1, 16, 8, 12))
    assert torch.allclose(fast, ref, atol=1e-5)


def test_similarity_summary_matches_full_matrix():
    model = tiny()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        clean, full = model.forward_intermediates(x, full=True)
        _, default = model.forward_intermediates(x)
    assert torch.allclose(clean, model(x), atol=1e-5)
    for spec in model.map_specs(full=True):
        assert tuple(full[spec.key].shape) == spec.shape(1, 37, 53), spec.key
    assert not any(key.endswith(".similarity") for key in default), "full matrices only on demand"
    prefixes = [k[:-len("similarity")] for k in full if k.endswith(".similarity")]
    assert len(prefixes) == 3 + 3 * model.num_modules
    for p in prefixes:
        sim = full[p + "similarity"]
        b, _, h, w = sim.shape
        m = sim.view(b, 4, SPP_ANCHORS, h, w)
        assert torch.allclose(m.sum(dim=2), torch.ones(b, 4, h, w), atol=1e-5)
        entropy = -(m * m.clamp_min(1e-30).log()).sum(dim=2) / math.log(SPP_ANCHORS)
        assert torch.allclose(full[p + "similarity.entropy"], entropy, atol=1e-5), p
        assert torch.equal(full[p + "similarity.argmax"], m.argmax(dim=2).float()), p
        if p + "similarity.entropy" in default:
            assert torch.allclose(default[p + "similarity.entropy"], entropy, atol=1e-6)


def test_channel_cssab_reference():
    torch.manual_seed(0)
    block = ChannelCSSAB(16, heads=4).eval()
    xl, xs = torch.randn(1, 16, 6, 8), torch.randn(1, 16, 3, 4)
    rec = Recorder()
    with torch.no_grad():
        out = block(xl, xs, rec)
        # definition with the convs on the full maps, SPP afterwards
        q = spp_anchors(block.q(xl)).view(4, 4, SPP_ANCHORS)
        k = spp_anchors(block.k(xs)).view(4, 4, SPP_ANCHORS)
        v = block.v(xl).view(4, 4, 48)
        o = torch.empty(4, 4, 48)
        att = torch.empty(4, 4, 4)
        for hd in range(4):
            a = torch.softmax(k[hd] @ q[hd].T, dim=0)  # rows i = key channel, softmax over i
            att[hd] = a
            for j in range(4):
                o[hd, j] = (a[:, j:j + 1] * v[hd]).sum(dim=0)
        ref = xl + block.proj(o.view(1, 16, 6, 8))
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(rec.maps["head_att"][0], att, atol=1e-6)
    assert torch.allclose(rec.maps["head_att"].sum(dim=2), torch.ones(1, 4, 4), atol=1e-6)
    assert torch.allclose(rec.maps["head_maps"][0], o.abs().mean(dim=1).view(4, 6, 8), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(block(xl, xs, Recorder.off()), out, atol=1e-6)


def test_default_config_size_and_map_budget():
    card = dc.get_card("mfan")
    assert card.size_multiple == 8 and card.default_config["channels"] == 64
    model = dc.create_model("mfan")
    assert sum(p.numel() for p in model.parameters()) == 5_434_766  # architectures.md 4.11
    specs = model.map_specs()
    assert len(specs) <= 150
    assert len({s.key for s in model.map_specs(full=True)}) > len(specs)
    groups = {s.group for s in specs}
    assert {"pyramid", "entrance/scale 1", "module 8/scale 3/channel CSSAB",
            "module 8/scale 3/spatial CSSAB", "output"} <= groups


def test_smallest_input_and_gradient_reaches_pyramid_kernel():
    model = tiny().train()
    x = torch.rand(1, 3, 16, 21)
    out = model.training_outputs(x)["output"]
    assert out.shape == x.shape
    out.mean().backward()
    assert model.pyramid.kernel.grad is not None and model.pyramid.kernel.grad.abs().sum() > 0


def test_fusion_slope_keeps_gradients_through_a_dead_fusion():
    """With every fusion pre-activation negative (the collapse seen in training), ReLU passes no
    gradient to the layers before the output conv; fusion_slope > 0 still does. Slope 0 is ReLU."""
    x = torch.rand(1, 3, 32, 32)
    grads = {}
    for slope in (0.0, 0.2):
        torch.manual_seed(0)
        model = dc.create_model("mfan", **{**dc.get_card("mfan").test_config, "fusion_slope": slope}).train()
        with torch.no_grad():
            for conv in model.fuse:
                conv.bias.fill_(-100.0)  # dead: every unit negative
        model.training_outputs(x)["output"].mean().backward()
        grads[slope] = model.fuse[0].weight.grad.abs().sum().item()
    assert grads[0.0] == 0.0 and grads[0.2] > 0
    torch.manual_seed(0)
    relu = tiny()
    torch.manual_seed(0)
    zero = dc.create_model("mfan", **{**dc.get_card("mfan").test_config, "fusion_slope": 0.0}).eval()
    with torch.no_grad():
        assert torch.equal(relu(x), zero(x))
