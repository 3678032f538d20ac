"""Fast tests of the drawing helpers in derain_core.viz (tiny synthetic inputs)."""
import numpy as np
import pytest
import torch

from derain_core import viz
from derain_core.base import MapSpec


def rgb_u8(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def is_image(a, h=None, w=None):
    ok = isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    return ok and (h is None or a.shape[0] == h) and (w is None or a.shape[1] == w)


# --------------------------------------------------------------------------- colour maps
@pytest.mark.parametrize("cmap", viz.CMAPS)
def test_colormap_endpoints_and_shape(cmap):
    lut = viz._lut(cmap)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    m = np.linspace(-2.0, 3.0, 12, dtype=np.float32).reshape(3, 4)
    out = viz.apply_colormap(m, cmap)
    assert is_image(out, 3, 4)
    assert (out[0, 0] == lut[0]).all() and (out[-1, -1] == lut[-1]).all()
    # explicit range: values at/below vmin -> first colour, at/above vmax -> last
    out = viz.apply_colormap(m, cmap, vmin=0.0, vmax=1.0)
    assert (out[0, 0] == lut[0]).all() and (out[-1, -1] == lut[-1]).all()
    assert (viz.apply_colormap(np.array([[0.0, 1.0]]), cmap, 0.0, 1.0)[0] == lut[[0, -1]]).all()


def test_colormaps_differ_and_match_known_endpoints():
    # matplotlib's endpoint colours, written out (matplotlib is not a run-time dependency)
    assert tuple(viz._lut("viridis")[0]) == (0x44, 0x01, 0x54)
    assert tuple(viz._lut("viridis")[-1]) == (0xFD, 0xE7, 0x25)
    assert tuple(viz._lut("inferno")[-1]) == (0xFC, 0xFF, 0xA4)
    assert tuple(viz._lut("gray")[128]) == (128, 128, 128)
    lum = viz._lut("inferno").astype(int).sum(1)
    assert (np.diff(lum) >= -3).all(), "inferno should get brighter"
    with pytest.raises(ValueError):
        viz.apply_colormap(np.zeros((2, 2)), "jet")


def test_constant_nan_inf_maps():
    const = np.full((5, 6), 3.0)
    out = viz.apply_colormap(const, "viridis")
    assert (out == viz._lut("viridis")[128]).all()  # middle colour, no division by zero
    m = np.arange(12, dtype=np.float64).reshape(3, 4)
    m[0, 0], m[1, 1], m[2, 2] = np.nan, np.inf, -np.inf
    out = viz.apply_colormap(m, "magma")
    assert tuple(out[0, 0]) == viz.NAN_COLOUR
    assert (out[1, 1] == viz._lut("magma")[-1]).all() and (out[2, 2] == viz._lut("magma")[0]).all()
    all_nan = np.full((4, 4), np.nan)
    for a in (const, m, all_nan):
        assert is_image(viz.heatmap(a, title="t"))
        assert is_image(viz.overlay(rgb_u8(8, 8), a, 0.5))
    with pytest.raises(ValueError):
        viz.apply_colormap(np.zeros((2, 2, 2)))


def test_heatmap_adds_colorbar_and_title():
    m = np.random.default_rng(0).random((10, 20))
    plain = viz.heatmap(m, colorbar=False)
    assert is_image(plain, 10, 20)
    assert is_image(viz.heatmap(m, colorbar=False, upscale_to=(30, 60)), 30, 60)
    up = viz.heatmap(m, colorbar=False, upscale_to=80)
    assert is_image(up, 40, 80)
    assert (up[::4, ::4] == plain).all()  # nearest enlargement keeps the colours
    bar = viz.heatmap(m, upscale_to=80)
    assert bar.shape[0] == 40 and bar.shape[1] > 80 + 20  # bar and tick labels on the right
    titled = viz.heatmap(m, title="Attention", upscale_to=80)
    assert titled.shape[0] > 40 and titled.shape[1] == bar.shape[1]
    assert (titled[-40:, :80] == up).all()


# --------------------------------------------------------------------------- overlay
def test_overlay():
    img = rgb_u8(32, 48)
    m = np.random.default_rng(1).random((8, 12))
    assert (viz.overlay(img, m, alpha=0.0) == img).all()
    full = viz.overlay(img, m, alpha=1.0, resample="nearest")
    assert is_image(full, 32, 48)
    assert (full == np.repeat(np.repeat(viz.apply_colormap(m), 4, 0), 4, 1)).all()
    half = viz.overlay(img.astype(np.float32) / 255, m, alpha=0.5)
    assert is_image(half, 32, 48) and not (half == img).all()
    with pytest.raises(ValueError):
        viz.overlay(img, m, alpha=1.5)


def test_to_uint8_image_layouts():
    f = np.random.default_rng(2).random((3, 10, 14)).astype(np.float32)
    hwc = np.moveaxis(f, 0, -1)
    ref = viz.to_uint8_image(hwc)
    assert is_image(ref, 10, 14)
    assert (viz.to_uint8_image(torch.from_numpy(f)[None]) == ref).all()
    assert (viz.to_uint8_image(f) == ref).all()
    assert is_image(viz.to_uint8_image(np.zeros((5, 7))), 5, 7)
    assert viz.to_uint8_image(np.full((2, 2, 3), 2.0)).max() == 255


# --------------------------------------------------------------------------- maps of every kind
SPECS = [
    MapSpec("rain", "residual", "Rain layer", "x - y", 3, 1, group="output"),
    MapSpec("d1/clean", "image", "Stage clean image", "", 3, 2, group="stage 1"),
    MapSpec("gray", "image", "Grey image", "", 1, 1, group="stage 1"),
    MapSpec("sam/att", "attention", "Attention", "", 1, 4, group="stage 1"),
    MapSpec("att3", "attention", "Three-scale attention", "", 3, 2, group="stage 2"),
    MapSpec("att32", "attention", "Many-channel attention", "", 32, 2, group="stage 2"),
    MapSpec("feat", "feature", "Features", "", 16, 2, group="stage 2/scale 2"),
    MapSpec("LH", "band", "LH band", "", 3, 2, group="pyramid"),
    MapSpec("LH1", "band", "LH band (1 ch)", "", 1, 2, group="pyramid"),
    MapSpec("ca", "vector", "Channel attention", "", 24, 0, (1, 1), group="stage 3"),
    MapSpec("ca_big", "vector", "Channel attention (wide)", "", 200, 0, (1, 1), group="stage 3"),
    MapSpec("heads", "attention", "Head attention", "", 4, 0, (16, 16), group="stage 3"),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.key for s in SPECS])
