"""Chunked training: the weight card accumulates every chunk (derain_core.weights.accumulate_chunks)."""


from derain_core.weights import accumulate_chunks, sha256_of, started_from


def _card(steps, wall, best, **kw):
    return {"model_id": "dsmnet", "variant": "rain100l", "steps": steps, "wall_time_s": wall,
            "best_val_psnr_y": best, "device": "cpu", **kw}


def test_an_old_card_counts_as_one_chunk_and_the_new_chunk_adds_to_it():
    old = _card(88, 248.4, 30.3, validation_curve=[{"step": 88, "val_psnr_y": 30.3}], sha256="abc")
    new = accumulate_chunks(_card(9000, 8400.0, 36.1), [{"step": 9000, "val_psnr_y": 36.1}], old)
    assert new["n_chunks"] == 2 and new["total_steps_all_chunks"] == 9088
    assert new["total_wall_time_s"] == 8648.4
    assert [c["chunk"] for c in new["chunks"]] == [1, 2]
    assert new["chunks"][0]["validation_curve"] == [{"step": 88, "val_psnr_y": 30.3}]
    assert new["chunks"][1]["validation_curve"] == [{"step": 9000, "val_psnr_y": 36.1}]
    third = accumulate_chunks(_card(500, 100.0, 36.5), [], new)
    assert third["n_chunks"] == 3 and third["total_steps_all_chunks"] == 9588
    assert [c["chunk"] for c in third["chunks"]] == [1, 2, 3]


def test_a_run_from_scratch_starts_a_new_history():
    card = accumulate_chunks(_card(100, 60.0, 31.0), [], None)
    assert card["n_chunks"] == 1 and card["total_steps_all_chunks"] == 100


def test_started_from_compares_the_init_file_with_the_shipped_one(tmp_path):
    shipped_file = tmp_path / "dsmnet_rain100l.safetensors"
    shipped_file.write_bytes(b"weights")
    shipped = {"sha256": sha256_of(shipped_file)}
    assert started_from({"init_from": str(shipped_file)}, shipped, shipped_file)
    assert started_from({"init_from": "elsewhere", "init_sha256": shipped["sha256"]}, shipped, shipped_file)
    assert not started_from({"init_from": None}, shipped, shipped_file)
    assert not started_from({"init_from": str(shipped_file)}, None, shipped_file)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"other")
    assert not started_from({"init_from": str(other)}, shipped, shipped_file)
    assert not started_from({"init_from": "x", "init_sha256": "0" * 64}, shipped, shipped_file)


def test_a_chunk_from_an_unshipped_chunk_keeps_the_whole_history(tmp_path):
    # shipped chunk 1 -> chunk 2 (never shipped) -> chunk 3 from chunk 2's export: shipping
    # chunk 3 follows the chain back through chunk 2's run folder to the shipped card
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship_weights", Path(__file__).parent.parent / "scripts" / "ship_weights.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    shipped_file = tmp_path / "weights" / "dsmnet_rain100l.safetensors"
    shipped_file.parent.mkdir()
    shipped_file.write_bytes(b"chunk 1")
    shipped = _card(100, 60.0, 31.0, sha256=sha256_of(shipped_file))
    export = tmp_path / "run2" / "export" / "dsmnet_rain100l.safetensors"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"chunk 2")
    export.with_suffix(".json").write_text(json.dumps(_card(200, 120.0, 32.0, init_from=str(shipped_file),
                                                           init_sha256=shipped["sha256"])))
    (tmp_path / "run2" / "log.csv").write_text("step,elapsed_s,val_psnr_y,val_ssim_y\n200,119.0,32.0,0.95\n")
    third = _card(300, 180.0, 33.0, init_from=str(export), init_sha256=sha256_of(export))
    previous = ship.continued(third, shipped, shipped_file)
    card = accumulate_chunks(third, [], previous)
    assert card["n_chunks"] == 3 and card["total_steps_all_chunks"] == 600 and card["total_wall_time_s"] == 360.0
    assert card["chunks"][1]["validation_curve"] == [{"step": 200, "elapsed_s": 119.0, "val_psnr_y": 32.0,
                                                      "val_ssim_y": 0.95}]
    assert ship.continued(_card(300, 180.0, 33.0, init_from=str(export), init_sha256="other"), shipped,
                          shipped_file) is None  # not the file it started from


