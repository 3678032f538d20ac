"""scripts/maps_follow_streaks.py: the AUC that says whether a map follows the rain streaks."""
import importlib.util
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "maps_follow_streaks", Path(__file__).resolve().parent.parent / "scripts" / "maps_follow_streaks.py")
mfs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mfs)


def test_roc_auc_perfect_inverse_constant_and_ties():
    pos = torch.tensor([True, True, False, False, False])
    assert mfs.roc_auc(torch.tensor([5.0, 4, 3, 2, 1]), pos) == 1.0
    assert mfs.roc_auc(torch.tensor([1.0, 2, 3, 4, 5]), pos) == 0.0
    assert mfs.roc_auc(torch.zeros(5), pos) == 0.5
    # one positive ties with one negative: that pair counts half -> (2 + 2 + 0.5 + 1) / 6
    assert mfs.roc_auc(torch.tensor([3.0, 2, 2, 1, 0]), pos) == pytest.approx(5.5 / 6)


def test_map_scores_finds_the_streak_channel_that_the_mean_hides():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, 2] = True  # a vertical streak
    m = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    m[0, 1][mask] += 1.0  # channel 1 marks the streak ...
    m[0, 2][mask] -= 1.0  # ... channel 2 marks it with the opposite sign: the mean cancels them
    mean_auc, best_auc, ch = mfs.map_scores(m, mask)
    assert abs(mean_auc - 0.5) < 0.3 and ch in (1, 2) and abs(best_auc - 0.5) == 0.5


def test_map_scores_take_maps_with_extra_channel_dimensions():
    """JDNet's SAN weights are (N, 1, 49, H, W): each footprint offset counts as a channel."""
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, 5] = True
    m = torch.rand(1, 1, 49, 16, 16) * 0.1
    m[0, 0, 30] = mask.float()
    mean_auc, best_auc, ch = mfs.map_scores(m, mask)
    assert mfs.as_nchw(m).shape == (1, 49, 16, 16) and ch == 30 and best_auc == 1.0
    with pytest.raises(ValueError, match="expected a"):
        mfs.map_scores(torch.rand(16, 16), mask)


def test_streak_mask_thresholds_the_largest_channel_difference():
    clean = torch.zeros(1, 3, 4, 4)
    rainy = clean.clone()
    rainy[0, 2, 1, 1] = 0.5
    rainy[0, 0, 2, 2] = 0.05
    mask = mfs.streak_mask(rainy, clean, 0.1)
    assert mask.sum() == 1 and mask[1, 1]


def test_roc_auc_of_rows_matches_the_pairwise_count():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 6, (3, 40), generator=g).float()  # many ties
    pos = torch.rand(40, generator=g) > 0.6
    got = mfs.roc_auc(scores, pos)
    for row, auc in zip(scores, got):
        p, n = row[pos], row[~pos]
        pairs = (p[:, None] > n[None]).double() + 0.5 * (p[:, None] == n[None]).double()
        assert float(auc) == pytest.approx(float(pairs.mean()))
