"""Print the README's results table (Markdown) from the shipped weight cards and results/.

    .venv/bin/python scripts/results_table.py [--variant rain100l]
    .venv/bin/python scripts/results_table.py --variant heavy   # the synthetic storm test set

Every measured number comes from ``derain eval`` (recorded in each weight card by
scripts/ship_weights.py, or in results/<variant>/eval_summary.json for the control);
parameter and MAC counts are computed by derain_core.stats; paper numbers come from the cards.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import derain_core as dc  # noqa: E402
from derain_core import weights as wts  # noqa: E402
from derain_core.stats import model_stats  # noqa: E402


def paper_number(card, dataset: str, fallback: str = "rain200l") -> str:
    """The paper's number on ``dataset`` (or, marked, on ``fallback`` when it reports none)."""
    for name in (dataset, fallback):
        for r in card.paper_results:
            if r.dataset.lower().replace(" ", "") == name:
                where = "" if name == dataset else f"{r.dataset}: "
                return f"{where}{r.psnr:.2f} / {r.ssim:.3f} ({r.colour_space})"
    return "-"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="rain100l")
    args = ap.parse_args()
    # The paper column: Rain100L beside rain100l weights; heavy weights beside the papers' heavy-rain
    # sets (a different, real test set: only a reference for the scale of the numbers).
    paper_set, paper_fallback = ("rain100h", "rain200h") if args.variant == "heavy" else ("rain100l", "rain200l")
    summary_path = ROOT / "results" / args.variant / "eval_summary.json"
    summary = {r["model"]: r for r in json.loads(summary_path.read_text())} if summary_path.is_file() else {}

    print("| model | params | GMACs @512² | training (all chunks: steps, wall time; last chunk's device) | "
          "PSNR-Y | SSIM-Y | PSNR-RGB | SSIM-RGB | "
          f"paper, {'Rain100H' if args.variant == 'heavy' else 'Rain100L'} (PSNR / SSIM) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for card in dc.list_models():
        st = model_stats(card.id)
        wc = wts.read_card(card.id, args.variant)
        m = (wc or {}).get("metrics", {}).get(f"{args.variant}_test") or summary.get(card.id)
        if wc:
            steps = wc.get("total_steps_all_chunks", wc.get("steps", "?"))
            wall = wc.get("total_wall_time_s", wc.get("wall_time_s", 0)) / 60
            chunks = wc.get("n_chunks", 1)
            train = (f"{steps} steps, {wall:.0f} min in {chunks} chunk{'s' if chunks != 1 else ''}, "
                     f"{wc.get('device', '?')}, {wc.get('threads', '?')} threads")
        else:
            train = f"no {args.variant} weights yet" if wts.available_variants(card.id) else "untrained"
        cells = [f"{m['psnr_y']:.2f}", f"{m['ssim_y']:.4f}", f"{m['psnr_rgb']:.2f}", f"{m['ssim_rgb']:.4f}"] \
            if m else ["-"] * 4
        print(f"| {card.name} | {st['params'] / 1e6:.2f} M | {st['macs'] / 1e9:.0f} | {train} | "
              + " | ".join(cells) + f" | {paper_number(card, paper_set, paper_fallback)} |")
    for name in ("control", "rainy input"):
        if name in summary:
            m = summary[name]
            label = "plain CNN control (not an app model)" if name == "control" else "rainy input (no model)"
            print(f"| {label} | - | - | {m.get('training', '-')} | {m['psnr_y']:.2f} | {m['ssim_y']:.4f} | "
                  f"{m['psnr_rgb']:.2f} | {m['ssim_rgb']:.4f} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
