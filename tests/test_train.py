"""Training pipeline: data discovery/split/patches, losses, schedules, resumable runs, export.

Everything runs on tiny synthetic pairs written into tmp_path (never ../shared/data).
"""
import argparse
import csv
import json
import sys
from pathlib import Path
import math

import numpy as np
import pytest
import torch
from PIL import Image

import derain_core as dc
from derain_core import train as T
from derain_core.control import PlainCNN, create_control, load_control
from derain_core.data import PairedPatches, find_pairs, load_validation, split_pairs
from derain_core.weights import load_weights

REGISTERED = [c.id for c in dc.list_models()]


def _pair_arrays(i: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Clean noise plus additive bright streaks (rainy >= clean, like Rain100L)."""
    rng = np.random.default_rng(i)
    clean = (rng.random((size, size, 3)) * 180).astype(np.uint8)
    rainy = clean.astype(np.int32)
    for s in range(3):
        x0 = int(rng.integers(0, size - 8))
        for y in range(size):
            x = x0 + y // 8
            rainy[y, x:x + 2] += 60 + 10 * s
    return np.clip(rainy, 0, 255).astype(np.uint8), clean


def make_data(root, layout: str = "folders", n: int = 6, size: int = 48):
    """Write ``n`` synthetic pairs in one of the supported layouts; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rainy, clean = _pair_arrays(i, size)
        if layout == "folders":
            rp, cp = root / "rainy" / f"{i:03d}.png", root / "clean" / f"{i:03d}.png"
        elif layout == "flat":
            rp, cp = root / f"rain-{i + 1:03d}.png", root / f"norain-{i + 1:03d}.png"
        elif layout == "rain_norain":
            rp, cp = root / "rain" / f"rain-{i + 1:03d}.png", root / "norain" / f"norain-{i + 1:03d}.png"
        else:
            raise ValueError(layout)
        rp.parent.mkdir(exist_ok=True)
        cp.parent.mkdir(exist_ok=True)
        Image.fromarray(rainy).save(rp)
        Image.fromarray(clean).save(cp)
    return root


# ------------------------------------------------------------------------------------------ data
@pytest.mark.parametrize("layout", ["folders", "flat", "rain_norain"])
def test_find_pairs_layouts(tmp_path, layout):
    root = make_data(tmp_path / "d", layout, n=4)
    pairs = find_pairs(root)
    assert len(pairs) == 4
    for r, c in pairs:
        assert r.is_file() and c.is_file() and r != c
        assert r.name.replace("rain-", "") == c.name.replace("norain-", "")
        assert np.all(np.asarray(Image.open(r)) >= np.asarray(Image.open(c)))  # right way round


def test_find_pairs_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "missing")
    (tmp_path / "empty" / "rainy").mkdir(parents=True)
    (tmp_path / "empty" / "clean").mkdir()
    with pytest.raises(ValueError, match="no rainy/clean image pairs"):
        find_pairs(tmp_path / "empty")


