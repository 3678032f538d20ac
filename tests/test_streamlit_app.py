"""The Streamlit dashboard driven headlessly with AppTest: every page, with tiny images.

Examples and results are fixtures made in tmp_path (``DERAIN_EXAMPLES_INDEX``,
``DERAIN_RESULTS_DIR``), so the tests do not depend on the committed assets or results.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from derain_core import dashboard_data as dd
from derain_core import io, synth
from derain_core.engine import UNTRAINED
from derain_core.registry import list_models

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "streamlit_app.py")
TIMEOUT = 300  # seconds per run: five full models on a 64x48 image, on a shared 2-core machine

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


def _clean(w: int = 64, h: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], -1)
    return np.clip(img, 0, 1).astype(np.float32)


def make_examples(tmp: Path) -> Path:
    """A tiny examples index: one example with ground truth, one without."""
    clean = _clean()
    rainy, _ = synth.add_rain(clean, synth.preset("heavy", seed=1))
    io.save_png(tmp / "tiny_clean.png", clean)
    io.save_png(tmp / "tiny_heavy_rainy.png", rainy)
    index = tmp / "index.json"
    index.write_text(json.dumps([
        {"file": "tiny_heavy_rainy.png", "gt": "tiny_clean.png", "preset": "heavy", "title": "Tiny (heavy)"},
        {"file": "tiny_heavy_rainy.png", "gt": None, "preset": "heavy", "title": "Tiny, no ground truth"},
    ]))
    return index


def make_results(root: Path, models: list[str]) -> Path:
    """Results in the committed layout: results/<variant>/eval_*.{json,csv} and bench_cpu.json."""
    rng = np.random.default_rng(0)
    d = root / "rain100l"
    d.mkdir(parents=True)
    summary, per_image = [], []
    for i, m in enumerate(models):
        vals = []
        for k in range(4):
            v = {"psnr_rgb": 30 + i + rng.normal(), "ssim_rgb": 0.9 + 0.01 * i, "psnr_y": 32 + i + rng.normal(),
                 "ssim_y": 0.92 + 0.01 * i}
            vals.append(v)
            per_image.append({"model": m, "variant": "rain100l", "image": f"rain-{k:03d}.png",
                              "seconds": 0.5 + 0.1 * i, **{kk: round(vv, 4) for kk, vv in v.items()}})
        summary.append({"model": m, "variant": "rain100l", "images": 4,
                        **{k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0]}})
    summary.append({"model": "rainy input", "variant": "-", "images": 4, "psnr_rgb": 26.0,
                    "ssim_rgb": 0.8, "psnr_y": 27.5, "ssim_y": 0.82})
    (d / "eval_summary.json").write_text(json.dumps(summary))
    with open(d / "eval_per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(per_image[0]))
        w.writeheader()
        w.writerows(per_image)
    (root / "bench_cpu.json").write_text(json.dumps({"machine": "test machine", "rows": [
        {"model_id": m, "size": "481x321", "fast_s": 1.0 + i, "reference_s": 2.0 + i, "speedup": 1.5,
         "macs_g": 100.0, "gflops": 50.0, "peak_mb": 300.0} for i, m in enumerate(models)]}))
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DERAIN_EXAMPLES_INDEX", str(make_examples(tmp_path)))
    monkeypatch.setenv("DERAIN_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def _app() -> "AppTest":
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def _plotly(at) -> list:
    return at.get("plotly_chart")


def _arr(v) -> np.ndarray:
    """A plotly JSON array (a list, or the binary ``{"dtype", "bdata"}`` form) as numpy."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _png_urls(at) -> list[str]:
    return [i.url for el in at.image for i in el.proto.imgs]


def _slider_html(at) -> str:
    """The before/after slider's HTML (an iframe element of srcdoc)."""
    frames = at.get("iframe")
    assert len(frames) == 1, frames
    return frames[0].proto.srcdoc