def test_render_map_every_kind(spec):
    torch.manual_seed(0)
    t = torch.randn(*spec.shape(2, 37, 53))
    out = viz.render_map(t, spec)
    assert is_image(out) and out.shape[0] > 40 and out.shape[1] > 40
    image = torch.rand(3, 37, 53)
    assert is_image(viz.render_map(t, spec, image=image, overlay_alpha=0.4, batch=1))
    panels = viz.map_to_2d(t, spec)
    assert panels and all(isinstance(label, str) for label, _ in panels)
    for _, a in panels:
        assert a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3 and 0 <= a.min() and a.max() <= 1)


def test_map_to_2d_rules():
    by_key = {s.key: s for s in SPECS}
    rain = torch.rand(1, 3, 20, 24) * 0.05
    panels = viz.map_to_2d(rain, by_key["rain"])
    assert len(panels) == 2 and panels[1][1].max() > 0.5  # faint rain is magnified
    assert len(viz.map_to_2d(torch.rand(1, 3, 20, 24), by_key["d1/clean"])) == 1
    assert len(viz.map_to_2d(torch.rand(1, 3, 10, 12), by_key["att3"])) == 3
    assert len(viz.map_to_2d(torch.rand(1, 32, 10, 12), by_key["att32"])) == 1  # mean
    feat = torch.randn(1, 16, 10, 12)
    (l1, mean_abs), (l2, norm) = viz.map_to_2d(feat, by_key["feat"])
    assert np.allclose(mean_abs, feat[0].abs().mean(0).numpy(), atol=1e-6)
    assert np.allclose(norm, feat[0].norm(dim=0).numpy(), atol=1e-5)
    (_, strip), = viz.map_to_2d(torch.rand(1, 24, 1, 1), by_key["ca"])
    assert strip.shape == (1, 24)
    (_, strip), = viz.map_to_2d(torch.rand(1, 200, 1, 1), by_key["ca_big"])
    assert strip.shape == (7, 32) and np.isnan(strip).sum() == 7 * 32 - 200
    heads = viz.map_to_2d(torch.rand(1, 4, 16, 16), by_key["heads"])
    assert [a.shape for _, a in heads] == [(16, 16)] * 4
    assert [label for label, _ in heads] == [f"head {i}" for i in range(4)]
    kernel = MapSpec("kernel", "feature", "Kernel", "", 3, 0, (5, 5))
    assert [label for label, _ in viz.map_to_2d(torch.rand(1, 3, 5, 5), kernel)][0] == "channel 0"
    assert len(viz.map_to_2d(torch.rand(1, 3, 10, 12), by_key["LH"])) == 1
    wide_band = MapSpec("LL", "band", "LL", "", 16, 2)
    (_, signed), (_, energy) = viz.map_to_2d(torch.randn(1, 16, 10, 12), wide_band)
    assert (energy >= 0).all() and signed.min() < 0


