"""Short learning-rate trials for one model: the same short chunk at several peak LRs.

    .venv/bin/python scripts/lr_trials.py MODEL [--lrs 2e-4 5e-4 1e-3] [--minutes 4 | --steps N]
        [--batch 16] [--init weights/MODEL_rain100l.safetensors] [--out results/lr_trials]

Each trial is ``derain train MODEL --lr LR`` with the default short-budget recipe (warm-up +
cosine over the trial, clipping, EMA), run one after the other on both threads, from the same
start and seed. Writes ``<out>/<model>.json``: the command of every trial, its validation curve
(step, seconds, raw and EMA PSNR-Y), steps, skipped steps and best score; prints a summary.
Choose the peak LR from it and record it in the model's ``TrainingSpec.short_lr``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derain_core.train import TrainConfig, train  # noqa: E402


def curve(log_csv: Path) -> list[dict]:
    """Validation rows of a run's log.csv."""
    with open(log_csv, newline="") as f:
        return [{"step": int(r["step"]), "elapsed_s": float(r["elapsed_s"]),
                 "val_psnr_y": float(r["val_psnr_y"]),
                 "ema_val_psnr_y": float(r["ema_val_psnr_y"]) if r.get("ema_val_psnr_y") else None}
                for r in csv.DictReader(f) if r.get("val_psnr_y")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-4, 5e-4, 1e-3])
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None)
    budget.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--val-count", type=int, default=10)
    ap.add_argument("--data", help="paired training folder (default: ../shared/data/Rain100L_train)")
    ap.add_argument("--init", help="start every trial from these weights")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--tiny", action="store_true", help="tiny configs (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "lr_trials")
    args = ap.parse_args(argv)
    minutes = args.minutes if args.steps is None else None
    if minutes is None and args.steps is None:
        minutes = 4.0
    trials = []
    with tempfile.TemporaryDirectory(prefix="lr_trials_") as work:
        for lr in args.lrs:
            cfg = TrainConfig(model=args.model, data=args.data, minutes=minutes, steps=args.steps, batch=args.batch,
                              patch=args.patch, lr=lr, val_every=args.val_every, val_count=args.val_count,
                              init=args.init, tiny=args.tiny, threads=args.threads, progress=False,
                              out=str(Path(work) / f"lr_{lr:g}"), variant="trial")
            res = train(cfg)
            budget_arg = f"--minutes {minutes:g}" if minutes is not None else f"--steps {args.steps}"
            command = (f"derain train {args.model} --lr {lr:g} {budget_arg} --batch {args.batch} --patch {args.patch} "
                       f"--val-every {args.val_every}" + (f" --init {args.init}" if args.init else "")
                       + (" --tiny" if args.tiny else ""))
            state = json.loads((res.out_dir / "last_state.json").read_text())
            trials.append({"lr": lr, "command": command, "steps": res.step, "stopped": res.stopped,
                           "sec_per_step": res.sec_per_step, "skipped_steps": state.get("skipped_steps", 0),
                           "best_val_psnr_y": res.best_val_psnr_y, "best_step": res.best_step,
                           "curve": curve(res.out_dir / "log.csv")})
            print(f"lr {lr:g}: {res.step} steps, best val PSNR-Y {res.best_val_psnr_y} (step {res.best_step}), "
                  f"skipped {state.get('skipped_steps', 0)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.model}.json"
    path.write_text(json.dumps({"model": args.model, "trials": trials}, indent=1) + "\n")
    best = max(trials, key=lambda t: t["best_val_psnr_y"] or -1)
    print(f"best peak LR {best['lr']:g} ({best['best_val_psnr_y']} dB); wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