def _ok(at) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ---------------------------------------------------------------------------------- Compare
def test_compare_upload_run_all_models(env):
    at = _app()
    assert "Upload" in at.radio(key="cmp_source").options
    at.radio(key="cmp_source").set_value("Upload").run()
    clean = _clean()
    rainy, _ = synth.add_rain(clean, synth.preset("light", seed=2))
    at.file_uploader(key="cmp_upload").upload("rainy.png", io.png_bytes(rainy), "image/png").run()
    at.file_uploader(key="cmp_upload_gt").upload("clean.png", io.png_bytes(clean), "image/png").run()
    _ok(at)
    assert len(at.image) == 1  # the input preview, before running
    assert at.multiselect(key="cmp_models").value == [c.id for c in list_models()]
    at.button(key="cmp_run").click().run()
    _ok(at)
    # The grid and the synchronized crops, lossless PNG; the before/after slider is HTML with both
    # pictures embedded as PNG data URLs (it moves in the browser, no rerun).
    assert len(at.image) == 2
    urls = _png_urls(at)  # inline, never a media-store file a late request could miss
    assert len(urls) > 2 and all(u.startswith("data:image/png;base64,") for u in urls), [u[:40] for u in urls]
    html = _slider_html(at)
    assert html.count('src="data:image/png;base64,') == 2 and 'id="ba-pos"' in html
    assert not at.get("progress")  # the progress bar goes when the run is done
    table = at.dataframe[0].value
    n = len(list_models())
    assert len(table) == n + 1 and table.iloc[0, 0] == "rainy input"
    assert {"PSNR RGB (dB) ↑", "SSIM Y ↑"} <= set(table.columns)
    psnr = table["PSNR RGB (dB) ↑"].iloc[1:].astype(float)
    assert np.isfinite(psnr).all() and (psnr > 0).all()
    # The best value of each metric column is marked (report.results_table's rule, the rainy
    # input competing too); device, precision and tiling are a line under the table, not columns.
    assert not {"Device", "Precision", "Tiling"} & set(table.columns)
    styles = at.dataframe[0].proto.arrow_data.styler.styles
    marked = {(int(i), int(j)) for i, j in re.findall(r"row(\d+)_col(\d+)", styles)}
    for name in ("PSNR RGB (dB) ↑", "SSIM Y ↑"):
        j = list(table.columns).index(name)
        col = table[name].astype(float)
        assert {(i, j) for i in np.flatnonzero(col == col.max())} <= marked, (name, styles)
        assert {i for i, jj in marked if jj == j} == set(np.flatnonzero(col == col.max()).tolist())
    assert "font-weight: bold" in styles
    assert any(m.value.startswith("**Ran on**") and "Bold" in m.value for m in at.markdown)
    # Models without weights are marked untrained in the table and in a warning.
    untrained = [c.id for c in list_models() if not dd.wts.available_variants(c.id)]
    if untrained:
        assert table["Model"].str.contains("(untrained)", regex=False).sum() == len(untrained)
        assert any("Untrained" in w.value for w in at.warning)
    # Before/after: another output on the slider's right side.
    at.selectbox(key="cmp_ba_model").set_value(1).run()
    _ok(at)
    assert len(at.image) == 2 and f">{list_models()[1].name}" in _slider_html(at)
    # A zoom point (what a click on the input stores) moves the crop window.
    at.session_state["cmp_point"] = (3, 4)
    at.run()
    assert any("(x=3, y=4)" in c.value for c in at.caption)


def test_compare_example_without_ground_truth_one_model(env):
    at = _app()
    at.selectbox(key="cmp_example").set_value(1).run()
    at.multiselect(key="cmp_models").set_value(["dsmnet"]).run()
    at.button(key="cmp_run").click().run()
    _ok(at)
    table = at.dataframe[0].value
    assert len(table) == 2
    assert not any("PSNR" in c for c in table.columns)  # no ground truth: no-reference metrics only
    assert "PIQE ↓" in table.columns