def test_split_pairs_deterministic(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d", n=6))
    train, val = split_pairs(pairs, 2, seed=3)
    assert len(train) == 4 and len(val) == 2 and not set(train) & set(val)
    assert sorted(train + val) == sorted(pairs)
    assert split_pairs(list(reversed(pairs)), 2, seed=3) == (train, val)  # order-independent
    assert len({tuple(split_pairs(pairs, 2, seed=s)[1]) for s in range(10)}) > 1  # the seed matters
    with pytest.raises(ValueError):
        split_pairs(pairs, 6, seed=0)


def test_paired_patches(tmp_path):
    pairs = find_pairs(make_data(tmp_path / "d", n=3))
    ds = PairedPatches(pairs, patch=32, seed=1)
    state = ds.get_state()
    rainy, clean = ds.batch(5)
    assert rainy.shape == clean.shape == (5, 3, 32, 32) and rainy.dtype == torch.float32
    assert 0 <= clean.min() and rainy.max() <= 1
    assert torch.all(rainy >= clean)  # rainy and clean crops come from the same place and flip
    ds.set_state(state)
    again = ds.batch(5)
    assert torch.equal(again[0], rainy) and torch.equal(again[1], clean)
    # flips happen: over many crops of one image, some crops are flipped copies
    one = PairedPatches(pairs[:1], patch=48, seed=0)
    seen = {tuple(one.crop()[0][0, 0, :2].tolist()) for _ in range(40)}
    assert len(seen) == 4
    r, c = next(iter(one))
    assert r.shape == (3, 48, 48)
    with pytest.raises(ValueError, match="larger"):
        PairedPatches(pairs, patch=64)
    val = load_validation(pairs[:2], crop=40)
    assert val[0][0].shape == (1, 3, 40, 40)


def test_identity_pairs(tmp_path):
    """--identity-mix: that share of crops is (clean, clean); without it the crops are unchanged."""
    pairs = find_pairs(make_data(tmp_path / "d", n=3))
    plain = PairedPatches(pairs, patch=32, seed=4)
    before = [plain.crop() for _ in range(20)]
    assert not any(torch.equal(r, c) for r, c in before)  # every crop of make_data has streaks
    zero = PairedPatches(pairs, patch=32, seed=4, identity=0.0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(before, (zero.crop() for _ in range(20))))
    mixed = PairedPatches(pairs, patch=32, seed=4, identity=0.3)
    same = [torch.equal(r, c) for r, c in (mixed.crop() for _ in range(200))]
    assert 30 <= sum(same) <= 90  # about 60 of 200
    state = mixed.get_state()
    a = mixed.batch(8)
    mixed.set_state(state)
    b = mixed.batch(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="identity fraction must be in"):
            PairedPatches(pairs, patch=32, identity=bad)


def test_identity_mix_option_reaches_data_and_card(tmp_path):
    data = make_data(tmp_path / "d", n=6)
    cfg = T.TrainConfig(model="control", data=str(data), steps=2, batch=2, patch=32, val_count=2,
                        val_every=2, out=str(tmp_path / "run"), tiny=True, progress=False, identity_mix=0.25)
    run = T.Trainer(cfg)
    assert run.data.identity == 0.25
    run.loop()
    run.export()
    card = json.loads((tmp_path / "run" / "export" / "control_d.json").read_text())
    assert "25% identity pairs" in card["augmentation"]
    with pytest.raises(ValueError, match="--resume: identity_mix was 0.25"):
        T.Trainer(T.TrainConfig(model="control", data=str(data), out=str(tmp_path / "run"), resume=True,
                                tiny=True, progress=False, val_count=2, steps=4))
    parser = T.add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["control", "--steps", "1", "--identity-mix", "0.1"])
    assert T.config_from_args(args).identity_mix == 0.1


# ------------------------------------------------------------------------------------------ losses
def test_every_network_declares_its_training_beside_it():
    assert set(T.trainable_ids()) == {"msamnet", "dsmnet", "mfan", "rranet", "jdnet", "control"}
    for m in T.trainable_ids():
        spec = T.training_spec(m)
        assert callable(spec.loss) and spec.paper.lr > 0 and spec.short().ema == 0.999
    with pytest.raises(ValueError, match="unknown model"):
        T.training_spec("nonet")


def test_losses_known_cases():
    torch.manual_seed(0)
    y = torch.rand(2, 3, 24, 24)
    same = {"output": y.clone(), "sam": y.clone()}
    # Charbonnier of identical images is eps = 1e-3, the edge term too: 2 * (1e-3 + 0.05e-3)
    assert T.loss_for("msamnet")(same, y).item() == pytest.approx(2 * 1.05e-3, rel=1e-4)
    assert T.loss_for("dsmnet")(same, y).item() == pytest.approx(0.0, abs=1e-6)
    assert T.loss_for("mfan")(same, y).item() == 0.0
    assert T.loss_for("rranet")(same, y).item() == pytest.approx(-1.0, abs=1e-5)
    assert T.loss_for("jdnet")(same, y).item() == pytest.approx(-1.0, abs=1e-5)
    # SAM output is part of MSAMNet's loss
    worse = {"output": y.clone(), "sam": (y + 0.1).clamp(0, 1)}
    assert T.loss_for("msamnet")(worse, y) > T.loss_for("msamnet")(same, y) + 0.01
    # DSM-Net: MSE + 0.2 (1 - SSIM) on a known offset
    off = {"output": y + 0.1}
    expect = 0.01 + 0.2 * (1 - dc.losses.ssim(y + 0.1, y).item())
    assert T.loss_for("dsmnet")(off, y).item() == pytest.approx(expect, rel=1e-5)


