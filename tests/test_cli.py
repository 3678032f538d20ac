"""The derain CLI: bad inputs give one line and a non-zero exit; run/eval/models write what they say."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from derain_core import cli


def write_png(path, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


BAD_INPUTS = {
    "empty.png": b"",
    "notes.png": b"this is not an image\n" * 10,
    "truncated.png": None,  # filled in below
}


@pytest.fixture
def bad_files(tmp_path):
    files = {}
    (tmp_path / "empty.png").write_bytes(b"")
    files["empty"] = tmp_path / "empty.png"
    (tmp_path / "notes.png").write_bytes(b"this is not an image\n" * 10)
    files["text"] = tmp_path / "notes.png"
    good = write_png(tmp_path / "good.png", 64, 64)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:200])
    files["truncated"] = tmp_path / "truncated.png"
    write_png(tmp_path / "tiny.png", 8, 40)
    files["tiny"] = tmp_path / "tiny.png"
    files["missing"] = tmp_path / "nope.png"
    files["directory"] = tmp_path
    return files


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "tiny", "missing", "directory"])
def test_bad_input_one_line_error(kind, bad_files, tmp_path, capsys):
    code, out, err = run_main(capsys, "run", str(bad_files[kind]), "--models", "dsmnet",
                              "--out", str(tmp_path / "out"))
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("derain: error:"), err
    assert "Traceback" not in err


def test_unknown_model_is_one_line(tmp_path, capsys):
    img = write_png(tmp_path / "a.png")
    code, _, err = run_main(capsys, "run", str(img), "--models", "nonet", "--out", str(tmp_path))
    assert code == 2 and "unknown model" in err and len(err.strip().splitlines()) == 1


def test_console_script_no_traceback(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    proc = subprocess.run([sys.executable, "-m", "derain_core.cli", "run", str(bad), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_run_writes_outputs_maps_and_metrics(tmp_path, capsys):
    img = write_png(tmp_path / "rainy.png", 40, 48, seed=1)
    gt = write_png(tmp_path / "clean.png", 40, 48, seed=2)
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, "run", str(img), "--models", "dsmnet", "jdnet", "--gt", str(gt),
                                 "--out", str(out), "--maps")
    assert code == 0, err
    assert (out / "rainy_dsmnet.png").is_file() and (out / "rainy_jdnet.png").is_file()
    with Image.open(out / "rainy_dsmnet.png") as im:
        assert im.size == (48, 40)
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["model"] for r in rows] == ["dsmnet", "jdnet"]
    assert all("psnr_y" in r and "ssim_rgb" in r and "niqe" in r for r in rows)
    assert (out / "metrics.csv").read_text().startswith("image,")
    assert len(list((out / "maps" / "rainy_dsmnet").glob("*.png"))) == rows[0]["maps"] > 10


def test_run_maps_with_stretched_attention(tmp_path, capsys):
    img = write_png(tmp_path / "rainy.png", 40, 48, seed=1)
    pics = {}
    for flag in ((), ("--stretch-attention",)):
        out = tmp_path / f"out{len(flag)}"
        code, _, err = run_main(capsys, "run", str(img), "--models", "msamnet", "--out", str(out), "--maps", *flag)
        assert code == 0, err
        pics[flag] = (out / "maps" / "rainy_msamnet" / "sam.attention.png").read_bytes()
    assert pics[()] != pics[("--stretch-attention",)]


def test_eval_on_paired_folder(tmp_path, capsys):
    for layout in ("pairs", "rain-norain"):
        root = tmp_path / layout
        if layout == "pairs":
            (root / "rainy").mkdir(parents=True)
            (root / "clean").mkdir()
            for i in range(2):
                write_png(root / "rainy" / f"{i}.png", seed=i)
                write_png(root / "clean" / f"{i}.png", seed=10 + i)
        else:
            root.mkdir()
            for i in range(2):
                write_png(root / f"rain-{i:03d}.png", seed=i)
                write_png(root / f"norain-{i:03d}.png", seed=10 + i)
        code, stdout, err = run_main(capsys, "eval", "--data", str(root), "--models", "dsmnet",
                                     "--out", str(tmp_path / f"ev_{layout}"), "--input-baseline")
        assert code == 0, err
        assert "PSNR Y" in stdout and "rainy input" in stdout
        summary = json.loads((tmp_path / f"ev_{layout}" / "eval_summary.json").read_text())
        assert summary[0]["images"] == 2 and summary[0]["model"] == "dsmnet"


def test_eval_empty_folder_is_clear(tmp_path, capsys):
    code, _, err = run_main(capsys, "eval", "--data", str(tmp_path), "--models", "dsmnet")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_models_table(capsys):
    code, out, _ = run_main(capsys, "models")
    assert code == 0
    for mid in ("msamnet", "dsmnet", "mfan", "rranet", "jdnet"):
        assert mid in out


def test_bench_train_prints_both_paths_and_writes_json(tmp_path):
    out = tmp_path / "bench_train.json"
    proc = subprocess.run([sys.executable, "-m", "derain_core.cli", "bench", "--train", "--models", "dsmnet",
                           "--batch", "1", "--patch", "16", "--steps", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SPEEDUP  dsmnet" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["baseline", "current"]
    assert all(r["samples_per_s"] > 0 and r["gflops"] > 0 and r["frac_fp32_peak"] > 0 for r in rows)