def test_compare_what_changed_expectations_zip_and_maps_viewed(env):
    at = _app()
    at.selectbox(key="cmp_example").set_value(1).run()
    at.multiselect(key="cmp_models").set_value(["dsmnet"]).run()
    at.button(key="cmp_run").click().run()
    _ok(at)
    # Expectations from the weight cards, next to the results.
    assert any("**DSM-Net**" in m.value and ("PSNR-Y" in m.value or "untrained" in m.value) for m in at.markdown)
    # Show: what the model removed, in the grid and on the before/after's right side.
    assert at.radio(key="cmp_show").options == ["output", "removed rain", "amplified difference"]
    at.radio(key="cmp_show").set_value("amplified difference").run()
    _ok(at)
    assert len(at.image) == 2
    assert any("DSM-Net · amplified difference right" in c.value and "Difference amplified x4" in c.value
               for c in at.caption)
    assert "DSM-Net · amplified difference</span>" in _slider_html(at)
    zip_button = at.get("download_button")[0]
    assert zip_button.proto.deferred_file_id  # built when clicked
    # A map looked at on the Inspect page is kept for the zip of the same photo.
    at.switch_page("views/inspect_maps.py").run()
    at.selectbox(key="insp_model").set_value("dsmnet").run()
    _ok(at)
    photo_key, maps = at.session_state["viewed_maps"]
    assert maps and all(png.startswith(b"\x89PNG") for png in maps.values())
    example = io.load_image(dd.load_examples()[1].file)  # the photo the Compare page ran on
    assert photo_key == hashlib.sha1(np.ascontiguousarray(example.rgb).tobytes()).hexdigest()[:16]


def test_compare_bad_upload_is_a_readable_error(env):
    at = _app()
    at.radio(key="cmp_source").set_value("Upload").run()
    at.file_uploader(key="cmp_upload").upload("fake.png", b"this is text, not a PNG", "image/png").run()
    assert not at.exception
    assert any("Could not read the rainy image" in e.value for e in at.error)
    assert at.button(key="cmp_run").disabled


