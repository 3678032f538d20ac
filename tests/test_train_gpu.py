"""scripts/train_gpu.sh end to end on CPU with a tiny budget and tiny configs, so that it works
the first time it meets a GPU; and the lossless data pack it reads."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from derain_core import pack

ROOT = Path(__file__).resolve().parent.parent


def _dataset(root: Path, n: int = 13, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("rainy", "clean"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        clean = rng.integers(0, 200, (size, size, 3), dtype=np.uint8)
        rain = (rng.random((size, size, 1)) > 0.9) * rng.integers(0, 120, (size, size, 3))
        rainy = np.clip(clean.astype(int) + rain, 0, 255).astype(np.uint8)
        rainy[0, 0] = 0  # one pixel darker than clean: the layer must wrap mod 256
        Image.fromarray(clean).save(root / "clean" / f"{i:03d}.png")
        Image.fromarray(rainy).save(root / "rainy" / f"{i:03d}.png")
    return root


def test_pack_round_trip_is_lossless_and_split(tmp_path):
    data = _dataset(tmp_path / "d", n=5)
    parts = pack.write_pack(data, tmp_path / "pack", max_part_mib=0.01)
    assert len(parts) > 1  # split into several parts
    assert pack.unpack(parts, tmp_path / "back") == 5
    for sub in ("rainy", "clean"):
        for f in sorted((data / sub).iterdir()):
            a = np.asarray(Image.open(f))
            b = np.asarray(Image.open(tmp_path / "back" / sub / f.name))
            assert np.array_equal(a, b), f


def test_bundle_splits_large_files(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_gpu

    run = tmp_path / "m_rain100l_gpu"
    (run / "export").mkdir(parents=True)
    (run / "log.csv").write_text("step\n")
    (run / "export" / "m_rain100l.safetensors").write_bytes(os.urandom(5000))
    monkeypatch.setattr(train_gpu, "PIECE", 2048)
    pieces = train_gpu.bundle(run, tmp_path, "m")
    assert len(pieces) > 1 and all(p.stat().st_size <= 2048 for p in pieces)
    subprocess.run(["bash", str(ROOT / "scripts" / "receive_gpu.sh"), str(tmp_path), str(tmp_path / "runs")],
                   check=True, capture_output=True)
    got = (tmp_path / "runs" / "m_rain100l_gpu" / "export" / "m_rain100l.safetensors").read_bytes()
    assert got == (run / "export" / "m_rain100l.safetensors").read_bytes()


def test_train_gpu_sh_end_to_end_on_cpu(tmp_path):
    data = _dataset(tmp_path / "d")
    parts = pack.write_pack(data, tmp_path / "pack", max_part_mib=0.05)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh"), "0.5", str(out), "--parts",
                           *map(str, parts), "--tiny", "--batch", "2", "--patch", "32", "--val-every", "3",
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2 ** 20 for f in files)
    assert (out / "train_gpu.log").is_file() and "budget (min)" in (out / "train_gpu.log").read_text()
    subprocess.run(["bash", str(ROOT / "scripts" / "receive_gpu.sh"), str(out), str(tmp_path / "runs")],
                   check=True, capture_output=True)
    from derain_core.registry import get_card, model_ids

    for m in model_ids():
        run = tmp_path / "runs" / f"{m}_rain100l_gpu"
        card = (run / "export" / f"{m}_rain100l.json")
        assert card.is_file() and (run / "log.csv").is_file(), m
        c = json.loads(card.read_text())
        assert c["config"] == json.loads(json.dumps({**get_card(m).default_config, **get_card(m).test_config}))
        assert c["steps"] >= 1 and c["best_val_psnr_y"] is not None