def test_render_map_band_is_symmetric():
    spec = MapSpec("LH1", "band", "LH", "", 1, 1)
    m = torch.full((1, 1, 8, 8), 0.5)
    m[..., :4] = -0.5
    out = viz.render_map(m, spec, size=8)  # no enlargement: panel pixels are the map's
    lut = viz._lut("coolwarm")
    blue, red = tuple(lut[0]), tuple(lut[-1])
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    assert blue in colours and red in colours


# --------------------------------------------------------------------------- channel grid
def test_channel_grid():
    f = torch.randn(1, 20, 6, 8)
    grid, stats = viz.channel_grid(f, max_channels=12, cols=4, tile=16)
    assert is_image(grid)
    assert len(stats) == 20 and stats[3]["index"] == 3
    assert stats[3]["max"] == pytest.approx(float(f[0, 3].max()))
    assert stats[3]["std"] == pytest.approx(float(f[0, 3].std(unbiased=False)), rel=1e-5)
    small, _ = viz.channel_grid(f, max_channels=4, cols=4, tile=16)
    assert small.shape[1] == grid.shape[1] and small.shape[0] < grid.shape[0]
    f[0, 5] = 1.0  # a constant channel must not break the per-channel normalisation
    assert is_image(viz.channel_grid(f, order="std")[0])


# --------------------------------------------------------------------------- synced crops
def test_synced_crops_border_and_zoom():
    imgs = [rgb_u8(30, 40, s) for s in range(3)]
    for center in [(0, 0), (39, 29), (100, -5), (20, 15)]:
        crops = viz.synced_crops(imgs, center, crop_size=8, zoom=3)
        assert len(crops) == 3
        for c in crops:
            assert is_image(c, 24, 24)
    x0, y0, w, h = viz.crop_window((30, 40), (39, 29), 8)
    assert (x0, y0, w, h) == (32, 22, 8, 8)  # moved inside at the bottom-right corner
    crop = viz.synced_crops(imgs, (39, 29), 8, zoom=3)[1]
    src = imgs[1][22:30, 32:40]
    assert (crop == np.repeat(np.repeat(src, 3, 0), 3, 1)).all()  # exact pixel repetition
    for dy in range(3):
        for dx in range(3):
            assert (crop[dy::3, dx::3] == src).all()
    assert viz.synced_crops(imgs, (5, 5), (12, 6), zoom=2)[0].shape == (12, 24, 3)
    with pytest.raises(ValueError):
        viz.synced_crops([rgb_u8(30, 40), rgb_u8(30, 41)], (5, 5), 8, 2)
    with pytest.raises(ValueError):
        viz.synced_crops(imgs, (5, 5), 8, zoom=1.5)


def test_mark_point_and_strip():
    img = np.zeros((30, 40, 3), np.uint8)
    marked = viz.mark_point(img, (39, 29), 8)
    assert is_image(marked, 30, 40) and (img == 0).all()  # input left untouched
    changed = np.argwhere(marked.any(-1))
    assert changed[:, 0].min() >= 22 - 2 and changed[:, 1].min() >= 32 - 2
    assert tuple(marked[22, 35]) == (0, 255, 255)  # top edge of the window
    strip = viz.crops_strip([img, img], (10, 10), 8, 2, labels=["a", "b"], texts=["1 dB", None])
    assert is_image(strip) and strip.shape[1] >= 2 * 16


