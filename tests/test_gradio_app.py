"""The Gradio demo driven through its HTTP API with gradio_client (CPU, tiny images).

The app is launched in-process on a free port; every test talks to it like a remote user.
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import derain_core as dc  # noqa: E402
from derain_core import engine, viz  # noqa: E402
from derain_core import weights as wts  # noqa: E402
from _support import free_port  # noqa: E402

ALL = list(dc.model_ids())
DEFAULT = "default (each model's own)"


def _named(values) -> dict:
    """The /derain endpoint's answer by output name (the app's RunOutputs less the layout boxes
    and the session state, which are not part of the HTTP answer)."""
    from app.gradio_app import NOT_IN_API, RunOutputs

    fields = [f for f in RunOutputs._fields if f not in NOT_IN_API]
    assert len(values) == len(fields)
    return dict(zip(fields, values))


@pytest.fixture(scope="module")
def app_url():
    from app.gradio_app import demo

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture()
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 64x48 'rainy' photo, its 'clean' ground truth, a text file named .png, a wrong-size GT."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    clean = np.stack([xx * 3 + 20, yy * 4 + 10, (xx + yy) * 2 + 30], -1).clip(0, 255)
    streaks = (rng.random((48, 64)) > 0.93)[..., None] * 90
    rainy = (clean + streaks).clip(0, 255).astype(np.uint8)
    paths = {"rainy": d / "rainy.png", "clean": d / "clean.png", "bad": d / "notes.png",
             "small_gt": d / "small.png"}
    Image.fromarray(rainy).save(paths["rainy"])
    Image.fromarray(clean.astype(np.uint8)).save(paths["clean"])
    paths["bad"].write_text("this is a text file, not a picture\n")
    Image.fromarray(rainy[:40, :60]).save(paths["small_gt"])
    return paths


def _derain(client, image, gt=None, models=ALL, variant=DEFAULT):
    return _named(client.predict(handle_file(str(image)), handle_file(str(gt)) if gt else None, models, variant,
                                 api_name="/derain"))


def _figures(page: str) -> list[tuple[np.ndarray, str]]:
    """The (picture, caption) of each map figure in the inspector's HTML (PNG data URLs)."""
    import base64
    import html
    import re

    found = re.findall(r'<figure class="map"><img src="data:image/png;base64,([^"]+)" width="(\d+)" '
                       r'height="(\d+)" alt="[^"]*"><figcaption>(.*?)</figcaption></figure>', page)
    out = []
    for data, w, h, caption in found:
        with Image.open(_io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and im.size == (int(w), int(h))
            out.append((np.asarray(im.convert("RGB")), html.unescape(caption)))
    return out


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG", f"{path} is {im.format}, not a lossless PNG"
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def run_with_gt(app_url, images):
    return _derain(Client(app_url, verbose=False), images["rainy"], images["clean"])


@pytest.fixture(scope="module")
def run_without_gt(app_url, images):
    return _derain(Client(app_url, verbose=False), images["rainy"])


def _expected_label(model_id: str) -> str:
    name = dc.get_card(model_id).name
    return name if wts.available_variants(model_id) else f"{name} (untrained)"


# ------------------------------------------------------------------------------ runs
def test_all_five_models_with_ground_truth(run_with_gt):
    out = run_with_gt
    table = out["table"]
    headers, rows = table["headers"], table["data"]
    for col in ("PSNR RGB (dB) ↑", "PSNR Y (dB) ↑", "SSIM RGB ↑", "SSIM Y ↑", "NIQE ↓", "PIQE ↓", "Time (s)"):
        assert col in headers
    assert not {"Device", "Precision", "Tiling"} & set(headers)  # in the details line instead
    assert [r[0] for r in rows] == ["rainy input"] + [_expected_label(m) for m in ALL]
    rainy = dict(zip(headers, rows[0]))
    assert rainy["Time (s)"] == "-" and np.isfinite(float(rainy["PSNR Y (dB) ↑"]))
    for r in rows[1:]:
        rec = dict(zip(headers, r))
        assert float(rec["Time (s)"]) > 0
        assert np.isfinite(float(rec["PSNR RGB (dB) ↑"])) and np.isfinite(float(rec["PSNR Y (dB) ↑"]))
        assert -1 <= float(rec["SSIM Y ↑"]) <= 1
        assert rec["NIQE ↓"] == "n/a"  # NIQE needs 96 px per side; 64x48 is below that
        assert float(rec["PIQE ↓"]) >= 0
    # the best value of each metric column is bold, by the core's rule
    from derain_core import report

    styling = table["metadata"]["styling"]
    psnr = headers.index("PSNR Y (dB) ↑")
    values = [float(r[psnr]) for r in rows]
    best = max(values)
    assert [i for i, v in enumerate(values) if "bold" in styling[i][psnr]] == [
        i for i, v in enumerate(values) if report.fmt_value("psnr_y", v) == report.fmt_value("psnr_y", best)]
    assert all("bold" not in styling[i][c] for i in range(len(rows)) for c in range(3))
    assert "cpu" in out["details"] and "whole image" in out["details"] and "Bold" in out["details"]
    captions = [item["caption"] for item in out["outputs"]]
    assert captions == ["input", "ground truth"] + [_expected_label(m) for m in ALL]
    for item in out["outputs"]:
        assert _pixels(item["image"]).shape == (48, 64, 3)
    grid = _pixels(out["grid"])
    assert grid.shape[0] > 2 * 48 and grid.shape[1] > 4 * 64  # 7 tiles in two rows
    status = out["status"]
    assert "Done" in status and "5 of 5" in status


def test_without_ground_truth_no_reference_metrics_only(run_without_gt):
    out = run_without_gt
    headers, rows = out["table"]["headers"], out["table"]["data"]
    assert not any("PSNR" in h or "SSIM" in h for h in headers)
    assert "NIQE ↓" in headers and "PIQE ↓" in headers
    assert len(rows) == 6 and rows[0][0] == "rainy input"
    assert [i["caption"] for i in out["outputs"]] == ["input"] + [_expected_label(m) for m in ALL]
    assert "no ground truth" in out["status"]


def test_untrained_models_are_marked_everywhere(run_without_gt, app_url):
    untrained = [m for m in ALL if not wts.available_variants(m)]
    labels = [r[0] for r in run_without_gt["table"]["data"][1:]]
    for m, label in zip(ALL, labels):
        assert label.endswith("(untrained)") == (m in untrained)
    if untrained:
        assert "Untrained" in run_without_gt["status"]
    choices = dict((v, k) for k, v in run_without_gt["insp_model"]["choices"])
    assert all(choices[m].endswith("(untrained)") == (m in untrained) for m in ALL)


def test_outputs_are_lossless_and_match_the_zip(run_with_gt):
    out = run_with_gt
    with zipfile.ZipFile(out["zip"]) as zf:
        for item, model_id in zip(out["outputs"][2:], ALL):
            shown = _pixels(item["image"])
            saved = np.asarray(Image.open(_io.BytesIO(zf.read(f"outputs/{model_id}.png"))).convert("RGB"))
            assert np.array_equal(shown, saved), model_id


def test_zip_holds_outputs_and_metrics(run_with_gt, images):
    with zipfile.ZipFile(run_with_gt["zip"]) as zf:
        names = set(zf.namelist())
        assert {"input.png", "ground_truth.png", "metrics.csv", "metrics.json"} <= names
        assert {f"outputs/{m}.png" for m in ALL} <= names
        inp = np.asarray(Image.open(_io.BytesIO(zf.read("input.png"))).convert("RGB"))
        assert np.array_equal(inp, np.asarray(Image.open(images["rainy"]).convert("RGB")))
        rows = list(csv.DictReader(_io.StringIO(zf.read("metrics.csv").decode())))
        doc = json.loads(zf.read("metrics.json"))
    assert [r["model"] for r in rows] == ALL
    for r in rows:
        assert float(r["seconds"]) > 0 and np.isfinite(float(r["psnr_y"])) and r["device"] == "cpu"
        assert r["trained"] in ("True", "False")
    assert doc["size"] == [64, 48] and len(doc["results"]) == 5


def test_results_stream_one_model_at_a_time(client, images):
    job = client.submit(handle_file(str(images["rainy"])), None, ALL, DEFAULT, api_name="/derain")
    job.result(timeout=300)
    pages = [_named(o) for o in job.outputs()]
    assert [len(p["table"]["data"]) for p in pages] == [1, 2, 3, 4, 5, 6]  # the rainy input's row first
    assert "Running" in pages[0]["status"]
    assert pages[0]["zip"] is None and pages[-1]["zip"]


def test_a_subset_of_models_and_a_variant(client, images):
    out = _derain(client, images["rainy"], models=["rranet", "msamnet"], variant=engine.UNTRAINED)
    assert [r[0] for r in out["table"]["data"]] == ["rainy input", "RRANet (untrained)", "MSAMNet (untrained)"]


# ------------------------------------------------------------------------------ errors
def test_text_file_named_png_gives_a_readable_error(client, images):
    with pytest.raises(AppError) as err:
        _derain(client, images["bad"])
    msg = str(err.value)
    assert "Could not read the photo" in msg and "not an image" in msg and "notes.png" in msg
    assert "Traceback" not in msg and "Pillow" not in msg


def test_bad_ground_truth_and_size_mismatch(client, images):
    with pytest.raises(AppError, match="Could not read the ground truth"):
        _derain(client, images["rainy"], images["bad"])
    with pytest.raises(AppError, match=r"ground truth is 60×40 but the photo is 64×48"):
        _derain(client, images["rainy"], images["small_gt"])


def test_missing_inputs(client, images):
    with pytest.raises(AppError, match="Upload a rainy photo"):
        client.predict(None, None, ALL, DEFAULT, api_name="/derain")
    with pytest.raises(AppError, match="Choose at least one model"):
        _derain(client, images["rainy"], models=[])


def test_app_survives_errors(client, images):
    with pytest.raises(AppError):
        _derain(client, images["bad"])
    out = _derain(client, images["rainy"], models=["jdnet"])
    assert len(out["table"]["data"]) == 2


# ------------------------------------------------------------------------------ inspector
def test_inspector_maps_for_every_model(client, images):
    _derain(client, images["rainy"])
    for model_id in ALL:
        group_dd, page, note = client.predict(model_id, None, False, api_name="/inspect")
        gallery = _figures(page)
        specs = engine.MODELS.get(model_id).net.map_specs()
        groups = list(viz.group_specs(specs, default="other"))
        assert [g for g, _ in group_dd["choices"]] == groups
        first = group_dd["value"]
        assert first == groups[0]
        want = [f"{s.title}: {s.meaning}" for s in viz.group_specs(specs, default="other")[first]]
        assert [caption for _, caption in gallery] == want, model_id
        assert all(picture.ndim == 3 and picture.shape[1] >= 480 for picture, _ in gallery)  # panels 480 px
        assert "maps at full resolution" in note and _expected_label(model_id) in note
    # a named group and the overlay toggle
    grouped = viz.group_specs(engine.MODELS.get("mfan").net.map_specs(), default="other")
    group = next(g for g, ss in grouped.items()
                 if any(s.kind == "attention" and s.scale > 0 and s.size is None for s in ss))
    plain = _figures(client.predict("mfan", group, False, api_name="/inspect")[1])
    over = _figures(client.predict("mfan", group, True, api_name="/inspect")[1])
    assert len(plain) == len(over) == len(grouped[group])
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(plain, over))