def test_app_starts_without_examples_index(tmp_path, monkeypatch):
    monkeypatch.setenv("DERAIN_EXAMPLES_INDEX", str(tmp_path / "missing" / "index.json"))
    monkeypatch.setenv("DERAIN_RESULTS_DIR", str(tmp_path / "results"))
    at = _app()
    assert at.radio(key="cmp_source").options == ["Upload"]
    assert any("No bundled examples" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------- Inspect
def test_inspect_maps_groups_channels_histogram(env):
    at = _app()
    at.switch_page("views/inspect_maps.py").run()
    _ok(at)
    assert at.selectbox(key="insp_model").value == list_models()[0].id
    at.selectbox(key="insp_model").set_value("dsmnet").run()
    _ok(at)
    groups = at.selectbox(key="insp_group_dsmnet").options
    assert any(g.startswith("scale 1") for g in groups)
    # A 32-channel feature map: the channel grid, its statistics and a histogram.
    at.selectbox(key="insp_group_dsmnet").set_value("scale 1").run()
    maps = at.selectbox(key="insp_map_dsmnet_scale 1")
    feat = next(i for i, o in enumerate(maps.options) if "[scale1.input]" in o)
    maps.set_value(feat).run()
    _ok(at)
    assert len(_plotly(at)) == 2  # px.imshow of the map and the histogram
    spec = json.loads(_plotly(at)[0].proto.spec)
    assert spec["data"][0]["type"] == "heatmap"
    assert len(at.image) >= 2  # render_map + channel grid
    stats = at.dataframe[0].value
    assert len(stats) == 32 and {"index", "min", "max", "mean", "std"} <= set(stats.columns)
    # Colour map and overlay controls work.
    at.selectbox(key="insp_cmap").set_value("coolwarm").run()
    at.toggle(key="insp_overlay").set_value(True).run()
    _ok(at)
    # Across scales: scale1.input beside scale2.input and scale3.input, one picture (viz.render_siblings).
    assert not at.toggle(key="insp_across").disabled
    at.toggle(key="insp_across").set_value(True).run()
    _ok(at)
    assert "scale1.input across scales" in " ".join(at.session_state["viewed_maps"][1])
    # Stretched attention colours: drawn anew, kept under their own name.
    at.toggle(key="insp_stretch").set_value(True).run()
    _ok(at)
    assert any(name.endswith("stretched") for name in at.session_state["viewed_maps"][1])
    # The output has no siblings: the switch is off limits there.
    at.selectbox(key="insp_group_dsmnet").set_value("output").run()
    _ok(at)
    assert at.toggle(key="insp_across").disabled


def test_inspect_reuses_the_compare_run(env, monkeypatch):
    """Inspect shows the maps of the Compare page's results without running the model again, and
    records each model's maps once however often the user switches between models."""
    from derain_core import compare

    calls = {"run": 0, "maps": 0}
    run, maps_of = compare.run, compare.maps_of

    def counting_run(*a, **k):
        calls["run"] += 1
        return run(*a, **k)

    def counting_maps(*a, **k):
        calls["maps"] += 1
        return maps_of(*a, **k)

    monkeypatch.setattr(compare, "run", counting_run)
    monkeypatch.setattr(compare, "maps_of", counting_maps)
    compare.MAPS.clear()
    at = _app()
    at.selectbox(key="cmp_example").set_value(1).run()
    at.multiselect(key="cmp_models").set_value(["dsmnet", "mfan"]).run()
    at.button(key="cmp_run").click().run()
    _ok(at)
    assert calls == {"run": 1, "maps": 0}
    at.switch_page("views/inspect_maps.py").run()
    assert at.radio(key="insp_source").value == "Same image as before"
    for model in ("dsmnet", "mfan", "dsmnet", "mfan"):
        at.selectbox(key="insp_model").set_value(model).run()
        _ok(at)
        assert any("not run again" in c.value for c in at.caption), model
    assert calls == {"run": 1, "maps": 2}  # no model run again; the maps of each recorded once
    # A model the Compare page did not run is run here, once.
    at.selectbox(key="insp_model").set_value("jdnet").run()
    _ok(at)
    assert calls == {"run": 2, "maps": 3}
    assert any("run on this page" in c.value for c in at.caption)
    assert len(at.session_state["insp_maps"]) == 2  # this session holds the last two map sets


def test_inspect_every_model_renders(env):
    at = _app()
    at.switch_page("views/inspect_maps.py").run()
    for card in list_models():
        at.selectbox(key="insp_model").set_value(card.id).run()
        _ok(at)
        assert at.image and _plotly(at), card.id


# -------------------------------------------------------------------------------- Benchmark
def test_benchmark_without_results_still_shows_papers_and_params(env):
    at = _app()
    at.switch_page("views/benchmark.py").run()
    _ok(at)
    assert any("No committed evaluation results" in i.value for i in at.info)
    charts = _plotly(at)
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    # Without results of ours, every paper number is shown, one trace per test set and colour space.
    paper = [t for t in spec["data"] if t.get("name", "").startswith("paper · ") and t.get("showlegend") is False]
    assert len({t["marker"]["symbol"] for t in paper}) == len({r.dataset for c in list_models()
                                                                for r in c.paper_results})
    ys = [float(v) for t in paper for v in _arr(t["y"])]
    assert sorted(ys) == sorted(r.psnr for c in list_models() for r in c.paper_results)
    assert any(t["name"] == "paper · Rain100L · RGB" for t in paper)
    models_table = at.dataframe[0].value
    assert len(models_table) == len(list_models()) and (models_table["Parameters (M)"] > 0).all()
    for df in at.dataframe:  # readable column names, no snake_case
        assert not any("_" in str(c) for c in df.value.columns), list(df.value.columns)


def test_benchmark_with_results(env):
    ids = [c.id for c in list_models()][:3]
    make_results(env / "results", ids)
    at = _app()
    at.switch_page("views/benchmark.py").run()
    _ok(at)
    assert not any("No committed evaluation results" in i.value for i in at.info)
    charts = _plotly(at)
    assert len(charts) == 4  # vs params (+ papers), vs runtime, per-image distribution, speed
    spec = json.loads(charts[0].proto.spec)
    names = [t.get("name", "") for t in spec["data"]]
    # Ours: one filled dot per model in its colour; the papers' numbers on our test set by default.
    ours = [t for t in spec["data"] if t.get("name", "").startswith("ours · ")]
    assert len(ours) == 3 and all(t["marker"]["color"] == dd.model_colour(m) for t, m in zip(ours, ids))
    assert {n for n in names if n.startswith("paper · ")} == {"paper · Rain100L · colour space not stated",
                                                              "paper · Rain100L · RGB"}
    runtime = json.loads(charts[1].proto.spec)
    assert {t["marker"]["color"] for t in runtime["data"]} == {dd.model_colour(m) for m in ids}
    assert any("one source for every model" in c.value and "481x321" in c.value for c in at.caption)
    assert any(c.value.startswith("Machine: test machine") for c in at.caption)
    for df in at.dataframe:
        assert not any("_" in str(c) for c in df.value.columns), list(df.value.columns)
    per_image = json.loads(charts[2].proto.spec)
    assert sum(len(_arr(t["y"])) for t in per_image["data"]) == 12  # 3 models x 4 images
    at.radio(key="bm_metric").set_value("SSIM").run()
    at.radio(key="bm_space").set_value("RGB").run()
    _ok(at)
    assert len(_plotly(at)) == 4


# --------------------------------------------------------------------------------- Rain lab
def test_rain_lab_sliders_run_and_robustness_curve(env):
    at = _app()
    at.switch_page("views/rain_lab.py").run()
    _ok(at)
    assert at.selectbox(key="lab_preset").value == "heavy"
    at.select_slider(key="lab_side").set_value(64).run()
    at.slider(key="lab_density").set_value(2.0).run()
    at.slider(key="lab_haze_heavy").set_value(0.5).run()
    _ok(at)
    assert len(at.image) == 1  # clean | rainy | rain layer
    at.multiselect(key="lab_models").set_value(["dsmnet", "msamnet"]).run()
    at.button(key="lab_run").click().run()
    _ok(at)
    assert len(at.image) == 2 and len(at.dataframe[0].value) == 3
    at.select_slider(key="lab_curve_side").set_value(48).run()
    at.multiselect(key="lab_levels").set_value([0.5, 2.0]).run()
    at.button(key="lab_curve").click().run()
    _ok(at)
    charts = _plotly(at)
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    names = {t["name"] for t in spec["data"]}
    assert dd.BASELINE in names and len(names) == 3
    assert all(list(_arr(t["x"])) == [0.5, 2.0] for t in spec["data"])
    # One colour per model (the Benchmark page's), and the progress bar gone once the curve is drawn.
    colours = {t["name"]: t["line"]["color"] for t in spec["data"]}
    assert colours[dd.BASELINE] == dd.model_colour(dd.BASELINE)
    assert {colours[n] for n in names - {dd.BASELINE}} == {dd.model_colour("dsmnet"), dd.model_colour("msamnet")}
    assert not at.get("progress")


# ---------------------------------------------------------------------- dashboard_data helpers
def test_load_examples_resolves_and_tolerates(tmp_path):
    index = make_examples(tmp_path)
    exs = dd.load_examples(index)
    assert [e.has_gt for e in exs] == [True, False]
    assert exs[0].file.is_file() and exs[0].gt.is_file()
    assert dd.clean_images(exs) == [("tiny", tmp_path / "tiny_clean.png")]
    assert dd.load_examples(tmp_path / "nope.json") == []
    (tmp_path / "bad.json").write_text("{not json")
    assert dd.load_examples(tmp_path / "bad.json") == []
    (tmp_path / "dict.json").write_text(json.dumps({"examples": [{"file": "tiny_clean.png"},
                                                                  {"file": "missing.png"}]}))
    assert [e.title for e in dd.load_examples(tmp_path / "dict.json")] == ["tiny_clean"]


def test_results_loaders_and_join(tmp_path):
    ids = [c.id for c in list_models()][:2]
    root = make_results(tmp_path / "results", ids)
    summary = dd.load_eval_summary(root)
    assert [r["model"] for r in summary] == ids + [dd.BASELINE]
    assert summary[-1]["params"] is None and summary[0]["params"] == dd.param_count(ids[0])
    per = dd.load_eval_per_image(root)
    assert len(per) == 8 and isinstance(per[0]["psnr_rgb"], float)
    bench = dd.load_bench(root)
    # One runtime source: bench_cpu.json's fast path, whatever the evaluation's own times.
    rows = dd.benchmark_rows(summary, per, bench)
    assert rows[0]["seconds"] == pytest.approx(1.0) and rows[0]["seconds_source"] == "bench_cpu.json, fast path, 481x321"
    assert rows[1]["seconds"] == pytest.approx(2.0)
    assert rows[-1]["seconds"] is None
    assert dd.load_eval_summary(tmp_path / "none") == [] and dd.load_bench(tmp_path / "none") is None
    assert dd.model_label(ids[0], UNTRAINED).endswith("(untrained)")


def test_before_after_and_click_mapping():
    a = np.zeros((4, 10, 3), np.float32)
    b = np.ones((4, 10, 3), np.float32)
    wipe = dd.before_after(a, b, 0.5, "wipe", line=False)
    assert (wipe[:, :5] == 0).all() and (wipe[:, 5:] == 255).all()
    assert (dd.before_after(a, b, 0.0, "wipe") == 255).all()
    assert (dd.before_after(a, b, 0.25, "blend") == 64).all()
    with pytest.raises(ValueError):
        dd.before_after(a, b[:, :5], 0.5)
    assert dd.click_to_native({"x": 50, "y": 20, "width": 100, "height": 40}, (80, 200)) == (100, 40)
    assert dd.click_to_native({"x": 999, "y": -5, "width": 100, "height": 40}, (80, 200)) == (199, 0)
    assert dd.click_to_native(None, (80, 200)) is None


def test_robustness_curve_rows():
    rows = dd.robustness_curve(_clean(), [2.0, 0.5], ["dsmnet"], max_side=48, seed=0)
    assert [(r["density"], r["model"]) for r in rows] == [
        (0.5, dd.BASELINE), (0.5, "dsmnet"), (2.0, dd.BASELINE), (2.0, "dsmnet")]
    base = [r["psnr_rgb"] for r in rows if r["model"] == dd.BASELINE]
    assert base[0] > base[1]  # denser rain, lower PSNR of the rainy input
    with pytest.raises(ValueError):
        dd.robustness_curve(_clean(), [], ["dsmnet"])


def test_model_colours_one_per_model():
    ids = [c.id for c in list_models()]
    colours = [dd.model_colour(m) for m in ids]
    assert len(set(colours)) == len(ids) and dd.model_colour(dd.BASELINE) not in colours
    assert dd.model_colour(ids[0]) == dd.model_colour(ids[0])
    rows = [{"model": ids[0], "label": "X (untrained)"}, {"model": ids[1], "label": "Y"}]
    assert dd.label_colours(rows) == {"X (untrained)": colours[0], "Y": colours[1]}


def test_benchmark_helpers_words_and_groups():
    bench = {"machine": {"torch": "2.13.0+cpu", "threads": 2, "cpu": "AMD EPYC"}, "matmul_peak_gflops_fp32": 376.6,
             "matmul_peak_gflops_bf16": 718.1, "rows": []}
    text = dd.machine_text(bench)
    assert text == "AMD EPYC CPU, 2 threads, PyTorch 2.13.0+cpu; measured matrix-multiply peak 377 GFLOP/s fp32, " \
                   "718 GFLOP/s bf16"
    assert "{" not in text and dd.machine_text(None) == "not recorded"
    assert dd.readable_columns(["psnr_y", "params_m", "odd_name"]) == {
        "psnr_y": "PSNR Y (dB)", "params_m": "Parameters (M)", "odd_name": "Odd name"}
    papers = [{"model": "a", "dataset": "Rain100L", "colour_space": "not stated"},
              {"model": "b", "dataset": "Rain800", "colour_space": "Y"},
              {"model": "c", "dataset": "Rain100L", "colour_space": "RGB"}]
    groups = dd.paper_groups(papers)
    assert [(g[0], g[1], len(g[3])) for g in groups] == [
        ("paper · Rain100L · colour space not stated", "Rain100L", 1), ("paper · Rain100L · RGB", "Rain100L", 1),
        ("paper · Rain800 · Y", "Rain800", 1)]
    assert groups[0][2] == groups[1][2] != groups[2][2]  # one marker per test set
    # Bench sizes: the one closest to Rain100L's 481x321.
    bench["rows"] = [{"model_id": "m", "size": "1024x768", "fast_s": 9.0}, {"model_id": "m", "size": "480x320",
                                                                           "fast_s": 1.5}]
    assert dd.bench_seconds(bench) == {"m": ("480x320", 1.5)}
    # Re-check folders: apart from the charts, explained in words.
    rows = [{"model": "m", "label": "M", "source": "rain100l", "psnr_y": 28.0},
            {"model": "m", "label": "M", "source": "rain100l_recheck", "psnr_y": 28.5}]
    main, again = dd.split_rechecks(rows)
    assert main == rows[:1] and again == rows[1:]
    assert dd.recheck_note(rows, again) == ("results/rain100l_recheck re-measures rain100l's test set with the current "
                                            "fast path and is left out of the charts; PSNR Y (dB): M 28.50 (was 28.00).")


def test_before_after_html_is_self_contained():
    a = np.zeros((24, 32, 3), np.float32)
    b = np.full((24, 32, 3), 200, np.uint8)
    html = dd.before_after_html(a, b, "input", "DSM-Net <untrained>", 0.25)
    urls = [u.split('"')[0] for u in html.split('src="')[1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    decoded = [io.load_image(base64.b64decode(u.split(",", 1)[1])).rgb for u in urls]
    assert np.array_equal(np.round(decoded[0] * 255), np.round(_to01(b) * 255))  # after (lossless)
    assert np.array_equal(decoded[1], a)  # before
    assert 'data-pos="25.0"' in html and "DSM-Net &lt;untrained&gt;" in html and "http" not in html
    with pytest.raises(ValueError):
        dd.before_after_html(a, b[:, :4])


def _to01(x):
    return x.astype(np.float32) / 255.0


def test_plotly_colorscale_matches_viz():
    scale = dd.plotly_colorscale("inferno", 8)
    assert len(scale) == 8 and scale[0] == [0.0, "rgb(0,0,4)"] and scale[-1][0] == 1.0


def test_compare_trained_variant_and_untrained_fallback(env, monkeypatch):
    """A shipped weights variant is offered and used; a model without it runs untrained, marked."""
    from derain_core import registry
    from derain_core import weights as wts

    wdir = env / "weights"
    card = registry.get_card("dsmnet")
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in card.test_config.items()}
    net = registry.create_model("dsmnet", **card.test_config)
    wts.save_weights(net, "dsmnet", "apptest", config, {"note": "test fixture"}, directory=wdir)
    monkeypatch.setattr(wts, "WEIGHTS_DIR", wdir)
    at = _app()
    assert "apptest" in at.selectbox(key="cmp_variant").options
    names = at.multiselect(key="cmp_models").format_func
    assert names("dsmnet") == "DSM-Net" and names("msamnet").endswith("(untrained)")
    at.selectbox(key="cmp_variant").set_value("apptest").run()
    at.multiselect(key="cmp_models").set_value(["dsmnet", "msamnet"]).run()
    at.button(key="cmp_run").click().run()
    _ok(at)
    table = at.dataframe[0].value
    assert list(table["Model"]) == ["rainy input", "DSM-Net", "MSAMNet (untrained)"]
    assert list(table["Weights"]) == ["-", "apptest", "untrained"]


def test_streamlit_config_is_offline_and_quiet():
    try:
        import tomllib
        config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    except ModuleNotFoundError:  # Python 3.10: streamlit depends on the toml package
        import toml
        config = toml.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["fileWatcherType"] == "none" and config["server"]["headless"] is True
    # No start-up banner, whose "External URL" line would query checkip.amazonaws.com.
    assert config["logger"]["hideWelcomeMessage"] is True
