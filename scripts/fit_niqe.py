"""Fit the pristine model of "NIQE (this project's pristine model)".

Reproduces ``derain_core/resources/niqe_pristine.npz`` byte for byte from the natural photos
that ship inside the scikit-image wheel (a dev dependency; nothing is downloaded)::

    .venv/bin/python scripts/fit_niqe.py            # write the file
    .venv/bin/python scripts/fit_niqe.py --check    # regenerate and compare, exit 1 if different

Recipe (after ``estimatemodelparam.m`` of the NIQE MATLAB release, adapted to a small
corpus): for every image, 96x96 blocks every 32 px (the release uses non-overlapping blocks;
our corpus is ~60x smaller, so overlapping blocks give the 36x36 covariance enough samples),
keep blocks whose mean local sigma exceeds 0.75 x the image's sharpest block, at most 80 per
image (evenly spaced in raster order, so the texture photos do not dominate), then fit a
multivariate Gaussian to their 36-D features. ``chelsea`` is held out: the tests score it.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derain_core import niqe as N  # noqa: E402

IMAGES = ["astronaut", "camera", "coffee", "rocket", "immunohistochemistry",
          "stereo_motorcycle_left", "stereo_motorcycle_right", "brick", "grass", "gravel", "coins"]
HELD_OUT = ["chelsea"]
STRIDE = 32
CAP = 80


def load(name: str) -> np.ndarray:
    """One scikit-image sample photo as float64 in [0, 1] (H x W or H x W x 3)."""
    import skimage.data as data

    if name.startswith("stereo_motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(data, name)()
    img = np.asarray(img)
    return img.astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)


def fit() -> dict[str, np.ndarray]:
    """Features of the selected patches of every corpus image -> model arrays."""
    import skimage

    feats, counts = [], []
    for name in IMAGES:
        f, sharp = N.niqe_features(N.rgb_to_gray255(load(name)), STRIDE)
        keep = np.flatnonzero(sharp > N.SHARPNESS_THRESHOLD * sharp.max())
        if len(keep) > CAP:
            keep = keep[np.linspace(0, len(keep) - 1, CAP).round().astype(int)]
        feats.append(f[keep])
        counts.append(len(keep))
        print(f"  {name:24s} {len(sharp):4d} blocks, {len(keep):3d} kept")
    allf = np.concatenate(feats)
    mu, cov = N.fit_mvg(allf)
    return {
        "mu": mu, "cov": cov,
        "n_patches": np.array(len(allf)),
        "images": np.array(IMAGES), "patches_per_image": np.array(counts),
        "held_out": np.array(HELD_OUT),
        "block": np.array(N.BLOCK), "stride": np.array(STRIDE), "cap": np.array(CAP),
        "sharpness_threshold": np.array(N.SHARPNESS_THRESHOLD),
        "label": np.array(N.LABEL),
        "source": np.array(f"scikit-image {skimage.__version__} skimage.data sample photos"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=N.PRISTINE_PATH)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args(argv)
    arrays = fit()
    blob = N.pristine_npz_bytes(arrays)
    digest = hashlib.sha256(blob).hexdigest()[:16]
    print(f"{arrays['n_patches']} patches from {len(IMAGES)} images; sha256 {digest}")
    if args.check:
        old = args.out.read_bytes()
        if old == blob:
            print(f"{args.out}: identical")
            return 0
        ref = N.load_pristine(str(args.out))
        diff = max(np.abs(ref["mu"] - arrays["mu"]).max(), np.abs(ref["cov"] - arrays["cov"]).max())
        print(f"{args.out}: DIFFERENT (sha256 {hashlib.sha256(old).hexdigest()[:16]}, max |diff| {diff:.3g})")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"wrote {args.out} ({len(blob)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
