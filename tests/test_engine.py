"""Engine: padding, tiling, precision choice, caching (tiny configs, CPU)."""
import threading

import pytest
import torch

import derain_core as dc
from derain_core import engine, tiling
from derain_core.engine import LoadedModel, psnr_db, run_model
from derain_core.tiling import tile_starts

IDS = [c.id for c in dc.list_models()]


def tiny_loaded(model_id: str) -> LoadedModel:
    torch.manual_seed(0)
    card = dc.get_card(model_id)
    net = dc.create_model(model_id, **card.test_config).eval()
    return LoadedModel(card, net, "untrained", torch.device("cpu"), "fp32")


def smooth_image(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    streaks = (torch.rand(1, 1, h, w, generator=g) > 0.97).float()
    return (img * 0.8 + 0.2 * streaks).clamp(0, 1)


class Identity(torch.nn.Module):
    def forward(self, x):
        return x * 1.0


def test_tiling_blends_to_identity_exactly():
    card = dc.get_card(IDS[0])
    loaded = LoadedModel(card, Identity(), "untrained", torch.device("cpu"), "fp32")
    x = torch.rand(1, 3, 150, 131)
    y, used = run_model(loaded, x, tile=64)
    assert used == 64
    assert torch.allclose(y, x, atol=1e-6)


@pytest.mark.parametrize("model_id", IDS)
def test_tiled_matches_whole_image(model_id):
    loaded = tiny_loaded(model_id)
    x = smooth_image(160, 144)
    whole, used_whole = run_model(loaded, x, tile=0)
    tiled, used_tiled = run_model(loaded, x, tile=96)
    assert used_whole is None and used_tiled == 96
    assert whole.shape == tiled.shape == x.shape
    assert psnr_db(whole, tiled) >= 45.0


def test_tile_starts_cover_everything():
    for length, tile, overlap in [(100, 40, 10), (512, 512, 32), (513, 256, 64), (37, 64, 16)]:
        starts = tile_starts(length, min(tile, length), overlap)
        covered = set()
        for s in starts:
            covered.update(range(s, s + min(tile, length)))
        assert covered == set(range(length))


def test_precision_respects_card(monkeypatch):
    monkeypatch.delenv("DERAIN_PRECISION", raising=False)
    card = dc.get_card(IDS[0])
    assert engine.choose_precision(card.with_(supports_bf16=False, supports_fp16=False), torch.device("cpu")) == "fp32"
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert engine.choose_precision(card.with_(supports_bf16=True), torch.device("cpu")) == "bf16"
    monkeypatch.setenv("DERAIN_PRECISION", "fp32")
    assert engine.choose_precision(card.with_(supports_bf16=True), torch.device("cpu")) == "fp32"


def test_native_bf16_means_the_cpu_has_bf16_instructions(monkeypatch):
    """oneDNN emulates bf16 on plain AVX-512 (and says it is supported there); only AVX512-BF16
    or AMX count as native, else bf16 would slow training and inference down."""
    for avx512_bf16, amx, native in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
        assert engine.cpu_has_native_bf16() is native
        assert engine.cpu_matrix_isa() == ("AMX" if amx else "AVX512-BF16" if avx512_bf16
                                           else torch.backends.cpu.get_cpu_capability())


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="no weights variant"):
        engine.resolve_variant(IDS[0], "no-such-variant")
    # non-strict: one variant asked of several models falls back to each model's default
    assert engine.resolve_variant(IDS[0], "no-such-variant", strict=False) == engine.resolve_variant(IDS[0], None)
    assert engine.resolve_variant(IDS[0], engine.UNTRAINED, strict=False) == engine.UNTRAINED


def test_devices_and_labels():
    assert engine.resolve_device("auto") == engine.default_device()
    assert engine.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            engine.resolve_device("cuda")
    assert engine.model_label("MFAN", trained=False) == "MFAN (untrained)"
    assert engine.model_label("MFAN", trained=True) == "MFAN"
    a = torch.zeros(1, 3, 4, 4)
    assert psnr_db(a, a) == float("inf") and psnr_db(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)


def test_model_cache_builds_once_under_threads(monkeypatch):
    calls = []

    def fake_build(model_id, variant, device, fast):
        calls.append(model_id)
        return tiny_loaded(model_id)

    monkeypatch.setattr(engine, "_build", fake_build)
    cache = engine.ModelCache()
    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get(IDS[1], "untrained", "cpu"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(o) for o in out}) == 1


