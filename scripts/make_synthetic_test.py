#!/usr/bin/env python
"""Write a held-out synthetic rain TEST folder from the Rain100L *test* split's clean images.

    .venv/bin/python scripts/make_synthetic_test.py --out DIR --kind heavy --count 50 --seed 1234
    derain eval --data DIR --models dsmnet --variant heavy        # then evaluate on it

FOR EVALUATION ONLY: use the folder with ``derain eval --data DIR``; never train on it or pick
checkpoints with it (training validates on ``make_synthetic_val`` over held-out *training*
images). It writes ``DIR/rainy/NNN.png`` (8-bit) + ``DIR/clean/NNN.png`` (the clean test image,
unchanged) for the first ``--count`` clean images of the test split in sorted order, and
``DIR/synthetic_test.json`` (generator, seeds and the full rain parameters of every image).

The rain comes from :func:`derain_core.synth.random_rain` (the generator the ``--synth`` training
uses), rendered on the full image, with seeds hashed from ``test/<kind>/<seed>/<file name>``: a
namespace apart from the training stream (seeds drawn by the run's generator) and from the
validation set (``derain-val/...``). The output holds crops of the benchmark images: never
commit it; DIR must lie outside the repository or in its git-ignored ``runs/``, ``out/`` or
``test-artifacts/``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from derain_core import synth  # noqa: E402
from derain_core.data import IMAGE_EXTS, find_pairs, load_rgb_uint8  # noqa: E402

IGNORED_IN_REPO = ("runs", "out", "test-artifacts")


def default_test_dir() -> Path | None:
    """``../shared/data/Rain100L_test`` relative to the working dir or the repository."""
    for cand in (Path("../shared/data/Rain100L_test"), ROOT.parent / "shared" / "data" / "Rain100L_test"):
        if cand.is_dir():
            return cand
    return None


def test_seed(kind: str, seed: int, name: str) -> int:
    """Rain seed of test image ``name`` (a namespace apart from training and validation)."""
    return synth.stable_seed(f"test/{kind}/{seed}/{name}")


def check_out_dir(out: Path, data: Path) -> None:
    """Refuse output folders that git could commit, or inside the source data."""
    out = out.resolve()
    if out.is_relative_to(data.resolve()):
        raise ValueError(f"--out {out} is inside the source data folder {data}")
    if out.is_relative_to(ROOT):
        rel = out.relative_to(ROOT).parts
        if not rel or rel[0] not in IGNORED_IN_REPO:
            raise ValueError(f"--out {out} is inside the repository; use a folder outside it or under "
                             f"{', '.join(d + '/' for d in IGNORED_IN_REPO)} (git-ignored)")


def make_test_set(data: Path, out: Path, kind: str = "heavy", count: int = 50, seed: int = 1234,
                  overwrite: bool = False) -> list[dict]:
    """Write ``count`` synthetic rainy/clean pairs into ``out``; returns one record per image."""
    synth.check_kind(kind)
    check_out_dir(out, data)
    cleans = sorted({c for _, c in find_pairs(data)})
    if not 0 < count <= len(cleans):
        raise ValueError(f"--count must be in [1, {len(cleans)}] for {data}, got {count}")
    rdir, cdir = out / "rainy", out / "clean"
    if not overwrite and any(d.is_dir() and any(d.iterdir()) for d in (rdir, cdir)):
        raise FileExistsError(f"{out} already holds images; pass --overwrite")
    for d in (rdir, cdir):  # --overwrite: drop the images of an earlier run (no stale pairs)
        for f in d.glob("*") if d.is_dir() else []:
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                f.unlink()
    rdir.mkdir(parents=True, exist_ok=True)
    cdir.mkdir(parents=True, exist_ok=True)
    records = []
    for path in cleans[:count]:
        clean = load_rgb_uint8(path).permute(1, 2, 0).numpy()
        s = test_seed(kind, seed, path.name)
        rainy, params = synth.random_rain(clean, kind, s)
        name = path.stem + ".png"
        Image.fromarray(np.round(rainy * 255).astype(np.uint8)).save(rdir / name)
        Image.fromarray(clean).save(cdir / name)
        records.append({"file": name, "source": str(path), "rain_seed": s, "params": params.to_dict()})
    meta = {"purpose": "evaluation only (derain eval --data DIR); never train or select checkpoints on it",
            "source_split": str(data), "kind": kind, "seed": seed, "count": count,
            "generator": synth.describe_generator(kind), "images": records}
    (out / "synthetic_test.json").write_text(json.dumps(meta, indent=1) + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (outside the repository)")
    ap.add_argument("--data", help="Rain100L test split (default ../shared/data/Rain100L_test)")
    ap.add_argument("--kind", default="heavy", choices=synth.KINDS)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--overwrite", action="store_true", help="replace the images of an earlier run in DIR")
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else default_test_dir()
    if data is None:
        print("error: no --data given and ../shared/data/Rain100L_test not found", file=sys.stderr)
        return 2
    try:
        recs = make_test_set(data, Path(args.out), args.kind, args.count, args.seed, args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(recs)} {args.kind} pairs to {args.out} (evaluation only: derain eval --data {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
