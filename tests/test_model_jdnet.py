"""JDNet-specific reference checks: SAN pairwise attention against a per-pixel loop and the
unfold formula of the official test code, official module names and sizes, exit activation,
self-calibration gate, and the no-autograd fast paths against the autograd ones."""
import contextlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import derain_core as dc
from derain_core.base import Recorder
from derain_core.blocks import PairwiseSelfAttention, position_grid
from derain_core.models.jdnet import SCConv, detail_units


def _attention(in_planes=8, rel=2, out=8, share=2, k=7, seed=0) -> PairwiseSelfAttention:
    """A block with random, larger-than-default weights so that the softmax is peaked."""
    torch.manual_seed(seed)
    m = PairwiseSelfAttention(in_planes, rel, out, share, k)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
        m.conv_w[2].weight.mul_(3)
    return m


def _naive(m: PairwiseSelfAttention, x: torch.Tensor) -> np.ndarray:
    """SAN pairwise attention written per pixel and per footprint entry (float64)."""
    def mat(conv):
        return conv.weight.detach().double().numpy()[:, :, 0, 0]

    def bias(conv):
        return conv.bias.detach().double().numpy()

    xs = x[0].detach().double().numpy()  # (C, H, W)
    _, h, w = xs.shape
    k = m.kernel_size
    pad = k // 2
    phi = np.einsum("oc,chw->ohw", mat(m.conv1), xs) + bias(m.conv1)[:, None, None]
    psi = np.einsum("oc,chw->ohw", mat(m.conv2), xs) + bias(m.conv2)[:, None, None]
    beta = np.einsum("oc,chw->ohw", mat(m.conv3), xs) + bias(m.conv3)[:, None, None]
    grid = np.stack([np.broadcast_to(np.linspace(-1, 1, w)[None, :], (h, w)),
                     np.broadcast_to(np.linspace(-1, 1, h)[:, None], (h, w))])
    pos = np.einsum("oc,chw->ohw", mat(m.conv_p), grid) + bias(m.conv_p)[:, None, None]
    g1, g2, g2b = mat(m.conv_w[1]), mat(m.conv_w[2]), bias(m.conv_w[2])
    cw = g2.shape[0]

    def reflect(i, n):  # the official *_refpad kernels' index rule
        i = -i if i < 0 else i
        return 2 * (n - 1) - i if i >= n else i

    out = np.zeros((beta.shape[0], h, w))
    for i in range(h):
        for j in range(w):
            logits, src = [], []
            for a in range(k):
                for b in range(k):
                    si, sj = reflect(i + a - pad, h), reflect(j + b - pad, w)
                    d = np.concatenate([phi[:, i, j] - psi[:, si, sj], pos[:, i, j] - pos[:, si, sj]])
                    d = np.where(d > 0, d, 0.2 * d)
                    logits.append(g2 @ (g1 @ d) + g2b)
                    src.append((si, sj))
            logits = np.stack(logits, axis=1)  # (cw, k*k)
            wts = np.exp(logits - logits.max(axis=1, keepdims=True))
            wts /= wts.sum(axis=1, keepdims=True)
            for c in range(beta.shape[0]):
                out[c, i, j] = sum(wts[c % cw, n] * beta[c, si, sj] for n, (si, sj) in enumerate(src))
    return out


