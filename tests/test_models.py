"""Contract tests run on every registered network (small configs, small inputs)."""
import pytest
import torch

import derain_core as dc
from derain_core.base import MapSpec

IDS = [c.id for c in dc.list_models()]
REQUIRED_WORDS = {
    "rranet": ["rlcn", "gam", "rain"],
    "mfan": ["pyramid", "LL", "LH", "HL", "HH", "rain"],
    "msamnet": ["d1", "d2", "d3", "sam", "rain"],
    "dsmnet": ["subspace", "rain"],
    "jdnet": ["attention", "scale", "rain"],
}


def tiny(model_id: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return dc.create_model(model_id, **dc.get_card(model_id).test_config)


def test_ids_exactly():
    assert IDS == ["msamnet", "dsmnet", "mfan", "rranet", "jdnet"]


@pytest.mark.parametrize("model_id", IDS)
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 96)])
def test_forward_odd_sizes(model_id, shape, device):
    model = tiny(model_id).to(device).eval()
    x = torch.rand(*shape, device=device)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("model_id", IDS)
def test_no_model_writes_into_its_input(model_id):
    # the engine hands the networks the decoded photo's own memory (io.to_tensor channels_last):
    # an in-place operation on the input would change the photo the next model sees
    model = tiny(model_id).eval()
    rgb = torch.rand(70, 90, 3)
    before = rgb.clone()
    x = rgb.permute(2, 0, 1)[None]  # channels_last view, as the engine passes it
    with torch.inference_mode():
        model(x)
        model.forward_tiled(x, 48, 16)
        model.forward_intermediates(x)
    assert torch.equal(rgb, before)


@pytest.mark.parametrize("model_id", IDS)
def test_intermediates_match_specs(model_id, device):
    model = tiny(model_id).to(device).eval()
    specs = model.map_specs()
    assert specs and all(isinstance(s, MapSpec) for s in specs)
    assert len({s.key for s in specs}) == len(specs), "duplicate map keys"
    x = torch.rand(1, 3, 37, 53, device=device)
    with torch.no_grad():
        clean, maps = model.forward_intermediates(x)
        plain = model(x)
    assert torch.allclose(clean, plain, atol=1e-5), "recording must not change the output"
    for spec in specs:
        assert spec.key in maps, f"{model_id}: promised map {spec.key} missing"
        assert tuple(maps[spec.key].shape) == spec.shape(1, 37, 53), spec.key
        assert torch.isfinite(maps[spec.key]).all(), spec.key
    keys = " ".join(s.key for s in specs)
    for word in REQUIRED_WORDS[model_id]:
        assert word in keys, f"{model_id}: no map key contains {word!r}"
    # the rain layer is input - output for every network
    rain_key = next(s.key for s in specs if s.key == "rain")
    assert torch.allclose(maps[rain_key], x - clean, atol=1e-5)


@pytest.mark.parametrize("model_id", IDS)
def test_eval_is_deterministic(model_id, device):
    model = tiny(model_id).to(device).eval()
    x = torch.rand(1, 3, 40, 48, device=device)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("model_id", IDS)
def test_one_step_lowers_loss(model_id, device):
    model = tiny(model_id).to(device).train()
    torch.manual_seed(1)
    clean = torch.rand(2, 3, 32, 32, device=device) * 0.8
    rainy = (clean + 0.2 * (torch.rand_like(clean) > 0.9)).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss_fn():
        return torch.nn.functional.l1_loss(model.training_outputs(rainy)["output"], clean)

    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn()
    assert after.item() < before.item()