@pytest.mark.parametrize("model_id", sorted(T.trainable_ids()))
def test_losses_decrease_under_descent(model_id):
    torch.manual_seed(0)
    y = torch.rand(1, 3, 24, 24)
    x = (y + 0.3 * torch.rand_like(y)).clamp(0, 1).requires_grad_(True)
    s = (y + 0.3 * torch.rand_like(y)).clamp(0, 1).requires_grad_(True)
    opt = torch.optim.Adam([x, s], lr=0.01)
    fn = T.loss_for(model_id)
    first = fn({"output": x, "sam": s}, y).item()
    for _ in range(20):
        opt.zero_grad()
        fn({"output": x, "sam": s}, y).backward()
        opt.step()
    assert fn({"output": x, "sam": s}, y).item() < first - 1e-3


def test_loss_is_fp32_under_bf16_autocast():
    model = create_control(channels=8, blocks=1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = T.compute_loss(model, T.loss_for("control"), x, y, torch.autocast("cpu", dtype=torch.bfloat16))
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


def test_compiled_loss_matches_eager_loss_and_gradients():
    # derain train --compile: the same loss and gradients as the eager step (bf16 autocast as trained)
    torch.manual_seed(0)
    model = create_control(channels=8, blocks=1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    auto = torch.autocast("cpu", dtype=torch.bfloat16)
    eager = T.compute_loss(model, T.loss_for("control"), x, y, auto)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    compiled = T.compiled_loss(model, T.loss_for("control"), "cpu", bf16=True)(x, y)
    compiled.backward()
    assert compiled.dtype == torch.float32
    assert compiled.item() == pytest.approx(eager.item(), rel=2e-2)
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(p.grad, g, rtol=5e-2, atol=5e-3)


# ------------------------------------------------------------------------------------------ schedules
def test_schedules_follow_recipes():
    P = "paper"  # the papers' schedules (--recipe paper)
    total = 1000
    assert T.lr_at("msamnet", 0, total, kind=P) < 2e-4 / 5  # warm-up
    assert T.lr_at("msamnet", 100, total, kind=P) == pytest.approx(2e-4, rel=0.05)
    assert T.lr_at("msamnet", total - 1, total, kind=P) == pytest.approx(1e-6, rel=0.1)
    assert T.lr_at("dsmnet", 500, total, kind=P) == pytest.approx(1e-3)
    assert T.lr_at("dsmnet", 700, total, kind=P) == pytest.approx(1e-4)
    assert T.lr_at("dsmnet", 900, total, kind=P) == pytest.approx(1e-5)
    assert T.lr_at("mfan", 100, total, kind=P) == pytest.approx(2e-4)
    assert T.lr_at("mfan", 150, total, kind=P) == pytest.approx(1e-4)
    assert T.lr_at("mfan", 999, total, kind=P) == pytest.approx(2e-4 / 64)
    assert [T.lr_at("rranet", s, total, kind=P) for s in (200, 300, 600, 800)] == pytest.approx([1e-3, 2e-4, 4e-5, 8e-6])
    assert T.recipe_for("rranet", "paper").grad_clip == 5.0
    assert [T.lr_at("jdnet", s, total, kind=P) for s in (500, 650, 850)] == pytest.approx([5e-4, 5e-5, 5e-6])
    # cosine midpoint after the 2% warm-up (20 steps): (1000 + 20) / 2
    assert T.lr_at("control", 510, total, base_lr=1e-3, kind=P) == pytest.approx(0.5e-3, rel=0.01)
    # functions of (step, total): the same fraction of any budget gives the same LR
    assert T.lr_at("dsmnet", 70, 100, kind=P) == T.lr_at("dsmnet", 7000, 10000, kind=P)


# ------------------------------------------------------------------------------------------ control
def test_control_network():
    full = PlainCNN()
    n = sum(p.numel() for p in full.parameters())
    assert 450_000 < n < 550_000
    model = create_control(channels=8, blocks=2).eval()
    x = torch.rand(1, 3, 21, 19)
    out, maps = model.forward_intermediates(x)
    assert out.shape == x.shape
    assert torch.allclose(maps["rain"], x - out, atol=1e-6)
    assert set(model.training_outputs(x)) == {"output"}
    with pytest.raises(TypeError):
        create_control(width=3)


# ------------------------------------------------------------------------------------------ training
def _cfg(tmp_path, data, model="control", **kw):
    base = dict(model=model, data=str(data), steps=4, batch=2, patch=32, val_every=2, val_count=2,
                val_crop=0, log_every=1, seed=0, out=str(tmp_path / f"run_{model}"), variant="synth",
                tiny=True, threads=1, progress=False)
    base.update(kw)
    return T.TrainConfig(**base)


def _log_rows(out):
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _weights(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def test_train_control_resume_and_export(tmp_path):
    data = make_data(tmp_path / "d", n=6)
    # run A: 4 steps straight
    a = T.train(_cfg(tmp_path, data, out=str(tmp_path / "a")))
    assert (a.step, a.total_steps, a.stopped) == (4, 4, "done")
    rows = _log_rows(tmp_path / "a")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == list(T.LOG_FIELDS)
    assert rows[1]["val_psnr_y"] and rows[3]["val_psnr_y"] and not rows[0]["val_psnr_y"]
    assert all(math.isfinite(float(r["loss"])) for r in rows)

    # run B: the same run paused at step 2, then resumed: continues at 3 and ends identical to A
    b1 = T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), stop_at=2))
    assert (b1.step, b1.stopped) == (2, "paused")
    state = json.loads((tmp_path / "b" / "last_state.json").read_text())
    assert state["step"] == 2 and state["total_steps"] == 4
    with pytest.raises(FileExistsError):
        T.train(_cfg(tmp_path, data, out=str(tmp_path / "b")))
    b2 = T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=None, resume=True))
    assert (b2.step, b2.total_steps, b2.stopped) == (4, 4, "done")
    assert [int(r["step"]) for r in _log_rows(tmp_path / "b")] == [1, 2, 3, 4]
    wa, wb = _weights(tmp_path / "a" / "last.safetensors"), _weights(tmp_path / "b" / "last.safetensors")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k  # optimizer + RNG state restored exactly

    # export: fp16 card with the check number; it reproduces the best checkpoint's output
    card = json.loads((tmp_path / "a" / "export" / "control_synth.json").read_text())
    assert card["dtype"] == "float16" and card["fp16_check_psnr_db"] >= 50
    assert card["steps"] == 4 and card["batch"] == 2 and card["patch"] == 32 and card["threads"] == 1
    assert card["best_val_psnr_y"] == pytest.approx(a.best_val_psnr_y, abs=1e-3)
    exported = load_control(a.export_path)
    best = create_control(**T.CONTROL_TEST_CONFIG)
    T.load_model_file(best, tmp_path / "a" / "best.safetensors")
    x = load_validation(find_pairs(data)[:1])[0][0]
    with torch.no_grad():
        assert T.psnr_y(exported(x), best.eval()(x)) > 50