def test_inspector_before_a_run(app_url):
    fresh = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="run it first|Run the models"):
        fresh.predict("mfan", None, False, api_name="/inspect")


# ------------------------------------------------------------------------------ module-level
def test_handlers_called_directly_zoom_slider_and_maps(images):
    """The handlers only a browser reaches (click to zoom, settings, groups), called as functions."""
    from types import SimpleNamespace

    import app.gradio_app as ga

    pages = list(ga.run(str(images["rainy"]), None, ["dsmnet"], DEFAULT, None))
    assert [type(p) for p in pages] == [ga.RunOutputs, ga.RunOutputs]
    st = pages[-1].state
    assert isinstance(st, ga.RunState) and [r.model_id for r in st.results] == ["dsmnet"]
    assert ga.show_slider(st, "dsmnet") == (st.files["input"], st.files["dsmnet"])
    zoom_src, crops, st2 = ga.zoom_click(st, 4, 16, SimpleNamespace(index=[10, 20]))
    assert st2.point == (10 / st.display_scale, 20 / st.display_scale)
    assert zoom_src.shape == st.display.shape
    # the crops as HTML images at their own size, 16 px enlarged 4 times: input and DSM-Net
    assert crops.count("<img ") == 2 and crops.count('width="64" height="64"') == 2 and "Zoom x4" in crops
    again = ga.zoom_settings(st, 2, 16)
    assert isinstance(again, ga.ZoomOutputs) and again.crops.count('width="32" height="32"') == 2
    out = ga.inspect_model(st, "dsmnet", None, True)
    groups = [g for g, _ in out.insp_group.choices]
    assert out.maps and "maps at full resolution" in out.insp_note
    page, note = ga.change_group(st, "dsmnet", groups[-1], False)
    assert _figures(page) and f"group **{groups[-1]}**" in note
    # across scales: the group's first map beside its siblings, one picture on one colour scale
    page, note = ga.change_group(st, "dsmnet", "scale 2/MAB 1", False, True)
    assert len(_figures(page)) == 1 and "across 3 scales" in note and "scale3.mab1.branch1" in note
    page, note = ga.change_group(st, "dsmnet", "output", False, True)
    assert len(_figures(page)) == 2 and note.startswith("No map in this group has siblings")
    # stretched attention colours: the note says so, and the pictures are drawn anew (own files)
    page, note = ga.change_group(st, "dsmnet", "scale 2/MAB 1", False, False, True)
    assert "attention stretched between its 1st and 99th percentile" in note
    assert any("stretched" in Path(p).name for p in st.viewed_maps.values())


