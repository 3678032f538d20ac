"""Phone-size photos (issue 21), at the core: the working size and its labels, the estimate
shown before a run, per-tile progress and cancellation, bounded caches, ``derain run
--max-side``; and the measuring script in its quick mode (slow). CPU, tiny images."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from derain_core import cli, compare, engine, estimate, io, tiling, viz
from derain_core import metrics as mt
from derain_core.progress import Cancelled, CancelToken, Tracker, fmt_duration

ROOT = Path(__file__).resolve().parent.parent


def _photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], -1)
    return np.clip(smooth + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ working size
def test_working_copy_is_area_averaged_and_the_ground_truth_shrinks_the_same_way():
    rgb, gt = _photo(300, 200), _photo(300, 200, seed=1)
    up = compare.prepare(rgb, gt, ["dsmnet"], max_side=128)
    assert up.downscaled and up.original_size == (300, 200) and up.processed_size == (128, 85)
    assert up.image.rgb.shape == up.gt.rgb.shape == (85, 128, 3)
    assert np.array_equal(up.gt.rgb, io.downscale(gt, 128)) and np.array_equal(up.image.rgb, io.downscale(rgb, 128))
    assert up.input_metrics["psnr_rgb"] == pytest.approx(
        mt.compute_metrics(io.downscale(rgb, 128), io.downscale(gt, 128))["psnr_rgb"])
    assert up.size_note == "processed at 128x85, downscaled from 300x200"
    assert up.size_info() == {"processed_size": [128, 85], "original_size": [300, 200], "size_note": up.size_note}

    # antialiased: a one-pixel checkerboard averages to grey (point sampling would keep 0 or 1)
    board = np.broadcast_to(((np.indices((200, 300)).sum(0) % 2).astype(np.float32))[..., None], (200, 300, 3))
    small = compare.prepare(np.ascontiguousarray(board), None, ["dsmnet"], max_side=150).image.rgb
    assert small.shape == (100, 150, 3) and np.abs(small - 0.5).max() < 1e-6

    # alpha shrinks with the colour; a photo that fits is left alone; None keeps full resolution
    rgba = np.concatenate([rgb, np.full((200, 300, 1), 0.25, np.float32)], -1)
    shrunk = io.downscale_image(io.load_image(rgba), 128)
    assert shrunk.alpha.shape == (85, 128) and np.allclose(shrunk.alpha, 0.25)
    for max_side in (300, None):
        same = compare.prepare(rgb, gt, ["dsmnet"], max_side=max_side)
        assert not same.downscaled and same.size_note == "" and same.processed_size == (300, 200)
        assert same.caption("input") == "input"
    assert io.downscaled_size(4032, 3024, 640) == (640, 480) and io.downscaled_size(300, 200, 400) == (300, 200)


def _caption_rows(picture: np.ndarray, note: str, width: int, font_size: int = 14) -> bool:
    """True when ``picture`` starts with ``note`` drawn as viz draws a caption."""
    block = viz.caption_block(note, width, font_size)
    return picture.shape[1] == width and np.array_equal(picture[:block.shape[0]], block)


def test_every_output_crop_and_map_of_a_downscaled_run_says_its_size():
    rgb = _photo(300, 200)
    up = compare.prepare(rgb, _photo(300, 200, seed=1), ["dsmnet", "msamnet"], compare.UNTRAINED, max_side=128)
    note = "processed at 128x85, downscaled from 300x200"
    steps = list(compare.run(up, metrics=False))
    results = [s.result for s in steps]
    assert all(r.output.shape == (85, 128, 3) for r in results)
    assert [r.caption for r in results] == [f"{r.label} · {note}" for r in results]
    assert up.caption("input") == f"input · {note}" and up.caption("ground truth").endswith(note)

    for r in results:  # maps: the note under the gallery and on every map's caption
        maps = compare.maps_of(up.image, r)
        assert note in maps.note and maps.size_note == note
        assert maps.specs and all(maps.caption(s).endswith(note) for s in maps.specs)
        assert maps.base.shape == (85, 128, 3)

    strip = compare.crops(up, results, (64, 40), 16, 2)  # the crops: the note above the strip
    assert _caption_rows(strip, note, strip.shape[1])
    images, labels = compare.run_images(up, results)
    assert labels == ["input", "ground truth", *[r.label for r in results]]
    assert all(im.shape == (85, 128, 3) for im in images)
    grid = viz.labelled_grid(images, labels, cols=2, caption=up.size_note)
    assert _caption_rows(grid, note, grid.shape[1])

    # the same run at full resolution: no note anywhere
    full = compare.prepare(rgb, None, ["dsmnet"], compare.UNTRAINED)
    (step,) = compare.run(full, metrics=False)
    assert step.result.caption == step.result.label and step.result.output.shape == (200, 300, 3)
    maps = compare.maps_of(full.image, step.result)
    assert "processed at" not in maps.note and maps.caption(maps.specs[0]) == f"{maps.specs[0].title}: " \
        f"{maps.specs[0].meaning}"
    plain = compare.crops(full, [step.result], (64, 40), 16, 2)
    assert not _caption_rows(plain, note, plain.shape[1])


def test_crops_of_float_arrays_match_the_whole_image_conversion():
    images = [_photo(60, 40, s) for s in range(3)]
    cut = viz.synced_crops(images, (58, 3), 12, zoom=3)
    whole = viz.synced_crops([viz.to_uint8_image(im) for im in images], (58, 3), 12, zoom=3)
    assert all(np.array_equal(a, b) for a, b in zip(cut, whole))


# ------------------------------------------------------------------------------ the estimate
@pytest.fixture
def bench_table(tmp_path):
    bench = {"rows": [{"model_id": m, "size": size, "device": "cpu", "fast_s": t * k}
                      for m, k in (("dsmnet", 1.0), ("mfan", 2.0))
                      for size, t in (("481x321", 0.6), ("1024x768", 4.8))]}
    (tmp_path / "bench_cpu.json").write_text(json.dumps(bench))
    return estimate.table_for("cpu", results_dir=tmp_path)


def test_estimate_text_for_the_working_size_and_full_resolution(tmp_path, bench_table, monkeypatch):
    monkeypatch.setattr(estimate, "_CALIBRATION", {})
    monkeypatch.setattr(estimate, "_OBSERVED", {})
    assert estimate.estimate_text(["dsmnet"], 1024, 768, "cpu", bench_table) == \
        "about 5 s for 1 model at 1024x768 on this CPU"
    assert estimate.estimate_text(["dsmnet", "mfan"], 1024, 768, "cpu", bench_table) == \
        "about 14 s for 2 models at 1024x768 on this CPU"
    assert estimate.estimate_text(["dsmnet"], 1024, 768, "cuda", estimate.assumed("cuda", ["dsmnet"])).endswith(
        "on the GPU (a rough guess: no benchmark for this device)")

    photo = tmp_path / "phone.jpg"
    Image.new("RGB", (4032, 3024), (90, 110, 130)).save(photo, quality=80)
    small = compare.expected(str(photo), ["dsmnet", "mfan"], device="cpu", table=bench_table)
    full = compare.expected(str(photo), ["dsmnet", "mfan"], full_resolution=True, device="cpu", table=bench_table)
    assert small.processed_size == io.downscaled_size(4032, 3024, compare.WORKING_MAX_SIDE)
    assert full.processed_size == small.original_size == (4032, 3024)
    assert small.seconds == pytest.approx(bench_table.seconds(["dsmnet", "mfan"], *small.processed_size))
    assert full.seconds > 10 * small.seconds
    w, h = small.processed_size
    assert small.text.endswith(f"for 2 models at {w}x{h} on this CPU") and "at 4032x3024" in full.text
    assert compare.expected(str(photo), [], device="cpu") is None
    assert compare.expected(None, ["dsmnet"]) is None and compare.expected(str(tmp_path / "nope.png"), ["dsmnet"]) is None

    # the header's EXIF rotation counts (a portrait phone photo stored landscape)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 300)).save(tmp_path / "rot.jpg", exif=exif)
    assert compare.image_size(str(tmp_path / "rot.jpg")) == (300, 400)
    assert compare.image_size(io.load_image(tmp_path / "rot.jpg")) == (300, 400)

    # the ZeroGPU duration of a working-size run is that of the working copy; by default, full size
    assert estimate.gpu_duration_for_file(photo, ["dsmnet"], max_side=640) == estimate.gpu_duration(["dsmnet"], 640, 480)
    assert estimate.gpu_duration_for_file(photo, ["dsmnet"]) == estimate.gpu_duration(["dsmnet"], 4032, 3024)


def test_calibration_scales_the_table_once_per_device(bench_table, monkeypatch):
    monkeypatch.setattr(estimate, "_CALIBRATION", {})
    monkeypatch.setattr(estimate, "_OBSERVED", {})
    calls = []

    def fake_derain_one(rgb, model_id, device=None, metrics=True):
        calls.append((model_id, rgb.shape))
        return SimpleNamespace(seconds=2.0 * bench_table.cost(model_id).seconds(rgb.shape[0] * rgb.shape[1] / 1e6))

    monkeypatch.setattr(engine, "derain_one", fake_derain_one)
    assert estimate.calibration("cpu") is None
    plain = estimate.expected_seconds(["mfan"], 640, 480, "cpu", bench_table)
    assert estimate.calibrate("cpu", bench_table) == pytest.approx(2.0)
    assert calls == [("dsmnet", (96, 128, 3)), ("dsmnet", (321, 481, 3))]  # the cheapest model, warm-up first
    assert estimate.calibrate("cpu", bench_table) == pytest.approx(2.0) and len(calls) == 2  # measured once
    assert estimate.expected_seconds(["mfan"], 640, 480, "cpu", bench_table) == pytest.approx(2 * plain)
    monkeypatch.setattr(estimate, "_CALIBRATION", {})
    monkeypatch.setenv("DERAIN_CALIBRATE", "0")
    assert estimate.calibrate("cpu", bench_table) == 1.0 and len(calls) == 2


def test_each_finished_run_calibrates_its_own_model(bench_table, monkeypatch):
    """Models scale differently between machines: a run's measured time sets that model's factor,
    the others keep the device calibration."""
    monkeypatch.setattr(estimate, "_CALIBRATION", {"cpu": 2.0})
    monkeypatch.setattr(estimate, "_OBSERVED", {})
    plain = {m: bench_table.cost(m).seconds(640 * 480 / 1e6) for m in ("dsmnet", "mfan")}
    assert estimate.model_seconds("mfan", 640, 480, "cpu", bench_table) == pytest.approx(2 * plain["mfan"])
    # mfan ran 5x slower than the table at 481x321 on this machine
    assert estimate.observe("mfan", "cpu", 481, 321, 5 * bench_table.cost("mfan").seconds(481 * 321 / 1e6),
                            bench_table) == pytest.approx(5.0)
    assert estimate.model_seconds("mfan", 640, 480, "cpu", bench_table) == pytest.approx(5 * plain["mfan"])
    assert estimate.expected_seconds(["dsmnet", "mfan"], 640, 480, "cpu", bench_table) == \
        pytest.approx(2 * plain["dsmnet"] + 5 * plain["mfan"])
    assert estimate.factor_for("mfan", "cuda:0") == 1.0  # another device: not observed, not calibrated
    assert estimate.observe("mfan", "cpu", 481, 321, 0.0, bench_table) is None  # no time: nothing learned
    assert estimate.observe("mfan", "cpu", 481, 321, 1e6, bench_table) == estimate.CALIBRATION_CLAMP[1]


def test_durations_and_progress_text():
    assert [fmt_duration(s) for s in (0.2, 8.4, 89, 95, 190, 3600, 3960)] == \
        ["1 s", "8 s", "89 s", "1 min 30 s", "3 min 10 s", "1 h", "1 h 6 min"]
    now = [0.0]
    tr = Tracker(["dsmnet", "mfan"], ["DSM-Net", "MFAN"], weights=[1.0, 3.0], expected_s=40.0, clock=lambda: now[0])
    first = tr.at(0)
    assert first.fraction == 0 and first.eta_s == 40.0 and first.text == "DSM-Net (1/2) · about 40 s left"
    now[0] = 10.0
    p = tr.at(1, 5, 10)
    assert p.fraction == pytest.approx(0.25 + 0.75 * 0.5)
    assert p.eta_s == pytest.approx(10 * (1 - p.fraction) / p.fraction)
    assert p.text == "MFAN (2/2) · tile 5 of 10 · about 6 s left"
    assert Tracker(["a"], ["A"]).at(0).eta_s is None


def test_progress_never_steps_back():
    """Where one model ends and the next begins the fraction is the same float, for any costs."""
    rng = random.Random(0)
    for _ in range(200):
        weights = [rng.uniform(0.1, 30) for _ in range(5)]
        tr = Tracker(list("abcde"), list("ABCDE"), weights)
        fractions = [tr.at(i, done, 7).fraction for i in range(5) for done in range(8)]
        assert all(b >= a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == 1.0


# ------------------------------------------------------------------------------ tiles and cancel
def test_tile_callback_counts_every_tile_and_changes_nothing():
    net = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
    x = torch.rand(1, 3, 50, 70)
    seen = []
    with torch.no_grad():
        plain = tiling.run_tiled(net, x, 32, 8)
        called = tiling.run_tiled(net, x, 32, 8, on_tile=lambda d, t: seen.append((d, t)))
    assert torch.equal(plain, called)
    total = len(tiling.tile_starts(50, 32, 8)) * len(tiling.tile_starts(70, 32, 8))
    assert seen == [(d, total) for d in range(1, total + 1)] and total > 2


@pytest.fixture
def small_tiles(monkeypatch):
    """Tile everything in 32-px tiles (a tiny image stands for a full-resolution photo)."""
    monkeypatch.setattr(engine, "TILE_THRESHOLD", 0)
    monkeypatch.setattr(engine, "DEFAULT_TILE", 32)


@pytest.mark.parametrize("model_id", ["dsmnet", "rranet"])  # the generic tiling and RRANet's own
def test_a_run_cancelled_after_the_first_tile_stops_within_one_tile(model_id, small_tiles):
    up = compare.prepare(_photo(96, 64), None, [model_id, "dsmnet"], compare.UNTRAINED)
    loaded = engine.MODELS.get(model_id, compare.UNTRAINED, "cpu")
    calls = []
    hook = loaded.net.register_forward_pre_hook(lambda *a: calls.append(1))
    stage = getattr(loaded.net, "_stage", None)
    if stage is not None:  # RRANet's tiling calls its stages, not forward
        loaded.net._stage = lambda *a, **k: (calls.append(1), stage(*a, **k))[1]
    token, progress = CancelToken(), []

    def on_progress(p):
        progress.append(p)
        if p.tiles_done == 1:
            token.cancel()

    try:
        with pytest.raises(Cancelled):
            list(compare.run(up, metrics=False, cancel=token, on_progress=on_progress))
    finally:
        hook.remove()
        if stage is not None:
            del loaded.net._stage
    assert len(calls) == 1  # one tile ran, then the token stopped the work
    assert [(p.index, p.tiles_done) for p in progress] == [(0, 0), (0, 1)] and progress[-1].tiles > 4
    assert progress[-1].text.startswith(f"{progress[-1].name} (1/2) · tile 1 of {progress[-1].tiles}")


def test_cancel_between_models_and_an_uncancelled_tiled_run(small_tiles):
    up = compare.prepare(_photo(64, 48), None, ["dsmnet", "msamnet"], compare.UNTRAINED)
    token = CancelToken()
    run = compare.run(up, metrics=False, cancel=token)
    first = next(run)
    assert first.model_id == "dsmnet" and first.result.tile == 32
    token.cancel()
    with pytest.raises(Cancelled):
        next(run)
    seen = []
    steps = list(compare.run(up, metrics=False, cancel=CancelToken(), on_progress=seen.append))
    assert [s.model_id for s in steps] == ["dsmnet", "msamnet"] and all(s.result for s in steps)
    fractions = [p.fraction for p in seen]
    # never backwards, not even by float rounding where one model ends and the next begins
    assert all(b >= a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ bounded memory
def test_model_cache_keeps_at_most_its_size():
    cache = engine.ModelCache(max_size=2)
    for m in ("dsmnet", "msamnet", "dsmnet", "mfan"):
        cache.get(m, compare.UNTRAINED, "cpu")
    assert [k[0] for k in cache.keys()] == ["dsmnet", "mfan"]  # msamnet was the least recently used
    assert engine.release_memory() is sys.platform.startswith("linux")


def test_maps_cache_drops_the_oldest_beyond_its_budget():
    def mapset(mb: int) -> compare.MapSet:
        return compare.MapSet("m", {"a": np.zeros(mb * 2**18, np.float32)}, [], 1.0, np.zeros((1, 1, 3), np.float32))

    cache = compare.MapsCache(max_bytes=int(3.5 * 2**20))
    for key in ("p1", "p2"):
        cache.put(key, mapset(1))
    assert cache.get("p1") is not None  # p1 used: p2 is now the oldest
    cache.put("p3", mapset(1))
    cache.put("p4", mapset(1))
    assert [k for k in ("p1", "p2", "p3", "p4") if cache.get(k) is not None] == ["p1", "p3", "p4"]
    assert cache.nbytes <= cache.max_bytes
    big = mapset(4)
    assert cache.get_or_compute("huge", lambda: big) is big and cache.get("huge") is None  # over the budget
    assert cache.get_or_compute("p3", lambda: pytest.fail("recomputed")) is not None


# ------------------------------------------------------------------------------ the CLI
def test_cli_run_max_side(tmp_path, capsys):
    Image.fromarray((_photo(300, 200) * 255).astype(np.uint8)).save(tmp_path / "rainy.png")
    Image.fromarray((_photo(300, 200, 1) * 255).astype(np.uint8)).save(tmp_path / "clean.png")
    out = tmp_path / "out"
    code = cli.main(["run", str(tmp_path / "rainy.png"), "--models", "dsmnet", "--gt", str(tmp_path / "clean.png"),
                     "--max-side", "128", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "rainy: processed at 128x85, downscaled from 300x200" in stdout
    with Image.open(out / "rainy_dsmnet.png") as im:
        assert im.size == (128, 85)
    (row,) = json.loads((out / "metrics.json").read_text())
    assert row["processed_size"] == "128x85" and row["original_size"] == "300x200" and "psnr_y" in row

    code = cli.main(["run", str(tmp_path / "rainy.png"), "--models", "dsmnet", "--out", str(out / "full")])
    assert code == 0 and "downscaled" not in capsys.readouterr().out  # full resolution by default
    with Image.open(out / "full" / "rainy_dsmnet.png") as im:
        assert im.size == (300, 200)
    assert cli.main(["run", str(tmp_path / "rainy.png"), "--max-side", "8", "--out", str(out)]) == 2
    assert "--max-side must be at least 16" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the Gradio app's wiring
def test_gradio_run_labels_estimate_and_cancel_wiring(tmp_path, monkeypatch):
    """The app's handlers called as functions: a downscaled run says so on every picture, the
    estimate follows the full-resolution toggle, and the Cancel handler stops the session's run."""
    pytest.importorskip("gradio")
    import app.gradio_app as ga

    monkeypatch.setattr(compare, "WORKING_MAX_SIDE", 128)
    monkeypatch.setattr(estimate, "_CALIBRATION", {})
    monkeypatch.setattr(estimate, "_OBSERVED", {})
    path = tmp_path / "photo.png"
    Image.fromarray((_photo(300, 200) * 255).astype(np.uint8)).save(path)
    note = "processed at 128x85, downscaled from 300x200"

    assert ga.show_estimate(str(path), ["dsmnet", "mfan"], False).startswith("Expected: about ")
    shown = ga.show_estimate(str(path), ["dsmnet", "mfan"], False)
    assert shown.endswith("for 2 models at 128x85 on this CPU (downscaled from 300x200)")
    assert "for 1 model at 300x200 on this CPU" in ga.show_estimate(str(path), ["dsmnet"], True)
    assert ga.show_estimate(None, ["dsmnet"], False) == "" and ga.show_estimate(str(path), [], False) == ""

    pages = list(ga.run(str(path), None, ["dsmnet"], ga.DEFAULT_VARIANT, None))
    st = pages[-1].state
    assert st.upload.processed_size == (128, 85) and note.capitalize() in pages[-1].status
    assert set(estimate._OBSERVED) == {("cpu", "dsmnet")}  # the run calibrated its model's estimate
    assert [c for _, c in pages[-1].outputs] == [f"input · {note}", f"{st.results[0].label} · {note}"]
    assert pages[-1].slider.label == f"{ga.SLIDER_LABEL} · {note}"
    assert _caption_rows(pages[-1].grid, note, pages[-1].grid.shape[1], ga.TILE_FONT)
    _, crops, _ = ga.zoom_click(st, 2, 16, SimpleNamespace(index=[10, 20]))
    assert f"; {note}." in crops  # written over the crops (HTML images at their own size)
    out = ga.inspect_model(st, "dsmnet", None, False)
    assert note in out.insp_note and out.maps.count(f"{note}</figcaption>") == out.maps.count("<figure")
    assert ga.change_group(st, "dsmnet", None, False)[0]  # the maps held by the session

    full = list(ga.run(str(path), None, ["dsmnet"], ga.DEFAULT_VARIANT, st, True))
    assert full[-1].state.upload.processed_size == (300, 200) and "processed at" not in full[-1].status
    assert not st.folder.exists()  # the previous run's files are gone

    me = SimpleNamespace(session_hash="s1")
    run = ga.run(str(path), None, ["dsmnet", "msamnet"], ga.DEFAULT_VARIANT, None, False, request=me)
    assert "Running" in next(run).status
    ga.cancel_run(SimpleNamespace(session_hash="other"))  # another session's button: no effect
    assert not ga._RUNS["s1"].cancelled
    ga.cancel_run(me)
    rest = list(run)
    assert len(rest) == 1 and "Cancelled** after 0 of 2 models" in rest[0].status and not rest[0].state.results
    assert "s1" not in ga._RUNS