def test_sigint_saves_last_and_resume_continues(tmp_path, monkeypatch):
    import os
    import signal

    data = make_data(tmp_path / "d", n=4)
    real_loss, calls = T.compute_loss, []

    def loss(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third step
        return real_loss(*a, **k)

    monkeypatch.setattr(T, "compute_loss", loss)
    before = signal.getsignal(signal.SIGINT)
    res = T.train(_cfg(tmp_path, data, steps=6, val_every=100, val_count=1))
    assert signal.getsignal(signal.SIGINT) is before
    assert (res.stopped, res.step) == ("interrupt", 3)
    assert json.loads((res.out_dir / "last_state.json").read_text())["step"] == 3
    with pytest.raises(ValueError, match="seed"):
        T.train(_cfg(tmp_path, data, steps=None, val_count=1, resume=True, seed=1))
    done = T.train(_cfg(tmp_path, data, steps=None, val_every=100, val_count=1, resume=True))
    assert (done.stopped, done.step, done.total_steps) == ("done", 6, 6)
    assert [int(r["step"]) for r in _log_rows(done.out_dir)][-3:] == [4, 5, 6]


def test_init_from_weights_file(tmp_path):
    data = make_data(tmp_path / "d", n=4)
    a = T.train(_cfg(tmp_path, data, out=str(tmp_path / "a"), steps=2, val_count=1))
    b = T.train(_cfg(tmp_path, data, out=str(tmp_path / "b"), steps=1, val_count=1, tiny=False,
                     init=str(a.export_path), lr=1e-12))
    assert b.config == a.config  # the config comes from the file
    wa = _weights(a.export_path)
    wb = _weights(tmp_path / "b" / "last.safetensors")
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k], atol=1e-6), k


