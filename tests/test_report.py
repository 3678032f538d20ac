"""derain_core.report: metric formatting, the metrics table, CSV/JSON and the results zip."""
from __future__ import annotations

import csv
import io as _io
import json
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

import derain_core as dc
from derain_core import dashboard_data as dd
from derain_core import io, report, viz
from derain_core import weights as wts
from derain_core.engine import ModelResult


def _result(model_id="mfan", metrics=None, tile=None, trained=False, seconds=0.25, precision="fp32"):
    rng = np.random.default_rng(len(model_id))
    out = rng.random((20, 30, 3), dtype=np.float32)
    label = model_id.upper() + ("" if trained else " (untrained)")
    return ModelResult(model_id, label, "rain100l" if trained else "untrained", trained, out, seconds,
                       dict(metrics or {}), "cpu", precision, tile)


NR = {"niqe": math.nan, "piqe": 41.27}
FR = {"psnr_rgb": 30.1234, "psnr_y": 31.5, "ssim_rgb": 0.912345, "ssim_y": 0.93, "delta_e": 2.5, **NR}


def test_fmt_value():
    assert report.fmt_value("psnr_y", 31.456) == "31.46"
    assert report.fmt_value("ssim_y", 0.912345) == "0.9123"
    assert report.fmt_value("niqe", math.nan) == "n/a"
    assert report.fmt_value("niqe", None) == "n/a"
    assert report.fmt_value("psnr_rgb", math.inf) == "inf"
    assert report.fmt_value("something", 1.23456) == "1.235"


def test_metric_keys_order_and_unknown_keys():
    r1 = _result("a", {"piqe": 1.0, "psnr_y": 2.0, "zeta": 3.0})
    r2 = _result("b", {"niqe": 1.0, "alpha": 0.0})
    assert report.metric_keys([r1, r2]) == ["psnr_y", "niqe", "piqe", "alpha", "zeta"]
    assert report.metric_keys([]) == []


def test_tile_text_with_and_without_ground_truth():
    with_gt = report.tile_text(_result(metrics=FR, seconds=0.4567))
    assert with_gt.splitlines() == ["PSNR 30.12 / Y 31.50 dB", "SSIM 0.9123 / Y 0.9300",
                                    "0.46 s | NIQE n/a | PIQE 41.3"]
    no_gt = report.tile_text(_result(metrics=NR))
    assert "PSNR" not in no_gt and no_gt == "0.25 s | NIQE n/a | PIQE 41.3"
    assert report.tile_text(metrics=NR) == "NIQE n/a | PIQE 41.3"  # the input tile: no time
    assert report.tile_text(metrics={}) == ""


def test_metrics_table_columns_follow_the_metrics():
    header, rows = report.metrics_table([_result("x", FR, tile=512, trained=True), _result("y", FR)])
    assert header[:3] == ["Model", "Weights", "Time (s)"]
    assert header[-3:] == ["Device", "Precision", "Tiling"]
    assert "PSNR Y (dB) ↑" in header and "NIQE ↓" in header
    rec = dict(zip(header, rows[0]))
    assert rec["Model"] == "X" and rec["Weights"] == "rain100l" and rec["Tiling"] == "tiles of 512 px"
    assert rec["PSNR RGB (dB) ↑"] == "30.12" and rec["NIQE ↓"] == "n/a"
    assert dict(zip(header, rows[1]))["Model"] == "Y (untrained)"
    header, _ = report.metrics_table([_result(metrics=NR)])
    assert not any("PSNR" in h for h in header)


def test_higher_is_better_follows_the_column_arrows():
    assert report.higher_is_better("psnr_y") is True and report.higher_is_better("ssim_rgb") is True
    assert report.higher_is_better("niqe") is False and report.higher_is_better("delta_e") is False
    assert report.higher_is_better("zeta") is None


def test_best_rows_one_rule_per_direction():
    rows = [{"psnr_y": 20.0, "niqe": 5.0, "zeta": 1.0}, {"psnr_y": 25.0, "niqe": 6.0},
            {"psnr_y": 25.001, "niqe": math.nan}, {"psnr_y": math.inf}]
    best = report.best_rows(rows, ["psnr_y", "niqe", "zeta"])
    assert best == {"psnr_y": {3}, "niqe": {0}}  # inf wins a higher-is-better column; NaN never wins
    tied = report.best_rows(rows[:3], ["psnr_y"])
    assert tied == {"psnr_y": {1, 2}}  # equal as displayed (25.00): both marked
    assert report.best_rows([{"piqe": 3.0}], ["piqe"]) == {}  # one value: nothing to compare
    assert report.best_rows([{"piqe": 3.0}, {"piqe": 3.0}], ["piqe"]) == {}  # all equal: no mark