def _unfold(m: PairwiseSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The unfold formula of the official aggregation test (architectures.md 1.6 (a))."""
    b, _, h, w = x.shape
    k = m.kernel_size

    def unf(t):
        return F.unfold(F.pad(t, [k // 2] * 4, mode="reflect"), k).view(*t.shape[:2], k * k, h * w)

    x1, x2, x3 = m.conv1(x), m.conv2(x), m.conv3(x)
    p = m.conv_p(position_grid(h, w, x))
    rel = x1.view(b, -1, 1, h * w) - unf(x2)
    pos = (p.view(1, 2, 1, h * w) - unf(p)).expand(b, -1, -1, -1)
    wts = torch.softmax(m.conv_w(torch.cat([rel, pos], 1)), dim=2)
    cw = wts.shape[1]
    v = unf(x3).view(b, -1, cw, k * k, h * w)
    return (wts.unsqueeze(1) * v).sum(3).view(b, -1, h, w)


@pytest.mark.parametrize("share", [8, 2])  # one weight channel (JDNet) / four (c mod 4)
@pytest.mark.parametrize("autograd", [False, True])
def test_pairwise_attention_matches_per_pixel_loop(share, autograd):
    m = _attention(share=share)
    torch.manual_seed(1)
    x = torch.randn(1, 8, 9, 10)
    with torch.set_grad_enabled(autograd):
        y = m(x)
    ref = _naive(m, x)
    assert y.shape == (1, 8, 9, 10)
    np.testing.assert_allclose(y[0].detach().double().numpy(), ref, atol=1e-5, rtol=0)


def test_pairwise_attention_matches_unfold_formula_batched():
    m = _attention(share=2, k=5, seed=3)
    torch.manual_seed(2)
    x = torch.randn(2, 8, 11, 7)
    with torch.no_grad():
        ref = _unfold(m, x)
        fast = m(x)
    slow = m(x)  # autograd path
    assert torch.allclose(fast, ref, atol=1e-5)
    assert torch.allclose(slow, ref, atol=1e-5)
    # batch items are independent (the position term is shared, not mixed)
    with torch.no_grad():
        assert torch.allclose(m(x[1:]), fast[1:], atol=1e-6)


def test_pairwise_attention_gradients():
    m = _attention(in_planes=3, rel=2, out=4, share=2, k=3, seed=4).double()
    x = torch.randn(1, 3, 5, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_attention_summaries_follow_from_full_weights():
    m = _attention(share=2)  # 4 weight channels
    x = torch.randn(1, 8, 12, 13)
    rec = Recorder(enabled=True, full=True)
    with torch.no_grad():
        m(x, rec)
    wts = rec.maps["attention.weights"]
    assert wts.shape == (1, 4, 49, 12, 13)
    assert torch.allclose(wts.sum(2), torch.ones(1, 4, 12, 13), atol=1e-5)
    assert torch.equal(rec.maps["attention.centre"], wts[:, :, 24])
    ent = rec.maps["attention.entropy"]
    assert 0 <= ent.min() and ent.max() <= 1 + 1e-6
    # expected offset: footprint entry n = 7*row + col sits at (col - 3, row - 3)
    dx = sum(wts[:, :, n] * (n % 7 - 3) for n in range(49))
    dy = sum(wts[:, :, n] * (n // 7 - 3) for n in range(49))
    assert torch.allclose(rec.maps["attention.shift"], torch.cat([dx, dy], 1), atol=1e-5)
    # summaries only by default
    rec = Recorder(enabled=True)
    with torch.no_grad():
        m(x, rec)
    assert "attention.weights" not in rec.maps and "attention.centre" in rec.maps


def test_position_grid_is_official():
    p = position_grid(3, 5, torch.zeros(1))
    assert p.shape == (1, 2, 3, 5)
    assert torch.equal(p[0, 0, 1], torch.linspace(-1, 1, 5))  # x along the width
    assert torch.equal(p[0, 1, :, 2], torch.linspace(-1, 1, 3))  # y along the height


def test_default_config_size_and_official_names():
    model = dc.create_model("jdnet")
    assert sum(p.numel() for p in model.parameters()) == 4_681_859  # architectures.md 6.6
    sd = model.state_dict()
    shapes = {
        "enterBlock.0.weight": (32, 3, 3, 3),
        "exitBlock.0.weight": (3, 32, 3, 3),
        "derain_net.conv1x1.0.0.weight": (32, 64, 1, 1),
        "derain_net.conv1x1.31.0.weight": (32, 33 * 32, 1, 1),
        "derain_net.units.31.san.bn1.running_var": (32,),
        "derain_net.units.0.san.sam.conv1.weight": (2, 32, 1, 1),
        "derain_net.units.0.san.sam.conv3.weight": (8, 32, 1, 1),
        "derain_net.units.0.san.sam.conv_w.1.weight": (2, 4, 1, 1),
        "derain_net.units.0.san.sam.conv_w.2.weight": (1, 2, 1, 1),
        "derain_net.units.0.san.sam.conv_p.weight": (2, 2, 1, 1),
        "derain_net.units.0.san.conv.weight": (32, 8, 1, 1),
        "derain_net.units.0.res_list.3.convert.0.weight": (32, 32, 3, 3),
        "derain_net.units.0.res_list.3.res.2.weight": (32, 32, 3, 3),
        "derain_net.units.0.conv11.0.weight": (32, 160, 1, 1),
        "derain_net.units.0.scn.conv1_a.weight": (16, 32, 1, 1),
        "derain_net.units.0.scn.k1.0.weight": (16, 16, 3, 3),
        "derain_net.units.0.scn.scconv.k2.1.weight": (16, 16, 3, 3),
        "derain_net.units.0.scn.scconv.k3.0.weight": (16, 16, 3, 3),
        "derain_net.units.0.scn.scconv.k4.0.weight": (16, 16, 3, 3),
        "derain_net.units.0.scn.conv3.weight": (32, 32, 1, 1),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "derain_net.units.32.san.bn1.weight" not in sd
    # no BatchNorm outside the self-attention bottleneck
    bns = {k.rsplit(".", 1)[0] for k in sd if k.endswith("running_mean")}
    assert all(k.endswith(("san.bn1", "san.bn2")) for k in bns) and len(bns) == 64


def _tiny(**over):
    torch.manual_seed(0)
    return dc.create_model("jdnet", **{**dc.get_card("jdnet").test_config, **over}).eval()


def test_exit_activation_and_detail_units():
    model = _tiny()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        clean, maps = model.forward_intermediates(x)
    lin = maps["rain.linear"]
    assert (lin < 0).any(), "random weights should give some negative pre-activation rain"
    assert torch.allclose(maps["rain"], F.leaky_relu(lin, 0.2), atol=1e-6)
    assert torch.allclose(clean, x - maps["rain"], atol=1e-6)
    n = model.unit_num
    assert detail_units(n) == (0, n // 2, n - 1) and detail_units(32) == (0, 16, 31)
    for u in range(n):
        assert f"unit{u}.san.attention.entropy" in maps
        assert (f"unit{u}.fusion" in maps) == (u in detail_units(n))
    # the full capture adds the 49-way weights of every unit
    with torch.no_grad():
        _, full = model.forward_intermediates(x, full=True)
    assert full["unit1.san.attention.weights"].shape == (1, 1, 49, 20, 24)


def test_default_map_set_is_bounded():
    specs = dc.create_model("jdnet").map_specs()
    assert 100 <= len(specs) <= 150
    groups = {s.group for s in specs}
    assert {"unit 0/attention", "unit 16/scale aggregation", "unit 31/self-calibration",
            "output"} <= groups


def test_self_calibration_gate_by_hand():
    # odd size: the official AvgPool2d(4) floors (18x22 -> 4x5) and nearest up-sampling
    # picks source row floor(i * 4 / 18)
    torch.manual_seed(5)
    sc = SCConv(4, 4)
    x = torch.randn(1, 4, 18, 22)
    rec = Recorder()
    with torch.no_grad():
        y = sc(x, rec)
        pooled = x.unfold(2, 4, 4).unfold(3, 4, 4).mean((-1, -2))  # (1, 4, 4, 5)
        ctx = F.conv2d(pooled, sc.k2[1].weight, sc.k2[1].bias, padding=1)
        rows, cols = (torch.arange(18) * 4) // 18, (torch.arange(22) * 5) // 22
        ctx = ctx[:, :, rows][:, :, :, cols]
        gate = torch.sigmoid(x + ctx)
        ref = F.leaky_relu(sc.k4[0](sc.k3[0](x) * gate), 0.2)
    assert torch.allclose(rec.maps["context"], ctx, atol=1e-6)
    assert torch.allclose(rec.maps["gate"], gate, atol=1e-6)
    assert torch.allclose(y, ref, atol=1e-6)


def test_inference_fast_paths_equal_autograd_paths():
    # no_grad uses in-place SAN and a preallocated dense buffer; grad mode uses the plain forms
    model = _tiny(unit_num=3)
    x = torch.rand(2, 3, 19, 26)
    with torch.no_grad():
        fast = model(x)
    slow = model(x)
    assert slow.requires_grad
    assert torch.allclose(fast, slow.detach(), atol=1e-5)


def test_scale_maps_are_ceil_halvings():
    model = _tiny(unit_num=1)
    with torch.no_grad():
        _, maps = model.forward_intermediates(torch.rand(1, 3, 33, 17))
    sizes = [tuple(maps[f"unit0.scale{i}"].shape[-2:]) for i in range(1, 5)]
    assert sizes == [(17, 9), (9, 5), (5, 3), (3, 2)]


def test_scale_fusion_equals_official_concat_form():
    # official: conv11(cat[x, up(X^1), .., up(X^4)]) with nearest up-sampling to (H, W)
    model = _tiny(unit_num=1)
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        _, maps = model.forward_intermediates(x)
        size = (37, 29)
        cat = torch.cat([maps["unit0.san.out"]] + [F.interpolate(maps[f"unit0.scale{i}"], size=size)
                                                    for i in range(1, 5)], dim=1)
        ref = model.derain_net.units[0].conv11(cat)
    assert torch.allclose(maps["unit0.fusion"], ref, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_kernels_equal_reference_kernels(channels_last):
    # fast: matrix-product attention logits, block buffers (3 groups of 2 blocks here),
    # per-scale fusion; reference: the plain module code, under reference_kernels()
    from derain_core.base import reference_kernels
    from derain_core.models.jdnet import DenseConnection
    model = _tiny(unit_num=5)
    x = torch.rand(2, 3, 21, 30)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), reference_kernels():
        ref = model(x)
    old = DenseConnection.group
    try:
        DenseConnection.group = 2
        with torch.inference_mode():
            fast = model(x)
    finally:
        DenseConnection.group = old
    assert torch.allclose(fast, ref, atol=1e-5)


@pytest.mark.parametrize("group", [2, 3])
def test_training_forms_equal_reference_forms_with_gradients(group):
    # autograd: hand-written attention backward passes, projected dense fusion (groups of 2
    # or 3 blocks here: with 3, open blocks are projected one by one), per-scale fusion;
    # reference: the plain module code. Outputs and every parameter's gradient agree.
    from derain_core.base import reference_kernels
    from derain_core.models.jdnet import DenseConnection
    model = _tiny(unit_num=5).double()
    x = torch.rand(2, 3, 17, 22, dtype=torch.double)

    def grads(ref: bool):
        model.zero_grad()
        with reference_kernels() if ref else contextlib.nullcontext():
            y = model(x)
        (y * torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    y_ref, g_ref = grads(True)
    old = DenseConnection.group
    try:
        DenseConnection.group = group
        y, g = grads(False)
    finally:
        DenseConnection.group = old
    assert torch.allclose(y, y_ref, atol=1e-10)
    assert g.keys() == g_ref.keys() and len(g) > 50
    for name in g:
        assert torch.allclose(g[name], g_ref[name], atol=1e-9, rtol=1e-7), name


def test_compiled_attention_equals_training_form():
    # `derain train` on CPU runs the SAN attention through torch.compile (compiled_blocks);
    # outputs and every gradient must match the hand-written training kernels. A 3x3
    # footprint keeps the compile short; the kernel is the same for any footprint.
    from derain_core import blocks
    from derain_core.base import compiled_blocks
    model = _tiny(unit_num=2, kernel_size=3).train()
    x = torch.rand(2, 3, 17, 22)

    def grads(compiled: bool):
        model.zero_grad()
        with compiled_blocks(compiled):
            y = model(x)
        (y * torch.linspace(-1, 2, y.numel()).view_as(y)).sum().backward()
        return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    y_ref, g_ref = grads(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a silent fall-back to eager fails here
        y, g = grads(True)
    assert blocks._COMPILED_ATTENTION and blocks._COMPILED_ATTENTION[0] is not None
    assert torch.allclose(y, y_ref, atol=1e-5)
    assert g.keys() == g_ref.keys() and len(g) > 20
    for name in g:
        assert torch.allclose(g[name], g_ref[name], atol=1e-5, rtol=1e-4), name