@pytest.mark.skipif(not REGISTERED, reason="no registered network yet")
def test_train_registered_tiny_model(tmp_path):
    model_id = REGISTERED[0]
    data = make_data(tmp_path / "d", n=4, size=48)
    res = T.train(_cfg(tmp_path, data, model=model_id, steps=3, val_every=3, val_count=1))
    assert res.step == 3
    assert [int(r["step"]) for r in _log_rows(res.out_dir)] == [1, 2, 3]
    card = json.loads((res.export_path.with_suffix(".json")).read_text())
    loaded = load_weights(model_id, "synth", directory=res.export_path.parent)
    trained = dc.create_model(model_id, **dc.get_card(model_id).test_config)
    T.load_model_file(trained, res.out_dir / "best.safetensors")
    x = load_validation(find_pairs(data)[:1])[0][0]
    with torch.no_grad():
        got, ref = loaded(x), trained.eval()(x)
    if card["dtype"] == "float32":
        assert card["fp16_check_psnr_db"] < 50
        assert torch.allclose(got, ref, atol=1e-6)
    else:
        assert T.psnr_y(got, ref) > 45


class _VirtualClock:
    """Stands in for the ``time`` module in train.py: a training step costs ``step_s`` virtual
    seconds (``slow_s`` after ``slow_after`` steps), a validation ``val_s``; nothing else does."""

    def __init__(self, step_s=1.0, val_s=0.5, slow_after=None, slow_s=None):
        self.t, self.steps = 0.0, 0
        self.step_s, self.val_s, self.slow_after, self.slow_s = step_s, val_s, slow_after, slow_s

    def monotonic(self):
        return self.t

    perf_counter = monotonic

    def install(self, monkeypatch):
        real_loss, real_val = T.compute_loss, T.validate

        def loss(*a, **k):
            self.steps += 1
            slow = self.slow_after is not None and self.steps > self.slow_after
            self.t += self.slow_s if slow else self.step_s
            return real_loss(*a, **k)

        def val(*a, **k):
            self.t += self.val_s
            return real_val(*a, **k)

        monkeypatch.setattr(T, "time", self)
        monkeypatch.setattr(T, "compute_loss", loss)
        monkeypatch.setattr(T, "validate", val)


def test_minutes_budget_is_wall_time(tmp_path, monkeypatch):
    data = make_data(tmp_path / "d", n=4)
    # 10 steps of 1 s, then the machine gets 5x slower: a step-count estimate made early would
    # overrun; the time-based schedule simply stops when the 60 s are spent.
    clock = _VirtualClock(step_s=1.0, val_s=0.5, slow_after=10, slow_s=5.0)
    clock.install(monkeypatch)
    res = T.train(_cfg(tmp_path, data, steps=None, minutes=1, val_every=50, val_count=1, log_every=1))
    assert res.stopped == "done" and 18 <= res.step <= 22
    assert 60 <= clock.t <= 66
    rows = _log_rows(res.out_dir)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] < 0.05 * max(lrs), "the LR schedule must reach its end when the time is up"
    assert rows[-1]["val_psnr_y"]  # the final weights were validated
    assert res.export_path is not None and res.export_path.is_file()
    state = json.loads((res.out_dir / "last_state.json").read_text())
    assert state["step"] == res.step


def test_cli_standalone(tmp_path, capsys):
    data = make_data(tmp_path / "d", n=4)
    out = tmp_path / "cli"
    rc = T.main(["control", "--data", str(data), "--steps", "2", "--batch", "2", "--patch", "32",
                 "--val-count", "1", "--val-every", "2", "--tiny", "--threads", "1", "--no-progress",
                 "--no-bf16", "--out", str(out), "--variant", "x", "--config", "blocks=1"])
    assert rc == 0
    assert "done: 2/2 steps" in capsys.readouterr().out
    card = json.loads((out / "export" / "control_x.json").read_text())
    assert card["config"] == {"channels": 16, "blocks": 1} and card["bf16_autocast"] is False
    assert T.main(["control", "--data", str(tmp_path / "nope"), "--steps", "1", "--no-progress"]) == 2
    assert T.main(["nonet", "--data", str(data), "--steps", "1", "--no-progress"]) == 2


