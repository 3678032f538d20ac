"""The diagnostic scripts measure what they say: local pools, non-finite step reports."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from derain_core import train as T
from derain_core.models.msamnet import MSAMNet
from test_train import _cfg, make_data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import find_nonfinite  # noqa: E402
import pooling_window_check as pwc  # noqa: E402


def test_local_mean_and_max_are_clipped_box_filters():
    x = torch.randn(2, 3, 9, 13)
    mean, mx = pwc.local_mean(x, 5), pwc.local_max(x, 5)
    for i in range(9):
        for j in range(13):
            box = x[..., max(0, i - 2):i + 3, max(0, j - 2):j + 3]
            assert torch.allclose(mean[..., i, j], box.mean(dim=(-1, -2)), atol=1e-6)
            assert torch.equal(mx[..., i, j], box.amax(dim=(-1, -2)))


def test_local_pools_change_the_network_and_a_window_over_everything_does_not():
    torch.manual_seed(0)
    net = MSAMNet(channels=8, dabs_per_orb=1).eval()
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        whole = net(x)
        with pwc.local_pools(99):
            same = net(x)
        with pwc.local_pools(5):
            local = net(x)
        after = net(x)
    assert torch.allclose(whole, same, atol=1e-6) and torch.equal(whole, after)
    assert (whole - local).abs().max() > 1e-4


def test_find_nonfinite_names_the_first_module_and_the_kind(tmp_path, monkeypatch, capsys):
    data = make_data(tmp_path / "d", n=4)
    res = T.train(_cfg(tmp_path, data, model="msamnet", steps=2))
    real = T.compute_loss

    def poisoned(model, loss_fn, rainy, clean, autocast):
        rainy = rainy.clone()
        rainy[0, 0, 0, 0] = float("inf")
        return real(model, loss_fn, rainy, clean, autocast)

    monkeypatch.setattr(T, "compute_loss", poisoned)
    monkeypatch.setattr(sys, "argv", ["find_nonfinite.py", str(res.out_dir), "--steps", "2"])
    assert find_nonfinite.main() == 0
    out = capsys.readouterr().out
    assert "step 3: non-finite loss; first forward head (" in out and "2 of 2 steps skipped" in out, out
    assert '"step": 2,' in (Path(res.out_dir) / "last_state.json").read_text()  # the run folder is untouched