def test_uploads_are_checked_the_moment_they_arrive(images):
    """A bad file is answered in place before any run (and removed); a good one clears the
    stale messages and the status; a ground truth of another size is flagged under it."""
    import app.gradio_app as ga

    bad = {"path": str(images["bad"]), "orig_name": "notes.png"}
    good = {"path": str(images["rainy"]), "orig_name": "rainy.png"}
    page = ga.check_photo(bad, None)
    assert page.inp is None and page.inp_msg.visible
    assert "Could not read the photo" in page.inp_msg.value and "Pillow" not in page.inp_msg.value
    assert page.status == ga.READY  # a stale error or result line does not stay
    again = ga.check_photo(None, None)  # the removal this check made: the reason stays in view
    assert isinstance(again.inp_msg, type(ga.gr.skip()))
    page = ga.check_photo(good, None)
    assert not page.inp_msg.visible and "rainy.png" in page.status and "64×48" in page.status
    assert isinstance(page.inp, type(ga.gr.skip()))
    truth = ga.check_truth(good, str(images["small_gt"]))
    assert truth.gt_msg.visible and "60×40 but the photo is 64×48" in truth.gt_msg.value
    assert isinstance(truth.gt, type(ga.gr.skip())) and truth.more_inputs.open
    truth = ga.check_truth(good, str(images["bad"]))
    assert truth.gt is None and "Could not read the ground truth" in truth.gt_msg.value
    truth = ga.check_truth(good, str(images["clean"]))
    assert not truth.gt_msg.visible and truth.more_inputs.open
    assert ga.check_photo(good, str(images["small_gt"])).gt_msg.visible  # the photo's size is checked too