def test_divergence_stops_and_exports_the_best_checkpoint(tmp_path, monkeypatch):
    data = make_data(tmp_path / "d", n=4)
    real_loss = T.compute_loss
    calls = []

    def loss(*a, **k):
        calls.append(1)
        value = real_loss(*a, **k)
        return value * float("nan") if len(calls) > 2 else value

    monkeypatch.setattr(T, "compute_loss", loss)
    res = T.train(_cfg(tmp_path, data, steps=80))
    # each run of 10 non-finite steps rolls back to the best checkpoint with half the LR, at most
    # MAX_ROLLBACKS times; then the run stops
    assert res.stopped == "diverged" and res.step == 2 + 10 * (T.MAX_ROLLBACKS + 1) - 1
    state = json.loads((Path(res.out_dir) / "last_state.json").read_text())
    assert state["rollbacks"] == T.MAX_ROLLBACKS and state["lr_scale"] == 0.5 ** T.MAX_ROLLBACKS
    assert state["skipped_steps"] == state["skipped_nonfinite_loss"] == 10 * (T.MAX_ROLLBACKS + 1)
    assert res.best_step == 2 and res.export_path is not None and res.export_path.is_file()


def test_a_non_finite_gradient_is_skipped_and_counted_apart(tmp_path, monkeypatch):
    """A finite loss with a non-finite gradient is skipped too; the card says which of the two
    each skipped step was (MSAMNet skipped about 3 % of its bf16 steps on an AVX512-BF16 CPU)."""
    data = make_data(tmp_path / "d", n=4)
    real_norm, calls = T.grad_norm_, []

    def norm(*a, **k):
        calls.append(1)
        value = real_norm(*a, **k)
        return float("inf") if len(calls) in (2, 3) else value

    monkeypatch.setattr(T, "grad_norm_", norm)
    res = T.train(_cfg(tmp_path, data, steps=5))
    state = json.loads((Path(res.out_dir) / "last_state.json").read_text())
    assert res.stopped == "done" and (state["skipped_steps"], state["skipped_nonfinite_loss"]) == (2, 0)
    card = json.loads(Path(res.export_path).with_suffix(".json").read_text())
    assert (card["skipped_steps"], card["skipped_nonfinite_loss"]) == (2, 0)


def test_trainer_parts_run_on_their_own(tmp_path):
    """prepare (Trainer()), loop, export: each step testable; preparing trains nothing."""
    data = make_data(tmp_path / "d", n=4)
    run = T.Trainer(_cfg(tmp_path, data, steps=3))
    assert run.step == 0 and run.model.training is True and not run.paths["last"].exists()
    assert run.export() is None  # nothing trained yet
    run.loop()
    assert (run.step, run.stopped) == (3, "done") and run.paths["last"].is_file()
    assert run.best_step in (2, 3) and run.export().is_file()
    with pytest.raises(ValueError, match="recipe"):
        T.Trainer(_cfg(tmp_path, data, recipe="fastest"))


