"""DSM-Net-specific reference checks (architectures.md section 3, paper eqs. 2-11)."""
import pytest
import torch
import torch.nn as nn

import derain_core as dc
from derain_core.models.dsmnet import CADB, KERNELS, MAB

SPEC_PARAMS = 1_408_403  # architectures.md 3.7 (C=32, 4+3+3 MABs)
SPEC_MAB_PARAMS = 131_848
SPEC_CADB_PARAMS = 11_688


def tiny(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return dc.create_model("dsmnet", **{**dc.get_card("dsmnet").test_config, **changes})


def expected_params(c: int, mabs: tuple[int, int, int], g: int = 8, r: int = 8) -> int:
    """Parameter count written out layer by layer from the spec (3.1-3.3)."""
    conv = lambda cin, cout, k, groups=1: cin // groups * cout * k * k + cout  # noqa: E731
    cadb = (conv(c, c, 3) + 2 * c * (c // r)  # conv3x3, bias-free CBAM MLP
            + conv(c, c, 1, groups=c) + conv(c, g, 1, groups=g)  # ULSAM (no BN)
            + conv(2 * c, c, 1))
    mab = 3 * sum(conv(c, c, k) for k in KERNELS) + conv(3 * c, c, 1) + conv(c, c, 3) + cadb
    rows = sum(n * mab + sum(conv((k + 2) * c, c, 1) for k in range(n)) for n in mabs)
    fusions = 4 * (conv(2 * c, c, 1) + cadb)
    return conv(3, c, 3) + rows + fusions + conv(c, 3, 3)


def test_default_parameter_count_matches_spec():
    # The spec counted exactly this layer list (no free width choice is left), so the
    # tolerance is zero: any difference means the wiring deviates from section 3.
    with torch.device("meta"):
        model = dc.create_model("dsmnet")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == SPEC_PARAMS
    assert count(model.rows[0].mabs[0]) == SPEC_MAB_PARAMS
    assert count(model.rows[0].mabs[0].cadb) == SPEC_CADB_PARAMS
    assert expected_params(32, (4, 3, 3)) == SPEC_PARAMS


@pytest.mark.parametrize("c, mabs", [(16, (2, 1, 1)), (24, (1, 2, 3))])
def test_parameter_count_follows_config(c, mabs):
    with torch.device("meta"):
        model = dc.create_model("dsmnet", channels=c, mabs_per_scale=mabs)
    assert sum(p.numel() for p in model.parameters()) == expected_params(c, mabs)


def _set_scaled_identity(conv: nn.Conv2d, w: float) -> None:
    """Make ``conv`` compute ``w * x`` (centre tap of a diagonal kernel, zero bias)."""
    k = conv.kernel_size[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for i in range(conv.out_channels):
            conv.weight[i, i, k // 2, k // 2] = w


def _hand_set_mab(channels: int = 8) -> MAB:
    mab = MAB(channels, subspaces=8)
    for layer in (mab.layer_a, mab.layer_b, mab.layer_c):
        for conv, w in zip(layer, (1.0, 2.0, 3.0)):  # 1x1 -> 1, 3x3 -> 2, 5x5 -> 3
            _set_scaled_identity(conv, w)
    _set_scaled_identity(mab.fuse3, 1.0)
    with torch.no_grad():  # fuse1 sums the three branches
        mab.fuse1.weight.zero_()
        mab.fuse1.bias.zero_()
        for j in range(3):
            mab.fuse1.weight[:, j * channels:(j + 1) * channels, 0, 0] = torch.eye(channels)
        mab.cadb.fuse.weight.zero_()  # CADB(X) = X + 0: isolates eqs. 2-10
        mab.cadb.fuse.bias.zero_()
    return mab.eval()


def test_mab_follows_paper_equations_with_hand_set_weights():
    mab = _hand_set_mab()
    x = torch.rand(1, 8, 12, 12) + 0.1  # positive, so every LeakyReLU is the identity
    with torch.no_grad():
        c = mab.branches(x)
        out = mab(x)
    # a_k = w_k x; s_a = 6x; b_k = 6 w_k x; s_b = 36x; c_k = w_k (36x + w_k x) + w_k x
    for c_k, w in zip(c, (1.0, 2.0, 3.0)):
        assert c_k.shape == x.shape
        assert torch.allclose(c_k, (w * (36 + w) + w) * x, rtol=1e-5)
    # eq. 11: F_out = CADB(conv3x3(conv1x1(cat c))) + F_in = (38 + 78 + 120 + 1) x.
    # Without the "+ a_k" (Across-Up) skips it would be (36 + 72 + 108 + 1) x = 217 x.
    assert torch.allclose(out, 237 * x, rtol=1e-5)


def test_mab_receptive_field_matches_three_layers_of_5x5_plus_3x3():
    torch.manual_seed(0)
    mab = MAB(8, subspaces=8).eval()
    with torch.no_grad():
        for m in mab.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
                if m.bias is not None:
                    m.bias.zero_()
        mab.cadb.fuse.weight.zero_()  # drop the (global) attention term
        mab.cadb.fuse.bias.zero_()
    x = torch.zeros(1, 8, 31, 31)
    x[:, :, 15, 15] = 1.0
    with torch.no_grad():
        out = (mab(x) - x).abs().sum(1)[0]
    # 5x5 in layers a, b, c (radius 2 each) and the fusion 3x3 (radius 1): radius 7
    assert out[15, 15 + 7] > 0 and out[15 + 7, 15] > 0
    assert out[15, 15 + 8] == 0 and out[15 + 8, 15] == 0
    # with only the 1x1 branch active, the reach is the fusion 3x3's alone
    with torch.no_grad():
        for layer in (mab.layer_a, mab.layer_b, mab.layer_c):
            layer[1].weight.zero_()
            layer[2].weight.zero_()
        out = (mab(x) - x).abs().sum(1)[0]
    assert out[15, 16] > 0 and out[15, 17] == 0


def test_subspace_maps_sum_to_one_over_each_map():
    model = tiny().eval()
    x = torch.rand(1, 3, 32, 48)  # a multiple of 4: no padding, so nothing is cropped
    with torch.no_grad():
        _, maps = model.forward_intermediates(x)
    keys = [k for k in maps if k.endswith("cadb.subspace_att")]
    assert len(keys) == sum(model.mabs_per_scale) + 4  # one CADB per MAB + 4 cross-layer
    for key in keys:
        att = maps[key]
        h, w = att.shape[-2:]
        assert att.shape[1] == 8, key
        assert (att >= 0).all(), key
        assert torch.allclose((att / (h * w)).sum(dim=(-2, -1)), torch.ones(1, 8), atol=1e-4), key
    scales = {k: 32 // maps[k].shape[-2] for k in keys}
    assert scales["scale3.mab1.cadb.subspace_att"] == 4
    assert scales["down2.cadb.subspace_att"] == 2 and scales["up1.cadb.subspace_att"] == 1


def test_channel_attention_is_a_weight_vector_per_cadb():
    model = tiny().eval()
    with torch.no_grad():
        _, maps = model.forward_intermediates(torch.rand(1, 3, 24, 24))
    keys = [k for k in maps if k.endswith("cadb.channel_att")]
    assert len(keys) == sum(model.mabs_per_scale) + 4
    for key in keys:
        assert maps[key].shape == (1, 16, 1, 1)
        assert ((maps[key] > 0) & (maps[key] < 1)).all()


def test_default_map_set_is_bounded_and_covers_every_cadb():
    with torch.device("meta"):
        model = dc.create_model("dsmnet")
    specs = model.map_specs()
    assert len(specs) <= 150
    keys = [s.key for s in specs]
    assert sum(k.endswith("cadb.channel_att") for k in keys) == 14  # 10 in MABs + 4 fusions
    for s in (1, 2, 3):
        assert f"scale{s}.features" in keys and f"scale{s}.input" in keys


def test_cadb_is_residual_and_attention_changes_it():
    torch.manual_seed(0)
    cadb = CADB(16, subspaces=8).eval()
    x = torch.randn(1, 16, 10, 10)
    with torch.no_grad():
        y = cadb(x)
        f = torch.nn.functional.leaky_relu(cadb.conv(x), 0.2)
        a_c = cadb.channel(f)
        ref = x + cadb.fuse(torch.cat([f * a_c, cadb.subspace(f)], 1))
    assert torch.allclose(y, ref, atol=1e-6)
    assert not torch.allclose(y, x)


def test_dense_rows_fuse_all_earlier_outputs():
    with torch.device("meta"):
        model = dc.create_model("dsmnet")
    widths = [[conv.in_channels // 32 for conv in row.fuse] for row in model.rows]
    assert widths == [[2, 3, 4, 5], [2, 3, 4], [2, 3, 4]]


def test_full_capture_keeps_branch_features():
    model = tiny().eval()
    with torch.no_grad():
        _, maps = model.forward_intermediates(torch.rand(1, 3, 37, 53), full=True)
    full = maps["scale1.mab1.branch5.full"]
    assert full.shape == (1, 16, 37, 53)
    assert torch.allclose(full.abs().mean(1, keepdim=True), maps["scale1.mab1.branch5"], atol=1e-6)