def test_streamlit_compare_page_runs_at_the_working_size(tmp_path, monkeypatch):
    """The dashboard's Compare page: the estimate before the run, a downscaled run labelled, and
    the full-resolution toggle."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setattr(compare, "WORKING_MAX_SIDE", 128)
    clean = _photo(300, 200)
    io.save_png(tmp_path / "big_rainy.png", np.clip(clean + 0.2 * (_photo(300, 200, 3) > 0.8), 0, 1))
    io.save_png(tmp_path / "big_clean.png", clean)
    (tmp_path / "index.json").write_text(json.dumps([
        {"file": "big_rainy.png", "gt": "big_clean.png", "preset": "heavy", "title": "Big"}]))
    monkeypatch.setenv("DERAIN_EXAMPLES_INDEX", str(tmp_path / "index.json"))
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=300).run()
    at.multiselect(key="cmp_models").set_value(["dsmnet"]).run()
    assert any(c.value.startswith("Expected: about ") and c.value.endswith(
        "for 1 model at 128x85 on this CPU (downscaled from 300x200)") for c in at.caption)
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error
    note = "Processed at 128x85, downscaled from 300x200"
    assert any(i.value.startswith(note) for i in at.info)
    assert at.dataframe[0].value.shape[0] == 2  # the rainy input and DSM-Net, PSNR against the shrunk truth
    at.toggle(key="cmp_full_res").set_value(True).run()
    assert any(c.value.endswith("for 1 model at 300x200 on this CPU") for c in at.caption)
    at.button(key="cmp_run").click().run()
    assert not at.exception and not any(i.value.startswith(note) for i in at.info)


# ------------------------------------------------------------------------------ the measuring script
@pytest.mark.slow
def test_measure_script_quick_mode(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_phone_photo.py"), "--quick",
                           "--json", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["quick"] and m["working"]["results"] == 1 and m["full"]["results"] == 1
    assert m["cpu"] and m["cpu_count"] >= 1 and m["commit"]  # where the numbers come from
    assert 0 < m["working"]["first_s"] <= m["working"]["last_s"]
    assert "processed at 160x120" in m["working"]["status"].lower() and "Expected: about " in m["working"]["estimate_text"]
    assert m["memory"]["startup_rss_mb"] > 50 and m["memory"]["full_peak_rss_mb"] >= m["memory"]["startup_rss_mb"]
    per_model = m["memory"]["full_peak_rss_mb_per_model"]
    assert list(per_model) == ["dsmnet"] and 0 < per_model["dsmnet"] <= m["memory"]["full_peak_rss_mb"]
    assert "peak resident memory" in done.stdout


def test_memory_goes_back_after_each_tiled_model(small_tiles, monkeypatch):
    # each network's tiles leave freed heap behind; it is handed back before the next model
    # of a full-resolution run starts (and once more when the run ends), not only at the end
    calls = []
    monkeypatch.setattr(engine, "release_memory", lambda: calls.append(1) or True)
    up = compare.prepare(_photo(64, 48), None, ["dsmnet", "msamnet"], compare.UNTRAINED)
    run = compare.run(up, metrics=False)
    first = next(run)
    assert first.result.tile == 32 and calls == [1]
    rest = list(run)
    assert [s.model_id for s in rest] == ["msamnet"] and calls == [1, 1, 1]
