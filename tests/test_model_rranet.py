"""RRANet-specific reference checks: RLCN (paper eq. 2), recurrent state, stage count."""
import math

import numpy as np
import pytest
import torch

import derain_core as dc
from derain_core.blocks import rlcn

EPS = 1e-5


def _eq2(img: np.ndarray, i: int, j: int, window: int) -> float:
    """Paper eq. 2 for one pixel of a 2-D channel, by hand: only in-image neighbours count."""
    r = window // 2
    patch = img[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].astype(np.float64)
    mu = patch.mean()
    sigma = math.sqrt(patch.var(ddof=1) + EPS)  # unbiased variance, as the successor code
    return max(img[i, j] - mu, 0.0) / (sigma + EPS)


def test_rlcn_isolated_bright_pixel_closed_form():
    # One bright pixel on black: with N pixels in the window, mean = 1/N, unbiased var = 1/N,
    # so L = (1 - 1/N) / (1/sqrt(N)) = (N - 1) / sqrt(N) (up to eps).
    img = torch.zeros(1, 3, 11, 13)
    img[0, 0, 5, 6] = 1.0  # interior: full 9x9 window, N = 81 -> 80/9
    img[0, 1, 0, 0] = 1.0  # corner: only a 5x5 quarter of the window lies inside, N = 25 -> 4.8
    out = rlcn(img, window=9, eps=EPS, clamp=False)
    assert out[0, 0, 5, 6].item() == pytest.approx(80 / 9, rel=1e-3)
    assert out[0, 1, 0, 0].item() == pytest.approx(24 / 5, rel=1e-3)
    # darker-than-mean neighbours are rectified to 0; a constant channel gives 0 everywhere
    assert out[0, 0, 5, 7].item() == 0.0
    assert out[0, 0, 0, 0].item() == 0.0
    assert torch.all(out[0, 2] == 0)
    # channels are independent: channel 1's bright corner does not reach channel 0
    assert out[0, 0, 0, 1].item() == 0.0
    # the clamped version caps at 1 and is otherwise identical
    capped = rlcn(img, window=9, eps=EPS, clamp=True)
    assert torch.equal(capped, out.clamp(max=1.0))


@pytest.mark.parametrize("window", [3, 9])
def test_rlcn_matches_eq2_by_hand(window):
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 10, 12)).astype(np.float32)
    out = rlcn(torch.from_numpy(img), window=window, eps=EPS, clamp=False).numpy()
    # interior, edge and corner pixels of several channels and batch items
    for b, c, i, j in [(0, 0, 0, 0), (0, 1, 0, 5), (1, 2, 9, 11), (1, 0, 4, 6),
                       (0, 2, 5, 0), (1, 1, 9, 3), (0, 0, 2, 2)]:
        expected = _eq2(img[b, c], i, j, window)
        assert out[b, c, i, j] == pytest.approx(expected, rel=1e-4, abs=1e-5), (b, c, i, j)


def _tiny(**over) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = {**dc.get_card("rranet").test_config, **over}
    return dc.create_model("rranet", **cfg).eval()


def test_state_does_not_leak_between_calls_or_batch_items():
    model = _tiny()
    torch.manual_seed(3)
    a = torch.rand(1, 3, 32, 40)
    b = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        ya1 = model(a)
        yb = model(b)
        ya2 = model(a)
        yab = model(torch.cat([a, b]))
    assert torch.equal(ya1, ya2), "a previous call changed the result"
    assert torch.allclose(yab[:1], ya1, atol=1e-5), "batch neighbour changed the result"
    assert torch.allclose(yab[1:], yb, atol=1e-5), "batch neighbour changed the result"
    assert not torch.allclose(ya1, yb)  # the images really differ