def test_results_appear_with_the_first_result_and_the_button_shows_the_run(images):
    import app.gradio_app as ga

    pages = list(ga.run(str(images["rainy"]), None, ["dsmnet", "jdnet"], DEFAULT, None))
    assert [p.results_box.visible for p in pages] == [False, True, True]  # nothing shown before a result
    assert [p.explore_box.visible for p in pages] == [False, True, True]
    assert [p.zip_box.visible for p in pages] == [False, False, True]  # the zip's button once it is written
    assert pages[0].details == "" and "cpu" in pages[-1].details
    out = ga.inspect_model(pages[-1].state, None, None, False)
    assert out.maps_box.visible is False
    assert ga.inspect_model(pages[-1].state, "jdnet", None, False).maps_box.visible is True
    running, cancel = ga.busy()
    assert running.value == ga.BUSY_LABEL and running.interactive is False and cancel.visible is True
    back, cancel = ga.idle()
    assert back.value == ga.RUN_LABEL and back.interactive is True and cancel.visible is False


def test_what_changed_expectations_and_the_full_zip(images):
    """Show: what each model removed in the grid, the outputs and the slider; the weight cards'
    expectations next to the results; the zip growing with the last zoom and the maps viewed."""
    from types import SimpleNamespace

    import app.gradio_app as ga
    from derain_core import report

    pages = list(ga.run(str(images["rainy"]), str(images["clean"]), ["dsmnet"], DEFAULT, None))
    st = pages[-1].state
    r = st.results[0]
    assert pages[-1].expect == report.expectations_markdown(report.expectations([("dsmnet", r.variant)]))
    grid, gallery, _, st = ga.change_view(st, "removed rain", "dsmnet")
    assert gallery[-1][1].startswith(f"{r.caption} · removed rain")
    assert np.array_equal(_pixels(gallery[-1][0]), viz.removed_layer(st.upload.image.rgb, r.output))
    assert ga._slider_value(st, "dsmnet") == (st.files["input"], gallery[-1][0])
    _, amplified, _, st = ga.change_view(st, "amplified difference", "dsmnet")
    assert np.array_equal(_pixels(amplified[-1][0]), viz.removed_layer(st.upload.image.rgb, r.output, 4))
    again = list(ga.run(str(images["rainy"]), None, ["dsmnet"], DEFAULT, st))[-1].state
    assert again.show == "amplified difference"  # a new run keeps the view
    _, gallery, _, st = ga.change_view(again, "output", "dsmnet")
    assert gallery[-1][0] == st.files["dsmnet"]

    ga.zoom_click(st, 3, 8, SimpleNamespace(index=[10, 20]))
    maps = _figures(ga.inspect_model(st, "dsmnet", None, False).maps)
    assert maps and len(st.viewed_maps) == len(maps)
    for (picture, _), path in zip(maps, st.viewed_maps.values()):  # written once as PNG files, shown as such
        assert np.array_equal(picture, _pixels(path))
    path = ga.refresh_zip(st)
    assert Path(path).name == "derain_rainy.zip"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {"input.png", "outputs/dsmnet.png", "removed_rain/dsmnet.png", "zoom/strip.png",
                "zoom/input.png", "zoom/dsmnet.png", "metrics.csv", "metrics.json"} <= names
        assert len([n for n in names if n.startswith("maps/")]) == len(maps)
        assert np.asarray(Image.open(_io.BytesIO(zf.read("zoom/dsmnet.png")))).shape == (24, 24, 3)
        assert json.loads(zf.read("metrics.json"))["zoom"]["factor"] == 3


