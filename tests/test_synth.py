"""Rain synthesis (derain_core.synth) and the demo assets made with it. Small inputs, fast."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from derain_core import synth
from derain_core.synth import RainParams, StreakLayer, add_rain, preset

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _clean(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)


def _orientation_deg(r: np.ndarray) -> float:
    """Dominant gradient orientation (structure tensor), degrees from the +x (column) axis.

    With rows pointing down, a streak tilted by ``a`` from vertical (top to the right for
    a > 0) has its gradient along (cos a, sin a), i.e. an orientation of ``a``.
    """
    gy, gx = np.gradient(r.astype(np.float64))
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    return float(np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)))


def _angle_diff(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


@pytest.mark.parametrize("name", sorted(synth.PRESETS))
def test_deterministic_for_seed(name):
    clean = _clean()
    a, ra = add_rain(clean, preset(name, seed=5))
    b, rb = add_rain(clean, preset(name, seed=5))
    c, rc = add_rain(clean, preset(name, seed=6))
    assert np.array_equal(a, b) and np.array_equal(ra, rb)
    assert not np.array_equal(ra, rc)
    assert np.abs(a - c).mean() > 1e-3


@pytest.mark.parametrize("name", sorted(synth.PRESETS))
def test_shapes_ranges_and_nonnegative_rain(name):
    clean = _clean(40, 56)
    rainy, r = add_rain(clean, preset(name, seed=1))
    assert rainy.shape == clean.shape == r.shape
    assert rainy.dtype == np.float32 and r.dtype == np.float32
    assert r.min() >= 0.0 and r.max() <= 1.0 and r.max() > 0.05
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0


@pytest.mark.parametrize("name", sorted(synth.PRESETS))
def test_additive_without_haze_only_brightens(name):
    clean = _clean()
    p = preset(name, seed=2, composite="additive", haze=0.0, accumulation=0.0, drop_blur=0.0)
    rainy, r = add_rain(clean, p)
    assert np.all(rainy >= clean)
    np.testing.assert_allclose(rainy, np.clip(clean + r, 0, 1), atol=1e-6)


def test_screen_composite_formula():
    clean = _clean()
    rainy, r = add_rain(clean, preset("light", seed=3, haze=0.0, accumulation=0.0, drop_blur=0.0))
    np.testing.assert_allclose(rainy, 1 - (1 - clean) * (1 - r), atol=1e-6)


def test_heavy_has_more_rain_than_light():
    clean = _clean(64, 96)
    for seed in range(3):
        _, rl = add_rain(clean, preset("light", seed=seed))
        _, rh = add_rain(clean, preset("heavy", seed=seed))
        assert synth.rain_energy(rh) > 2.0 * synth.rain_energy(rl)
        assert (rh[..., 0] > 0.1).mean() > (rl[..., 0] > 0.1).mean()


def test_heavy_has_about_five_directions():
    main = [l for l in synth.PRESETS["heavy"].layers if l.depth <= 1.5]
    angles = sorted({round(l.angle_deg) for l in main})
    assert 4 <= len(angles) <= 6
    assert max(angles) - min(angles) <= 40  # a band around the dominant angle


@pytest.mark.parametrize("angle", [-40.0, -15.0, 0.0, 20.0, 35.0])
def test_streak_orientation_follows_angle(angle):
    p = RainParams(layers=[StreakLayer(angle, 30, 1.2, 0.003, 0.8, 0.5)], seed=4)
    _, r = add_rain(np.zeros((96, 96, 3), np.float32), p)
    assert _angle_diff(_orientation_deg(r[..., 0]), angle) < 10.0


def test_positive_angle_tilts_top_to_the_right():
    k = synth.streak_kernel(21, 1, 30)
    rows, cols = np.nonzero(k > 0.5)
    top, bottom = rows.argmin(), rows.argmax()
    assert cols[top] > cols[bottom]  # "/" : the upper end lies to the right
    k0 = synth.streak_kernel(21, 1, 0)
    assert np.ptp(np.nonzero(k0 > 0.5)[1]) == 0  # vertical: one column


def test_depth_scales_streak_size():
    near = synth.streak_kernel(40 * StreakLayer(depth=0.5).size_scale, 1, 0)
    far = synth.streak_kernel(40 * StreakLayer(depth=2.0).size_scale, 1, 0)
    assert (near > 0.5).sum() > 3 * (far > 0.5).sum()


def test_haze_is_stronger_at_the_top():
    p = RainParams(layers=[], haze=1.5, haze_color=(1.0, 1.0, 1.0), seed=0)
    rainy, r = add_rain(np.zeros((60, 40, 3), np.float32), p)
    assert r.max() == 0.0
    assert rainy[:10].mean() > rainy[-10:].mean() + 0.2


def test_drop_blur_softens_background_under_rain():
    rng = np.random.default_rng(0)
    clean = (rng.random((64, 64, 1)) > 0.5).astype(np.float32).repeat(3, axis=2)
    base = dict(composite="additive", haze=0.0, accumulation=0.0)
    sharp, r = add_rain(clean, preset("heavy", seed=1, drop_blur=0.0, **base))
    soft, r2 = add_rain(clean, preset("heavy", seed=1, drop_blur=1.0, **base))
    assert np.array_equal(r, r2)
    bg_sharp, bg_soft = sharp - r, soft - r2  # background where nothing clipped
    ok = (sharp < 1) & (soft < 1)
    assert np.abs(np.diff(bg_soft, axis=1))[ok[:, 1:]].mean() < np.abs(np.diff(bg_sharp, axis=1))[ok[:, 1:]].mean()


def test_uint8_input_and_bad_shape():
    u8 = (_clean() * 255).astype(np.uint8)
    a, _ = add_rain(u8, preset("light", seed=1))
    b, _ = add_rain(u8.astype(np.float32) / 255, preset("light", seed=1))
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError):
        add_rain(np.zeros((8, 8), np.float32), preset("light"))


@pytest.mark.parametrize("name", sorted(synth.PRESETS))
def test_params_json_round_trip(name):
    p = preset(name, seed=123, angle=17.5)
    q = RainParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q == p
    r = synth.random_params(np.random.default_rng(9), name)
    assert RainParams.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(ValueError):
        RainParams.from_dict({**p.to_dict(), "bogus": 1})


def test_preset_overrides():
    p = preset("heavy", seed=7, angle=25.0, haze=0.3, density_scale=2.0)
    assert p.seed == 7 and p.haze == 0.3
    assert p.dominant_angle() == pytest.approx(25.0)
    base = synth.PRESETS["heavy"]
    assert p.layers[0].density == pytest.approx(2 * base.layers[0].density)
    assert synth.PRESETS["heavy"].seed == 0  # the preset itself is untouched
    assert preset("storm").haze > 0 and preset("light").haze == 0
    with pytest.raises(KeyError):
        preset("drizzle")
    with pytest.raises(ValueError):
        preset("light", colour=1)
    with pytest.raises(ValueError):
        preset("light", composite="multiply")


def test_random_params_vary_and_are_reproducible():
    a = [synth.random_params(np.random.default_rng(1), "mixed") for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(2)
    draws = [synth.random_params(rng, "heavy") for _ in range(8)]
    angles = [d.dominant_angle() for d in draws]
    assert len({d.seed for d in draws}) == 8
    assert max(angles) - min(angles) > 10 and all(-40 < x < 40 for x in angles)


def test_synth_batch():
    clean = torch.rand(3, 3, 32, 40, dtype=torch.float64)
    a = synth.synth_batch(clean, "heavy", np.random.default_rng(0))
    b = synth.synth_batch(clean, "heavy", np.random.default_rng(0))
    assert a.shape == clean.shape and a.dtype == clean.dtype
    assert torch.equal(a, b)
    assert (a - clean).abs().mean() > 0.01
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    with pytest.raises(ValueError):
        synth.synth_batch(torch.rand(3, 32, 32), "heavy", 0)


# ----------------------------------------------------------------------------- assets

def _index() -> list[dict]:
    return json.loads((EXAMPLES / "index.json").read_text())["examples"]


def test_assets_index_files_exist_and_sizes_match():
    ex = _index()
    assert len(ex) >= 10
    assert {e["preset"] for e in ex} >= {"light", "heavy", "storm"}
    assert sum(e["gt"] is None for e in ex) >= 1
    for e in ex:
        assert {"file", "gt", "preset", "title"} <= set(e)
        with Image.open(EXAMPLES / e["file"]) as im:
            assert im.mode == "RGB"
            size = im.size
        if e["gt"] is not None:
            with Image.open(EXAMPLES / e["gt"]) as gt:
                assert gt.size == size
        meta = json.loads((EXAMPLES / e["params"]).read_text())
        assert meta["clean"] == e["gt"] and meta["rainy"] == e["file"]
        assert meta["source"]["license"]
        RainParams.from_dict(meta["params"])
    total = sum(p.stat().st_size for p in EXAMPLES.parent.rglob("*") if p.is_file())
    assert total < 6e6


def test_assets_reproducible_from_stored_params():
    """Each rainy example is the generator applied to its shipped clean image and JSON."""
    for e in _index():
        if e["gt"] is None:
            continue
        meta = json.loads((EXAMPLES / e["params"]).read_text())
        clean = np.asarray(Image.open(EXAMPLES / e["gt"]).convert("RGB"), np.float32) / 255
        rainy, _ = add_rain(clean, RainParams.from_dict(meta["params"]))
        shipped = np.asarray(Image.open(EXAMPLES / e["file"]).convert("RGB"), np.int16)
        ours = (np.clip(rainy, 0, 1) * 255 + 0.5).astype(np.int16)
        diff = int(np.abs(ours - shipped).max())
        assert diff <= 1, f"{e['file']}: max difference {diff} levels (rerun scripts/make_assets.py?)"


def test_wide_kind_spreads_over_the_presets_and_adds_splashes():
    """``wide`` (the heavy weights' training rain): all presets, wide spreads, some splashes."""
    rng = np.random.default_rng(3)
    draws = [synth.random_params(rng, "wide") for _ in range(300)]
    n_layers = {len(d.layers) for d in draws}
    assert n_layers == {len(synth.PRESETS[k].layers) for k in synth.WIDE_PRESET_WEIGHTS}
    splash = [d.splash for d in draws]
    assert 0.25 < np.mean([s > 0 for s in splash]) < 0.55 and max(splash) <= 1
    assert {d.composite for d in draws} == {"screen", "additive"}
    dens = [sum(l.density for l in d.layers) for d in draws if len(d.layers) == len(synth.PRESETS["heavy"].layers)]
    assert max(dens) / min(dens) > 4  # much wider than a preset's own jitter (x0.6-1.5)
    assert synth.random_params(np.random.default_rng(9), "wide") == synth.random_params(np.random.default_rng(9), "wide")
    assert synth.synth_variant("wide") == "heavy" and synth.synth_variant("storm") == "storm"
    with pytest.raises(ValueError, match="unknown rain kind"):
        synth.random_params(rng, "drizzle")


def test_splashes_are_bright_marks_near_the_ground():
    clean = np.full((96, 80, 3), 0.3, np.float32)
    base = preset("light", seed=4)
    base.layers = []
    plain = synth.add_rain(clean, base)[0]
    assert np.array_equal(plain, clean)
    wet, layer = synth.add_rain(clean, preset("light", seed=4, layers=[], splash=1.0))
    assert (wet >= clean - 1e-6).all() and wet.max() > 0.5
    lit = (layer[..., 0] > 0.1).mean(axis=1)
    assert lit[:32].sum() < lit[-32:].sum() / 4  # denser at the bottom of the frame
    with pytest.raises(ValueError, match="splash"):
        preset("light", splash=1.5)