def test_results_table_input_row_best_cells_and_no_device_columns():
    a = _result("a", {**FR, "psnr_y": 33.0, "piqe": 50.0}, trained=True)
    b = _result("b", {**FR, "niqe": 4.0}, precision="bf16", tile=512)
    table = report.results_table([a, b], {"psnr_y": 25.0, "ssim_y": 0.95, "niqe": 6.0, "piqe": 30.0})
    assert table.header[:3] == ["Model", "Weights", "Time (s)"]
    assert not {"Device", "Precision", "Tiling"} & set(table.header)
    assert table.rows[0][:3] == [report.INPUT_LABEL, "-", "-"]
    assert [r[0] for r in table.rows] == [report.INPUT_LABEL, "A", "B (untrained)"]
    col = table.header.index
    assert (1, col("PSNR Y (dB) ↑")) in table.best and (0, col("PSNR Y (dB) ↑")) not in table.best
    assert (0, col("SSIM Y ↑")) in table.best  # the rainy input can be the best
    assert (0, col("PIQE ↓")) in table.best and (2, col("NIQE ↓")) in table.best
    assert (0, col("PSNR RGB (dB) ↑")) not in table.best  # the input's missing value
    assert all(c >= 3 for _, c in table.best)  # model, weights and time are never marked
    assert report.results_table([a]).rows[0][0] == "A"  # without the input's metrics: models only
    assert report.results_table([], {"piqe": 30.0}).rows == [[report.INPUT_LABEL, "-", "-", "30.0"]]


def test_run_details_names_the_models_that_differ():
    a, b, c = _result("a"), _result("b", precision="bf16"), _result("c", tile=512)
    assert report.run_details([a, c]) == "cpu · fp32 · whole image (C (untrained): tiles of 512 px)"
    assert report.run_details([a, b, c]) == ("cpu · fp32 (B (untrained): bf16) · "
                                             "whole image (C (untrained): tiles of 512 px)")
    assert report.run_details([]) == ""


def test_csv_text_has_one_row_per_model():
    text = report.csv_text([_result("a", FR), _result("b", NR, tile=256)])
    rows = list(csv.DictReader(_io.StringIO(text)))
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[0]["psnr_y"] == "31.5" and rows[1]["psnr_y"] == ""  # missing metric: empty cell
    assert rows[1]["tile"] == "256" and rows[0]["tile"] == ""
    assert rows[0]["niqe"] == "nan"


def test_run_summary():
    s = report.run_summary([_result("a", precision="bf16"), _result("b", tile=512)])
    assert s == "device cpu · precision bf16, fp32 · tiles of 512 px, whole image"
    assert report.run_summary([]) == ""