def test_weights_shared_across_stages_and_stage1_is_causal():
    """Stage count is not a weight: a 1-stage net with the same weights reproduces stage 1."""
    two = _tiny(stages=2)
    one = _tiny(stages=1)
    one.load_state_dict(two.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y1 = one(x)
        y2, maps = two.forward_intermediates(x)
    assert torch.allclose(maps["stage1.output"], y1, atol=1e-6)
    assert torch.allclose(maps["stage2.output"], y2, atol=1e-6)
    assert not torch.allclose(y1, y2, atol=1e-4), "the second stage must change the output"


@pytest.mark.parametrize("stages", [1, 3])
def test_stage_count_sets_recorded_maps(stages):
    model = _tiny(stages=stages)
    keys = {s.key for s in model.map_specs()}
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        _, maps = model.forward_intermediates(x)
    for t in range(1, stages + 1):
        stage_keys = {k for k in keys if k.startswith(f"stage{t}.")}
        assert {f"stage{t}.gam.scale{s}" for s in (1, 2, 3)} <= stage_keys
        assert {f"stage{t}.output", f"stage{t}.rain"} <= stage_keys
        assert len(stage_keys) == 9
        assert stage_keys <= set(maps)
        gam = maps[f"stage{t}.gam.scale1"]
        assert gam.min() >= 0 and gam.max() <= 1
    assert not any(k.startswith(f"stage{stages + 1}.") for k in keys | set(maps))
    assert torch.equal(maps[f"stage{stages}.output"], maps["output"])
    assert torch.allclose(maps["rlcn"], maps["rlcn_raw"].clamp(max=1.0))


def test_full_capture_adds_hidden_states():
    model = _tiny(stages=1)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        _, small = model.forward_intermediates(x)
        _, full = model.forward_intermediates(x, full=True)
    assert "stage1.encoder.scale2.h" not in small
    h = full["stage1.encoder.scale2.h"]
    assert h.shape == (1, model.widths[1], 16, 16)
    assert torch.allclose(h.abs().mean(1, keepdim=True), full["stage1.encoder.scale2.h_abs"])


def test_default_size_matches_spec():
    # architectures.md section 5.8: 8,539,052 parameters for n1 = 32
    model = dc.create_model("rranet")
    assert sum(p.numel() for p in model.parameters()) == 8_539_052
    assert model.stages == 6


def test_head_stats_equal_instance_norm_statistics():
    model = _tiny(input_norm="instance")
    inp = torch.rand(2, 9, 37, 29)
    with torch.no_grad():
        mean, var = model._head_stats(inp[:, :3], inp[:, 3:6], inp[:, 6:], rows=8)  # strips with halo rows
        y = model.head[0](inp)
        normed = model.head[1](y)
        mine = (y - mean) * torch.rsqrt(var + model.head[1].eps)
    assert torch.allclose(mean.flatten(), y.mean(dim=(2, 3)).flatten(), atol=1e-5)
    assert torch.allclose(mine, normed, atol=1e-4)


@pytest.mark.parametrize("input_norm", ["instance", "none"])
def test_staged_tiling_matches_whole_image(input_norm):
    # whole-image InstanceNorm statistics and blended ConvLSTM states: tiles see what the
    # whole image sees; independent tiles (the generic path) do not
    from derain_core.tiling import run_tiled
    model = _tiny(input_norm=input_norm, stages=3)
    g = torch.Generator().manual_seed(5)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 13, 17, generator=g), size=(100, 130),
                                        mode="bilinear", align_corners=False)
    with torch.no_grad():
        whole = model(x)
        staged = model.forward_tiled(x, 64, 32)
        independent = run_tiled(model, x, 64, 32)
    err = (staged - whole).abs().max().item()
    assert staged.shape == whole.shape and err < 2e-3
    if input_norm == "instance":
        assert (independent - whole).abs().max().item() > 10 * err


def test_staged_tiling_spilled_to_files_gives_the_same_result(monkeypatch, tmp_path):
    # over the spill budget the whole-image ConvLSTM state lives in temporary files, read and
    # blended box by box: the same numbers as in memory, the files removed afterwards
    from derain_core import tiling
    model = _tiny(stages=3)
    g = torch.Generator().manual_seed(6)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 13, 17, generator=g), size=(100, 130),
                                        mode="bilinear", align_corners=False)
    monkeypatch.setenv("DERAIN_SPILL_DIR", str(tmp_path))
    seen = []
    with torch.no_grad():
        in_memory = model.forward_tiled(x, 64, 32)
        monkeypatch.setattr(tiling, "SPILL_MB", 0)
        spilled = model.forward_tiled(x, 64, 32, on_tile=lambda done, total: seen.append(
            sorted(p.name for d in tmp_path.iterdir() for p in d.iterdir())))
    assert torch.equal(spilled, in_memory)
    assert len(seen[0]) == 8 and len(seen[-1]) == 16  # h and c at four scales; two stages at a time
    assert list(tmp_path.iterdir()) == []


def test_balanced_tiles_cover_with_as_few_and_smaller_tiles():
    from derain_core.tiling import balanced_tile, tile_starts
    for length, tile, overlap, multiple in [(1126, 512, 64, 8), (944, 512, 64, 8), (4064, 512, 64, 8),
                                            (1000, 512, 64, 1), (513, 512, 64, 1)]:
        side = balanced_tile(length, tile, overlap, multiple)
        starts = tile_starts(length, side, overlap)
        assert side <= -(-tile // multiple) * multiple and side % multiple == 0
        assert len(starts) == len(tile_starts(length, tile, overlap))  # as few tiles
        assert starts[-1] + side == length and all(b - a <= side - overlap for a, b in zip(starts, starts[1:]))
    assert balanced_tile(1126, 512, 64, 8) == 424  # three tiles of 424 px instead of three of 512
    assert balanced_tile(300, 512, 64, 8) == 300  # fits in one tile
