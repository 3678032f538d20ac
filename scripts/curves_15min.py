"""Fifteen minutes of training from scratch, the new path against the old one (issue: training speed).

    .venv/bin/python scripts/curves_15min.py [--models mfan jdnet] [--minutes 15] [--data DIR]

For each model, two runs one after the other, each `python -m derain_core.train` from scratch
for the same wall time on both threads, validating every `--val-every` steps:

* ``new``: what `derain train` runs today (short recipe: warm-up + cosine over the budget,
  clipping, EMA; compiled block kernels, fused Adam, huge pages);
* ``old``: the blocks' plain reference code and the papers' schedules
  (``--reference-kernels --recipe paper``), the path and recipe that trained the weights
  shipped before the training-speed work.

Writes ``results/curves_15min.json`` (every validation of both runs, steps and seconds per
step) and prints the best validation PSNR-Y of each run. One training process at a time:
run it when nothing else trains.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = {"new": [], "old": ["--reference-kernels", "--recipe", "paper"]}


def read_curve(run_dir: Path) -> list[dict]:
    """Validation rows of a run's ``log.csv``: step, seconds, raw and EMA PSNR-Y."""
    rows = []
    with open(run_dir / "log.csv") as f:
        for r in csv.DictReader(f):
            if r["val_psnr_y"]:
                rows.append({"step": int(r["step"]), "elapsed_s": float(r["elapsed_s"]),
                             "val_psnr_y": float(r["val_psnr_y"]),
                             "ema_val_psnr_y": float(r["ema_val_psnr_y"]) if r.get("ema_val_psnr_y") else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mfan", "jdnet"])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Rain100L_train"))
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "results" / "curves_15min.json"))
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="more arguments for every run (tests: --tiny --batch 2 ...)")
    args = p.parse_args(argv)

    result = {"minutes": args.minutes, "data": args.data, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for path, flags in PATHS.items():
                out = Path(tmp) / f"{model}_{path}"
                cmd = [sys.executable, "-m", "derain_core.train", model, "--data", args.data,
                       "--minutes", str(args.minutes), "--val-every", str(args.val_every),
                       "--threads", str(args.threads), "--no-progress", "--out", str(out),
                       "--variant", f"curve_{path}", *flags, *args.extra]
                print("$", " ".join(cmd[1:]), flush=True)
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                    return proc.returncode
                curve = read_curve(out)
                card = json.loads((out / "export" / f"{model}_curve_{path}.json").read_text())
                best = max(max(r["val_psnr_y"], r["ema_val_psnr_y"] or 0) for r in curve)
                result["runs"].append({"model": model, "path": path, "command": " ".join(cmd[1:]),
                                       "steps": card["steps"], "sec_per_step": card["sec_per_step"],
                                       "wall_time_s": card["wall_time_s"], "best_val_psnr_y": best,
                                       "reference_kernels": card["reference_kernels"],
                                       "schedule": card["schedule"],
                                       "curve": curve})
                print(f"{model:<8} {path}: {card['steps']} steps, {card['sec_per_step']:.2f} s/step, "
                      f"best validation PSNR-Y {best:.2f} dB", flush=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    for model in args.models:
        by = {r["path"]: r for r in result["runs"] if r["model"] == model}
        print(f"CURVE {model:<8} new {by['new']['best_val_psnr_y']:.2f} dB against old "
              f"{by['old']['best_val_psnr_y']:.2f} dB after {args.minutes:g} min")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