# --------------------------------------------------------------------------- labelled grid
def test_labelled_grid_grows_with_tiles():
    tiles = [rgb_u8(32, 48, s) for s in range(4)]
    sizes = []
    for n in (1, 2, 4):
        g = viz.labelled_grid(tiles[:n], [f"model {i}" for i in range(n)],
                              texts=["31.2 dB / 0.951 | 0.84 s"] * n)
        assert is_image(g)
        sizes.append(g.shape)
    assert sizes[0][1] < sizes[1][1] < sizes[2][1] and sizes[0][0] == sizes[2][0]
    two_rows = viz.labelled_grid(tiles, ["a"] * 4, cols=2)
    assert two_rows.shape[0] > sizes[2][0] and two_rows.shape[1] < sizes[2][1]
    # the text band darkens the tile bottom but leaves its top alone
    g = viz.labelled_grid([np.full((32, 48, 3), 255, np.uint8)], ["x"], texts=["text"], pad=0)
    assert g[-1].mean() < 200 and (g[-32] == 255).all()
    with pytest.raises(ValueError):
        viz.labelled_grid(tiles, ["only one"])


def test_group_specs_keeps_order():
    groups = viz.group_specs(SPECS)
    assert list(groups) == ["output", "stage 1", "stage 2", "stage 2/scale 2", "pyramid", "stage 3"]
    assert [s.key for s in groups["stage 1"]] == ["d1/clean", "gray", "sam/att"]
    assert sum(len(v) for v in groups.values()) == len(SPECS)
    assert list(viz.group_specs([MapSpec("k", "feature", "t", "", 1)], default="other")) == ["other"]


def test_map_kinds_decide_the_panels_not_titles():
    rain = MapSpec("stage1.rain", "residual", "rain removed by stage 1", "", 3, 1)
    derained = MapSpec("output", "image", "Derained image", "", 3, 1)  # "rain" in the title only
    assert MapSpec("rain", "image", "R", "", 3).kind == "image"  # the key decides nothing
    t = torch.rand(1, 3, 12, 12) * 0.05
    assert len(viz.map_to_2d(t, rain)) == 2 and len(viz.map_to_2d(t, derained)) == 1


def test_map_panels_carry_the_drawn_colours_and_spatial_rule():
    band = MapSpec("b", "band", "band", "signed band", channels=1)
    t = np.linspace(-2, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4)
    (p,) = viz.panels_of(t, band)
    assert p.cmap == "coolwarm" and p.vrange[0] == pytest.approx(-p.vrange[1]) and p.vrange[1] >= 2 - 1e-6
    image = viz.panels_of(np.random.rand(1, 3, 8, 8), MapSpec("x", "image", "img", "", 3))
    assert image[0].rgb and image[0].vrange == (0.0, 1.0)
    vec = MapSpec("ca", "vector", "ca", "", 4, 0, (1, 1))
    assert not vec.spatial and not viz.is_spatial(np.zeros((1, 4, 1, 1)), vec)
    att = MapSpec("a", "attention", "a", "", 1, 2)
    assert viz.is_spatial(np.zeros((1, 1, 5, 6)), att) and not viz.is_spatial(np.zeros((1, 1, 1, 6)), att)


# --------------------------------------------------------------------------- honest colour scales
def lut_indices(img, cmap):
    """The colour-map index of every pixel of ``img`` that has exactly a LUT colour, else -1."""
    lut = viz._lut(cmap).astype(np.int64)
    keys = (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]
    px = img.reshape(-1, 3).astype(np.int64)
    pk = (px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2]
    index = {int(k): i for i, k in reversed(list(enumerate(keys)))}
    return np.array([index.get(int(k), -1) for k in pk])


def test_border_outlier_does_not_set_the_range():
    rng = np.random.default_rng(0)
    m = rng.random((1, 1, 64, 96))
    m[..., 0, :] = 50.0  # one bright top row, as FRCB bands have
    spec = MapSpec("frcb.LH", "feature", "band energy", "", 1)
    (p,) = viz.panels_of(m, spec)
    assert p.scale == "robust" and 0.0 <= p.vrange[0] < 0.05 and 0.95 < p.vrange[1] <= 1.0
    assert "values 0" in p.note and "to 50" in p.note  # the real range is still told
    # the interior spreads over the whole colour map (with min-max it would all be dark)
    out = viz.render_map(m, spec, size=192)  # 2x enlargement: 128 x 192 map pixels
    idx = lut_indices(out, p.cmap)
    area = 128 * 192
    assert (idx >= 192).sum() > 0.15 * area and ((idx >= 64) & (idx < 192)).sum() > 0.3 * area
    # the same for a signed band drawn symmetric: +/- the interior's 99th percentile of |x|
    band = MapSpec("LH", "band", "LH", "", 1)
    s = rng.uniform(-1, 1, (1, 1, 64, 96))
    s[..., -1, :] = -80.0
    (p,) = viz.panels_of(s, band)
    assert p.vrange[0] == -p.vrange[1] and 0.9 < p.vrange[1] <= 1.0
    assert viz.robust_range(s[0, 0], symmetric=True) == p.vrange


