"""Evaluate the plain-CNN benchmark control like `derain eval` evaluates the five networks.

    .venv/bin/python scripts/eval_control.py runs/control_rain100l [--data ../shared/data/Rain100L_test]

The control is not an app model (it is not in the registry), so `derain eval` cannot load it.
Same metrics (derain_core.metrics, PSNR/SSIM on RGB and BT.601 Y), same full-image fp32
inference, clamped to [0, 1]. Merges a "control" row (with its training facts) into
results/<variant>/eval_summary.json and its per-image rows into eval_per_image.csv.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

from derain_core import io, metrics as mt  # noqa: E402
from derain_core.control import load_control  # noqa: E402
from derain_core.data import find_pairs  # noqa: E402
from ship_weights import merge_rows  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", default="../shared/data/Rain100L_test")
    args = ap.parse_args()
    card_file = next((args.run / "export").glob("*.json"))
    card = json.loads(card_file.read_text())
    net = load_control(card_file.with_suffix(".safetensors")).eval()
    rows = []
    for rainy, clean in find_pairs(args.data):
        img, gt = io.load_image(rainy), io.load_image(clean)
        with torch.inference_mode():
            out = io.to_numpy(net(io.to_tensor(img.rgb)).clamp(0, 1))
        rows.append({"model": "control", "variant": card["variant"], "image": Path(rainy).name,
                     "psnr_rgb": round(mt.psnr(out, gt.rgb), 4), "ssim_rgb": round(mt.ssim(out, gt.rgb), 4),
                     "psnr_y": round(mt.psnr(out, gt.rgb, on="y"), 4), "ssim_y": round(mt.ssim(out, gt.rgb, on="y"), 4)})
    mean = {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")}
    summary = {"model": "control", "variant": card["variant"], "images": len(rows), **mean,
               "training": f"{card['steps']} steps, {card['wall_time_s'] / 60:.0f} min, {card['device']}"}
    results = ROOT / "results" / card["variant"]
    merge_rows(results / "eval_summary.json", [summary], "control", card["variant"])
    merge_rows(results / "eval_per_image.csv", rows, "control", card["variant"])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