TILEABLE = [m for m in IDS if dc.get_card(m).tiling == "supported"]
# Shipped weights whose tiled output is known NOT to match the whole-image output (a strict xfail:
# the test fails the day they do match, so that this list shrinks). DSM-Net's heavy weights lean more
# on wide context (haze and veil; its CADB subspace projection spans the whole input): 36.7 dB here,
# 50.3 dB on astronaut_heavy at 1056x704 in 512-px tiles (scripts/tiling_check.py dsmnet 704 1056 512
# heavy). The apps work on 640-px copies (no tiling) unless full resolution is asked for.
TILING_KNOWN_OFF = {("dsmnet", "heavy"): "heavy DSM-Net depends on whole-frame statistics"}


def _tiling_cases():
    from derain_core import weights as wts

    for m in TILEABLE:
        for v in wts.available_variants(m):
            why = TILING_KNOWN_OFF.get((m, v))
            yield pytest.param(m, v, marks=[pytest.mark.xfail(strict=True, reason=why)] if why else [])


@pytest.mark.parametrize("model_id,variant", _tiling_cases())
def test_tiled_matches_whole_with_shipped_weights(model_id, variant):
    """The acceptance check: the models as the app runs them (every shipped weights file, fast path)."""
    loaded = engine.MODELS.get(model_id, variant, "cpu")
    x = smooth_image(128, 160)
    whole, _ = run_model(loaded, x, tile=0)
    tiled, used = run_model(loaded, x, tile=96)
    assert used == 96
    assert psnr_db(whole, tiled) >= 45.0, f"{model_id} ({loaded.variant})"


def test_every_shipped_model_tiles():
    assert TILEABLE == IDS


def test_discouraged_tiling_is_avoided():
    """A card may discourage tiling; the engine then does not tile at sizes where it tiles the
    others (it still does when an image is huge)."""
    card = dc.get_card(IDS[0]).with_(tiling="discouraged")
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape[-2:]))
            return x

    loaded = LoadedModel(card, Spy(), "untrained", torch.device("cpu"), "fp32")
    x = torch.rand(1, 3, 1100, 1000)  # above TILE_THRESHOLD, below 4x of it
    _, used = run_model(loaded, x)
    assert used is None and calls == [(1100, 1000)]


def test_fold_batchnorm_keeps_results():
    torch.manual_seed(0)
    net = dc.create_model("rranet", **dc.get_card("rranet").test_config)
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        before = net(x)
        folded = engine.fold_batchnorm(net)
        after = net(x)
    assert folded > 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # all follow a conv
    assert torch.allclose(before, after, atol=1e-5)


def test_tiled_run_that_would_not_fit_is_refused_clearly(monkeypatch):
    # RRANet's staged tiling keeps about 1 KB of whole-image state per pixel: a photo that
    # would exhaust the memory gets a one-line error (the other models of a run go on)
    monkeypatch.setattr(tiling, "SPILL_MB", 10**6)  # the state stays in memory
    loaded = tiny_loaded("rranet")
    x = smooth_image(160, 144)
    need, on_disk = loaded.net.tiled_memory(160, 144, loaded.device)
    assert on_disk == 0 and tiny_loaded("dsmnet").net.tiled_memory(160, 144, loaded.device)[0] < need
    monkeypatch.setattr(engine, "available_memory", lambda device: need)  # 80 % of it is too little
    with pytest.raises(MemoryError, match=r"RRANet needs about .* GB for a 144x160 photo at full resolution"):
        run_model(loaded, x, tile=96)
    run_model(loaded, x, tile=0)  # a whole-image run is not this check's business
    monkeypatch.setattr(engine, "available_memory", lambda device: 2 * need)
    assert run_model(loaded, x, tile=96)[1] == 96


def test_spilled_state_leaves_only_the_rest_in_memory(monkeypatch, tmp_path):
    # over the spill budget RRANet's state goes to temporary files: the memory check counts the
    # rest, a disk too small for the state is a one-line error, and no file is left behind
    loaded = tiny_loaded("rranet")
    x = smooth_image(160, 144)
    in_memory, _ = loaded.net.tiled_memory(160, 144, loaded.device)
    monkeypatch.setattr(tiling, "SPILL_MB", 0)
    monkeypatch.setenv("DERAIN_SPILL_DIR", str(tmp_path))
    rest, on_disk = loaded.net.tiled_memory(160, 144, loaded.device)
    assert rest + on_disk == in_memory and on_disk > rest
    monkeypatch.setattr(engine, "available_memory", lambda device: 2 * rest)
    assert run_model(loaded, x, tile=96)[1] == 96
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(tiling.shutil, "disk_usage", lambda path: shutil_usage(on_disk - 1))
    with pytest.raises(MemoryError, match=r"needs .* GB of temporary disk space in .* GB are free"):
        run_model(loaded, x, tile=96)


def shutil_usage(free: int):
    import collections
    return collections.namedtuple("usage", "total used free")(free, 0, free)


def test_available_memory_is_known_on_linux():
    free = engine.available_memory(torch.device("cpu"))
    assert free is None or free > 2**20