def test_stretch_shows_a_small_attention_difference_on_a_streak():
    # a gate at 0.53 with a streak at 0.50: flat on the fixed scale, clear when stretched
    att = np.full((1, 2, 64, 96), 0.53)
    att[0, :, :, 40:44] = 0.50
    spec = MapSpec("sam.attention", "attention", "SAM attention", "", 1)
    flat = viz.panels_of(att, spec)
    assert all(p.scale == "unit" for p in flat)
    stretched = viz.panels_of(att, spec, stretch=True)
    assert [p.scale for p in stretched] == ["robust", "robust"]
    assert stretched[0].vrange == stretched[1].vrange == (0.50, 0.53)  # one scale for the channels
    assert "1st to 99th percentile" in stretched[0].note
    col = viz.panel_colours(stretched[0]).astype(int)
    assert np.abs(col[:, 41] - col[:, 10]).max() > 100  # the streak stands out
    col = viz.panel_colours(flat[0]).astype(int)
    assert np.abs(col[:, 41] - col[:, 10]).max() < 20
    a = viz.render_map(att, spec, size=192, stretch=True)
    b = viz.render_map(att, spec, size=192)
    assert a.shape != b.shape or not np.array_equal(a, b)
    # only spatial attention is stretched: a per-channel vector keeps its fixed scale
    (vec,) = viz.panels_of(np.full((1, 8, 1, 1), 0.5), MapSpec("x.ca", "vector", "CA", "", 1), stretch=True)
    assert vec.scale == "unit"


def test_constant_attention_is_shown_as_constant():
    rng = np.random.default_rng(1)
    att = 0.504 + 0.019 * rng.random((1, 1, 64, 96))  # SAM-like near-constant gate
    spec = MapSpec("sam.attention", "attention", "SAM attention", "", 1)
    (p,) = viz.panels_of(att, spec)
    assert p.vrange == (0.0, 1.0) and p.scale == "unit"
    assert "fixed 0 to 1" in p.note and "0.504 to 0.523" in p.note
    colours = viz.panel_colours(p)
    assert np.ptp(colours.reshape(-1, 3).astype(int), axis=0).max() <= 12  # nearly one colour
    out = viz.render_map(att, spec, size=192)
    idx = lut_indices(out, "inferno")
    area = 128 * 192
    assert ((idx >= 128) & (idx <= 134)).sum() >= area  # every map pixel in the 0.50-0.53 band
    assert ((idx >= 0) & ((idx < 120) | (idx > 140))).sum() < 0.1 * area  # only the colour bar
    # attention outside [0, 1] (DSM-Net's subspace maps times h*w) falls back to robust
    (q,) = viz.panels_of(att * 50, spec)
    assert q.scale == "robust" and q.vrange[1] > 25


def test_colorbar_ticks_are_distinct():
    assert viz._labels([0.0, 0.5, 1.0]) == ["0", "0.5", "1"]
    near_one = [0.99990, 0.999925, 0.99995, 0.999975, 1.0]
    labels = viz._labels(near_one)
    assert len(set(labels)) == 5, labels
    assert viz._range_text(0.5041, 0.5229) == "0.504 to 0.523"


def test_band_groups_are_named_ll_lh_hl_hh():
    from derain_core.blocks import HAAR_BANDS
    spec = MapSpec("similarity.entropy", "attention", "similarity entropy", "", 4, 2,
                   channel_names=HAAR_BANDS)
    t = torch.rand(1, 4, 20, 24)
    assert [p.label for p in viz.panels_of(t, spec)] == ["LL", "LH", "HL", "HH"]
    feat = MapSpec("group_maps", "feature", "band-group output", "", 4, 2, channel_names=HAAR_BANDS)
    assert [label for label, _ in viz.map_to_2d(t, feat)] == ["LL", "LH", "HL", "HH"]
    with pytest.raises(ValueError):
        MapSpec("x", "feature", "x", "", 3, channel_names=HAAR_BANDS)
    # MFAN's band-group maps declare the names
    import derain_core as dc
    specs = dc.create_model("mfan", **dc.get_card("mfan").test_config).map_specs()
    grouped = [s for s in specs if s.key.endswith(("similarity.entropy", "similarity.argmax",
                                                   "group_maps"))]
    assert grouped and all(s.channel_names == HAAR_BANDS for s in grouped)
    assert {s.kind for s in grouped if s.key.endswith("argmax")} == {"index"}
    assert not any(p.label.startswith("channel") for s in grouped
                   for p in viz.panels_of(torch.rand(*s.shape(1, 32, 32)), s))


