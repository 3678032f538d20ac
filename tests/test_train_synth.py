"""Training on synthetic rain over clean backgrounds: patches, validation set, --synth runs, test folder.

Tiny clean images are written into tmp_path (never ../shared/data).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import derain_core as dc
from derain_core import synth
from derain_core import train as T
from derain_core.data import (SyntheticRainPatches, find_pairs, load_rgb_uint8, make_synthetic_val,
                              split_pairs, synthetic_val_seed)

REGISTERED = [c.id for c in dc.list_models()]
ROOT = Path(__file__).resolve().parents[1]


def _clean_image(i: int, size: int) -> np.ndarray:
    """Smooth-ish dark-to-mid background (rain shows on it) with some texture."""
    rng = np.random.default_rng(100 + i)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 40 + 80 * np.stack([yy, xx, (yy + xx) / 2], -1) + rng.normal(0, 8, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def make_data(root: Path, n: int = 5, size: int = 48) -> Path:
    """``root/rainy`` + ``root/clean``; the 'real' rain is a fixed +50 vertical band (easy to spot)."""
    (root / "rainy").mkdir(parents=True)
    (root / "clean").mkdir()
    for i in range(n):
        clean = _clean_image(i, size)
        rainy = clean.astype(np.int32)
        rainy[:, 5 + 3 * i:8 + 3 * i] += 50
        Image.fromarray(clean).save(root / "clean" / f"{i:03d}.png")
        Image.fromarray(np.clip(rainy, 0, 255).astype(np.uint8)).save(root / "rainy" / f"{i:03d}.png")
    return root


def _locate(crop: torch.Tensor, images: list[torch.Tensor]) -> tuple[int, int, int, list[int]] | None:
    """Find a uint8 ``(3, p, p)`` crop (any flip) in ``images``: (image, top, left, flip dims)."""
    p = crop.shape[-1]
    for i, img in enumerate(images):
        for dims in ([], [2], [1], [2, 1]):
            c = crop.flip(dims) if dims else crop
            h, w = img.shape[-2:]
            for top in range(h - p + 1):
                for left in range(w - p + 1):
                    if torch.equal(img[:, top:top + p, left:left + p], c):
                        return i, top, left, dims
    return None


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


# ------------------------------------------------------------------------------------------ synth helper
def test_random_rain_helper():
    clean = _clean_image(0, 40)
    a, pa = synth.random_rain(clean, "heavy", seed=7)
    b, pb = synth.random_rain(clean, "heavy", seed=7)
    c, _ = synth.random_rain(clean, "heavy", seed=8)
    assert np.array_equal(a, b) and pa.to_dict() == pb.to_dict() and not np.array_equal(a, c)
    assert a.shape == clean.shape and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.allclose(a * 255, np.round(a * 255), atol=1e-3)  # 8-bit levels
    raw = synth.add_rain(clean, pa)[0]  # the returned parameters reproduce the image
    assert np.abs(raw - a).max() <= 0.5 / 255 + 1e-6
    assert len(pa.layers) == len(synth.PRESETS["heavy"].layers)
    assert "heavy" in synth.describe_generator("heavy") and "random_params" in synth.describe_generator("heavy")
    with pytest.raises(ValueError, match="unknown rain kind 'drizzle'"):
        synth.describe_generator("drizzle")
    assert "widened" in synth.describe_generator("wide") and "splash" in synth.describe_generator("wide")


# ------------------------------------------------------------------------------------------ patches
def test_synthetic_patches_deterministic_and_resumable(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d"))
    a = SyntheticRainPatches(pairs, 32, kind="heavy", seed=3)
    b = SyntheticRainPatches(pairs, 32, kind="heavy", seed=3)
    ra, ca = a.batch(4)
    rb, cb = b.batch(4)
    assert torch.equal(ra, rb) and torch.equal(ca, cb)
    other = SyntheticRainPatches(pairs, 32, kind="heavy", seed=4).batch(4)
    assert not torch.equal(other[0], ra)
    state = a.get_state()
    nxt = a.batch(3)
    a.set_state(state)
    again = a.batch(3)
    assert torch.equal(again[0], nxt[0]) and torch.equal(again[1], nxt[1])
    assert not torch.equal(nxt[0][:3], ra[:3])  # the stream moves on
    assert ra.shape == ca.shape == (4, 3, 32, 32) and ra.dtype == torch.float32
    r, c = next(iter(a))
    assert r.shape == c.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="larger"):
        SyntheticRainPatches(pairs, 64)
    with pytest.raises(ValueError, match="mix"):
        SyntheticRainPatches(pairs, 32, mix=1.5)
    with pytest.raises(ValueError, match="rain kind"):
        SyntheticRainPatches(pairs, 32, kind="drizzle")


def test_synthetic_patches_have_rain_over_clean_crops(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d"))
    cleans = [load_rgb_uint8(c) for _, c in pairs]
    reals = [load_rgb_uint8(r) for r, _ in pairs]
    ds = SyntheticRainPatches(pairs, 32, kind="heavy", seed=0)
    rainy, clean = ds.batch(8)
    energies, flips = [], set()
    for r, c in zip(rainy, clean):
        where = _locate(_u8(c), cleans)
        assert where is not None, "clean patch must be a crop of a clean image"
        i, top, left, dims = where
        flips.add(tuple(dims))
        real = reals[i][:, top:top + 32, left:left + 32].flip(dims) if dims else reals[i][:, top:top + 32, left:left + 32]
        assert not torch.equal(_u8(r), real)  # synthetic, not the real rainy crop
        assert torch.allclose(r * 255, (r * 255).round(), atol=1e-3)
        energies.append(float(((r - c) ** 2).mean()))
    assert not torch.equal(rainy, clean)
    assert min(energies) > 1e-4 and np.mean(energies) > 1e-3  # every patch got visible rain
    assert (rainy - clean).mean() > 0.02  # screen-composited streaks and veil brighten
    assert len(flips) > 1
    # light rain is weaker than heavy rain on the same crops and seeds
    light = SyntheticRainPatches(pairs, 32, kind="light", seed=0).batch(8)
    assert torch.equal(light[1], clean)
    assert ((light[0] - clean) ** 2).mean() < ((rainy - clean) ** 2).mean()


def test_mix_draws_real_pairs(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d"))
    cleans = [load_rgb_uint8(c) for _, c in pairs]
    reals = [load_rgb_uint8(r) for r, _ in pairs]
    all_real = SyntheticRainPatches(pairs, 32, mix=1.0, seed=1)
    for _ in range(6):
        r, c, is_real = all_real.sample()
        assert is_real
        i, top, left, dims = _locate(_u8(c), cleans)
        real = reals[i][:, top:top + 32, left:left + 32]
        assert torch.equal(_u8(r), real.flip(dims) if dims else real)
    assert not any(SyntheticRainPatches(pairs, 32, mix=0.0, seed=1).sample()[2] for _ in range(10))
    assert SyntheticRainPatches(pairs, 32, mix=0.0).rainys is None  # rainy images not even loaded
    half = SyntheticRainPatches(pairs, 32, mix=0.5, seed=2)
    kinds = [half.sample()[2] for _ in range(40)]
    assert 8 <= sum(kinds) <= 32


def test_synthetic_identity_pairs(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d"))
    mixed = SyntheticRainPatches(pairs, 32, seed=3, identity=0.5)
    same = [torch.equal(r, c) for r, c, _ in (mixed.sample() for _ in range(40))]
    assert 8 <= sum(same) <= 32
    assert not any(torch.equal(r, c) for r, c, _ in (SyntheticRainPatches(pairs, 32, seed=3).sample()
                                                      for _ in range(10)))


# ------------------------------------------------------------------------------------------ validation set
def test_make_synthetic_val(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d", n=4))
    _, val_pairs = split_pairs(pairs, 2, seed=0)
    v1 = make_synthetic_val(val_pairs, 2, crop=40, kind="heavy", seed=0)
    v2 = make_synthetic_val(list(reversed(val_pairs)), 2, crop=40, kind="heavy", seed=0)
    assert len(v1) == 2
    for (r1, c1), (r2, c2) in zip(v1, v2):
        assert r1.shape == c1.shape == (1, 3, 40, 40)
        assert torch.equal(r1, r2) and torch.equal(c1, c2)
        assert ((r1 - c1) ** 2).mean() > 1e-3
    # only the clean images are read: the rainy files may be gone
    for r, _ in val_pairs:
        r.unlink()
    v3 = make_synthetic_val([c for _, c in val_pairs], 2, crop=40, kind="heavy", seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(v1, v3))
    clean0 = load_rgb_uint8(val_pairs[0][1]).float()[None] / 255
    assert torch.equal(v1[0][1], T.center_crop(clean0, 40))
    # other seed or kind: other rain; more images than files: repeats get new rain
    assert not torch.equal(make_synthetic_val(val_pairs, 1, 40, "heavy", seed=1)[0][0], v1[0][0])
    assert not torch.equal(make_synthetic_val(val_pairs, 1, 40, "storm", seed=0)[0][0], v1[0][0])
    v4 = make_synthetic_val(val_pairs, 5, crop=0, kind="heavy", seed=0)
    assert len(v4) == 5 and v4[0][0].shape == (1, 3, 48, 48)
    assert torch.equal(v4[0][1], v4[2][1]) and not torch.equal(v4[0][0], v4[2][0])
    assert make_synthetic_val(val_pairs, 0, 40) == []


# ------------------------------------------------------------------------------------------ training
def _cfg(tmp_path, data, model="control", **kw):
    base = dict(model=model, data=str(data), steps=3, batch=2, patch=32, val_every=3, val_count=1,
                val_crop=0, log_every=1, seed=0, out=str(tmp_path / f"run_{model}"), tiny=True, threads=1,
                progress=False, synth="heavy")
    base.update(kw)
    return T.TrainConfig(**base)


@pytest.mark.parametrize("model_id", ["control"] + REGISTERED[:1])
def test_train_synth_heavy_steps_and_card(tmp_path, model_id):
    data = make_data(tmp_path / "d", n=4)
    res = T.train(_cfg(tmp_path, data, model=model_id))
    assert (res.step, res.stopped) == (3, "done")
    assert res.export_path.name == f"{model_id}_heavy.safetensors"  # variant defaults to the rain kind
    card = json.loads(res.export_path.with_suffix(".json").read_text())
    assert card["variant"] == "heavy"
    assert "synthetic heavy rain" in card["training_data"] and "clean backgrounds of d" in card["training_data"]
    assert "no real rainy images" in card["training_data"] and "no test images" in card["training_data"]
    sr = card["synthetic_rain"]
    assert sr["kind"] == "heavy" and sr["mix_real"] == 0.0 and sr["seed"] == 0
    assert sr["generator"] == synth.describe_generator("heavy") and "derain_core.synth" in sr["generator"]
    assert "synthetic heavy rain" in card["validation"]
    # validation ran on the synthetic set built from the held-out clean image, not on the real pair
    _, val_pairs = split_pairs(find_pairs(data), 1, seed=0)
    model = T.build_model(model_id, T.model_base_config(model_id, tiny=True))
    T.load_model_file(model, res.out_dir / "best.safetensors")
    syn_val = make_synthetic_val(val_pairs, 1, 0, "heavy", 0)
    p_syn, _ = T.validate(model, syn_val, torch.device("cpu"))
    assert card["best_val_psnr_y"] == pytest.approx(p_syn, abs=2e-3)
    p_real, _ = T.validate(model, T.load_validation(val_pairs), torch.device("cpu"))
    assert abs(p_real - p_syn) > 0.01


def test_train_synth_resume_identical(tmp_path):
    data = make_data(tmp_path / "d", n=4)
    T.train(_cfg(tmp_path, data, out=str(tmp_path / "a"), steps=4, val_every=2, synth_mix=0.25))
    b1 = T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=4, val_every=2, synth_mix=0.25, stop_at=2))
    assert (b1.step, b1.stopped) == (2, "paused")
    # the data RNG state in the checkpoint reproduces the batches the straight run drew next
    from safetensors.torch import load_file
    st = load_file(str(tmp_path / "b" / "last_state.safetensors"))
    pairs, _ = split_pairs(find_pairs(data), 1, seed=0)
    fresh = SyntheticRainPatches(pairs, 32, kind="heavy", mix=0.25, seed=0)
    fresh.batch(2), fresh.batch(2)  # steps 1-2 of the run
    expect = fresh.batch(2)
    restored = SyntheticRainPatches(pairs, 32, kind="heavy", mix=0.25, seed=0)
    restored.set_state(st["rng.data"])
    got = restored.batch(2)
    assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
    with pytest.raises(ValueError, match="synth"):
        T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=None, resume=True, synth="light"))
    with pytest.raises(ValueError, match="synth_mix"):
        T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=None, resume=True, synth_mix=0.5))
    b2 = T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=None, val_every=2, synth_mix=0.25,
                      resume=True))
    assert (b2.step, b2.stopped) == (4, "done")
    wa, wb = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    card = json.loads(b2.export_path.with_suffix(".json").read_text())
    assert card["synthetic_rain"]["mix_real"] == 0.25 and "25% of the patches are real" in card["training_data"]


def test_train_synth_options_and_init(tmp_path, capsys):
    data = make_data(tmp_path / "d", n=4)
    with pytest.raises(ValueError, match="synth_mix needs synth"):
        T.train(_cfg(tmp_path, data, synth="none", synth_mix=0.5))
    with pytest.raises(ValueError, match="unknown synth"):
        T.train(_cfg(tmp_path, data, synth="drizzle"))
    # --synth none keeps the old behaviour: real pairs, variant from the folder name, no synth card
    plain = T.train(_cfg(tmp_path, data, out=str(tmp_path / "plain"), synth="none", steps=1, val_every=1))
    card = json.loads(plain.export_path.with_suffix(".json").read_text())
    assert plain.export_path.name == "control_d.safetensors" and "synthetic_rain" not in card
    assert card["training_data"].startswith("d: 3 training pairs")
    # heavy training started from light weights (--init): the weights are loaded
    out = tmp_path / "cli"
    rc = T.main(["control", "--data", str(data), "--steps", "1", "--batch", "2", "--patch", "32",
                 "--val-count", "1", "--threads", "1", "--no-progress", "--no-bf16", "--out", str(out),
                 "--synth", "heavy", "--synth-mix", "0.5", "--init", str(plain.export_path), "--lr", "1e-12"])
    assert rc == 0 and "done: 1/1 steps" in capsys.readouterr().out
    card = json.loads((out / "export" / "control_heavy.json").read_text())
    assert card["init_from"] == str(plain.export_path) and card["synthetic_rain"]["mix_real"] == 0.5
    from safetensors.torch import load_file
    w0, w1 = load_file(str(plain.export_path)), load_file(str(out / "last.safetensors"))
    for k in w0:
        assert torch.allclose(w0[k].float(), w1[k], atol=1e-6), k
    with pytest.raises(SystemExit):
        T.main(["control", "--data", str(data), "--steps", "1", "--synth", "drizzle"])


# ------------------------------------------------------------------------------------------ test folder
def _script():
    spec = importlib.util.spec_from_file_location("make_synthetic_test", ROOT / "scripts" / "make_synthetic_test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_synthetic_test_folder(tmp_path, capsys):
    mod = _script()
    data = make_data(tmp_path / "test_split", n=4)
    out = tmp_path / "syn_test"
    assert mod.main(["--data", str(data), "--out", str(out), "--kind", "heavy", "--count", "3", "--seed", "1234"]) == 0
    pairs = find_pairs(out)  # what `derain eval --data DIR` reads
    assert [r.name for r, _ in pairs] == ["000.png", "001.png", "002.png"]
    meta = json.loads((out / "synthetic_test.json").read_text())
    assert meta["kind"] == "heavy" and meta["seed"] == 1234 and "evaluation only" in meta["purpose"]
    for (r, c), rec in zip(pairs, meta["images"]):
        clean = np.asarray(Image.open(c))
        assert np.array_equal(clean, np.asarray(Image.open(data / "clean" / c.name)))
        rainy = np.asarray(Image.open(r)).astype(np.float32) / 255
        assert np.mean((rainy - clean / 255.0) ** 2) > 1e-3
        again, _ = synth.random_rain(clean, "heavy", rec["rain_seed"])  # reproducible from the record
        assert np.array_equal(np.round(again * 255).astype(np.uint8), np.asarray(Image.open(r)))
        assert rec["rain_seed"] != synthetic_val_seed("heavy", 1234, c.name)  # not the validation seed
    first = np.asarray(Image.open(pairs[0][0]))
    assert mod.main(["--data", str(data), "--out", str(out), "--count", "3"]) == 2  # exists
    assert mod.main(["--data", str(data), "--out", str(out), "--count", "3", "--overwrite"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(pairs[0][0])))  # deterministic
    assert mod.main(["--data", str(data), "--out", str(out), "--count", "2", "--seed", "5", "--overwrite"]) == 0
    assert not np.array_equal(first, np.asarray(Image.open(pairs[0][0])))
    assert len(find_pairs(out)) == 2  # --overwrite leaves no stale images
    assert mod.main(["--data", str(data), "--out", str(ROOT / "assets" / "x"), "--count", "1"]) == 2
    assert mod.main(["--data", str(data), "--out", str(data / "x"), "--count", "1"]) == 2
    assert mod.main(["--data", str(data), "--out", str(tmp_path / "o2"), "--count", "9"]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (ROOT / "assets" / "x").exists()