def test_shipping_heavy_weights_records_the_storm_test_set_and_the_rainy_input_row(tmp_path, monkeypatch):
    # heavy weights are scored on the synthetic storm set: the card's metrics key, the command that
    # remakes the set, and the rainy input's row (derain eval --input-baseline) in results/heavy/
    import csv
    import importlib.util
    import json
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship_weights", Path(__file__).parent.parent / "scripts" / "ship_weights.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    monkeypatch.setattr(ship, "ROOT", tmp_path)
    monkeypatch.setattr(ship, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    run, ev = tmp_path / "run", tmp_path / "run" / "eval"
    (run / "export").mkdir(parents=True)
    ev.mkdir()
    (run / "export" / "dsmnet_heavy.safetensors").write_bytes(b"heavy weights")
    light = tmp_path / "weights" / "dsmnet_rain100l.safetensors"  # the run starts from these
    light.write_bytes(b"rain100l weights")
    light.with_suffix(".json").write_text(json.dumps({**_card(7600, 8400.0, 36.0), "file": light.name,
                                                      "total_steps_all_chunks": 7600, "n_chunks": 2}))
    (run / "export" / "dsmnet_heavy.json").write_text(json.dumps(
        {**_card(500, 300.0, 30.0), "variant": "heavy", "file": "dsmnet_heavy.safetensors",
         "init_from": "weights/dsmnet_rain100l.safetensors", "init_sha256": sha256_of(light)}))
    (run / "log.csv").write_text("step,elapsed_s,val_psnr_y,val_ssim_y\n500,299.0,30.0,0.9\n")
    scores = {"images": 50, "psnr_rgb": 28.0, "ssim_rgb": 0.9, "psnr_y": 29.0, "ssim_y": 0.91}
    rainy = {"model": "rainy input", "variant": "-", **scores, "psnr_y": 15.0}
    (ev / "eval_summary.json").write_text(json.dumps([{"model": "dsmnet", "variant": "heavy", **scores}, rainy]))
    with open(ev / "eval_per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model", "variant", "image", "psnr_y"])
        w.writeheader()
        w.writerow({"model": "dsmnet", "variant": "heavy", "image": "000.png", "psnr_y": 29.0})
    monkeypatch.setattr(sys, "argv", ["ship_weights.py", str(run), str(ev)])
    assert ship.main() == 0
    card = json.loads((tmp_path / "weights" / "dsmnet_heavy.json").read_text())
    m = card["metrics"]["heavy_test"]
    assert m["psnr_y"] == 29.0 and "rain100l_test" not in card["metrics"]
    assert m["command"].startswith("python scripts/make_synthetic_test.py --out runs/synthetic_storm_test --kind storm")
    assert "derain eval --data runs/synthetic_storm_test --models dsmnet --variant heavy" in m["command"]
    rows = json.loads((tmp_path / "results" / "heavy" / "eval_summary.json").read_text())
    assert {r["model"]: r["psnr_y"] for r in rows} == {"dsmnet": 29.0, "rainy input": 15.0}
    assert (tmp_path / "weights" / "dsmnet_heavy.safetensors").read_bytes() == b"heavy weights"
    # a new history (one chunk) that names the weights it started from
    assert card["n_chunks"] == 1 and card["total_steps_all_chunks"] == 500
    assert card["fine_tuned_from"]["variant"] == "rain100l" and card["fine_tuned_from"]["steps"] == 7600