def test_index_maps_use_categorical_colours():
    rng = np.random.default_rng(2)
    idx = np.zeros((1, 2, 40, 60))
    idx[:, :, :20] = 3.0
    idx[:, 0, 20:, :30] = 54.0
    idx[:, 1, 20:, 30:] = 109.0
    spec = MapSpec("argmax", "index", "most-attended anchor", "", 2, 1, channel_names=("LL", "LH"))
    panels = viz.panels_of(idx, spec)
    assert [p.label for p in panels] == ["LL", "LH"] and all(p.categorical for p in panels)
    assert panels[0].categories == panels[1].categories == (0, 3, 54, 109)  # shared colours
    palette = {tuple(c) for c in viz.CATEGORICAL}
    for p in panels:
        colours = viz.panel_colours(p)
        got = {tuple(c) for c in colours.reshape(-1, 3)}
        assert got <= palette and len(got) == len(np.unique(p.data))  # one colour per value
        assert "categorical" in p.note and "54.5" not in p.note
    assert tuple(viz.panel_colours(panels[0])[0, 0]) == viz.CATEGORICAL[1]  # value 3
    out = viz.render_map(idx, spec, size=120, image=rgb_u8(40, 60), overlay_alpha=None)
    saturated = {tuple(c) for c in out.reshape(-1, 3) if not c[0] == c[1] == c[2]}
    assert saturated <= palette  # no continuous colour bar, no blended colours, text is grey
    assert not np.isin(lut_indices(out, "viridis"), np.arange(256)).any()
    # more values than colours: the most frequent get colours, the rest one grey
    many = rng.integers(0, 110, (1, 1, 40, 60)).astype(float)
    many[..., :10, :] = 7.0
    (p,) = viz.panels_of(many, MapSpec("a", "index", "a", "", 1))
    assert len(p.categories) == len(viz.CATEGORICAL) - 1 and 7 in p.categories
    got = {tuple(c) for c in viz.panel_colours(p).reshape(-1, 3)}
    assert viz.OTHER_COLOUR in got and got <= palette | {viz.OTHER_COLOUR}
    assert p.legend()[-1][0].startswith("other")


@pytest.mark.parametrize("kind", ["feature", "attention", "band", "image", "residual", "index"])
def test_single_channel_maps_have_no_duplicate_panels(kind):
    spec = MapSpec("m", kind, "one channel", "", 1)
    t = torch.rand(1, 1, 20, 24)
    panels = viz.panels_of(t, spec)
    assert len(panels) == 1, [p.label for p in panels]
    feat = viz.panels_of(t, MapSpec("f", "feature", "f", "", 1))[0]
    assert np.array_equal(feat.data, t[0, 0].double().numpy())  # the map itself, not a summary


def test_overlay_only_where_it_applies():
    t3 = torch.rand(1, 3, 20, 24)
    t1 = torch.rand(1, 1, 20, 24)
    assert not viz.can_overlay(t3, MapSpec("o", "image", "o", "", 3))
    assert not viz.can_overlay(t3, MapSpec("r", "residual", "r", "", 3))
    assert not viz.can_overlay(torch.rand(1, 4, 1, 1), MapSpec("v", "vector", "v", "", 4, 0, (1, 1)))
    assert not viz.can_overlay(torch.rand(1, 4, 16, 16), MapSpec("h", "attention", "h", "", 4, 0, (16, 16)))
    att = MapSpec("a", "attention", "a", "", 1)
    assert viz.can_overlay(t1, att) and att.overlayable
    assert viz.can_overlay(t1, MapSpec("f", "feature", "f", "", 1))
    image = rgb_u8(20, 24)
    spec = MapSpec("o", "image", "o", "", 3)
    assert np.array_equal(viz.render_map(t3, spec, image=image, overlay_alpha=0.5),
                          viz.render_map(t3, spec))
    assert not np.array_equal(viz.render_map(t1, att, image=image, overlay_alpha=0.5),
                              viz.render_map(t1, att))


