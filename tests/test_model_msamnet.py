"""MSAMNet-specific reference checks (architectures.md section 2)."""
import pytest
import torch

import derain_core as dc
from derain_core.losses import charbonnier, edge_loss
from derain_core.models.msamnet import DAB

PAPER_PARAMS = 2_553_105  # paper, Table 2
SPEC_PARAMS = 2_575_105  # architectures.md 2.5: S=84, r=4, SAM k=3, 7x7 spatial, merge conv


def tiny(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return dc.create_model("msamnet", **{**dc.get_card("msamnet").test_config, **changes})


def test_default_parameter_count_matches_paper():
    with torch.device("meta"):
        model = dc.create_model("msamnet")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PAPER_PARAMS - 1) < 0.03, n
    assert n == SPEC_PARAMS  # the structure the spec counted, layer for layer


def test_training_outputs_and_paper_loss_backpropagate():
    model = tiny().train()
    torch.manual_seed(1)
    rainy = torch.rand(2, 3, 33, 40)
    target = torch.rand(2, 3, 33, 40)
    outs = model.training_outputs(rainy)
    assert set(outs) == {"output", "sam"}
    for key in ("output", "sam"):
        assert outs[key].shape == rainy.shape, key
        assert outs[key].requires_grad, key
    # paper section 3.5: L_main + L_aux, each Charbonnier + 0.05 * edge
    loss = sum(charbonnier(o, target) + 0.05 * edge_loss(o, target) for o in outs.values())
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the SAM's rain conv and the tail both learn
    assert grads["sam.conv_rain.weight"].abs().sum() > 0
    assert grads["tail.weight"].abs().sum() > 0


def test_sam_loss_alone_reaches_only_the_auxiliary_path():
    model = tiny().train()
    outs = model.training_outputs(torch.rand(1, 3, 24, 24))
    charbonnier(outs["sam"], torch.zeros_like(outs["sam"])).backward()
    assert model.sam.conv_rain.weight.grad.abs().sum() > 0
    assert model.mag_in.weight.grad.abs().sum() > 0
    # the ORMNet and the tail lie after the SAM estimate: no gradient reaches them
    assert model.tail.weight.grad is None
    assert model.orbs[0].dabs[0].body[0].weight.grad is None


def test_training_outputs_agree_with_recorded_maps():
    model = tiny().eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        outs = model.training_outputs(x)
        clean, maps = model.forward_intermediates(x)
    assert torch.allclose(outs["output"], clean, atol=1e-6)
    assert torch.allclose(outs["sam"], maps["sam.clean_estimate"], atol=1e-6)
    assert torch.allclose(maps["sam.rain"], x - maps["sam.clean_estimate"], atol=1e-5)
    # 4 spatial + 4 channel attention maps per ORB for the default config, 2 + 2 here
    assert sum(k.endswith("spatial_att") for k in maps) == 3 * model.dabs_per_orb


def test_full_capture_keeps_whole_feature_tensors():
    model = tiny().eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        _, maps = model.forward_intermediates(x, full=True)
    full = maps["mag.branch_d3.full"]
    assert full.shape == (1, model.channels, 20, 24)
    rms = full.square().mean(dim=1, keepdim=True).sqrt()
    assert torch.allclose(maps["mag.branch_d3"], rms, atol=1e-6)


@pytest.mark.parametrize("form", ["paper", "cycleisp"])
def test_both_dab_forms_run(form):
    model = tiny(dab_form=form).eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        y, maps = model.forward_intermediates(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert maps["orm.orb3.dab2.channel_att"].shape == (1, model.channels, 1, 1)


def test_dab_forms_differ_in_structure():
    s, n = 16, 3 * 2
    paper = sum(p.numel() for p in tiny(dab_form="paper").parameters())
    cycle = sum(p.numel() for p in tiny(dab_form="cycleisp").parameters())
    assert cycle - paper == n * 2 * s * s  # one 1x1 fuse conv (2S -> S) per DAB
    with pytest.raises(ValueError):
        tiny(dab_form="cbam")


def test_dab_paper_form_is_equations_1_to_3():
    torch.manual_seed(0)
    dab = DAB(8, 4, 7, torch.nn.PReLU(), form="paper").eval()
    xh = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        x = dab.body(xh)
        a_s, a_c = dab.spatial(x), dab.channel(x)
        expected = x + xh * a_s + xh * a_c
        got = dab(xh, dc.Recorder.off())
    assert a_s.shape == (1, 1, 12, 12) and a_c.shape == (1, 8, 1, 1)
    assert torch.allclose(got, expected, atol=1e-6)