def test_lr_trials_script_records_every_trial(tmp_path):
    import subprocess
    import sys

    data = make_data(tmp_path / "d", n=4)
    out = tmp_path / "trials"
    proc = subprocess.run([sys.executable, "scripts/lr_trials.py", "control", "--lrs", "1e-4", "1e-3", "--steps", "2",
                           "--batch", "2", "--patch", "32", "--val-every", "1", "--val-count", "2", "--data", str(data), "--tiny",
                           "--threads", "1", "--out", str(out)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = json.loads((out / "control.json").read_text())["trials"]
    assert [t["lr"] for t in trials] == [1e-4, 1e-3]
    assert all(len(t["curve"]) == 2 and "--lr" in t["command"] for t in trials)


def _dead(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` made to pass its input through: its parameters get zero gradients (a dead network)."""
    inner = net.forward
    net.forward = lambda x: x + 0.0 * inner(x)
    net.training_outputs = lambda x: {"output": net.forward(x)}
    return net


def test_collapse_to_identity_stops_the_run(tmp_path, monkeypatch):
    """A network that only passes its input through (dead activations) is stopped at the first
    validation instead of burning the rest of the budget; a working one is not."""
    data = make_data(tmp_path / "d", n=4)
    real_build = T.build_model
    monkeypatch.setattr(T, "build_model", lambda *a, **k: _dead(real_build(*a, **k)))
    res = T.train(_cfg(tmp_path, data, steps=40, val_every=4))
    assert res.stopped == "collapsed" and res.step == 4
    monkeypatch.setattr(T, "build_model", real_build)
    ok = T.train(_cfg(tmp_path, data, steps=8, val_every=4, out=str(tmp_path / "ok")))
    assert ok.stopped == "done" and ok.step == 8


def test_profile_train_step_script(capsys):
    """scripts/profile_train_step.py: one profiled step, its time and the operators' table."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "profile_train_step.py"
    spec = importlib.util.spec_from_file_location("profile_train_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        assert mod.main(["dsmnet", "--batch", "1", "--patch", "16", "--threads", "1", "--rows", "3"]) == 0
    finally:
        torch.set_num_threads(threads)  # the script sets it for the whole process
    out = capsys.readouterr().out
    assert "dsmnet (training path): one step of batch 1 x 16x16" in out and "convolution" in out


def test_hugepage_env_rules(monkeypatch):
    from derain_core.engine import HUGEPAGE_TUNABLE, hugepage_env
    monkeypatch.setenv("DERAIN_MALLOC_TUNING", "0")
    assert hugepage_env() is None
    monkeypatch.delenv("DERAIN_MALLOC_TUNING")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    assert hugepage_env() is None  # the user's own setting wins
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    env = hugepage_env()
    if env is not None:  # Linux, glibc 2.35+, huge pages not off
        assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGEPAGE_TUNABLE}"


def test_train_command_reexecutes_with_hugepages(tmp_path, monkeypatch):
    # python -m derain_core.train replaces itself by a process whose glibc heap uses huge
    # pages where that applies; the card says which
    import subprocess
    from derain_core.engine import hugepage_env
    data = make_data(tmp_path / "d", n=4)
    out = tmp_path / "run"
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    expected = hugepage_env() is not None
    proc = subprocess.run([sys.executable, "-m", "derain_core.train", "control", "--data", str(data), "--steps", "1",
                           "--batch", "2", "--patch", "32", "--val-count", "1", "--tiny", "--threads", "1",
                           "--no-progress", "--out", str(out), "--variant", "x"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "export" / "control_x.json").read_text())
    assert card["malloc_hugepages"] is expected
    assert card["compiled_blocks"] is True  # CPU: on by default (the control network has none to compile)


def test_curves_15min_script_runs_both_paths(tmp_path):
    # scripts/curves_15min.py: the new path against the old one (reference kernels, the papers'
    # schedules) from scratch for the same wall time; tiny here
    import subprocess
    data = make_data(tmp_path / "d", n=4)
    out = tmp_path / "curves.json"
    proc = subprocess.run([sys.executable, "scripts/curves_15min.py", "--models", "dsmnet", "--minutes", "0.04",
                           "--data", str(data), "--val-every", "2", "--threads", "1", "--json", str(out),
                           "--extra", "--tiny", "--batch", "2", "--patch", "32", "--val-count", "1"],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["model"], r["path"]) for r in runs] == [("dsmnet", "new"), ("dsmnet", "old")]
    assert all(r["steps"] >= 1 and r["curve"] for r in runs)
    assert [r["reference_kernels"] for r in runs] == [False, True]
    assert "cosine" in runs[0]["schedule"] and "cosine" not in runs[1]["schedule"]
    assert "CURVE dsmnet" in proc.stdout


def test_ema_averages_weights_and_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = T.Ema(net, decay=0.5)
    ema.updates = 100  # past the ramp: d = 0.5
    with torch.no_grad():
        net[0].weight.add_(2.0)
        net[1].running_mean.fill_(4.0)
        net[1].num_batches_tracked.fill_(7)
    old_w = ema.model[0].weight.clone()
    ema.update(net)
    assert torch.allclose(ema.model[0].weight, (old_w + net[0].weight) / 2)
    assert torch.allclose(ema.model[1].running_mean, torch.full((2,), 2.0))  # averaged, not copied
    assert int(ema.model[1].num_batches_tracked) == 7