def test_maps_are_rendered_large_with_full_captions():
    spec = MapSpec("att3", "attention", "Three-scale attention", "short", 3, 2)
    t = torch.rand(1, 3, 20, 30)  # a small map is enlarged to the panel width
    out = viz.render_map(t, spec)
    assert out.shape[1] >= 2 * 480  # two panels of 480 px per row
    panels = viz.panels_of(t, spec)
    tile = viz._panel_tile(panels[0], 480, viz._font_size(480))
    assert tile.shape[1] >= 480 and viz._font_size(480) >= 16
    long = MapSpec("att3", "attention", "Three-scale attention", "word " * 150, 3, 2)
    tall = viz.render_map(t, long)
    assert tall.shape[1] == out.shape[1] and tall.shape[0] > out.shape[0] + 4 * 16  # wrapped
    font = viz._font(16)
    lines = viz._wrap("word " * 150, font, 400)
    assert " ".join(s.strip() for s in lines).split() == ["word"] * 150  # nothing cut
    assert all(viz._text_width(s, font) <= 400 for s in lines)


# --------------------------------------------------------------------------- what changed
def test_removed_layer_known_difference():
    before = np.full((4, 5, 3), 200, np.uint8)
    after = before.copy()
    after[0, 0] = (150, 190, 230)  # removed 50 and 10 levels, added 30
    layer = viz.removed_layer(before, after)
    assert is_image(layer, 4, 5)
    assert tuple(layer[0, 0]) == (178, 138, 98)  # 128 + (before - after)
    assert (layer[1:] == viz.NEUTRAL).all()
    amp = viz.removed_layer(before, after, gain=viz.AMPLIFIED_GAIN)
    assert tuple(amp[0, 0]) == (255, 168, 8)  # 128 + 4 * (50, 10, -30); 328 clipped to white


def test_removed_layer_of_floats_matches_the_8_bit_pictures():
    rng = np.random.default_rng(3)
    before = rng.random((6, 7, 3)).astype(np.float32)
    after = np.clip(before - 0.1, 0, 1)
    expected = 128 + viz.to_uint8_image(before).astype(int) - viz.to_uint8_image(after).astype(int)
    assert np.array_equal(viz.removed_layer(before, after), np.clip(expected, 0, 255))


def test_removed_layer_of_no_change_is_neutral_grey():
    img = rgb_u8()
    for gain in (1, viz.AMPLIFIED_GAIN):
        assert (viz.removed_layer(img, img.copy(), gain) == 128).all()
    assert "(0.0% of values)" in viz.removed_note(img, img)


def test_removed_note_states_the_scale_and_the_clipped_share():
    before = np.full((2, 2, 3), 200, np.uint8)
    after = before.copy()
    after[0, 0] = 100  # 100 levels removed: within 1:1, beyond +-32 at x4
    note = viz.removed_note(before, after)
    assert "true scale" in note and "mid-grey = unchanged" in note and "±128" in note and "(0.0% of values)" in note
    amp = viz.removed_note(before, after, viz.AMPLIFIED_GAIN)
    assert "x4" in amp and "±32" in amp and "(25.0% of values)" in amp


def test_changed_view_switches_between_output_and_differences():
    before, after = rgb_u8(seed=1), rgb_u8(seed=2)
    pic, note = viz.changed_view(before, after, "output")
    assert pic is after and note == ""
    pic, note = viz.changed_view(before, after, "removed rain")
    assert np.array_equal(pic, viz.removed_layer(before, after)) and note == viz.removed_note(before, after)
    pic, _ = viz.changed_view(before, after, "amplified difference")
    assert np.array_equal(pic, viz.removed_layer(before, after, viz.AMPLIFIED_GAIN))
    assert viz.SHOW_CHOICES == ("output", "removed rain", "amplified difference")
    assert viz.view_label("MFAN", "output") == "MFAN" and viz.view_label("MFAN", "removed rain") == "MFAN · removed rain"
    assert viz.show_note("output") == "" and viz.show_note("amplified difference").startswith("Difference amplified x4")
    assert note.startswith(viz.show_note("removed rain")[:-1])  # the same scale, plus this output's clipped share
    with pytest.raises(ValueError):
        viz.changed_view(before, after, "sideways")
    with pytest.raises(ValueError):
        viz.removed_layer(before, after[:10])


# --------------------------------------------------------------------------- siblings
def _specs(model_id):
    from derain_core import registry
    return registry.create_model(model_id).map_specs()