def test_examples_index(tmp_path, monkeypatch):
    import app.gradio_app as ga

    monkeypatch.setenv("DERAIN_EXAMPLES_INDEX", str(tmp_path / "index.json"))
    assert ga._load_examples() == ([], [])  # no index.json: no examples, and the app still builds
    assert isinstance(ga.build(), type(ga.demo))
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "a_gt.png")
    (tmp_path / "index.json").write_text(json.dumps({"examples": [
        {"file": "a.png", "gt": "a_gt.png", "preset": "heavy", "title": "Street"},
        {"file": "a.png", "gt": None, "preset": "real", "title": "Real rain"},
        {"file": "missing.png", "gt": None, "title": "gone"}]}))
    rows, labels = ga._load_examples()
    assert rows == [[str(tmp_path / "a.png"), str(tmp_path / "a_gt.png")], [str(tmp_path / "a.png"), None]]
    assert labels == ["Street · with ground truth", "Real rain · no ground truth"]


def test_bundled_examples_are_offered():
    import app.gradio_app as ga

    rows, labels = ga._load_examples(ROOT / "assets" / "examples" / "index.json")
    if not rows:
        pytest.skip("no bundled examples in assets/examples")
    assert all(Path(r[0]).is_file() for r in rows)
    assert any(r[1] for r in rows) and any(r[1] is None for r in rows)  # with and without ground truth
    assert ga.demo.fns and any(type(b).__name__ == "Dataset" for b in ga.demo.blocks.values())


def test_app_settings_offline_and_lossless():
    import gradio as gr

    import app.gradio_app as ga

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert ga.demo.analytics_enabled is False
    shown = [b for b in ga.demo.blocks.values() if isinstance(b, (gr.Image, gr.Gallery, gr.ImageSlider))]
    assert len(shown) >= 6  # the zoom crops and the maps are HTML images, PNG by construction (data:image/png)
    assert all(b.format == "png" for b in shown)
    assert ga.GPU(len) is len  # the spaces.GPU stand-in changes nothing


@pytest.mark.slow
def test_starts_as_a_script():
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "DERAIN_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "gradio_app.py"), "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd="/", stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("app did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cancelled_status_replaces_the_running_line():
    import app.gradio_app as ga

    text = "**Image** a.png: 1600×1200\n\n**Running** DSM-Net (1/1) …"
    out = ga.cancelled_status(text)
    assert out == "**Image** a.png: 1600×1200\n\n" + ga.CANCELLED_LINE
    done = "**Image** a.png\n\n**Done**: 1 of 1 models in 3.0 s"
    assert not isinstance(ga.cancelled_status(done), str)  # gr.skip(): no run was in flight