@pytest.mark.parametrize("bits", [8, 16])
def test_zip_bytes_round_trip(bits):
    rng = np.random.default_rng(1)
    rgb = rng.random((20, 30, 3)).astype(np.float32)
    alpha = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30)
    image = io.LoadedImage(rgb, alpha, bits, "RGBA", "photo.png")
    gt = io.LoadedImage(rgb[::-1].copy(), None, 8, "RGB", "clean.png")
    results = [_result("a", FR), _result("b", FR, trained=True)]
    for r in results:
        r.alpha = alpha
    data = report.zip_bytes(results, image, gt, extra={"app": "test"})
    with zipfile.ZipFile(_io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["ground_truth.png", "input.png", "metrics.csv", "metrics.json",
                                         "outputs/a.png", "outputs/b.png", "removed_rain/a.png", "removed_rain/b.png"]
        back = io.load_image(zf.read("outputs/a.png"))
        doc = json.loads(zf.read("metrics.json"))
        inp = io.load_image(zf.read("input.png"))
        removed = _png(zf, "removed_rain/b.png")
    assert np.array_equal(removed, viz.removed_layer(rgb, results[1].output))  # lossless, true scale
    assert "true scale" in doc["removed_rain"]["b"] and "zoom" not in doc and "maps" not in doc
    assert back.bit_depth == bits and back.alpha is not None
    tol = 0.5 / (65535 if bits == 16 else 255) + 1e-7
    assert np.abs(back.rgb - results[0].output).max() <= tol  # lossless up to quantisation
    assert np.abs(inp.rgb - rgb).max() <= tol
    assert doc["app"] == "test" and doc["size"] == [30, 20] and doc["ground_truth"] == "clean.png"
    assert doc["results"][0]["niqe"] is None  # NaN becomes null in JSON
    assert doc["results"][1]["trained"] is True


def _png(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """An 8-bit RGB PNG entry as an array (anything else fails)."""
    with Image.open(_io.BytesIO(zf.read(name))) as im:
        assert im.format == "PNG" and im.mode == "RGB", (name, im.format, im.mode)
        return np.asarray(im).copy()


def test_zip_holds_crops_maps_and_removed_layers_without_ground_truth(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.random((20, 30, 3)).astype(np.float32)
    image = io.LoadedImage(rgb, None, 8, "RGB", "017.png")
    results = [_result("mfan", NR), _result("dsmnet", NR, trained=True)]
    drawn = viz.removed_layer(rgb, results[0].output, 4)  # a "map" given as an array
    saved = tmp_path / "att.png"
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(saved)  # and one as a PNG file
    zoom = report.ZoomCrop((12.0, 7.0), 8, 3)
    encoded = io.png_bytes(drawn)  # and one as PNG bytes
    data = report.zip_bytes(results, image, zoom=zoom,
                            maps={"MFAN / stage 1": drawn, "rranet att": saved, "jdnet x": encoded})
    with zipfile.ZipFile(_io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert names == {"input.png", "outputs/mfan.png", "outputs/dsmnet.png", "removed_rain/mfan.png",
                         "removed_rain/dsmnet.png", "zoom/strip.png", "zoom/input.png", "zoom/mfan.png",
                         "zoom/dsmnet.png", "maps/MFAN_stage_1.png", "maps/rranet_att.png", "maps/jdnet_x.png",
                         "metrics.csv", "metrics.json"}
        assert all(n.endswith(".png") for n in names - {"metrics.csv", "metrics.json"})
        crops = viz.synced_crops([rgb, results[0].output, results[1].output], zoom.point, 8, 3)
        for name, crop in zip(("input", "mfan", "dsmnet"), crops):
            assert _png(zf, f"zoom/{name}.png").shape == (24, 24, 3)
            assert np.array_equal(_png(zf, f"zoom/{name}.png"), crop)
        assert _png(zf, "zoom/strip.png").shape[1] >= 3 * 24
        assert np.array_equal(_png(zf, "maps/MFAN_stage_1.png"), drawn)
        assert zf.read("maps/rranet_att.png") == saved.read_bytes()  # written once, copied as it is
        assert zf.read("maps/jdnet_x.png") == encoded
        assert np.array_equal(_png(zf, "removed_rain/dsmnet.png"), viz.removed_layer(rgb, results[1].output))
        doc = json.loads(zf.read("metrics.json"))
    assert doc["ground_truth"] is None
    assert doc["zoom"] == {"point": [12.0, 7.0], "crop": 8, "factor": 3}
    assert doc["maps"] == ["maps/MFAN_stage_1.png", "maps/rranet_att.png", "maps/jdnet_x.png"]
    assert set(doc["removed_rain"]) == {"mfan", "dsmnet"}


def test_zip_name():
    assert report.zip_name("017.png") == "derain_017.zip"
    assert report.zip_name("my photo (1).jpeg") == "derain_my_photo_1.zip"
    assert report.zip_name(None) == "derain_image.zip"


def test_safe_name():
    assert report.safe_name("my photo (1).png") == "my_photo_1_.png"
    assert report.safe_name("///") == "image"


# ------------------------------------------------------------------------------ expectations
CARD = {"model_id": "dsmnet", "variant": "rain100l", "steps": 7512, "wall_time_s": 8413.8,
        "device": "Intel(R) Xeon(R) Processor", "device_type": "cpu", "threads": 2,
        "chunks": [{"steps": 88, "wall_time_s": 248.4, "device": "AMD EPYC", "device_type": "cpu", "threads": 2},
                   {"steps": 7512, "wall_time_s": 8413.8, "device": "Intel(R) Xeon(R) Processor",
                    "device_type": "cpu", "threads": 2}],
        "n_chunks": 2, "total_steps_all_chunks": 7600, "total_wall_time_s": 8662.2,
        "metrics": {"rain100l_test": {"images": 100, "psnr_y": 36.6976, "ssim_y": 0.9754,
                                      "command": "derain eval --data ../shared/data/Rain100L_test --models dsmnet"}}}
BASELINE = {"images": 100.0, "psnr_y": 26.9007, "ssim_y": 0.8384}


def test_training_and_score_text_from_a_card():
    assert report.training_text(CARD) == ("trained 7,600 steps (2 h 24 min in 2 chunks) on CPU "
                                          "(AMD EPYC, Intel Xeon Processor; 2 threads)")
    one = {"steps": 128, "wall_time_s": 868.4, "device": "NVIDIA H200", "device_type": "cuda"}
    assert report.training_text(one) == "trained 128 steps (14 min) on GPU (NVIDIA H200)"
    heavy = {**one, "fine_tuned_from": {"variant": "rain100l", "steps": 7600, "wall_time_s": 8413.8}}
    assert report.training_text(heavy) == ("trained 128 steps (14 min) on GPU (NVIDIA H200), starting from the "
                                           "rain100l weights (7,600 steps)")
    assert report.score_text(CARD, BASELINE, (38.27, 0.982, "not stated")) == (
        "Rain100L test, 100 images: PSNR-Y 36.70 dB, SSIM-Y 0.9754 (the rainy input itself: 26.90 dB, 0.8384); "
        "the paper reports 38.27 dB, 0.982")
    assert report.score_text(CARD).endswith("SSIM-Y 0.9754")
    assert report.score_text(CARD, None, (38.65, 0.99, "RGB")).endswith("38.65 dB, 0.990 on RGB")
    assert report.score_text({"variant": "rain100l"}) == "not scored on a test set yet"
    assert [report.duration_text(s) for s in (45, 868.4, 8662.2)] == ["45 s", "14 min", "2 h 24 min"]


def test_expectation_reads_the_card_and_the_committed_baseline(monkeypatch, tmp_path):
    from derain_core import weights as wts

    (tmp_path / "rain100l").mkdir()
    (tmp_path / "rain100l" / "eval_summary.json").write_text(json.dumps(
        [{"model": "dsmnet", "psnr_y": 36.7}, {"model": "rainy input", "variant": "-", **BASELINE}]))
    monkeypatch.setattr(wts, "available_variants", lambda m, d=None: ["rain100l"])
    monkeypatch.setattr(wts, "read_card", lambda m, v, d=None: CARD)
    e = report.expectation("dsmnet", None, results_root=tmp_path)
    assert (e.model_id, e.name, e.variant) == ("dsmnet", "DSM-Net", "rain100l")
    paper = next(r for r in dc.get_card("dsmnet").paper_results if r.dataset == "Rain100L")
    assert e.text == (f"{report.training_text(CARD)}; Rain100L test, 100 images: PSNR-Y 36.70 dB, SSIM-Y 0.9754 "
                      f"(the rainy input itself: 26.90 dB, 0.8384); the paper reports {paper.psnr:.2f} dB, "
                      f"{paper.ssim:.3f}.")
    md = report.expectations_markdown([e, report.expectation("dsmnet", "untrained")])
    assert "- **DSM-Net** (rain100l weights): trained 7,600 steps" in md
    assert "- **DSM-Net** (untrained): random weights" in md
    monkeypatch.setattr(wts, "read_card", lambda m, v, d=None: None)
    assert "no weight card" in report.expectation("dsmnet", "rain100l", tmp_path).text


def test_expectations_of_every_shipped_card():
    pairs = [(m, None) for m in dc.model_ids()]
    items = report.expectations(pairs)
    assert [e.model_id for e in items] == list(dc.model_ids())
    for e in items:
        card = wts.read_card(e.model_id, e.variant)
        if card is None:
            continue
        assert e.text.startswith("trained ") and "PSNR-Y" in e.text and "SSIM-Y" in e.text, e.text
        m = card["metrics"][f"{e.variant}_test"]
        assert report.fmt_value("psnr_y", m["psnr_y"]) in e.text  # read from the card, not written here
        assert f"{card.get('total_steps_all_chunks', card['steps']):,} steps" in e.text
        base = dd.input_baseline(e.variant)
        if base is not None:
            assert f"the rainy input itself: {report.fmt_value('psnr_y', base['psnr_y'])} dB" in e.text