def test_siblings_on_real_specs():
    """The sibling rule on the real specs: RRANet's stage attention across its six stages,
    MFAN's module outputs across its three scales, JDNet's per-scale maps, MSAMNet's dilated
    branches; maps without a number (the output) have none."""
    rr = {s.key: s for s in _specs("rranet")}
    axis, sib = viz.siblings(rr["stage3.gam.scale2"], list(rr.values()))
    assert axis == "stage" and [s.key for s in sib] == [f"stage{k}.gam.scale2" for k in range(1, 7)]
    axes = viz.sibling_axes(rr["stage3.gam.scale2"], list(rr.values()))
    assert [s.key for s in axes["scale"]] == [f"stage3.gam.scale{k}" for k in (1, 2, 3)]
    assert viz.siblings(rr["output"], list(rr.values())) is None

    mf = _specs("mfan")
    by_key = {s.key: s for s in mf}
    axis, sib = viz.siblings(by_key["module2.scale1"], mf)
    assert axis == "scale" and [s.key for s in sib] == ["module2.scale1", "module2.scale2", "module2.scale3"]
    # the group's first map with siblings: the channel CSSAB's head maps across scales
    group = viz.group_specs(mf)["module 2/scale 2/channel CSSAB"]
    axis, sib = viz.sibling_view(group, mf)
    assert axis == "scale" and [s.key for s in sib] == [f"module2.scale{k}.channel.head_att" for k in (1, 2, 3)]
    assert len(viz.sibling_axes(by_key["module2.scale1"], mf)["module"]) == 8

    jd = _specs("jdnet")
    axis, sib = viz.sibling_view(viz.group_specs(jd)["unit 16/scale aggregation"], jd)
    assert axis == "scale" and [s.key for s in sib] == [f"unit16.scale{k}" for k in (1, 2, 3, 4)]
    # a long family is cut to at most 8 evenly spaced maps that keep the first, the last and the map itself
    unit5 = next(s for s in jd if s.key == "unit5.san.attention.centre")
    axis, sib = viz.siblings(unit5, jd)
    assert axis == "unit" and len(sib) == viz.MAX_SIBLINGS and unit5 in sib
    every = viz.sibling_axes(unit5, jd)["unit"]
    assert sib[0] == every[0] and sib[-1] == every[-1]

    ms = _specs("msamnet")
    axis, sib = viz.sibling_view(viz.group_specs(ms)["MAGNet/dilated branches"], ms)
    assert axis == "branch_d" and [s.key for s in sib] == ["mag.branch_d1", "mag.branch_d2", "mag.branch_d3"]


def test_sibling_panels_share_one_colour_scale():
    """Same value -> same colour in two panels whose own ranges differ (features on the robust
    rule, different sizes), and in the drawn picture's panels too."""
    specs = [MapSpec(f"unit{k}.scale{s}", "feature", "scale map", "test", 1, scale=s, group=f"g{s}")
             for k in (1,) for s in (1, 2)]
    rng = np.random.default_rng(0)
    big = rng.uniform(0.0, 10.0, (1, 1, 32, 32))
    small = rng.uniform(0.0, 2.0, (1, 1, 16, 16))
    big[0, 0, 10, 10] = small[0, 0, 5, 5] = 1.5
    own = [viz.panels_of(t, s)[0] for t, s in zip((big, small), specs)]
    assert own[0].vrange != own[1].vrange  # on their own the two panels would disagree
    panels = viz.sibling_panels([big, small], specs, "scale")
    assert panels[0].vrange == panels[1].vrange and panels[0].cmap == panels[1].cmap
    c0, c1 = viz.panel_colours(panels[0]), viz.panel_colours(panels[1])
    assert (c0[10, 10] == c1[5, 5]).all()
    assert panels[0].label.startswith("scale 1") and panels[1].label.startswith("scale 2, 1/2")
    assert "same colour scale" in panels[0].note
    pic = viz.render_siblings([big, small], specs, "scale", size=240)
    assert is_image(pic) and pic.shape[1] >= 2 * 240
    # attention in [0, 1] stays on the fixed 0-1 scale
    att = [MapSpec(f"stage{k}.gam", "attention", "att", "", 1) for k in (1, 2)]
    ap = viz.sibling_panels([np.full((1, 1, 20, 20), 0.5), np.full((1, 1, 20, 20), 0.51)], att, "stage")
    assert all(p.vrange == (0.0, 1.0) and p.scale == "unit" for p in ap)
