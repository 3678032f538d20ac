"""Shipped weights pass the checks beyond PSNR (derain_core.sanity, training.md).

Border bands are checked for every shipped weights file, each (model, variant) pair in weights/ (on
BORDER_EXAMPLES, see there). Identity and blobs are checked for the pairs whose shipped weights pass them
(IDENTITY_CHECKED grows as such weights ship); the others' numbers are printed by scripts/sanity_checks.py
and tracked in their issues.
"""
import functools

import pytest
import torch

from derain_core import sanity
from derain_core import weights as wts
from derain_core.registry import model_ids

# Every shipped weights file: (model id, variant).
SHIPPED = tuple((m, v) for m in model_ids() for v in wts.available_variants(m))
IDENTITY_CHECKED = (("dsmnet", "rain100l"), ("dsmnet", "heavy"), ("mfan", "rain100l"), ("rranet", "rain100l"))
# The border check in CI runs on 5 of the 12 bundled examples (whole images, about half the time of
# all 12): each photo's worst example for the shipped weights in a whole run
# (`scripts/sanity_checks.py --json`, 2026-12-01), plus rocket_storm, RRANet's worst. The script
# checks all 12 before weights ship (training.md).
BORDER_EXAMPLES = ("astronaut_light", "coffee_storm", "chelsea_storm", "rocket_light", "rocket_storm")


def test_border_ratio_sees_a_band():
    gt = torch.full((1, 3, 64, 64), 0.5)
    out = gt + 0.01
    assert sanity.border_ratio(out, gt) == pytest.approx(1.0)
    out[..., :, :8] = 0.9  # an 8-px band on the left
    assert sanity.border_ratio(out, gt) > 3.0


def test_blob_fraction_and_identity_psnr():
    x = torch.rand(1, 3, 50, 40)
    y = x.clone()
    assert sanity.blob_fraction(y, x) == 0.0 and sanity.psnr_rgb(y, x) == 100.0
    y[0, 2, :5, :4] = (x[0, 2, :5, :4] + 0.5) % 1.0  # 20 pixels change by more than 96/255 in blue
    changed = ((y - x).abs().amax(1) > 96 / 255).float().mean().item()
    assert sanity.blob_fraction(y, x) == pytest.approx(changed) and 0 < changed <= 20 / 2000


def test_check_model_runs_the_chosen_examples_only():
    report = sanity.check_model("dsmnet", crop=32, examples=("astronaut_light", "rocket_storm"))
    assert set(report.border_ratio) == {"astronaut_light", "rocket_storm"}
    assert set(report.identity_psnr) == set(sanity.IDENTITY_PHOTOS)
    border_only = sanity.check_model("dsmnet", crop=32, examples=("rocket_storm",), photos=())
    assert not border_only.identity_psnr and not border_only.blob_fraction
    assert border_only.to_json()["worst_identity_psnr"] is None
    assert all("identity" not in f and "blobs" not in f for f in border_only.failures())


@functools.lru_cache(maxsize=None)
def _report(model_id: str, variant: str) -> sanity.SanityReport:
    """One run of the checks per weights file: both tests below read it (each run is minutes on a CPU).
    The identity photos run only for the pairs whose identity check is asserted."""
    photos = sanity.IDENTITY_PHOTOS if (model_id, variant) in IDENTITY_CHECKED else ()
    report = sanity.check_model(model_id, variant, examples=BORDER_EXAMPLES, photos=photos)
    assert report.variant == variant
    return report


def test_every_model_ships_weights_and_checked_pairs_exist():
    assert {m for m, _ in SHIPPED} == set(model_ids())
    assert set(IDENTITY_CHECKED) <= set(SHIPPED)


def test_border_examples_are_bundled():
    assert set(BORDER_EXAMPLES) <= {ex_id for ex_id, _, _ in sanity.rainy_examples()}


@pytest.mark.parametrize("model_id,variant", SHIPPED)
def test_no_border_band(model_id, variant):
    report = _report(model_id, variant)
    assert set(report.border_ratio) == set(BORDER_EXAMPLES)
    assert report.worst_border_ratio <= sanity.MAX_BORDER_RATIO, report.border_ratio


@pytest.mark.parametrize("model_id,variant", IDENTITY_CHECKED)
def test_identity_and_no_blobs(model_id, variant):
    report = _report(model_id, variant)
    assert report.worst_identity_psnr >= sanity.MIN_IDENTITY_PSNR, report.identity_psnr
    assert report.worst_blob_fraction < sanity.MAX_BLOB_FRACTION, report.blob_fraction
